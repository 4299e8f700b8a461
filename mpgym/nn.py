"""Small neural-network pieces every package builds on: the MLP and the diagonal Gaussian.

Agents (policies, value functions) and generative models (VAE encoders, decoders) both use
them, so they live here, below both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["LOG_2PI", "Activation", "diag_gaussian_log_prob", "mlp", "orthogonal_"]

LOG_2PI = math.log(2 * math.pi)
_LOG_SQRT_2PI = 0.5 * LOG_2PI

Activation = Literal["relu", "tanh"]
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def orthogonal_(weight: Tensor, gain: float) -> Tensor:
    """``nn.init.orthogonal_`` on one thread, so a seed gives the same weights at any thread count.

    The QR decomposition behind it rounds differently when LAPACK runs on several threads: with
    ``torch.set_num_threads(2)`` a 64x64 layer got other weights for the same seed (and PPO's
    Pendulum-v1 preset another result). The thread count is put back afterwards.
    """
    threads = torch.get_num_threads()
    if threads == 1:
        return nn.init.orthogonal_(weight, gain)
    torch.set_num_threads(1)
    try:
        return nn.init.orthogonal_(weight, gain)
    finally:
        torch.set_num_threads(threads)


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    *,
    activation: Activation = "relu",
    out_gain: float | None = None,
) -> nn.Sequential:
    """A multilayer perceptron ``in_dim -> hidden... -> out_dim`` (no output activation).

    Args:
        in_dim: input features.
        hidden: widths of the hidden layers (may be empty: a linear map).
        out_dim: output features.
        activation: hidden nonlinearity.
        out_gain: when given, orthogonal initialisation (Saxe et al. 2014) with gain sqrt(2)
            for hidden layers and ``out_gain`` for the output layer, biases 0 (the PPO
            implementation details of Huang et al. 2022); otherwise PyTorch's default.

    Returns:
        ``nn.Sequential`` mapping ``[B, in_dim]`` to ``[B, out_dim]``.
    """
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden]
    for a, b in zip(sizes[:-1], sizes[1:], strict=False):
        layers += [nn.Linear(a, b), _ACTIVATIONS[activation]()]
    layers.append(nn.Linear(sizes[-1], out_dim))
    if out_gain is not None:
        linears = [m for m in layers if isinstance(m, nn.Linear)]
        for i, lin in enumerate(linears):
            orthogonal_(lin.weight, out_gain if i == len(linears) - 1 else math.sqrt(2))
            nn.init.zeros_(lin.bias)
    return nn.Sequential(*layers)


def diag_gaussian_log_prob(
    x: Tensor, mean: Tensor, *, log_std: Tensor | None = None, log_var: Tensor | None = None
) -> Tensor:
    """``log N(x; mean, diag(sigma^2))`` summed over the last dim: ``[..., D]`` -> ``[...]``.

    The spread is given as exactly one of ``log_std`` (``log sigma``: policies) or ``log_var``
    (``log sigma^2``: VAEs), so a call always says which it passes. Each form is computed
    directly from its own parameter (no conversion through the other), which keeps it exact:
    ``-0.5 z^2 - log sigma - 0.5 log 2 pi`` with ``z = (x - mean) / sigma``, or
    ``-0.5 (log 2 pi + log sigma^2 + (x - mean)^2 / sigma^2)``.

    Raises:
        TypeError: both or neither of ``log_std`` and ``log_var`` given.
    """
    if (log_std is None) == (log_var is None):
        raise TypeError("diag_gaussian_log_prob takes exactly one of log_std= and log_var=")
    if log_std is not None:
        z = (x - mean) * torch.exp(-log_std)
        return (-0.5 * z * z - log_std - _LOG_SQRT_2PI).sum(-1)
    assert log_var is not None
    return -0.5 * (LOG_2PI + log_var + (x - mean) ** 2 * torch.exp(-log_var)).sum(-1)
