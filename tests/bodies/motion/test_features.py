"""The motion feature vector: exact inverse, mirroring, heading, contacts."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from bodies.motion import dataset as ds
from bodies.motion import features as F
from bodies.motion.clips import CLIP_NAMES
from bodies.skeleton import mirror_pose
from mpgym.errors import MpgymError

TOL = 1e-5


@functools.lru_cache(maxsize=1)
def clips() -> tuple[ds.Motion, ...]:
    return tuple(ds.deepmimic_motion(n) for n in CLIP_NAMES)


def random_motion(seed: int, T: int = 60, fps: float = F.FPS) -> ds.Motion:
    """Random poses; the root turns fast (crossing +-pi), tilts, and moves about."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / fps
    yaw = 2.5 + 4.0 * t + 0.3 * np.sin(5 * t)  # ~4 rad/s: wraps past pi
    tilt = Rotation.from_rotvec(0.4 * rng.standard_normal((T, 3)))
    root = Rotation.from_rotvec(yaw[:, None] * np.array([0.0, 1.0, 0.0])) * tilt
    body = rng.normal(scale=0.6, size=(T, 23, 3))
    transl = np.cumsum(rng.normal(scale=0.05, size=(T, 3)), 0) + np.array([1.0, 0.9, -2.0])
    return ds.Motion("random", fps, root.as_rotvec(), body, transl)


def start_of(motion: ds.Motion) -> dict:
    R0 = Rotation.from_rotvec(motion.global_orient[0]).as_matrix()
    return {"start_yaw": float(F.heading(R0)), "start_xz": motion.transl[0, [0, 2]]}


def assert_same_motion(a: ds.Motion, b: ds.Motion, tol: float = TOL) -> None:
    Ra = Rotation.from_rotvec(a.poses.reshape(-1, 3)).as_matrix()
    Rb = Rotation.from_rotvec(b.poses.reshape(-1, 3)).as_matrix()
    np.testing.assert_allclose(Ra, Rb, atol=tol)
    np.testing.assert_allclose(a.transl, b.transl, atol=tol)


def test_layout_constants():
    assert (F.D, F.ROT6D.start, F.POSITIONS.start, F.CONTACTS.start) == (224, 4, 148, 220)
    assert F.FOOT_HEIGHTS == pytest.approx((0.116, 0.116, 0.061, 0.061))


def test_sole_height_is_the_synthetic_models_lowest_vertex():
    from bodies.synthetic import build

    v = np.load(build(), allow_pickle=False)["v_template"]
    assert v[:, 1].min() == pytest.approx(F.SOLE_Y, abs=1e-3)


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_round_trip_real_clips(name):
    motion = clips()[CLIP_NAMES.index(name)]
    feats = F.motion_to_features(motion)
    assert feats.shape == (len(motion), F.D) and feats.dtype == np.float64
    back = F.features_to_motion(feats, label=name, **start_of(motion))
    assert back.label == name and back.fps == F.FPS
    assert_same_motion(back, motion)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_random_poses_moving_turning_root(seed):
    motion = random_motion(seed)
    feats = F.motion_to_features(motion)
    yaw = F.wrap_angle(feats[:-1, F.YAW_RATE.start] / F.FPS)
    assert np.abs(yaw).max() > 0.1  # the root really turns
    assert_same_motion(F.features_to_motion(feats, **start_of(motion)), motion)
    # without the start heading and position the motion comes back turned and moved
    other = F.features_to_motion(feats)
    assert other.transl[0, [0, 2]] == pytest.approx([0.0, 0.0])
    assert np.allclose(other.transl[:, 1], motion.transl[:, 1])


def test_round_trip_at_another_frame_rate():
    motion = random_motion(3, fps=60.0)
    feats = F.motion_to_features(motion)
    assert_same_motion(F.features_to_motion(feats, fps=60.0, **start_of(motion)), motion)


def test_world_joints_match_forward_kinematics_batched():
    motions = [random_motion(4), random_motion(5)]
    feats = np.stack([F.motion_to_features(m) for m in motions])  # [2, T, D]
    starts = [start_of(m) for m in motions]
    out = F.world_joints(
        feats,
        start_yaw=np.array([s["start_yaw"] for s in starts]),
        start_xz=np.stack([s["start_xz"] for s in starts]),
    )
    assert out.shape == (2, 60, 24, 3)
    for m, w in zip(motions, out, strict=True):
        np.testing.assert_allclose(w, F.motion_joints(m), atol=1e-9)
    one = F.world_joints(feats[0], **starts[0])
    np.testing.assert_allclose(one, out[0], atol=1e-12)


def test_positions_are_in_the_heading_frame():
    motion = clips()[CLIP_NAMES.index("walk")]
    feats = F.motion_to_features(motion)
    pos = feats[:, F.POSITIONS].reshape(-1, 24, 3)
    np.testing.assert_allclose(pos[:, 0, [0, 2]], 0.0, atol=1e-12)  # pelvis over the origin
    np.testing.assert_allclose(pos[:, 0, 1], feats[:, 0], atol=1e-12)  # height = ROOT_HEIGHT
    assert 0.9 < feats[:, 0].mean() < 1.05  # standing pelvis ~1 m up
    # the body faces +z in its heading frame: the left hip is on +x
    assert (pos[:, 1, 0] > pos[:, 2, 0]).all()


def test_rot6d_matches_bodies_rotations():
    from bodies.rotations import matrix_to_rot6d, rot6d_to_matrix

    R = Rotation.random(20, random_state=0).as_matrix()
    d6 = matrix_to_rot6d(torch.from_numpy(R)).numpy()
    np.testing.assert_allclose(d6, R[:, :2].reshape(20, 6))
    noisy = d6 + 0.1 * np.random.default_rng(0).standard_normal(d6.shape)
    np.testing.assert_allclose(
        F.rot6d_to_matrix(noisy), rot6d_to_matrix(torch.from_numpy(noisy)).numpy(), atol=1e-12
    )


def test_heading_of_a_root_yawed_by_30_degrees_with_known_yaw_rate():
    T, omega, speed = 10, 1.0, 1.0
    t = np.arange(T) / F.FPS
    yaw = np.pi / 6 + omega * t
    pitch = Rotation.from_euler("x", 20, degrees=True)
    root = Rotation.from_rotvec(yaw[:, None] * np.array([0.0, 1.0, 0.0])) * pitch
    transl = np.stack([speed * t, np.full(T, 0.9), np.zeros(T)], -1)  # +x at 1 m/s
    motion = ds.Motion("hand", F.FPS, root.as_rotvec(), np.zeros((T, 23, 3)), transl)
    assert F.heading(root.as_matrix()[0]) == pytest.approx(np.pi / 6)
    feats = F.motion_to_features(motion)
    np.testing.assert_allclose(feats[:, F.YAW_RATE], omega, atol=1e-9)
    np.testing.assert_allclose(feats[:, F.ROOT_HEIGHT], 0.9)
    # heading frame of frame 0 is the world turned by -30 deg: +x moves to (cos 30, sin 30)
    np.testing.assert_allclose(feats[0, F.ROOT_VELOCITY], [np.cos(np.pi / 6), 0.5], atol=1e-9)
    # the root's 6D rotation has the heading removed: the pitch is left
    R_rel = F.rot6d_to_matrix(feats[:, F.ROT6D][:, :6])
    np.testing.assert_allclose(R_rel, np.broadcast_to(pitch.as_matrix(), (T, 3, 3)), atol=1e-9)
    assert F.heading(R_rel) == pytest.approx(np.zeros(T), abs=1e-12)


def test_wrap_angle():
    a = np.array([0.0, np.pi, -np.pi, 3 * np.pi / 2, -3 * np.pi / 2, 7.0])
    np.testing.assert_allclose(
        F.wrap_angle(a), [0.0, np.pi, np.pi, -np.pi / 2, np.pi / 2, 7.0 - 2 * np.pi]
    )


def mirrored(motion: ds.Motion) -> ds.Motion:
    full = mirror_pose(motion.poses.reshape(-1, 24, 3))
    transl = motion.transl * np.array([-1.0, 1.0, 1.0])
    return ds.Motion(motion.label, motion.fps, full[:, 0], full[:, 1:], transl)


@pytest.mark.parametrize("which", ["walk", "cartwheel", "random"])
def test_mirror_features_equals_featurising_the_mirrored_motion(which):
    motion = random_motion(6) if which == "random" else clips()[CLIP_NAMES.index(which)]
    feats = F.motion_to_features(motion)
    expected = F.motion_to_features(mirrored(motion))
    np.testing.assert_allclose(F.mirror_features(feats), expected, atol=1e-9)
    assert (F.mirror_features(feats)[:, F.CONTACTS] == expected[:, F.CONTACTS]).all()
    np.testing.assert_allclose(motion.mirror().poses, mirrored(motion).poses)


def test_mirror_is_an_involution_numpy_and_torch():
    x = np.random.default_rng(0).standard_normal((3, 5, F.D)).astype(np.float32)
    m = F.mirror_features(x)
    assert m.dtype == np.float32 and not np.allclose(m, x)
    np.testing.assert_array_equal(F.mirror_features(m), x)
    t = F.mirror_features(torch.from_numpy(x))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), m)
    with pytest.raises(MpgymError, match="224"):
        F.mirror_features(np.zeros((3, 5)))


def test_contacts_of_a_hand_built_walking_foot():
    T = 20
    wj = np.zeros((T, 24, 3))
    wj[:, :, 1] = 1.0  # everything else far above the ground
    h = F.FOOT_HEIGHTS[0]
    wj[:10, 7] = [0.2, h + 0.01, 0.5]  # left ankle planted for frames 0..9
    for t in range(10, T):  # then swings at 3 m/s, 0.2 m up
        wj[t, 7] = [0.2 + 0.1 * (t - 9), h + 0.2, 0.5]
    wj[:, 10] = [0.0, F.FOOT_HEIGHTS[2], 0.0]
    wj[:, 10, 0] = 0.3 * np.arange(T) / F.FPS  # left toe slides at 0.3 m/s: still contact
    wj[:, 8] = [0.0, F.FOOT_HEIGHTS[1] + 0.1, 0.0]  # right ankle still but 0.1 m up: no
    wj[:, 11] = [0.0, F.FOOT_HEIGHTS[3], 0.0]
    wj[:, 11, 2] = 1.0 * np.arange(T) / F.FPS  # right toe slides at 1 m/s: no
    c = F.contact_labels(wj, F.FPS)
    assert c.shape == (T, 4)
    # frame 9's central difference already sees the swing (1.5 m/s)
    np.testing.assert_array_equal(c[:, 0], [1.0] * 9 + [0.0] * 11)
    np.testing.assert_array_equal(c[:, 1], 0.0)
    np.testing.assert_array_equal(c[:, 2], 1.0)
    np.testing.assert_array_equal(c[:, 3], 0.0)
    np.testing.assert_array_equal(F.contact_labels(wj[None, :1]), [[[1.0, 0.0, 1.0, 1.0]]])


def test_walk_contacts_alternate():
    feats = F.motion_to_features(clips()[CLIP_NAMES.index("walk")])
    c = feats[:, F.CONTACTS]
    left, right = c[:, 0] + c[:, 2] > 0, c[:, 1] + c[:, 3] > 0
    assert 0.3 < left.mean() < 0.8 and 0.3 < right.mean() < 0.8
    assert (left | right).all()  # walking: always a foot down


def test_bad_features_refused():
    with pytest.raises(MpgymError, match=r"\(T, 224\)"):
        F.features_to_motion(np.zeros((5, 10)))
    with pytest.raises(MpgymError, match=r"\(T, 224\)"):
        F.features_to_motion(np.zeros((2, 5, F.D)))
    bad = F.motion_to_features(random_motion(0))
    bad[7, 3] = np.nan
    with pytest.raises(MpgymError, match="not finite at index \\(7,\\)"):
        F.features_to_motion(bad)
    with pytest.raises(MpgymError, match="not finite"):
        F.world_joints(bad[None])
