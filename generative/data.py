"""Data for the generative models: scikit-learn's 8x8 digits and 2D toy densities.

Digits convention: ``(n, 64)`` integer arrays (``torch.long``) with values in ``0..16``
(17 intensity levels), row-major 8x8 images. The split follows Tomczak's *Deep Generative
Modeling* examples: ``[:1000]`` train, ``[1000:1350]`` validation, ``[1350:]`` test (447 images).
Continuous models see ``x / 16`` or dequantised ``(x + u) / 17`` with ``u ~ U[0, 1)``.

2D densities: ``(n, 2)`` float32 tensors roughly in ``[-4, 4]^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from mpgym.errors import MpgymError

LEVELS = 17
"""Number of intensity levels of the digits (values 0..16)."""
SIDE = 8
"""Image side: the digits are 8x8."""
DIM = SIDE * SIDE
"""Pixels per image."""

DatasetName = Literal["digits", "digits_binary", "moons", "gaussians8", "checkerboard", "spirals"]
TOY_NAMES = ("moons", "gaussians8", "checkerboard", "spirals")


@dataclass(frozen=True)
class DigitsSplit:
    """The three parts of the digits split (``x``: ``(n, 64)`` long, ``y``: ``(n,)`` long)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    levels: int = LEVELS


def load_digits_split(*, binary: bool = False) -> DigitsSplit:
    """Load scikit-learn's digits with the fixed 1000 / 350 / 447 split.

    Args:
        binary: threshold at 8 (values ``>= 8`` become 1): a 2-level variant.

    Returns:
        A :class:`DigitsSplit`; ``levels`` is 17 (or 2 when ``binary``).
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.data.astype(np.int64))
    y = torch.as_tensor(d.target.astype(np.int64))
    levels = LEVELS
    if binary:
        x = (x >= 8).long()
        levels = 2
    return DigitsSplit(x[:1000], y[:1000], x[1000:1350], y[1000:1350], x[1350:], y[1350:], levels)


def check_images(
    x: torch.Tensor, levels: int = LEVELS, name: str = "images", *, dim: int = DIM
) -> torch.Tensor:
    """Check ``x`` is ``(n, 64)`` (or ``(n, 8, 8)``, ``(n, 1, 8, 8)``) with levels ``0..levels-1``.

    Args:
        x: the images.
        levels: size of the support (17 for the digits).
        name: what ``x`` is, for messages.
        dim: pixels per image (64; other values for small test models).

    Returns:
        ``x`` as a ``(n, dim)`` long tensor.

    Raises:
        MpgymError: wrong shape, NaN, non-integers or values outside the support.
    """
    x = torch.as_tensor(x)
    if x.dim() < 2 or x[0].numel() != dim:
        raise MpgymError(
            f"{name} must have shape (n, {dim}) (or (n, 8, 8), (n, 1, 8, 8) for digits); "
            f"got {tuple(x.shape)}."
        )
    x = x.reshape(x.shape[0], dim)
    if x.is_floating_point():
        if not bool(torch.isfinite(x).all()):
            raise MpgymError(f"{name} contain NaN or infinity; accepted: integers 0..{levels - 1}.")
        if not bool((x == x.round()).all()):
            raise MpgymError(
                f"{name} must be integer levels 0..{levels - 1}; got fractional values."
            )
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi > levels - 1:
        raise MpgymError(
            f"{name} have values in [{lo}, {hi}]; this model's support is 0..{levels - 1}."
        )
    return x.long()


def label_condition(
    y: torch.Tensor | None, num_classes: int, n: int, *, model: str
) -> torch.Tensor | None:
    """One-hot labels ``[n, num_classes]`` for a conditional model; None when unconditional.

    Args:
        y: ``[n]`` labels in ``0..num_classes-1`` (required when ``num_classes > 0``).
        num_classes: the model's classes (0: unconditional).
        n: batch size.
        model: what the model is, for the message (``"VAE"``, ``"flow"``...).

    Raises:
        ValueError: a conditional model was given no labels.
    """
    if num_classes == 0:
        return None
    if y is None:
        raise ValueError(f"this {model} is conditional: pass labels y in 0..{num_classes - 1}")
    return F.one_hot(y.long(), num_classes).float().view(n, -1)


def to_unit(x: torch.Tensor, levels: int = LEVELS) -> torch.Tensor:
    """Integer levels ``(n, 64)`` to floats in ``[0, 1]``: ``x / (levels - 1)``."""
    return x.float() / (levels - 1)


def dequantize(
    x: torch.Tensor, generator: torch.Generator | None = None, levels: int = LEVELS
) -> torch.Tensor:
    """Uniform dequantisation: ``(x + u) / levels`` with ``u ~ U[0, 1)``, in ``[0, 1)``.

    A density ``p`` on the result gives a discrete bound
    ``-log P(x) <= E_u[-log p((x + u) / L)] + D log L`` (the bin width is ``1 / L``).
    """
    u = torch.rand(x.shape, generator=generator)
    return (x.float() + u) / levels


def quantize(y: torch.Tensor, levels: int = LEVELS) -> torch.Tensor:
    """Inverse of :func:`dequantize`: floats in ``[0, 1)`` to integer levels."""
    return (y * levels).floor().clamp(0, levels - 1).long()


def categorical_baseline_nll(
    x_train: torch.Tensor, x_test: torch.Tensor, *, levels: int = LEVELS, alpha: float = 1.0
) -> float:
    """Test NLL (nats per image) of independent per-pixel categoricals with add-``alpha`` counts.

    With the digits split and ``alpha = 1`` this is 106.47 nats (2.40 bits/dim).
    """
    counts = torch.stack(
        [torch.bincount(x_train[:, j], minlength=levels) for j in range(x_train.shape[1])]
    )
    p = (counts.double() + alpha) / (counts.sum(1, keepdim=True) + alpha * levels)
    logp = p.log().gather(1, x_test.T)  # [D, n]
    return float(-logp.sum(0).mean())


# ---------------------------------------------------------------------------- 2D densities
def sample_toy(name: str, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``n`` points ``(n, 2)`` from a 2D density.

    Args:
        name: ``"moons"``, ``"gaussians8"``, ``"checkerboard"`` or ``"spirals"``.
        n: number of points.
        generator: torch generator for reproducibility.
    """
    g = generator
    if name == "moons":
        t = torch.rand(n, generator=g) * math.pi
        upper = torch.rand(n, generator=g) < 0.5
        x = torch.where(upper, torch.cos(t), 1 - torch.cos(t))
        y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
        pts = torch.stack([x, y], 1) + 0.05 * torch.randn(n, 2, generator=g)
        return ((pts - torch.tensor([0.5, 0.25])) * 2.0).float()
    if name == "gaussians8":
        k = torch.randint(0, 8, (n,), generator=g).float()
        centers = 2.0 * torch.stack([torch.cos(k * math.pi / 4), torch.sin(k * math.pi / 4)], 1)
        return (centers + 0.2 * torch.randn(n, 2, generator=g)).float()
    if name == "checkerboard":
        x1 = torch.rand(n, generator=g) * 4 - 2
        x2 = torch.rand(n, generator=g) - torch.randint(0, 2, (n,), generator=g).float() * 2
        x2 = x2 + (torch.floor(x1) % 2)
        return (torch.stack([x1, x2], 1) * 2.0).float()
    if name == "spirals":
        t = torch.sqrt(torch.rand(n, generator=g)) * 3 * math.pi
        sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        pts = sign[:, None] * torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) / 3.0
        return (pts + 0.1 * torch.randn(n, 2, generator=g)).float()
    raise MpgymError(f"unknown 2D density {name!r}; accepted: {', '.join(TOY_NAMES)}.")


def plot_density_2d(
    path,
    log_prob_fn,
    samples: torch.Tensor | None = None,
    *,
    lim: float = 4.0,
    res: int = 200,
    title: str = "",
):
    """Save a PNG of ``exp(log_prob_fn(grid))`` next to a scatter of ``samples``.

    Args:
        path: PNG path.
        log_prob_fn: maps ``(m, 2)`` points to ``(m,)`` log-densities (or ``None`` to skip).
        samples: ``(n, 2)`` points to scatter.
        lim: half-width of the square shown.
        res: grid resolution.
        title: figure title.
    """
    from mpgym.plots import _plt

    plt = _plt()
    ncols = int(log_prob_fn is not None) + int(samples is not None)
    fig, axes = plt.subplots(1, ncols, figsize=(4 * ncols, 4), dpi=100, squeeze=False)
    i = 0
    if log_prob_fn is not None:
        lin = torch.linspace(-lim, lim, res)
        gx, gy = torch.meshgrid(lin, lin, indexing="xy")
        with torch.no_grad():
            lp = log_prob_fn(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).reshape(res, res)
        axes[0, i].imshow(
            lp.exp().numpy(), extent=(-lim, lim, -lim, lim), origin="lower", cmap="magma"
        )
        axes[0, i].set_title("density")
        i += 1
    if samples is not None:
        s = samples.detach().numpy()
        axes[0, i].scatter(s[:, 0], s[:, 1], s=1, alpha=0.5)
        axes[0, i].set_xlim(-lim, lim)
        axes[0, i].set_ylim(-lim, lim)
        axes[0, i].set_aspect("equal")
        axes[0, i].set_title("samples")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
