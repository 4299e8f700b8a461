"""Numba kernel for linear blend skinning (CPU, no autograd). Imported lazily by :mod:`bodies.lbs`.

``v'_i = sum_k w_ik A_k [v_i; 1]`` is computed in the order the arithmetic wants rather than in
the order tensor operations allow: for a block of ``_BLOCK`` vertices of one body, the block's
rest positions are copied into three contiguous coordinate arrays, and every joint ``k`` adds
``w_ik (A_k [v_i; 1])`` to three accumulators (12 fused multiply-adds per vertex and joint, with
the joint's 12 transform entries held in registers across the block). Nothing of size
``[B, V, 12]`` or ``[B, V, 4, 4]`` is formed; the accumulators stay in L1, and the loop over
the block's vertices is the innermost one, so LLVM vectorises it. The kernel is serial and
releases the GIL: :func:`bodies.lbs.lbs` runs it on chunks of bodies from several threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_BLOCK = 256
"""Vertices per block: three float accumulators and three coordinate arrays (6 KB in float32)."""


@njit(fastmath=True, cache=True, nogil=True)
def skin(v, wt, A, out):  # pragma: no cover - compiled
    """``out[b, i] = sum_k wt[k, i] A[b, k] [v[b, i]; 1]``.

    Args:
        v: ``[B, V, 3]`` rest-pose vertices (contiguous).
        wt: ``[J, V]`` skinning weights, joint-major (contiguous).
        A: ``[B, J, 12]`` row-major ``3 x 4`` skinning transforms (contiguous).
        out: ``[B, V, 3]`` written in full.
    """
    B, V = v.shape[0], v.shape[1]
    J = wt.shape[0]
    nblk = (V + _BLOCK - 1) // _BLOCK
    for task in range(B * nblk):
        b = task // nblk
        s = (task - b * nblk) * _BLOCK
        n = min(_BLOCK, V - s)
        x = np.empty(_BLOCK, v.dtype)
        y = np.empty(_BLOCK, v.dtype)
        z = np.empty(_BLOCK, v.dtype)
        o0 = np.zeros(_BLOCK, v.dtype)
        o1 = np.zeros(_BLOCK, v.dtype)
        o2 = np.zeros(_BLOCK, v.dtype)
        for i in range(n):
            x[i] = v[b, s + i, 0]
            y[i] = v[b, s + i, 1]
            z[i] = v[b, s + i, 2]
        for k in range(J):
            a = A[b, k]
            a0, a1, a2, a3 = a[0], a[1], a[2], a[3]
            a4, a5, a6, a7 = a[4], a[5], a[6], a[7]
            a8, a9, a10, a11 = a[8], a[9], a[10], a[11]
            w = wt[k, s : s + n]
            for i in range(n):
                wi, xi, yi, zi = w[i], x[i], y[i], z[i]
                o0[i] += wi * (a0 * xi + a1 * yi + a2 * zi + a3)
                o1[i] += wi * (a4 * xi + a5 * yi + a6 * zi + a7)
                o2[i] += wi * (a8 * xi + a9 * yi + a10 * zi + a11)
        for i in range(n):
            out[b, s + i, 0] = o0[i]
            out[b, s + i, 1] = o1[i]
            out[b, s + i, 2] = o2[i]


@njit(fastmath=True, cache=True, nogil=True)
def chain(rot, joints, parents, posed, A):  # pragma: no cover - compiled
    """The kinematic chain of :func:`bodies.lbs.rigid_transforms`, body by body.

    Args:
        rot: ``[B, J, 3, 3]`` local rotations.
        joints: ``[B, J, 3]`` rest-pose joints.
        parents: ``[J]`` int64, each parent before its children (checked by the caller).
        posed: ``[B, J, 3]`` output, posed joints.
        A: ``[B, J, 12]`` output, row-major ``3 x 4`` skinning transforms.
    """
    B, J = rot.shape[0], rot.shape[1]
    Rg = np.empty((J, 3, 3), rot.dtype)
    for b in range(B):
        for k in range(J):
            p = parents[k]
            if p < 0:
                for r in range(3):
                    for c in range(3):
                        Rg[k, r, c] = rot[b, k, r, c]
                    posed[b, k, r] = joints[b, k, r]
            else:
                d0 = joints[b, k, 0] - joints[b, p, 0]
                d1 = joints[b, k, 1] - joints[b, p, 1]
                d2 = joints[b, k, 2] - joints[b, p, 2]
                for r in range(3):
                    g0, g1, g2 = Rg[p, r, 0], Rg[p, r, 1], Rg[p, r, 2]
                    for c in range(3):
                        Rg[k, r, c] = (
                            g0 * rot[b, k, 0, c] + g1 * rot[b, k, 1, c] + g2 * rot[b, k, 2, c]
                        )
                    posed[b, k, r] = posed[b, p, r] + g0 * d0 + g1 * d1 + g2 * d2
            for r in range(3):
                g0, g1, g2 = Rg[k, r, 0], Rg[k, r, 1], Rg[k, r, 2]
                A[b, k, 4 * r] = g0
                A[b, k, 4 * r + 1] = g1
                A[b, k, 4 * r + 2] = g2
                A[b, k, 4 * r + 3] = posed[b, k, r] - (
                    g0 * joints[b, k, 0] + g1 * joints[b, k, 1] + g2 * joints[b, k, 2]
                )
