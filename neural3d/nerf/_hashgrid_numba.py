"""Numba kernels of the hash encoding (CPU). Imported lazily by :mod:`neural3d.nerf.hashgrid`.

Both passes run **level by level**, so the level's table (``T x F`` floats: 4 MB for the paper's
``T = 2^19``, ``F = 2``) stays in the last-level cache while every point visits it; running
point by point instead would cycle through all ``L`` tables (49 MB) for each point and miss the
cache on nearly every corner. Within a level, points go in blocks of ``block``: the corners and
weights of the whole block are computed first and their table rows prefetched, then the block is
gathered (forward) or scattered (backward), so the cache misses of a block overlap instead of
queueing one after another.

- forward: each level's points are split across threads (``[N, L*F]`` output, one writer per
  element);
- backward: each thread owns whole levels (a disjoint slice of the stacked table), so threads
  never write the same row and no atomics are needed; levels are dealt out round-robin in the
  caller's ``order`` (hashed levels first: they cost the most) and each thread zeroes its own
  slice right before scattering into it.

Arithmetic is in the input dtype (float32 for training); rows are unsigned 64-bit, so the
``mod 2^k`` of the spatial hash is a mask on wrap-around products. Corner order and hashing match
:func:`neural3d.nerf.hashgrid._corner_indices_and_weights`.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types, uint64
from numba.core import cgutils
from numba.extending import intrinsic

_ONE = np.uint64(1)
_P1 = np.uint64(2654435761)
_P2 = np.uint64(805459861)


def _prefetch_intrinsic(for_write: int):
    """``prefetch(arr2d, row)``: ask the CPU for the cache line of ``arr2d[row, 0]`` early."""

    @intrinsic
    def prefetch(typingctx, arr, row):  # pragma: no cover - compiled
        if not (isinstance(arr, types.Array) and arr.ndim == 2 and isinstance(row, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            aryty, rowty = sig.args
            ary = context.make_array(aryty)(context, builder, args[0])
            r = context.cast(builder, args[1], rowty, types.intp)
            zero = context.get_constant(types.intp, 0)
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [r, zero])
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
def _block_corners(x, start, m, r, rf, base, dense, mask, zero, one, rows, ws):  # pragma: no cover
    """Rows (offsets included) and trilinear weights of the corners of a block of points.

    Points ``start .. start+m`` go to ``rows[j, c]``, ``ws[j, c]``; corner ``c = 4 dx + 2 dy + dz``.
    """
    for j in range(m):
        n = uint64(start + j)
        px = min(max(x[n, 0], zero), one) * rf
        py = min(max(x[n, 1], zero), one) * rf
        pz = min(max(x[n, 2], zero), one) * rf
        ix = min(uint64(px), r - _ONE)  # px >= 0, so truncation is floor; top face -> last cell
        iy = min(uint64(py), r - _ONE)
        iz = min(uint64(pz), r - _ONE)
        fx, fy, fz = px - ix, py - iy, pz - iz
        if dense:  # i + j (N+1) + k (N+1)^2
            s1 = r + _ONE
            s2 = s1 * s1
            x0, x1 = base + ix, base + ix + _ONE
            y0, y1 = iy * s1, iy * s1 + s1
            z0, z1 = iz * s2, iz * s2 + s2
            rows[j, 0], rows[j, 1] = x0 + y0 + z0, x0 + y0 + z1
            rows[j, 2], rows[j, 3] = x0 + y1 + z0, x0 + y1 + z1
            rows[j, 4], rows[j, 5] = x1 + y0 + z0, x1 + y0 + z1
            rows[j, 6], rows[j, 7] = x1 + y1 + z0, x1 + y1 + z1
        else:  # (i * 1 ^ j * 2654435761 ^ k * 805459861) mod T
            x0, x1 = ix, ix + _ONE
            y0, y1 = iy * _P1, (iy + _ONE) * _P1
            z0, z1 = iz * _P2, (iz + _ONE) * _P2
            rows[j, 0] = base + ((x0 ^ y0 ^ z0) & mask)
            rows[j, 1] = base + ((x0 ^ y0 ^ z1) & mask)
            rows[j, 2] = base + ((x0 ^ y1 ^ z0) & mask)
            rows[j, 3] = base + ((x0 ^ y1 ^ z1) & mask)
            rows[j, 4] = base + ((x1 ^ y0 ^ z0) & mask)
            rows[j, 5] = base + ((x1 ^ y0 ^ z1) & mask)
            rows[j, 6] = base + ((x1 ^ y1 ^ z0) & mask)
            rows[j, 7] = base + ((x1 ^ y1 ^ z1) & mask)
        gx, gy, gz = one - fx, one - fy, one - fz
        ws[j, 0], ws[j, 1] = gx * gy * gz, gx * gy * fz
        ws[j, 2], ws[j, 3] = gx * fy * gz, gx * fy * fz
        ws[j, 4], ws[j, 5] = fx * gy * gz, fx * gy * fz
        ws[j, 6], ws[j, 7] = fx * fy * gz, fx * fy * fz


@njit(parallel=True, cache=True)
def forward(x, table, res, resf, offs, num_dense, mask, out, nthreads, block):  # pragma: no cover
    """``out[n, l*F + f] = sum_c w_c table[row_c, f]`` for ``x [N, 3]``, ``table [R, F]``.

    ``res`` (uint64) / ``resf`` (x's dtype): cells per axis; ``offs`` (uint64): first row of each
    level; ``mask = T - 1``; ``nthreads``: how many parts to split each level's points into.
    """
    N, L, F = x.shape[0], res.shape[0], table.shape[1]
    T = max(1, min(nthreads, N))
    zero, one = resf[0] - resf[0], resf[0] / resf[0]  # 0 and 1 in x's dtype
    for level in range(L):
        r, rf, base, dense = res[level], resf[level], offs[level], level < num_dense
        for t in prange(T):
            lo, hi = N * t // T, N * (t + 1) // T
            rows = np.empty((block, 8), np.uint64)
            ws = np.empty((block, 8), x.dtype)
            for start in range(lo, hi, block):
                m = min(block, hi - start)
                _block_corners(x, start, m, r, rf, base, dense, mask, zero, one, rows, ws)
                for j in range(m):
                    for c in range(8):
                        _prefetch_read(table, rows[j, c])
                for j in range(m):
                    n = uint64(start + j)
                    if F == 2:  # the paper's F: both features of a row in one pass
                        a0 = ws[j, 0] * table[rows[j, 0], 0]
                        a1 = ws[j, 0] * table[rows[j, 0], 1]
                        for c in range(1, 8):
                            a0 += ws[j, c] * table[rows[j, c], 0]
                            a1 += ws[j, c] * table[rows[j, c], 1]
                        out[n, uint64(2 * level)] = a0
                        out[n, uint64(2 * level + 1)] = a1
                    else:
                        for f in range(F):
                            a = ws[j, 0] * table[rows[j, 0], f]
                            for c in range(1, 8):
                                a += ws[j, c] * table[rows[j, c], f]
                            out[n, uint64(level * F + f)] = a


@njit(parallel=True, cache=True)
def backward(
    x, grad_out, res, resf, offs, num_dense, mask, order, grad_table, nthreads, block
):  # pragma: no cover
    """``grad_table[row_c, f] = sum_n w_c grad_out[n, l*F + f]`` (overwrites ``grad_table``).

    Thread ``t`` handles levels ``order[t], order[t + nthreads], ...``.
    """
    N, L, F = x.shape[0], res.shape[0], grad_table.shape[1]
    T = max(1, min(nthreads, L))
    zero, one = resf[0] - resf[0], resf[0] / resf[0]
    for t in prange(T):
        rows = np.empty((block, 8), np.uint64)
        ws = np.empty((block, 8), x.dtype)
        for i in range(t, L, T):
            level = order[i]
            r, rf, base, dense = res[level], resf[level], offs[level], level < num_dense
            for row in range(offs[level], offs[level + 1]):
                for f in range(F):
                    grad_table[row, f] = 0
            for start in range(0, N, block):
                m = min(block, N - start)
                _block_corners(x, start, m, r, rf, base, dense, mask, zero, one, rows, ws)
                for j in range(m):
                    for c in range(8):
                        _prefetch_write(grad_table, rows[j, c])
                for j in range(m):
                    n = uint64(start + j)
                    if F == 2:
                        g0 = grad_out[n, uint64(2 * level)]
                        g1 = grad_out[n, uint64(2 * level + 1)]
                        for c in range(8):
                            rc = rows[j, c]
                            grad_table[rc, 0] += ws[j, c] * g0
                            grad_table[rc, 1] += ws[j, c] * g1
                    else:
                        for f in range(F):
                            g = grad_out[n, uint64(level * F + f)]
                            for c in range(8):
                                grad_table[rows[j, c], f] += ws[j, c] * g
