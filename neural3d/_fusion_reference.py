"""Slow, obviously-correct reference of depth fusion (the fast path is tested against it).

Loops over the voxels and, for each, intersects every ray segment with the voxel's box by the
slab test; no plane crossings, no sorting, no midpoints.
"""

from __future__ import annotations

import itertools

import numpy as np

from neural3d.fusion import FREE, OCCUPIED, UNKNOWN


def fuse_rays_reference(origins: np.ndarray, directions: np.ndarray, t_hit: np.ndarray, lo: float,
                        hi: float, resolution: int) -> np.ndarray:
    """Labels ``(G, G, G)`` uint8 of one set of rays, by the rule of :mod:`neural3d.fusion`.

    A voxel is OCCUPIED when a finite hit point lies in it (half-open boxes, the last one
    closed), else FREE when some segment ``[0, min(t_hit, inf)]`` overlaps its box along a piece
    longer than ``1e-9 h``, else UNKNOWN.
    """
    o = np.asarray(origins, np.float64)
    d = np.asarray(directions, np.float64)
    t_end = np.asarray(t_hit, np.float64)
    h = (hi - lo) / resolution
    hits = o[np.isfinite(t_end)] + t_end[np.isfinite(t_end), None] * d[np.isfinite(t_end)]
    out = np.full((resolution,) * 3, UNKNOWN, np.uint8)
    for i, j, k in itertools.product(range(resolution), repeat=3):
        box_lo = lo + h * np.array([i, j, k], np.float64)
        box_hi = box_lo + h
        top = np.array([i, j, k]) == resolution - 1
        in_box = ((hits >= box_lo) & ((hits < box_hi) | (top & (hits <= box_hi)))).all(axis=1)
        if in_box.any():
            out[i, j, k] = OCCUPIED
            continue
        enter, leave = np.zeros(len(o)), t_end.copy()
        for a in range(3):
            with np.errstate(divide="ignore", invalid="ignore"):
                t0, t1 = (box_lo[a] - o[:, a]) / d[:, a], (box_hi[a] - o[:, a]) / d[:, a]
            parallel = d[:, a] == 0
            inside = (o[:, a] >= box_lo[a]) & (o[:, a] <= box_hi[a])
            near = np.where(parallel, np.where(inside, -np.inf, np.inf), np.minimum(t0, t1))
            far = np.where(parallel, np.where(inside, np.inf, -np.inf), np.maximum(t0, t1))
            enter, leave = np.maximum(enter, near), np.minimum(leave, far)
        if (leave - enter > 1e-9 * h).any():
            out[i, j, k] = FREE
    return out
