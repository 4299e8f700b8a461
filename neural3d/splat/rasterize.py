"""Differentiable tile rasterization of projected Gaussians (the 3DGS forward and backward).

The image is cut into ``tile x tile`` pixel tiles (16 x 16 in 3DGS). A Gaussian is listed in every
tile its radius square ``[mx - r, mx + r] x [my - r, my + r]`` touches (tiles
``floor((mx - r) / tile) .. ceil((mx + r) / tile) - 1``, as 3DGS and gsplat bin), each tile's list
is sorted front to back by depth, and every pixel of the tile blends its tile's list in order:

    power = -0.5 (a dx^2 + c dy^2) - b dx dy      (dx, dy = pixel centre - mean; skip if > 0)
    alpha = min(0.99, o exp(power))                (skip if alpha < 1/255)
    stop before a Gaussian that would take T (1 - alpha) below 1e-4
    colour += c alpha T,  T <- T (1 - alpha)

The outputs are ``image = colour + T_final * background`` and ``alpha = 1 - T_final``. Gaussians
with radius 0 or a conic that is not positive definite are not drawn. The early stop and the
1/255 skip make the image piecewise smooth; gradients are those of the branch taken.

Backends (``backend=``):

- ``"numba"``: the compiled CPU kernel (:mod:`neural3d.splat._raster_numba`), float32; its backward
  walks each pixel's list back to front (3DGS's algorithm) with no atomics.
- ``"torch"``: the same tiles, sort and blending in batched PyTorch ops on any device, the
  early stop found with a cumulative product; autograd gives the backward.
- ``"gsplat"``: gsplat's CUDA rasterizer (when installed, CUDA tensors); note it clamps alpha at
  0.999 rather than 0.99.
- ``"auto"``: gsplat for CUDA tensors when it imports, numba on CPU when it imports, else torch.

The brute-force reference the tests compare with is :mod:`neural3d.splat._reference`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from mpgym.errors import MpgymError
from mpgym.optional import optional_module

__all__ = ["BACKENDS", "MAX_ALPHA", "MIN_ALPHA", "MIN_TRANSMITTANCE", "rasterize_gaussians"]

MAX_ALPHA = 0.99
"""Alpha of one Gaussian at one pixel is clamped to this (3DGS)."""
MIN_ALPHA = 1.0 / 255.0
"""Contributions with a smaller alpha are skipped (3DGS)."""
MIN_TRANSMITTANCE = 1e-4
"""A pixel stops before the Gaussian that would take its transmittance below this (3DGS)."""
BACKENDS = ("auto", "numba", "torch", "gsplat")
"""Accepted values of ``backend``."""

Backend = Literal["auto", "numba", "torch", "gsplat"]


def _numba_kernels():
    """The numba kernel module (compiled once, cached on disk); None without numba."""
    return optional_module("neural3d.splat._raster_numba")


def _gsplat():
    """The gsplat package, or None where it does not import."""
    return optional_module("gsplat")


def _check_inputs(means2d, conics, colors, opacities, depths, radii, width, height, tile_size,
                  background, *, finite: bool = True) -> None:
    """One clear :class:`MpgymError` for anything the rasterizer cannot take.

    ``finite=False`` leaves the NaN/infinity test to the caller (the numba backend makes it in
    one compiled pass over the float32 arrays it hands its kernels: :func:`_refuse_non_finite`).
    """
    n = means2d.shape[0] if means2d.ndim == 2 else -1
    want = {"means2d": (means2d, (n, 2)), "conics": (conics, (n, 3)),
            "opacities": (opacities, (n,)), "depths": (depths, (n,)), "radii": (radii, (n,))}
    for name, (t, shape) in want.items():
        if tuple(t.shape) != shape:
            raise MpgymError(
                f"rasterize_gaussians: {name} has shape {tuple(t.shape)}; accepted: means2d "
                "[N, 2], conics [N, 3], colors [N, C], opacities [N], depths [N], radii [N]."
            )
    if colors.ndim != 2 or colors.shape[0] != n or colors.shape[1] < 1:
        raise MpgymError(f"rasterize_gaussians: colors must be [N, C] with N = {n} and C >= 1; "
                         f"got {tuple(colors.shape)}.")
    floats = (means2d, conics, colors, opacities, depths)
    if any(not t.is_floating_point() for t in floats) or radii.is_floating_point():
        raise MpgymError("rasterize_gaussians: means2d, conics, colors, opacities and depths "
                         "must be floating point and radii an integer tensor.")
    if background is not None and tuple(background.shape) != (colors.shape[1],):
        raise MpgymError(f"rasterize_gaussians: background must be [C] = [{colors.shape[1]}]; "
                         f"got {tuple(background.shape)}.")
    if min(width, height, tile_size) < 1:
        raise MpgymError(f"rasterize_gaussians: width, height and tile_size must be >= 1; got "
                         f"{width}, {height}, {tile_size}.")
    if finite:
        for name, t in zip(_FLOAT_INPUTS, floats, strict=True):
            if not bool(torch.isfinite(t.detach()).all()):
                _refuse_non_finite(name)


_FLOAT_INPUTS = ("means2d", "conics", "colors", "opacities", "depths")


def _refuse_non_finite(name: str) -> None:
    raise MpgymError(f"rasterize_gaussians: {name} contains NaN or infinity; only finite values "
                     "are accepted.")


def _drawn(conics: Tensor, radii: Tensor) -> Tensor:
    """``[N]`` bool: radius above 0 and a positive-definite conic."""
    a, b, c = conics.detach().unbind(-1)
    return (radii > 0) & (a > 0) & (a * c - b * b > 0)


# --------------------------------------------------------------------------------------------
# torch backend
# --------------------------------------------------------------------------------------------


def _tile_rects(means2d: Tensor, radii: Tensor, tile: int, tiles_x: int, tiles_y: int) -> Tensor:
    """``[N, 4]`` ``(tx0, tx1, ty0, ty1)``: the tiles each radius square touches (half-open)."""
    m = means2d.detach().double()
    r = radii.double()
    lo = torch.floor((m - r[:, None]) / tile)
    hi = torch.ceil((m + r[:, None]) / tile)
    limit = torch.tensor([tiles_x, tiles_y], dtype=m.dtype, device=m.device)
    lo = torch.minimum(lo.clamp_min(0), limit).long()
    hi = torch.minimum(hi.clamp_min(0), limit).long()
    return torch.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], dim=-1)


def _bin_torch(means2d, conics, depths, radii, tile, tiles_x, tiles_y) -> tuple[Tensor, Tensor]:
    """(Gaussian, tile) pairs sorted by tile then depth: ``gauss_ids [P]``, ``ranges [T + 1]``."""
    dev = means2d.device
    rects = _tile_rects(means2d, radii, tile, tiles_x, tiles_y)
    span_x = (rects[:, 1] - rects[:, 0]).clamp_min(0)
    span_y = (rects[:, 3] - rects[:, 2]).clamp_min(0)
    counts = torch.where(_drawn(conics, radii), span_x * span_y, torch.zeros_like(span_x))
    gid = torch.repeat_interleave(torch.arange(len(counts), device=dev), counts)  # [P]
    first = torch.cumsum(counts, 0) - counts
    k = torch.arange(len(gid), device=dev) - first[gid]  # index within the Gaussian's rectangle
    tx = rects[gid, 0] + k % span_x[gid].clamp_min(1)
    ty = rects[gid, 2] + k // span_x[gid].clamp_min(1)
    tile_id = ty * tiles_x + tx
    # depth order first, then a stable sort by tile keeps depth order inside each tile
    order = torch.sort(depths.detach()[gid], stable=True).indices
    order = order[torch.sort(tile_id[order], stable=True).indices]
    n_tiles = tiles_x * tiles_y
    ranges = torch.zeros(n_tiles + 1, dtype=torch.long, device=dev)
    ranges[1:] = torch.cumsum(torch.bincount(tile_id, minlength=n_tiles), 0)
    return gid[order], ranges


def _blend_chunk(ids: Tensor, px: Tensor, py: Tensor, means2d, conics, colors, opacities):
    """Composite ``b`` tiles at once: ``ids [b, L]`` (-1 = padding), pixel centres ``[b, p]``.

    Returns colour ``[b, p, C]`` and final transmittance ``[b, p]``.
    """
    g = ids.clamp_min(0)
    mx, my = means2d[g, 0][:, None, :], means2d[g, 1][:, None, :]  # [b, 1, L]
    a, b, c = (conics[g, i][:, None, :] for i in range(3))
    dx, dy = px[:, :, None] - mx, py[:, :, None] - my  # [b, p, L]
    power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
    alpha = torch.clamp(opacities[g][:, None, :] * torch.exp(power.clamp_max(0.0)), max=MAX_ALPHA)
    use = (ids >= 0)[:, None, :] & (power <= 0) & (alpha >= MIN_ALPHA)
    alpha = torch.where(use, alpha, torch.zeros_like(alpha))
    with torch.no_grad():  # transmittance is non-increasing, so "before the stop" is T >= 1e-4
        keep = torch.cumprod(1.0 - alpha, dim=-1) >= MIN_TRANSMITTANCE
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    t_incl = torch.cumprod(1.0 - alpha, dim=-1)
    t_excl = torch.cat([torch.ones_like(t_incl[..., :1]), t_incl[..., :-1]], dim=-1)
    weights = alpha * t_excl  # [b, p, L]
    return torch.einsum("bpl,blc->bpc", weights, colors[g]), t_incl[..., -1]


def _rasterize_torch(means2d, conics, colors, opacities, depths, radii, width, height, tile):
    """The ``"torch"`` backend: ``(image [H, W, C] without background, T_final [H, W])``."""
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    n_tiles, C, dev = tiles_x * tiles_y, colors.shape[1], means2d.device
    gid, ranges = _bin_torch(means2d, conics, depths, radii, tile, tiles_x, tiles_y)
    if len(gid) == 0:  # nothing drawn; keep the outputs connected to the inputs' graph
        zero = (means2d.sum() + conics.sum() + colors.sum() + opacities.sum()) * 0.0
        return (torch.zeros(height, width, C, dtype=colors.dtype, device=dev) + zero,
                torch.ones(height, width, dtype=colors.dtype, device=dev) + zero)
    counts = ranges[1:] - ranges[:-1]
    L = max(int(counts.max()), 1)
    tile_of = torch.repeat_interleave(torch.arange(n_tiles, device=dev), counts)
    ids = torch.full((n_tiles, L), -1, dtype=torch.long, device=dev)
    ids[tile_of, torch.arange(len(gid), device=dev) - ranges[tile_of]] = gid
    lin = torch.arange(tile * tile, device=dev)
    t = torch.arange(n_tiles, device=dev)[:, None]
    px = ((t % tiles_x) * tile + lin % tile).to(means2d.dtype) + 0.5  # [n_tiles, tile^2]
    py = ((t // tiles_x) * tile + lin // tile).to(means2d.dtype) + 0.5
    step = max(1, (1 << 21) // (tile * tile * L))  # tiles per chunk: bounded memory
    parts = [_blend_chunk(ids[s:s + step], px[s:s + step], py[s:s + step], means2d, conics,
                          colors, opacities) for s in range(0, n_tiles, step)]
    rgb = torch.cat([p[0] for p in parts]).reshape(tiles_y, tiles_x, tile, tile, C)
    trans = torch.cat([p[1] for p in parts]).reshape(tiles_y, tiles_x, tile, tile)
    rgb = rgb.permute(0, 2, 1, 3, 4).reshape(tiles_y * tile, tiles_x * tile, C)[:height, :width]
    trans = trans.permute(0, 2, 1, 3).reshape(tiles_y * tile, tiles_x * tile)[:height, :width]
    return rgb, trans


# --------------------------------------------------------------------------------------------
# numba backend
# --------------------------------------------------------------------------------------------


@dataclass
class _Bins:
    """The arrays :mod:`neural3d.splat._raster_numba` shares between passes (P entries)."""

    ranges: np.ndarray  # [n_tiles + 1] int64: tile t's entries are ranges[t]:ranges[t+1]
    ent_gauss: np.ndarray  # [P] int32: each entry's Gaussian, tile-major, front to back
    gparams: np.ndarray  # [N, 16] float32, 64-byte rows: see _raster_numba.prepare
    boxes: np.ndarray  # [N, 4] int32: pixels where the Gaussian's alpha can reach 1/255
    colors: np.ndarray  # [N, C] float32
    order: np.ndarray  # [M] int64: the drawn Gaussians front to back
    srects: np.ndarray  # [M, 5] int64: their tile rectangles and first pairs, in that order
    pair_slot: np.ndarray  # [P] int32: entry of each pair (Gaussian in depth order, k-th tile)


def _bin_numba(k: Any, m: np.ndarray, con: np.ndarray, col: np.ndarray, op: np.ndarray,
               dep: np.ndarray, rad: np.ndarray, width: int, height: int, tile: int) -> _Bins:
    """Bin float32 numpy Gaussians into tiles, front to back within each tile."""
    import numba

    n = m.shape[0]
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    gparams = _cache_aligned_rows(n, k.ROW)
    rects, boxes = np.empty((n, 4), np.int32), np.empty((n, 4), np.int32)
    counts = np.empty(n, np.int64)
    k.prepare(m, con, op, rad, col, width, height, tile, gparams, rects, boxes, counts)
    threads = numba.get_num_threads()
    order = k.depth_order(dep.view(np.uint32), counts)
    ranges = k.tile_ranges(rects, counts, tiles_x * tiles_y, tiles_x, threads)
    P = int(ranges[-1])
    ent_gauss, pair_slot = np.empty(P, np.int32), np.empty(P, np.int32)
    srects = k.sorted_rects(order, rects)
    bands = max(1, min(tiles_y, 2 * threads))
    k.fill(order, srects, ranges, tiles_x, tiles_y, bands, ent_gauss, pair_slot)
    return _Bins(ranges, ent_gauss, gparams, boxes, col, order, srects, pair_slot)


def _cache_aligned_rows(n: int, row: int) -> np.ndarray:
    """An uninitialised float32 ``[n, row]`` array whose first row starts on a 64-byte line."""
    buf = np.empty(n * row + 16, np.float32)
    skip = (-buf.ctypes.data % 64) // 4
    return buf[skip:skip + n * row].reshape(n, row)


def _np32(t: Tensor) -> np.ndarray:
    """A detached, contiguous float32 numpy view (or copy) of a CPU tensor."""
    return t.detach().to(torch.float32).contiguous().numpy()


_MAX_TILE_ENTRIES = 2**24
"""The numba forward keeps each pixel's last entry within its tile as a float32 (exact below)."""


class _RasterizeNumba(torch.autograd.Function):
    """CPU kernel; saves the binned entries, final transmittance and last contributors."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, depths, radii, width, height, tile):  # type: ignore[override]
        import numba

        k = _numba_kernels()
        floats = [_np32(t) for t in (means2d, conics, colors, opacities, depths)]
        for name, a in zip(_FLOAT_INPUTS, floats, strict=True):
            if k.count_non_finite(a.reshape(-1)):
                _refuse_non_finite(name)
        bins = _bin_numba(k, *floats, radii.detach().to(torch.int32).contiguous().numpy(),
                          width, height, tile)
        if bins.ranges.shape[0] > 1 and int(np.diff(bins.ranges).max()) >= _MAX_TILE_ENTRIES:
            raise MpgymError(f"the numba rasterizer takes at most {_MAX_TILE_ENTRIES - 1:,} "
                             "Gaussians over one tile; use backend='torch' or fewer Gaussians.")
        image = np.empty((height, width, colors.shape[1]), np.float32)
        trans = np.empty((height, width), np.float32)
        last = np.empty((height, width), np.int32)
        old = numba.set_parallel_chunksize(1)  # tiles differ a lot in work: hand them out singly
        try:
            k.forward(bins.ranges, bins.ent_gauss, bins.gparams, bins.colors, width, height, tile,
                      image, trans, last)
        finally:
            numba.set_parallel_chunksize(old)
        ctx.bins, ctx.trans, ctx.last, ctx.size = bins, trans, last, (width, height, tile)
        ctx.dtypes = (means2d.dtype, conics.dtype, colors.dtype, opacities.dtype)
        return (torch.from_numpy(image).to(colors.dtype),
                torch.from_numpy(trans).to(colors.dtype))

    @staticmethod
    def backward(ctx, grad_image, grad_trans):  # type: ignore[override]
        import numba

        k, bins = _numba_kernels(), ctx.bins
        width, height, tile = ctx.size
        C = bins.colors.shape[1]
        entry = np.empty((bins.ent_gauss.shape[0], 6 + C), np.float32)
        old = numba.set_parallel_chunksize(1)
        try:  # the kernel takes dL/d(alpha) = -dL/d(T_final)
            k.backward(bins.ranges, bins.ent_gauss, bins.gparams, bins.boxes, bins.colors, width,
                       height, tile, ctx.trans, ctx.last, _np32(grad_image), _np32(-grad_trans),
                       entry)
        finally:
            numba.set_parallel_chunksize(old)
        out = np.zeros((bins.gparams.shape[0], 6 + C), np.float32)
        k.reduce_entries(entry, bins.order, bins.srects, bins.pair_slot, out)
        g = torch.from_numpy(out)
        dt_m, dt_con, dt_col, dt_op = ctx.dtypes
        return (g[:, 0:2].to(dt_m), g[:, 2:5].to(dt_con), g[:, 6:].to(dt_col), g[:, 5].to(dt_op),
                None, None, None, None, None)


# --------------------------------------------------------------------------------------------
# gsplat backend
# --------------------------------------------------------------------------------------------


def _rasterize_gsplat(means2d, conics, colors, opacities, depths, radii, width, height, tile):
    """The gsplat CUDA rasterizer on one image: ``(image [H, W, C], T_final [H, W])``."""
    gs = _gsplat()
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    r = torch.where(_drawn(conics, radii), radii, torch.zeros_like(radii)).to(torch.int32)
    try:  # gsplat >= 1.5 takes separate x and y radii [..., N, 2]; older ones [..., N]
        _, isect_ids, flatten_ids = gs.isect_tiles(
            means2d[None], r[None, :, None].expand(1, -1, 2).contiguous(), depths[None],
            tile, tiles_x, tiles_y)
    except (AssertionError, RuntimeError, TypeError):
        _, isect_ids, flatten_ids = gs.isect_tiles(means2d[None], r[None], depths[None], tile,
                                                   tiles_x, tiles_y)
    offsets = gs.isect_offset_encode(isect_ids, 1, tiles_x, tiles_y)
    image, alpha = gs.rasterize_to_pixels(means2d[None], conics[None], colors[None],
                                          opacities[None], width, height, tile, offsets,
                                          flatten_ids)
    return image[0], 1.0 - alpha[0, ..., 0]


# --------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------


def _pick_backend(backend: str, device: torch.device) -> str:
    """Resolve ``"auto"`` and refuse a backend that cannot run here."""
    if backend not in BACKENDS:
        raise MpgymError(f"unknown rasterizer backend {backend!r}; accepted: "
                         f"{', '.join(BACKENDS)}.")
    if backend == "auto":
        if device.type == "cuda" and _gsplat() is not None:
            return "gsplat"
        return "numba" if device.type == "cpu" and _numba_kernels() is not None else "torch"
    if backend == "numba" and (device.type != "cpu" or _numba_kernels() is None):
        raise MpgymError("rasterizer backend 'numba' needs CPU tensors and the numba package; "
                         "use backend='torch' (any device) or 'auto'.")
    if backend == "gsplat" and (device.type != "cuda" or _gsplat() is None):
        raise MpgymError("rasterizer backend 'gsplat' needs CUDA tensors and the gsplat package "
                         "(pip install gsplat); use backend='torch' or 'auto'.")
    return backend


def rasterize_gaussians(
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
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """Blend projected Gaussians into an image, front to back per 16 x 16 tile (3DGS).

    Args:
        means2d: ``[N, 2]`` centres in pixels (pixel ``(i, j)`` has its centre at
            ``(i + 0.5, j + 0.5)``).
        conics: ``[N, 3]`` ``(a, b, c)`` of the inverse 2D covariances.
        colors: ``[N, C]`` any number of channels (e.g. RGB, or RGB + depth).
        opacities: ``[N]`` in ``[0, 1]``.
        depths: ``[N]`` sort keys (camera-space depth), front = smallest.
        radii: ``[N]`` integer footprint radii in pixels; 0 = not drawn.
        width: image width in pixels.
        height: image height in pixels.
        background: ``[C]`` colour behind the Gaussians (default black).
        tile_size: tile side in pixels.
        backend: ``"auto"``, ``"numba"``, ``"torch"`` or ``"gsplat"`` (see the module docstring).

    Returns:
        ``image [H, W, C]`` and ``alpha [H, W]`` (``1 - T_final``); both differentiable w.r.t.
        ``means2d``, ``conics``, ``colors``, ``opacities`` (and ``background``).

    Example:
        One Gaussian of opacity 0.5 centred on pixel (1, 1) of a 3 x 3 image:

        >>> img, alpha = rasterize_gaussians(
        ...     torch.tensor([[1.5, 1.5]]), torch.tensor([[1.0, 0.0, 1.0]]), torch.ones(1, 1),
        ...     torch.tensor([0.5]), torch.ones(1), torch.tensor([3]), 3, 3, backend="torch")
        >>> alpha[1]  # 0.5 exp(-0.5) either side of the centre
        tensor([0.3033, 0.5000, 0.3033])
    """
    backend = _pick_backend(backend, means2d.device)
    _check_inputs(means2d, conics, colors, opacities, depths, radii, width, height, tile_size,
                  background, finite=backend != "numba")
    args = (means2d, conics, colors, opacities, depths, radii, int(width), int(height),
            int(tile_size))
    if backend == "numba":
        image, trans = _RasterizeNumba.apply(*args)
    elif backend == "gsplat":
        image, trans = _rasterize_gsplat(*args)
    else:
        image, trans = _rasterize_torch(*args)
    if background is not None:
        image = image + trans[..., None] * background.to(image)
    return image, 1.0 - trans

