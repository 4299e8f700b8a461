"""Numba kernels of the hash encoding (CPU). Imported lazily by :mod:`neural3d.nerf.hashgrid`.

Both passes run **level by level**, so the level's table (``T x F`` floats: 4 MB for the paper's
``T = 2^19``, ``F = 2``) stays in the last-level cache while every point visits it; running
point by point instead would cycle through all ``L`` tables (49 MB) for each point and miss the
cache on nearly every corner. Within a level, points go in blocks of ``block``: the corners and
weights of the whole block are computed first, each table row prefetched as soon as it is known,
then the block is gathered (forward) or scattered (backward), so the cache misses of a block
overlap instead of queueing one after another.

- forward: the points are split across threads, each of which runs the levels one after the
  other over its share (``[N, L*F]`` output, one writer per element);
- backward: each thread owns whole levels (a disjoint slice of the stacked table), so threads
  never write the same row and no atomics are needed; levels are dealt out round-robin in the
  caller's ``order`` (hashed levels first: they cost the most) and each thread zeroes its own
  slice right before scattering into it (unless the caller passes memory that is zero already).
- ``F = 2`` (the paper's) has its own pair of kernels that view the table as complex numbers, so
  one 8-byte load or read-modify-write moves both features of a corner.

Arithmetic is in the input dtype (float32 for training); level-local rows are uint32, so the
``mod 2^k`` of the spatial hash is a mask on wrap-around products, and the level's row offset is
added in 64 bits. Corner order and hashing match
:func:`neural3d.nerf.hashgrid._corner_indices_and_weights`.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import int32, njit, prange, types, uint32, uint64
from numba.core import cgutils
from numba.extending import intrinsic

_ONE = np.uint32(1)
_P1 = np.uint32(2654435761)
_P2 = np.uint32(805459861)


def _prefetch_intrinsic(for_write: int):
    """``prefetch(arr1d, i)``: ask the CPU for the cache line of ``arr1d[i]`` early."""

    @intrinsic
    def prefetch(typingctx, arr, row):  # pragma: no cover - compiled
        if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(row, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            aryty, rowty = sig.args
            ary = context.make_array(aryty)(context, builder, args[0])
            r = context.cast(builder, args[1], rowty, types.intp)
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [r])
            i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            # (address, rw, locality 3 = keep in all cache levels, 1 = data cache)
            builder.call(fn, [builder.bitcast(ptr, i8p), i32(for_write), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.void(arr, row), codegen

    return prefetch


_prefetch_read = _prefetch_intrinsic(0)
_prefetch_write = _prefetch_intrinsic(1)


@njit(inline="always")
def _block_corners(x, start, m, lvl, zero, one, rows, ws, tab, scale, write):  # pragma: no cover
    """Level-local rows and trilinear weights of the corners of a block of points.

    Points ``start .. start+m`` go to ``rows[c, j]`` (uint32, without the level's offset) and
    ``ws[c, j]``; corner ``c = 4 dx + 2 dy + dz``. ``lvl = (r, rf, dense, mask, base)``: cells
    per axis (uint32 and float), dense or hashed, ``T - 1`` (uint32), first row. Each corner's
    element ``tab[(base + row) * scale]`` is prefetched as soon as its row is known.
    """
    r, rf, dense, mask, base = lvl
    last = rf - one  # the top face belongs to the last cell
    for j in range(m):
        n = uint64(start + j)
        px = min(max(x[n, 0], zero), one) * rf
        py = min(max(x[n, 1], zero), one) * rf
        pz = min(max(x[n, 2], zero), one) * rf
        cx, cy, cz = min(np.floor(px), last), min(np.floor(py), last), min(np.floor(pz), last)
        fx, fy, fz = px - cx, py - cy, pz - cz  # all in x's dtype (no float64 detour)
        ix, iy, iz = uint32(int32(cx)), uint32(int32(cy)), uint32(int32(cz))
        if dense:  # i + j (N+1) + k (N+1)^2
            s1 = r + _ONE
            s2 = s1 * s1
            x0, x1 = ix, ix + _ONE
            y0, y1 = iy * s1, iy * s1 + s1
            z0, z1 = iz * s2, iz * s2 + s2
            rows[0, j], rows[1, j] = x0 + y0 + z0, x0 + y0 + z1
            rows[2, j], rows[3, j] = x0 + y1 + z0, x0 + y1 + z1
            rows[4, j], rows[5, j] = x1 + y0 + z0, x1 + y0 + z1
            rows[6, j], rows[7, j] = x1 + y1 + z0, x1 + y1 + z1
        else:  # (i * 1 ^ j * 2654435761 ^ k * 805459861) mod T, wrap-around uint32 products
            x0, x1 = ix, ix + _ONE
            y0, y1 = iy * _P1, (iy + _ONE) * _P1
            z0, z1 = iz * _P2, (iz + _ONE) * _P2
            rows[0, j] = (x0 ^ y0 ^ z0) & mask
            rows[1, j] = (x0 ^ y0 ^ z1) & mask
            rows[2, j] = (x0 ^ y1 ^ z0) & mask
            rows[3, j] = (x0 ^ y1 ^ z1) & mask
            rows[4, j] = (x1 ^ y0 ^ z0) & mask
            rows[5, j] = (x1 ^ y0 ^ z1) & mask
            rows[6, j] = (x1 ^ y1 ^ z0) & mask
            rows[7, j] = (x1 ^ y1 ^ z1) & mask
        for c in range(8):
            if write:
                _prefetch_write(tab, (base + rows[c, j]) * scale)
            else:
                _prefetch_read(tab, (base + rows[c, j]) * scale)
        gx, gy, gz = one - fx, one - fy, one - fz
        ws[0, j], ws[1, j] = gx * gy * gz, gx * gy * fz
        ws[2, j], ws[3, j] = gx * fy * gz, gx * fy * fz
        ws[4, j], ws[5, j] = fx * gy * gz, fx * gy * fz
        ws[6, j], ws[7, j] = fx * fy * gz, fx * fy * fz


@njit(parallel=True, cache=True)
def forward(
    x, table, F, res, resf, offs, num_dense, mask, out, nthreads, block
):  # pragma: no cover
    """``out[n, l*F + f] = sum_c w_c table[row_c * F + f]`` for ``x [N, 3]``.

    ``table``: the ``[R, F]`` table flattened to 1-D. ``res`` (uint64) / ``resf`` (x's dtype):
    cells per axis; ``offs`` (uint64): first row of each level; ``mask = T - 1``; ``nthreads``:
    how many parts to split the points into.
    """
    N, L = x.shape[0], res.shape[0]
    T = max(1, min(nthreads, N))
    zero, one = resf[0] - resf[0], resf[0] / resf[0]  # 0 and 1 in x's dtype
    for t in prange(T):  # one parallel region; each thread walks the levels over its points
        lo, hi = N * t // T, N * (t + 1) // T
        rows = np.empty((8, block), np.uint32)
        ws = np.empty((8, block), x.dtype)
        for level in range(L):
            base = offs[level]
            lvl = (uint32(res[level]), resf[level], level < num_dense, uint32(mask), base)
            for start in range(lo, hi, block):
                m = min(block, hi - start)
                _block_corners(x, start, m, lvl, zero, one, rows, ws, table, F, False)
                for j in range(m):
                    n = uint64(start + j)
                    for f in range(F):
                        a = ws[0, j] * table[(base + rows[0, j]) * F + f]
                        for c in range(1, 8):
                            a += ws[c, j] * table[(base + rows[c, j]) * F + f]
                        out[n, uint64(level * F + f)] = a


@njit(parallel=True, cache=True)
def forward_pairs(
    x, table, res, resf, offs, num_dense, mask, out, nthreads, block
):  # pragma: no cover
    """:func:`forward` for ``F = 2`` with the table viewed as ``R`` complex numbers.

    One 8-byte load brings both features of a corner.
    """
    N, L = x.shape[0], res.shape[0]
    T = max(1, min(nthreads, N))
    zero, one = resf[0] - resf[0], resf[0] / resf[0]
    for t in prange(T):  # one parallel region; each thread walks the levels over its points
        lo, hi = N * t // T, N * (t + 1) // T
        rows = np.empty((8, block), np.uint32)
        ws = np.empty((8, block), x.dtype)
        for level in range(L):
            base = offs[level]
            lvl = (uint32(res[level]), resf[level], level < num_dense, uint32(mask), base)
            for start in range(lo, hi, block):
                m = min(block, hi - start)
                _block_corners(x, start, m, lvl, zero, one, rows, ws, table, 1, False)
                for j in range(m):
                    n = uint64(start + j)
                    v = table[base + rows[0, j]]
                    a0, a1 = ws[0, j] * v.real, ws[0, j] * v.imag
                    for c in range(1, 8):
                        v = table[base + rows[c, j]]
                        a0 += ws[c, j] * v.real
                        a1 += ws[c, j] * v.imag
                    out[n, uint64(2 * level)] = a0
                    out[n, uint64(2 * level + 1)] = a1


@njit(parallel=True, cache=True)
def backward(
    x, grad_out, F, res, resf, offs, num_dense, mask, order, grad_table, zeroed, nthreads, block
):  # pragma: no cover
    """``grad_table[row_c * F + f] = sum_n w_c grad_out[n, l*F + f]``.

    Overwrites ``grad_table`` (each thread zeroes its levels' slice first) unless ``zeroed`` says
    it already holds zeros.

    ``grad_table`` is 1-D like ``table`` in :func:`forward`. Thread ``t`` handles levels
    ``order[t], order[t + nthreads], ...``.
    """
    N, L = x.shape[0], res.shape[0]
    T = max(1, min(nthreads, L))
    zero, one = resf[0] - resf[0], resf[0] / resf[0]
    for t in prange(T):
        rows = np.empty((8, block), np.uint32)
        ws = np.empty((8, block), x.dtype)
        for i in range(t, L, T):
            level = order[i]
            base = offs[level]
            lvl = (uint32(res[level]), resf[level], level < num_dense, uint32(mask), base)
            if not zeroed:
                for k in range(offs[level] * F, offs[level + 1] * F):
                    grad_table[k] = 0
            for start in range(0, N, block):
                m = min(block, N - start)
                _block_corners(x, start, m, lvl, zero, one, rows, ws, grad_table, F, True)
                for j in range(m):
                    n = uint64(start + j)
                    for f in range(F):
                        g = grad_out[n, uint64(level * F + f)]
                        for c in range(8):
                            grad_table[(base + rows[c, j]) * F + f] += ws[c, j] * g


@njit(parallel=True, cache=True)
def backward_pairs(
    x, grad_out, res, resf, offs, num_dense, mask, order, grad_table, zeroed, nthreads, block
):  # pragma: no cover
    """:func:`backward` for ``F = 2`` with the gradient viewed as ``R`` complex numbers.

    ``grad_out`` is the ``[N, L * 2]`` output gradient viewed as ``[N, L]`` complex numbers. One
    8-byte read-modify-write moves both features of a corner.
    """
    N, L = x.shape[0], res.shape[0]
    T = max(1, min(nthreads, L))
    zero, one = resf[0] - resf[0], resf[0] / resf[0]
    for t in prange(T):
        rows = np.empty((8, block), np.uint32)
        ws = np.empty((8, block), x.dtype)
        for i in range(t, L, T):
            level = order[i]
            base = offs[level]
            lvl = (uint32(res[level]), resf[level], level < num_dense, uint32(mask), base)
            if not zeroed:
                for k in range(offs[level], offs[level + 1]):
                    grad_table[k] = 0
            for start in range(0, N, block):
                m = min(block, N - start)
                _block_corners(x, start, m, lvl, zero, one, rows, ws, grad_table, 1, True)
                for j in range(m):
                    n = uint64(start + j)
                    g = grad_out[n, uint64(level)]  # both features' gradients, one load
                    for c in range(8):
                        grad_table[base + rows[c, j]] += ws[c, j] * g
