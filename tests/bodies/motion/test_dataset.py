"""Motions, resampling, splits, windows, near-copy pruning, the normalizer, AMASS files."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from bodies.motion import dataset as ds
from bodies.motion import features as F
from bodies.motion.clips import CLIP_NAMES, load_clip
from mpgym.errors import MpgymError


def smooth_motion(seed: int, T: int, label: str = "m", amp: float = 0.5) -> ds.Motion:
    """Smooth random joint motion (sums of sines), a root walking forward."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / F.FPS
    a = rng.normal(scale=amp, size=(24, 3))
    w, p = rng.uniform(1, 4, (24, 3)), rng.uniform(0, 6, (24, 3))
    poses = a * np.sin(w * t[:, None, None] + p)
    transl = np.stack([0.1 * t, 0.95 + 0.02 * np.sin(3 * t), 1.2 * t], -1)
    return ds.Motion(label, F.FPS, poses[:, 0], poses[:, 1:], transl)


def same_rotations(a: np.ndarray, b: np.ndarray, atol: float = 1e-9) -> None:
    Ra = Rotation.from_rotvec(a.reshape(-1, 3)).as_matrix()
    Rb = Rotation.from_rotvec(b.reshape(-1, 3)).as_matrix()
    np.testing.assert_allclose(Ra, Rb, atol=atol)


# ------------------------------------------------------------------ Motion
def test_motion_shapes_and_properties():
    m = smooth_motion(0, 31)
    assert len(m) == 31 and m.poses.shape == (31, 72) and m.duration == pytest.approx(1.0)
    assert m[5:15].transl.shape == (10, 3) and m[5:15].label == "m"
    flat = ds.Motion("x", 30, np.zeros((4, 3)), np.zeros((4, 69)), np.zeros((4, 3)))
    assert flat.body_pose.shape == (4, 23, 3) and flat.fps == 30.0
    assert "frames=31" in repr(m)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"body_pose": np.zeros((5, 22, 3))}, r"expected \(T, 3\), \(T, 23, 3\)"),
        ({"transl": np.zeros((4, 3))}, "transl"),
        (
            {
                "global_orient": np.zeros((0, 3)),
                "body_pose": np.zeros((0, 23, 3)),
                "transl": np.zeros((0, 3)),
            },
            "1 <= T",
        ),
        ({"fps": 0.0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"transl": "abc"}, "not an array of numbers"),
    ],
)
def test_motion_bad_input(kwargs, match):
    base = {
        "label": "bad",
        "fps": 30.0,
        "global_orient": np.zeros((5, 3)),
        "body_pose": np.zeros((5, 23, 3)),
        "transl": np.zeros((5, 3)),
    }
    with pytest.raises(MpgymError, match=match):
        ds.Motion(**{**base, **kwargs})


def test_nan_frame_is_named():
    bp = np.zeros((9, 23, 3))
    bp[6, 4, 1] = np.nan
    tr = np.zeros((9, 3))
    tr[8, 0] = np.inf
    with pytest.raises(MpgymError, match=r"'walkish' has NaN or infinite values at frame 6 \(2 of"):
        ds.Motion("walkish", 30, np.zeros((9, 3)), bp, tr)


# ------------------------------------------------------------------ resampling
@pytest.mark.parametrize("fps", [30.0, 45.0, 24.0])
def test_resample_keeps_a_constant_rate_rotation(fps):
    src_fps, T, omega = 60.0, 61, 2.0  # 1 s, 2 rad/s about a fixed axis (stays below pi)
    t = np.arange(T) / src_fps
    axis = np.array([1.0, 2.0, -2.0]) / 3.0
    poses = np.zeros((T, 24, 3))
    poses[:, 5] = omega * t[:, None] * axis
    poses[:, 0] = Rotation.from_euler("y", 3.0 * t[:, None]).as_rotvec()  # the root turns past pi/2
    transl = np.stack([t, 1.0 - 0.5 * t, 2.0 * t], -1)
    m = ds.Motion("spin", src_fps, poses[:, 0], poses[:, 1:], transl)
    r = ds.resample(m, fps)
    n = int(np.floor(fps + 1e-9)) + 1
    assert len(r) == n and r.fps == fps
    t2 = np.arange(n) / fps
    np.testing.assert_allclose(r.body_pose[:, 4], omega * t2[:, None] * axis, atol=1e-12)
    same_rotations(r.global_orient, Rotation.from_euler("y", 3.0 * t2[:, None]).as_rotvec())
    np.testing.assert_allclose(r.transl, np.stack([t2, 1.0 - 0.5 * t2, 2.0 * t2], -1), atol=1e-12)
    np.testing.assert_allclose(r.body_pose[:, 0], 0.0)


def test_resample_matches_scipy_slerp_between_keys():
    from scipy.spatial.transform import Slerp

    m = smooth_motion(1, 20, amp=1.5)
    r = ds.resample(m, 70.0)
    times = np.arange(20) / 30.0
    ref = Slerp(times, Rotation.from_rotvec(m.body_pose[:, 7]))(np.arange(len(r)) / 70.0)
    same_rotations(r.body_pose[:, 7], ref.as_rotvec())


def test_resample_bad_fps():
    with pytest.raises(MpgymError, match="fps > 0"):
        ds.resample(smooth_motion(0, 5), -1.0)


# ------------------------------------------------------------------ DeepMimic clips
def test_deepmimic_motion_rate_length_and_floor():
    clip = load_clip("walk")
    m = ds.deepmimic_motion("walk")
    assert m.fps == F.FPS and m.label == "walk"
    assert len(m) == int(np.floor(clip.durations[:-1].sum() * F.FPS + 1e-9)) + 1
    assert ds.floor_offset(m) == pytest.approx(0.0, abs=1e-12)
    # the first frame is the clip's first key, only lifted or lowered
    same_rotations(m.body_pose[0], clip.body_pose[0])
    np.testing.assert_allclose(m.transl[0, [0, 2]], clip.transl[0, [0, 2]])
    feet = F.motion_joints(m)[:, list(F.FOOT_JOINTS), 1]
    assert feet.min() > 0.0  # no foot through the floor while walking
    m.transl[:] = 0.0  # a copy: the cache is untouched
    assert ds.deepmimic_motion("walk").transl[0, 1] > 0.5


def test_unknown_clip_and_label():
    with pytest.raises(MpgymError, match="unknown DeepMimic clip 'moonwalk'; accepted: backflip"):
        ds.deepmimic_motion("moonwalk")
    assert ds.check_labels(["walk", "run"], CLIP_NAMES) == [14, 11]
    with pytest.raises(MpgymError, match="unknown label 'fly'"):
        ds.check_labels(["walk", "fly"], CLIP_NAMES)


# ------------------------------------------------------------------ splits and windows
def test_split_blocks():
    assert ds.split_slice(100, "train") == slice(0, 80)
    assert ds.split_slice(100, "test") == slice(80, 100)
    assert ds.split_slice(100, "fit") == slice(0, 60)
    assert ds.split_slice(100, "val") == slice(60, 80)
    with pytest.raises(MpgymError, match="unknown motion split 'dev'; accepted: train, test"):
        ds.split_slice(100, "dev")
    with pytest.raises(MpgymError, match="unknown motion split"):
        ds.windows("dev")


def test_window_counts_and_contents_on_a_synthetic_motion():
    m = smooth_motion(2, 100, label="wave")
    W = ds.WINDOW
    counts = {s: len(ds.windows(s, motions=[m], mirror=False)) for s in ds.SPLITS}
    assert counts == {
        "train": 80 - W + 1,
        "test": 20 - W + 1,
        "fit": 60 - W + 1,
        "val": 20 - W + 1,
        "all": 100 - W + 1,
    }
    w = ds.windows("train", motions=[m])
    assert w.x.shape == (2 * 69, W, F.D) and w.x.dtype == np.float32
    assert w.label_names == ("wave",) and (w.labels == 0).all() and (w.clip == 0).all()
    np.testing.assert_array_equal(w.mirrored, [False] * 69 + [True] * 69)
    np.testing.assert_array_equal(w.start, np.tile(np.arange(69), 2))
    block = F.motion_to_features(m[0:80])  # the block is featurised on its own
    np.testing.assert_allclose(w.x[10], block[10 : 10 + W], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(w.x[69 + 10], F.mirror_features(block[10 : 10 + W]), atol=1e-6)
    test = ds.windows("test", motions=[m])  # held out: never mirrored
    np.testing.assert_allclose(test.x[0], F.motion_to_features(m[80:100])[:W], atol=1e-6)
    assert not test.mirrored.any() and test.dropped == {"wave": 0}


def test_short_blocks_give_no_windows_but_short_motions_are_refused():
    long, short = smooth_motion(3, 40, "long"), smooth_motion(4, 16, "short")
    w = ds.windows("train", motions=[long, short], mirror=False)  # short's 13-frame block: 2
    assert np.bincount(w.clip).tolist() == [32 - 11, 13 - 11]
    t = ds.windows("test", motions=[long, short])  # blocks of 8 and 3 frames: none
    assert len(t) == 0 and t.x.shape == (0, ds.WINDOW, F.D)
    with pytest.raises(MpgymError, match="'tiny' has 11 frames, shorter than a window of 12"):
        ds.windows("train", motions=[long, smooth_motion(5, 11, "tiny")])
    with pytest.raises(MpgymError, match="window must be an integer"):
        ds.windows("train", window=0)
    with pytest.raises(MpgymError, match="resample it to 30"):
        ds.windows("train", motions=[ds.resample(long, 60.0)])


def test_near_copy_of_a_mirrored_training_window_is_dropped(caplog):
    base = smooth_motion(6, 60, "gait")
    # frames 48..60 (the whole test block: one window) are the mirror of frames 10..22
    mirror = base[10:22].mirror()
    parts = [base[0:48], mirror]
    copy = ds.Motion(
        "gait",
        F.FPS,
        np.concatenate([p.global_orient for p in parts]),
        np.concatenate([p.body_pose for p in parts]),
        np.concatenate([p.transl for p in parts]),
    )
    other = smooth_motion(7, 60, "other", amp=0.9)
    with caplog.at_level(logging.INFO, logger="bodies.motion.dataset"):
        w = ds.windows("test", motions=[copy, other])
    assert w.dropped == {"gait": 1, "other": 0}
    assert len(w) == 1 and w.clip.tolist() == [1] and w.label_names == ("gait", "other")
    assert "test windows: kept 1 of 2" in caplog.text and "gait 1/1, other 0/1" in caplog.text
    x = ds.windows("test", motions=[copy]).x
    assert len(x) == 0
    # the distance of the held-out window to the mirrored training window is 0
    block = F.motion_to_features(copy[48:60])[None]
    train = F.motion_to_features(copy[0:48])[None, 10:22]
    assert ds.window_distances(block, F.mirror_features(train))[0] == pytest.approx(0, abs=1e-6)
    assert ds.window_distances(block, train)[0] > ds.NEAR_MM


def test_deepmimic_windows():
    train = ds.windows("train")
    assert train.label_names == CLIP_NAMES and train.x.shape[1:] == (ds.WINDOW, F.D)
    assert train.mirrored.sum() == len(train) // 2
    assert set(train.labels.tolist()) == set(range(15))
    test = ds.windows("test", mirror=True)
    assert not test.mirrored.any() and set(test.dropped) == set(CLIP_NAMES)
    assert len(test) + sum(test.dropped.values()) > 0
    np.testing.assert_array_equal(train.labels, train.clip)


def test_clip_features():
    m1, m2, m3 = smooth_motion(8, 50, "a"), smooth_motion(9, 30, "b"), smooth_motion(10, 40, "a")
    cf = ds.clip_features("train", motions=[m1, m2, m3], mirror=True)
    assert list(cf) == ["a", "b"]
    assert [len(x) for x in cf["a"]] == [40, 32, 40, 32] and [len(x) for x in cf["b"]] == [24, 24]
    assert cf["a"][0].dtype == np.float32
    np.testing.assert_allclose(cf["a"][2], F.mirror_features(cf["a"][0]))
    w = ds.windows("train", motions=[m1, m2, m3], mirror=False)
    np.testing.assert_array_equal(w.x[w.clip == 2][0], cf["a"][1][: ds.WINDOW])
    assert [len(x) for x in ds.clip_features("test", motions=[m1], mirror=True)["a"]] == [10]
    real = ds.clip_features("train")
    assert list(real) == list(CLIP_NAMES) and all(len(v) == 1 for v in real.values())


# ------------------------------------------------------------------ Normalizer
def test_normalizer_numpy_and_torch():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=3.0, scale=2.0, size=(50, 12, 6)).astype(np.float32)
    x[..., 5] = 1.0  # a constant dimension: the floor applies
    n = ds.Normalizer.fit(x)
    z = n.normalize(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.reshape(-1, 6)[:, :5].mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.reshape(-1, 6)[:, :5].std(0), 1.0, atol=1e-4)
    assert n.std[5] == pytest.approx(ds.STD_FLOOR) and np.allclose(z[..., 5], 0.0)
    np.testing.assert_allclose(n.denormalize(z), x, atol=1e-5)
    zt = n.normalize(torch.from_numpy(x).double())
    assert zt.dtype == torch.float64
    np.testing.assert_allclose(zt.numpy(), z, atol=1e-5)
    m = ds.Normalizer().fit(x)  # the instance form fits in place too
    np.testing.assert_array_equal(m.mean, n.mean)
    s = ds.Normalizer.from_state_dict({k: torch.from_numpy(v) for k, v in n.state_dict().items()})
    np.testing.assert_array_equal(s.normalize(x), z)


def test_normalizer_bad_input():
    with pytest.raises(MpgymError, match="not fitted"):
        ds.Normalizer().normalize(np.zeros((2, 3)))
    n = ds.Normalizer.fit(np.random.default_rng(0).normal(size=(10, 4)))
    with pytest.raises(MpgymError, match=r"expected \(\.\.\., 4\)"):
        n.normalize(np.zeros((2, 5)))
    with pytest.raises(MpgymError, match="finite"):
        ds.Normalizer.fit(np.full((3, 4), np.nan))
    with pytest.raises(MpgymError, match="keys mean, std"):
        ds.Normalizer.from_state_dict({"mean": np.zeros(4)})


# ------------------------------------------------------------------ AMASS-style files
@pytest.mark.parametrize("up", ["y", "z"])
def test_amass_round_trip(tmp_path, up):
    m = smooth_motion(11, 25, label="wave", amp=1.2)
    path = ds.save_amass(tmp_path / "wave.npz", m, up_axis=up)
    raw = np.load(path, allow_pickle=False)
    assert raw["poses"].shape == (25, 72) and str(raw["up_axis"]) == up
    if up == "z":  # AMASS's frame: height along z, and SMPL's pelvis offset in trans
        np.testing.assert_allclose(raw["trans"][:, 2], m.transl[:, 1], atol=1e-12)
    back = ds.load_amass(path)
    assert back.label == "wave" and back.fps == m.fps
    same_rotations(back.poses, m.poses)
    np.testing.assert_allclose(back.transl, m.transl, atol=1e-12)
    assert ds.load_amass(path, label="other").label == "other"


def test_amass_smplh_file_z_up(tmp_path):
    T = 5
    rng = np.random.default_rng(0)
    poses = rng.normal(scale=0.3, size=(T, 156))
    poses[:, :3] = [np.pi / 2, 0.0, 0.0]  # AMASS's usual root: the y-up body stood up along z
    trans = np.tile([0.5, 1.0, 0.9], (T, 1))
    np.savez(
        tmp_path / "subject_walk.npz",
        poses=poses,
        trans=trans,
        mocap_frame_rate=120.0,
        betas=np.zeros(16),
        gender=np.array("male"),
    )
    m = ds.load_amass(tmp_path / "subject_walk.npz")
    assert m.label == "subject_walk" and m.fps == 120.0
    np.testing.assert_allclose(m.global_orient, 0.0, atol=1e-12)  # upright in our y-up frame
    np.testing.assert_allclose(m.body_pose[:, :21], poses[:, 3:66].reshape(T, 21, 3))
    np.testing.assert_array_equal(m.body_pose[:, 21:], 0.0)  # SMPL's hands at rest
    # pelvis = A (trans + J_0): (0.5, 1.0 - 0.22, 0.9) z-up -> (0.5, 0.9, -0.78) y-up
    np.testing.assert_allclose(m.transl, np.tile([0.5, 0.9, -0.78], (T, 1)), atol=1e-12)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"poses": np.zeros((4, 72)), "trans": np.zeros((4, 3))}, "lacks mocap_framerate"),
        (
            {"poses": np.zeros((4, 70)), "trans": np.zeros((4, 3)), "mocap_framerate": 30.0},
            r"expected numbers: poses \(T, 72\) SMPL",
        ),
        ({"poses": np.zeros((4, 72)), "trans": np.zeros((5, 3)), "mocap_framerate": 30.0}, "trans"),
        (
            {
                "poses": np.zeros((4, 72)),
                "trans": np.zeros((4, 3)),
                "mocap_framerate": 30.0,
                "up_axis": np.array("x"),
            },
            "up_axis 'x'",
        ),
        ({"poses": np.zeros((4, 72)), "trans": np.zeros((4, 3)), "mocap_framerate": -1.0}, "fps"),
        (
            {
                "poses": np.array([["a"] * 72] * 4),
                "trans": np.zeros((4, 3)),
                "mocap_framerate": 30.0,
            },
            "expected numbers",
        ),
    ],
)
def test_amass_bad_files(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(MpgymError, match=match):
        ds.load_amass(tmp_path / "bad.npz")


def test_amass_nan_frame_and_unsafe_files(tmp_path):
    poses = np.zeros((6, 72))
    poses[4, 10] = np.nan
    np.savez(tmp_path / "nan.npz", poses=poses, trans=np.zeros((6, 3)), mocap_framerate=30.0)
    with pytest.raises(MpgymError, match="at frame 4"):
        ds.load_amass(tmp_path / "nan.npz")
    np.savez(tmp_path / "obj.npz", poses=np.array([None, 1], dtype=object))
    with pytest.raises(MpgymError):
        ds.load_amass(tmp_path / "obj.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(MpgymError, match="not a readable .npz"):
        ds.load_amass(tmp_path / "text.npz")


def test_load_motions_from_a_folder(tmp_path):
    ds.save_amass(tmp_path / "a.npz", smooth_motion(12, 30, "a"))
    ds.save_amass(
        tmp_path / "sub" / "b.npz", ds.resample(smooth_motion(13, 30, "b"), 60.0), up_axis="z"
    )
    (tmp_path / "notes.txt").write_text("ignored")
    motions = ds.load_motions(tmp_path)
    assert [m.label for m in motions] == ["a", "b"] and all(m.fps == F.FPS for m in motions)
    np.testing.assert_allclose(motions[1].transl, smooth_motion(13, 30, "b").transl, atol=1e-9)
    w = ds.windows("train", motions=motions)
    assert w.label_names == ("a", "b")
    assert ds.load_motions([tmp_path / "a.npz"], fps=None)[0].fps == F.FPS
    with pytest.raises(MpgymError, match="not a .npz or .bvh"):
        ds.load_motions(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MpgymError, match="no .npz or .bvh motion files"):
        ds.load_motions(tmp_path / "empty")
