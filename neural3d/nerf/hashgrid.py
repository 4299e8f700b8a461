"""Multiresolution hash encoding (Instant-NGP): level layout and the fast CPU/GPU kernel.

All ``L`` levels live in one table ``[sum_l rows_l, F]`` with row offsets, so a single batched
gather reads every level at once. Level ``l`` has ``N_l = floor(N_min * b^l)`` cells per axis
(``N_l + 1`` vertices); a point ``x`` in ``[0, 1]^3`` sits at ``x * N_l`` in grid units. Coarse
levels whose ``(N_l + 1)^3`` vertices fit in ``T`` rows are indexed densely
(``i + j (N+1) + k (N+1)^2``); the others by the spatial hash
``(i * 1 xor j * 2654435761 xor k * 805459861) mod T`` (Mueller et al. 2022, eq. 4).

:func:`hash_encode` is a custom autograd function with two backends:

- ``numba`` (the CPU default, :mod:`neural3d.nerf._hashgrid_numba`): compiled kernels that run
  level by level so each level's table stays in cache, compute a block of points' corners and
  prefetch their rows before gathering or scattering, and read or update both features of a
  corner (``F = 2``) in one 8-byte access; backward gives each thread whole levels (no atomics)
  and writes into fresh huge-page memory that is zero already;
- ``torch`` (any device, the CUDA path): index math in int32 (wrap-around multiplication keeps
  the low bits the ``mod 2^k`` needs), done per axis on ``[N, L, 2]`` and combined by
  broadcasting to the 8 corners; one gather for all levels (``F = 2`` float32 rows read as one
  float64 word); backward scatters ``w_c * dL/dy`` with one ``index_add_`` -- no autograd graph
  through the gather.

Gradients flow to the table only (positions are data, not parameters, in NeRF). The slow
reference that tests compare with is :mod:`neural3d.nerf._reference`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from mpgym.optional import optional_module

PRIMES = (1, 2654435761, 805459861)
"""Instant-NGP's spatial-hash primes for x, y, z."""


def _i32(v: int) -> int:
    """The int32 with the same low 32 bits as ``v`` (for wrap-around multiplication)."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


@dataclass(frozen=True)
class LevelLayout:
    """Where each level lives in the stacked table, and how it is indexed."""

    num_levels: int
    """``L``."""
    log2_table_size: int
    """``log2 T``: the most rows a level may have."""
    resolutions: tuple[int, ...]
    """``N_l``: cells per axis of each level."""
    offsets: tuple[int, ...]
    """First row of each level in the stacked table (``L + 1`` values, last = total rows)."""
    num_dense: int
    """The first ``num_dense`` levels are indexed densely, the rest by hashing."""

    @property
    def total_rows(self) -> int:
        """Rows of the stacked table."""
        return self.offsets[-1]

    @property
    def growth_factor(self) -> float:
        """``b`` (1 for a single level)."""
        r = self.resolutions
        return (r[-1] / r[0]) ** (1 / (len(r) - 1)) if len(r) > 1 else 1.0


def level_layout(
    num_levels: int, log2_table_size: int, base_resolution: int, max_resolution: int
) -> LevelLayout:
    """Resolutions, row offsets and dense/hashed split of a hash grid.

    ``b = exp((ln N_max - ln N_min) / (L - 1))``, ``N_l = floor(N_min * b^l)``.

    Example:
        >>> lay = level_layout(2, 10, 4, 16)  # 5^3 = 125 <= 1024 dense, 17^3 > 1024 hashed
        >>> lay.resolutions, lay.offsets, lay.num_dense
        ((4, 16), (0, 125, 1149), 1)
    """
    if num_levels < 1 or base_resolution < 1 or max_resolution < base_resolution:
        raise ValueError(
            "need num_levels >= 1 and 1 <= base_resolution <= max_resolution "
            f"(got {num_levels}, {base_resolution}, {max_resolution})."
        )
    if not 4 <= log2_table_size <= 30:
        raise ValueError(f"log2_table_size must be in 4..30 (got {log2_table_size}).")
    b = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(num_levels - 1, 1))
    T = 1 << log2_table_size
    res, offsets, num_dense = [], [0], 0
    for level in range(num_levels):
        n = int(math.floor(base_resolution * b**level + 1e-6))
        dense_rows = (n + 1) ** 3
        rows = dense_rows if dense_rows <= T else T
        num_dense += dense_rows <= T
        res.append(n)
        offsets.append(offsets[-1] + rows)
    return LevelLayout(num_levels, log2_table_size, tuple(res), tuple(offsets), num_dense)


def _corner_indices_and_weights(x: Tensor, layout: LevelLayout) -> tuple[Tensor, Tensor]:
    """Rows ``[N, L, 8]`` (int32, offsets included) and trilinear weights ``[N, L, 8]``.

    Corner ``c = 4 dx + 2 dy + dz`` (``dx, dy, dz`` in {0, 1}).
    """
    dev = x.device
    res = torch.tensor(layout.resolutions, dtype=x.dtype, device=dev)  # [L]
    pos = x.clamp(0.0, 1.0)[:, None, :] * res[:, None]  # [N, L, 3]
    p0f = torch.minimum(pos.floor(), res[:, None] - 1)  # the top face belongs to the last cell
    frac = pos - p0f  # [N, L, 3]
    p0 = p0f.to(torch.int32)
    two = torch.arange(2, dtype=torch.int32, device=dev)
    v = p0[..., None] + two  # [N, L, 3, 2]: the two vertices along each axis

    nd = layout.num_dense
    parts = []
    if nd > 0:  # dense: i + j (N+1) + k (N+1)^2
        n1 = torch.tensor([r + 1 for r in layout.resolutions[:nd]], dtype=torch.int32, device=dev)
        vd = v[:, :nd]
        ax = vd[:, :, 0]
        ay = vd[:, :, 1] * n1[:, None]
        az = vd[:, :, 2] * (n1 * n1)[:, None]
        parts.append(ax[..., :, None, None] + ay[..., None, :, None] + az[..., None, None, :])
    if nd < layout.num_levels:  # hashed: (i * p1 ^ j * p2 ^ k * p3) mod T
        vh = v[:, nd:]
        ax = vh[:, :, 0]
        ay = vh[:, :, 1] * _i32(PRIMES[1])
        az = vh[:, :, 2] * _i32(PRIMES[2])
        h = ax[..., :, None, None] ^ ay[..., None, :, None] ^ az[..., None, None, :]
        parts.append(h & ((1 << layout.log2_table_size) - 1))
    idx = torch.cat(parts, dim=1).reshape(x.shape[0], layout.num_levels, 8)
    offs = torch.tensor(layout.offsets[:-1], dtype=torch.int32, device=dev)
    idx = idx + offs[:, None]

    w1 = frac
    wv = torch.stack([1 - w1, w1], dim=-1)  # [N, L, 3, 2]
    w = wv[:, :, 0, :, None, None] * wv[:, :, 1, None, :, None] * wv[:, :, 2, None, None, :]
    return idx, w.reshape(x.shape[0], layout.num_levels, 8)


def _gather_rows(table: Tensor, idx: Tensor) -> Tensor:
    """``table[idx]`` for ``[R, F]`` and int32 ``idx [...]`` -> ``[..., F]``."""
    F = table.shape[1]
    flat = idx.reshape(-1)
    if F == 2 and table.dtype == torch.float32 and table.is_contiguous():
        rows = table.view(torch.float64).reshape(-1)  # one 8-byte word per row
        return rows.index_select(0, flat).view(torch.float32).reshape(*idx.shape, 2)
    return table.index_select(0, flat).reshape(*idx.shape, F)


def _numba_kernels():
    """The numba kernel module (compiled once, cached on disk); None without numba."""
    return optional_module("neural3d.nerf._hashgrid_numba")


def _flat(t):
    """A contiguous ``[R, F]`` array as 1-D: ``R`` complex numbers when ``F = 2``, else floats."""
    import numpy as np

    if t.shape[1] == 2:
        return t.view(np.complex64 if t.dtype == np.float32 else np.complex128).reshape(-1)
    return t.reshape(-1)


_BLOCK = 16
"""Points whose corners the numba kernel computes and prefetches before gathering them."""


def _layout_arrays(layout: LevelLayout, dtype) -> tuple:
    """``res`` (uint64), ``resf`` (dtype), ``offsets`` (uint64), ``num_dense``, ``mask``."""
    import numpy as np

    res = np.asarray(layout.resolutions, dtype=np.uint64)
    return (
        res,
        res.astype(dtype),
        np.asarray(layout.offsets, dtype=np.uint64),
        layout.num_dense,
        np.uint64((1 << layout.log2_table_size) - 1),
    )


def _level_order(layout: LevelLayout):
    """Levels for the backward's round-robin deal: hashed (full-size tables) first, then dense."""
    import numpy as np

    L, nd = layout.num_levels, layout.num_dense
    return np.asarray(list(range(nd, L)) + list(range(nd)), dtype=np.int64)


def _zeros_hugepages(shape: tuple[int, int], dtype: torch.dtype) -> tuple[Tensor, bool]:
    """A zero CPU tensor in fresh anonymous memory backed by transparent huge pages.

    The stacked table's gradient (49 MB for the paper's grid) is allocated anew every backward;
    from ``malloc`` that is a fresh mapping whose 12,000 page faults cost more CPU time than the
    kernel itself (~15 ms against ~2 ms with 2 MB pages here). Anonymous memory is zero already,
    so the kernel need not clear it. Returns ``(tensor, True)``, or ``(torch.empty, False)`` where
    ``mmap`` cannot ask for huge pages (the kernel then zeroes it).
    """
    import mmap

    import numpy as np

    itemsize = torch.empty((), dtype=dtype).element_size()
    nbytes = shape[0] * shape[1] * itemsize
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    usable = advice is not None and hasattr(mmap, "MAP_ANONYMOUS")
    if not usable or nbytes < 1 << 22 or dtype not in (torch.float32, torch.float64):
        return torch.empty(shape, dtype=dtype), False
    mm = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        mm.madvise(advice)
    except OSError:  # huge pages disabled: still zero memory, still one mapping
        pass
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    return torch.from_numpy(np.frombuffer(mm, dtype=np_dtype).reshape(shape)), True


_WORK_PER_THREAD = 1 << 15
"""Point-levels (about a millisecond of kernel time) below which a call runs on one thread."""


@contextmanager
def _kernel_threads(point_levels: int) -> Iterator[int]:
    """Numba threads for a call of ``point_levels`` work: all of them, or fewer for small calls.

    Waking an idle worker costs tens of microseconds on a quiet machine and up to a scheduler
    time slice (~20 ms measured here) on a busy one, more than a small call's whole work; so a
    call gets one thread per ``_WORK_PER_THREAD`` point-levels, restored afterwards.
    """
    import numba

    have = numba.get_num_threads()
    use = max(1, min(have, point_levels // _WORK_PER_THREAD))
    if use != have:
        numba.set_num_threads(use)
    try:
        yield use
    finally:
        if use != have:
            numba.set_num_threads(have)


class _HashEncodeNumba(torch.autograd.Function):
    """CPU kernel: rows and weights of a block of points at a time, never an ``[N, L, 8]`` array.

    Backward recomputes them, which is cheaper than saving ``[N, L, 8]`` indices.
    """

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, layout: LevelLayout) -> Tensor:  # type: ignore[override]
        k = _numba_kernels()
        x = x.detach().to(table.dtype).contiguous()
        t = table.detach().contiguous()
        F = t.shape[1]
        out = torch.empty(x.shape[0], layout.num_levels * F, dtype=t.dtype)
        xn, lay, tflat = x.numpy(), _layout_arrays(layout, x.numpy().dtype), _flat(t.numpy())
        with _kernel_threads(x.shape[0] * layout.num_levels) as threads:
            if F == 2:
                k.forward_pairs(xn, tflat, *lay, out.numpy(), threads, _BLOCK)
            else:
                k.forward(xn, tflat, F, *lay, out.numpy(), threads, _BLOCK)
        ctx.save_for_backward(x)
        ctx.layout, ctx.table_shape = layout, t.shape
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        k = _numba_kernels()
        (x,) = ctx.saved_tensors
        g = grad_out.to(x.dtype).contiguous()
        grad_table, zeroed = _zeros_hugepages(tuple(ctx.table_shape), x.dtype)
        xn, lay, gflat = (
            x.numpy(),
            _layout_arrays(ctx.layout, x.numpy().dtype),
            _flat(grad_table.numpy()),
        )
        order, F = _level_order(ctx.layout), ctx.table_shape[1]
        with _kernel_threads(x.shape[0] * ctx.layout.num_levels) as threads:
            if F == 2:
                gc = _flat(g.numpy().reshape(-1, 2)).reshape(g.shape[0], g.shape[1] // 2)  # [N, L]
                k.backward_pairs(xn, gc, *lay, order, gflat, zeroed, threads, _BLOCK)
            else:
                k.backward(xn, g.numpy(), F, *lay, order, gflat, zeroed, threads, _BLOCK)
        return None, grad_table, None


class _HashEncodeTorch(torch.autograd.Function):
    """Device-agnostic kernel in batched PyTorch ops (the CUDA path)."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, layout: LevelLayout) -> Tensor:  # type: ignore[override]
        with torch.no_grad():
            idx, w = _corner_indices_and_weights(x.to(table.dtype), layout)
            vals = _gather_rows(table, idx)  # [N, L, 8, F]
            out = (vals * w.to(table.dtype)[..., None]).sum(dim=2)  # [N, L, F]
        ctx.save_for_backward(idx, w)
        ctx.rows = table.shape[0]
        return out.reshape(x.shape[0], out.shape[1] * out.shape[2])  # [N, L * F], N may be 0

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        idx, w = ctx.saved_tensors
        N, L, _ = idx.shape
        F = grad_out.shape[1] // L
        g = grad_out.reshape(N, L, 1, F)
        contrib = (w.to(g.dtype)[..., None] * g).reshape(-1, F)  # [N * L * 8, F]
        grad_table = torch.zeros(ctx.rows, F, dtype=grad_out.dtype, device=grad_out.device)
        grad_table.index_add_(0, idx.reshape(-1), contrib)
        return None, grad_table, None


def hash_encode(
    x: Tensor,
    table: Tensor,
    layout: LevelLayout,
    *,
    backend: Literal["auto", "numba", "torch"] = "auto",
) -> Tensor:
    """Encode points with a multiresolution hash grid (fast path).

    Args:
        x: ``[N, 3]`` points in ``[0, 1]^3`` (clamped to it).
        table: ``[layout.total_rows, F]`` stacked level tables (gradients flow here).
        layout: from :func:`level_layout`.
        backend: ``"numba"`` (compiled CPU kernel, the default on CPU when numba is installed)
            or ``"torch"`` (batched PyTorch ops: any device, the CUDA path).

    Returns:
        ``[N, L * F]`` features, level-major (level 0's ``F`` values first).
    """
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"x must be [N, 3], got {tuple(x.shape)}.")
    if table.shape[0] != layout.total_rows:
        raise ValueError(f"table has {table.shape[0]} rows; the layout needs {layout.total_rows}.")
    if backend == "auto":
        backend = "numba" if x.device.type == "cpu" and _numba_kernels() is not None else "torch"
    if backend == "numba":
        if _numba_kernels() is None:
            raise ValueError("backend 'numba' needs the numba package; accepted: 'auto', 'torch'.")
        return _HashEncodeNumba.apply(x, table, layout)
    if backend != "torch":
        raise ValueError(f"unknown backend {backend!r}; accepted: 'auto', 'numba', 'torch'.")
    return _HashEncodeTorch.apply(x, table, layout)
