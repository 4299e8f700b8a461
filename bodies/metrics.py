"""Body-fitting errors in millimetres: MPJPE, PA-MPJPE (Procrustes-aligned) and PVE.

Inputs are in metres, ``[B, N, 3]`` (joints or vertices); results are per-body ``[B]`` in mm.
"""

from __future__ import annotations

from torch import Tensor

from mpgym.geometry import similarity_transform


def mpjpe(pred: Tensor, target: Tensor) -> Tensor:
    """Mean per-joint position error, ``[B, J, 3] x2 -> [B]`` mm (no alignment)."""
    return (pred - target).norm(dim=-1).mean(-1) * 1000.0


def procrustes_align(pred: Tensor, target: Tensor) -> Tensor:
    """Similarity transform (scale, rotation, translation) of ``pred`` that best fits ``target``.

    Umeyama's closed form (:func:`mpgym.geometry.similarity_transform`); a reflection is never
    used.

    Args:
        pred: ``[B, N, 3]``.
        target: ``[B, N, 3]``.

    Returns:
        ``[B, N, 3]`` aligned ``pred``.
    """
    s, R, t = similarity_transform(pred, target)
    return s[:, None, None] * pred @ R.transpose(1, 2) + t[:, None]


def pa_mpjpe(pred: Tensor, target: Tensor) -> Tensor:
    """MPJPE after Procrustes alignment, ``[B]`` mm."""
    return mpjpe(procrustes_align(pred, target), target)


def pve(pred: Tensor, target: Tensor) -> Tensor:
    """Per-vertex error (vertices in correspondence, no alignment), ``[B]`` mm."""
    return mpjpe(pred, target)
