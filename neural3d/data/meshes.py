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
POINT_SUFFIXES = (".npy",)
MAX_POINTS = 50_000_000
"""Largest point cloud :func:`load_points` accepts (1.2 GB of float64 xyz)."""
Repair = Literal["none", "trimesh", "manifold"]

_ACCEPTED = (f"accepted: a triangle mesh ({', '.join(MESH_SUFFIXES)}) with finite vertex "
             "coordinates")


def load_mesh(path: str | Path, *, normalize: bool = True, size: float = 1.0,
              repair: Repair = "none", require_watertight: bool = False):
    """Read a mesh file as one ``trimesh.Trimesh`` (scenes are concatenated).

    Hostile files are refused with one :class:`MpgymError` naming the file: an unknown
    suffix, element counts in a PLY or OFF header that the file is too small to hold (checked
    before trimesh allocates anything), anything trimesh cannot parse, non-finite vertices,
    face indices out of range, no faces, or only zero-area faces.

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
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise MpgymError(f"{path} has the suffix {path.suffix!r}; {_ACCEPTED}.")
    check_declared_counts(path)
    try:
        loaded = trimesh.load(str(path), process=True)
        if isinstance(loaded, trimesh.Scene):
            geoms = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)]
            loaded = trimesh.util.concatenate(geoms) if geoms else None
    except Exception as exc:  # trimesh raises many types (MemoryError included) for bad files
        raise MpgymError(f"{path} could not be read as a mesh ({type(exc).__name__}: "
                         f"{str(exc)[:200]}); {_ACCEPTED}.") from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise MpgymError(f"{path} holds no triangles (a point cloud or an empty file); a mesh "
                         f"with faces is needed ({', '.join(MESH_SUFFIXES)}).")
    mesh = loaded
    check_mesh(mesh, str(path))
    if repair != "none":
        mesh = repair_mesh(mesh, repair)
        check_mesh(mesh, f"{path} after --repair {repair}")
    if require_watertight:
        check_watertight(mesh, str(path))
    return normalize_mesh(mesh, size) if normalize else mesh


def check_mesh(mesh, what: str = "the mesh") -> None:
    """Raise :class:`MpgymError` unless ``mesh`` is a usable triangle mesh.

    Usable: vertices ``(V, 3)`` finite, faces ``(F, 3)`` with ``F >= 1`` and indices in
    ``[0, V)``, a bounding box of positive size and a positive total area.
    """
    v = np.asarray(mesh.vertices)
    f = np.asarray(mesh.faces)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise MpgymError(f"{what} is not a triangle mesh (vertices {v.shape}, faces {f.shape}); "
                         f"{_ACCEPTED}.")
    if not np.isfinite(v).all():
        raise MpgymError(f"{what} has NaN or infinite vertex coordinates; {_ACCEPTED}.")
    if f.min() < 0 or f.max() >= len(v):
        raise MpgymError(f"{what} has face indices outside its {len(v)} vertices; {_ACCEPTED}.")
    used = v[np.unique(f)]
    extent = used.max(0) - used.min(0)
    with np.errstate(over="ignore", invalid="ignore"):
        area = float(np.asarray(mesh.area_faces, np.float64).sum())
    if not (np.isfinite(extent).all() and extent.max() > 0 and np.isfinite(area)
            and area > 0):
        raise MpgymError(f"{what} is degenerate (bounding box {extent.tolist()}, total area "
                         f"{area:.3g}): every triangle has zero area; a surface is needed.")


def check_declared_counts(path: str | Path) -> None:
    """Refuse a PLY or OFF file whose header declares more elements than its bytes can hold.

    Every vertex or face takes at least one byte in both the ASCII and the binary layouts, so
    the declared counts must sum to at most the file size; this bounds what a reader may
    allocate before it reads a byte of the body. Other formats are left to the reader.

    Raises:
        MpgymError: a count that does not parse, is negative, or exceeds the file size.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".ply", ".off"):
        return
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(65536)
    counts: list[bytes] = []
    if suffix == ".ply":
        end = head.find(b"end_header")
        lines = (head[:end] if end >= 0 else head).splitlines()
        counts = [ln.split()[2] for ln in lines
                  if ln.split()[:1] == [b"element"] and len(ln.split()) >= 3]
    else:  # OFF: "OFF" (maybe with the counts on the same line), comments, "V F E"
        words: list[bytes] = []
        for line in head.splitlines():
            line = line.split(b"#")[0]
            words += line.split()
            if len(words) >= 4:
                break
        if words[:1] and words[0].upper().endswith(b"OFF"):
            counts = words[1:4]
    total = 0
    for c in counts:
        try:
            n = int(c)
        except ValueError:
            raise MpgymError(f"{path}: element count {c[:30]!r} in the header is not a whole "
                             f"number; {_ACCEPTED}.") from None
        if n < 0:
            raise MpgymError(f"{path}: negative element count {n} in the header; {_ACCEPTED}.")
        total += n
    if total > size:
        raise MpgymError(f"{path} declares {total} elements in its header but has only {size} "
                         f"bytes (a truncated or corrupt file); {_ACCEPTED}.")


def load_points(path: str | Path, *, normalize: bool = True, size: float = 1.0,
                max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a point cloud from ``.npy``: ``(N, 3)`` points or ``(N, 6)`` points + normals.

    The header is checked before any data is read: a plain float array (no pickles, no
    structured or object dtypes), two dimensions, 3 or 6 columns, ``10 <= N <= max_points``
    and exactly as many bytes as the shape declares. Values must be finite and normals
    non-zero (they are returned at unit length).

    Args:
        path: the ``.npy`` file.
        normalize: centre the points' bounding box and scale its longest side to ``size``.
        size: longest side after normalisation.
        max_points: largest ``N`` accepted.

    Returns:
        ``(points (N, 3), normals (N, 3) or None)``, float32.

    Raises:
        MpgymError: anything else, with what is accepted.
    """
    path = Path(path)
    accepted = (f"accepted: a .npy float array of shape (N, 3) points or (N, 6) points + "
                f"normals, 10 <= N <= {max_points}, finite values")
    if not path.is_file():
        raise MpgymError(f"no point file at {path}.")
    shape, dtype, offset = _npy_header(path, accepted)
    if dtype.kind != "f" or dtype.fields is not None or dtype.subdtype is not None:
        raise MpgymError(f"{path} holds {dtype} values; {accepted}.")
    if len(shape) != 2 or shape[1] not in (3, 6) or not 10 <= shape[0] <= max_points:
        raise MpgymError(f"{path} holds an array of shape {shape}; {accepted}.")
    if offset + shape[0] * shape[1] * dtype.itemsize != path.stat().st_size:
        raise MpgymError(f"{path} has {path.stat().st_size} bytes, not what its header "
                         f"declares ({shape} {dtype}): a truncated or corrupt file; {accepted}.")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, MemoryError) as exc:
        raise MpgymError(f"{path} could not be read ({exc}); {accepted}.") from None
    with np.errstate(over="ignore"):
        arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise MpgymError(f"{path} has NaN or infinite values (or values beyond float32); "
                         f"{accepted}.")
    points = arr[:, :3].copy()
    normals = None
    if arr.shape[1] == 6:
        norm = np.linalg.norm(arr[:, 3:], axis=1, keepdims=True)
        if not (norm > 1e-12).all():
            raise MpgymError(f"{path} has zero-length normals in columns 3-5; {accepted}, "
                             "normals non-zero.")
        normals = (arr[:, 3:] / norm).astype(np.float32)
    if normalize:
        lo, hi = points.min(0), points.max(0)
        extent = float((hi - lo).max())
        if not extent > 0:
            raise MpgymError(f"{path}: all points coincide; nothing to fit.")
        points = ((points - (lo + hi) / 2) * (size / extent)).astype(np.float32)
    return points, normals


def _npy_header(path: Path, accepted: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` of a ``.npy`` file, read without loading its data."""
    fmt = np.lib.format
    try:
        with path.open("rb") as fh:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(fh)
            elif version in ((2, 0), (3, 0)):
                shape, _, dtype = fmt.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            return tuple(int(d) for d in shape), np.dtype(dtype), fh.tell()
    except Exception as exc:  # numpy's header parser raises several types (TokenError too)
        raise MpgymError(f"{path} is not a readable .npy array ({type(exc).__name__}: "
                         f"{str(exc)[:200]}); {accepted}.") from None


def _fuzz_load_and_sample(path: str) -> None:
    """Fuzzing entry: what ``mpgym fit-shape`` does with a mesh (load, then sample it)."""
    from neural3d.data.sampling import sample_surface

    mesh = load_mesh(path)
    s = sample_surface(mesh, 256, np.random.default_rng(0))
    if not (np.isfinite(s.points).all() and np.isfinite(s.normals).all()):
        raise AssertionError("a loaded mesh gave non-finite samples")


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


def _fuzz_load_repaired(path: str) -> None:
    """Fuzzing entry: ``fit-shape --repair trimesh`` and ``--repair manifold`` on a mesh."""
    for method in ("trimesh", "manifold"):
        try:
            load_mesh(path, repair=method)  # type: ignore[arg-type]
        except MpgymError:
            if method == "manifold":
                raise
