"""Input encodings for coordinate networks: positional, Fourier, spherical harmonics, hash grid.

Every encoding is an ``nn.Module`` mapping ``[..., in_dim]`` to ``[..., out_dim]`` and exposing
``out_dim`` so a following MLP can be sized from it. Batch dimensions are arbitrary.

- :class:`PositionalEncoding` -- NeRF's frequency encoding (Mildenhall et al. 2020, eq. 4),
  as in the official code: frequencies ``2^0 ... 2^(L-1)`` (without the factor pi), input
  concatenated in front.
- :class:`FourierFeatures` -- random Fourier features ``[cos(2 pi B v), sin(2 pi B v)]`` with
  ``B ~ N(0, sigma^2)`` (Tancik et al. 2020).
- :class:`SphericalHarmonics` -- real SH basis of unit directions up to degree 4 (16 values),
  Instant-NGP's direction encoding.
- :class:`HashEncoding` -- the multiresolution hash encoding of Instant-NGP (Mueller et al.
  2022); the kernels live in :mod:`neural3d.nerf.hashgrid`.

References:
    Mildenhall et al., NeRF, ECCV 2020, https://doi.org/10.1007/978-3-030-58452-8_24.
    Tancik et al., Fourier Features Let Networks Learn High Frequency Functions, NeurIPS 2020.
    Mueller et al., Instant Neural Graphics Primitives, SIGGRAPH 2022,
    https://doi.org/10.1145/3528223.3530127.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "FourierFeatures",
    "HashEncoding",
    "PositionalEncoding",
    "SphericalHarmonics",
    "positional_encode",
    "spherical_harmonics",
]


def positional_encode(x: Tensor, num_freqs: int, *, include_input: bool = True) -> Tensor:
    """NeRF's frequency encoding ``[x, sin(2^k x), cos(2^k x)]_{k < num_freqs}``.

    Args:
        x: ``[..., D]`` coordinates.
        num_freqs: number of octaves ``L`` (NeRF: 10 for positions, 4 for directions).
        include_input: put ``x`` itself in front, as NeRF's code does.

    Returns:
        ``[..., D * (include_input + 2 * num_freqs)]``; per octave all sines then all cosines.

    Example:
        >>> positional_encode(torch.zeros(1, 1), 2).tolist()
        [[0.0, 0.0, 1.0, 0.0, 1.0]]
    """
    freqs = 2.0 ** torch.arange(num_freqs, dtype=x.dtype, device=x.device)  # [L]
    xb = x[..., None, :] * freqs[:, None]  # [..., L, D]
    enc = torch.cat([torch.sin(xb), torch.cos(xb)], dim=-1).flatten(-2)  # [..., L * 2D]
    return torch.cat([x, enc], dim=-1) if include_input else enc


class PositionalEncoding(nn.Module):
    """NeRF positional encoding as a module (see :func:`positional_encode`).

    Args:
        in_dim: input size ``D`` (3 for positions and directions).
        num_freqs: octaves ``L`` (NeRF: 10 for xyz, 4 for view directions).
        include_input: concatenate ``x`` in front.
    """

    def __init__(self, in_dim: int = 3, num_freqs: int = 10, *, include_input: bool = True):
        super().__init__()
        self.in_dim, self.num_freqs, self.include_input = in_dim, num_freqs, include_input
        self.out_dim = in_dim * (int(include_input) + 2 * num_freqs)

    def forward(self, x: Tensor) -> Tensor:
        """``[..., in_dim]`` -> ``[..., out_dim]``."""
        return positional_encode(x, self.num_freqs, include_input=self.include_input)


class FourierFeatures(nn.Module):
    """Random Fourier features ``[cos(2 pi B x), sin(2 pi B x)]`` (Tancik et al. 2020).

    Args:
        in_dim: input size ``D``.
        num_features: rows ``m`` of ``B``; ``out_dim = 2 m`` (+ ``D`` with ``include_input``).
        sigma: standard deviation of ``B`` -- the bandwidth; the paper sweeps 1...100 and finds
            ~10 good for 2-D images and 3-D shapes at unit scale.
        include_input: concatenate ``x`` in front.
        generator: a ``torch.Generator`` for ``B`` (explicit randomness).
    """

    B: Tensor

    def __init__(self, in_dim: int = 3, num_features: int = 128, sigma: float = 10.0, *,
                 include_input: bool = False, generator: torch.Generator | None = None):
        super().__init__()
        B = torch.randn(num_features, in_dim, generator=generator) * sigma
        self.register_buffer("B", B)  # saved in state_dict so a checkpoint reproduces it
        self.in_dim, self.include_input = in_dim, include_input
        self.out_dim = 2 * num_features + (in_dim if include_input else 0)

    def forward(self, x: Tensor) -> Tensor:
        """``[..., in_dim]`` -> ``[..., out_dim]``."""
        proj = 2 * math.pi * x @ self.B.T.to(x.dtype)  # [..., m]
        enc = torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1)
        return torch.cat([x, enc], dim=-1) if self.include_input else enc


# Real spherical-harmonics constants (orthonormal on the unit sphere), degrees 0..3.
_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
       0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def spherical_harmonics(dirs: Tensor, degree: int = 4) -> Tensor:
    """Real spherical harmonics ``Y_lm(d)`` for ``l < degree`` (``degree**2`` values).

    The basis is orthonormal: the mean of ``Y_i Y_j`` over the sphere is ``delta_ij / (4 pi)``.

    Args:
        dirs: ``[..., 3]`` unit directions.
        degree: 1...4 (Instant-NGP uses 4, i.e. 16 coefficients).

    Returns:
        ``[..., degree**2]``.

    Example:
        >>> round(spherical_harmonics(torch.tensor([0.0, 0.0, 1.0]), 1).item(), 4)
        0.2821
    """
    if not 1 <= degree <= 4:
        raise ValueError(f"degree must be 1, 2, 3 or 4 (got {degree}).")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, _C0)]
    if degree > 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree > 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [_C2[0] * x * y, _C2[1] * y * z, _C2[2] * (2 * zz - xx - yy), _C2[3] * x * z,
                _C2[4] * (xx - yy)]
    if degree > 3:
        out += [_C3[0] * y * (3 * xx - yy), _C3[1] * x * y * z, _C3[2] * y * (4 * zz - xx - yy),
                _C3[3] * z * (2 * zz - 3 * xx - 3 * yy), _C3[4] * x * (4 * zz - xx - yy),
                _C3[5] * z * (xx - yy), _C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, dim=-1)


class SphericalHarmonics(nn.Module):
    """Spherical-harmonics direction encoding (see :func:`spherical_harmonics`).

    Args:
        degree: number of bands, 1...4; ``out_dim = degree**2``.
    """

    def __init__(self, degree: int = 4):
        super().__init__()
        if not 1 <= degree <= 4:
            raise ValueError(f"degree must be 1, 2, 3 or 4 (got {degree}).")
        self.degree, self.in_dim, self.out_dim = degree, 3, degree * degree

    def forward(self, dirs: Tensor) -> Tensor:
        """``[..., 3]`` unit directions -> ``[..., degree**2]``."""
        return spherical_harmonics(dirs, self.degree)


class HashEncoding(nn.Module):
    """Multiresolution hash encoding (Instant-NGP) of points in the unit cube ``[0, 1]^3``.

    ``L`` levels with resolutions ``N_l = floor(N_min * b^l)``, ``b = exp((ln N_max - ln N_min)
    / (L - 1))``; each level stores ``F`` features per grid vertex in a table of at most ``T``
    rows, indexed densely when ``(N_l + 1)^3 <= T`` and by the spatial hash
    ``(x * 1 xor y * 2654435761 xor z * 805459861) mod T`` otherwise; features are trilinearly
    interpolated and the levels concatenated. Defaults are the paper's (L 16, F 2, T 2^19,
    N_min 16); tables start uniform in ``[-1e-4, 1e-4]`` as in the paper.

    Args:
        num_levels: ``L``.
        features_per_level: ``F``.
        log2_table_size: ``log2 T``.
        base_resolution: ``N_min``.
        max_resolution: ``N_max`` (the paper uses 2048 x the scene size for NeRF; 512-2048 here).
        generator: for the initial table values.
    """

    def __init__(self, num_levels: int = 16, features_per_level: int = 2, log2_table_size: int = 19,
                 base_resolution: int = 16, max_resolution: int = 2048, *,
                 generator: torch.Generator | None = None):
        super().__init__()
        from neural3d.nerf.hashgrid import level_layout

        self.layout = level_layout(num_levels, log2_table_size, base_resolution, max_resolution)
        self.in_dim = 3
        self.out_dim = num_levels * features_per_level
        rows = self.layout.total_rows
        init = torch.rand(rows, features_per_level, generator=generator) * 2e-4 - 1e-4
        self.table = nn.Parameter(init)  # [sum_l rows_l, F], levels stacked with offsets

    def forward(self, x: Tensor) -> Tensor:
        """``[..., 3]`` points in ``[0, 1]^3`` (clamped) -> ``[..., L * F]``."""
        from neural3d.nerf.hashgrid import hash_encode

        shape = x.shape[:-1]
        out = hash_encode(x.reshape(-1, 3), self.table, self.layout)
        return out.reshape(*shape, self.out_dim)

    def extra_repr(self) -> str:
        """Levels, resolutions and table rows."""
        lay = self.layout
        return (f"levels={lay.num_levels}, F={self.table.shape[1]}, T=2^{lay.log2_table_size}, "
                f"res={lay.resolutions[0]}..{lay.resolutions[-1]}, dense_levels={lay.num_dense}")
