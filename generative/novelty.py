"""Novelty of samples: nearest-training-image distances, against those of held-out images.

A low Fréchet distance can be reached by replaying the training set. The check here compares
how far samples lie from their nearest training image with how far held-out test images lie
from theirs: a model that copies training images has a ratio near 0, one that generalises like
the data itself has a ratio near 1 (noisy samples give more than 1).

Distances are Euclidean in pixel space on the integer images (``(n, 64)``, values ``0..16``
for the digits), so ``sqrt(64) * 16 = 128`` is the largest possible one and an exact copy has
distance 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mpgym.errors import MpgymError


def _as_matrix(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or len(x) == 0:
        raise MpgymError(
            f"{name} must be a non-empty tensor of images, shape (n, ...); "
            f"got {getattr(x, 'shape', type(x).__name__)}."
        )
    x = x.reshape(len(x), -1).double()
    if not torch.isfinite(x).all():
        raise MpgymError(f"{name} must be finite; it holds NaN or inf values.")
    return x


def nearest_neighbour_distances(
    samples: torch.Tensor, reference: torch.Tensor, *, batch: int = 1024
) -> torch.Tensor:
    """Euclidean distance from each sample to its nearest reference image.

    Example: samples ``[[0, 0], [3, 4]]`` against the one reference ``[[0, 0]]`` give
    ``[0, 5]``.

    Args:
        samples: ``(n, ...)`` images (any numeric dtype; flattened per image).
        reference: ``(m, ...)`` images with the same number of values per image.
        batch: samples per distance block (memory ``batch * m``).

    Returns:
        ``(n,)`` float64 distances.

    Raises:
        MpgymError: an empty or non-finite input, or images of different sizes.
    """
    a, b = _as_matrix(samples, "samples"), _as_matrix(reference, "reference")
    if a.shape[1] != b.shape[1]:
        raise MpgymError(
            f"samples and reference must have the same values per image; "
            f"got {a.shape[1]} and {b.shape[1]}."
        )
    return torch.cat([torch.cdist(a[i : i + batch], b).amin(1) for i in range(0, len(a), batch)])


@dataclass(frozen=True)
class NoveltyResult:
    """What :func:`novelty_ratio` returns (distances in pixel units)."""

    sample_median: float
    """Median distance of the samples to their nearest training image."""
    heldout_median: float
    """Median distance of the held-out images to their nearest training image."""
    ratio: float
    """``sample_median / heldout_median``: about 1 when as novel as new data, 0 for copies."""
    copy_fraction: float
    """Fraction of samples equal to some training image (distance 0)."""


def novelty_ratio(
    samples: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor
) -> NoveltyResult:
    """Median nearest-training-image distance of ``samples`` over that of ``heldout`` images.

    Example: samples that are copies of training images give ratio 0 and copy fraction 1.

    Args:
        samples: ``(n, ...)`` model samples.
        train: ``(m, ...)`` the images the model was trained on.
        heldout: ``(k, ...)`` images the model never saw (the test split).

    Returns:
        A :class:`NoveltyResult`.

    Raises:
        MpgymError: as :func:`nearest_neighbour_distances`, or when the held-out images all
            lie on training images (median distance 0, so no ratio exists).
    """
    d_samples = nearest_neighbour_distances(samples, train)
    d_heldout = nearest_neighbour_distances(heldout, train)
    heldout_median = float(torch.quantile(d_heldout, 0.5))
    if heldout_median <= 0:
        raise MpgymError(
            "held-out images must mostly differ from the training images (their median "
            "nearest-training distance is 0); pass a disjoint held-out split."
        )
    sample_median = float(torch.quantile(d_samples, 0.5))
    return NoveltyResult(
        sample_median=sample_median,
        heldout_median=heldout_median,
        ratio=sample_median / heldout_median,
        copy_fraction=float((d_samples == 0).double().mean()),
    )
