"""Slow, obviously-correct reference of the tile rasterizer (the fast paths are tested against it).

Every pixel is blended against every Gaussian, one Gaussian at a time in depth order, with the
rules of :mod:`neural3d.splat.rasterize` written out as plain masks: the Gaussian counts at a
pixel only if its radius square touches the pixel's tile, ``power <= 0``, ``alpha >= 1/255`` and
the pixel has not stopped; a pixel stops at the first Gaussian that would take its
transmittance below ``1e-4``. Autograd differentiates through the loop.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from neural3d.splat.rasterize import MAX_ALPHA, MIN_ALPHA, MIN_TRANSMITTANCE


def rasterize_reference(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    depths: Tensor,
    radii: Tensor,
    width: int,
    height: int,
    *,
    background: Tensor | None = None,
    tile_size: int = 16,
) -> tuple[Tensor, Tensor]:
    """Same contract as :func:`neural3d.splat.rasterize.rasterize_gaussians`: image, alpha."""
    dt, dev = means2d.dtype, means2d.device
    px = (torch.arange(width, device=dev, dtype=dt) + 0.5)[None, :].expand(height, width)
    py = (torch.arange(height, device=dev, dtype=dt) + 0.5)[:, None].expand(height, width)
    tile_x = (torch.arange(width, device=dev) // tile_size)[None, :]  # each pixel's tile
    tile_y = (torch.arange(height, device=dev) // tile_size)[:, None]
    T = torch.ones(height, width, dtype=dt, device=dev)
    image = torch.zeros(height, width, colors.shape[1], dtype=colors.dtype, device=dev)
    done = torch.zeros(height, width, dtype=torch.bool, device=dev)
    for g in torch.sort(depths.detach(), stable=True).indices.tolist():
        a, b, c = conics[g]
        r = int(radii[g])
        if r <= 0 or not (a > 0 and a * c - b * b > 0):
            continue
        mx, my = means2d[g]
        cx, cy = means2d[g].tolist()
        x_lo, x_hi = math.floor((cx - r) / tile_size), math.ceil((cx + r) / tile_size)
        y_lo, y_hi = math.floor((cy - r) / tile_size), math.ceil((cy + r) / tile_size)
        in_tiles = (tile_x >= x_lo) & (tile_x < x_hi) & (tile_y >= y_lo) & (tile_y < y_hi)
        dx, dy = px - mx, py - my
        power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
        alpha = torch.clamp(opacities[g] * torch.exp(power.clamp_max(0.0)), max=MAX_ALPHA)
        use = in_tiles & ~done & (power <= 0) & (alpha >= MIN_ALPHA)
        test_t = T * (1.0 - alpha)
        stop = use & (test_t < MIN_TRANSMITTANCE)
        done = done | stop
        use = use & ~stop
        weight = torch.where(use, alpha * T, torch.zeros_like(T))
        image = image + colors[g] * weight[..., None]
        T = torch.where(use, test_t, T)
    if background is not None:
        image = image + T[..., None] * background
    return image, 1.0 - T
