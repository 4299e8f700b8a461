"""Motion VAE (Ling et al. 2020): an autoregressive conditional VAE of the next frame.

The model learns ``p(x_t | x_{t-k..t-1}, label)`` over the motion features of
:mod:`bodies.motion.features` (normalised per dimension). An encoder sees the next frame and the
condition and gives ``q(z | x_t, c)``; a decoder maps ``(z, c)`` to the next frame. Sampling
``z ~ N(0, I)`` each frame and feeding each prediction back as the next condition makes motion of
any length; ``z`` is the action space a controller steers (:meth:`MVAE.step`).

Architecture and defaults (``electronicarts/character-motion-vaes``, ``vae_motion/models.py``
``PoseMixtureVAE`` and ``train_mvae.py``):

- encoder: two ELU layers of 256 whose inputs are ``[x_t, c]``, then ``[x_t, h1]``, and
  ``mu``/``logvar`` from ``[x_t, h2]`` (the frame is fed again at every layer); latent 32;
- decoder: a mixture of 6 experts blended per sample by a gating network (ELU 64-64, softmax)
  on ``[z, c]``; each of its three layers takes ``[z, h]`` (``z`` fed at every layer), the
  first ``h = c``; the blend of expert *parameters* (MANN style) equals the blend of the expert
  layers' outputs because each layer is linear before its ELU (:func:`mixture_linear`);
- loss per frame: mean squared error over the features + ``beta`` x KL averaged over the latent
  dimensions, ``beta = 1`` (their ``kl_beta`` with those two averages);
- scheduled sampling over rollouts of 8 frames: supervised (the true frame is fed back) for 20
  epochs, then the probability of feeding back the model's own prediction (detached) rises
  linearly from 0 to 1 over 20 epochs, then fully autoregressive for 100 epochs; here the three
  phases are fractions 20/140, 20/140, 100/140 of the optimiser steps
  (:func:`sampling_probability`), counted in a buffer so a checkpoint knows its phase;
- condition: the previous frame (``num_condition_frames = 1``); mini-batch 64.

Departures, on purpose:

- **Label conditioning.** Their model is unconditional (one locomotion data set); here the
  condition ``c`` also holds the clip label one-hot, and the one-hot joins ``z`` at every decoder
  layer and in the gate, so a sampled motion keeps being the asked-for clip (the benchmark
  scores recognition).
- One optimiser step per rollout of 8 frames (the sum of the 8 frames' losses) instead of one
  per frame; the fed-back frames are detached as theirs, so the gradient of each frame's loss is
  the same. The feed-back coin is flipped per sample and frame rather than once per batch.
- Expert layers start like ``nn.Linear`` (uniform ``+-1/sqrt(fan_in)``), not their
  ``kaiming_uniform_`` on the 3-D expert tensor (whose fan-in is ``in x out``).
- The rollout of each training window starts at a random offset inside the window (windows are
  :data:`bodies.motion.dataset.WINDOW` = 12 frames; 1 condition frame + 8 leaves 3 offsets).

What the defaults give on these clips (chosen on the fit/val splits, seed 0, 3000 steps): at
the paper's ``beta = 1`` the posterior collapses (KL ~ 0 nats): each of the 15 clips is one
deterministic trajectory (plus its mirror), so the next frame is predictable from the previous
one and the latent is not worth its KL; the model is then a deterministic next-frame predictor
whose motion depends on the start frame only (z moves a frame by ~3 mm). It is also the most
stable and scores best on val. The ``controllable`` preset (``beta = 0.01``) keeps ~3 nats in
``z`` per frame (z moves a frame by ~9 mm and poses 1 s later by ~30 mm), the setting to use
when ``z`` is an action space, at some cost in foot skating and recognition.

Generation (:meth:`MVAE.generate`) starts from a real frame of the asked label: a bank of up to
``start_bank`` training frames per label is stored in the checkpoint, one is drawn per sample
with the caller's generator, and the returned ``T`` frames are the ones generated *after* it
(the real start frame is not part of the output). Nothing is clamped or projected: generated
foot-contact values are continuous (not 0/1) and the 6D rotations are not re-orthonormalised
(:func:`bodies.motion.features.features_to_motion` does that when it converts to poses).
:meth:`MVAE.generate_windows` drops the first ``window_burn_in`` = 60 generated frames (2 s)
before its window: the first frames continue a real frame almost as the clip does, so windows
taken there score the start bank (near-copies of training windows), not the model.

References:
    Ling, Zinno, Cheng, van de Panne (2020) Character Controllers Using Motion VAEs,
    ACM TOG 39(4), doi:10.1145/3386569.3392422. Bengio et al. (2015) scheduled sampling,
    arXiv:1506.03099. Zhang, Starke, Komura, Saito (2018) mode-adaptive neural networks.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bodies.motion.features import FPS, D
from generative.autoencoders import kl_gaussians, reparameterize
from generative.trainer import TrainConfig
from mpgym.errors import MpgymError

if TYPE_CHECKING:
    from mpgym import RunDir

log = logging.getLogger(__name__)

KIND = "mvae"
"""Checkpoint kind of :meth:`MVAE.save`."""


# ---------------------------------------------------------------------------- pure functions
def sampling_probability(step: int, *, teacher_steps: int, ramp_steps: int) -> float:
    """Probability of feeding back the model's own prediction at optimiser step ``step``.

    Three phases (Ling et al. 2020, scheduled sampling): ``0`` for ``step < teacher_steps``
    (supervised), then ``(step - teacher_steps) / ramp_steps`` rising linearly during the next
    ``ramp_steps`` steps, then ``1`` (fully autoregressive). Example: ``teacher_steps = 20,
    ramp_steps = 20``: step 0 -> 0, 19 -> 0, 20 -> 0, 25 -> 0.25, 39 -> 0.95, 40 -> 1.

    Args:
        step: optimiser steps taken so far (``>= 0``).
        teacher_steps: length of the supervised phase.
        ramp_steps: length of the ramp (0: jump straight to 1).

    Returns:
        A probability in ``[0, 1]``.
    """
    if step < teacher_steps:
        return 0.0
    if step >= teacher_steps + ramp_steps:
        return 1.0
    return (step - teacher_steps) / ramp_steps


def mixture_linear(
    x: torch.Tensor, coefficients: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """One expert-blended linear layer: ``y_n = x_n (sum_e c_ne W_e) + sum_e c_ne b_e``.

    Because the layer is linear, blending the experts' parameters (as MANN and the MVAE do)
    equals blending their outputs, ``sum_e c_ne (x_n W_e + b_e)``, which is what is computed: one
    matrix product for all experts instead of a weight matrix per sample. Example: one expert
    with ``W = [[2]]``, ``b = [1]``, ``c = [[1]]``, ``x = [[3]]`` gives ``[[7]]``.

    Args:
        x: ``(n, i)`` inputs.
        coefficients: ``(n, E)`` expert weights (rows sum to 1 for a convex blend).
        weight: ``(E, i, o)`` expert weights.
        bias: ``(E, o)`` expert biases.

    Returns:
        ``(n, o)`` outputs.
    """
    experts, i, o = weight.shape
    per_expert = (x @ weight.permute(1, 0, 2).reshape(i, experts * o)).view(-1, experts, o)
    return torch.einsum("ne,neo->no", coefficients, per_expert + bias)


# ---------------------------------------------------------------------------- config
@dataclass(frozen=True)
class MVAEConfig:
    """Motion VAE hyper-parameters (defaults: Ling et al. 2020's published code)."""

    latent: int = 32
    """Latent size (their ``latent_size = 32``)."""
    hidden: int = 256
    """Width of the encoder's and each expert's hidden layers (their ``hidden_size = 256``)."""
    experts: int = 6
    """Experts of the decoder (their ``num_experts = 6``)."""
    gate_hidden: int = 64
    """Width of the gating network's two hidden layers (their ``gate_hsize = 64``)."""
    condition_frames: int = 1
    """Previous frames in the condition (their ``num_condition_frames = 1``)."""
    beta: float = 1.0
    """Weight of the KL term (mean over latent dims) against the MSE (mean over features);
    their ``kl_beta = 1`` with the same two means."""
    rollout: int = 8
    """Frames predicted per training sample (their ``num_steps_per_rollout = 8``)."""
    teacher_fraction: float = 20 / 140
    """Share of the optimiser steps fully supervised (their 20 of 140 epochs)."""
    ramp_fraction: float = 20 / 140
    """Share during which the feed-back probability rises 0 -> 1 (their 20 of 140 epochs)."""
    start_bank: int = 64
    """Real start frames kept per label for :meth:`MVAE.generate` (this project's choice)."""
    window_burn_in: int = 60
    """Frames generated and dropped before each :meth:`MVAE.generate_windows` window (2 s), so
    a window shows the model's own motion, not the near-copy of the real start frame's
    continuation that its first frames are (this project's choice, chosen on fit/val)."""
    dim: int = D
    """Numbers per frame (:data:`bodies.motion.features.D`)."""


PRESETS: dict[str, MVAEConfig] = {
    "default": MVAEConfig(),
    "controllable": MVAEConfig(beta=0.01),
    "tiny": MVAEConfig(latent=8, hidden=64, experts=2, gate_hidden=16, start_bank=8),
}
"""Named configs: ``default`` (the paper's network and beta), ``controllable`` (a latent that
steers the motion: the one for RL), ``tiny`` (tests and ``make demo``)."""

_TRAIN_10_MIN = TrainConfig(
    steps=3000,
    batch_size=64,
    lr=1e-3,
    schedule="cosine",
    eval_every=250,
    select_best=False,
    max_seconds=600.0,
)
TRAIN_PRESETS: dict[str, TrainConfig] = {
    "default": _TRAIN_10_MIN,
    "controllable": _TRAIN_10_MIN,
    "tiny": TrainConfig(steps=60, batch_size=32, lr=2e-3, eval_every=30, select_best=False),
}
"""Training budgets per preset: 3000 steps of 64 windows (~5-6 min on one busy core; the last
weights are kept, as the paper, since the validation loss of a phase-scheduled model is not
comparable across phases), capped at the benchmark's 10 minutes; ``tiny``: seconds."""


def check_config(config: MVAEConfig, *, window: int | None = None) -> None:
    """Refuse configs that cannot build or train, before any work.

    Args:
        config: the model config.
        window: frames per training window; when given, ``condition_frames + rollout`` must fit.

    Raises:
        MpgymError: a non-positive size, a negative ``beta`` or a phase share outside
            ``[0, 1]`` (or the two summing above 1), or a rollout longer than the window.
    """
    for name in ("latent", "hidden", "experts", "gate_hidden", "condition_frames", "rollout"):
        value = getattr(config, name)
        if not (isinstance(value, int) and value >= 1):
            raise MpgymError(f"MVAEConfig.{name} must be a whole number >= 1; got {value!r}.")
    if config.dim != D:
        raise MpgymError(f"MVAEConfig.dim must be {D} (the motion features); got {config.dim!r}.")
    if not (isinstance(config.start_bank, int) and config.start_bank >= 1):
        raise MpgymError(f"MVAEConfig.start_bank must be >= 1; got {config.start_bank!r}.")
    if not (isinstance(config.window_burn_in, int) and config.window_burn_in >= 0):
        raise MpgymError(
            f"MVAEConfig.window_burn_in must be a whole number >= 0; got {config.window_burn_in!r}."
        )
    if not (math.isfinite(config.beta) and config.beta >= 0):
        raise MpgymError(f"MVAEConfig.beta must be a finite number >= 0; got {config.beta!r}.")
    t, r = config.teacher_fraction, config.ramp_fraction
    if not (0 <= t <= 1 and 0 <= r <= 1 and t + r <= 1):
        raise MpgymError(
            "MVAEConfig.teacher_fraction and ramp_fraction must be in [0, 1] with a sum <= 1; "
            f"got {t!r} and {r!r}."
        )
    if window is not None and config.condition_frames + config.rollout > window:
        raise MpgymError(
            f"MVAEConfig.condition_frames + rollout = "
            f"{config.condition_frames + config.rollout} frames do not fit a {window}-frame "
            "training window; lower rollout or condition_frames."
        )


# ---------------------------------------------------------------------------- modules
def _expert_parameter(experts: int, fan_in: int, fan_out: int) -> nn.Parameter:
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(experts, fan_in, fan_out).uniform_(-bound, bound))


class MixtureDecoder(nn.Module):
    """Decoder of the MVAE: ``(z, c, label) -> next frame`` through blended experts.

    Layer inputs: ``[s, c]``, ``[s, h1]``, ``[s, h2]`` with ``s = [z, one-hot label]``; ELU after
    the two hidden layers; gate: ELU MLP on ``[s, c]`` -> softmax over experts.
    """

    def __init__(self, skip: int, condition: int, hidden: int, out: int, experts: int, gate: int):
        super().__init__()
        sizes = [(skip + condition, hidden), (skip + hidden, hidden), (skip + hidden, out)]
        self.weights = nn.ParameterList([_expert_parameter(experts, i, o) for i, o in sizes])
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.full((experts, o), 0.01)) for _, o in sizes]
        )
        # mpgym.nn.mlp offers relu/tanh only; the MVAE's gate uses ELU.
        self.gate = nn.Sequential(
            nn.Linear(skip + condition, gate),
            nn.ELU(),
            nn.Linear(gate, gate),
            nn.ELU(),
            nn.Linear(gate, experts),
        )

    def gate_weights(self, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Expert coefficients ``(n, E)`` (softmax: each row sums to 1)."""
        return F.softmax(self.gate(torch.cat([s, c], -1)), -1)

    def forward(self, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``s`` ``(n, skip)``, ``c`` ``(n, condition)`` -> ``(n, out)``."""
        coefficients = self.gate_weights(s, c)
        h = c
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = mixture_linear(torch.cat([s, h], -1), coefficients, w, b)
            if i < last:
                h = F.elu(h)
        return h


class Encoder(nn.Module):
    """``q(z | x_t, c)``: ELU layers on ``[x, c]``, ``[x, h1]``; ``mu, logvar`` from ``[x, h2]``."""

    def __init__(self, dim: int, condition: int, hidden: int, latent: int):
        super().__init__()
        self.fc1 = nn.Linear(dim + condition, hidden)
        self.fc2 = nn.Linear(dim + hidden, hidden)
        self.head = nn.Linear(dim + hidden, 2 * latent)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(n, dim)``, ``c`` ``(n, condition)`` -> ``mu, logvar`` ``(n, latent)`` each."""
        h = F.elu(self.fc1(torch.cat([x, c], -1)))
        h = F.elu(self.fc2(torch.cat([x, h], -1)))
        mu, logvar = self.head(torch.cat([x, h], -1)).chunk(2, -1)
        return mu, logvar


class MVAE(nn.Module):
    """Label-conditioned Motion VAE with a mixture-of-experts decoder.

    Works on normalised features internally; its public methods take and return raw features.
    Buffers: the normaliser's ``mean``/``std`` ``(D,)``, the start-frame bank
    ``start_frames (K, k, D)`` (raw) with ``start_labels (K,)``, and ``steps_taken``, the
    optimiser steps seen (drives the scheduled-sampling phase).

    Args:
        config: hyper-parameters.
        label_names: the labels it is conditioned on, in index order.
        mean: ``(D,)`` normaliser mean.
        std: ``(D,)`` normaliser standard deviation (> 0).
        start_frames: ``(K, k, D)`` raw real frame sequences to start generation from
            (``k = config.condition_frames``).
        start_labels: ``(K,)`` label index of each; every label needs at least one.
        total_steps: optimiser steps planned (sets the phase lengths of scheduled sampling).
        seed: seed of the training noise (rollout offsets, ``eps``, feed-back coins).
    """

    def __init__(
        self,
        config: MVAEConfig,
        label_names: Sequence[str],
        *,
        mean: torch.Tensor,
        std: torch.Tensor,
        start_frames: torch.Tensor,
        start_labels: torch.Tensor,
        total_steps: int = 1,
        seed: int = 0,
    ):
        super().__init__()
        check_config(config)
        self.config = config
        self.label_names = tuple(label_names)
        self.num_classes = len(self.label_names)  # generative.trainer then calls loss(x, y)
        k, c = config.condition_frames, config.condition_frames * config.dim + self.num_classes
        self.encoder = Encoder(config.dim, c, config.hidden, config.latent)
        self.decoder = MixtureDecoder(
            config.latent + self.num_classes,
            c,
            config.hidden,
            config.dim,
            config.experts,
            config.gate_hidden,
        )
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clone())
        frames = torch.as_tensor(start_frames, dtype=torch.float32).clone()
        labels = torch.as_tensor(start_labels, dtype=torch.int64).clone()
        self._check_bank(frames, labels, k)
        self.register_buffer("start_frames", frames)
        self.register_buffer("start_labels", labels)
        self.register_buffer("steps_taken", torch.zeros((), dtype=torch.int64))
        self.register_buffer("total_steps", torch.tensor(max(int(total_steps), 1)))
        self._noise = torch.Generator().manual_seed(seed)

    def _check_bank(self, frames: torch.Tensor, labels: torch.Tensor, k: int) -> None:
        if frames.ndim != 3 or frames.shape[1:] != (k, self.config.dim):
            raise MpgymError(
                f"start_frames must be (K, {k}, {self.config.dim}); got {tuple(frames.shape)}."
            )
        if labels.shape != (frames.shape[0],):
            raise MpgymError(
                f"start_labels must be ({frames.shape[0]},); got {tuple(labels.shape)}."
            )
        missing = set(range(self.num_classes)) - set(labels.tolist())
        if missing:
            names = [self.label_names[i] for i in sorted(missing)]
            raise MpgymError(f"the start-frame bank has no frame of labels {names}.")

    # -- conversions
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw features ``(..., D)`` -> normalised."""
        return (x - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised features ``(..., D)`` -> raw."""
        return x * self.std + self.mean

    def label_indices(
        self, labels: Sequence[str] | torch.Tensor, n: int | None = None
    ) -> torch.Tensor:
        """Label names (or indices) -> ``(n,)`` int64 indices.

        Args:
            labels: names from :attr:`label_names`, or an int tensor of indices.
            n: expected count; one name is repeated ``n`` times.

        Raises:
            MpgymError: an unknown name or index, or a count other than 1 or ``n``.
        """
        if isinstance(labels, torch.Tensor):
            idx = labels.to(torch.int64).reshape(-1)
            if idx.numel() and (idx.min() < 0 or idx.max() >= self.num_classes):
                raise MpgymError(
                    f"label indices must be in [0, {self.num_classes}) "
                    f"({', '.join(self.label_names)}); got {idx.tolist()}."
                )
        else:
            if isinstance(labels, str):
                labels = [labels]
            unknown = [name for name in labels if name not in self.label_names]
            if unknown:
                raise MpgymError(
                    f"unknown motion labels {unknown}; accepted: {', '.join(self.label_names)}."
                )
            idx = torch.tensor([self.label_names.index(name) for name in labels], dtype=torch.int64)
        if n is not None and len(idx) == 1:
            idx = idx.expand(n).clone()
        if n is not None and len(idx) != n:
            raise MpgymError(f"give 1 or {n} labels for {n} motions; got {len(idx)}.")
        return idx

    def _one_hot(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, self.num_classes).float()

    # -- the model
    def decode(self, history: torch.Tensor, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Normalised next frame ``(n, D)`` from a normalised ``history`` ``(n, k, D)``."""
        c = torch.cat([history.flatten(1), onehot], -1)
        return self.decoder(torch.cat([z, onehot], -1), c)

    def gate_weights(self, history: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Expert coefficients ``(n, E)`` of normalised ``history`` ``(n, k, D)``, ``z``, ``y``."""
        onehot = self._one_hot(y)
        c = torch.cat([history.flatten(1), onehot], -1)
        return self.decoder.gate_weights(torch.cat([z, onehot], -1), c)

    def phase_probability(self) -> float:
        """Feed-back probability at the current ``steps_taken`` (:func:`sampling_probability`)."""
        total = int(self.total_steps)
        teacher = round(self.config.teacher_fraction * total)
        ramp = round(self.config.ramp_fraction * total)
        return sampling_probability(int(self.steps_taken), teacher_steps=teacher, ramp_steps=ramp)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scheduled-sampling rollout loss over raw windows.

        Training mode: a rollout of ``config.rollout`` frames from a random offset in each
        window, ``z`` sampled from ``q``, each frame's own prediction fed back with the
        probability of the current phase; counts one step in ``steps_taken``. Eval mode (the
        validation score): the whole window from offset 0, ``z = mu``, always fed back, so the
        score does not depend on the phase.

        Args:
            x: ``(n, W, D)`` raw feature windows.
            y: ``(n,)`` int64 label indices.

        Returns:
            Scalar: mean over frames and samples of ``MSE + beta * KL / latent``.
        """
        k, n, w = self.config.condition_frames, x.shape[0], x.shape[1]
        xn = self.normalize(x)
        onehot = self._one_hot(y)
        if self.training:
            steps, p = self.config.rollout, self.phase_probability()
            offset = torch.randint(0, w - k - steps + 1, (n,), generator=self._noise)
            seq = xn[torch.arange(n)[:, None], offset[:, None] + torch.arange(k + steps)]
        else:
            steps, p, seq = w - k, 1.0, xn
        history = seq[:, :k]
        total = x.new_zeros(n)
        for t in range(steps):
            target = seq[:, k + t]
            c = torch.cat([history.flatten(1), onehot], -1)
            mu, logvar = self.encoder(target, c)
            if self.training:
                z = reparameterize(mu, logvar, torch.randn(mu.shape, generator=self._noise))
            else:
                z = mu
            pred = self.decoder(torch.cat([z, onehot], -1), c)
            kl = kl_gaussians(mu, logvar) / self.config.latent
            total = total + (pred - target).pow(2).mean(-1) + self.config.beta * kl
            if p >= 1.0:
                fed = pred.detach()
            elif p <= 0.0:
                fed = target
            else:
                own = torch.rand(n, generator=self._noise) < p
                fed = torch.where(own[:, None], pred.detach(), target)
            history = torch.cat([history[:, 1:], fed[:, None]], 1)
        if self.training and torch.is_grad_enabled():
            self.steps_taken += 1
        return total.mean() / steps

    # -- generation
    @torch.no_grad()
    def step(
        self, prev: torch.Tensor, z: torch.Tensor, y: Sequence[str] | torch.Tensor
    ) -> torch.Tensor:
        """One decoder step on raw features: the frame after ``prev`` for latent ``z``.

        ``z`` is the action space of a controller (Ling et al. 2020); ``z ~ N(0, I)`` gives the
        model's own motion. Deterministic: no noise beyond ``z``.

        Args:
            prev: ``(n, D)`` raw previous frame, or ``(n, k, D)`` the last ``k`` frames (oldest
                first) when ``condition_frames = k > 1``.
            z: ``(n, latent)`` latent.
            y: ``n`` label names (or one, repeated), or ``(n,)`` int label indices.

        Returns:
            ``(n, D)`` raw next frame.

        Raises:
            MpgymError: wrong shapes or unknown labels.
        """
        k, d = self.config.condition_frames, self.config.dim
        if prev.ndim == 2 and k == 1:
            prev = prev[:, None]
        if prev.ndim != 3 or prev.shape[1:] != (k, d):
            raise MpgymError(f"prev must be (n, {d}) or (n, {k}, {d}); got {tuple(prev.shape)}.")
        n = prev.shape[0]
        if z.shape != (n, self.config.latent):
            raise MpgymError(f"z must be ({n}, {self.config.latent}); got {tuple(z.shape)}.")
        onehot = self._one_hot(self.label_indices(y, n))
        out = self.decode(self.normalize(prev.float()), z.float(), onehot)
        return self.denormalize(out)

    @torch.no_grad()
    def rollout(
        self,
        start: torch.Tensor,
        y: torch.Tensor,
        frames: int,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Autoregressive sampling with ``z ~ N(0, I)`` each frame, on one thread.

        The per-frame products are small, so extra threads only add synchronisation: on a
        busy 2-core machine 10 s of motion took 0.8-1.8 s on 2 threads against 0.2 s on one.
        The thread count is put back afterwards.

        Args:
            start: ``(n, k, D)`` raw start frames (oldest first).
            y: ``(n,)`` int64 label indices.
            frames: frames to generate.
            generator: source of ``z``.

        Returns:
            ``(n, frames, D)`` raw generated frames (the start frames not included).
        """
        n = start.shape[0]
        onehot = self._one_hot(y)
        history = self.normalize(start.float())
        out = start.new_empty(n, frames, self.config.dim)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for t in range(frames):
                z = torch.randn(n, self.config.latent, generator=generator)
                nxt = self.decode(history, z, onehot)
                out[:, t] = nxt
                history = torch.cat([history[:, 1:], nxt[:, None]], 1)
        finally:
            torch.set_num_threads(threads)
        return self.denormalize(out)

    def start_for(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random real start ``(n, k, D)`` from the bank for each label index in ``y``."""
        picks = []
        for label in y.tolist():
            rows = torch.nonzero(self.start_labels == label).flatten()
            picks.append(rows[torch.randint(0, len(rows), (1,), generator=generator)])
        return self.start_frames[torch.cat(picks)]

    @torch.no_grad()
    def generate(
        self,
        n: int,
        seconds: float,
        *,
        labels: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """``n`` motions of ``seconds`` each, autoregressively from real start frames.

        Args:
            n: motions.
            seconds: length; ``T = round(seconds * FPS)`` frames.
            labels: one label per motion, or one for all; ``None``: the labels in turn
                (``label_names[i % L]``).
            generator: source of the start frames and of ``z``.

        Returns:
            ``(n, T, D)`` float32 raw features at 30 fps, the frames after the start frame.

        Raises:
            MpgymError: ``n < 1``, ``T < 1``, unknown labels or a wrong label count.
        """
        if not (isinstance(n, int) and n >= 1):
            raise MpgymError(f"n must be a whole number >= 1; got {n!r}.")
        frames = round(seconds * FPS) if math.isfinite(seconds) else 0
        if frames < 1:
            raise MpgymError(f"seconds must give at least one frame at {FPS} fps; got {seconds!r}.")
        if labels is None:
            y = torch.arange(n) % self.num_classes
        else:
            y = self.label_indices(labels, n)
        was_training = self.training
        self.eval()
        try:
            out = self.rollout(self.start_for(y, generator), y, frames, generator=generator)
        finally:
            self.train(was_training)
        return out.numpy().astype(np.float32)

    def generate_windows(
        self, labels: Sequence[str], *, generator: torch.Generator | None = None
    ) -> np.ndarray:
        """One :data:`~bodies.motion.dataset.WINDOW`-frame window per label: ``(n, W, D)``.

        Each is the last ``W`` frames of a motion of ``config.window_burn_in + W`` frames from
        :meth:`generate`.
        """
        from bodies.motion.dataset import WINDOW

        if isinstance(labels, str) or len(labels) == 0:
            raise MpgymError(f"labels must be a non-empty sequence of names; got {labels!r}.")
        burn = self.config.window_burn_in
        out = self.generate(len(labels), (burn + WINDOW) / FPS, labels=labels, generator=generator)
        return np.ascontiguousarray(out[:, burn:])

    # -- files
    def save(self, path: str | os.PathLike, *, meta: dict[str, Any] | None = None) -> Path:
        """Write weights, normaliser and start bank to a ``.safetensors`` file, atomically.

        The metadata holds the JSON config and ``label_names`` (plus ``meta``).
        """
        from mpgym import save_checkpoint

        return save_checkpoint(
            path,
            self.state_dict(),
            kind=KIND,
            config=self.config,
            meta={**(meta or {}), "label_names": list(self.label_names)},
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> MVAE:
        """Read a file written by :meth:`save` (safetensors only, no pickle).

        The config keys, label names, tensor names, shapes and dtypes are checked against a
        model built from the config before any weight is used.

        Raises:
            MpgymError: not an MVAE checkpoint, or any mismatch (one message listing them).
        """
        from mpgym import load_checkpoint

        ckpt = load_checkpoint(path, expected_kind=KIND)
        fields = {f.name for f in dataclasses.fields(MVAEConfig)}
        if set(ckpt.config) != fields:
            raise MpgymError(
                f"{ckpt.path}: config keys {sorted(ckpt.config)} are not MVAEConfig's "
                f"{sorted(fields)}."
            )
        names = ckpt.meta.get("label_names")
        if not (isinstance(names, list) and names and all(isinstance(s, str) for s in names)):
            raise MpgymError(
                f"{ckpt.path}: no label_names in its metadata (a checkpoint written during "
                "training by generative.trainer lacks them; use the one fit_mvae saves)."
            )
        config = MVAEConfig(**ckpt.config)
        state = ckpt.state_dict
        bank = state.get("start_frames")
        k = config.condition_frames
        bank_size = bank.shape[0] if isinstance(bank, torch.Tensor) and bank.ndim == 3 else 0
        model = cls(
            config,
            names,
            mean=torch.zeros(config.dim),
            std=torch.ones(config.dim),
            start_frames=torch.zeros(max(bank_size, len(names)), k, config.dim),
            start_labels=torch.arange(max(bank_size, len(names))) % len(names),
        )
        expected = model.state_dict()
        problems = [f"missing {name}" for name in expected if name not in state]
        problems += [f"unexpected {name}" for name in state if name not in expected]
        problems += [
            f"{name}: {tuple(state[name].shape)} {state[name].dtype}, expected "
            f"{tuple(t.shape)} {t.dtype}"
            for name, t in expected.items()
            if name in state and (state[name].shape != t.shape or state[name].dtype != t.dtype)
        ]
        if problems:
            raise MpgymError(f"{ckpt.path} does not match its MVAE config: {'; '.join(problems)}.")
        if not bool(torch.isfinite(state["std"]).all() and (state["std"] > 0).all()):
            raise MpgymError(f"{ckpt.path}: the normaliser std must be finite and > 0.")
        model._check_bank(state["start_frames"], state["start_labels"], k)
        model.load_state_dict(state)
        model.eval()
        return model


# ---------------------------------------------------------------------------- training
@dataclass
class MotionData:
    """Training inputs of :func:`fit_mvae` (from :mod:`bodies.motion.dataset`)."""

    x_train: torch.Tensor
    """``(N, W, D)`` raw training windows."""
    y_train: torch.Tensor
    """``(N,)`` their label indices."""
    x_val: torch.Tensor
    """``(M, W, D)`` validation windows."""
    y_val: torch.Tensor
    """``(M,)``."""
    label_names: tuple[str, ...]


def start_bank(
    x: np.ndarray, y: np.ndarray, *, frames: int, per_label: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``per_label`` real starts per label: the first ``frames`` frames of random windows.

    Args:
        x: ``(N, W, D)`` windows.
        y: ``(N,)`` label indices.
        frames: frames per start (``condition_frames``).
        per_label: starts kept per label.
        rng: picks the windows.

    Returns:
        ``(K, frames, D)`` starts and ``(K,)`` their labels, grouped by label.
    """
    keep = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        keep.append(np.sort(rng.choice(rows, size=min(per_label, len(rows)), replace=False)))
    rows = np.concatenate(keep)
    return x[rows, :frames].astype(np.float32), y[rows].astype(np.int64)


def _load_data(split: str) -> MotionData:
    """Windows of ``split`` (mirrored) and of the validation split for model selection."""
    from bodies.motion.dataset import windows

    train = windows(split, mirror=True)
    val = windows("val", mirror=False) if split == "fit" else train
    if tuple(val.label_names) != tuple(train.label_names):
        raise MpgymError("the training and validation windows disagree on the label names.")
    return MotionData(
        torch.as_tensor(train.x, dtype=torch.float32),
        torch.as_tensor(train.labels, dtype=torch.int64),
        torch.as_tensor(val.x, dtype=torch.float32),
        torch.as_tensor(val.labels, dtype=torch.int64),
        tuple(train.label_names),
    )


def build_mvae(config: MVAEConfig, data: MotionData, *, total_steps: int, seed: int = 0) -> MVAE:
    """An untrained :class:`MVAE` with its normaliser fitted and start bank drawn from ``data``.

    The network initialisation is seeded by ``seed`` without touching the global RNG state.
    """
    from bodies.motion.dataset import Normalizer

    x = data.x_train.numpy()
    norm = Normalizer.fit(x.reshape(-1, x.shape[-1])).state_dict()
    frames, labels = start_bank(
        x,
        data.y_train.numpy(),
        frames=config.condition_frames,
        per_label=config.start_bank,
        rng=np.random.default_rng(seed),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MVAE(
            config,
            data.label_names,
            mean=torch.from_numpy(norm["mean"]),
            std=torch.from_numpy(norm["std"]),
            start_frames=torch.from_numpy(frames),
            start_labels=torch.from_numpy(labels),
            total_steps=total_steps,
            seed=seed,
        )


def fit_mvae(
    config: MVAEConfig = MVAEConfig(),
    *,
    train: TrainConfig | None = None,
    split: str = "train",
    run: RunDir | None = None,
    seed: int = 0,
    data: MotionData | None = None,
) -> MVAE:
    """Train a Motion VAE on the windows of ``split`` through :func:`generative.trainer.train`.

    The validation score (logged to ``metrics.csv``) is :meth:`MVAE.loss` in eval mode: the
    fully autoregressive loss over whole windows, on the ``"val"`` windows when
    ``split == "fit"``; with ``split == "train"`` (which contains ``"val"``) on the training
    windows, and then the last weights are always kept (``select_best`` is turned off). The
    presets keep the last weights anyway, as the paper does.

    Args:
        config: model hyper-parameters.
        train: loop options (default: ``TRAIN_PRESETS["default"]``, the benchmark budget).
        split: ``"train"`` (benchmark) or ``"fit"`` (tuning).
        run: run directory for ``metrics.csv`` and the checkpoint.
        seed: seed of the network, the start bank, the training noise and the minibatches
            (overrides ``train.seed``).
        data: the windows to use instead of :mod:`bodies.motion.dataset`'s (tests).

    Returns:
        The trained model, in eval mode.
    """
    from generative.trainer import train as run_training

    if split not in ("train", "fit"):
        raise MpgymError(f"split must be 'train' or 'fit'; got {split!r}.")
    train = dataclasses.replace(train or TRAIN_PRESETS["default"], seed=seed)
    if split == "train" and train.select_best:
        train = dataclasses.replace(train, select_best=False)
    data = data or _load_data(split)
    check_config(config, window=data.x_train.shape[1])
    model = build_mvae(config, data, total_steps=train.steps, seed=seed)
    log.info(
        "mvae: %d training windows, %d validation windows, %d labels, %d steps",
        len(data.x_train),
        len(data.x_val),
        len(data.label_names),
        train.steps,
    )
    result = run_training(
        model,
        data.x_train,
        data.x_val,
        train,
        y_train=data.y_train,
        y_val=data.y_val,
        run=run,
        kind=KIND,
        model_config=config,
    )
    log.info(
        "mvae: %d steps in %.0f s (%s), best validation %.4f at step %d",
        result.steps,
        result.seconds,
        result.stopped,
        result.best_val,
        result.best_step,
    )
    if run is not None:
        model.save(
            run.file("checkpoint.safetensors"),
            meta={"train": train, "step": result.best_step, "val": result.best_val},
        )
    return model
