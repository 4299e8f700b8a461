"""Mesh extraction from any scalar field: dense or hierarchical (MISE) grids + marching cubes.

Conventions:

- ``fn`` maps points ``(N, 3)`` float32 (a torch tensor by default, a numpy array with
  ``array="numpy"``) to values ``(N,)``. Signed distances (negative inside, surface at level
  0), occupancy probabilities (inside above 0.5), logits or NeRF densities (inside above a
  threshold) all work; ``inside`` says which side is the solid, so faces and normals point out.
- ``bounds`` is a float ``b`` (the cube ``[-b, b]^3``) or ``((xmin, ymin, zmin), (xmax, ymax,
  zmax))``.
- ``resolution`` counts **cells** per axis: the grid has ``resolution + 1`` samples per axis
  (Occupancy Networks count the same way: 32^3 cells refined twice = 128^3).

Hierarchical extraction is Multiresolution IsoSurface Extraction (Mescheder et al., Occupancy
Networks, CVPR 2019, Sec. 3.3): evaluate a coarse grid, mark the cells whose corners straddle
the level (dilated by ``dilation`` cells so that surfaces entering a cell through a face are
kept), subdivide only those, and fill every other point by trilinear interpolation from the
coarser level -- which keeps its sign, so marching cubes puts no triangle there. Within the
refined band the values are the field's own, so the mesh is the dense grid's mesh unless a
surface piece is smaller than a coarse cell and crosses none of its corners (the method's
known limit; raise ``coarse_resolution`` for tiny parts).
"""

from __future__ import annotations

import logging
import numbers
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mpgym.errors import MpgymError

log = logging.getLogger(__name__)

Bounds = float | tuple[tuple[float, float, float], tuple[float, float, float]]


@dataclass
class GridResult:
    """A sampled grid ready for marching cubes.

    Attributes:
        values: ``(R+1, R+1, R+1)`` float32 field values (interpolated outside the band when
            hierarchical).
        evaluated: same shape, True where the field itself was queried.
        lo: ``(3,)`` lower corner of the grid.
        spacing: ``(3,)`` distance between samples.
        queries: number of points ``fn`` was called on.
        seconds: wall time of the field evaluation.
    """

    values: np.ndarray
    evaluated: np.ndarray
    lo: np.ndarray
    spacing: np.ndarray
    queries: int
    seconds: float


def parse_bounds(bounds: Bounds) -> tuple[np.ndarray, np.ndarray]:
    """``b`` or ``(lo, hi)`` -> ``(lo (3,), hi (3,))`` float64; a clear error otherwise."""
    if np.isscalar(bounds):
        b = float(bounds)  # type: ignore[arg-type]
        lo, hi = np.full(3, -b), np.full(3, b)
    else:
        try:
            lo, hi = (np.asarray(v, dtype=float).reshape(3) for v in bounds)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise MpgymError(f"bounds {bounds!r} not understood; accepted: a float b (the cube "
                             "[-b, b]^3) or ((xmin, ymin, zmin), (xmax, ymax, zmax)).") from None
    if not np.all(hi > lo):
        raise MpgymError(f"bounds must have max > min on every axis, got lo={lo}, hi={hi}.")
    return lo, hi


def check_resolution(resolution: int, *, hierarchical: bool = True,
                     coarse_resolution: int = 32) -> None:
    """Raise :class:`MpgymError` for a grid :func:`sample_grid` would refuse, before any work.

    Accepted: a whole number of cells ``>= 2`` that fits in memory, and for hierarchical
    extraction ``resolution = coarse_resolution * 2^k``.
    """
    for name, value, least in (("resolution", resolution, 2),
                               ("coarse_resolution", coarse_resolution, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            raise MpgymError(f"{name} must be a whole number of cells >= {least}, got {value!r}.")
    if hierarchical:
        steps = resolution // coarse_resolution
        if resolution % coarse_resolution or steps & (steps - 1):
            raise MpgymError(
                f"hierarchical extraction needs resolution = coarse_resolution * 2^k; got "
                f"{resolution} and {coarse_resolution} (try 64, 128, 256, 512 with coarse 32, "
                "or hierarchical=False).")
    _check_memory(resolution)


def _check_memory(resolution: int) -> None:
    """Raise before allocating a grid that cannot fit in the available memory."""
    n = (resolution + 1) ** 3
    need = n * (4 * 3 + 1 * 2) + n * 4 * 2  # values, upsample temp, masks, marching cubes
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > 0.8 * avail:
        raise MpgymError(
            f"resolution {resolution} needs about {need / 2**30:.1f} GiB for the grid but "
            f"{avail / 2**30:.1f} GiB is available; use a lower --resolution "
            f"(at most ~{int(((0.8 * avail) / 22) ** (1 / 3)) - 1}).")


def _evaluate(fn: Callable[[Any], Any], pts: np.ndarray, *, chunk_size: int, array: str,
              device: Any) -> np.ndarray:
    """Call ``fn`` on ``pts (N, 3)`` in chunks, without gradients; ``(N,)`` float32."""
    import torch

    out = np.empty(len(pts), dtype=np.float32)
    with torch.no_grad():
        for s in range(0, len(pts), chunk_size):
            chunk = pts[s:s + chunk_size].astype(np.float32)
            x = torch.from_numpy(chunk).to(device) if array == "torch" else chunk
            y = fn(x)
            y = y.detach().float().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
            out[s:s + len(chunk)] = y.reshape(-1)
    if not np.all(np.isfinite(out)):
        raise MpgymError("the field returned NaN or infinity at some grid points; a diverged "
                         "network cannot be meshed -- check the training loss or the checkpoint.")
    return out


def _upsample2(v: np.ndarray) -> np.ndarray:
    """Trilinear 2x upsampling of grid samples: ``(n+1)^3 -> (2n+1)^3`` (points kept)."""
    for axis in range(3):
        v = np.moveaxis(v, axis, 0)
        up = np.empty((2 * v.shape[0] - 1, *v.shape[1:]), dtype=v.dtype)
        up[0::2] = v
        up[1::2] = 0.5 * (v[:-1] + v[1:])
        v = np.moveaxis(up, 0, axis)
    return np.ascontiguousarray(v)


def _crossing_cells(values: np.ndarray, level: float, dilation: int) -> np.ndarray:
    """Cells ``(n, n, n)`` whose 8 corners are not all on one side of ``level`` (dilated)."""
    from scipy.ndimage import binary_dilation

    s = values > level
    any_in = np.zeros(tuple(d - 1 for d in s.shape), dtype=bool)
    all_in = np.ones_like(any_in)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                c = s[dx:dx + any_in.shape[0], dy:dy + any_in.shape[1], dz:dz + any_in.shape[2]]
                any_in |= c
                all_in &= c
    cells = any_in & ~all_in
    if dilation > 0 and cells.any():
        cells = binary_dilation(cells, iterations=dilation)
    return cells


def _grid_points(idx: np.ndarray, lo: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    return lo + idx * spacing


def sample_grid(
    fn: Callable[[Any], Any],
    bounds: Bounds,
    resolution: int = 256,
    level: float = 0.0,
    *,
    hierarchical: bool = True,
    coarse_resolution: int = 32,
    dilation: int = 1,
    chunk_size: int = 2**18,
    array: Literal["torch", "numpy"] = "torch",
    device: Any = "cpu",
) -> GridResult:
    """Sample ``fn`` on a ``(resolution + 1)^3`` grid, densely or hierarchically (MISE).

    Args:
        fn: field ``(N, 3) -> (N,)``.
        bounds: ``b`` for ``[-b, b]^3`` or ``(lo, hi)``.
        resolution: cells per axis; hierarchical needs ``resolution = coarse_resolution * 2^k``.
        level: iso-value separating inside from outside.
        hierarchical: refine only near the surface (MISE); else evaluate every point.
        coarse_resolution: cells per axis of the first level.
        dilation: cells added around the crossing cells at each level.
        chunk_size: points per call of ``fn`` (bounds memory: no OOM at 512^3).
        array: whether ``fn`` takes torch tensors or numpy arrays.
        device: torch device for the points given to ``fn``.

    Returns:
        :class:`GridResult`.
    """
    lo, hi = parse_bounds(bounds)
    check_resolution(resolution, hierarchical=hierarchical, coarse_resolution=coarse_resolution)
    spacing = (hi - lo) / resolution

    def evaluate(idx: np.ndarray) -> np.ndarray:
        """The field at grid indices ``idx (N, 3)`` (of the finest grid) -> ``(N,)``."""
        return _evaluate(fn, _grid_points(idx, lo, spacing), chunk_size=chunk_size,
                         array=array, device=device)

    t0 = time.perf_counter()
    if not hierarchical:
        values = _dense_grid(evaluate, resolution + 1, chunk_size)
        n = resolution + 1
        return GridResult(values, np.ones((n, n, n), bool), lo, spacing, n**3,
                          time.perf_counter() - t0)
    values, known, queries = _mise_grid(evaluate, resolution, coarse_resolution, level,
                                        dilation)
    return GridResult(values, known, lo, spacing, queries, time.perf_counter() - t0)


def _dense_grid(evaluate: Callable[[np.ndarray], np.ndarray], n: int, chunk_size: int
                ) -> np.ndarray:
    """Every point of an ``n^3`` grid, ``(n, n, n)``, evaluated in slabs of whole x-planes.

    The index rows are made one slab at a time, so no ``(N, 3)`` array of all points is ever
    held.
    """
    values = np.empty(n**3, dtype=np.float32)
    slab = max(1, chunk_size // (n * n))
    ij = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2)
    for x0 in range(0, n, slab):
        xs = np.arange(x0, min(n, x0 + slab))
        idx = np.concatenate([np.repeat(xs, n * n)[:, None], np.tile(ij, (len(xs), 1))], 1)
        values[x0 * n * n:(x0 + len(xs)) * n * n] = evaluate(idx)
    return values.reshape(n, n, n)


def _mise_grid(evaluate: Callable[[np.ndarray], np.ndarray], resolution: int,
               coarse_resolution: int, level: float, dilation: int
               ) -> tuple[np.ndarray, np.ndarray, int]:
    """MISE: the coarse grid, then 2x refinements near the surface until ``resolution``.

    Returns:
        ``(values, known, queries)``: the ``(R+1)^3`` grid, where the field itself was
        queried, and how many points were.
    """
    stride = resolution // coarse_resolution
    n = coarse_resolution + 1
    idx = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    values = evaluate(idx * stride).reshape(n, n, n)
    known = np.ones((n, n, n), dtype=bool)
    queries = n**3
    while stride > 1:
        cells = _crossing_cells(values, level, dilation)          # (c, c, c) at this level
        values, known = _upsample2(values), _upsample_known(known)
        new = np.argwhere(_cell_points(cells) & ~known)
        stride //= 2
        if len(new):
            values[tuple(new.T)] = evaluate(new * stride)
        known[tuple(new.T)] = True
        queries += len(new)
    return values, known, queries


def _upsample_known(known: np.ndarray) -> np.ndarray:
    """``(n+1)^3`` query marks -> ``(2n+1)^3``: the old points keep theirs, new ones are False."""
    up = np.zeros([2 * d - 1 for d in known.shape], bool)
    up[::2, ::2, ::2] = known
    return up


def _cell_points(cells: np.ndarray) -> np.ndarray:
    """The ``3x3x3`` points of each marked cell ``(c, c, c)`` on the 2x grid ``(2c+1)^3``."""
    c = cells.shape[0]
    want = np.zeros((2 * c + 1,) * 3, bool)
    for dx in range(3):
        for dy in range(3):
            for dz in range(3):
                want[dx:dx + 2 * c:2, dy:dy + 2 * c:2, dz:dz + 2 * c:2] |= cells
    return want


def field_gradient(fn: Callable[[Any], Any], points: np.ndarray, *, eps: float,
                   chunk_size: int = 2**16, array: str = "torch", device: Any = "cpu"
                   ) -> np.ndarray:
    """Gradient of ``fn`` at ``points (N, 3)`` -> ``(N, 3)``.

    Autograd when gradients flow through ``fn``, else central differences with step ``eps``.
    """
    import torch

    if array == "torch":
        out = np.empty_like(points, dtype=np.float32)
        try:
            for s in range(0, len(points), chunk_size):
                x = torch.from_numpy(points[s:s + chunk_size].astype(np.float32)).to(device)
                x.requires_grad_(True)
                with torch.enable_grad():
                    y = fn(x)
                    if not (isinstance(y, torch.Tensor) and y.requires_grad):
                        raise TypeError("no autograd")
                    (g,) = torch.autograd.grad(y.sum(), x)
                out[s:s + len(x)] = g.detach().cpu().numpy()
            return out
        except (TypeError, RuntimeError):
            pass
    g = np.zeros_like(points, dtype=np.float32)
    for axis in range(3):
        d = np.zeros(3)
        d[axis] = eps
        fp = _evaluate(fn, points + d, chunk_size=chunk_size, array=array, device=device)
        fm = _evaluate(fn, points - d, chunk_size=chunk_size, array=array, device=device)
        g[:, axis] = (fp - fm) / (2 * eps)
    return g


def extract_mesh(
    fn: Callable[[Any], Any],
    bounds: Bounds = 0.55,
    resolution: int = 256,
    level: float = 0.0,
    *,
    hierarchical: bool = True,
    inside: Literal["below", "above"] = "below",
    coarse_resolution: int = 32,
    normals: Literal["gradient", "mesh"] = "gradient",
    simplify: int | None = None,
    chunk_size: int = 2**18,
    array: Literal["torch", "numpy"] = "torch",
    device: Any = "cpu",
):
    """Extract the ``level`` set of a field as a triangle mesh (marching cubes, Lewiner).

    Args:
        fn: field ``(N, 3) -> (N,)`` (tensor in/out by default; see ``array``).
        bounds: ``b`` for ``[-b, b]^3`` or ``(lo, hi)``.
        resolution: cells per axis (the grid has ``resolution + 1`` samples per axis).
        level: iso-value: 0 for SDFs and logits, 0.5 for occupancy probabilities.
        hierarchical: MISE (far fewer queries, same mesh) or a dense grid.
        inside: ``"below"`` when the solid has values below ``level`` (SDFs), ``"above"`` for
            occupancy and density; makes faces and normals point outward.
        coarse_resolution: first level of the hierarchy.
        normals: ``"gradient"`` (vertex normals from the field's gradient: autograd, else
            central differences) or ``"mesh"`` (trimesh's area-weighted face normals).
        simplify: target face count for quadric decimation (Open3D), or None.
        chunk_size: points per call of ``fn``.
        array: ``"torch"`` or ``"numpy"``: what ``fn`` takes.
        device: torch device for the queries.

    Returns:
        A ``trimesh.Trimesh`` in world coordinates; ``mesh.metadata["extraction"]`` holds
        ``queries``, ``eval_seconds``, ``mc_seconds``, ``resolution``, ``hierarchical``.

    Raises:
        MpgymError: bad bounds/resolution, NaNs from the field, a grid too large for memory,
            or no surface at ``level`` inside the bounds.
    """
    grid = sample_grid(fn, bounds, resolution, level, hierarchical=hierarchical,
                       coarse_resolution=coarse_resolution, chunk_size=chunk_size,
                       array=array, device=device)
    t0 = time.perf_counter()
    mesh = _marching_cubes(grid, level, inside)
    mc_seconds = time.perf_counter() - t0
    if simplify is not None and len(mesh.faces) > simplify:
        mesh = simplify_mesh(mesh, simplify)
    if normals == "gradient" and len(mesh.vertices):
        g = field_gradient(fn, np.asarray(mesh.vertices), eps=float(grid.spacing.min()) / 2,
                           array=array, device=device)
        g = g if inside == "below" else -g
        mesh.vertex_normals = g / np.linalg.norm(g, axis=1, keepdims=True).clip(min=1e-12)
    mesh.metadata["extraction"] = {
        "queries": int(grid.queries), "eval_seconds": grid.seconds, "mc_seconds": mc_seconds,
        "resolution": resolution, "hierarchical": hierarchical}
    log.debug("extract_mesh: %d queries, %d faces", grid.queries, len(mesh.faces))
    return mesh


def _marching_cubes(grid: GridResult, level: float, inside: Literal["below", "above"]):
    """The ``level`` set of a sampled grid as a ``trimesh.Trimesh`` in world coordinates.

    Faces point out of the solid (``inside`` says which side it is).

    Raises:
        MpgymError: the grid's values do not straddle ``level``.
    """
    import trimesh
    from skimage.measure import marching_cubes

    vmin, vmax = float(grid.values.min()), float(grid.values.max())
    if not vmin < level < vmax:
        raise MpgymError(f"the field has no surface at level {level} inside the bounds (values "
                         f"range over [{vmin:.4g}, {vmax:.4g}]); choose a level in that range or "
                         "larger bounds.")
    verts, faces, _, _ = marching_cubes(grid.values, level=level, spacing=tuple(grid.spacing),
                                        allow_degenerate=False)
    # skimage's faces point towards decreasing values; flip so they face out of the solid
    if inside == "above":
        faces = faces[:, ::-1]
    return trimesh.Trimesh(verts + grid.lo, np.ascontiguousarray(faces), process=False)


MESH_OUTPUT_SUFFIXES = (".ply", ".obj", ".stl", ".off", ".glb")
"""Formats :func:`write_mesh` writes: trimesh's exporters that give one file for a mesh."""


def check_mesh_output(path: str | os.PathLike) -> str:
    """The trimesh ``file_type`` for ``path``; :class:`MpgymError` for any other suffix.

    Call it before any work, so a wrong ``-o`` is refused before a field is evaluated.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_OUTPUT_SUFFIXES:
        raise MpgymError(f"cannot write a mesh to {path} (suffix {suffix or 'none'!r}); "
                         f"accepted: {', '.join(MESH_OUTPUT_SUFFIXES)}.")
    if path.is_dir():
        raise MpgymError(f"{path} is a directory; give a mesh file path.")
    return suffix[1:]


def write_mesh(mesh, path: str | os.PathLike) -> Path:
    """Write ``mesh`` to ``path`` atomically (temp file + rename); the format from the suffix.

    Returns:
        The path written.

    Raises:
        MpgymError: a suffix outside :data:`MESH_OUTPUT_SUFFIXES`.
    """
    from mpgym.checkpoint import atomic_write_bytes

    file_type = check_mesh_output(path)
    data = mesh.export(file_type=file_type)
    return atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)


def simplify_mesh(mesh, faces: int):
    """Quadric-error decimation to about ``faces`` triangles (Open3D, imported lazily)."""
    import open3d as o3d
    import trimesh

    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(mesh.vertices)),
                                  o3d.utility.Vector3iVector(np.asarray(mesh.faces)))
    m = m.simplify_quadric_decimation(target_number_of_triangles=int(faces))
    return trimesh.Trimesh(np.asarray(m.vertices), np.asarray(m.triangles), process=False)


def render_mesh_views(mesh, *, views: int = 4, size: int = 256, elevation_deg: float = 25.0,
                      radius: float = 2.2) -> np.ndarray:
    """Shaded turntable pictures of a mesh (Open3D ray casting), ``(views, size, size, 3)``.

    The mesh is centred and scaled to unit size for the camera; the background is white.
    """
    import math

    from neural3d.cameras import Intrinsics, turntable_poses
    from neural3d.data.multiview import render_views
    from neural3d.data.scenes import scene_from_mesh

    m = mesh.copy()
    lo, hi = m.bounds
    m.apply_translation(-(lo + hi) / 2)
    m.apply_scale(1.0 / max(float((hi - lo).max()), 1e-9))
    intr = Intrinsics.from_fov(0.6911112070083618, size, size)
    poses = turntable_poses(views, radius, math.radians(elevation_deg))
    rgba = render_views(scene_from_mesh(m), poses, intr)
    return rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
