"""Ground-truth signed distance and occupancy at query points, for meshes and analytic shapes.

Backends:

- ``"open3d"`` (default): Open3D's ``RaycastingScene`` (Embree BVH, multi-threaded). Signed
  distance is negative inside; the sign comes from ray parity, so the mesh must be watertight
  for it to mean anything.
- ``"trimesh"``: ``trimesh.proximity.signed_distance`` and ``Trimesh.contains`` (rtree +
  ray tests in Python). Documented as **slow** -- roughly two orders of magnitude slower than
  Open3D -- and kept as a fallback when Open3D cannot import. trimesh's sign is positive
  inside; it is negated here so both backends agree.

Analytic shapes (:mod:`neural3d.shapes`) are their own ground truth: call them.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from mpgym.errors import MpgymError

log = logging.getLogger(__name__)

Backend = Literal["open3d", "trimesh"]


class MeshGroundTruth:
    """Signed distance, unsigned distance and occupancy queries against one mesh.

    Args:
        mesh: ``trimesh.Trimesh``.
        backend: ``"open3d"`` (fast) or ``"trimesh"`` (slow fallback).
        require_watertight: raise at construction if the mesh is not watertight (sign and
            occupancy are undefined otherwise); if False, only :meth:`unsigned_distance` is
            trustworthy.
    """

    def __init__(self, mesh, *, backend: Backend = "open3d", require_watertight: bool = True):
        from neural3d.data.meshes import check_watertight

        if require_watertight:
            check_watertight(mesh)
        if backend not in ("open3d", "trimesh"):
            raise MpgymError(f"unknown ground-truth backend {backend!r}; accepted: open3d, "
                             "trimesh.")
        self.mesh = mesh
        self.backend = backend
        self._scene = None
        if backend == "open3d":
            import open3d as o3d

            scene = o3d.t.geometry.RaycastingScene()
            scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                                o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
            self._scene = scene

    def _q(self, points: np.ndarray):
        import open3d as o3d

        return o3d.core.Tensor(np.ascontiguousarray(points, dtype=np.float32))

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """``(N, 3) -> (N,)`` float32, negative inside."""
        points = np.asarray(points, np.float32)
        if self._scene is not None:
            return self._scene.compute_signed_distance(self._q(points)).numpy()
        import trimesh

        return -trimesh.proximity.signed_distance(self.mesh, points).astype(np.float32)

    def unsigned_distance(self, points: np.ndarray) -> np.ndarray:
        """``(N, 3) -> (N,)`` float32 distance to the surface."""
        points = np.asarray(points, np.float32)
        if self._scene is not None:
            return self._scene.compute_distance(self._q(points)).numpy()
        import trimesh

        return trimesh.proximity.closest_point(self.mesh, points)[1].astype(np.float32)

    def occupancy(self, points: np.ndarray) -> np.ndarray:
        """``(N, 3) -> (N,)`` bool, True inside."""
        points = np.asarray(points, np.float32)
        if self._scene is not None:
            return self._scene.compute_occupancy(self._q(points)).numpy() > 0.5
        return np.asarray(self.mesh.contains(points), bool)


def shape_occupancy(shape, points: np.ndarray) -> np.ndarray:
    """Occupancy of an analytic shape (or any SDF callable): ``f(x) < 0`` -> ``(N,)`` bool."""
    return np.asarray(shape(np.asarray(points, np.float32))) < 0
