"""Loss terms of the implicit-shape papers, as pure functions on tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gradient(y: Tensor, x: Tensor, *, create_graph: bool = True) -> Tensor:
    """``dy/dx`` for ``y [...]`` computed from ``x [..., 3]`` (``x.requires_grad``) -> ``[..., 3]``.

    ``create_graph=True`` keeps the graph so a loss on the gradient (eikonal) can be trained.
    """
    (g,) = torch.autograd.grad(y, x, grad_outputs=torch.ones_like(y), create_graph=create_graph)
    return g


def eikonal_loss(grad: Tensor) -> Tensor:
    """IGR's eikonal term ``E[(||grad f(x)|| - 1)^2]`` over gradients ``[..., 3]``.

    Zero exactly when ``f`` has unit-norm gradient, which every true SDF has.

    Example:
        >>> eikonal_loss(torch.tensor([[0.0, 3.0, 4.0]]))
        tensor(16.)
    """
    return ((grad.norm(dim=-1) - 1.0) ** 2).mean()


def normal_loss(grad: Tensor, normals: Tensor) -> Tensor:
    """IGR's normal term ``E[||grad f(x_i) - n_i||]`` on surface points (unsquared norm)."""
    return (grad - normals).norm(dim=-1).mean()


def clamped_l1(pred: Tensor, target: Tensor, delta: float = 0.1) -> Tensor:
    """DeepSDF's loss ``E|clamp(pred, -d, d) - clamp(target, -d, d)|`` (d = 0.1 in the paper).

    Example:
        >>> clamped_l1(torch.tensor([0.5]), torch.tensor([0.05]), 0.1)
        tensor(0.0500)
    """
    return (pred.clamp(-delta, delta) - target.clamp(-delta, delta)).abs().mean()


def occupancy_bce(logits: Tensor, occupied: Tensor) -> Tensor:
    """Occupancy Networks' binary cross-entropy on logits ``[...]`` and 0/1 labels ``[...]``."""
    return F.binary_cross_entropy_with_logits(logits, occupied.float())
