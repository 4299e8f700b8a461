"""BVH files of the SMPL skeleton: Euler order, round trips, refusals, malformed files."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from bodies.motion import bvh
from bodies.motion import dataset as ds
from bodies.motion import features as F
from bodies.skeleton import JOINT_NAMES, rest_joints
from mpgym.errors import MpgymError


def big_motion(seed: int, T: int = 15) -> ds.Motion:
    """Random rotations of every size (gimbal-lock neighbourhoods included) and a moving root."""
    rng = np.random.default_rng(seed)
    rot = Rotation.random(T * 24, random_state=seed).as_rotvec().reshape(T, 24, 3)
    rot[0, 3] = Rotation.from_euler("ZXY", [10, 90, 20], degrees=True).as_rotvec()  # x = 90 deg
    transl = rng.normal(size=(T, 3)) + np.array([0.0, 1.0, 0.0])
    return ds.Motion("big", F.FPS, rot[:, 0], rot[:, 1:], transl)


def assert_same(a: ds.Motion, b: ds.Motion, tol: float = 1e-6) -> None:
    Ra = Rotation.from_rotvec(a.poses.reshape(-1, 3))
    Rb = Rotation.from_rotvec(b.poses.reshape(-1, 3))
    assert (Ra.inv() * Rb).magnitude().max() < tol  # rad
    np.testing.assert_allclose(a.transl, b.transl, atol=tol)


ONE_JOINT = """HIERARCHY
ROOT hips
{{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition {order}
  End Site
  {{
    OFFSET 0 1 0
  }}
}}
MOTION
Frames: 1
Frame Time: 0.04
1 2 3 {values}
"""


def elementary(axis: str, deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return {
        "X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


@pytest.mark.parametrize("axes", ["ZXY", "XYZ", "YZX"])
def test_euler_order_of_a_hand_built_one_joint_file(tmp_path, axes):
    angles = (30.0, 45.0, 60.0)  # degrees, in channel order
    order = " ".join(f"{a}rotation" for a in axes)
    path = tmp_path / "one.bvh"
    path.write_text(ONE_JOINT.format(order=order, values="30 45 60"))
    clip = bvh.read_bvh(path)
    assert clip.names == ("hips",) and clip.parents == (-1,) and clip.frame_time == 0.04
    R = clip.local_rotations()[0, 0]
    # channels apply in the listed order about the rotating axes: R = R_1 R_2 R_3
    expected = elementary(axes[0], 30) @ elementary(axes[1], 45) @ elementary(axes[2], 60)
    np.testing.assert_allclose(R, expected, atol=1e-12)
    np.testing.assert_allclose(
        R, Rotation.from_euler(axes, angles, degrees=True).as_matrix(), atol=1e-12
    )
    np.testing.assert_allclose(clip.root_positions(), [[1.0, 2.0, 3.0]])


def test_written_file_layout_and_channel_values(tmp_path):
    T = 2
    poses = np.zeros((T, 24, 3))
    poses[:, 4] = [0.0, 0.0, np.radians(30)]  # left knee: 30 deg about z only
    poses[1, 0] = [np.radians(-20), 0.0, 0.0]  # root: -20 deg about x
    m = ds.Motion("k", 30.0, poses[:, 0], poses[:, 1:], np.tile([0.1, 0.9, -0.2], (T, 1)))
    text = bvh.save_bvh(tmp_path / "k.bvh", m).read_text()
    lines = text.splitlines()
    assert lines[:5] == [
        "HIERARCHY",
        "ROOT pelvis",
        "{",
        "  OFFSET 0.000000 0.000000 0.000000",
        "  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation",
    ]
    assert text.count("JOINT ") == 23 and text.count("End Site") == 5
    assert "Frames: 2" in lines and "Frame Time: 0.03333333333" in lines
    off = rest_joints()[4] - rest_joints()[1]
    i = lines.index("    JOINT left_knee")
    assert lines[i + 2].split() == ["OFFSET", *(f"{x:.6f}" for x in off)]
    assert lines[i + 3].strip() == "CHANNELS 3 Zrotation Xrotation Yrotation"
    frames = np.array([r.split() for r in lines[-2:]], float)
    assert frames.shape == (2, 6 + 23 * 3)
    np.testing.assert_allclose(frames[:, :3], [[0.1, 0.9, -0.2]] * 2)
    np.testing.assert_allclose(frames[1, 3:6], [0.0, -20.0, 0.0], atol=1e-9)  # Z X Y
    # depth-first order: pelvis, left_hip, left_knee -> columns 9..11 are the knee's Z X Y
    np.testing.assert_allclose(frames[:, 9:12], [[30.0, 0.0, 0.0]] * 2, atol=1e-9)
    cm = bvh.save_bvh(tmp_path / "cm.bvh", m, units="cm").read_text().splitlines()
    np.testing.assert_allclose(np.array(cm[-1].split(), float)[:3], [10.0, 90.0, -20.0])


@pytest.mark.parametrize("units", ["m", "cm"])
def test_round_trip(tmp_path, units):
    m = big_motion(0)
    path = bvh.save_bvh(tmp_path / "big.bvh", m, units=units)
    back = bvh.load_bvh(path)
    assert back.label == "big" and back.fps == 30.0 and len(back) == len(m)
    assert_same(back, m)


def test_round_trip_real_clip(tmp_path):
    m = ds.deepmimic_motion("cartwheel")
    back = bvh.load_bvh(bvh.save_bvh(tmp_path / "c.bvh", m), label="cartwheel")
    assert_same(back, m)
    np.testing.assert_allclose(F.motion_to_features(back), F.motion_to_features(m), atol=1e-5)
    (m2,) = ds.load_motions([tmp_path / "c.bvh"])
    assert m2.label == "c" and m2.fps == F.FPS


def test_other_rotation_orders_read_the_same(tmp_path):
    m = big_motion(1, T=4)
    text = bvh.save_bvh(tmp_path / "a.bvh", m).read_text()
    clip = bvh.read_bvh(tmp_path / "a.bvh")
    R = clip.local_rotations()  # [T, J, 3, 3] in file order
    xyz = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_euler("XYZ", degrees=True)
    values = np.concatenate([clip.values[:, :3], xyz.reshape(len(m), -1)], 1)
    head = text.split("MOTION")[0].replace(
        "Zrotation Xrotation Yrotation", "Xrotation Yrotation Zrotation"
    )
    frames = "\n".join(" ".join(f"{v:.12g}" for v in row) for row in values)
    (tmp_path / "b.bvh").write_text(
        f"{head}MOTION\nFrames: {len(m)}\nFrame Time: 0.0333333\n{frames}\n"
    )
    back = bvh.load_bvh(tmp_path / "b.bvh")
    assert back.fps == 30.0  # a rounded frame time still reads as 30 fps
    assert_same(back, m)


def small_file(tmp_path) -> str:
    return bvh.save_bvh(tmp_path / "s.bvh", big_motion(2, T=3)).read_text()


def swap_elbow_and_wrist(t: str) -> str:
    t = t.replace("JOINT left_elbow", "JOINT TMP").replace("JOINT left_wrist", "JOINT left_elbow")
    return t.replace("JOINT TMP", "JOINT left_wrist")


def drop_left_hip_channels(t: str) -> str:
    head, tail = t.split("MOTION\n")
    head = head.replace("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 0", 1)
    lines = tail.splitlines()
    rows = [" ".join(r.split()[:6] + r.split()[9:]) for r in lines[2:]]
    return head + "MOTION\n" + "\n".join(lines[:2] + rows) + "\n"


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.replace("JOINT head", "JOINT Head"), "joints not in SMPL: \\['Head'\\]"),
        (lambda t: t.replace("ROOT pelvis", "ROOT hips"), "does not hold the SMPL skeleton"),
        (swap_elbow_and_wrist, "'left_wrist' under 'left_shoulder'"),
        (drop_left_hip_channels, "joint 'left_hip' has channels none"),
        (lambda t: t.replace("JOINT head", "JOINT neck"), "a joint name used twice"),
    ],
)
def test_other_skeletons_refused(tmp_path, edit, match):
    (tmp_path / "x.bvh").write_text(edit(small_file(tmp_path)))
    with pytest.raises(MpgymError, match=match) as err:
        bvh.load_bvh(tmp_path / "x.bvh")
    assert "Expected 24 joints, root pelvis" in str(err.value)


def test_one_joint_file_refused_by_load_bvh(tmp_path):
    path = tmp_path / "one.bvh"
    path.write_text(ONE_JOINT.format(order="Zrotation Xrotation Yrotation", values="0 0 0"))
    with pytest.raises(MpgymError, match="SMPL joints missing: \\['head'"):
        bvh.load_bvh(path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.split("MOTION")[0], "expected HIERARCHY ... MOTION"),
        (lambda t: t.replace("HIERARCHY", "HIERARCHIE"), "not a BVH file"),
        (lambda t: t[: t.index("MOTION") - 40] + "\nMOTION" + t.split("MOTION")[1], "ends early"),
        (lambda t: t.replace("Frames: 3", "Frames: 4"), "need 300 numbers; the file holds 225"),
        (lambda t: t.replace("Frames: 3", "Frames: 999999999"), "expected 1 to"),
        (lambda t: t.replace("Frame Time: 0.03333333333", "Frame Time: 0"), "frame time > 0"),
        (lambda t: t.replace("Frame Time: 0.03333333333", "Frame Time: abc"), "frame time"),
        (lambda t: t.replace("Frames: 3", "Frames 3"), "'Frames: N'"),
        (lambda t: t[:-30] + " x1 \n", "not a number"),
        (lambda t: t.replace("OFFSET 0.000000", "OFFSET nan", 1), "must be finite"),
        (lambda t: t.replace("OFFSET 0.000000", "OFFSET abc", 1), "expected a number"),
        (lambda t: t.replace("CHANNELS 3", "CHANNELS 9", 1), "0 to 6 channels"),
        (
            lambda t: t.replace(
                "Zrotation Xrotation Yrotation", "Zrotation Zrotation Yrotation", 1
            ),
            "distinct X/Y/Z",
        ),
        (
            lambda t: t.replace(
                "Zrotation Xrotation Yrotation", "Wrotation Xrotation Yrotation", 1
            ),
            "distinct X/Y/Z",
        ),
        (lambda t: t.replace("End Site", "End Sight", 1), "expected 'Site'"),
        (lambda t: t.replace("JOINT left_knee", "BONE left_knee"), "unexpected 'BONE'"),
        (lambda t: t.replace("MOTION", "} extra\nMOTION"), "after the root joint's block"),
        (lambda t: t.rsplit("\n", 2)[0] + "\n" + " ".join(["nan"] * 75) + "\n", "frame 2 has NaN"),
        (
            lambda t: t.replace("OFFSET 0.075000", "OFFSET 7.500000", 1).replace(
                "JOINT", "JOINT", 0
            ),
            "rest skeleton's length",
        ),
    ],
)
def test_malformed_files(tmp_path, edit, match):
    (tmp_path / "bad.bvh").write_text(edit(small_file(tmp_path)))
    with pytest.raises(MpgymError, match=match):
        bvh.load_bvh(tmp_path / "bad.bvh")


def test_scaled_skeleton_refused(tmp_path):
    text = small_file(tmp_path)
    head, tail = text.split("MOTION")
    lines = [
        " ".join(
            [ln.split("OFFSET")[0] + "OFFSET", *(f"{10 * float(x):.6f}" for x in ln.split()[1:])]
        )
        if "OFFSET" in ln
        else ln
        for ln in head.splitlines()
    ]
    (tmp_path / "big.bvh").write_text("\n".join(lines) + "\nMOTION" + tail)
    with pytest.raises(MpgymError, match="10 times the rest skeleton's length"):
        bvh.load_bvh(tmp_path / "big.bvh")


def test_deep_nesting_binary_and_size_limits(tmp_path, monkeypatch):
    deep = "HIERARCHY\nROOT a\n" + "{ OFFSET 0 0 0 JOINT b\n" * 400 + "MOTION\n"
    (tmp_path / "deep.bvh").write_text(deep)
    with pytest.raises(MpgymError, match="more than 256 joints"):
        bvh.read_bvh(tmp_path / "deep.bvh")
    (tmp_path / "bin.bvh").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(MpgymError, match="not a text"):
        bvh.read_bvh(tmp_path / "bin.bvh")
    with pytest.raises(MpgymError, match="cannot read"):
        bvh.read_bvh(tmp_path / "missing.bvh")
    small_file(tmp_path)
    monkeypatch.setattr(bvh, "MAX_BYTES", 100)
    with pytest.raises(MpgymError, match="BVH files up to 100"):
        bvh.read_bvh(tmp_path / "s.bvh")


def test_random_corruptions_load_or_refuse_cleanly(tmp_path):
    data = bytearray(small_file(tmp_path).encode())
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(150):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.integers(len(b)))
            op = int(rng.integers(3))
            if op == 0:
                b[k] = int(rng.choice(list(b"{} \n0123456789.-eEJOINTXYZ")))
            elif op == 1:
                del b[k : k + int(rng.integers(1, 20))]
            else:
                b[k:k] = bytes(rng.integers(32, 127, int(rng.integers(1, 6))).tolist())
        (tmp_path / f"f{i}.bvh").write_bytes(bytes(b))
        try:
            bvh.load_bvh(tmp_path / f"f{i}.bvh")
            outcomes["loaded"] += 1
        except MpgymError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 50 and sum(outcomes.values()) == 150


def test_joint_names_follow_smpl():
    assert len(JOINT_NAMES) == 24 and set(bvh.END_SITES) == {10, 11, 15, 22, 23}
