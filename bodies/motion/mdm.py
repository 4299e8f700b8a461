"""MDM: the Human Motion Diffusion Model (Tevet et al. 2023) on 12-frame feature windows.

A transformer encoder predicts the clean window ``x_0`` (not the noise) from a noisy one
``x_t``, the diffusion step ``t`` and the clip label; training adds MDM's geometric losses on
the predicted ``x_0``; sampling is DDIM (``generative.diffusion.ddim_sample``) with
classifier-free guidance; known frames are inpainted, and long motion is a chain of windows,
each starting from the previous window's last frames (prefix completion).

Data convention: windows are ``(n, W, D)`` float32 with ``W = dataset.WINDOW = 12`` frames at
30 fps and ``D = features.D = 224`` numbers per frame, normalised per dimension by the
dataset's ``Normalizer`` (whose mean and std the model keeps as buffers). Features are
heading-relative, so windows chain without any alignment: root motion continues because each
frame's velocity and yaw rate are integrated from wherever the previous frame left off.

What follows MDM (its paper and its repository, ``GuyTevet/motion-diffusion-model``):

- x0 prediction, cosine schedule, ``T = 1000``; the simple loss is the MSE to ``x_0``.
- Denoiser: per-frame linear in/out, a timestep token (sinusoid -> Linear-SiLU-Linear) put in
  front of the frames, sinusoidal positions, a post-norm ``nn.TransformerEncoder`` with GELU,
  dropout 0.1, 4 heads. MDM's size is latent 512, 8 layers, feed-forward 1024; ours is smaller
  by default (see :data:`PRESETS`) because our data is 27 s of motion.
- Action conditioning: a learned embedding per label added to the timestep token; for
  classifier-free guidance the embedding is zeroed with probability 0.1 in training (MDM's
  ``mask_cond``), and sampling mixes ``x0_c + w (x0_c - x0_u)``. MDM writes the scale as
  ``s = 1 + w`` (its default ``s = 2.5`` is our ``w = 1.5``; ours is 0.5, see
  :data:`PRESETS`); ``w = 0`` is the conditional model. (MDM's released action-to-motion
  models train with ``cond_mask_prob 0``, i.e. without guidance; its text models use 0.1 and
  2.5. Guidance here follows the latter.)
- Geometric losses (MDM's action-to-motion weights are ``lambda_rcxyz = lambda_vel =
  lambda_fc = 1``; ours are 1, 10, 30, see :data:`PRESETS`), computed on the de-normalised
  predicted ``x_0``: joint positions (the ``POSITIONS`` slice, metres), joint velocities
  (per-frame displacements of the joints, as in the paper's eq. 4; MDM's code takes them on
  the representation instead) and foot contact
  (velocity of the ``FOOT_JOINTS`` where the ground truth's contact label is 1 should be zero;
  MDM thresholds the ground-truth foot speed at 1 cm/frame, our features carry the label).
  MDM's positions are global; ours are heading-relative, so velocities are the world
  displacements that the root velocity and yaw rate imply (:func:`joint_displacements`).
- Editing: at every step the known part of the predicted ``x_0`` is replaced by the given
  frames (MDM's ``inpainting_mask``); DDIM's last step returns that ``x_0``, so the given
  frames come back exactly. Known limitation: the first frames after a given prefix jump
  (chained motion, default model: mean |second difference| 0.12 in normalised units at the
  joins against 0.02 inside windows); showing the prefix clean to the denoiser in training
  (as MDM's prefix-completion model and DiP do), a warm start from the prefix, 50 DDIM steps
  and more training did not reduce it; a 6-frame prefix barely did (-10%).
- Speed: MDM's "50 steps" models are retrained with ``T = 50`` and sampled ancestrally; we
  keep ``T = 1000`` and sample with deterministic DDIM (``eta = 0``) on few steps instead,
  which needs no retraining because DDIM only uses the model's ``x_0`` prediction.

References:
    Tevet et al. (2023) Human Motion Diffusion Model, ICLR, arXiv:2209.14916;
    Song et al. (2021) DDIM, arXiv:2010.02502; Ho & Salimans (2022) classifier-free guidance,
    arXiv:2207.12598; Nichol & Dhariwal (2021) cosine schedule, arXiv:2102.09672.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

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
from generative.diffusion import (
    Schedule,
    cosine_betas,
    ddim_sample,
    ddim_timesteps,
    q_sample,
    timestep_embedding,
    x0_to_eps,
)
from generative.trainer import TrainConfig, train
from mpgym.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mpgym.errors import MpgymError

if TYPE_CHECKING:
    from bodies.motion.dataset import Normalizer
    from mpgym import RunDir

log = logging.getLogger(__name__)

KIND = "mdm"
"""Checkpoint kind."""
VAL_WINDOWS = 256
"""Training windows scored during ``split="train"`` runs (logged, not used for selection)."""


# ---------------------------------------------------------------------------- config
@dataclass(frozen=True)
class MDMConfig:
    """MDM's model and sampling options; MDM's own values are in each field's note."""

    window: int = 12
    """Frames per window (``dataset.WINDOW``)."""
    latent: int = 128
    """Transformer width (MDM: 512; see :data:`PRESETS` for why ours is smaller)."""
    layers: int = 4
    """Encoder layers (MDM: 8)."""
    heads: int = 4
    """Attention heads (MDM: 4)."""
    ff: int = 512
    """Feed-forward width (MDM: 1024)."""
    dropout: float = 0.1
    """Dropout in the encoder and on the positions (MDM: 0.1)."""
    T: int = 1000
    """Diffusion steps of the cosine schedule (MDM: 1000)."""
    cond_drop: float = 0.1
    """Probability of training without the label, for guidance (MDM's ``cond_mask_prob``)."""
    lambda_pos: float = 1.0
    """Weight of the joint-position loss in m^2 (MDM's ``lambda_rcxyz`` for actions: 1)."""
    lambda_vel: float = 10.0
    """Weight of the joint-velocity loss in (m/frame)^2 (MDM's ``lambda_vel``: 1)."""
    lambda_foot: float = 30.0
    """Weight of the foot-contact loss in (m/frame)^2 (MDM's ``lambda_fc``: 1)."""
    ddim_steps: int = 10
    """DDIM steps when sampling (MDM samples 1000 ancestral steps, or 50 after retraining)."""
    guidance: float = 0.5
    """Classifier-free guidance ``w``; 0 is the conditional model (MDM: ``s = 1 + w = 2.5``)."""
    prefix: int = 4
    """Frames each window of a long motion takes from the previous one (prefix completion)."""
    balance: bool = True
    """Draw training windows label-balanced (clips differ 20x in length: "fit" has 6 run
    windows and 138 spin windows with mirrors); MDM samples its data uniformly."""
    mirror: bool = True
    """Train on mirrored copies of the training windows too."""
    foot_lock: bool = True
    """Post-process sampled motion with :func:`bodies.motion.cleanup.foot_lock` (feet that the
    generated contact channels mark as planted stop sliding; only the root velocity changes).
    Chosen on "val" (trained on "fit", seed 0): skating 0.467 -> 0.116 of contact steps
    (data 0.207), FD over the floor 1.235 -> 1.220, recognition and novelty unchanged (0.976
    -> 0.971, 0.68). Checkpoints saved without this key load with it on."""
    labels: tuple[str, ...] = ()
    """Label names, in label-id order (set by :func:`fit_mdm` from the data)."""

    @property
    def num_classes(self) -> int:
        """Number of labels (0: unconditional)."""
        return len(self.labels)

    def check(self) -> None:
        """Refuse options that cannot build or sample a model (one :class:`MpgymError`)."""
        ints = {
            "window": self.window,
            "latent": self.latent,
            "layers": self.layers,
            "heads": self.heads,
            "ff": self.ff,
            "T": self.T,
            "ddim_steps": self.ddim_steps,
        }
        for name, value in ints.items():
            if not (isinstance(value, int) and value >= 1):
                raise MpgymError(f"MDMConfig.{name} must be an integer >= 1; got {value!r}.")
        if self.latent % self.heads or self.latent % 2:
            raise MpgymError(
                f"MDMConfig.latent ({self.latent}) must be even and divisible by heads "
                f"({self.heads})."
            )
        if self.ddim_steps > self.T:
            raise MpgymError(f"MDMConfig.ddim_steps must be at most T = {self.T}.")
        if not (isinstance(self.prefix, int) and 1 <= self.prefix < self.window):
            raise MpgymError(
                f"MDMConfig.prefix must be an integer in 1..{self.window - 1}; got {self.prefix!r}."
            )
        if not isinstance(self.foot_lock, bool):
            raise MpgymError(f"MDMConfig.foot_lock must be True or False; got {self.foot_lock!r}.")
        for name in ("dropout", "cond_drop"):
            if not 0 <= getattr(self, name) < 1:
                raise MpgymError(f"MDMConfig.{name} must be in [0, 1); got {getattr(self, name)}.")
        for name in ("lambda_pos", "lambda_vel", "lambda_foot", "guidance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise MpgymError(f"MDMConfig.{name} must be a finite number >= 0; got {value!r}.")


PRESETS: dict[str, MDMConfig] = {
    "default": MDMConfig(),
    "tiny": MDMConfig(latent=64, layers=2, ff=128, ddim_steps=5),
}
"""``default``: chosen on the "fit" split, scored on "val" (52 windows of 9 clips) and, for
all 15 labels, by the motion classifier trained on "fit" (never on "test"); 10 DDIM steps:

- size: latent 128, 4 layers, feed-forward 512 (0.89M parameters). MDM's 512 x 8 does 0.6
  steps/s here, too slow for the 15-minute budget and 10 s of motion in 2 s (its forward pass
  is 22 ms against 2 ms). With MDM's loss weights, latent 256 x 4 (3.4M) reached val loss
  0.241 in 900 steps (the time cap), 128 x 4 0.236 (its best, at 1,250 steps), and the latter
  sampled closer to "val" (FD over the
  floor 1.24 against 1.73 at ``w = 1.5``); 256 x 2 had a lower loss but skated more (0.54 of
  contact steps against 0.29, data 0.27).
- losses: at MDM's weights of 1 the geometric terms are ~1e-3 of the simple loss (metres);
  velocity 10 and foot 30 brought the skating of generated windows from 0.67 to 0.32 of their
  contact steps (data 0.27) at equal FD (1.17, 1.20 over the floor, ``w = 0.5``); 100 and
  more lifted the feet off the ground (contact steps 0.25 -> 0).
- label balance: without it run and walk (6 and 24 "fit" windows) were recognised in 0% and
  6% of their samples; with it in 100%; all labels 0.77 -> 0.93 at ``w = 0``.
- guidance ``w = 0.5``: recognition of all labels 0.93 -> 0.98 and of the "val" labels 0.87
  -> 0.97, FD over the floor 1.03 -> 1.18, skating 0.34 -> 0.42 (``w = 1.5``: 0.99, 1.52,
  0.63). 5 DDIM steps raised the FD over the floor by 0.06-0.13, 20 lowered it by
  0.02-0.06 at twice the time.
- ``tiny``: tests and demos (trains in seconds).
"""

TRAIN_PRESETS: dict[str, TrainConfig] = {
    "default": TrainConfig(steps=1500, batch_size=64, lr=5e-4, ema=0.995, eval_every=250),
    "tiny": TrainConfig(steps=150, batch_size=32, lr=1e-3, ema=0.0, eval_every=50),
}
"""Training budgets for :data:`PRESETS`. ``default``: 1,500 steps (~3 min on one core); the
"val" loss was lowest at 1,250 of 1,500 (0.261) and of 3,000 steps (0.257), so longer runs only
overfit. MDM: batch 64, lr 1e-4, EMA 0.9999 over 600k steps; we use lr 5e-4 (cosine decay)
and EMA 0.995 for the short run."""


# ---------------------------------------------------------------------------- pure functions
def joint_positions(raw: torch.Tensor) -> torch.Tensor:
    """The ``POSITIONS`` slice of raw features as joints: ``(..., W, D) -> (..., W, 24, 3)`` m.

    Positions are in each frame's heading frame, relative to the root's ground projection.
    """
    return raw[..., POSITIONS].unflatten(-1, (NUM_JOINTS, 3))


def joint_displacements(raw: torch.Tensor, fps: float = FPS) -> torch.Tensor:
    """World motion of every joint from frame ``i`` to ``i + 1``, in frame ``i``'s heading frame.

    ``d_i = R_y(yaw_rate_i / fps) p_{i+1} + (v_x, 0, v_z)_i / fps - p_i`` with ``p`` the
    heading-frame positions and ``v`` the root's planar velocity: the world displacement
    ``p^w_{i+1} - p^w_i`` of :func:`bodies.motion.features.world_joints` rotated by
    ``R_y(-heading_i)``, so its length is the world distance a joint travels. (Differences of
    ``p`` alone would be motion relative to the root: a planted foot of a walking body moves
    backwards there.)

    Args:
        raw: ``(..., W, D)`` raw features.
        fps: their frame rate.

    Returns:
        ``(..., W - 1, 24, 3)`` metres per frame.
    """
    p = joint_positions(raw)  # [..., W, 24, 3]
    a = raw[..., :-1, YAW_RATE] / fps  # [..., W-1, 1]
    c, s = torch.cos(a), torch.sin(a)
    nxt = p[..., 1:, :, :]
    x = c * nxt[..., 0] + s * nxt[..., 2] + raw[..., :-1, ROOT_VELOCITY.start, None] / fps
    z = -s * nxt[..., 0] + c * nxt[..., 2] + raw[..., :-1, ROOT_VELOCITY.start + 1, None] / fps
    return torch.stack([x, nxt[..., 1], z], -1) - p[..., :-1, :, :]


@dataclass
class MDMLosses:
    """The terms of MDM's objective (each a scalar tensor) and their weighted sum."""

    simple: torch.Tensor
    """``mean ||x0_hat - x0||^2`` in normalised units."""
    pos: torch.Tensor
    """``mean ||p_hat - p||^2`` over joints and frames (heading-frame positions), m^2."""
    vel: torch.Tensor
    """``mean ||d_hat - d||^2`` of the joints' world displacements per frame, (m/frame)^2."""
    foot: torch.Tensor
    """``mean ||d_hat_f c||^2`` of the foot joints ``f`` where the true contact ``c = 1``."""
    total: torch.Tensor
    """``simple + lambda_pos pos + lambda_vel vel + lambda_foot foot``."""


def mdm_losses(
    pred: torch.Tensor,
    target: torch.Tensor,
    pred_raw: torch.Tensor,
    target_raw: torch.Tensor,
    *,
    lambda_pos: float = 1.0,
    lambda_vel: float = 1.0,
    lambda_foot: float = 1.0,
) -> MDMLosses:
    """MDM's loss (Tevet et al. eqs. 2-5) of a predicted window against the true one.

    Velocities are :func:`joint_displacements` (world motion per frame); the contact of the
    step ``i -> i + 1`` is the true label of frame ``i``. Means run over every entry (MDM's
    ``masked_l2`` with all frames valid).

    Args:
        pred: ``(n, W, D)`` predicted ``x_0``, normalised.
        target: ``(n, W, D)`` true ``x_0``, normalised.
        pred_raw: ``pred`` de-normalised (metres in the ``POSITIONS`` slice).
        target_raw: ``target`` de-normalised; its ``CONTACTS`` slice holds 0/1 labels.
        lambda_pos: weight of the position term.
        lambda_vel: weight of the velocity term.
        lambda_foot: weight of the foot-contact term.

    Returns:
        :class:`MDMLosses`. Example: a body standing still (no root motion), whose first foot
        joint the prediction moves 0.1 m sideways after frame 0 while the truth has it planted
        at frame 0, has over 3 frames ``pos = 2 * 0.01 / (3 * 72)``, ``vel = 0.01 / (2 * 72)``
        and ``foot = 0.01 / (2 * 12)``.
    """
    simple = (pred - target).pow(2).mean()
    pos = (joint_positions(pred_raw) - joint_positions(target_raw)).pow(2).mean()
    d_hat, d = joint_displacements(pred_raw), joint_displacements(target_raw)  # [n, W-1, 24, 3]
    vel = (d_hat - d).pow(2).mean()
    contact = (target_raw[..., :-1, CONTACTS] > 0.5).to(pred.dtype)  # [n, W-1, 4]
    foot = (d_hat[..., list(FOOT_JOINTS), :] * contact[..., None]).pow(2).mean()
    total = simple + lambda_pos * pos + lambda_vel * vel + lambda_foot * foot
    return MDMLosses(simple, pos, vel, foot, total)


def balanced_indices(labels: np.ndarray) -> np.ndarray:
    """Row indices that repeat each label's rows (cyclically) to the largest label's count.

    A uniform draw from the result is a label-balanced draw. Example: labels ``[0, 0, 0, 1]``
    give ``[0, 1, 2, 3, 3, 3]``.
    """
    labels = np.asarray(labels)
    present = np.unique(labels)
    if not len(present):
        return np.zeros(0, np.int64)
    most = max(int((labels == k).sum()) for k in present)
    return np.concatenate([np.resize(np.flatnonzero(labels == k), most) for k in present])


def chain_windows(total: int, window: int, prefix: int) -> int:
    """Windows needed for ``total`` frames when each after the first adds ``window - prefix``.

    E.g. ``(300, 12, 4)``: ``1 + ceil(288 / 8) = 37``; ``(5, 12, 4)``: 1.
    """
    return 1 + max(0, math.ceil((total - window) / (window - prefix)))


# ---------------------------------------------------------------------------- modules
class MotionTransformer(nn.Module):
    """``x0_theta(x_t, t, y)``: MDM's transformer-encoder denoiser for ``(n, W, D)`` windows."""

    def __init__(self, config: MDMConfig, dim: int = D):
        super().__init__()
        c = config
        self.latent = c.latent
        self.inp = nn.Linear(dim, c.latent)
        self.t_mlp = nn.Sequential(
            nn.Linear(c.latent, c.latent), nn.SiLU(), nn.Linear(c.latent, c.latent)
        )
        self.label = nn.Embedding(c.num_classes, c.latent) if c.num_classes else None
        if self.label is not None:
            nn.init.normal_(self.label.weight)  # MDM: torch.randn(num_actions, latent)
        pos = timestep_embedding(torch.arange(c.window + 1), c.latent)  # [W + 1, latent]
        self.register_buffer("pos", pos, persistent=False)
        self.drop = nn.Dropout(c.dropout)
        layer = nn.TransformerEncoderLayer(
            c.latent, c.heads, c.ff, c.dropout, activation="gelu", batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.out = nn.Linear(c.latent, dim)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict ``x_0``.

        Args:
            x: ``(n, W, D)`` noisy windows ``x_t``.
            t: ``(n,)`` long, steps in ``1..T``.
            y: ``(n,)`` long labels, or None (unconditional).
            keep: ``(n,)`` float, 1 keeps the label, 0 drops it (guidance); None keeps all.

        Returns:
            ``(n, W, D)`` predicted ``x_0``.
        """
        e = self.t_mlp(timestep_embedding(t, self.latent))  # [n, latent]
        if self.label is not None and y is not None:
            lab = self.label(y)
            e = e + (lab if keep is None else lab * keep[:, None])
        h = torch.cat([e[:, None], self.inp(x)], 1)  # [n, W + 1, latent]: step token first
        h = self.drop(h + self.pos[: h.shape[1]])
        return self.out(self.encoder(h)[:, 1:])


class MDM(nn.Module):
    """Label-conditioned motion diffusion on normalised windows (``loss`` for the trainer).

    Args:
        config: the options (``config.labels`` fixes the number of classes).
        mean: ``(D,)`` the normaliser's per-dimension mean.
        std: ``(D,)`` its per-dimension std.
    """

    def __init__(
        self,
        config: MDMConfig,
        mean: torch.Tensor | np.ndarray | None = None,
        std: torch.Tensor | np.ndarray | None = None,
    ):
        super().__init__()
        config.check()
        self.config = config
        self.num_classes = config.num_classes
        self.label_names = config.labels
        self.sched = Schedule.from_betas(cosine_betas(config.T))
        self.net = MotionTransformer(config)
        mean = torch.zeros(D) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std = torch.ones(D) if std is None else torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != (D,) or std.shape != (D,) or not bool((std > 0).all()):
            raise MpgymError(f"MDM needs a normaliser mean and std of shape ({D},), std > 0.")
        self.register_buffer("norm_mean", mean.clone())
        self.register_buffer("norm_std", std.clone())

    # ------------------------------------------------------------------ normalisation
    @property
    def normalizer(self) -> Normalizer:
        """The model's statistics as a :class:`bodies.motion.dataset.Normalizer` (a copy)."""
        from bodies.motion.dataset import Normalizer

        return Normalizer(self.norm_mean.numpy(), self.norm_std.numpy())

    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw features ``(..., D)`` to the normalised space (``Normalizer.normalize``)."""
        return (raw - self.norm_mean) / self.norm_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``(..., D)`` back to raw features."""
        return x * self.norm_std + self.norm_mean

    def label_ids(self, labels: Sequence[str] | None, n: int | None = None) -> torch.Tensor | None:
        """Label names to ids ``(n,)``; one name is repeated ``n`` times; None stays None.

        Raises:
            MpgymError: an unknown label, a count that is neither 1 nor ``n``, or labels for
                an unconditional model.
        """
        if labels is None:
            return None
        if isinstance(labels, str):
            labels = [labels]
        if not self.num_classes:
            raise MpgymError("this MDM is unconditional; pass labels=None.")
        unknown = sorted({lab for lab in labels if lab not in self.label_names})
        if unknown:
            raise MpgymError(
                f"unknown motion label(s) {unknown}; accepted: {', '.join(self.label_names)}."
            )
        if n is not None and len(labels) == 1:
            labels = list(labels) * n
        if n is not None and len(labels) != n:
            raise MpgymError(f"give 1 or n = {n} labels; got {len(labels)}.")
        return torch.tensor([self.label_names.index(lab) for lab in labels], dtype=torch.long)

    # ------------------------------------------------------------------ training
    def loss_terms(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        drop_labels: bool = True,
    ) -> MDMLosses:
        """MDM's loss terms at random steps ``t`` and noise (from ``generator``).

        Args:
            x: ``(n, W, D)`` normalised windows.
            y: ``(n,)`` long labels (None: unconditional).
            generator: random numbers for ``t``, the noise and the label drop.
            drop_labels: drop each label with probability ``config.cond_drop``.
        """
        n = x.shape[0]
        t = torch.randint(1, self.config.T + 1, (n,), generator=generator)
        noise = torch.randn(x.shape, generator=generator)
        keep = None
        if y is not None and drop_labels and self.config.cond_drop > 0:
            keep = (torch.rand(n, generator=generator) >= self.config.cond_drop).float()
        pred = self.net(q_sample(x, t, noise, self.sched), t, y, keep)
        c = self.config
        return mdm_losses(
            pred,
            x,
            self.denormalize(pred),
            self.denormalize(x),
            lambda_pos=c.lambda_pos,
            lambda_vel=c.lambda_vel,
            lambda_foot=c.lambda_foot,
        )

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The weighted total for :func:`generative.trainer.train` (global torch RNG)."""
        return self.loss_terms(x, y if self.num_classes else None).total

    # ------------------------------------------------------------------ sampling
    def predict_x0(
        self,
        xt: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor | None,
        guidance: float,
    ) -> torch.Tensor:
        """``x0_c + w (x0_c - x0_u)``; the two passes run as one batch of ``2n``.

        Args:
            xt: ``(n, W, D)``.
            t: ``(n,)`` steps.
            y: ``(n,)`` labels or None.
            guidance: ``w``.
        """
        if y is None or guidance == 0:
            return self.net(xt, t, y)
        n = xt.shape[0]
        keep = torch.cat([torch.ones(n), torch.zeros(n)])
        both = self.net(xt.repeat(2, 1, 1), t.repeat(2), y.repeat(2), keep)
        cond, uncond = both[:n], both[n:]
        return cond + guidance * (cond - uncond)

    @torch.no_grad()
    def sample_normalized(
        self,
        n: int,
        *,
        y: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """DDIM windows in normalised space, with guidance and inpainting.

        Args:
            n: windows.
            y: ``(n,)`` label ids (None: unconditional).
            known: ``(n, W, D)`` normalised frames to keep where ``mask`` is true.
            mask: ``(n, W)`` or ``(n, W, D)`` bool, true where ``known`` is given.
            steps: DDIM steps (default ``config.ddim_steps``).
            guidance: ``w`` (default ``config.guidance``).
            eta: DDIM's stochasticity (0: deterministic).
            generator: random numbers (the starting noise).

        Returns:
            ``(n, W, D)``; where ``mask`` is true it equals ``known`` exactly (each step's
            predicted ``x_0`` is overwritten there, and DDIM's last step returns ``x_0``).
        """
        c = self.config
        steps = c.ddim_steps if steps is None else steps
        w = c.guidance if guidance is None else guidance
        if mask is not None and mask.dim() == 2:
            mask = mask[..., None].expand(n, c.window, D)

        def predict(xt: torch.Tensor, t: torch.Tensor, a_t: torch.Tensor):
            x0 = self.predict_x0(xt, t, y, w)
            if known is not None and mask is not None:
                x0 = torch.where(mask, known, x0)
            return x0, x0_to_eps(xt, x0, a_t)

        x = torch.randn(n, c.window, D, generator=generator)
        return ddim_sample(
            predict, x, self.sched, ddim_timesteps(c.T, steps), eta=eta, generator=generator
        )

    def inpaint(
        self,
        known: np.ndarray | torch.Tensor,
        mask: np.ndarray | torch.Tensor,
        *,
        labels: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """Complete windows around given frames (in-betweening, prefix completion).

        Args:
            known: ``(n, W, D)`` raw features; only the entries under ``mask`` are read.
            mask: ``(n, W)`` or ``(n, W, D)`` bool, true where ``known`` is to be kept.
            labels: one label or ``n`` labels (None: unconditional).
            generator: random numbers.

        Returns:
            ``(n, W, D)`` float32 raw features equal to ``known`` wherever ``mask`` is true.
        """
        known_t = torch.as_tensor(np.asarray(known, dtype=np.float32))
        mask_t = torch.as_tensor(np.asarray(mask, dtype=bool))
        n, w = known_t.shape[0], self.config.window
        if known_t.shape != (n, w, D) or mask_t.shape not in ((n, w), (n, w, D)):
            raise MpgymError(
                f"inpaint takes known (n, {w}, {D}) and mask (n, {w}) or (n, {w}, {D}); got "
                f"{tuple(known_t.shape)} and {tuple(mask_t.shape)}."
            )
        if mask_t.dim() == 2:
            mask_t = mask_t[..., None].expand(n, w, D)
        known_n = torch.where(mask_t, self.normalize(known_t), torch.zeros(()))
        self.eval()
        out = self.sample_normalized(
            n, y=self.label_ids(labels, n), known=known_n, mask=mask_t, generator=generator
        )
        # the normaliser's round trip rounds in float32: give the known entries back as given
        return torch.where(mask_t, known_t, self.denormalize(out)).numpy()

    @torch.no_grad()
    def generate_windows(
        self, labels: Sequence[str], *, generator: torch.Generator | None = None
    ) -> np.ndarray:
        """One window per label: ``(len(labels), W, D)`` float32 raw features."""
        if labels is None or isinstance(labels, str) or len(labels) == 0:
            raise MpgymError(f"generate_windows takes a non-empty list of labels; got {labels!r}.")
        self.eval()
        y = self.label_ids(labels)
        n = len(labels)
        return self._cleanup(self.denormalize(self.sample_normalized(n, y=y, generator=generator)))

    @torch.no_grad()
    def generate(
        self,
        n: int,
        seconds: float,
        *,
        labels: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """``n`` motions of ``seconds`` each, as chained windows (prefix completion).

        The first window is sampled freely; each next one is inpainted with its first
        ``config.prefix`` frames fixed to the previous window's last ones and adds the rest.
        All ``n`` chains advance together as one batch.

        Args:
            n: motions.
            seconds: duration of each; ``T = round(seconds * FPS)`` frames.
            labels: one label for all or one per motion (None: unconditional).
            generator: random numbers.

        Returns:
            ``(n, T, D)`` float32 raw features at 30 fps.
        """
        if not (isinstance(n, int) and n >= 1):
            raise MpgymError(f"n must be an integer >= 1; got {n!r}.")
        frames = round(seconds * FPS) if math.isfinite(seconds) else 0
        if frames < 1:
            raise MpgymError(f"seconds must give at least one frame at {FPS} fps; got {seconds}.")
        self.eval()
        y = self.label_ids(labels, n)
        w, k = self.config.window, self.config.prefix
        x = self.sample_normalized(n, y=y, generator=generator)
        parts = [x]
        known = torch.zeros(n, w, D)
        mask = torch.zeros(n, w, dtype=torch.bool)
        mask[:, :k] = True
        for _ in range(chain_windows(frames, w, k) - 1):
            known[:, :k] = x[:, -k:]
            x = self.sample_normalized(n, y=y, known=known, mask=mask, generator=generator)
            parts.append(x[:, k:])
        return self._cleanup(self.denormalize(torch.cat(parts, 1)[:, :frames]))

    def _cleanup(self, raw: torch.Tensor) -> np.ndarray:
        """Sampled raw features ``(n, T, D)`` as float32 numpy, foot-locked if configured."""
        if not self.config.foot_lock:
            return raw.numpy()
        from bodies.motion.cleanup import foot_lock

        return foot_lock(raw.numpy())

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        """Weights, normaliser, config and labels in one ``.safetensors`` file, atomically."""
        save_checkpoint(
            path,
            self.state_dict(),
            kind=KIND,
            config=self.config,
            meta={"labels": list(self.label_names)},
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> MDM:
        """Read :meth:`save`'s file (or a run's ``checkpoint.safetensors``), checked first.

        Raises:
            MpgymError: not an MDM checkpoint, config keys or values that do not build a
                model, or tensors whose names, shapes or dtypes differ from the config's.
        """
        ckpt = load_checkpoint(path, expected_kind=KIND)
        config = config_from_dict(ckpt.config, where=str(ckpt.path))
        model = cls(config)
        expected = model.state_dict()
        got = ckpt.state_dict
        if set(got) != set(expected):
            missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
            raise CheckpointError(
                f"{ckpt.path}: tensors do not match the config (missing {missing[:5]}, "
                f"unexpected {extra[:5]})."
            )
        for name, ref in expected.items():
            if got[name].shape != ref.shape or got[name].dtype != ref.dtype:
                raise CheckpointError(
                    f"{ckpt.path}: tensor {name} is {got[name].dtype} {tuple(got[name].shape)}; "
                    f"the config needs {ref.dtype} {tuple(ref.shape)}."
                )
        if not bool(torch.isfinite(got["norm_std"]).all()) or not bool((got["norm_std"] > 0).all()):
            raise CheckpointError(f"{ckpt.path}: the normaliser's std must be finite and > 0.")
        model.load_state_dict(got)
        return model.eval()


def config_from_dict(data: dict[str, Any], *, where: str = "config") -> MDMConfig:
    """An :class:`MDMConfig` from its JSON (exactly its fields; lists become tuples).

    Raises:
        MpgymError: missing or unknown keys, or values :meth:`MDMConfig.check` refuses.
    """
    names = {f.name for f in dataclasses.fields(MDMConfig)}
    if isinstance(data, dict) and "foot_lock" not in data:  # saved before the option existed
        data = {**data, "foot_lock": MDMConfig.foot_lock}
    if not isinstance(data, dict) or set(data) != names:
        got = set(data) if isinstance(data, dict) else set()
        raise CheckpointError(
            f"{where}: not an MDM config (missing {sorted(names - got)}, unknown "
            f"{sorted(got - names)})."
        )
    data = dict(data)
    labels = data["labels"]
    if not (isinstance(labels, list) and all(isinstance(s, str) for s in labels)):
        raise CheckpointError(f"{where}: labels must be a list of names; got {labels!r}.")
    data["labels"] = tuple(labels)
    try:
        config = MDMConfig(**data)
        config.check()
    except (TypeError, MpgymError) as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    return config


# ---------------------------------------------------------------------------- training
def validation_loss(
    model: MDM, x: torch.Tensor, y: torch.Tensor | None, *, repeats: int = 8, seed: int = 0
) -> float:
    """Mean MDM loss over ``x`` at fixed random steps and noise, labels kept.

    The same steps and noise at every call, so scores compare across evaluations and runs.

    Args:
        model: the model (scored in its current mode; the trainer sets eval).
        x: ``(n, W, D)`` normalised windows.
        y: ``(n,)`` labels or None.
        repeats: passes over ``x``, each with fresh steps and noise.
        seed: seed of those steps and noise.
    """
    gen = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    with torch.no_grad():
        for _ in range(repeats):
            for i in range(0, len(x), 512):
                xb = x[i : i + 512]
                yb = None if y is None or not model.num_classes else y[i : i + 512]
                terms = model.loss_terms(xb, yb, generator=gen, drop_labels=False)
                total += float(terms.total) * len(xb)
                count += len(xb)
    return total / count


def fit_mdm(
    config: MDMConfig = PRESETS["default"],
    *,
    train: TrainConfig | None = None,
    split: str = "train",
    run: RunDir | None = None,
    seed: int = 0,
) -> MDM:
    """Train MDM on the windows of a split (the generator protocol's ``fit_<model>``).

    ``split="fit"`` validates on ``"val"`` windows and keeps the best EMA weights (the
    setting used to choose the defaults); ``split="train"`` has no held-out split it may
    look at (``"test"`` is for reporting), so it trains the same budget and keeps the last
    EMA weights, with the training windows' loss as the logged score.

    Args:
        config: the model options (``labels`` are taken from the data).
        train: loop options (default ``TRAIN_PRESETS["default"]``); its ``seed`` is replaced.
        split: ``"train"`` or ``"fit"``.
        run: run directory for ``metrics.csv`` and ``checkpoint.safetensors``.
        seed: seed of the initialisation, the minibatches, the noise and dropout.

    Returns:
        The trained model, in eval mode.
    """
    from bodies.motion import dataset

    if split not in ("train", "fit"):
        raise MpgymError(f"fit_mdm trains on split 'train' or 'fit'; got {split!r}.")
    train = dataclasses.replace(train or TRAIN_PRESETS["default"], seed=seed)
    data = dataset.windows(split, window=config.window, mirror=config.mirror)
    norm = dataset.Normalizer().fit(data.x)
    config = dataclasses.replace(config, labels=tuple(data.label_names))
    x = torch.as_tensor(norm.normalize(data.x), dtype=torch.float32)
    y = torch.as_tensor(data.labels, dtype=torch.long)
    rows = balanced_indices(data.labels) if config.balance else np.arange(len(x))
    if split == "fit":
        held = dataset.windows("val", window=config.window, mirror=False)
        x_val = torch.as_tensor(norm.normalize(held.x), dtype=torch.float32)
        y_val = torch.as_tensor(
            [config.labels.index(held.label_names[i]) for i in held.labels], dtype=torch.long
        )
    else:  # a fixed subset of the training windows, for the logged score only
        pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:VAL_WINDOWS]
        x_val, y_val = x[pick], y[pick]
        train = dataclasses.replace(train, select_best=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MDM(config, _array(norm, "mean"), _array(norm, "std"))
        if run is not None:
            run.write_config(config, kind=KIND, train=train, split=split, seed=seed)
        result = _train(model, x[rows], y[rows], x_val, y_val, train, run)
    log.info(
        "mdm: %d steps in %.0f s (%.1f steps/s) on %d %s windows; best val %.4f at step %d",
        result.steps,
        result.seconds,
        result.steps / max(result.seconds, 1e-9),
        len(x),
        split,
        result.best_val,
        result.best_step,
    )
    if run is not None:
        model.save(run.file("checkpoint.safetensors"))
    return model.eval()


def _train(
    model: MDM,
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    config: TrainConfig,
    run: RunDir | None,
) -> Any:
    """:func:`generative.trainer.train` with MDM's validation score."""
    return train(
        model,
        x,
        x_val,
        config,
        y_train=y,
        y_val=y_val,
        run=run,
        kind=KIND,
        model_config=model.config,
        val_fn=lambda m: validation_loss(m, x_val, y_val),
    )


def _array(norm: Any, name: str) -> torch.Tensor:
    value = getattr(norm, name)
    return torch.as_tensor(np.asarray(value, dtype=np.float32)).reshape(D)
