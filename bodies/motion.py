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
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bodies.skeleton import NUM_JOINTS, mirror_pose

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


def clip_poses(split: str = "all", *, mirror: bool = True, holdout: float = 0.2) -> np.ndarray:
    """Body poses ``(N, 23, 3)`` of all 15 clips.

    Args:
        split: ``"train"`` (the first 80% of each clip's frames), ``"test"`` (the last 20%, a
            contiguous block so test poses are not neighbours of training frames) or ``"all"``.
        mirror: add the left-right mirrored poses (doubles the data).
        holdout: fraction of each clip held out for ``"test"``.

    Returns:
        ``(N, 23, 3)`` axis-angle body poses (root excluded).
    """
    out = []
    for name in CLIP_NAMES:
        bp = load_clip(name).body_pose
        cut = int(round(len(bp) * (1 - holdout)))
        bp = {"train": bp[:cut], "test": bp[cut:], "all": bp}[split]
        out.append(bp)
    poses = np.concatenate(out)
    if mirror:
        full = np.concatenate([np.zeros_like(poses[:, :1]), poses], 1)
        poses = np.concatenate([poses, mirror_pose(full)[:, 1:]])
    return poses
