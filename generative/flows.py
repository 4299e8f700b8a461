"""Normalizing flows: RealNVP, Glow (ActNorm, 1x1 conv, squeeze / split), conditional coupling.

The invertible 1x1 convolution uses the LU parameterisation.

Convention: every layer maps data to latent with ``forward(x, cond) -> (y, logdet)`` where
``logdet`` ``[n]`` is ``log |det dy/dx|`` summed per example, and ``inverse(y, cond) -> x``.
Then ``log p(x) = log N(z; 0, I) + sum of logdets``.

For the 17-level digits, a flow models ``y = (x + u) / 17`` with ``u ~ U[0, 1)^64`` (uniform
dequantisation); ``-log P(x) <= E_u[-log p(y)] + 64 log 17`` so its NLL in nats is comparable
with the discrete models' (the ``64 log 17`` term is the bin width ``1/17`` of each pixel).

References:
    Dinh et al. (2017) RealNVP, arXiv:1605.08803; Kingma & Dhariwal (2018) Glow,
    arXiv:1807.03039; Theis et al. (2016) on dequantisation, arXiv:1511.01844.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from generative.data import (
    DIM,
    LEVELS,
    SIDE,
    check_images,
    dequantize,
    label_condition,
    quantize,
)

LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------------- pure functions
def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` summed over all but the first dim: ``-0.5 (z^2 + log 2 pi)``, ``[n]``."""
    return (-0.5 * (z**2 + LOG_2PI)).flatten(1).sum(1)


def squeeze2d(x: torch.Tensor) -> torch.Tensor:
    """Space to depth: ``[n, C, H, W] -> [n, 4C, H/2, W/2]`` (volume preserving, logdet 0)."""
    n, c, h, w = x.shape
    x = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze2d(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`squeeze2d`: ``[n, 4C, H, W] -> [n, C, 2H, 2W]``."""
    n, c, h, w = x.shape
    x = x.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, 2 * h, 2 * w)


def checkerboard_mask(h: int, w: int, parity: int = 0) -> torch.Tensor:
    """``[1, 1, h, w]`` 0/1 checkerboard; ``(i + j + parity) % 2 == 0`` is 1."""
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (((i + j + parity) % 2) == 0).float()[None, None]


def logit_transform(y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``z = logit(alpha + (1 - 2 alpha) y)`` for ``y`` in [0, 1], with ``log |dz/dy|`` ``[n]``.

    RealNVP's preprocessing (alpha = 0.05): keeps the flow away from the boundary of [0, 1].
    """
    s = alpha + (1 - 2 * alpha) * y
    z = torch.log(s) - torch.log1p(-s)
    logdet = (math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
    return z, logdet


# ---------------------------------------------------------------------------- layers
class ActNorm(nn.Module):
    """Per-channel affine ``y = (x + b) * exp(logs)``, initialised from the first batch.

    Data-dependent init (Glow sec. 3.1): after the first forward pass each channel of ``y`` has
    zero mean and unit variance. Works on ``[n, C]`` and ``[n, C, H, W]``.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.logs = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.uint8))

    def _shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (1, -1) + (1,) * (x.dim() - 2)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, logdet)``; logdet = ``H W sum(logs)``."""
        if not bool(self.initialized):
            with torch.no_grad():
                dims = [0] + list(range(2, x.dim()))
                self.bias.copy_(-x.mean(dims))
                self.logs.copy_(-torch.log(x.std(dims) + 1e-6))
                self.initialized.fill_(1)
        s = self._shape(x)
        y = (x + self.bias.view(s)) * torch.exp(self.logs.view(s))
        spatial = x[0, 0].numel()
        return y, (spatial * self.logs.sum()).expand(x.shape[0])

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``x = y exp(-logs) - b``."""
        s = self._shape(y)
        return y * torch.exp(-self.logs.view(s)) - self.bias.view(s)


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution with ``W = P L (U + diag(sign * exp(log_s)))`` (Glow sec. 3.2).

    ``P`` is a fixed permutation, ``L`` unit lower-triangular, ``U`` strictly upper-triangular;
    ``log |det W| = sum(log_s)`` costs O(C) instead of O(C^3).
    """

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels, generator=generator))[0]
        P, L, U = torch.linalg.lu(w)
        s = torch.diagonal(U)
        self.register_buffer("P", P)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.L = nn.Parameter(L)
        self.U = nn.Parameter(torch.triu(U, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight(self) -> torch.Tensor:
        """The ``[C, C]`` matrix ``W``."""
        eye = torch.eye(self.L.shape[0], device=self.L.device)
        L = self.L * self.lower_mask + eye
        U = self.U * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.P @ L @ U

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W x per pixel, H W sum(log_s))``."""
        y = torch.einsum("ij,nj...->ni...", self.weight(), x)
        spatial = x[0, 0].numel()
        return y, (spatial * self.log_s.sum()).expand(x.shape[0])

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``W^-1 y`` per pixel."""
        return torch.einsum("ij,nj...->ni...", torch.linalg.inv(self.weight()), y)


class AffineCoupling(nn.Module):
    """RealNVP affine coupling with a fixed binary mask ``m`` (checkerboard or channel-wise).

    ``y = m x + (1 - m) (x exp(s) + t)`` with ``(s, t) = NN(m x, cond)``; ``s`` is bounded by
    ``scale * tanh`` for stability. ``log |det| = sum((1 - m) s)``. Conditioning (a label
    embedding) enters the network, never the mask, so the map stays invertible for every label.
    """

    def __init__(self, mask: torch.Tensor, net: nn.Module):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = net
        self.scale = nn.Parameter(torch.ones(1))

    def _st(self, xm: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        inp = xm if cond is None else torch.cat([xm, _broadcast(cond, xm)], 1)
        s, t = self.net(inp).chunk(2, 1)
        s = self.scale * torch.tanh(s)
        return s * (1 - self.mask), t * (1 - self.mask)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, logdet)``."""
        s, t = self._st(x * self.mask, cond)
        return x * self.mask + (1 - self.mask) * (x * torch.exp(s) + t), s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``x = m y + (1 - m)(y - t) exp(-s)``."""
        s, t = self._st(y * self.mask, cond)
        return y * self.mask + (1 - self.mask) * (y - t) * torch.exp(-s)


def _broadcast(cond: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[n, k]`` conditioning to ``[n, k, H, W]`` (or kept ``[n, k]`` for vectors)."""
    if like.dim() == 2:
        return cond
    return cond[:, :, None, None].expand(-1, -1, *like.shape[2:])


def conv_net(cin: int, cout: int, hidden: int) -> nn.Module:
    """Coupling network for images: 3x3 conv, 1x1 conv, zero-initialised 3x3 conv."""
    last = nn.Conv2d(hidden, cout, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(
        nn.Conv2d(cin, hidden, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, 1),
        nn.ReLU(),
        last,
    )


def mlp_net(cin: int, cout: int, hidden: int) -> nn.Module:
    """Coupling network for vectors, zero-initialised last layer (identity flow at init)."""
    last = nn.Linear(hidden, cout)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(
        nn.Linear(cin, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), last
    )


class FlowSequence(nn.Module):
    """Composition of flow layers; logdets add up."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, sum logdet)``."""
        total = torch.zeros(x.shape[0], device=x.device)
        for layer in self.layers:
            x, ld = layer(x, cond)
            total = total + ld
        return x, total

    def inverse(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Layers inverted in reverse order."""
        for layer in reversed(self.layers):
            z = layer.inverse(z, cond)
        return z


def glow_step(
    channels: int, hidden: int, cond_dim: int, generator: torch.Generator | None
) -> list[nn.Module]:
    """ActNorm -> invertible 1x1 conv -> affine coupling on half the channels."""
    mask = torch.zeros(1, channels, 1, 1)
    mask[:, : channels // 2] = 1
    return [
        ActNorm(channels),
        InvConv1x1(channels, generator),
        AffineCoupling(mask, conv_net(channels + cond_dim, 2 * channels, hidden)),
    ]


class SplitPrior(nn.Module):
    """Glow's split: factor out half the channels with a Gaussian prior conditioned on the rest."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels // 2, channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def log_prob(self, keep: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``log N(out; mu(keep), sigma(keep)^2)`` summed, ``[n]``."""
        mu, logs = self.conv(keep).chunk(2, 1)
        return (
            (-0.5 * (((out - mu) * torch.exp(-logs)) ** 2 + 2 * logs + LOG_2PI)).flatten(1).sum(1)
        )

    def sample(
        self, keep: torch.Tensor, generator: torch.Generator | None, temperature: float
    ) -> torch.Tensor:
        """Draw the factored-out half given the kept half."""
        mu, logs = self.conv(keep).chunk(2, 1)
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)
        return mu + temperature * torch.exp(logs) * eps


# ---------------------------------------------------------------------------- digits model
@dataclass(frozen=True)
class GlowConfig:
    """Two-scale Glow for dequantised 8x8 digits (8x8x1 -> 4x4x4 -> split -> 2x2x8)."""

    steps_per_level: int = 8
    """Flow steps (ActNorm, 1x1 conv, coupling) per level."""
    hidden: int = 64
    """Channels of each coupling network."""
    alpha: float = 0.05
    """Logit-transform margin (RealNVP)."""
    num_classes: int = 0
    """Classes for conditional coupling (0: unconditional)."""
    seed: int = 0
    """Seed of the 1x1-conv initialisation."""
    levels: int = LEVELS
    """Intensity levels of the discrete data."""


class Glow(nn.Module):
    """Multi-scale flow on dequantised digits; ``log_prob`` includes the ``-64 log 17`` bin term."""

    def __init__(self, config: GlowConfig = GlowConfig()):
        super().__init__()
        self.config, self.levels, self.num_classes = config, config.levels, config.num_classes
        g = torch.Generator().manual_seed(config.seed)
        k, h, c = config.steps_per_level, config.hidden, config.num_classes
        self.level1 = FlowSequence([layer for _ in range(k) for layer in glow_step(4, h, c, g)])
        self.split = SplitPrior(4)
        self.level2 = FlowSequence([layer for _ in range(k) for layer in glow_step(8, h, c, g)])

    def _cond(self, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
        return label_condition(y, self.num_classes, n, model="flow")

    def log_prob_continuous(self, v: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(v)`` ``[n]`` of dequantised images ``v`` ``[n, 64]`` in (0, 1)."""
        n = v.shape[0]
        cond = self._cond(y, n)
        z, ld = logit_transform(v.view(n, 1, SIDE, SIDE), self.config.alpha)
        z, ld1 = self.level1(squeeze2d(z), cond)
        keep, out = z.chunk(2, 1)
        lp_out = self.split.log_prob(keep, out)
        z2, ld2 = self.level2(squeeze2d(keep), cond)
        return standard_normal_log_prob(z2) + lp_out + ld + ld1 + ld2

    def log_prob(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One-sample dequantisation bound ``log p((x + u)/L) - D log L``, ``[n]``."""
        x = check_images(x, self.levels)
        return self.log_prob_continuous(dequantize(x, generator, self.levels), y) - DIM * math.log(
            self.levels
        )

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Mean dequantised NLL in nats per image."""
        return -self.log_prob(x, y).mean()

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Draw ``n`` integer images ``[n, 64]``."""
        cond = self._cond(y, n)
        z2 = temperature * torch.randn(n, 8, 2, 2, generator=generator)
        keep = unsqueeze2d(self.level2.inverse(z2, cond))
        out = self.split.sample(keep, generator, temperature)
        z = unsqueeze2d(self.level1.inverse(torch.cat([keep, out], 1), cond))
        v = (torch.sigmoid(z) - self.config.alpha) / (1 - 2 * self.config.alpha)
        return quantize(v.view(n, DIM).clamp(0, 1 - 1e-6), self.levels)


# ---------------------------------------------------------------------------- 2D model
@dataclass(frozen=True)
class RealNVP2DConfig:
    """RealNVP for 2D densities: alternating one-coordinate affine couplings."""

    couplings: int = 8
    """Coupling layers (masks alternate between the two coordinates)."""
    hidden: int = 128
    """Width of each coupling MLP."""
    num_classes: int = 0
    """Classes for conditional coupling (0: unconditional)."""


class RealNVP2D(nn.Module):
    """``log_prob(points [n, 2])`` exact; ``sample(n)``."""

    def __init__(self, config: RealNVP2DConfig = RealNVP2DConfig()):
        super().__init__()
        self.config, self.num_classes = config, config.num_classes
        layers: list[nn.Module] = []
        for i in range(config.couplings):
            mask = torch.tensor([[1.0, 0.0]]) if i % 2 == 0 else torch.tensor([[0.0, 1.0]])
            layers += [
                ActNorm(2),
                AffineCoupling(mask, mlp_net(2 + config.num_classes, 4, config.hidden)),
            ]
        self.flow = FlowSequence(layers)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact ``log p(x)`` ``[n]``."""
        z, ld = self.flow(x, label_condition(y, self.num_classes, len(x), model="flow"))
        return standard_normal_log_prob(z) + ld

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Mean NLL."""
        return -self.log_prob(x, y).mean()

    @torch.no_grad()
    def sample(
        self, n: int, *, generator: torch.Generator | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[n, 2]`` points."""
        cond = label_condition(y, self.num_classes, n, model="flow")
        return self.flow.inverse(torch.randn(n, 2, generator=generator), cond)
