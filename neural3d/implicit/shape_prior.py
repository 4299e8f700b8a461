"""A generative model over DeepSDF latent codes: latent diffusion, then decoding with MISE.

DeepSDF learns one code ``z_j`` (``(L,)`` float32) per training shape. This module fits a
diffusion model to the set of codes ``(N, L)``, samples new codes, interpolates between codes
and decodes codes into meshes through any ``code -> field`` function, so it works with any
auto-decoder (it never imports one).

Why diffusion, not a flow: the prior reuses :class:`generative.diffusion.DDPM` (epsilon
prediction, Ho et al.'s simple loss, DDIM sampling) with its MLP denoiser, trained by
:func:`generative.trainer.train` with an EMA of the weights. The issue's figures are latent
diffusion's (LION's 1-NNA), and a DDPM's simple loss has no Jacobian term, so its cost does
not grow with the code width as a coupling flow's depth must to mix ``L`` dimensions.

Code normalisation: DeepSDF codes start at ``N(0, 0.01^2)`` and stay small under the
``||z||^2`` penalty, far from the unit scale the diffusion schedule assumes (``x_T ~ N(0, I)``
and ``abar_T`` chosen for data of variance about 1). Before diffusion every code is
standardised per dimension, ``u = (z - mean) / std`` with the training codes' mean and
standard deviation (``std`` floored at ``1e-8``), which are stored in the checkpoint; samples
are mapped back with ``z = mean + std * u``. Per-dimension (not full whitening) because the
codes of a few hundred shapes give a noisy ``L x L`` covariance.

Interpolation: spherical (slerp, White 2016) by default. The codes carry a zero-mean
Gaussian prior, and in ``L`` dimensions Gaussian draws concentrate near the shell
``|z| ~ sigma sqrt(L)``; the linear midpoint of two independent codes has norm about
``1/sqrt(2)`` of theirs, off that shell, where the decoder has seen no codes. Slerp about
the origin (the prior's centre) follows the shell; ``"lerp"`` is available for comparison.
Both return the end codes exactly at ``t = 0`` and ``t = 1``.

References:
    Park et al. (2019) DeepSDF, arXiv:1901.05103; Ho et al. (2020) DDPM, arXiv:2006.11239;
    Song et al. (2021) DDIM, arXiv:2010.02502; Vahdat et al. (2022) LION, arXiv:2210.06978;
    White (2016) Sampling generative networks, arXiv:1609.04468 (slerp);
    Mescheder et al. (2019) Occupancy Networks (MISE).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from generative.diffusion import DDPM, DDPMConfig
from generative.trainer import TrainConfig, TrainResult, train
from mpgym import RunDir, load_checkpoint, save_checkpoint
from mpgym.configs import config_from_dict
from mpgym.errors import MpgymError

log = logging.getLogger(__name__)

KIND = "shape-prior"
"""Checkpoint kind of :class:`CodePrior`."""
STD_FLOOR = 1e-8
"""Smallest per-dimension standard deviation used to standardise codes."""


@dataclass(frozen=True)
class ShapePriorConfig:
    """Latent diffusion over codes (schedule: Ho et al.; sampler: DDIM, Song et al.)."""

    latent_dim: int = 64
    """Code width L (DeepSDFConfig's default here is 64; the DeepSDF paper uses 256)."""
    T: int = 1000
    """Diffusion steps (Ho et al.: 1000)."""
    schedule: Literal["linear", "cosine"] = "linear"
    """Beta schedule (Ho et al.'s linear 1e-4..0.02). Cosine's ``abar_T`` is ~0, so DDIM's first
    step ``x_0 = (x_T - sqrt(1 - abar_T) eps) / sqrt(abar_T)`` explodes on unclipped codes (a
    2-D mixture: sample std 7-9 instead of 1); use cosine only with the ancestral sampler."""
    hidden: int = 256
    """Width of the MLP denoiser (generative.diffusion.MLPDenoiser)."""
    dropout: float = 0.0
    """Dropout in the denoiser (a few hundred codes: regularise with EMA instead)."""
    prediction: Literal["eps", "v"] = "eps"
    """What the denoiser predicts (generative.diffusion.DDPMConfig.prediction): ``eps`` (Ho et
    al.) or ``v`` (Salimans & Ho), whose loss keeps the predicted codes in range at high noise."""
    sample_steps: int = 100
    """DDIM steps when sampling (Song et al. report 50-100 close to the full chain)."""
    eta: float = 0.0
    """DDIM stochasticity (0: deterministic given the starting noise)."""


PRESETS: dict[str, ShapePriorConfig] = {
    "cpu": ShapePriorConfig(),
    "paper": ShapePriorConfig(latent_dim=256, hidden=512),
}
"""Named configs: ``cpu`` for the CPU DeepSDF preset's codes, ``paper`` for 256-d codes."""

DEFAULT_TRAIN = TrainConfig(steps=6000, batch_size=128, lr=1e-3, ema=0.999, eval_every=500)
"""Training loop defaults: DDPM's EMA decay 0.999 (Ho et al.), Adam 1e-3 with cosine decay."""


# ---------------------------------------------------------------------------- pure functions
def check_codes(codes: Any, latent_dim: int | None = None, *, what: str = "codes") -> Tensor:
    """``codes`` as float32 ``(N, L)``; one :class:`MpgymError` naming the fault otherwise.

    Args:
        codes: array or tensor ``(N, L)`` (a single code ``(L,)`` is accepted as ``(1, L)``).
        latent_dim: the width the model expects, or None to accept any.
        what: name used in the message.

    Returns:
        A float32 tensor ``(N, L)`` (a copy when the input was not float32).
    """
    t = torch.as_tensor(np.asarray(codes) if not isinstance(codes, Tensor) else codes)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise MpgymError(
            f"{what} have shape {tuple(t.shape)}; accepted: (N, L) codes, N >= 1, "
            f"L = {latent_dim if latent_dim is not None else 'the code width'}."
        )
    if not (t.dtype.is_floating_point or t.dtype in (torch.int32, torch.int64)):
        raise MpgymError(f"{what} hold {t.dtype} values; accepted: real numbers.")
    if latent_dim is not None and t.shape[1] != latent_dim:
        raise MpgymError(
            f"{what} have width {t.shape[1]}, but this prior models codes of width "
            f"{latent_dim}; give (N, {latent_dim}) codes or fit a prior with latent_dim="
            f"{t.shape[1]}."
        )
    t = t.detach().float()
    if not bool(torch.isfinite(t).all()):
        raise MpgymError(f"{what} contain NaN or infinity; only finite codes are accepted.")
    return t


def fit_standardization(codes: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and standard deviation ``(L,), (L,)`` of codes ``(N, L)``.

    The standard deviation is the population one (``N`` in the denominator), floored at
    :data:`STD_FLOOR`; one code gives ``std = STD_FLOOR`` everywhere.

    Example:
        codes ``[[0, 2], [2, 2]]`` give mean ``[1, 2]`` and std ``[1, 1e-8]``.
    """
    mean = codes.mean(0)
    std = codes.std(0, unbiased=False).clamp(min=STD_FLOOR)
    return mean, std


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation about the origin, ``(L,), (L,), (S,) -> (S, L)``.

    ``slerp(a, b; t) = sin((1 - t) W) / sin W a + sin(t W) / sin W b`` with
    ``cos W = a.b / (|a| |b|)`` (White 2016). Falls back to :func:`lerp` when the angle is
    below ``1e-4`` rad (parallel codes) or either code is zero. Exact at ``t = 0`` and 1.

    Example:
        ``a = [1, 0]``, ``b = [0, 1]``, ``t = 0.5`` gives ``[0.7071, 0.7071]`` (norm 1,
        where the linear midpoint has norm 0.7071).
    """
    t = t.to(a.dtype)[:, None]
    na, nb = a.norm(), b.norm()
    if float(na) == 0.0 or float(nb) == 0.0:
        return lerp(a, b, t[:, 0])
    omega = torch.arccos((a @ b / (na * nb)).clamp(-1.0, 1.0))
    if float(omega) < 1e-4:
        return lerp(a, b, t[:, 0])
    s = torch.sin(omega)
    out = torch.sin((1 - t) * omega) / s * a + torch.sin(t * omega) / s * b
    out[t[:, 0] == 0] = a  # exact end points, whatever the rounding of sin
    out[t[:, 0] == 1] = b
    return out


def lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Linear interpolation ``(1 - t) a + t b``, ``(L,), (L,), (S,) -> (S, L)``."""
    t = t.to(a.dtype)[:, None]
    out = (1 - t) * a + t * b
    out[t[:, 0] == 1] = b
    return out


def interpolate_codes(
    a: Any, b: Any, steps: int = 8, *, method: Literal["slerp", "lerp"] = "slerp"
) -> Tensor:
    """``steps`` codes from ``a`` to ``b`` inclusive, ``(L,), (L,) -> (steps, L)``.

    Args:
        a: first code ``(L,)``.
        b: last code ``(L,)``, same width.
        steps: codes in the strip, >= 2 (the first is ``a``, the last ``b``, exactly).
        method: ``"slerp"`` (default; see the module docstring for why) or ``"lerp"``.

    Raises:
        MpgymError: codes of different widths or non-finite, ``steps < 2``, unknown method.
    """
    ca = check_codes(a, what="the first code")
    cb = check_codes(b, ca.shape[1], what="the second code")
    if ca.shape[0] != 1 or cb.shape[0] != 1:
        raise MpgymError("interpolate_codes takes two single codes (L,); got several.")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise MpgymError(f"steps must be a whole number >= 2; got {steps!r}.")
    t = torch.linspace(0.0, 1.0, int(steps))
    if method == "slerp":
        return slerp(ca[0], cb[0], t)
    if method == "lerp":
        return lerp(ca[0], cb[0], t)
    raise MpgymError(f"unknown interpolation {method!r}; accepted: 'slerp', 'lerp'.")


# ---------------------------------------------------------------------------- module
class CodePrior(nn.Module):
    """A DDPM over standardised codes; :meth:`sample_codes` returns codes in the raw frame.

    Buffers ``mean`` and ``std`` ``(L,)`` hold the standardisation (set by
    :meth:`fit_normalization` before training; saved with the weights).
    """

    def __init__(self, config: ShapePriorConfig = ShapePriorConfig()):
        super().__init__()
        if isinstance(config.latent_dim, bool) or config.latent_dim < 1:
            raise MpgymError(f"latent_dim must be >= 1; got {config.latent_dim!r}.")
        self.config = config
        self.ddpm = DDPM(
            DDPMConfig(
                T=config.T,
                schedule=config.schedule,
                net="mlp",
                channels=config.hidden,
                prediction=config.prediction,
                dropout=config.dropout,
                dim=config.latent_dim,
                discrete=False,
            )
        )
        self.register_buffer("mean", torch.zeros(config.latent_dim))
        self.register_buffer("std", torch.ones(config.latent_dim))

    def fit_normalization(self, codes: Any) -> CodePrior:
        """Set ``mean``/``std`` from training codes ``(N, L)``; returns ``self``."""
        mean, std = fit_standardization(check_codes(codes, self.config.latent_dim))
        self.mean.copy_(mean)
        self.std.copy_(std)
        return self

    def standardize(self, codes: Tensor) -> Tensor:
        """``(z - mean) / std``, ``(N, L) -> (N, L)``."""
        return (codes - self.mean) / self.std

    def unstandardize(self, u: Tensor) -> Tensor:
        """``mean + std * u``, ``(N, L) -> (N, L)``."""
        return self.mean + self.std * u

    def loss(self, codes: Tensor) -> Tensor:
        """DDPM's simple loss on standardised codes ``(B, L)`` (a scalar)."""
        return self.ddpm.loss(self.standardize(codes))

    @torch.no_grad()
    def sample_codes(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        steps: int | None = None,
        sampler: Literal["ddim", "ancestral"] = "ddim",
    ) -> Tensor:
        """``n`` new codes ``(n, L)`` float32 in the frame of the training codes.

        Args:
            n: number of codes, >= 1.
            generator: random numbers (the starting noise and any sampler noise).
            steps: DDIM steps (default ``config.sample_steps``).
            sampler: ``"ddim"`` (``steps`` steps, ``config.eta``) or ``"ancestral"`` (all T).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise MpgymError(f"n must be a whole number >= 1; got {n!r}.")
        was = self.training
        self.eval()
        try:
            if sampler == "ddim":
                u = self.ddpm.sample_ddim(
                    int(n),
                    steps=steps or self.config.sample_steps,
                    eta=self.config.eta,
                    generator=generator,
                )
            elif sampler == "ancestral":
                u = self.ddpm.sample(int(n), generator=generator)
            else:
                raise MpgymError(f"unknown sampler {sampler!r}; accepted: 'ddim', 'ancestral'.")
        finally:
            self.train(was)
        return self.unstandardize(u)


# ---------------------------------------------------------------------------- loop and files
def train_prior(
    codes: Any,
    config: ShapePriorConfig | None = None,
    train_config: TrainConfig = DEFAULT_TRAIN,
    *,
    val_codes: Any = None,
    run: RunDir | None = None,
) -> tuple[CodePrior, TrainResult]:
    """Fit a :class:`CodePrior` to training codes with :func:`generative.trainer.train`.

    Args:
        codes: ``(N, L)`` training codes (e.g. DeepSDF's code table).
        config: model options; default: :class:`ShapePriorConfig` with ``latent_dim = L``.
        train_config: loop options (steps, batch, lr, EMA, time cap).
        val_codes: ``(M, L)`` validation codes; default: the training codes (the score then
            only tracks the loss, the EMA weights of the last validation are kept).
        run: run directory for ``metrics.csv`` and ``checkpoint.safetensors``.

    Returns:
        ``(prior, result)``: the trained prior (EMA weights) and the loop's record.

    Raises:
        MpgymError: codes of the wrong shape or width, or non-finite.
    """
    config = config or ShapePriorConfig(latent_dim=int(np.shape(codes)[-1]))
    x = check_codes(codes, config.latent_dim, what="training codes")
    xv = x if val_codes is None else check_codes(val_codes, config.latent_dim, what="val codes")
    if val_codes is None:
        from dataclasses import replace

        train_config = replace(train_config, select_best=False)
    # DDPM.loss draws t and the noise from torch's default generator: seed a forked copy of it,
    # so training is reproducible and the caller's random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_config.seed)
        prior = CodePrior(config).fit_normalization(x)
        result = train(prior, x, xv, train_config, run=run, kind=KIND, model_config=config)
    return prior, result


def save_prior(prior: CodePrior, path: str | os.PathLike, *, meta: dict | None = None) -> Path:
    """Write ``{config, state_dict}`` to a safetensors checkpoint, atomically.

    Returns:
        The path written.
    """
    return save_checkpoint(path, prior.state_dict(), kind=KIND, config=prior.config, meta=meta)


def load_prior(path: str | os.PathLike) -> CodePrior:
    """Rebuild a :class:`CodePrior` from :func:`save_prior`'s file (no pickle is run).

    Raises:
        MpgymError: missing or corrupt file, another kind of checkpoint, bad config.
    """
    ckpt = load_checkpoint(path, expected_kind=KIND)
    prior = CodePrior(config_from_dict(ShapePriorConfig, ckpt.config))
    try:
        prior.load_state_dict(ckpt.state_dict)
    except RuntimeError as exc:
        raise MpgymError(f"{path}: weights do not match the stored config ({exc}).") from None
    return prior.eval()


# ---------------------------------------------------------------------------- decoding
FieldFn = Callable[[Tensor], Tensor]
"""Points ``(P, 3)`` float32 -> values ``(P,)``."""


def decode_shapes(
    decoder_fn: Callable[[Tensor], FieldFn],
    codes: Any,
    *,
    latent_dim: int | None = None,
    bounds: float = 0.55,
    resolution: int = 64,
    coarse_resolution: int = 16,
    level: float = 0.0,
    inside: Literal["below", "above"] = "below",
    device: Any = "cpu",
) -> list[Any]:
    """Extract one mesh per code with MISE (:func:`neural3d.mesh.extract_mesh`).

    Args:
        decoder_fn: ``code (L,) -> field``, the field mapping points ``(P, 3)`` to values
            ``(P,)`` (a DeepSDF decoder with its code bound, an occupancy network...).
        codes: ``(N, L)`` codes.
        latent_dim: expected code width (checked when given).
        bounds: half side of the cube meshed (0.55: the collection's padded unit cube).
        resolution: cells per axis of the finest grid (``coarse_resolution * 2^k``).
        coarse_resolution: cells per axis of MISE's first level.
        level: iso-value (0 for SDFs and logits, 0.5 for occupancy probabilities).
        inside: ``"below"`` for SDFs, ``"above"`` for occupancy.
        device: torch device of the query points.

    Returns:
        ``N`` entries: a ``trimesh.Trimesh`` per code, or None where the field has no surface
        inside the bounds (counted in a warning).

    Example:
        With a DeepSDF decoder: ``decode_shapes(lambda z: code_field(decoder, z), codes)``
        (:func:`neural3d.implicit.training.code_field`).

    Raises:
        MpgymError: codes of the wrong width or non-finite; a bad grid.
    """
    from neural3d.mesh import check_resolution, extract_mesh

    z = check_codes(codes, latent_dim)
    check_resolution(resolution, hierarchical=True, coarse_resolution=coarse_resolution)
    meshes: list[Any] = []
    for code in z:
        field = decoder_fn(code.to(device))
        try:
            meshes.append(
                extract_mesh(
                    field,
                    bounds,
                    resolution,
                    level,
                    hierarchical=True,
                    inside=inside,
                    coarse_resolution=coarse_resolution,
                    normals="mesh",
                    device=device,
                )
            )
        except MpgymError as exc:
            if "no surface" not in str(exc):
                raise
            meshes.append(None)
    empty = sum(m is None for m in meshes)
    if empty:
        log.warning("decode_shapes: %d of %d codes gave no surface in the bounds", empty, len(z))
    return meshes


def code_norms(codes: Tensor) -> Tensor:
    """``|z|`` per code, ``(N, L) -> (N,)`` (to compare samples with ``sigma sqrt(L)``)."""
    return codes.norm(dim=1)


def expected_gaussian_norm(latent_dim: int, sigma: float = 1.0) -> float:
    """``E|z|`` for ``z ~ N(0, sigma^2 I_L)``: ``sigma sqrt(2) Gamma((L+1)/2) / Gamma(L/2)``.

    Example:
        ``L = 1`` gives ``sqrt(2 / pi) = 0.7979``; large ``L`` approaches ``sqrt(L)``.
    """
    return (
        sigma
        * math.sqrt(2)
        * math.exp(math.lgamma((latent_dim + 1) / 2) - math.lgamma(latent_dim / 2))
    )


def save_mesh_grid(
    path: str | os.PathLike, meshes: list[Any], *, nrow: int = 8, size: int = 128
) -> Path:
    """One shaded view per mesh (:func:`neural3d.mesh.render_mesh_views`) tiled into a PNG.

    Args:
        path: the ``.png`` to write.
        meshes: ``trimesh.Trimesh`` objects; None (an empty sample) leaves a white tile.
        nrow: tiles per row (an interpolation strip: its length).
        size: pixels per tile side.

    Returns:
        The path written.
    """
    from mpgym.plots import save_image_grid
    from neural3d.mesh import render_mesh_views

    if not meshes:
        raise MpgymError("no meshes to draw; give at least one.")
    tiles = [
        np.ones((size, size, 3))
        if m is None or len(m.faces) == 0
        else render_mesh_views(m, views=1, size=size)[0]
        for m in meshes
    ]
    return save_image_grid(path, np.stack(tiles), nrow=nrow)
