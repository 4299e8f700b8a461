"""Body-fitting errors in millimetres: MPJPE, PA-MPJPE (Procrustes-aligned) and PVE.

Inputs are in metres, ``[B, N, 3]`` (joints or vertices); results are per-body ``[B]`` in mm.
"""

from __future__ import annotations

import torch
from torch import Tensor


def mpjpe(pred: Tensor, target: Tensor) -> Tensor:
    """Mean per-joint position error, ``[B, J, 3] x2 -> [B]`` mm (no alignment)."""
    return (pred - target).norm(dim=-1).mean(-1) * 1000.0


def procrustes_align(pred: Tensor, target: Tensor) -> Tensor:
    """Similarity transform (scale, rotation, translation) of ``pred`` that best fits ``target``.

    Umeyama's closed form; a reflection is never used.

    Args:
        pred: ``[B, N, 3]``.
        target: ``[B, N, 3]``.

    Returns:
        ``[B, N, 3]`` aligned ``pred``.
    """
    mu_p, mu_t = pred.mean(1, keepdim=True), target.mean(1, keepdim=True)
    p, t = pred - mu_p, target - mu_t
    U, S, Vh = torch.linalg.svd(p.transpose(1, 2) @ t)  # [B, 3, 3]
    d = torch.sign(torch.linalg.det(U @ Vh))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    R = U @ D @ Vh  # p @ R ~ t
    scale = (S * D.diagonal(dim1=-2, dim2=-1)).sum(-1) / (p * p).sum((1, 2))
    return scale[:, None, None] * p @ R + mu_t


def pa_mpjpe(pred: Tensor, target: Tensor) -> Tensor:
    """MPJPE after Procrustes alignment, ``[B]`` mm."""
    return mpjpe(procrustes_align(pred, target), target)


def pve(pred: Tensor, target: Tensor) -> Tensor:
    """Per-vertex error (vertices in correspondence, no alignment), ``[B]`` mm."""
    return mpjpe(pred, target)
