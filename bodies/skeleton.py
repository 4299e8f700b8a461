"""The SMPL kinematic tree: joint names, parents and the rest skeleton of the synthetic model.

SMPL's 24 joints, root first; ``PARENTS`` is the first row of SMPL's ``kintree_table``
(with ``-1`` for the root). Coordinates: metres, y up, the body faces +z, its left side is +x,
arms out in a T (SMPL's rest pose).
"""

from __future__ import annotations

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hand",
    "right_hand",
)
PARENTS: tuple[int, ...] = (
    -1,
    0,
    0,
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    9,
    9,
    12,
    13,
    14,
    16,
    17,
    18,
    19,
    20,
    21,
)
NUM_JOINTS = 24
NUM_BODY_JOINTS = 23  # all but the root: ``body_pose`` has 23 * 3 numbers
LEFT_RIGHT = {1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21, 22: 23}
"""Left joint -> right joint, for mirroring."""

# Rest skeleton of the synthetic model (left side; the right side mirrors x). Proportions of an
# adult of ~1.70 m, in SMPL's frame (pelvis ~0.2 m below the origin).
_LEFT = {
    0: (0.0, -0.22, 0.0),
    1: (0.075, -0.31, 0.0),
    3: (0.0, -0.11, -0.01),
    4: (0.095, -0.70, 0.01),
    6: (0.0, 0.02, -0.005),
    7: (0.09, -1.10, -0.035),
    9: (0.0, 0.08, -0.01),
    10: (0.105, -1.155, 0.095),
    12: (0.0, 0.28, -0.03),
    13: (0.075, 0.19, -0.02),
    15: (0.0, 0.37, 0.0),
    16: (0.175, 0.215, -0.025),
    18: (0.43, 0.215, -0.035),
    20: (0.68, 0.215, -0.03),
    22: (0.765, 0.21, -0.03),
}


def rest_joints() -> np.ndarray:
    """The designed rest skeleton, ``(24, 3)`` float64."""
    J = np.zeros((NUM_JOINTS, 3))
    for k, p in _LEFT.items():
        J[k] = p
        if k in LEFT_RIGHT:
            J[LEFT_RIGHT[k]] = (-p[0], p[1], p[2])
    return J


def children(parents: tuple[int, ...] = PARENTS) -> list[list[int]]:
    """Children of each joint."""
    out: list[list[int]] = [[] for _ in parents]
    for j, p in enumerate(parents):
        if p >= 0:
            out[p].append(j)
    return out


def mirror_pose(pose: np.ndarray) -> np.ndarray:
    """Mirror axis-angle poses left <-> right (reflection x -> -x).

    Args:
        pose: ``(..., 24, 3)`` axis-angle.

    Returns:
        ``(..., 24, 3)``: swapped sides, with the y and z components negated.
    """
    out = pose.copy()
    for a, b in LEFT_RIGHT.items():
        out[..., a, :], out[..., b, :] = pose[..., b, :], pose[..., a, :]
    out[..., 1:] *= -1
    return out
