"""The per-frame motion feature vector (HumanML3D in spirit) and its exact inverse.

One frame of a motion at :data:`FPS` becomes ``D = 224`` numbers (slices below). The heading
of a frame is the yaw of the root (pelvis) orientation by swing-twist decomposition about the
vertical axis ``y``: ``heading = 2 atan2(q_y, q_w)`` of the root quaternion ``(w, x, y, z)``;
the heading frame is the world rotated by ``-heading`` about ``y`` with its origin at the
root's ground projection. SMPL axes: y up, the body faces +z, its left side is +x; metres,
seconds, radians.

===============  ========  ===============================================================
slice            size      meaning
===============  ========  ===============================================================
ROOT_HEIGHT      1         pelvis height above the ground (m)
ROOT_VELOCITY    2         planar velocity (x, z) of the root from frame t to t + 1 in frame
                           t's heading frame (m/s); the last frame repeats the previous one
YAW_RATE         1         (heading_{t+1} - heading_t) wrapped to (-pi, pi], times FPS (rad/s);
                           the last frame repeats the previous one
ROT6D            24 * 6    6D rotations (first two rows, :func:`bodies.rotations.matrix_to_rot6d`)
                           of joint 0 = the root orientation with the heading removed
                           (``R_y(-heading) R_root``) and joints 1..23 = the local body pose
POSITIONS        24 * 3    joint positions in the heading frame (x, z relative to the root's
                           ground projection, y = height above the ground), forward kinematics
                           of the mean body's skeleton
CONTACTS         4         foot contact labels (0/1) of :data:`FOOT_JOINTS`
===============  ========  ===============================================================

Inverse: the 6D rotations give the body pose exactly; integrating the yaw rate from a start
heading gives each frame's heading, so the root orientation is ``R_y(heading_t) R_rel``;
integrating the planar velocity rotated by the heading from a start position gives the root's
ground position, and the root height gives ``y``. With the start heading and position of the
original motion, motion -> features -> motion is exact to float precision.

Conventions of this module: a :class:`~bodies.motion.dataset.Motion`'s ``transl`` is the pelvis'
world position (joint ``j`` is at ``transl + G_0 (J_j - J_0)`` for forward kinematics ``G`` of
the rest skeleton ``J`` = :func:`bodies.skeleton.rest_joints`), so the root's ground projection
is ``(transl_x, 0, transl_z)`` and ``ROOT_HEIGHT`` is ``transl_y``; the ground is ``y = 0``.
Velocities and yaw rates are per second at the motion's own frame rate (:data:`FPS` for every
motion of the dataset). Contacts (:func:`contact_labels`) come from kinematics: a foot joint
is in contact when it is within :data:`CONTACT_HEIGHT` of its rest height above the sole and
moves horizontally slower than :data:`CONTACT_SPEED`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from bodies.skeleton import LEFT_RIGHT, PARENTS, rest_joints

if TYPE_CHECKING:
    from bodies.motion.dataset import Motion

NUM_JOINTS = 24
FPS = 30
"""Frames per second of every motion in the feature space (clips are resampled to it)."""

ROOT_HEIGHT = slice(0, 1)
ROOT_VELOCITY = slice(1, 3)
YAW_RATE = slice(3, 4)
ROT6D = slice(4, 4 + NUM_JOINTS * 6)  # 4 .. 148
POSITIONS = slice(ROT6D.stop, ROT6D.stop + NUM_JOINTS * 3)  # 148 .. 220
CONTACTS = slice(POSITIONS.stop, POSITIONS.stop + 4)  # 220 .. 224
D = CONTACTS.stop
"""Numbers per frame."""

FOOT_JOINTS = (7, 8, 10, 11)
"""left_ankle, right_ankle, left_foot, right_foot: the joints of :data:`CONTACTS`, in order."""

SOLE_Y = -1.216
"""Height (m) of the sole in the rest skeleton's frame: the lowest vertex of the synthetic
model's template mesh (``v_template[:, 1].min()``; the rest pelvis is at ``y = -0.22``)."""

FOOT_HEIGHTS = tuple(float(rest_joints()[j, 1] - SOLE_Y) for j in FOOT_JOINTS)
"""Rest height (m) above the sole of each joint of :data:`FOOT_JOINTS`: 0.116 for the ankles,
0.061 for the toes (``foot`` joints); a foot standing flat has its joints at these heights."""

CONTACT_HEIGHT = 0.08
"""A foot joint touches the ground when it is less than this (m) above its rest height above
the sole (:data:`FOOT_HEIGHTS`): planted feet of the retargeted clips sit up to 0.07 m above
it (running, where DeepMimic's foot lands on its heel and rolls), swinging ones 0.1-0.6 m."""

CONTACT_SPEED = 0.7
"""... and its horizontal speed (central differences) is below this (m/s; 23 mm per frame at
30 fps; HumanML3D's threshold is 45 mm per frame at 20 fps): planted feet of the clips move
at 0.05-0.6 m/s, swinging ones at 1-8 m/s."""

_MIRROR_6D = np.array([1.0, -1.0, -1.0, -1.0, 1.0, 1.0])  # rows 0, 1 of M R M, M = diag(-1, 1, 1)


# ------------------------------------------------------------------ rotations and kinematics
def _rotvec_to_matrix(r: np.ndarray) -> np.ndarray:
    """Axis-angle ``(..., 3)`` to rotation matrices ``(..., 3, 3)`` (Rodrigues, via scipy)."""
    from scipy.spatial.transform import Rotation

    r = np.asarray(r, np.float64)
    flat = Rotation.from_rotvec(r.reshape(-1, 3)).as_matrix()
    return flat.reshape(*r.shape[:-1], 3, 3)


def _matrix_to_rotvec(R: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` to axis-angle ``(..., 3)`` (angles in ``[0, pi]``)."""
    from scipy.spatial.transform import Rotation

    flat = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_rotvec()
    return flat.reshape(*R.shape[:-2], 3)


def rot_y(angle: np.ndarray) -> np.ndarray:
    """Rotations about the vertical axis: ``(...,)`` angles (rad) to ``(..., 3, 3)``.

    ``R_y(a) = [[cos a, 0, sin a], [0, 1, 0], [-sin a, 0, cos a]]``, so ``R_y(pi/2)`` maps
    ``+z`` (where the body faces) to ``+x``.
    """
    a = np.asarray(angle, np.float64)
    c, s = np.cos(a), np.sin(a)
    o, i = np.zeros_like(a), np.ones_like(a)
    return np.stack([c, o, s, o, i, o, -s, o, c], -1).reshape(*a.shape, 3, 3)


def heading(R_root: np.ndarray) -> np.ndarray:
    """Yaw of root orientations by swing-twist about ``y``, wrapped to ``(-pi, pi]``.

    ``2 atan2(q_y, q_w)`` of the quaternion equals ``atan2(R_02 - R_20, R_00 + R_22)`` (both sides
    are the angle of ``(q_w + i q_y)^2``), which needs no quaternion. Example: a root yawed by
    30 degrees, ``R_y(pi/6)``, has heading ``pi/6``; one pitched forward with no yaw, 0.

    Args:
        R_root: ``(..., 3, 3)`` root rotation matrices.

    Returns:
        ``(...,)`` headings in radians.
    """
    return np.arctan2(R_root[..., 0, 2] - R_root[..., 2, 0], R_root[..., 0, 0] + R_root[..., 2, 2])


def wrap_angle(a: np.ndarray) -> np.ndarray:
    """Angles wrapped to ``(-pi, pi]``."""
    return np.pi - np.mod(np.pi - np.asarray(a, np.float64), 2 * np.pi)


def forward_kinematics(R: np.ndarray) -> np.ndarray:
    """Joint positions relative to the pelvis, for local rotations on the rest skeleton.

    ``G_0 = R_0``, ``G_k = G_parent R_k``, ``p_0 = 0``,
    ``p_k = p_parent + G_parent (J_k - J_parent)`` with ``J`` =
    :func:`bodies.skeleton.rest_joints` (the mean body of the synthetic model).

    Args:
        R: ``(..., 24, 3, 3)`` local rotations, the root's (global orientation) first.

    Returns:
        ``(..., 24, 3)`` positions in metres, the pelvis at the origin.
    """
    J = rest_joints()
    G = np.empty_like(R)
    P = np.zeros(R.shape[:-1])
    G[..., 0, :, :] = R[..., 0, :, :]
    for k in range(1, NUM_JOINTS):
        p = PARENTS[k]
        P[..., k, :] = P[..., p, :] + G[..., p, :, :] @ (J[k] - J[p])
        G[..., k, :, :] = G[..., p, :, :] @ R[..., k, :, :]
    return P


def motion_joints(motion: Motion) -> np.ndarray:
    """World joint positions of a motion, ``(T, 24, 3)`` (pelvis at ``transl``)."""
    R = _rotvec_to_matrix(motion.poses.reshape(-1, NUM_JOINTS, 3))
    return motion.transl[:, None, :] + forward_kinematics(R)


def rot6d_to_matrix(d6: np.ndarray) -> np.ndarray:
    """6D rotations (first two rows) to matrices by Gram-Schmidt, ``(..., 6) -> (..., 3, 3)``.

    The numpy twin of :func:`bodies.rotations.rot6d_to_matrix`.
    """
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / np.linalg.norm(a1, axis=-1, keepdims=True)
    b2 = a2 - (b1 * a2).sum(-1, keepdims=True) * b1
    b2 = b2 / np.linalg.norm(b2, axis=-1, keepdims=True)
    return np.stack([b1, b2, np.cross(b1, b2)], -2)


# ------------------------------------------------------------------ contacts
def contact_labels(world_joints: np.ndarray, fps: float = FPS) -> np.ndarray:
    """Foot contact labels from kinematics.

    Joint ``FOOT_JOINTS[i]`` touches the ground at frame ``t`` when its height is below
    ``FOOT_HEIGHTS[i] + CONTACT_HEIGHT`` and its horizontal speed (central differences, one-sided
    at the ends; 0 for a single frame) is below :data:`CONTACT_SPEED`.

    Args:
        world_joints: ``(..., T, 24, 3)`` world joint positions (ground at ``y = 0``).
        fps: frame rate of the positions.

    Returns:
        ``(..., T, 4)`` float64, 1.0 for contact.
    """
    feet = np.asarray(world_joints, np.float64)[..., list(FOOT_JOINTS), :]  # [..., T, 4, 3]
    low = feet[..., 1] < np.asarray(FOOT_HEIGHTS) + CONTACT_HEIGHT
    if feet.shape[-3] < 2:
        return low.astype(np.float64)
    vel = np.gradient(feet[..., [0, 2]], axis=-3) * fps
    slow = np.linalg.norm(vel, axis=-1) < CONTACT_SPEED
    return (low & slow).astype(np.float64)


# ------------------------------------------------------------------ motion <-> features
def motion_to_features(motion: Motion) -> np.ndarray:
    """A motion's feature vectors (layout in the module docstring).

    Velocities are scaled by ``motion.fps``; resample to :data:`FPS` first
    (:func:`bodies.motion.dataset.resample`) to get the dataset's features.

    Args:
        motion: ``T`` frames.

    Returns:
        ``(T, D)`` float64.
    """
    T = len(motion.transl)
    R = _rotvec_to_matrix(motion.poses.reshape(T, NUM_JOINTS, 3))  # [T, 24, 3, 3]
    h = heading(R[:, 0])
    unyaw = rot_y(-h)  # [T, 3, 3] world -> heading frame
    world = motion.transl[:, None, :] + forward_kinematics(R)  # [T, 24, 3]
    ground = motion.transl * np.array([1.0, 0.0, 1.0])
    local = R.copy()
    local[:, 0] = unyaw @ R[:, 0]

    out = np.zeros((T, D))
    out[:, ROOT_HEIGHT] = motion.transl[:, 1:2]
    if T > 1:
        step = (motion.transl[1:] - motion.transl[:-1]) * np.array([1.0, 0.0, 1.0])
        vel = np.einsum("tij,tj->ti", unyaw[:-1], step)[:, [0, 2]] * motion.fps
        yaw = wrap_angle(h[1:] - h[:-1]) * motion.fps
        out[:-1, ROOT_VELOCITY], out[-1, ROOT_VELOCITY] = vel, vel[-1]
        out[:-1, YAW_RATE], out[-1, YAW_RATE] = yaw[:, None], yaw[-1]
    out[:, ROT6D] = local[:, :, :2, :].reshape(T, NUM_JOINTS * 6)
    rel = np.einsum("tij,tkj->tki", unyaw, world - ground[:, None, :])
    out[:, POSITIONS] = rel.reshape(T, NUM_JOINTS * 3)
    out[:, CONTACTS] = contact_labels(world, motion.fps)
    return out


def integrate_root(
    feats: np.ndarray,
    *,
    fps: float = FPS,
    start_yaw: Any = 0.0,
    start_xz: Any = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's heading and root ground position, integrated from the features.

    ``heading_0 = start_yaw``, ``heading_{t+1} = heading_t + yaw_rate_t / fps``;
    ``xz_0 = start_xz``, ``xz_{t+1} = xz_t + R_y(heading_t) (v_x, 0, v_z)_t / fps``.

    Args:
        feats: ``(..., T, D)``.
        fps: frame rate of the features.
        start_yaw: heading of the first frame (rad), a float or ``(...,)``.
        start_xz: root ground position of the first frame, ``(2,)`` or ``(..., 2)``.

    Returns:
        ``(heading (..., T), xz (..., T, 2))``.
    """
    feats = np.asarray(feats, np.float64)
    lead = feats.shape[:-2]
    yaw0 = np.broadcast_to(np.asarray(start_yaw, np.float64), lead)
    xz0 = np.broadcast_to(np.asarray(start_xz, np.float64), (*lead, 2))
    steps = feats[..., :-1, YAW_RATE.start] / fps
    h = yaw0[..., None] + np.concatenate([np.zeros((*lead, 1)), np.cumsum(steps, -1)], -1)
    v = feats[..., :-1, ROOT_VELOCITY] / fps  # [..., T-1, 2] (x, z) in heading frames
    c, s = np.cos(h[..., :-1]), np.sin(h[..., :-1])
    dx = c * v[..., 0] + s * v[..., 1]  # R_y(h) (v_x, 0, v_z)
    dz = -s * v[..., 0] + c * v[..., 1]
    d = np.stack([dx, dz], -1)
    xz = xz0[..., None, :] + np.concatenate([np.zeros((*lead, 1, 2)), np.cumsum(d, -2)], -2)
    return h, xz


def features_to_motion(
    feats: np.ndarray,
    *,
    fps: float = FPS,
    label: str = "",
    start_yaw: float = 0.0,
    start_xz: Any = (0.0, 0.0),
) -> Motion:
    """Invert :func:`motion_to_features` (module docstring): SMPL poses and translation.

    Args:
        feats: ``(T, D)``.
        fps: frame rate of the features (and of the motion returned).
        label: the motion's label.
        start_yaw: heading of the first frame (rad).
        start_xz: root ground position ``(x, z)`` of the first frame (m).

    Returns:
        A :class:`~bodies.motion.dataset.Motion` of ``T`` frames.
    """
    from bodies.motion.dataset import Motion

    feats = _check_feats(feats, batched=False)
    T = len(feats)
    h, xz = integrate_root(feats, fps=fps, start_yaw=start_yaw, start_xz=start_xz)
    local = rot6d_to_matrix(feats[:, ROT6D].reshape(T, NUM_JOINTS, 6))
    local[:, 0] = rot_y(h) @ local[:, 0]
    aa = _matrix_to_rotvec(local)
    transl = np.stack([xz[:, 0], feats[:, ROOT_HEIGHT.start], xz[:, 1]], -1)
    return Motion(
        label=label, fps=float(fps), global_orient=aa[:, 0], body_pose=aa[:, 1:], transl=transl
    )


def world_joints(
    feats: np.ndarray,
    *,
    fps: float = FPS,
    start_yaw: Any = 0.0,
    start_xz: Any = (0.0, 0.0),
) -> np.ndarray:
    """World joint positions from the features' ``POSITIONS`` and the integrated root.

    ``p_world = R_y(heading_t) p_heading + (x_t, 0, z_t)`` (:func:`integrate_root`).

    Args:
        feats: ``(..., T, D)``.
        fps: frame rate of the features.
        start_yaw: heading of the first frame (rad), a float or ``(...,)``.
        start_xz: root ground position of the first frame, ``(2,)`` or ``(..., 2)``.

    Returns:
        ``(..., T, 24, 3)`` float64, metres, ground at ``y = 0``.
    """
    feats = _check_feats(feats, batched=True)
    h, xz = integrate_root(feats, fps=fps, start_yaw=start_yaw, start_xz=start_xz)
    p = feats[..., POSITIONS].reshape(*feats.shape[:-1], NUM_JOINTS, 3)
    c, s = np.cos(h)[..., None], np.sin(h)[..., None]
    x = c * p[..., 0] + s * p[..., 2] + xz[..., None, 0]
    z = -s * p[..., 0] + c * p[..., 2] + xz[..., None, 1]
    return np.stack([x, p[..., 1], z], -1)


# ------------------------------------------------------------------ mirroring
def _mirror_map() -> tuple[np.ndarray, np.ndarray]:
    """Source index and sign per output dimension of a left-right mirror (x -> -x)."""
    pair = list(range(NUM_JOINTS))
    for a, b in LEFT_RIGHT.items():
        pair[a], pair[b] = b, a
    perm, sign = np.arange(D), np.ones(D)
    sign[ROOT_VELOCITY.start] = -1.0  # x of the planar velocity
    sign[YAW_RATE] = -1.0
    for j in range(NUM_JOINTS):
        r, q = ROT6D.start + 6 * j, ROT6D.start + 6 * pair[j]
        perm[r : r + 6], sign[r : r + 6] = np.arange(q, q + 6), _MIRROR_6D  # M R M
        p, q = POSITIONS.start + 3 * j, POSITIONS.start + 3 * pair[j]
        perm[p : p + 3], sign[p] = np.arange(q, q + 3), -1.0
    for i, j in enumerate(FOOT_JOINTS):
        perm[CONTACTS.start + i] = CONTACTS.start + FOOT_JOINTS.index(pair[j])
    return perm, sign


_MIRROR_PERM, _MIRROR_SIGN = _mirror_map()


def mirror_features(feats: Any) -> Any:
    """Left-right mirror (reflection ``x -> -x``) in feature space; an involution.

    Heading and yaw rate change sign, the planar velocity's x changes sign, each joint's 6D
    rotation ``R`` becomes ``M R M`` (``M = diag(-1, 1, 1)``) and its position ``M p``, with the
    left and right joints (and contacts) swapped. Equal to mirroring the motion
    (:func:`bodies.skeleton.mirror_pose`, ``transl_x -> -transl_x``) and featurising it.

    Args:
        feats: ``(..., D)`` numpy array or torch tensor.

    Returns:
        Same type, shape and dtype.
    """
    if feats.shape[-1] != D:
        from mpgym.errors import MpgymError

        raise MpgymError(f"features have shape {tuple(feats.shape)}; expected (..., {D}).")
    if isinstance(feats, np.ndarray):
        return feats[..., _MIRROR_PERM] * _MIRROR_SIGN.astype(feats.dtype)
    import torch

    perm = torch.as_tensor(_MIRROR_PERM, device=feats.device)
    sign = torch.as_tensor(_MIRROR_SIGN, dtype=feats.dtype, device=feats.device)
    return feats[..., perm] * sign


def _check_feats(feats: Any, *, batched: bool) -> np.ndarray:
    """``feats`` as float64 ``(T, D)`` (or ``(..., T, D)`` when batched), finite; else refuse."""
    from mpgym.errors import MpgymError

    if hasattr(feats, "detach"):
        feats = feats.detach().cpu().numpy()
    arr = np.asarray(feats, np.float64)
    ok = arr.ndim >= 2 if batched else arr.ndim == 2
    if not ok or arr.shape[-1] != D or arr.shape[-2] < 1:
        want = f"(..., T, {D})" if batched else f"(T, {D})"
        raise MpgymError(f"features have shape {arr.shape}; expected {want} with T >= 1.")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr).all(-1))[0]
        raise MpgymError(f"features are not finite at index {tuple(int(i) for i in bad)}.")
    return arr
