"""The clip pose splits: disjoint blocks, and no test pose a copy of a training pose or mirror."""

import numpy as np
import pytest

from bodies.motion import (
    CLIP_NAMES,
    NEAR_MM,
    check_test_split,
    clip_poses,
    load_clip,
    mirror_body_pose,
    nearest_pose_distance,
    pose_joints,
    split_frames,
)
from bodies.skeleton import rest_joints
from mpgym.errors import MpgymError


@pytest.mark.parametrize("n", [5, 25, 29, 39, 227])
def test_split_blocks_are_disjoint_and_cover_the_clip(n):
    frames = [set(range(n)[split_frames(n, s)]) for s in ("test", "train", "val")]
    assert sum(len(f) for f in frames) == n
    assert set().union(*frames) == set(range(n))
    assert split_frames(n, "all") == slice(0, n)


def test_split_sizes():
    """1,620 frames: 324 test (291 kept), 972 train, 324 validation; mirrored doubles them."""
    sizes = {s: len(clip_poses(s, mirror=False)) for s in ("test", "train", "val", "all")}
    assert sizes == {"test": 291, "train": 972, "val": 324, "all": 1620}
    assert len(clip_poses("train")) == 2 * 972


def test_unknown_split_is_an_error():
    with pytest.raises(MpgymError, match="accepted: train, val, test, all"):
        clip_poses("holdout")


def test_pose_joints_of_the_rest_pose_is_the_rest_skeleton():
    J = pose_joints(np.zeros((2, 23, 3)))
    np.testing.assert_allclose(J[1], rest_joints() - rest_joints()[0], atol=1e-12)


def test_distance_of_one_bent_joint():
    """Bending the left elbow by 90 degrees moves the wrist and hand; the mean over 24 joints
    is their displacement / 24, in closed form from the rest skeleton."""
    bent = np.zeros((1, 23, 3))
    bent[0, 17, 1] = np.pi / 2  # left elbow (joint 18) about y
    J0 = rest_joints()
    # a quarter turn of a point at distance r from the elbow axis moves it by r * sqrt(2)
    moved = [np.linalg.norm((J0[k] - J0[18])[[0, 2]]) * np.sqrt(2) for k in (20, 22)]
    expected = 1000.0 * sum(moved) / 24
    d = nearest_pose_distance(bent, np.zeros((1, 23, 3)), mirror=False)
    np.testing.assert_allclose(d, [expected], rtol=1e-9)


def test_the_mirror_of_a_training_pose_is_found():
    """A one-sided training pose (kick) is far from its own mirror, yet 0 mm away with mirror."""
    train = clip_poses("train", mirror=False)
    kick = load_clip("kick").body_pose[split_frames(47, "train")][10:11]
    mirrored = mirror_body_pose(kick)
    assert nearest_pose_distance(mirrored, kick, mirror=False)[0] > 5 * NEAR_MM
    assert nearest_pose_distance(mirrored, train, mirror=True)[0] < 1e-6


def test_no_test_pose_near_a_training_or_validation_pose_or_its_mirror():
    test = clip_poses("test", mirror=False)
    ref = np.concatenate([clip_poses("train", mirror=False), clip_poses("val", mirror=False)])
    assert nearest_pose_distance(test, ref, mirror=True).min() >= NEAR_MM
    # the mirrored test poses are as far from the mirrored reference
    assert nearest_pose_distance(mirror_body_pose(test), ref, mirror=True).min() >= NEAR_MM


def test_mirror_symmetric_cycles_lose_their_test_frames():
    """Walk and run are cycles whose halves mirror each other: every test frame is a mirrored
    training or validation frame and is dropped; the per-clip counts are the logged ones."""
    checks = check_test_split()
    assert set(checks) == set(CLIP_NAMES)
    assert checks["walk"].dropped == len(checks["walk"].kept) == 8
    assert checks["run"].dropped == len(checks["run"].kept) == 5
    assert checks["walk"].distance_mm.max() < 1.0
    assert sum(c.dropped for c in checks.values()) == 33


# ---------------------------------------------------------------------------- benchmark bodies
def _benchmark():
    """benchmarks/bodies.py, loaded by path (it is a script, not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "benchmarks" / "bodies.py"
    spec = importlib.util.spec_from_file_location("_bodies_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def test_benchmark_bodies_are_test_poses_seen_in_and_out_of_distribution(model64):
    """The benchmark's bodies take their poses from the test split; in distribution the yaw is
    inside the learned fitter's training range, shifted it is beyond it and the camera is
    pitched by 20 degrees, the same bodies otherwise."""
    import torch

    from bodies.learned import LearnedConfig
    from bodies.rotations import matrix_to_axis_angle

    bench = _benchmark()
    pose, _, _ = bench.test_poses(12)
    assert nearest_pose_distance(pose.reshape(-1, 23, 3), clip_poses("test", mirror=False),
                                 mirror=False).max() == 0.0  # fmt: skip
    gt, groups = bench.test_bodies(model64, 12)
    gt_s, groups_s = bench.test_bodies(model64, 12, shifted=True)
    go, go_s = (matrix_to_axis_angle(x.full_pose[:, 0]) for x in (gt, gt_s))
    assert float(go[:, [0, 2]].abs().max()) < 1e-12 and float(go_s[:, [0, 2]].abs().max()) < 1e-12
    yaw, yaw_s = go[:, 1].abs(), go_s[:, 1].abs()
    assert float(yaw.max()) < bench.YAW_IN < LearnedConfig().max_yaw
    assert float(yaw_s.min()) >= LearnedConfig().max_yaw
    torch.testing.assert_close(gt.betas, gt_s.betas)
    assert len(groups) == 1 and len(groups_s) == 2
    pitch = [
        float(matrix_to_axis_angle(torch.as_tensor(cam.R @ np.diag([1.0, -1.0, -1.0])))[0])
        for _, cam, _ in groups_s
    ]
    np.testing.assert_allclose(np.degrees(pitch), [20.0, -20.0], atol=1e-9)
    assert sorted(torch.cat([g[0] for g in groups_s]).tolist()) == list(range(12))
