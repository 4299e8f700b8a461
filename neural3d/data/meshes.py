"""Load any mesh trimesh reads (OBJ, PLY, STL, OFF, GLB), normalise it, check or repair it.

Normalisation follows Occupancy Networks: centre the bounding box at the origin and scale its
longest side to ``size`` (1 by default), so the shape lies in ``[-0.5, 0.5]^3`` -- the
"unit-cube scale" at which the project quotes Chamfer distances and F-scores.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np

from mpgym.errors import MpgymError

log = logging.getLogger(__name__)

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")
Repair = Literal["none", "trimesh", "manifold"]


def load_mesh(path: str | Path, *, normalize: bool = True, size: float = 1.0,
              repair: Repair = "none", require_watertight: bool = False):
    """Read a mesh file as one ``trimesh.Trimesh`` (scenes are concatenated).

    Args:
        path: a file trimesh reads.
        normalize: centre and scale it (see :func:`normalize_mesh`).
        size: longest bounding-box side after normalisation.
        repair: ``"none"``, ``"trimesh"`` (merge vertices, drop degenerate faces, fill holes,
            fix winding) or ``"manifold"`` (rebuild through manifold3d).
        require_watertight: raise unless the (repaired) mesh is watertight.

    Raises:
        MpgymError: missing file, not a mesh, no faces, or not watertight when required.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise MpgymError(f"no mesh file at {path}.")
    try:
        loaded = trimesh.load(str(path), process=True)
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise MpgymError(f"{path} could not be read as a mesh ({exc}); accepted formats: "
                         f"{', '.join(MESH_SUFFIXES)}.") from None
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)]
        loaded = trimesh.util.concatenate(geoms) if geoms else None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise MpgymError(f"{path} holds no triangles (a point cloud or an empty file); a mesh "
                         f"with faces is needed ({', '.join(MESH_SUFFIXES)}).")
    mesh = loaded
    if repair != "none":
        mesh = repair_mesh(mesh, repair)
    if require_watertight:
        check_watertight(mesh, str(path))
    return normalize_mesh(mesh, size) if normalize else mesh


def normalize_mesh(mesh, size: float = 1.0):
    """Centre the bounding box at the origin and scale its longest side to ``size``.

    The applied ``center`` and ``scale`` (``x_new = (x - center) * scale``) are stored in
    ``mesh.metadata["normalization"]``.
    """
    lo, hi = mesh.bounds
    center = (lo + hi) / 2
    extent = float((hi - lo).max())
    if extent <= 0:
        raise MpgymError("the mesh has zero extent; nothing to normalise.")
    scale = size / extent
    out = mesh.copy()
    out.apply_translation(-center)
    out.apply_scale(scale)
    out.metadata["normalization"] = {"center": center.tolist(), "scale": scale}
    return out


def watertight_report(mesh) -> str:
    """A one-line description of why a mesh is not watertight (or that it is)."""
    import trimesh

    if mesh.is_watertight:
        return "watertight"
    edges = trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)
    return (f"{len(edges)} boundary edges, winding consistent: {mesh.is_winding_consistent}, "
            f"{len(mesh.split(only_watertight=False))} connected parts")


def check_watertight(mesh, what: str = "the mesh") -> None:
    """Raise :class:`MpgymError` unless ``mesh`` is watertight (inside/outside is defined)."""
    if not mesh.is_watertight:
        raise MpgymError(
            f"{what} is not watertight ({watertight_report(mesh)}), so occupancy and signed "
            "distance are undefined; repair it (--repair trimesh or --repair manifold) or use "
            "a method that needs only surface points (igr).")


def repair_mesh(mesh, method: Repair = "trimesh"):
    """Try to make ``mesh`` watertight; returns a new mesh (check ``is_watertight``).

    Args:
        mesh: ``trimesh.Trimesh``.
        method: ``"trimesh"`` (merge vertices, remove degenerate and duplicate faces, fill
            holes, fix winding and normals) or ``"manifold"`` (manifold3d: merges coincident
            edges into a 2-manifold solid; fails on meshes with open boundaries).
    """
    import trimesh

    m = mesh.copy()
    if method == "trimesh":
        m.merge_vertices()
        m.update_faces(m.nondegenerate_faces())
        m.update_faces(m.unique_faces())
        m.remove_unreferenced_vertices()
        trimesh.repair.fill_holes(m)
        trimesh.repair.fix_winding(m)
        trimesh.repair.fix_normals(m)
        return m
    if method == "manifold":
        import manifold3d

        m.merge_vertices()
        mm = manifold3d.Mesh(vert_properties=np.asarray(m.vertices, np.float32),
                             tri_verts=np.asarray(m.faces, np.uint32))
        mm.merge()
        solid = manifold3d.Manifold(mm)
        if solid.is_empty():
            raise MpgymError(f"manifold3d could not build a solid from this mesh "
                             f"({watertight_report(m)}: status {solid.status()}); try "
                             "--repair trimesh.")
        out = solid.to_mesh()
        return trimesh.Trimesh(out.vert_properties[:, :3], out.tri_verts, process=True)
    raise MpgymError(f"unknown repair method {method!r}; accepted: none, trimesh, manifold.")
