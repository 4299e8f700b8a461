"""Real human poses: the DeepMimic motion-capture clips in the pybullet wheel, on the SMPL tree.

Clip format (``pybullet_data/data/motions/humanoid3d_*.txt``, read by
``pybullet_envs/deep_mimic/env/humanoid_pose_interpolator.py``): JSON with ``"Frames"``, each
frame 44 numbers ``[duration, root position (3), root rotation (4), chest (4), neck (4),
right hip (4), right knee (1), right ankle (4), right shoulder (4), right elbow (1), left hip (4),
left knee (1), left ankle (4), left shoulder (4), left elbow (1)]``; quaternions are
``(w, x, y, z)``, knees and elbows are angles about the joint's z axis. The humanoid
(``pybullet_data/humanoid/humanoid.urdf``) is y-up, faces +x, its right side is +z, and its rest
pose has the arms hanging down.

Joint mapping to SMPL (SMPL frame: y up, faces +z, left = +x; ``M`` maps DeepMimic axes to
SMPL axes, ``x_smpl = M x_dm``, and a rotation maps as ``M R M^T``):

===================  ==========================================================
SMPL joint           from DeepMimic
===================  ==========================================================
pelvis (global)      root
spine1/2/3           chest, split in three equal rotations (same axis)
neck, head           neck, split in two
left/right hip       left/right hip
left/right knee      left/right knee angle (z axis -> SMPL -x axis)
left/right ankle     left/right ankle
left/right shoulder  ``M R M^T C`` with ``C`` turning SMPL's T-pose arm to hanging down
left/right elbow     ``C^T (M R M^T) C`` (the forearm shares the arm's rest offset)
collars, feet,       rest (DeepMimic has no such joints)
wrists, hands
===================  ==========================================================

Pose splits (:func:`clip_poses`): each clip is cut into three contiguous blocks of frames,
``"test"`` the first 20%, ``"train"`` the next 60% and ``"val"`` the last 20%. ``"train"`` is
what the pose prior, the pose bank of scan fitting and the learned fitter are trained on;
``"val"`` is for choosing settings (the fitting presets and the scan limb search were tuned on
bodies posed from these frames); ``"test"`` is for benchmarks. Neighbouring frames, and the
walk and run cycles, whose two halves mirror each other, would otherwise put copies of
training poses in the test set: test poses within :data:`NEAR_MM` of any training or
validation pose, or of its left-right mirror, are dropped (:func:`check_test_split`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bodies.skeleton import NUM_JOINTS, PARENTS, mirror_pose, rest_joints

log = logging.getLogger(__name__)

M_DM_TO_SMPL = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
CLIP_NAMES = (
    "backflip",
    "cartwheel",
    "crawl",
    "dance_a",
    "dance_b",
    "getup_facedown",
    "getup_faceup",
    "jump",
    "kick",
    "punch",
    "roll",
    "run",
    "spin",
    "spinkick",
    "walk",
)

# frame offsets of each DeepMimic joint, and the SMPL joints they drive
_SPHERICAL = {
    "chest": 8,
    "neck": 12,
    "right_hip": 16,
    "right_ankle": 21,
    "right_shoulder": 25,
    "left_hip": 30,
    "left_ankle": 35,
    "left_shoulder": 39,
}
_REVOLUTE = {"right_knee": 20, "right_elbow": 29, "left_knee": 34, "left_elbow": 43}


@dataclass(repr=False)
class Clip:
    """A retargeted clip: per frame, SMPL axis-angle poses and the root position."""

    name: str
    global_orient: np.ndarray  # (T, 3)
    body_pose: np.ndarray  # (T, 23, 3)
    transl: np.ndarray  # (T, 3) DeepMimic root position in SMPL axes
    durations: np.ndarray  # (T,) seconds per frame

    def __repr__(self) -> str:
        from bodies.model import shapes_repr

        return shapes_repr(self)


def motions_dir() -> Path:
    """``pybullet_data/data/motions`` (from the installed pybullet wheel)."""
    try:
        import pybullet_data
    except ImportError as exc:  # pragma: no cover - pybullet is in the bodies extra
        from mpgym.errors import MpgymError

        raise MpgymError("the DeepMimic clips come with pybullet: pip install pybullet.") from exc
    return Path(pybullet_data.getDataPath()) / "data" / "motions"


def _rot(quat_wxyz: np.ndarray):
    from scipy.spatial.transform import Rotation

    q = np.asarray(quat_wxyz, float)
    return Rotation.from_quat(np.concatenate([q[..., 1:], q[..., :1]], -1))


def retarget(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeepMimic humanoid frames to SMPL parameters (mapping in the module docstring).

    Args:
        frames: ``(T, 44)`` clip frames.

    Returns:
        ``(global_orient (T, 3), body_pose (T, 23, 3), transl (T, 3))``, axis-angle.
    """
    from scipy.spatial.transform import Rotation

    frames = np.asarray(frames, float)
    if frames.ndim != 2 or frames.shape[1] != 44:
        from mpgym.errors import MpgymError

        raise MpgymError(f"DeepMimic frames have shape {frames.shape}; expected (T, 44).")
    T = len(frames)
    M = M_DM_TO_SMPL

    def conj(R):  # rotation matrices (T, 3, 3) from DeepMimic axes to SMPL axes
        return M @ R @ M.T

    pose = np.zeros((T, NUM_JOINTS, 3))
    pose[:, 0] = Rotation.from_matrix(conj(_rot(frames[:, 4:8]).as_matrix())).as_rotvec()
    loc = {k: conj(_rot(frames[:, o : o + 4]).as_matrix()) for k, o in _SPHERICAL.items()}
    chest = Rotation.from_matrix(loc["chest"]).as_rotvec()
    pose[:, 3] = pose[:, 6] = pose[:, 9] = chest / 3.0
    neck = Rotation.from_matrix(loc["neck"]).as_rotvec()
    pose[:, 12] = pose[:, 15] = neck / 2.0
    for side, (hip, knee, ankle, sh, el) in {
        "left": (1, 4, 7, 16, 18),
        "right": (2, 5, 8, 17, 19),
    }.items():
        pose[:, hip] = Rotation.from_matrix(loc[f"{side}_hip"]).as_rotvec()
        pose[:, ankle] = Rotation.from_matrix(loc[f"{side}_ankle"]).as_rotvec()
        pose[:, knee] = -frames[:, _REVOLUTE[f"{side}_knee"], None] * np.array([1.0, 0.0, 0.0])
        # T-pose arm -> hanging arm: about z by -90 deg (left, +x -> -y) or +90 deg (right)
        C = Rotation.from_rotvec(
            [0.0, 0.0, -np.pi / 2 if side == "left" else np.pi / 2]
        ).as_matrix()
        pose[:, sh] = Rotation.from_matrix(loc[f"{side}_shoulder"] @ C).as_rotvec()
        elbow = conj(
            Rotation.from_rotvec(
                frames[:, _REVOLUTE[f"{side}_elbow"], None] * np.array([0.0, 0.0, 1.0])
            ).as_matrix()
        )
        pose[:, el] = Rotation.from_matrix(C.T @ elbow @ C).as_rotvec()
    return pose[:, 0], pose[:, 1:], frames[:, 1:4] @ M.T


def load_clip(name_or_path: str | os.PathLike) -> Clip:
    """Load and retarget one clip (a name from :data:`CLIP_NAMES` or a path)."""
    from mpgym.errors import MpgymError

    path = Path(name_or_path)
    if str(name_or_path) in CLIP_NAMES:
        path = motions_dir() / f"humanoid3d_{name_or_path}.txt"
    if not path.exists():
        raise MpgymError(f"no DeepMimic clip at {path}; accepted names: {', '.join(CLIP_NAMES)}.")
    frames = np.asarray(json.loads(path.read_text())["Frames"], float)
    go, bp, tr = retarget(frames)
    name = path.stem.replace("humanoid3d_", "")
    return Clip(name=name, global_orient=go, body_pose=bp, transl=tr, durations=frames[:, 0])


@functools.lru_cache(maxsize=len(CLIP_NAMES))
def _body_poses(name: str) -> np.ndarray:
    """A shipped clip's body poses ``(T, 23, 3)``, read once (read-only)."""
    bp = load_clip(name).body_pose
    bp.flags.writeable = False
    return bp


Split = Literal["train", "val", "test", "all"]

SPLIT_BLOCKS: dict[str, tuple[float, float]] = {
    "test": (0.0, 0.2),
    "train": (0.2, 0.8),
    "val": (0.8, 1.0),
}
"""Per split, the block of each clip's frames it takes (fractions of the clip's length)."""

NEAR_MM = 20.0
"""Test poses closer than this (mean joint distance, mm) to a training or validation pose, or
to its mirror, are dropped. Below half the 2D fitting goal (40 mm PA-MPJPE) and about one frame
step of the faster clips (median frame-to-frame distance: walk and punch 16 mm, cartwheel
13 mm), so a dropped pose is, for the benchmarks, a copy; the walk and run test frames are at
0.0 mm from mirrored training frames and all go."""


def split_frames(n_frames: int, split: Split) -> slice:
    """The frames of a clip of ``n_frames`` frames that belong to ``split``."""
    if split == "all":
        return slice(0, n_frames)
    if split not in SPLIT_BLOCKS:
        from mpgym.errors import MpgymError

        raise MpgymError(f"unknown pose split {split!r}; accepted: train, val, test, all.")
    lo, hi = SPLIT_BLOCKS[split]
    return slice(int(round(n_frames * lo)), int(round(n_frames * hi)))


def pose_joints(body_pose: np.ndarray) -> np.ndarray:
    """Root-relative joint positions of body poses on the rest skeleton (forward kinematics).

    The root is not rotated, so only the body pose counts; the skeleton is the synthetic
    model's designed one (:func:`bodies.skeleton.rest_joints`), a 1.70 m adult.

    Args:
        body_pose: ``(N, 23, 3)`` or ``(N, 69)`` axis-angle.

    Returns:
        ``(N, 24, 3)`` joint positions in metres, pelvis at the origin.
    """
    from scipy.spatial.transform import Rotation

    bp = np.asarray(body_pose, float).reshape(len(body_pose), NUM_JOINTS - 1, 3)
    n = len(bp)
    R = Rotation.from_rotvec(bp.reshape(-1, 3)).as_matrix().reshape(n, NUM_JOINTS - 1, 3, 3)
    J0 = rest_joints()
    G = np.zeros((n, NUM_JOINTS, 3, 3))
    G[:, 0] = np.eye(3)
    P = np.zeros((n, NUM_JOINTS, 3))
    for k in range(1, NUM_JOINTS):
        p = PARENTS[k]
        P[:, k] = P[:, p] + G[:, p] @ (J0[k] - J0[p])
        G[:, k] = G[:, p] @ R[:, k - 1]
    return P


def mirror_body_pose(body_pose: np.ndarray) -> np.ndarray:
    """Left-right mirror of body poses ``(N, 23, 3)`` (:func:`bodies.skeleton.mirror_pose`)."""
    full = np.concatenate([np.zeros_like(body_pose[:, :1]), body_pose], 1)
    return mirror_pose(full)[:, 1:]


def nearest_pose_distance(
    poses: np.ndarray, reference: np.ndarray, *, mirror: bool = True, chunk: int = 32
) -> np.ndarray:
    """Distance from each pose to the nearest reference pose (or its mirror), in millimetres.

    The distance of two poses is their mean joint distance on the rest skeleton
    (:func:`pose_joints`, root-relative, root rotation ignored):
    ``d(a, b) = 1/24 sum_j |p_j(a) - p_j(b)|``.

    Args:
        poses: ``(N, 23, 3)`` body poses.
        reference: ``(M, 23, 3)`` body poses.
        mirror: also compare with the mirrored reference poses.
        chunk: poses compared at a time (memory ``chunk * M * 24 * 3`` floats).

    Returns:
        ``(N,)`` distances in mm.
    """
    ref = np.asarray(reference, float).reshape(len(reference), NUM_JOINTS - 1, 3)
    if mirror:
        ref = np.concatenate([ref, mirror_body_pose(ref)])
    R = pose_joints(ref)
    P = pose_joints(poses)
    out = np.empty(len(P))
    for i in range(0, len(P), chunk):
        d = np.linalg.norm(P[i : i + chunk, None] - R[None], axis=-1).mean(-1)  # [c, M]
        out[i : i + chunk] = 1000.0 * d.min(1)
    return out


@dataclass(repr=False)
class SplitCheck:
    """One clip's test frames and how near each is to the training and validation poses."""

    clip: str
    distance_mm: np.ndarray  # (T_test,) to the nearest train/val pose or mirror
    kept: np.ndarray  # (T_test,) bool, distance >= threshold

    @property
    def dropped(self) -> int:
        """Test frames dropped as copies of training or validation poses."""
        return int((~self.kept).sum())

    def __repr__(self) -> str:
        return f"SplitCheck({self.clip!r}, kept={int(self.kept.sum())}, dropped={self.dropped})"


@functools.lru_cache(maxsize=4)
def check_test_split(threshold_mm: float = NEAR_MM) -> dict[str, SplitCheck]:
    """Which test frames of each clip lie within ``threshold_mm`` of a training/validation pose.

    Every clip's test block is compared with the training and validation blocks of all
    clips and with their mirrors (:func:`nearest_pose_distance`). The number dropped per clip
    is logged.

    Returns:
        Per clip name, its :class:`SplitCheck`.
    """
    bodies = {name: _body_poses(name) for name in CLIP_NAMES}
    reference = np.concatenate(
        [bp[split_frames(len(bp), s)] for bp in bodies.values() for s in ("train", "val")]
    )
    tests = {name: bp[split_frames(len(bp), "test")] for name, bp in bodies.items()}
    d_all = nearest_pose_distance(np.concatenate(list(tests.values())), reference, mirror=True)
    checks, start = {}, 0
    for name, test in tests.items():
        d = d_all[start : start + len(test)]
        start += len(test)
        checks[name] = SplitCheck(name, d, d >= threshold_mm)
    # one line for the whole split, the clips that lost poses named (walk and run lose all)
    per_clip = ", ".join(f"{n} {c.dropped}/{len(tests[n])}" for n, c in checks.items() if c.dropped)
    log.info(
        "test split: %d of %d poses dropped (within %g mm of a training or validation pose or its "
        "mirror): %s",
        sum(c.dropped for c in checks.values()),
        sum(len(t) for t in tests.values()),
        threshold_mm,
        per_clip,
    )
    return checks


def clip_poses(split: Split = "all", *, mirror: bool = True) -> np.ndarray:
    """Body poses ``(N, 23, 3)`` of all 15 clips, or of one split (module docstring).

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` (near copies of train/val poses dropped,
            :func:`check_test_split`) or ``"all"``.
        mirror: add the left-right mirrored poses (doubles the data).

    Returns:
        ``(N, 23, 3)`` axis-angle body poses (root excluded), clip by clip in
        :data:`CLIP_NAMES` order, the mirrored ones after all the others.
    """
    checks = check_test_split() if split == "test" else None
    out = []
    for name in CLIP_NAMES:
        bp = _body_poses(name)
        bp = bp[split_frames(len(bp), split)]
        if checks is not None:
            bp = bp[checks[name].kept]
        out.append(bp)
    poses = np.concatenate(out)
    if mirror:
        poses = np.concatenate([poses, mirror_body_pose(poses)])
    return poses
