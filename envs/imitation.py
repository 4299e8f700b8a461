"""DeepMimic's motion imitation (Peng et al. 2018) on MuJoCo, with a humanoid built from ``bodies``.

A simulated humanoid (:func:`bodies.mjcf.build_humanoid`) tracks a reference motion with PD
targets chosen by the policy at 30 Hz. The reference is a DeepMimic clip
(:func:`bodies.motion.dataset.deepmimic_motion`), a motion file (``.npz``/``.bvh``,
:func:`bodies.motion.dataset.load_motions`) or a :class:`~bodies.motion.dataset.Motion`, played
on the humanoid at 30 fps: its poses become ``qpos`` (:func:`bodies.mjcf.pose_to_qpos`), its
velocities central differences of them (``mj_differentiatePos``), and it is moved vertically
onto the floor by its geoms' lowest points (:func:`floor_heights`).

**Reward** (DeepMimic's paper, section 5, with the per-joint weights of its code,
``DeepMimicCore/scenes/SceneImitate.cpp``): ``r = 0.65 r_pose + 0.1 r_vel + 0.15 r_end +
0.1 r_com`` with

- ``r_pose = exp(-2 sum_j w_j theta_j^2)``: ``theta_j`` the angle of the rotation between the
  simulated and the reference local rotation of joint ``j`` (the root's: its world rotation);
- ``r_vel = exp(-0.1 sum_j w_j |omega_j - omega^_j|^2)``: local angular velocities (of each body
  relative to its parent, in the parent's frame; the root's in the world);
- ``r_end = exp(-40 sum_e |p_e - p^_e|^2)`` over the ankles and wrists (DeepMimic's end
  effectors), each relative to the root in the root's heading frame, its height above the floor;
- ``r_com = exp(-10 |c - c^|^2)``: the centre of mass in the world.

``w_j`` are DeepMimic's ``DiffWeight`` (:data:`JOINT_WEIGHTS`; the spine parts take the chest's,
neck and head the neck's) normalised to sum to 1, as its code does (the paper writes an
unweighted sum; the code, which trained the paper's figures, uses this weighted mean and scale
2 for its 15 joints). DeepMimic's code also adds a root term and compares centre-of-mass
*velocities* (``com_err = 0.1 |v_c - v^_c|^2``); the paper's terms are used here.

**Cyclic references.** A motion whose last frame leads back into its first (the step from the
last frame to the first, in root-relative joint positions, is at most three times the 90th
percentile of its frame-to-frame steps, and the heading changes by less than 15 degrees)
loops, shifted horizontally each cycle by the root's displacement over a cycle (DeepMimic's
cycle offset), and at each new cycle the reference is moved horizontally onto the character's
root (:attr:`ImitationConfig.sync_root`, DeepMimic's ``sync_char_root_pos``), so the pose error
bound limits drift within a cycle, not over a whole episode; any other motion ends the episode
(``truncated``) at its last frame. Of the
DeepMimic clips, backflip, cartwheel, dance_a, dance_b, jump, roll, run, spinkick and walk loop;
crawl, getup_facedown, getup_faceup, kick, punch and spin do not.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from bodies import mjcf
from mpgym.errors import MpgymError

if "mujoco" not in sys.modules:  # the GL backend is chosen when mujoco is first imported
    os.environ.setdefault("MUJOCO_GL", "egl")
import mujoco  # noqa: E402

log = logging.getLogger(__name__)

FPS = 30
"""Policy steps (and reference frames) per second."""

JOINT_WEIGHTS: dict[str, float] = {
    "pelvis": 1.0,
    "spine1": 0.5,
    "spine2": 0.5,
    "spine3": 0.5,
    "neck": 0.3,
    "head": 0.3,
    "left_hip": 0.5,
    "right_hip": 0.5,
    "left_knee": 0.3,
    "right_knee": 0.3,
    "left_ankle": 0.2,
    "right_ankle": 0.2,
    "left_shoulder": 0.3,
    "right_shoulder": 0.3,
    "left_elbow": 0.2,
    "right_elbow": 0.2,
}
"""DeepMimic humanoid3d's ``DiffWeight`` per simulated joint (before normalisation)."""

END_EFFECTORS = ("left_ankle", "right_ankle", "left_wrist", "right_wrist")
"""The bodies of ``r_end`` (DeepMimic's ``IsEndEffector`` joints)."""

SIMULATED = tuple(j for j, s in enumerate(mjcf.JOINTS) if s.kind != "locked")
"""SMPL joints with a joint (root first): the bodies of the pose terms and the observation."""


@dataclass(frozen=True)
class ImitationConfig:
    """Reward, termination, action and observation settings of :class:`HumanoidImitateEnv`."""

    weights: tuple[float, float, float, float] = (0.65, 0.1, 0.15, 0.1)
    """Weights of ``r_pose, r_vel, r_end, r_com`` (DeepMimic's paper)."""
    scales: tuple[float, float, float, float] = (2.0, 0.1, 40.0, 10.0)
    """Error scales of ``r_pose, r_vel, r_end, r_com`` (DeepMimic's paper)."""
    timestep: float = 1.0 / 120.0
    """Physics step (s), 4 per policy step: stable under random and bang-bang PD targets from
    every clip's states with this armature (half of it diverges); 0.5 s of PD tracking drifts
    21 mm (mean body distance) from the same model at 1/600 s."""
    armature: float = 0.06
    """Rotor inertia per joint DoF (kg m^2) that keeps the stiff PD stable at ``timestep``."""
    action_mode: Literal["absolute", "residual"] = "absolute"
    """``absolute``: actions in [-1, 1] span each actuator's target range (DeepMimic);
    ``residual``: targets are the next reference pose plus ``residual_scale`` times the action."""
    residual_scale: float = 0.5
    """Radians per unit action in ``residual`` mode."""
    fall_drop: float = 0.3
    """Terminate when the head or the torso (``spine3``) is this far (m) below the reference's."""
    max_joint_error: float = 0.5
    """Terminate when the mean distance (m) of the 24 bodies from the reference's exceeds this."""
    sync_root: bool = True
    """At each new cycle of a looping reference, move the reference horizontally onto the
    character's root (DeepMimic's ``sync_char_root_pos``, on in its walk settings), so that
    drift in place does not accumulate into ``joint_error`` over cycles; ``False`` keeps the
    reference on its own path (cycle offsets only)."""
    reference_state_init: bool = True
    """Start each episode at a random reference frame (RSI); otherwise at frame 0."""
    future_frames: tuple[int, ...] = (1,)
    """Reference frames ahead (in policy steps) whose body positions and rotations are observed."""
    loop: Literal["auto", "wrap", "none"] = "auto"
    """Cycle the reference (``wrap``), stop at its end (``none``) or decide (module docstring)."""
    backend: Literal["auto", "numba", "numpy"] = "auto"
    """Scoring and observation code: compiled with numba when installed (``auto``), or numpy."""


class HumanoidImitateEnv(gym.Env):
    """A physics-simulated humanoid imitating a reference motion (DeepMimic).

    ## Description
    The humanoid of :mod:`bodies.mjcf` (one body per SMPL joint at the joints of ``betas``, ball
    joints, hinged knees and elbows, welded collars, wrists, hands and toes; ~60 kg for the mean
    body) stands on a plane in MuJoCo, z up. Each step the policy sets the PD targets of its
    37 position actuators; the physics advances 1/30 s in sub-steps of
    :attr:`ImitationConfig.timestep`; the reward says how closely the humanoid follows the
    reference motion at that time (module docstring).

    ## Action Space
    ``Box(-1, 1, (37,), float32)``, one per actuator in SMPL joint order
    (``bodies.mjcf.build_humanoid().actuator_names``): a ball joint's three targets are the x, y,
    z components of its rotation vector, a hinge's its angle. ``absolute`` mode maps [-1, 1]
    linearly onto each actuator's target range; ``residual`` mode adds ``residual_scale * a``
    to the next reference frame's targets. Values outside [-1, 1] are clipped; NaN or infinite
    values are refused (:class:`~mpgym.errors.MpgymError`).

    ## Observation Space
    ``Box(-inf, inf, (N,), float32)`` in the humanoid's heading frame (the root's yaw removed,
    origin under the root): root height (1), root rotation as 6D (6); per non-root simulated
    body (15) its position (45) and 6D rotation (90); per simulated body (16) its linear (48)
    and angular (48) velocity; the reference phase as ``(sin, cos)`` (2); per frame of
    ``future_frames``, the reference's 16 body positions and 6D rotations in the same frame
    (144 each). ``N = 384`` with the default one future frame.

    ## Starting State
    The reference's pose and velocity (finite differences) at a random frame (reference state
    initialisation; frame 0 with ``reference_state_init=False`` or ``options={"frame": k}``).

    ## Rewards
    ``0.65 r_pose + 0.1 r_vel + 0.15 r_end + 0.1 r_com`` in [0, 1], 1 exactly on the reference;
    each term is in ``info`` (``r_pose``, ``r_vel``, ``r_end``, ``r_com``) with the mean world
    distance of the 24 bodies from the reference's (``joint_error``, m) and the root-relative
    one (``mpjpe``, m); ``is_success`` is true while the episode has not been terminated (so at
    its last step: the character followed the motion to the end without falling), and
    ``metadata["episode_metrics"]`` names ``mpjpe`` and ``joint_error`` for evaluation.

    ## Episode End
    Terminates when the head or the torso drops ``fall_drop`` below the reference's height
    (``info["fell"]``) or ``joint_error`` exceeds ``max_joint_error`` (also if the physics
    diverges: ``info["unstable"]``). Truncates at the last frame of a reference that does not
    loop, and after ``max_episode_steps`` (300: 10 s) for the registered id.

    ## Arguments
    ``motion``: a DeepMimic clip name (:data:`bodies.motion.clips.CLIP_NAMES`, default
    ``"walk"``), a path to a ``.npz``/``.bvh`` motion file, or a ``Motion``; ``betas``: body
    shape (default the mean body); ``config``: :class:`ImitationConfig` or a dict of its fields;
    ``render_mode``: ``None`` or ``"rgb_array"`` (headless MuJoCo with EGL; draws the reference
    as a translucent ghost); ``width``, ``height``: rendered image size.

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": FPS,
                "episode_metrics": ("mpjpe", "joint_error")}

    def __init__(
        self,
        motion: Any = "walk",
        *,
        betas: Any = None,
        config: ImitationConfig | dict | None = None,
        render_mode: str | None = None,
        width: int = 640,
        height: int = 480,
    ):
        self.config = _check_config(config)
        if render_mode not in (None, "rgb_array"):
            raise MpgymError(
                f"render_mode {render_mode!r} is not supported; accepted: None, 'rgb_array'."
            )
        self.render_mode = render_mode
        cfg = self.config
        betas = mjcf.check_betas(betas)
        motion = load_reference_motion(motion, betas)  # bad input is refused before the build
        hcfg = mjcf.HumanoidConfig(
            timestep=cfg.timestep, armature=cfg.armature, ghost=render_mode is not None
        )
        self.humanoid = mjcf.build_humanoid(betas, config=hcfg)
        self.model = self.humanoid.compile()
        self.data = mujoco.MjData(self.model)
        self.substeps = max(1, round(1.0 / (FPS * cfg.timestep)))
        self.ref = Reference(self.model, motion, loop=cfg.loop)
        self._ids = np.array([self.model.body(n).id for n in self.humanoid.body_names])
        self._parent = np.array([mjcf.PARENTS[j] for j in SIMULATED[1:]])
        w = np.array([JOINT_WEIGHTS[mjcf.JOINT_NAMES[j]] for j in SIMULATED])
        self._w = w / w.sum()
        self._ee = np.array([mjcf.JOINT_NAMES.index(n) for n in END_EFFECTORS])
        self._scales = np.array(cfg.scales, np.float64)
        self._future = np.array(cfg.future_frames, np.int64)
        # the kernel's index table: simulated joints, their parents, end effectors, watched
        self._static = np.concatenate(
            [np.array(SIMULATED), self._parent, self._ee, self.ref.watch]
        ).astype(np.int64)
        lo, hi = self.humanoid.ctrl_range.T
        self._mid, self._half, self._lo, self._hi = 0.5 * (lo + hi), 0.5 * (hi - lo), lo, hi
        nu = self.humanoid.nu
        self.action_space = gym.spaces.Box(-1.0, 1.0, (nu,), np.float32)
        self._n_obs = 1 + 6 + 15 * 9 + 16 * 6 + 2 + len(cfg.future_frames) * 16 * 9
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self._n_obs,), np.float32)
        self._frame = 0
        self._delta = np.zeros(3)  # the reference's shift beyond its cycle offsets (sync_root)
        self._renderer: Any = None
        self._size = (int(height), int(width))
        self._warn_count = 0

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start at a reference frame: random (RSI), 0, or ``options["frame"]``."""
        super().reset(seed=seed)
        frame = (options or {}).get("frame")
        if frame is None:
            last = self.ref.n_frames - (1 if self.ref.loops else 2)
            frame = (
                int(self.np_random.integers(0, last + 1)) if self.config.reference_state_init else 0
            )
        elif not (isinstance(frame, (int, np.integer)) and 0 <= frame < self.ref.n_frames):
            raise MpgymError(
                f"options['frame'] must be an integer in [0, "
                f"{self.ref.n_frames - 1}]; got {frame!r}."
            )
        self._frame = int(frame)
        self._delta = np.zeros(3)
        mujoco.mj_resetData(self.model, self.data)
        self.set_reference_state(self._frame)
        self._warn_count = self.data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number
        return self._evaluate()[0], {"frame": self._frame}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Set the PD targets, simulate 1/30 s, score the state against the reference."""
        k = self._frame + 1
        target = self._targets(action, k)
        d = self.data
        d.ctrl[:] = target
        mujoco.mj_step(self.model, d, nstep=self.substeps)
        self._frame = k
        unstable = d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number != self._warn_count
        if unstable:  # MuJoCo has reset the state; end the episode
            self._warn_count = d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number
            log.warning("the simulation diverged at frame %d; ending the episode", k)
        self._kinematics()
        if self.config.sync_root and self.ref.loops and k % self.ref.n_frames == 0:
            # a new cycle: the reference's root at its first frame onto the character's root
            root = self.data.xpos[self._ids[0], :2]
            self._delta[:2] = root - self.ref.xpos[0, 0, :2] - (k // self.ref.n_frames) * (
                self.ref.cycle_shift[:2]
            )
        obs, info, dropped = self._evaluate()
        wt = self.config.weights
        reward = (
            wt[0] * info["r_pose"]
            + wt[1] * info["r_vel"]
            + wt[2] * info["r_end"]
            + wt[3] * info["r_com"]
        )
        terminated = unstable or dropped or info["joint_error"] > self.config.max_joint_error
        truncated = not self.ref.loops and k >= self.ref.n_frames - 1
        # success (evaluation): the episode has not been terminated -- at a time limit or the
        # end of a non-looping reference, the character has followed the whole motion
        info.update(frame=k, fell=dropped, unstable=unstable, is_success=not terminated)
        return obs, float(0.0 if unstable else reward), bool(terminated), truncated, info

    def render(self) -> np.ndarray | None:
        """An RGB image ``(height, width, 3)`` uint8 with the reference as a ghost."""
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = _make_renderer(self.model, *self._size)
        f, shift = self._locate(self._frame)
        ghost = self.ref.ghost_ids
        self.data.mocap_pos[ghost] = self.ref.xpos[f] + shift
        self.data.mocap_quat[ghost] = self.ref.xquat[f]
        for fn in (mujoco.mj_kinematics, mujoco.mj_comPos, mujoco.mj_camlight):
            fn(self.model, self.data)  # the ghost's and the camera's poses (state unchanged)
        self._renderer.update_scene(self.data, camera="track")
        return self._renderer.render().copy()

    def close(self) -> None:
        """Free the renderer's GL context."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------ state and scoring
    def _locate(self, k: int) -> tuple[int, np.ndarray]:
        """Reference frame of step ``k`` and its shift: cycle offsets plus the root sync."""
        f, shift = self.ref.locate(k)
        return f, (shift + self._delta) if self.ref.loops else shift

    def set_reference_state(self, frame: int) -> None:
        """Put the humanoid in the reference's state at ``frame`` (positions and velocities)."""
        f, shift = self._locate(frame)
        d = self.data
        d.qpos[:] = self.ref.qpos[f]
        d.qpos[:3] += shift
        d.qvel[:] = self.ref.qvel[f]
        d.ctrl[:] = self.ref.targets[f]
        self._frame = int(frame)
        self._kinematics()

    def _kinematics(self) -> None:
        """Body poses, centre of mass and body velocities of the current ``qpos, qvel``."""
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)
        mujoco.mj_comVel(self.model, self.data)

    def _targets(self, action: Any, k: int) -> np.ndarray:
        """PD targets of ``action`` at step ``k``; NaN or infinite actions are refused."""
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            raise MpgymError(f"action must be numbers; got {type(action).__name__}.") from None
        if a.shape != self.action_space.shape:
            raise MpgymError(f"action has shape {a.shape}; expected {self.action_space.shape}.")
        if not np.isfinite(a).all():
            i = int(np.flatnonzero(~np.isfinite(a))[0])
            raise MpgymError(
                f"action[{i}] is {a[i]}; NaN and infinite actions are refused "
                "(finite values outside [-1, 1] are clipped)."
            )
        a = np.minimum(np.maximum(a, -1.0), 1.0)
        if self.config.action_mode == "residual":
            f, _ = self.ref.locate(k)
            target = self.ref.targets[f] + self.config.residual_scale * a
            return np.minimum(np.maximum(target, self._lo), self._hi)
        return self._mid + self._half * a

    def reward_terms(self) -> dict[str, float]:
        """``r_pose, r_vel, r_end, r_com``, ``joint_error`` and ``mpjpe`` of the current state."""
        return self._evaluate()[1]

    def _evaluate(self) -> tuple[np.ndarray, dict[str, float], bool]:
        """Observation, reward terms and whether the head or torso dropped, at this frame."""
        kernel = _compiled_kernel() if self.config.backend != "numpy" else None
        if kernel is None:
            if self.config.backend == "numba":
                raise MpgymError(
                    "backend='numba' needs numba (pip install numba); or use backend='auto'."
                )
            return self._evaluate_numpy()
        d, ref = self.data, self.ref
        obs = np.empty(self._n_obs, np.float32)
        terms = np.empty(7)
        kernel(
            d.xpos,
            d.xmat,
            d.cvel,
            d.subtree_com,
            self._ids,
            self._static,
            self._w,
            self._scales,
            ref.xpos,
            ref.xmat,
            ref.local,
            ref.omega,
            ref.end,
            ref.com,
            self._frame,
            ref.loops,
            ref.cycle_shift,
            self._delta,
            self._future,
            self.config.fall_drop,
            obs,
            terms,
        )
        names = ("r_pose", "r_vel", "r_end", "r_com", "joint_error", "mpjpe")
        return obs, dict(zip(names, terms[:6].tolist(), strict=True)), bool(terms[6])

    # the numpy path: the reference the compiled kernel is tested against
    def _sim(self) -> dict[str, np.ndarray]:
        """The bodies' world state, SMPL joint order."""
        d, ids = self.data, self._ids
        root = ids[0]
        w = d.cvel[ids, :3]  # world angular velocities
        x = d.xpos[ids]
        v = d.cvel[ids, 3:] + np.cross(w, x - d.subtree_com[root])
        return {
            "xpos": x,
            "xmat": d.xmat[ids].reshape(-1, 3, 3),
            "omega": w,
            "vel": v,
            "com": d.subtree_com[root],
        }

    def _evaluate_numpy(self) -> tuple[np.ndarray, dict[str, float], bool]:
        s = self._sim()
        f, shift = self._locate(self._frame)
        terms = self._terms_numpy(s, f, shift)
        watch = self.ref.watch
        z, z_ref = s["xpos"][watch, 2], self.ref.xpos[f, watch, 2]
        return self._obs_numpy(s), terms, bool((z < z_ref - self.config.fall_drop).any())

    def _terms_numpy(self, s: dict[str, np.ndarray], f: int, shift: np.ndarray) -> dict:
        ref, sim_j = self.ref, np.array(SIMULATED)
        R, par = s["xmat"], self._parent
        local = np.einsum("nki,nkj->nij", R[par], R[sim_j[1:]])  # parent^T child
        cos = np.empty(len(sim_j))
        cos[0] = (np.einsum("ij,ij->", R[0], ref.xmat[f, 0]) - 1.0) / 2.0
        cos[1:] = (np.einsum("nij,nij->n", local, ref.local[f]) - 1.0) / 2.0
        theta = np.arccos(np.clip(cos, -1.0, 1.0))
        om = s["omega"]
        w_rel = np.einsum("nki,nk->ni", R[par], om[sim_j[1:]] - om[par])
        dw = np.concatenate([(om[0] - ref.omega[f, 0])[None], w_rel - ref.omega[f, 1:]])
        ee = _heading_relative(s["xpos"][self._ee], s["xpos"][0], R[0])
        sc = self._scales
        x_err = np.linalg.norm(s["xpos"] - (ref.xpos[f] + shift), axis=-1)
        rel = (s["xpos"] - s["xpos"][0]) - (ref.xpos[f] - ref.xpos[f, 0])
        return {
            "r_pose": math.exp(-sc[0] * float(self._w @ theta**2)),
            "r_vel": math.exp(-sc[1] * float(self._w @ (dw**2).sum(-1))),
            "r_end": math.exp(-sc[2] * float(((ee - ref.end[f]) ** 2).sum())),
            "r_com": math.exp(-sc[3] * float(((s["com"] - ref.com[f] - shift) ** 2).sum())),
            "joint_error": float(x_err.mean()),
            "mpjpe": float(np.linalg.norm(rel, axis=-1).mean()),
        }

    def _obs_numpy(self, s: dict[str, np.ndarray]) -> np.ndarray:
        sim = list(SIMULATED)
        x, R = s["xpos"][sim], s["xmat"][sim]
        root = x[0]
        H = _rot_z(-_yaw(R[0]))  # world -> heading frame
        parts = [
            [root[2]],
            _six_d(H @ R[0]),
            ((x[1:] - root) @ H.T).ravel(),
            _six_d(H @ R[1:]).ravel(),
            (s["vel"][sim] @ H.T).ravel(),
            (s["omega"][sim] @ H.T).ravel(),
            self.ref.phase(self._frame),
        ]
        for dk in self.config.future_frames:
            f, shift = self._locate(self._frame + dk)
            rx, rR = self.ref.xpos[f, sim] + shift, self.ref.xmat[f, sim]
            parts += [((rx - root) @ H.T).ravel(), _six_d(H @ rR).ravel()]
        return np.concatenate(parts).astype(np.float32)


# ------------------------------------------------------------------ the reference motion
class Reference:
    """A motion played on the humanoid at 30 fps, with what the reward and observation read.

    Per frame ``f`` (``T`` frames): ``qpos (T, nq)``, ``qvel (T, nv)`` (central differences
    through the loop, one-sided at the ends of a motion that does not loop), ``targets (T, nu)``
    (PD targets holding the pose), and from MuJoCo's kinematics, SMPL joint order: ``xpos
    (T, 24, 3)``, ``xmat (T, 24, 3, 3)``, ``xquat (T, 24, 4)``; for the simulated joints
    (:data:`SIMULATED`): ``local (T, 15, 3, 3)`` rotations relative to the parent, ``omega
    (T, 16, 3)`` angular velocities (the root's in the world, the others relative to the parent
    in its frame); ``end (T, 4, 3)`` end effectors relative to the root (heading frame, height
    above the floor) and ``com (T, 3)``. Frame ``k`` beyond the motion is :meth:`locate`'d.
    """

    def __init__(self, model: Any, motion: Any, *, loop: str = "auto"):
        self.label = motion.label
        qpos = mjcf.pose_to_qpos(motion.global_orient, motion.body_pose, motion.transl)
        self.n_frames = T = len(qpos)
        data = mujoco.MjData(model)
        ids = np.array([model.body(n).id for n in mjcf.JOINT_NAMES])
        fk = _kinematics_of(model, data, qpos, ids)
        self.loops = _decide_loop(fk["xpos"], fk["xmat"][:, 0], loop)
        qpos[:, 2] -= floor_heights(fk["low"], loops=self.loops)
        self.cycle_shift = np.zeros(3)
        if self.loops:
            self.cycle_shift[:2] = 2 * qpos[-1, :2] - qpos[0, :2] - qpos[-2, :2]
        self.qpos = qpos
        self.qvel = self._velocities(model, qpos)
        self.targets = mjcf.qpos_to_targets(qpos)
        fk = _kinematics_of(model, data, qpos, ids, self.qvel)
        self.xpos, self.xmat, self.xquat, self.com = fk["xpos"], fk["xmat"], fk["xquat"], fk["com"]
        sim = np.array(SIMULATED)
        par = np.array([mjcf.PARENTS[j] for j in SIMULATED[1:]])
        R, om = self.xmat, fk["omega"]
        self.local = np.einsum("tnki,tnkj->tnij", R[:, par], R[:, sim[1:]])
        rel = np.einsum("tnki,tnk->tni", R[:, par], om[:, sim[1:]] - om[:, par])
        self.omega = np.concatenate([om[:, :1], rel], 1)
        ee = [mjcf.JOINT_NAMES.index(n) for n in END_EFFECTORS]
        self.end = np.stack(
            [_heading_relative(self.xpos[t, ee], self.xpos[t, 0], R[t, 0]) for t in range(T)]
        )
        self.watch = np.array([mjcf.JOINT_NAMES.index("head"), mjcf.JOINT_NAMES.index("spine3")])
        ghosts = [
            model.body(f"ghost_{n}").id
            for n in mjcf.JOINT_NAMES
            if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"ghost_{n}") >= 0
        ]
        self.ghost_ids = model.body_mocapid[ghosts] if ghosts else np.zeros(0, int)

    def _velocities(self, model: Any, qpos: np.ndarray) -> np.ndarray:
        """Central differences of ``qpos`` at 30 fps (through the loop when it loops)."""
        T = len(qpos)
        if self.loops:
            prev = np.concatenate([qpos[-1:], qpos[:-1]])
            prev[0, :3] -= self.cycle_shift
            nxt = np.concatenate([qpos[1:], qpos[:1]])
            nxt[-1, :3] += self.cycle_shift
            dt = np.full(T, 2.0 / FPS)
        else:
            prev = np.concatenate([qpos[:1], qpos[:-1]])
            nxt = np.concatenate([qpos[1:], qpos[-1:]])
            dt = np.full(T, 2.0 / FPS)
            dt[[0, -1]] = 1.0 / FPS
        qvel = np.zeros((T, model.nv))
        for t in range(T):
            mujoco.mj_differentiatePos(model, qvel[t], dt[t], prev[t], nxt[t])
        return qvel

    def locate(self, k: int) -> tuple[int, np.ndarray]:
        """Reference frame index of step ``k`` and its horizontal shift (cycles completed)."""
        if self.loops:
            c, f = divmod(int(k), self.n_frames)
            return f, c * self.cycle_shift
        return min(int(k), self.n_frames - 1), np.zeros(3)

    def phase(self, k: int) -> np.ndarray:
        """``(sin 2 pi phi, cos 2 pi phi)`` of the phase ``phi`` in [0, 1) of step ``k``."""
        f, _ = self.locate(k)
        phi = f / (self.n_frames if self.loops else max(self.n_frames - 1, 1))
        return np.array([math.sin(2 * math.pi * phi), math.cos(2 * math.pi * phi)])


def _kinematics_of(
    model: Any, data: Any, qpos: np.ndarray, ids: np.ndarray, qvel: np.ndarray | None = None
) -> dict[str, Any]:
    """MuJoCo forward kinematics of each frame; with no ``qvel``, only what the floor needs."""
    T = len(qpos)
    out: dict[str, list] = {k: [] for k in ("xpos", "xmat", "xquat", "omega", "com", "low")}
    body = ids[None, :] == model.geom_bodyid[:, None]
    geoms = np.flatnonzero(body.any(1))
    kind, size = model.geom_type[geoms], model.geom_size[geoms]
    for t in range(T):
        data.qpos[:] = qpos[t]
        data.qvel[:] = 0.0 if qvel is None else qvel[t]
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        mujoco.mj_comVel(model, data)
        for k, v in (
            ("xpos", data.xpos[ids]),
            ("xmat", data.xmat[ids].reshape(-1, 3, 3)),
            ("xquat", data.xquat[ids]),
            ("omega", data.cvel[ids, :3]),
            ("com", data.subtree_com[ids[0]]),
        ):
            out[k].append(v.copy())
        z, Rz = data.geom_xpos[geoms, 2], data.geom_xmat[geoms, 6:9]  # third row of each R
        low = np.where(
            kind == mujoco.mjtGeom.mjGEOM_BOX,
            z - (np.abs(Rz) * size).sum(1),
            np.where(
                kind == mujoco.mjtGeom.mjGEOM_CAPSULE,
                z - np.abs(Rz[:, 2]) * size[:, 1] - size[:, 0],
                z - size[:, 0],
            ),
        )
        out["low"].append(low.min())
    return {k: np.array(v) for k, v in out.items()}


CONTACT_HEIGHT = 0.08
"""A reference frame whose lowest point is within this (m) of the floor touches it (as
:data:`bodies.motion.features.CONTACT_HEIGHT`: retargeted planted feet float up to 7 cm)."""


def floor_heights(low: np.ndarray, *, loops: bool) -> np.ndarray:
    """How far to lower each reference frame to put it on the floor.

    First the whole motion: by the 5th percentile of its frames' lowest points (as
    :func:`bodies.motion.dataset.floor_offset` does for the feet). Then each frame whose lowest
    point is within :data:`CONTACT_HEIGHT` of the floor: by that point's height, so that it
    touches the floor exactly (retargeted clips float a planted foot by up to a few cm); frames
    in between (flight) by the linear interpolation of their neighbours' amounts (around the
    loop when the motion loops). Example: lowest points ``[0.0, 0.03, 0.5, 0.03]`` (no loop)
    give ``[0.0, 0.03, 0.03, 0.03]``.

    Args:
        low: ``(T,)`` height of each frame's lowest geom point (m).
        loops: whether the motion cycles.

    Returns:
        ``(T,)`` amounts (m) to subtract from the root height.
    """
    base = float(np.percentile(low, 5.0))
    h = low - base
    touch = np.flatnonzero(h < CONTACT_HEIGHT)
    t = np.arange(len(low))
    extra = np.interp(t, touch, h[touch], period=len(low) if loops else None)
    return base + extra


def _decide_loop(xpos: np.ndarray, root_R: np.ndarray, loop: str) -> bool:
    """Whether the motion cycles (module docstring) under ``loop`` = auto / wrap / none."""
    if loop != "auto" or len(xpos) < 3:
        return loop == "wrap"
    yaw = np.arctan2(root_R[:, 1, 0], root_R[:, 0, 0])
    P = np.stack(
        [_heading_relative(xpos[t], xpos[t, 0] * [1, 1, 0], root_R[t]) for t in range(len(xpos))]
    )
    steps = np.linalg.norm(P[1:] - P[:-1], axis=-1).mean(-1)
    wrap = np.linalg.norm(P[0] - P[-1], axis=-1).mean()
    turn = abs(math.remainder(yaw[0] - yaw[-1], 2 * math.pi))
    return bool(wrap <= 3 * np.percentile(steps, 90) and turn < math.radians(15))


def load_reference_motion(motion: Any, betas: np.ndarray) -> Any:
    """The reference as a :class:`~bodies.motion.dataset.Motion` at 30 fps, or one clear error.

    Args:
        motion: a DeepMimic clip name, a ``.npz``/``.bvh`` path, or a ``Motion``.
        betas: the humanoid's shape; a ``.npz`` that records other ``betas`` is refused.

    Returns:
        The motion (at least 3 frames) at :data:`FPS`.
    """
    from bodies.motion.clips import CLIP_NAMES
    from bodies.motion.dataset import Motion, deepmimic_motion, load_motions, resample

    if isinstance(motion, Motion):
        m = resample(motion, FPS) if motion.fps != FPS else motion
    elif isinstance(motion, str) and motion in CLIP_NAMES:
        m = deepmimic_motion(motion)
    elif isinstance(motion, (str, os.PathLike)) and Path(motion).suffix.lower() in (".npz", ".bvh"):
        path = Path(motion)
        if not path.is_file():
            raise MpgymError(f"no motion file at {path}.")
        if path.suffix.lower() == ".npz":
            _check_file_betas(path, betas)
        m = load_motions(path, fps=FPS)[0]
    else:
        raise MpgymError(
            f"unknown motion {motion!r}; accepted: a DeepMimic clip name "
            f"({', '.join(CLIP_NAMES)}), a path to a .npz or .bvh motion file, or "
            "a bodies.motion.dataset.Motion."
        )
    if len(m) < 3:
        raise MpgymError(f"motion {m.label!r} has {len(m)} frames at {FPS} fps; need >= 3.")
    _warn_unrepresentable(m)
    return m


def _check_file_betas(path: Path, betas: np.ndarray) -> None:
    from bodies.io import load_npz

    arrays = load_npz(path)
    if "betas" not in arrays:
        return
    if arrays["betas"].dtype.kind not in "iuf":
        raise MpgymError(f"{path} has betas of type {arrays['betas'].dtype}; expected numbers.")
    fb = arrays["betas"].astype(np.float64).ravel()
    n = min(len(fb), len(betas))
    if np.abs(fb[:n] - betas[:n]).max(initial=0.0) > 1e-3:
        raise MpgymError(
            f"{path} records a body of betas {np.round(fb[:n], 3).tolist()}, but the humanoid "
            f"has betas {np.round(betas[:n], 3).tolist()}: the motion's skeleton does not match. "
            "Pass the file's betas (betas=...) to the env."
        )


def _warn_unrepresentable(motion: Any) -> None:
    """Log how far a motion moves joints the humanoid locks or hinges about another axis."""
    qpos = mjcf.pose_to_qpos(motion.global_orient, motion.body_pose, motion.transl)
    back = mjcf.qpos_to_pose(qpos)
    from scipy.spatial.transform import Rotation

    a = Rotation.from_rotvec(motion.body_pose.reshape(-1, 3))
    b = Rotation.from_rotvec(back.body_pose.reshape(-1, 3))
    err = np.degrees((a.inv() * b).magnitude().max())
    if err > 5.0:
        log.warning(
            "motion %r moves joints the humanoid locks or hinges about another axis by "
            "up to %.0f degrees; those parts are dropped.",
            motion.label,
            err,
        )


# ------------------------------------------------------------------ the compiled kernel
# Loops over the bodies for numba (``_compiled_kernel``), the twin of ``_evaluate_numpy``:
# ``static`` is the index table [simulated joints (16), their parents (15), end effectors (4),
# watched bodies (2)]; ``terms`` receives (r_pose, r_vel, r_end, r_com, joint_error, mpjpe,
# dropped).
def _evaluate_loops(
    xpos,
    xmat,
    cvel,
    subtree_com,
    ids,
    static,
    w,
    scales,
    rxpos,
    rxmat,
    rlocal,
    romega,
    rend,
    rcom,
    step,
    loops,
    cycle_shift,
    delta,
    future,
    fall_drop,
    obs,
    terms,
):  # pragma: no cover - compiled by numba
    """Observation into ``obs`` and reward terms into ``terms`` at ``step`` (see above)."""
    X, R, W, V = _gather(xpos, xmat, cvel, subtree_com, ids)
    T = len(rxpos)
    f, shift = _locate(step, T, loops, cycle_shift, delta)
    yaw = math.atan2(R[0, 1, 0], R[0, 0, 0])
    c, s = math.cos(yaw), math.sin(yaw)  # heading frame: rows (c, s, 0), (-s, c, 0), (0, 0, 1)
    _score(
        X,
        R,
        W,
        subtree_com[ids[0]],
        static,
        w,
        scales,
        rxpos[f],
        rxmat[f, 0],
        rlocal[f],
        romega[f],
        rend[f],
        rcom[f],
        shift,
        c,
        s,
        fall_drop,
        terms,
    )
    phi = 2.0 * math.pi * f / (T if loops else max(T - 1, 1))
    o = _observe_state(X, R, W, V, static[: len(w)], c, s, obs)
    obs[o], obs[o + 1] = math.sin(phi), math.cos(phi)
    o += 2
    for i in range(len(future)):
        g, gs = _locate(step + future[i], T, loops, cycle_shift, delta)
        o = _observe_reference(X, rxpos[g], rxmat[g], gs, static[: len(w)], c, s, obs, o)


def _gather(xpos, xmat, cvel, subtree_com, ids):  # pragma: no cover - compiled by numba
    """Bodies' positions, rotations, angular and linear velocities (world), SMPL order."""
    nb = len(ids)
    X, R, W, V = np.empty((nb, 3)), np.empty((nb, 3, 3)), np.empty((nb, 3)), np.empty((nb, 3))
    c0 = subtree_com[ids[0]]
    for j in range(nb):
        b = ids[j]
        for a in range(3):
            X[j, a], W[j, a] = xpos[b, a], cvel[b, a]
            for k in range(3):
                R[j, a, k] = xmat[b, 3 * a + k]
        dx, dy, dz = X[j, 0] - c0[0], X[j, 1] - c0[1], X[j, 2] - c0[2]
        V[j, 0] = cvel[b, 3] + W[j, 1] * dz - W[j, 2] * dy
        V[j, 1] = cvel[b, 4] + W[j, 2] * dx - W[j, 0] * dz
        V[j, 2] = cvel[b, 5] + W[j, 0] * dy - W[j, 1] * dx
    return X, R, W, V


def _score(
    X,
    R,
    W,
    com,
    static,
    w,
    scales,
    rx,
    rroot,
    rlocal,
    romega,
    rend,
    rcom,
    shift,
    c,
    s,
    fall_drop,
    terms,
):  # pragma: no cover - compiled by numba
    """The reward terms of one frame (module docstring) into ``terms``."""
    ns = len(w)
    sim, par, ee, watch = (
        static[:ns],
        static[ns : 2 * ns - 1],
        static[2 * ns - 1 : 2 * ns + 3],
        static[2 * ns + 3 :],
    )
    tr = 0.0
    for a in range(3):
        for k in range(3):
            tr += R[0, a, k] * rroot[a, k]
    pose_err = w[0] * math.acos(min(1.0, max(-1.0, 0.5 * (tr - 1.0)))) ** 2
    vel_err = w[0] * (
        (W[0, 0] - romega[0, 0]) ** 2
        + (W[0, 1] - romega[0, 1]) ** 2
        + (W[0, 2] - romega[0, 2]) ** 2
    )
    for n in range(ns - 1):
        j, p = sim[n + 1], par[n]
        tr = 0.0
        for a in range(3):
            for k in range(3):  # (R_p^T R_j)[a, k]
                tr += (
                    R[p, 0, a] * R[j, 0, k] + R[p, 1, a] * R[j, 1, k] + R[p, 2, a] * R[j, 2, k]
                ) * rlocal[n, a, k]
            rel = (
                R[p, 0, a] * (W[j, 0] - W[p, 0])
                + R[p, 1, a] * (W[j, 1] - W[p, 1])
                + R[p, 2, a] * (W[j, 2] - W[p, 2])
            )
            vel_err += w[n + 1] * (rel - romega[n + 1, a]) ** 2
        pose_err += w[n + 1] * math.acos(min(1.0, max(-1.0, 0.5 * (tr - 1.0)))) ** 2
    end_err = 0.0
    for e in range(len(ee)):
        px, py = X[ee[e], 0] - X[0, 0], X[ee[e], 1] - X[0, 1]
        end_err += (
            (c * px + s * py - rend[e, 0]) ** 2
            + (-s * px + c * py - rend[e, 1]) ** 2
            + (X[ee[e], 2] - rend[e, 2]) ** 2
        )
    com_err = 0.0
    for a in range(3):
        com_err += (com[a] - rcom[a] - shift[a]) ** 2
    nb = len(X)
    joint_err, mpjpe = 0.0, 0.0
    for j in range(nb):
        d1, d2 = 0.0, 0.0
        for a in range(3):
            d1 += (X[j, a] - rx[j, a] - shift[a]) ** 2
            d2 += (X[j, a] - X[0, a] - rx[j, a] + rx[0, a]) ** 2
        joint_err += math.sqrt(d1) / nb
        mpjpe += math.sqrt(d2) / nb
    dropped = 0.0
    for i in range(len(watch)):
        if X[watch[i], 2] < rx[watch[i], 2] - fall_drop:
            dropped = 1.0
    terms[0] = math.exp(-scales[0] * pose_err)
    terms[1] = math.exp(-scales[1] * vel_err)
    terms[2] = math.exp(-scales[2] * end_err)
    terms[3] = math.exp(-scales[3] * com_err)
    terms[4], terms[5], terms[6] = joint_err, mpjpe, dropped


def _observe_state(X, R, W, V, sim, c, s, obs):  # pragma: no cover - compiled by numba
    """The humanoid's part of the observation, from ``obs[0]``; returns the next index."""
    obs[0] = X[0, 2]
    o = _put_6d(obs, 1, R[0], c, s)
    for n in range(1, len(sim)):
        j = sim[n]
        px, py = X[j, 0] - X[0, 0], X[j, 1] - X[0, 1]
        obs[o], obs[o + 1] = c * px + s * py, -s * px + c * py
        obs[o + 2] = X[j, 2] - X[0, 2]
        o += 3
    for n in range(1, len(sim)):
        o = _put_6d(obs, o, R[sim[n]], c, s)
    for arr in (V, W):
        for n in range(len(sim)):
            j = sim[n]
            obs[o], obs[o + 1] = c * arr[j, 0] + s * arr[j, 1], -s * arr[j, 0] + c * arr[j, 1]
            obs[o + 2] = arr[j, 2]
            o += 3
    return o


def _observe_reference(X, rx, rR, shift, sim, c, s, obs, o):  # pragma: no cover - numba
    """One reference frame's body positions and rotations in the humanoid's heading frame."""
    for n in range(len(sim)):
        j = sim[n]
        px, py = rx[j, 0] + shift[0] - X[0, 0], rx[j, 1] + shift[1] - X[0, 1]
        obs[o], obs[o + 1] = c * px + s * py, -s * px + c * py
        obs[o + 2] = rx[j, 2] + shift[2] - X[0, 2]
        o += 3
    for n in range(len(sim)):
        o = _put_6d(obs, o, rR[sim[n]], c, s)
    return o


def _locate(k, T, loops, cycle_shift, delta):  # pragma: no cover - compiled by numba
    """:meth:`HumanoidImitateEnv._locate` for the kernel: ``(frame, shift (3,))``."""
    if loops:
        return k % T, (k // T) * cycle_shift + delta
    return min(k, T - 1), 0.0 * cycle_shift


def _put_6d(obs, o, M, c, s):  # pragma: no cover - compiled by numba
    """Write the first two columns of ``H M`` (rows first) at ``obs[o:o+6]``; return ``o + 6``."""
    for k in range(2):
        obs[o + k] = c * M[0, k] + s * M[1, k]
        obs[o + 2 + k] = -s * M[0, k] + c * M[1, k]
        obs[o + 4 + k] = M[2, k]
    return o + 6


_KERNEL_HELPERS = (
    "_put_6d",
    "_locate",
    "_gather",
    "_score",
    "_observe_state",
    "_observe_reference",
)


@functools.cache
def _compiled_kernel() -> Any:
    """:func:`_evaluate_loops` compiled by numba (cached on disk), or None without numba."""
    try:
        import numba
    except ImportError:
        return None
    for name in _KERNEL_HELPERS:  # the kernel calls the compiled helpers it finds as globals
        globals()[name] = numba.njit(cache=True, nogil=True)(globals()[name])
    return numba.njit(cache=True, nogil=True)(_evaluate_loops)


# ------------------------------------------------------------------ small helpers
def _check_config(config: Any) -> ImitationConfig:
    if config is None:
        return ImitationConfig()
    if isinstance(config, dict):
        names = {f.name for f in dataclasses.fields(ImitationConfig)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise MpgymError(
                f"unknown ImitationConfig field(s) {unknown}; accepted: {', '.join(sorted(names))}."
            )
        lists = {k: tuple(v) for k, v in config.items() if isinstance(v, list)}
        config = ImitationConfig(**{**config, **lists})
    if not isinstance(config, ImitationConfig):
        raise MpgymError(
            f"config must be an ImitationConfig or a dict; got {type(config).__name__}."
        )
    c = config
    for name, accepted in (
        ("action_mode", ("absolute", "residual")),
        ("loop", ("auto", "wrap", "none")),
        ("backend", ("auto", "numba", "numpy")),
    ):
        if getattr(c, name) not in accepted:
            raise MpgymError(
                f"ImitationConfig.{name} {getattr(c, name)!r}; accepted: {', '.join(accepted)}."
            )
    substeps = round(1.0 / (FPS * c.timestep)) if 0 < c.timestep <= 1 / FPS else 0
    if substeps < 1 or abs(substeps * c.timestep * FPS - 1.0) > 1e-9:
        raise MpgymError(
            f"ImitationConfig.timestep {c.timestep!r} must divide the 1/30 s policy step "
            "(1/60, 1/90, 1/120, 1/150, ...)."
        )
    if len(c.weights) != 4 or len(c.scales) != 4 or min(*c.weights, *c.scales) < 0:
        raise MpgymError("ImitationConfig needs four weights and four scales, all >= 0.")
    if any(not isinstance(k, int) or k < 1 for k in c.future_frames):
        raise MpgymError(f"future_frames must be integers >= 1; got {c.future_frames!r}.")
    return c


def _yaw(R: np.ndarray) -> float:
    """Heading of a root rotation: the angle of its forward (x) axis about the vertical."""
    return math.atan2(R[1, 0], R[0, 0])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _six_d(R: np.ndarray) -> np.ndarray:
    """6D rotation representation: the first two columns, ``(..., 3, 3) -> (..., 6)``."""
    return R[..., :, :2].reshape(*R.shape[:-2], 6)


def _heading_relative(p: np.ndarray, root: np.ndarray, root_R: np.ndarray) -> np.ndarray:
    """Points relative to the root in its heading frame, with their height above the floor."""
    H = _rot_z(-_yaw(root_R))
    out = (p - root) @ H.T
    out[..., 2] = p[..., 2]
    return out


def _make_renderer(model: Any, height: int, width: int) -> Any:
    """MuJoCo's offscreen renderer, or a clear error when no GL backend works."""
    try:
        return mujoco.Renderer(model, height=height, width=width)
    except Exception as exc:  # noqa: BLE001 -- any GL failure is the same advice
        raise MpgymError(
            f"cannot render headless with MUJOCO_GL={os.environ.get('MUJOCO_GL', '')!r} "
            f"({type(exc).__name__}: {exc}). Set MUJOCO_GL=egl (or osmesa) before anything "
            "imports mujoco, with the EGL (libegl1) or OSMesa libraries installed."
        ) from None
