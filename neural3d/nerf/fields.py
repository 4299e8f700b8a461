"""Radiance fields: density from position first, then colour from features + view direction.

Both fields map world points ``[N, 3]`` inside the scene box and unit view directions
``[N, 3]`` to densities ``[N]`` (per unit length, >= 0) and colours ``[N, 3]`` in [0, 1].

- :class:`VanillaField` (Mildenhall et al. 2020, Fig. 7): positional encoding (10 octaves for
  xyz, 4 for directions), 8 ReLU layers of 256 with the encoded input concatenated to the
  output of the 5th (so the 6th layer takes ``256 + 63`` inputs; the official code's
  ``skips=[4]``), a density head (ReLU), a 256 feature layer, then one 128 layer with the
  encoded direction and a sigmoid colour head.
- :class:`HashField` (Mueller et al. 2022, Sec. 5.4): hash encoding of the normalised
  position, a density MLP with one hidden layer of 64 whose first output is log-density
  (``exp`` activation, gradient truncated) and the other 15 are features, spherical-harmonics
  (degree 4) direction encoding, a colour MLP with two hidden layers of 64.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from neural3d.encodings import HashEncoding, PositionalEncoding, SphericalHarmonics

TRUNC_EXP_GRAD_CLAMP = 15.0
"""``trunc_exp``'s backward uses ``exp(clamp(x, -15, 15))`` (torch-ngp's ``_trunc_exp``)."""

TRUNC_EXP_FORWARD_MAX = 80.0
"""Inputs above this are clamped in the forward pass only to keep densities finite: ``exp(80)``
is about 5.5e34, so ``sigma * delta`` sums along a ray stay below float32's 3.4e38 (an infinite
density would make the exclusive cumulative sum in compositing ``inf - inf = NaN``)."""


class _TruncExp(torch.autograd.Function):
    """``exp`` whose gradient is taken at ``x`` clamped to ``[-15, 15]``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        """``exp(x)`` (clamped above at :data:`TRUNC_EXP_FORWARD_MAX`)."""
        ctx.save_for_backward(x)
        top = min(TRUNC_EXP_FORWARD_MAX, math.log(torch.finfo(x.dtype).max) - 1.0)
        return torch.exp(x.clamp(max=top))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        """``grad * exp(clamp(x, -15, 15))``."""
        (x,) = ctx.saved_tensors
        c = TRUNC_EXP_GRAD_CLAMP
        return grad * torch.exp(x.clamp(-c, c))


def trunc_exp(x: Tensor) -> Tensor:
    """``exp(x)`` with a truncated gradient (Instant-NGP's density activation, as torch-ngp).

    Forward: ``exp(x)`` exactly (inputs above :data:`TRUNC_EXP_FORWARD_MAX`, far beyond any
    useful density, are clamped so the result stays finite). Backward: ``g * exp(clamp(x, -15,
    15))``, so a large log-density still gets a bounded, non-zero gradient.

    Example:
        >>> x = torch.tensor([0.0, 20.0], requires_grad=True)
        >>> trunc_exp(x).sum().backward()
        >>> x.grad.tolist() == [1.0, torch.exp(torch.tensor(15.0)).item()]
        True
    """
    return _TruncExp.apply(x)


def _mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    dims = [in_dim] + [hidden] * layers
    mods: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        mods += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    mods.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*mods)


class HashField(nn.Module):
    """Instant-NGP radiance field.

    Args:
        aabb: ``[6]`` scene box; positions are mapped to ``[0, 1]^3`` inside it.
        num_levels: hash levels ``L``.
        features_per_level: ``F``.
        log2_table_size: ``log2 T``.
        base_resolution: ``N_min``.
        max_resolution: ``N_max``.
        hidden: width of both MLPs (64 in the paper).
        geo_features: features passed from density to colour MLP (15 in the paper).
        generator: for the hash table's initial values.
    """

    aabb: Tensor

    def __init__(self, aabb: Tensor, *, num_levels: int = 16, features_per_level: int = 2,
                 log2_table_size: int = 19, base_resolution: int = 16, max_resolution: int = 1024,
                 hidden: int = 64, geo_features: int = 15,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).clone())
        self.encoding = HashEncoding(num_levels, features_per_level, log2_table_size,
                                     base_resolution, max_resolution, generator=generator)
        self.density_mlp = _mlp(self.encoding.out_dim, hidden, 1, 1 + geo_features)
        self.dir_encoding = SphericalHarmonics(4)
        self.color_mlp = _mlp(geo_features + self.dir_encoding.out_dim, hidden, 2, 3)
        with torch.no_grad():  # start near-empty (density e^-4 ~ 0.02 per unit length) so the
            self.density_mlp[-1].bias[0] = -4.0  # occupancy grid prunes from the first update

    def _normalize(self, x: Tensor) -> Tensor:
        return (x - self.aabb[:3]) / (self.aabb[3:] - self.aabb[:3])

    def _geometry(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.density_mlp(self.encoding(self._normalize(x)))  # [N, 1 + G]
        return trunc_exp(h[:, 0]), h[:, 1:]

    def density(self, x: Tensor) -> Tensor:
        """``[N, 3]`` world points -> ``[N]`` densities."""
        return self._geometry(x)[0]

    def forward(self, x: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        """``x [N, 3]``, ``d [N, 3]`` -> ``sigma [N]``, ``rgb [N, 3]``."""
        sigma, geo = self._geometry(x)
        rgb = torch.sigmoid(self.color_mlp(torch.cat([geo, self.dir_encoding(d)], -1)))
        return sigma, rgb


class VanillaField(nn.Module):
    """The original NeRF MLP.

    Args:
        aabb: ``[6]`` scene box (stored for checkpoints and mesh export; positions are used as
            given, as in NeRF).
        pos_freqs: octaves of the position encoding (10).
        dir_freqs: octaves of the direction encoding (4).
        width: hidden width (256).
        depth: hidden layers before the density head (8).
        skip: index of the layer whose output gets the encoded position concatenated (4: the
            5th layer's output, so the 6th layer takes ``width + 3 (1 + 2 pos_freqs)``
            inputs), as ``skips=[4]`` in the official code and nerf-pytorch; none when
            ``depth <= skip + 1``.
    """

    aabb: Tensor

    def __init__(self, aabb: Tensor, *, pos_freqs: int = 10, dir_freqs: int = 4,
                 width: int = 256, depth: int = 8, skip: int = 4):
        super().__init__()
        if not 0 <= skip < depth - 1:  # no layer after it to feed: no skip (as nerf-pytorch)
            skip = -1
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).clone())
        self.pos_enc = PositionalEncoding(3, pos_freqs)
        self.dir_enc = PositionalEncoding(3, dir_freqs)
        self.skip = skip
        p = self.pos_enc.out_dim
        self.layers = nn.ModuleList(
            nn.Linear(p if i == 0 else width + (p if i == skip + 1 else 0), width)
            for i in range(depth))
        self.sigma_head = nn.Linear(width, 1)
        self.feature = nn.Linear(width, width)
        self.color = nn.Sequential(nn.Linear(width + self.dir_enc.out_dim, width // 2),
                                   nn.ReLU(inplace=True), nn.Linear(width // 2, 3))

    def _trunk(self, x: Tensor) -> Tensor:
        e = self.pos_enc(x)
        h = e
        for i, layer in enumerate(self.layers):
            h = torch.relu(layer(h))
            if i == self.skip:  # input first, as the official code's torch.cat([input_pts, h])
                h = torch.cat([e, h], -1)
        return h

    def density(self, x: Tensor) -> Tensor:
        """``[N, 3]`` world points -> ``[N]`` densities."""
        return torch.relu(self.sigma_head(self._trunk(x))[:, 0])

    def forward(self, x: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        """``x [N, 3]``, ``d [N, 3]`` -> ``sigma [N]``, ``rgb [N, 3]``."""
        h = self._trunk(x)
        sigma = torch.relu(self.sigma_head(h)[:, 0])
        rgb = torch.sigmoid(self.color(torch.cat([self.feature(h), self.dir_enc(d)], -1)))
        return sigma, rgb
