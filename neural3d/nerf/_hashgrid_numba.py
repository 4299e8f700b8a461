"""Numba kernels of the hash encoding (CPU). Imported lazily by :mod:`neural3d.nerf.hashgrid`.

Forward runs points in parallel; backward runs levels in parallel -- each level owns a disjoint
slice of the stacked table, so threads never write the same row and no atomics are needed.
Corner order and hashing match :func:`neural3d.nerf.hashgrid._corner_indices_and_weights`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(inline="always", cache=True)
def _cell(x, n, level, res, resf, offs, num_dense, mask, rows, ws):  # pragma: no cover - jitted
    """Rows (offsets included) and trilinear weights of the 8 corners around point ``n``."""
    r = res[level]
    rf = resf[level]
    px = min(max(x[n, 0], 0), 1) * rf
    py = min(max(x[n, 1], 0), 1) * rf
    pz = min(max(x[n, 2], 0), 1) * rf
    ix = min(int(np.floor(px)), r - 1)
    iy = min(int(np.floor(py)), r - 1)
    iz = min(int(np.floor(pz)), r - 1)
    fx, fy, fz = px - ix, py - iy, pz - iz
    base = offs[level]
    if level < num_dense:  # dense: i + j (N+1) + k (N+1)^2
        s1 = r + 1
        s2 = s1 * s1
        x0, x1 = ix, ix + 1
        y0, y1 = iy * s1, iy * s1 + s1
        z0, z1 = iz * s2, iz * s2 + s2
        rows[0], rows[1] = base + x0 + y0 + z0, base + x0 + y0 + z1
        rows[2], rows[3] = base + x0 + y1 + z0, base + x0 + y1 + z1
        rows[4], rows[5] = base + x1 + y0 + z0, base + x1 + y0 + z1
        rows[6], rows[7] = base + x1 + y1 + z0, base + x1 + y1 + z1
    else:  # hashed: (i * 1 ^ j * 2654435761 ^ k * 805459861) mod T
        x0, x1 = ix, ix + 1
        y0, y1 = iy * 2654435761, (iy + 1) * 2654435761
        z0, z1 = iz * 805459861, (iz + 1) * 805459861
        rows[0], rows[1] = base + ((x0 ^ y0 ^ z0) & mask), base + ((x0 ^ y0 ^ z1) & mask)
        rows[2], rows[3] = base + ((x0 ^ y1 ^ z0) & mask), base + ((x0 ^ y1 ^ z1) & mask)
        rows[4], rows[5] = base + ((x1 ^ y0 ^ z0) & mask), base + ((x1 ^ y0 ^ z1) & mask)
        rows[6], rows[7] = base + ((x1 ^ y1 ^ z0) & mask), base + ((x1 ^ y1 ^ z1) & mask)
    gx, gy, gz = 1 - fx, 1 - fy, 1 - fz
    ws[0], ws[1], ws[2], ws[3] = gx * gy * gz, gx * gy * fz, gx * fy * gz, gx * fy * fz
    ws[4], ws[5], ws[6], ws[7] = fx * gy * gz, fx * gy * fz, fx * fy * gz, fx * fy * fz


@njit(parallel=True, cache=True)
def forward(x, table, res, resf, offs, num_dense, mask, out):  # pragma: no cover - jitted
    """``out[n, l*F + f] = sum_c w_c table[row_c, f]`` for ``x [N, 3]``, ``table [R, F]``."""
    N, L, F = x.shape[0], res.shape[0], table.shape[1]
    for n in prange(N):
        rows = np.empty(8, np.int64)
        ws = np.empty(8, x.dtype)
        for level in range(L):
            _cell(x, n, level, res, resf, offs, num_dense, mask, rows, ws)
            for f in range(F):
                acc = ws[0] * table[rows[0], f]
                for c in range(1, 8):
                    acc += ws[c] * table[rows[c], f]
                out[n, level * F + f] = acc


@njit(parallel=True, cache=True)
def backward(x, grad_out, res, resf, offs, num_dense, mask, grad_table):  # pragma: no cover
    """``grad_table[row_c, f] += w_c grad_out[n, l*F + f]`` (zeroed by the caller)."""
    N, L, F = x.shape[0], res.shape[0], grad_table.shape[1]
    for level in prange(L):
        rows = np.empty(8, np.int64)
        ws = np.empty(8, x.dtype)
        for n in range(N):
            _cell(x, n, level, res, resf, offs, num_dense, mask, rows, ws)
            for f in range(F):
                g = grad_out[n, level * F + f]
                for c in range(8):
                    grad_table[rows[c], f] += ws[c] * g
