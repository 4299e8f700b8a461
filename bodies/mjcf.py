"""A MuJoCo humanoid (MJCF) built from an SMPL-format body: one body per SMPL joint, same tree.

**Frames.** MuJoCo's world is z up; SMPL's is y up, the body facing +z, its left +x. A point maps
as ``p_mj = A p_smpl`` with the rotation ``A = [[0, 0, 1], [1, 0, 0], [0, 1, 0]]`` (SMPL's
forward +z -> +x, left +x -> +y, up +y -> +z: MuJoCo's usual forward-x, left-y, up-z), a
rotation as ``A R A^T`` and a rotation vector as ``A r``. Every body frame is parallel to the
world in the rest pose (SMPL's T pose), so a joint's local rotation in MuJoCo is exactly
``A R_j A^T`` for SMPL's local rotation ``R_j``; body ``j`` sits at SMPL joint ``j`` of the
shape ``betas`` (:class:`bodies.model.BodyModel`), offset from its parent by ``A (J_j - J_p)``.

**Joints** (:data:`JOINTS`, indexed like :data:`bodies.skeleton.JOINT_NAMES`). The pelvis has a
free joint. Three-DoF joints are *ball* joints: ``qpos`` holds a unit quaternion ``(w, x, y,
z)``, so any rotation maps to ``qpos`` and back exactly, with no gimbal lock (three hinges
would have one: the shoulders of the DeepMimic clips come within 15 degrees of it in every
Euler order). Knees and elbows are
hinges, as in DeepMimic's humanoid3d and in its clips (knees about the lateral axis y, elbows
about the vertical axis z of the T pose, both positive when flexing). DeepMimic's clips never
move the collars, wrists, hands and toes (``foot``): those bodies are welded to their parents
(no joint). The spine (``spine1..3``) and the neck and head, which the clips move as three and
two equal parts of DeepMimic's chest and neck, keep a ball joint each, so the clips are exact.

**Limits.** MuJoCo limits a ball joint by its total rotation (a cone): :attr:`JointSpec.limit`
is set from human ranges of motion and at least 10 degrees beyond the largest rotation in the 15
DeepMimic clips. Per-axis human ranges bound the PD *targets* instead (:attr:`JointSpec.target`,
the actuators' ``ctrlrange``: the rotation-vector components of a ball joint, the angle of a
hinge), each covering the clips with a margin.

**Actuators.** Position (PD) actuators, one per hinge and three per ball joint (MuJoCo gives a
ball joint's actuator length as the component of its rotation vector along ``gear``), listed in
SMPL joint order, x, y, z. Gains and torque limits are DeepMimic humanoid3d's
(``data/controllers/humanoid3d_phase_rot_ctrl.txt`` and ``data/characters/humanoid3d.txt``):
chest kp 1000 / kd 100 / 200 Nm, neck 100 / 10 / 50, hip 500 / 50 / 200, knee 500 / 50 / 150,
ankle 400 / 40 / 90, shoulder 400 / 40 / 100, elbow 300 / 30 / 60; each spine part gets three
times the chest's kp and kd and each neck part twice the neck's (springs in series: three parts
bending equally then resist a bend of the whole chest as DeepMimic's one joint does), and every
gain and torque limit is scaled by the humanoid's mass over humanoid3d's 45 kg. DeepMimic
integrates its PD implicitly (stable PD); MuJoCo's ``implicitfast`` integrator treats only the
damping so, and an armature of 0.06 kg m^2 per DoF keeps the stiffness stable at 1/120 s.

**Geometry and mass.** Each part ``j`` (vertices whose largest skinning weight is ``j``) gets a
capsule along its principal axis (PCA), radius the mean distance of its vertices to that axis,
length their extent along it; heel and toe parts get boxes, axis-aligned in the rest pose with
a shared flat sole. Part volumes are the body's interior split by skinning weight (interior
points on a grid by ray parity, each carrying its nearest vertex's weights), scaled to the
mesh's exact volume; masses are those volumes at :attr:`HumanoidConfig.density` (the mean
synthetic body, 1.79 m and slim: 59.9 kg, the trunk 42 %, a thigh 7.7 kg, a foot 1 kg).
Geoms collide with the floor only. ``ghost=True`` adds a translucent copy as mocap bodies (no
dynamics) to draw a reference motion.

**qpos layout.** MuJoCo orders ``qpos`` by its depth-first body order, not SMPL's breadth-first
one: :attr:`Humanoid.qpos_slices` gives each SMPL joint's slice; :func:`pose_to_qpos` and
:func:`qpos_to_pose` convert.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bodies.skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS, children
from mpgym.errors import MpgymError

__all__ = [
    "A_SMPL_TO_MJ",
    "JOINTS",
    "Humanoid",
    "HumanoidConfig",
    "JointSpec",
    "Pose",
    "build_humanoid",
    "check_betas",
    "fit_capsule",
    "humanoid_mjcf",
    "part_volumes",
    "pose_to_qpos",
    "qpos_to_pose",
    "qpos_to_targets",
]

A_SMPL_TO_MJ = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
"""``p_mj = A p_smpl``: SMPL's y-up frame to MuJoCo's z-up one (module docstring)."""

DEEPMIMIC_MASS = 45.0
"""Total mass (kg) of DeepMimic's humanoid3d, for which its gains were tuned."""


@dataclass(frozen=True)
class JointSpec:
    """How one SMPL joint is simulated (degrees in the table, radians in the MJCF)."""

    kind: Literal["free", "ball", "hinge", "locked"]
    """``free`` (pelvis), ``ball`` (3 DoF), ``hinge`` (1 DoF) or ``locked`` (welded)."""
    axis: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """A hinge's axis in the body frame (MuJoCo axes)."""
    target: tuple[tuple[float, float], ...] = ()
    """PD-target range (deg): per rotation-vector component x, y, z (ball) or the angle (hinge)."""
    limit: tuple[float, float] = (0.0, 0.0)
    """Hard limit (deg): ``(0, cone)`` for a ball joint, the angle range of a hinge."""
    kp: float = 0.0
    """DeepMimic's proportional gain (Nm/rad) before mass scaling."""
    kd: float = 0.0
    """DeepMimic's derivative gain (Nm s/rad) before mass scaling."""
    torque: float = 0.0
    """DeepMimic's torque limit (Nm) before mass scaling."""

    @property
    def dofs(self) -> int:
        """Degrees of freedom (actuators) of the joint; 6 for the free root."""
        return {"free": 6, "ball": 3, "hinge": 1, "locked": 0}[self.kind]


def _mirror(spec: JointSpec) -> JointSpec:
    """The right-side twin of a left joint.

    The reflection ``M = diag(1, -1, 1)`` (MuJoCo's lateral axis is y) turns a rotation about
    ``a`` by ``theta`` into one about ``-M a`` by ``theta``: x and z components change sign.
    """
    flip = np.array([-1.0, 1.0, -1.0])
    if spec.kind == "ball":
        target = tuple(
            (-hi, -lo) if f < 0 else (lo, hi) for f, (lo, hi) in zip(flip, spec.target, strict=True)
        )
        return JointSpec(**{**spec.__dict__, "target": target})
    if spec.kind == "hinge":
        axis = tuple(float(v) + 0.0 for v in flip * np.asarray(spec.axis))
        return JointSpec(**{**spec.__dict__, "axis": axis})
    return spec


_LOCK = JointSpec("locked")
_SPINE = JointSpec(
    "ball", target=((-25, 25), (-20, 35), (-25, 25)), limit=(0, 45), kp=3000, kd=300, torque=200
)
_NECK = JointSpec(
    "ball", target=((-30, 30), (-35, 35), (-50, 50)), limit=(0, 60), kp=200, kd=20, torque=50
)
_LEFT_SPECS = {
    "hip": JointSpec(
        "ball", target=((-40, 75), (-150, 40), (-75, 80)), limit=(0, 155), kp=500, kd=50, torque=200
    ),
    "knee": JointSpec(
        "hinge", axis=(0, 1, 0), target=((-15, 160),), limit=(-15, 165), kp=500, kd=50, torque=150
    ),
    "ankle": JointSpec(
        "ball", target=((-60, 50), (-70, 60), (-60, 65)), limit=(0, 75), kp=400, kd=40, torque=90
    ),
    "shoulder": JointSpec(
        "ball",
        target=((-105, 90), (-110, 90), (-130, 95)),
        limit=(0, 150),
        kp=400,
        kd=40,
        torque=100,
    ),
    "elbow": JointSpec(
        "hinge", axis=(0, 0, -1), target=((-5, 150),), limit=(-5, 155), kp=300, kd=30, torque=60
    ),
}


def _joint_table() -> tuple[JointSpec, ...]:
    out = []
    for name in JOINT_NAMES:
        side, _, part = name.partition("_")
        if name == "pelvis":
            out.append(JointSpec("free"))
        elif name.startswith("spine"):
            out.append(_SPINE)
        elif name in ("neck", "head"):
            out.append(_NECK)
        elif part in _LEFT_SPECS:
            spec = _LEFT_SPECS[part]
            out.append(spec if side == "left" else _mirror(spec))
        else:  # collars, wrists, hands, feet (toes)
            out.append(_LOCK)
    return tuple(out)


JOINTS: tuple[JointSpec, ...] = _joint_table()
"""Per SMPL joint (:data:`bodies.skeleton.JOINT_NAMES` order), how it is simulated."""


def _dfs_order() -> list[int]:
    """SMPL joints in MuJoCo's body order (depth first, children in index order)."""
    kids, order, stack = children(), [], [0]
    while stack:
        j = stack.pop()
        order.append(j)
        stack.extend(reversed(kids[j]))
    return order


BODY_ORDER: tuple[int, ...] = tuple(_dfs_order())
"""SMPL joint index of MuJoCo body ``1, 2, ...`` (body 0 is the world)."""


def _qpos_slices() -> tuple[slice, ...]:
    size = {"free": 7, "ball": 4, "hinge": 1, "locked": 0}
    out: list[slice] = [slice(0, 0)] * NUM_JOINTS
    start = 0
    for j in BODY_ORDER:
        n = size[JOINTS[j].kind]
        out[j] = slice(start, start + n)
        start += n
    return tuple(out)


QPOS_SLICES: tuple[slice, ...] = _qpos_slices()
"""Per SMPL joint, its slice of ``qpos`` (empty for locked joints)."""
NQ = max(s.stop for s in QPOS_SLICES)
"""Length of ``qpos`` (7 for the root, 4 per ball joint, 1 per hinge)."""
ACTUATED: tuple[int, ...] = tuple(j for j, s in enumerate(JOINTS) if s.kind in ("ball", "hinge"))
"""SMPL joints with actuators, in actuator order."""


@dataclass(frozen=True)
class HumanoidConfig:
    """How :func:`build_humanoid` makes the MJCF."""

    model: str = "synthetic"
    """Body model: ``"synthetic"`` or a path to an SMPL model file."""
    density: float = 985.0
    """Body density (kg/m^3) for the part masses (whole body with the lungs' air)."""
    timestep: float = 1.0 / 120.0
    """Physics step (s): 4 per 30-Hz policy step; stable with this armature (tested)."""
    armature: float = 0.06
    """Rotor inertia added to each joint DoF (kg m^2): the stiff PD is stable at ``timestep``."""
    friction: float = 0.9
    """Sliding friction of the floor contacts (pybullet's DeepMimic floor: 0.9)."""
    gain_scale: Literal["mass", "none"] = "mass"
    """Scale DeepMimic's gains and torque limits by ``mass / 45 kg`` (``"mass"``) or not."""
    ghost: bool = False
    """Add a translucent, non-colliding copy (mocap bodies ``ghost_<joint>``) for references."""
    voxel: float = 0.01
    """Grid spacing (m) of the interior points that split the body's volume into parts."""


@dataclass(frozen=True)
class Pose:
    """SMPL parameters of a humanoid state (:func:`qpos_to_pose`)."""

    global_orient: np.ndarray
    """``(..., 3)`` root rotation, axis-angle, SMPL frame."""
    body_pose: np.ndarray
    """``(..., 23, 3)`` local joint rotations, axis-angle (locked joints zero)."""
    transl: np.ndarray
    """``(..., 3)`` pelvis position (m), SMPL frame (y up)."""


@dataclass(frozen=True, repr=False)
class Humanoid:
    """A generated humanoid: its MJCF and what the env needs to read its state."""

    xml: str
    """The MJCF document."""
    betas: np.ndarray
    """``(S,)`` the shape it was built for."""
    joints: np.ndarray
    """``(24, 3)`` rest joint positions, MuJoCo frame, pelvis at the origin."""
    masses: np.ndarray
    """``(24,)`` part masses (kg), SMPL joint order."""
    sole_height: float
    """Height (m) of the pelvis above the soles in the rest pose."""
    ctrl_range: np.ndarray
    """``(nu, 2)`` PD-target range of each actuator (rad)."""
    actuator_names: tuple[str, ...]
    """Actuator names, SMPL joint order (``left_hip_x``, ..., ``left_knee``, ...)."""
    config: HumanoidConfig = field(default_factory=HumanoidConfig)
    """The options it was built with."""

    body_names: tuple[str, ...] = JOINT_NAMES
    """MuJoCo body name of each SMPL joint (the SMPL joint names)."""
    qpos_slices: tuple[slice, ...] = QPOS_SLICES
    """Per SMPL joint, its slice of ``qpos``."""

    @property
    def total_mass(self) -> float:
        """Mass of the whole body (kg)."""
        return float(self.masses.sum())

    @property
    def joint_names(self) -> tuple[str, ...]:
        """MuJoCo joint names in ``qpos`` order: ``root`` (free), then the others depth first."""
        moving = [JOINT_NAMES[j] for j in BODY_ORDER if JOINTS[j].kind in ("ball", "hinge")]
        return ("root", *moving)

    @property
    def nu(self) -> int:
        """Number of actuators (the action size)."""
        return len(self.actuator_names)

    def compile(self) -> Any:
        """The ``mujoco.MjModel`` of :attr:`xml`."""
        import mujoco

        return mujoco.MjModel.from_xml_string(self.xml)

    def __repr__(self) -> str:
        return (
            f"Humanoid(mass={self.total_mass:.1f} kg, nq={NQ}, nu={self.nu}, "
            f"ghost={self.config.ghost})"
        )


# ------------------------------------------------------------------ pose <-> qpos
def _quat_wxyz(rotvec: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    q = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_quat(canonical=True)  # x y z w
    return q[:, [3, 0, 1, 2]].reshape(*rotvec.shape[:-1], 4)


def _rotvec(quat_wxyz: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    q = quat_wxyz.reshape(-1, 4)[:, [1, 2, 3, 0]]
    return Rotation.from_quat(q).as_rotvec().reshape(*quat_wxyz.shape[:-1], 3)


def pose_to_qpos(global_orient: Any, body_pose: Any, transl: Any) -> np.ndarray:
    """SMPL parameters to the humanoid's ``qpos`` (exact for poses it can take).

    Ball joints take the rotation as a quaternion; a hinge takes the component of the rotation
    vector along its axis (exact when the rotation is about that axis); locked joints drop
    theirs. Rotations map by ``A`` (module docstring).

    Args:
        global_orient: ``(..., 3)`` root axis-angle, SMPL frame.
        body_pose: ``(..., 23, 3)`` or ``(..., 69)`` axis-angle.
        transl: ``(..., 3)`` pelvis position (m), SMPL frame (a Motion's ``transl``).

    Returns:
        ``(..., NQ)`` float64.
    """
    go = np.asarray(global_orient, np.float64)
    bp = np.asarray(body_pose, np.float64)
    tr = np.asarray(transl, np.float64)
    if bp.shape[-1] == 3 * (NUM_JOINTS - 1):
        bp = bp.reshape(*bp.shape[:-1], NUM_JOINTS - 1, 3)
    lead = go.shape[:-1]
    if go.shape[-1:] != (3,) or bp.shape != (*lead, NUM_JOINTS - 1, 3) or tr.shape != (*lead, 3):
        raise MpgymError(
            f"pose_to_qpos got global_orient {go.shape}, body_pose {bp.shape}, transl "
            f"{tr.shape}; expected (..., 3), (..., 23, 3) or (..., 69), (..., 3)."
        )
    rv = np.concatenate([go[..., None, :], bp], -2) @ A_SMPL_TO_MJ.T  # [..., 24, 3] MuJoCo
    qpos = np.zeros((*lead, NQ))
    qpos[..., 0:3] = tr @ A_SMPL_TO_MJ.T
    for j, spec in enumerate(JOINTS):
        s = QPOS_SLICES[j]
        if spec.kind in ("free", "ball"):
            qpos[..., s.stop - 4 : s.stop] = _quat_wxyz(rv[..., j, :])
        elif spec.kind == "hinge":
            qpos[..., s.start] = rv[..., j, :] @ np.asarray(spec.axis, np.float64)
    return qpos


def qpos_to_pose(qpos: Any) -> Pose:
    """The humanoid's ``qpos`` to SMPL parameters (the inverse of :func:`pose_to_qpos`).

    Args:
        qpos: ``(..., NQ)``.

    Returns:
        :class:`Pose` with rotation angles in ``[0, pi]`` and locked joints at zero.
    """
    q = np.asarray(qpos, np.float64)
    if q.shape[-1:] != (NQ,):
        raise MpgymError(f"qpos has shape {q.shape}; expected (..., {NQ}).")
    lead = q.shape[:-1]
    rv = np.zeros((*lead, NUM_JOINTS, 3))
    for j, spec in enumerate(JOINTS):
        s = QPOS_SLICES[j]
        if spec.kind in ("free", "ball"):
            quat = q[..., s.stop - 4 : s.stop]
            rv[..., j, :] = _rotvec(quat / np.linalg.norm(quat, axis=-1, keepdims=True))
        elif spec.kind == "hinge":
            rv[..., j, :] = q[..., s.start, None] * np.asarray(spec.axis, np.float64)
    rv = rv @ A_SMPL_TO_MJ  # back to SMPL axes: r_smpl = A^T r_mj
    return Pose(rv[..., 0, :], rv[..., 1:, :], q[..., 0:3] @ A_SMPL_TO_MJ)


def qpos_to_targets(qpos: Any) -> np.ndarray:
    """The PD targets that hold a ``qpos``: one per actuator, in actuator order.

    A ball joint's three targets are its rotation vector (MuJoCo axes, what its actuators'
    lengths measure), a hinge's its angle; the root has none.

    Args:
        qpos: ``(..., NQ)``.

    Returns:
        ``(..., nu)`` radians.
    """
    q = np.asarray(qpos, np.float64)
    if q.shape[-1:] != (NQ,):
        raise MpgymError(f"qpos has shape {q.shape}; expected (..., {NQ}).")
    out = []
    for j in ACTUATED:
        s = QPOS_SLICES[j]
        if JOINTS[j].kind == "ball":
            quat = q[..., s]
            out.append(_rotvec(quat / np.linalg.norm(quat, axis=-1, keepdims=True)))
        else:
            out.append(q[..., s])
    return np.concatenate(out, -1)


# ------------------------------------------------------------------ geometry and mass
def fit_capsule(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """A capsule along the points' principal axis.

    The axis is the first principal component through the centroid; the radius is the mean
    distance of the points to it; the segment spans the points' 1st-99th percentile along it,
    shortened by the radius at each end (a sphere when the part is no longer than wide).

    Args:
        points: ``(N, 3)``, ``N >= 3``.

    Returns:
        ``(start (3,), end (3,), radius)``.
    """
    c = points.mean(0)
    x = points - c
    u = np.linalg.svd(x, full_matrices=False)[2][0]
    t = x @ u
    r = float(np.linalg.norm(x - t[:, None] * u, axis=1).mean())
    lo, hi = np.percentile(t, [1.0, 99.0])
    mid, half = 0.5 * (lo + hi), max(0.5 * (hi - lo) - r, 1e-3)
    return c + (mid - half) * u, c + (mid + half) * u, r


def _interior_points(vertices: np.ndarray, faces: np.ndarray, spacing: float) -> np.ndarray:
    """Grid points inside a closed mesh, by the parity of crossings along vertical rays.

    Rays run along y (SMPL's up axis) through an (x, z) grid offset by an irrational fraction
    of a cell, so no ray meets an edge exactly.
    """
    tri = vertices[faces][:, :, [0, 2]]  # [F, 3, 2] projected on the x-z plane
    lo = vertices[:, [0, 2]].min(0) - spacing * (0.5 + 1 / math.pi)
    i0 = np.ceil((tri.min(1) - lo) / spacing).astype(int)
    i1 = np.floor((tri.max(1) - lo) / spacing).astype(int)
    n = np.maximum(i1 - i0 + 1, 0)  # [F, 2] candidate columns per triangle
    counts = n[:, 0] * n[:, 1]
    f = np.repeat(np.arange(len(faces)), counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    ix, iz = i0[f, 0] + k // np.maximum(n[f, 1], 1), i0[f, 1] + k % np.maximum(n[f, 1], 1)
    p = lo + spacing * np.stack([ix, iz], 1)
    a, b, c = tri[f, 0], tri[f, 1], tri[f, 2]
    det = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    ok = np.abs(det) > 1e-14
    s = ((p - a)[:, 0] * (c - a)[:, 1] - (p - a)[:, 1] * (c - a)[:, 0]) / np.where(ok, det, 1)
    t = ((b - a)[:, 0] * (p - a)[:, 1] - (b - a)[:, 1] * (p - a)[:, 0]) / np.where(ok, det, 1)
    hit = ok & (s >= 0) & (t >= 0) & (s + t <= 1)
    y3 = vertices[faces[f[hit]]][:, :, 1]
    y = y3[:, 0] + s[hit] * (y3[:, 1] - y3[:, 0]) + t[hit] * (y3[:, 2] - y3[:, 0])
    col = ix[hit] * (iz.max(initial=0) + 1) + iz[hit]
    order = np.lexsort((y, col))
    col, y = col[order], y[order]
    out = []
    ylo = vertices[:, 1].min()
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    for s0, s1 in zip(starts, np.r_[starts[1:], len(col)], strict=True):
        if (s1 - s0) % 2:  # a grazing ray: leave the column out
            continue
        cx, cz = divmod(int(col[s0]), int(iz.max(initial=0) + 1))
        for y0, y1 in y[s0:s1].reshape(-1, 2):
            ys = ylo + spacing * np.arange(np.ceil((y0 - ylo) / spacing), (y1 - ylo) / spacing)
            xz = lo + spacing * np.array([cx, cz])
            out.append(np.column_stack([np.full(len(ys), xz[0]), ys, np.full(len(ys), xz[1])]))
    return np.concatenate(out) if out else np.zeros((0, 3))


def mesh_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume of a closed, outward-oriented mesh (divergence theorem)."""
    t = vertices[faces]
    return float(np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)


def part_volumes(
    vertices: np.ndarray, faces: np.ndarray, weights: np.ndarray, *, spacing: float = 0.01
) -> np.ndarray:
    """The body's volume split by skinning weight.

    Interior grid points (:func:`_interior_points`) each carry the skinning weights of their
    nearest vertex; part ``j`` gets ``sum_points w_j`` cells, scaled so the parts add up to the
    mesh's exact volume (:func:`mesh_volume`).

    Args:
        vertices: ``(V, 3)`` a closed mesh (SMPL frame, y up).
        faces: ``(F, 3)`` int.
        weights: ``(V, J)`` skinning weights (rows sum to 1).
        spacing: grid spacing (m).

    Returns:
        ``(J,)`` volumes (m^3).
    """
    from scipy.spatial import cKDTree

    pts = _interior_points(vertices, faces, spacing)
    if len(pts) == 0:
        raise MpgymError("the body mesh has no interior points; is it closed?")
    _, nearest = cKDTree(vertices).query(pts)
    share = weights[nearest].sum(0)
    return share / share.sum() * mesh_volume(vertices, faces)


_FEET = {7: 10, 8: 11}
"""Heel part (ankle joint) -> toe part (foot joint): both get boxes with a shared sole."""


def _part_geoms(vertices: np.ndarray, weights: np.ndarray, joints: np.ndarray) -> list[dict]:
    """Per SMPL joint, its collision geom in its body frame (MuJoCo axes), from the rest body.

    Args:
        vertices: ``(V, 3)`` rest vertices, MuJoCo frame.
        weights: ``(V, 24)`` skinning weights.
        joints: ``(24, 3)`` rest joints, MuJoCo frame.

    Returns:
        24 dicts of MJCF geom attributes (``type``, ``size``, ``pos`` or ``fromto``).
    """
    label = weights.argmax(1)
    geoms: list[dict] = []
    for j in range(NUM_JOINTS):
        pts = vertices[label == j] - joints[j]
        if len(pts) < 3:
            raise MpgymError(f"part {JOINT_NAMES[j]!r} has {len(pts)} vertices; need >= 3.")
        heel = next((h for h, t in _FEET.items() if j in (h, t)), None)
        if heel is None:
            p0, p1, r = fit_capsule(pts)
            geoms.append({"type": "capsule", "size": [r], "fromto": [*p0, *p1]})
            continue
        foot = vertices[(label == heel) | (label == _FEET[heel])]
        sole = foot[:, 2].min() - joints[j][2]
        lo, hi = np.percentile(pts, 0.5, axis=0), np.percentile(pts, 99.5, axis=0)
        lo[2], hi[2] = sole, pts[:, 2].max()
        geoms.append({"type": "box", "size": list(0.5 * (hi - lo)), "pos": list(0.5 * (hi + lo))})
    return geoms


def _fmt(values: Any) -> str:
    return " ".join(f"{float(v):.10g}" for v in np.ravel(values))


def _geom_xml(g: dict, mass: float | None, extra: str = "") -> str:
    attrs = " ".join(f'{k}="{_fmt(v)}"' for k, v in g.items() if k != "type")
    m = f' mass="{mass:.10g}"' if mass is not None else ""
    return f'<geom type="{g["type"]}" {attrs}{m}{extra}/>'


def _joint_xml(j: int, armature: float) -> str:
    spec, name = JOINTS[j], JOINT_NAMES[j]
    if spec.kind == "free":
        return '<freejoint name="root"/>'
    if spec.kind == "ball":
        return (
            f'<joint name="{name}" type="ball" range="0 {math.radians(spec.limit[1]):.10g}" '
            f'armature="{armature:.10g}"/>'
        )
    if spec.kind == "hinge":
        lo, hi = np.radians(spec.limit)
        return (
            f'<joint name="{name}" type="hinge" axis="{_fmt(spec.axis)}" '
            f'range="{lo:.10g} {hi:.10g}" armature="{armature:.10g}"/>'
        )
    return ""


def _actuators(scale: float) -> tuple[list[str], list[str], np.ndarray]:
    """Position actuators in SMPL joint order: ``(xml lines, names, ctrl ranges (nu, 2))``."""
    lines, names, ranges = [], [], []
    for j in ACTUATED:
        spec, name = JOINTS[j], JOINT_NAMES[j]
        axes = ("x", "y", "z") if spec.kind == "ball" else ("",)
        for k, (axis, target) in enumerate(zip(axes, spec.target, strict=True)):
            act = f"{name}_{axis}" if axis else name
            gear = f' gear="{_fmt(np.eye(3)[k])}"' if axis else ""
            lo, hi = np.radians(target)
            t = spec.torque * scale
            lines.append(
                f'<position name="{act}" joint="{name}"{gear} kp="{spec.kp * scale:.10g}" '
                f'kv="{spec.kd * scale:.10g}" ctrlrange="{lo:.10g} {hi:.10g}" '
                f'forcerange="{-t:.10g} {t:.10g}"/>'
            )
            names.append(act)
            ranges.append((lo, hi))
    return lines, names, np.array(ranges)


_HEADER = """<mujoco model="mpgym_humanoid">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep:.10g}" integrator="implicitfast"/>
  <visual><global offwidth="1280" offheight="960"/><quality shadowsize="4096"/>
    <map shadowclip="0.6" znear="0.02"/></visual>
  <default>
    <geom contype="1" conaffinity="0" condim="3" friction="{friction:.10g} 0.005 0.0001"
          rgba="0.8 0.6 0.45 1"/>
  </default>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.3 0.35 0.4" rgb2="0.4 0.45 0.5"
             width="256" height="256"/>
    <material name="grid" texture="grid" texrepeat="1 1" texuniform="true"/>
  </asset>
  <worldbody>
    <light name="sun" directional="true" pos="0 0 4" dir="0.1 0.2 -1"/>
    <geom name="floor" type="plane" size="0 0 0.05" material="grid" contype="0" conaffinity="1"/>
"""


def _body_xml(
    j: int, joints: np.ndarray, geoms: list, masses: np.ndarray, cfg, root_z: float, depth: int
) -> list[str]:
    pad = "  " * depth
    pos = joints[j] - joints[PARENTS[j]] if j else np.array([0.0, 0.0, root_z])
    out = [f'{pad}<body name="{JOINT_NAMES[j]}" pos="{_fmt(pos)}">']
    if j == 0:
        out.append(
            f'{pad}  <camera name="track" mode="trackcom" pos="0 -3.5 0.2" xyaxes="1 0 0 0 0.2 1"/>'
        )
    jx = _joint_xml(j, cfg.armature)
    if jx:
        out.append(f"{pad}  {jx}")
    name = f' name="{JOINT_NAMES[j]}"'
    out.append(f"{pad}  {_geom_xml(geoms[j], masses[j], name)}")
    for c in children()[j]:
        out += _body_xml(c, joints, geoms, masses, cfg, root_z, depth + 1)
    out.append(f"{pad}</body>")
    return out


def _ghost_xml(geoms: list) -> list[str]:
    """Mocap bodies (no dynamics, no contacts) with the humanoid's geoms, for references."""
    extra = ' contype="0" conaffinity="0" group="1" rgba="0.3 0.6 1.0 0.35" mass="0"'
    return [
        f'    <body name="ghost_{name}" mocap="true">{_geom_xml(geoms[j], None, extra)}</body>'
        for j, name in enumerate(JOINT_NAMES)
    ]


@functools.lru_cache(maxsize=4)
def _body_model(model: str) -> Any:
    import torch

    from bodies.model import BodyModel

    return BodyModel(model, dtype=torch.float64)


NUM_BETAS = 10
"""Shape coefficients of the body model (:class:`bodies.model.BodyModel`'s default)."""


def check_betas(betas: Any, num_betas: int = NUM_BETAS) -> np.ndarray:
    """``betas`` as a ``(num_betas,)`` float array (zeros padded; ``None``: the mean body).

    Raises:
        MpgymError: not numbers, not 1-D, longer than ``num_betas``, empty, or not finite.
    """
    if betas is None:
        return np.zeros(num_betas)
    try:
        b = np.asarray(betas, np.float64)
    except (TypeError, ValueError):
        raise MpgymError(f"betas must be numbers; got {type(betas).__name__}.") from None
    if b.ndim != 1 or not 1 <= len(b) <= num_betas or not np.isfinite(b).all():
        raise MpgymError(
            f"betas has shape {b.shape}; accepted: a finite (S,) array with 1 <= S <= "
            f"{num_betas} (missing coefficients are zero)."
        )
    return np.pad(b, (0, num_betas - len(b)))


def _check_config(config: HumanoidConfig) -> None:
    if not isinstance(config, HumanoidConfig):
        raise MpgymError(f"config must be a HumanoidConfig; got {type(config).__name__}.")
    for name in ("density", "timestep", "voxel"):
        v = getattr(config, name)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise MpgymError(f"HumanoidConfig.{name} must be a number > 0; got {v!r}.")
    if not (math.isfinite(config.armature) and config.armature >= 0):
        raise MpgymError(f"HumanoidConfig.armature must be >= 0; got {config.armature!r}.")
    if config.gain_scale not in ("mass", "none"):
        raise MpgymError(f"HumanoidConfig.gain_scale {config.gain_scale!r}; accepted: mass, none.")


def build_humanoid(betas: Any = None, *, config: HumanoidConfig = HumanoidConfig()) -> Humanoid:
    """Generate the humanoid of body shape ``betas`` (module docstring).

    Args:
        betas: ``(S,)`` shape coefficients, ``S <= num_betas`` of the model (10); default zeros
            (the mean body).
        config: build options.

    Returns:
        :class:`Humanoid` with the MJCF, masses and actuator layout.

    Raises:
        MpgymError: betas of the wrong shape or not finite, bad config values.
    """
    _check_config(config)
    b = check_betas(betas)
    return _build(tuple(b.tolist()), config)


@functools.lru_cache(maxsize=8)
def _build(betas: tuple[float, ...], cfg: HumanoidConfig) -> Humanoid:
    import torch

    model = _body_model(cfg.model)
    with torch.no_grad():
        out = model(betas=torch.tensor([betas], dtype=torch.float64))
    v_smpl, j_smpl = out.vertices[0].numpy(), out.joints[0].numpy()
    weights = model.lbs_weights.numpy()
    vol = part_volumes(v_smpl, model.faces, weights, spacing=cfg.voxel)
    masses = cfg.density * vol
    verts = (v_smpl - j_smpl[0]) @ A_SMPL_TO_MJ.T
    joints = (j_smpl - j_smpl[0]) @ A_SMPL_TO_MJ.T
    geoms = _part_geoms(verts, weights, joints)
    root_z = float(-verts[:, 2].min())
    scale = masses.sum() / DEEPMIMIC_MASS if cfg.gain_scale == "mass" else 1.0
    act_lines, act_names, ranges = _actuators(scale)
    lines = [_HEADER.format(timestep=cfg.timestep, friction=cfg.friction)]
    lines += _body_xml(0, joints, geoms, masses, cfg, root_z, 2)
    if cfg.ghost:
        lines += _ghost_xml(geoms)
    lines += ["  </worldbody>", "  <actuator>"] + [f"    {a}" for a in act_lines]
    lines += ["  </actuator>", "</mujoco>", ""]
    return Humanoid(
        xml="\n".join(lines),
        betas=np.array(betas),
        joints=joints,
        masses=masses,
        sole_height=root_z,
        ctrl_range=ranges,
        actuator_names=tuple(act_names),
        config=cfg,
    )


def humanoid_mjcf(betas: Any = None, *, config: HumanoidConfig = HumanoidConfig()) -> str:
    """The MJCF text of :func:`build_humanoid` (open it in MuJoCo's viewer: ``simulate``).

    Args:
        betas: ``(S,)`` shape coefficients (default the mean body).
        config: build options.

    Returns:
        The MJCF document.
    """
    return build_humanoid(betas, config=config).xml
