"""Depth fusion into a coarse voxel grid of free / occupied / unknown space, and point visibility.

Conventions:

- A grid of ``G^3`` voxels covers the cube ``[lo, hi]^3``; voxel ``(i, j, k)`` (along x, y, z)
  is ``[lo + i h, lo + (i + 1) h) x ...`` with ``h = (hi - lo) / G``, and its flat index is
  ``(i * G + j) * G + k`` (C order, so ``flat.reshape(G, G, G)[i, j, k]``).
- A ray is an origin ``o``, a direction ``d`` (any non-zero length; ``t`` is measured in units
  of ``|d|``) and a hit distance ``t_hit`` (``inf`` where the ray hits nothing).
- Labels: :data:`UNKNOWN` 0, :data:`FREE` 1, :data:`OCCUPIED` 2.

Fusion rule (a ray carves the space in front of its hit, the usual occupancy-mapping model,
without probabilities): a ray marks *free* every voxel whose interior the segment
``o + s d, 0 <= s <= min(t_hit, t_exit)`` crosses along a piece of positive length (``t_exit``:
where it leaves the grid), and *occupied* the voxel that holds its hit point. Over many rays and
images a voxel is occupied if any ray hit inside it, else free if any ray crossed it, else
unknown. The fast path (:func:`traverse_rays`) finds the crossed voxels exactly, by sorting the
distances at which each ray crosses the grid planes (the crossings Amanatides & Woo's 3D-DDA
steps through, "A Fast Voxel Traversal Algorithm for Ray Tracing", Eurographics 1987), vectorised
over rays; ``neural3d/_fusion_reference.py`` is the brute-force slab test it is checked against.

Point visibility (:func:`point_visibility`): a surface point is seen from a camera when it lies
inside the image and the first hit of the ray from the camera centre towards it is no nearer
than the point itself, minus a tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

UNKNOWN, FREE, OCCUPIED = 0, 1, 2
"""Voxel labels of :func:`grid_labels`."""

Caster = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(origins (N, 3), directions (N, 3)) -> t_hit (N,)``, ``inf`` on a miss."""


class MeshRayCaster:
    """First hits of rays on a triangle mesh (Open3D's ``RaycastingScene``, Embree, threaded).

    Args:
        vertices: ``(V, 3)`` float.
        faces: ``(F, 3)`` int.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        import open3d as o3d  # seconds to import: only when a caster is built

        self._o3d = o3d
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, np.float32)),
                                 o3d.core.Tensor(np.asarray(faces, np.uint32)))

    def __call__(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """``(N, 3), (N, 3) -> (N,)`` float32 distance to the first hit in units of ``|d|``."""
        rays = np.concatenate([np.asarray(origins, np.float32).reshape(-1, 3),
                               np.asarray(directions, np.float32).reshape(-1, 3)], axis=1)
        return self.scene.cast_rays(self._o3d.core.Tensor(rays))["t_hit"].numpy()


def fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` nearly evenly spread unit vectors ``(n, 3)`` (golden-angle spiral, z from +1 to -1).

    ``z_i = 1 - (2 i + 1) / n`` and azimuth ``i * pi (3 - sqrt 5)``; no point sits on a pole.

    Example:
        >>> fibonacci_sphere(2).round(3)
        array([[ 0.866,  0.   ,  0.5  ],
               [-0.639,  0.585, -0.5  ]])
    """
    i = np.arange(n, dtype=np.float64)
    z = 1.0 - (2.0 * i + 1.0) / n
    r = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


def _slabs(o: np.ndarray, d: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit distances ``(R,), (R,)`` of rays through the cube (entry > exit: a miss)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (lo - o) / d, (hi - o) / d
    inside = (o >= lo) & (o <= hi)  # a ray parallel to a slab is in it everywhere or nowhere
    near = np.where(d == 0, np.where(inside, -np.inf, np.inf), np.minimum(t0, t1))
    far = np.where(d == 0, np.where(inside, np.inf, -np.inf), np.maximum(t0, t1))
    return near.max(axis=1), far.min(axis=1)


def traverse_rays(origins: np.ndarray, directions: np.ndarray, t_end: np.ndarray, lo: float,
                  hi: float, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """The voxels each segment ``o + s d, 0 <= s <= t_end`` crosses, exactly.

    Each ray's piece inside the cube, ``[t_in, t_out]``, is cut at every grid plane it crosses
    (``t = (lo + m h - o_a) / d_a`` for each axis ``a`` and ``m = 0..G``); the cuts, sorted,
    bound the pieces that lie in one voxel each, and a piece's midpoint names its voxel. Pieces
    shorter than ``1e-9 h`` (a ray through an edge or a corner) are dropped.

    Args:
        origins: ``(R, 3)`` ray origins.
        directions: ``(R, 3)`` ray directions, non-zero.
        t_end: ``(R,)`` segment ends (``inf``: to where the ray leaves the grid).
        lo: lower corner of the cube (every axis).
        hi: upper corner.
        resolution: voxels per axis ``G``.

    Returns:
        ``(ray_ids, voxels)``, each ``(M,)`` int64: ray ``ray_ids[m]`` crosses the voxel of flat
        index ``voxels[m]``; every crossed pair appears once.

    Example:
        >>> traverse_rays(np.array([[-1.0, 0.1, 0.1]]), np.array([[1.0, 0.0, 0.0]]),
        ...               np.array([np.inf]), 0.0, 1.0, 2)[1]  # along x through j = k = 0
        array([0, 4])
    """
    o = np.asarray(origins, np.float64).reshape(-1, 3)
    d = np.asarray(directions, np.float64).reshape(-1, 3)
    h = (hi - lo) / resolution
    t_in, t_out = _slabs(o, d, lo, hi)
    t_in = np.maximum(t_in, 0.0)
    t_out = np.minimum(t_out, np.asarray(t_end, np.float64).reshape(-1))
    keep = np.flatnonzero(t_out > t_in)  # rays with a piece inside the cube
    o, d, t_in, t_out = o[keep], d[keep], t_in[keep], t_out[keep]
    planes = lo + h * np.arange(resolution + 1)  # (G + 1,)
    with np.errstate(divide="ignore", invalid="ignore"):
        cuts = (planes[None, None, :] - o[:, :, None]) / d[:, :, None]  # (R', 3, G + 1)
    cuts = cuts.reshape(len(o), 3 * (resolution + 1))
    cuts = np.where(np.isfinite(cuts), cuts, t_out[:, None])
    cuts = np.clip(cuts, t_in[:, None], t_out[:, None])  # cuts outside the segment: empty pieces
    bounds = np.sort(np.concatenate([t_in[:, None], cuts, t_out[:, None]], axis=1), axis=1)
    length = np.diff(bounds, axis=1)  # (R', 3G + 4)
    ray_ids, piece = np.nonzero(length > 1e-9 * h)
    mid = 0.5 * (bounds[ray_ids, piece] + bounds[ray_ids, piece + 1])
    cell = np.floor((o[ray_ids] + mid[:, None] * d[ray_ids] - lo) / h).astype(np.int64)
    cell = np.clip(cell, 0, resolution - 1)
    return keep[ray_ids], (cell[:, 0] * resolution + cell[:, 1]) * resolution + cell[:, 2]


def hit_voxels(origins: np.ndarray, directions: np.ndarray, t_hit: np.ndarray, lo: float,
               hi: float, resolution: int) -> np.ndarray:
    """Flat indices ``(M,)`` of the voxels holding the hits ``o + t_hit d`` inside the cube.

    Misses (``t_hit = inf``) and hits outside ``[lo, hi]^3`` give nothing; a hit on the upper
    face counts in the last voxel.
    """
    t = np.asarray(t_hit, np.float64).reshape(-1)
    ok = np.isfinite(t)
    p = (np.asarray(origins, np.float64).reshape(-1, 3)[ok]
         + t[ok, None] * np.asarray(directions, np.float64).reshape(-1, 3)[ok])
    p = p[((p >= lo) & (p <= hi)).all(axis=1)]
    h = (hi - lo) / resolution
    cell = np.clip(np.floor((p - lo) / h).astype(np.int64), 0, resolution - 1)
    return (cell[:, 0] * resolution + cell[:, 1]) * resolution + cell[:, 2]


def fuse_rays(origins: np.ndarray, directions: np.ndarray, t_hit: np.ndarray, lo: float,
              hi: float, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """What one depth image (or any set of rays) says about the grid.

    Args:
        origins: ``(R, 3)``.
        directions: ``(R, 3)``.
        t_hit: ``(R,)`` first-hit distances, ``inf`` for a miss (free to the grid's edge).
        lo: lower corner of the cube.
        hi: upper corner.
        resolution: voxels per axis ``G``.

    Returns:
        ``(free, occupied)``, bool ``(G, G, G)`` each: crossed by a ray, holding a hit. A voxel
        may be both; :func:`grid_labels` merges them (occupied wins).
    """
    free = np.zeros(resolution ** 3, bool)
    occupied = np.zeros(resolution ** 3, bool)
    free[traverse_rays(origins, directions, t_hit, lo, hi, resolution)[1]] = True
    occupied[hit_voxels(origins, directions, t_hit, lo, hi, resolution)] = True
    return free.reshape((resolution,) * 3), occupied.reshape((resolution,) * 3)


def grid_labels(free: np.ndarray, occupied: np.ndarray) -> np.ndarray:
    """Labels from boolean masks of any shape: OCCUPIED where hit, else FREE where crossed.

    Example:
        >>> grid_labels(np.array([True, True, False]), np.array([True, False, False]))
        array([2, 1, 0], dtype=uint8)
    """
    out = np.where(free, FREE, UNKNOWN).astype(np.uint8)
    out[np.asarray(occupied, bool)] = OCCUPIED
    return out


def point_visibility(cast: Caster, points: np.ndarray, c2w: np.ndarray, *, fx: float, fy: float,
                     width: int, height: int, tol: float) -> np.ndarray:
    """Which points each camera sees: ``(V, P)`` bool.

    A point ``p`` is seen from a camera at ``c`` when it projects inside the image (pinhole with
    the principal point at the centre, in front of the camera) and the first hit of the ray from
    ``c`` towards ``p`` is at least ``|p - c| - tol`` away (nothing in between).

    Args:
        cast: the ray caster of the scene (e.g. a :class:`MeshRayCaster`).
        points: ``(P, 3)`` points on the surface.
        c2w: ``(V, 4, 4)`` camera-to-world, OpenGL axes (looking down ``-z``).
        fx: focal length in pixels along x.
        fy: focal length in pixels along y.
        width: image width in pixels.
        height: image height in pixels.
        tol: occlusion tolerance in world units.
    """
    pts = np.asarray(points, np.float64)
    c2w = np.asarray(c2w, np.float64)
    centres = c2w[:, :3, 3]  # (V, 3)
    vec = pts[None] - centres[:, None]  # (V, P, 3)
    dist = np.linalg.norm(vec, axis=-1)  # (V, P)
    cam = np.einsum("vpa,vab->vpb", vec, c2w[:, :3, :3])  # (V, P, 3) in camera axes
    depth = -cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = fx * cam[..., 0] / depth
        v = fy * cam[..., 1] / depth
    inside = (depth > 0) & (np.abs(u) < width / 2) & (np.abs(v) < height / 2)
    dirs = vec / np.maximum(dist, 1e-12)[..., None]
    origins = np.broadcast_to(centres[:, None], vec.shape)
    t = cast(origins.reshape(-1, 3), dirs.reshape(-1, 3)).reshape(dist.shape)
    return inside & (t >= dist - tol)
