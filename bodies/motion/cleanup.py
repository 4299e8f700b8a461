"""Foot locking: cancel the horizontal slide of feet that generated motion marks as planted.

A generated feature window (:mod:`bodies.motion.features`) carries its own foot-contact
channels (``CONTACTS``, one per joint of :data:`~bodies.motion.features.FOOT_JOINTS`). Where
the model says a foot joint is planted, the joint should not move horizontally in the world;
generators that only learn this softly (MDM's foot-contact loss) still let it slide. The
cleanup here is the root correction of footskate cleanup (Kovar et al. 2002) and of the
post-processing of contact-predicting motion generators: the body's pose is kept, and over each
step whose planted joints slide, the root's planar translation is replaced by the one that
holds those joints still.

For the step ``t -> t + 1`` a joint at heading-frame position ``p_t`` (relative to the root's
ground projection) moves in the world, in frame ``t``'s heading frame, by
``d = R_y(a_t) p_{t+1} + v_t / fps - p_t`` with ``a_t = yaw_rate_t / fps`` and ``v_t`` the
root's planar velocity (:func:`bodies.motion.mdm.joint_displacements`). Its horizontal part
vanishes for ``v_t / fps = u = (p_t - R_y(a_t) p_{t+1})_{xz}``; with several planted joints
the least-squares root step is the mean of their ``u``:

``v_t <- (1 - s) v_t + s * fps * mean_{j planted} u_j``  (``s`` = :attr:`FootLockConfig.strength`)

Example: a body standing still (no yaw, ``v = 0``) whose planted left ankle drifts 1 cm to
``+x`` per frame gets ``v_x = -0.3`` m/s (at 30 fps), which carries the whole body 1 cm to
``-x`` per frame, so that ankle stays put while the rest of the pose moves as generated.

Only ``ROOT_VELOCITY`` changes (its last frame repeats the one before, as in
:func:`~bodies.motion.features.motion_to_features`): rotations, heading-frame positions,
heights, yaw rate and the contact channels are kept, so a consistent feature vector stays
consistent (:func:`~bodies.motion.features.features_to_motion` and back reproduce it) and the
new root velocity depends only on what is kept, which makes the cleanup idempotent at
``strength = 1``. A step is left alone when locking would change its root velocity by more
than :attr:`FootLockConfig.max_slide` (a foot "planted" while it flies). Steps where the
joints planted at the same time move apart (both feet planted but the generated legs still
scissoring) keep the least-squares slide; a leg IK would be the next step there.

Contacts are the generator's own channels thresholded at :attr:`FootLockConfig.threshold`,
not the kinematic labels of :func:`~bodies.motion.features.contact_labels` nor the thresholds
of :func:`bodies.motion.metrics.foot_skating`.

References:
    Kovar, Schreiner, Gleicher (2002) Footskate Cleanup for Motion Capture Editing, SCA.
    Tevet et al. (2023) Human Motion Diffusion Model, ICLR (foot-contact loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bodies.motion.features import (
    CONTACTS,
    FOOT_JOINTS,
    FPS,
    NUM_JOINTS,
    POSITIONS,
    ROOT_VELOCITY,
    YAW_RATE,
    D,
)
from mpgym.errors import MpgymError


@dataclass(frozen=True)
class FootLockConfig:
    """Options of :func:`foot_lock`; the defaults were chosen on the "val" split.

    Chosen with MDM's ``default`` preset trained on "fit" (seed 0), 208 generated windows with
    the "val" labels: skating (:func:`bodies.motion.metrics.foot_skating`) 0.467 without the
    cleanup, 0.116 with these defaults, data 0.207; FD over the floor 1.235 -> 1.220.
    """

    threshold: float = 0.5
    """A foot joint is planted at a frame when its contact channel exceeds this (the channels
    are trained on 0/1 labels). On "val": 0.3 skated 0.167, 0.5 0.116, 0.7 0.129 (a low
    threshold locks feet that are lifting off and drags the body with them)."""
    step: Literal["start", "both"] = "start"
    """A step ``t -> t + 1`` is locked for a joint planted at frame ``t`` (``"start"``, the
    convention of MDM's foot-contact loss) or at both frames (``"both"``); on "val" they tie
    (0.116 and 0.114)."""
    strength: float = 1.0
    """Fraction of the slide removed: 1 holds planted joints still, 0 changes nothing (0.5:
    skating 0.255 on "val")."""
    max_slide: float = 2.0
    """Steps whose planted joints slide faster than this (m/s: the root correction that
    locking would need) are left alone, since the generated legs disagree with the contact
    channels there. With no limit (as in the figures above), 3 s chained motions got root
    speeds up to 7.8 m/s (data: 4.0) and a mean |second difference| of the root velocity of
    0.177 m/s (raw samples 0.042, data 0.079); 2 m/s gives 4.5 m/s and 0.113 at the same
    skating on "val" windows (1 m/s: 0.160)."""

    def check(self) -> None:
        """Refuse options that do not define a cleanup (one :class:`MpgymError`)."""
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold)):
            raise MpgymError(
                f"FootLockConfig.threshold must be a finite number; got {self.threshold!r}."
            )
        if self.step not in ("start", "both"):
            raise MpgymError(f"FootLockConfig.step must be 'start' or 'both'; got {self.step!r}.")
        if not (isinstance(self.strength, (int, float)) and 0 <= self.strength <= 1):
            raise MpgymError(f"FootLockConfig.strength must be in [0, 1]; got {self.strength!r}.")
        if not (isinstance(self.max_slide, (int, float)) and self.max_slide > 0):
            raise MpgymError(
                f"FootLockConfig.max_slide must be a number > 0 (inf: no limit); got "
                f"{self.max_slide!r}."
            )


def _as_feats(feats: np.ndarray) -> np.ndarray:
    """``feats`` as float64 ``(..., T, D)``, finite; else one :class:`MpgymError`."""
    if hasattr(feats, "detach"):
        feats = feats.detach().cpu().numpy()
    arr = np.asarray(feats)
    if arr.dtype.kind not in "fiu" or arr.ndim < 2 or arr.shape[-1] != D or arr.shape[-2] < 1:
        raise MpgymError(
            f"foot_lock takes real motion features of shape (..., T, {D}) with T >= 1; got "
            f"{arr.dtype} {arr.shape}."
        )
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise MpgymError("foot_lock got NaN or infinite features; only finite ones accepted.")
    return arr


def planted(feats: np.ndarray, config: FootLockConfig = FootLockConfig()) -> np.ndarray:
    """Which foot joints are locked over each step, from the contact channels.

    Args:
        feats: ``(..., T, D)`` raw features, ``T >= 1``.
        config: the threshold and the step rule.

    Returns:
        ``(..., T - 1, 4)`` bool, one column per joint of :data:`FOOT_JOINTS`.
    """
    config.check()
    c = _as_feats(feats)[..., CONTACTS] > config.threshold  # [..., T, 4]
    start = c[..., :-1, :]
    return start & c[..., 1:, :] if config.step == "both" else start


def root_steps_holding_feet(feats: np.ndarray, *, fps: float = FPS) -> np.ndarray:
    """The root's planar step ``t -> t + 1`` that would hold each foot joint still.

    ``u = (p_t - R_y(yaw_rate_t / fps) p_{t+1})_{xz}`` in frame ``t``'s heading frame (module
    docstring); the root velocity that holds joint ``j`` is ``fps * u_j``.

    Args:
        feats: ``(..., T, D)`` raw features.
        fps: their frame rate.

    Returns:
        ``(..., T - 1, 4, 2)`` metres, ``(x, z)`` per joint of :data:`FOOT_JOINTS`.
    """
    x = _as_feats(feats)
    p = x[..., POSITIONS].reshape(*x.shape[:-1], NUM_JOINTS, 3)[..., list(FOOT_JOINTS), :]
    a = x[..., :-1, YAW_RATE] / fps  # [..., T-1, 1]
    c, s = np.cos(a), np.sin(a)
    nxt = p[..., 1:, :, :]
    ux = p[..., :-1, :, 0] - (c * nxt[..., 0] + s * nxt[..., 2])
    uz = p[..., :-1, :, 2] - (-s * nxt[..., 0] + c * nxt[..., 2])
    return np.stack([ux, uz], -1)


def foot_lock(
    feats: np.ndarray, config: FootLockConfig = FootLockConfig(), *, fps: float = FPS
) -> np.ndarray:
    """Remove the horizontal slide of planted foot joints by correcting the root's translation.

    Over every step where some joint is planted (:func:`planted`) the root velocity becomes
    ``(1 - s) v + s * fps * mean_j u_j`` over the planted joints ``j``
    (:func:`root_steps_holding_feet`), unless that changes it by more than
    ``config.max_slide``; other steps keep theirs; the last frame repeats the step before
    it. Everything but ``ROOT_VELOCITY`` is returned unchanged.

    Args:
        feats: ``(..., T, D)`` raw (de-normalised) features, e.g. ``(N, T, D)`` generated
            windows or ``(T, D)`` one motion.
        config: contact threshold, step rule and strength.
        fps: frame rate of the features.

    Returns:
        Same shape, float32.

    Raises:
        MpgymError: features of another shape, non-finite ones, or a bad config.
    """
    config.check()
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise MpgymError(f"fps must be a finite number > 0; got {fps!r}.")
    x = _as_feats(feats)
    if x.shape[-2] < 2:  # no step to lock
        return x.astype(np.float32)
    mask = planted(x, config)  # [..., T-1, 4]
    u = root_steps_holding_feet(x, fps=fps)  # [..., T-1, 4, 2]
    count = mask.sum(-1, keepdims=True)  # [..., T-1, 1]
    held = (u * mask[..., None]).sum(-2) / np.maximum(count, 1) * fps  # [..., T-1, 2]
    old = x[..., :-1, ROOT_VELOCITY]
    lock = (count > 0) & (np.linalg.norm(held - old, axis=-1, keepdims=True) <= config.max_slide)
    new = np.where(lock, old + config.strength * (held - old), old)
    out = x.copy()
    out[..., :-1, ROOT_VELOCITY] = new
    out[..., -1, ROOT_VELOCITY] = new[..., -1, :]
    return out.astype(np.float32)
