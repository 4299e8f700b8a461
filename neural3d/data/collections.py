"""Shape collections: many watertight meshes, normalised, split and sampled once, then cached.

Sources:

- ``"pybullet"``: the 1,000 procedurally composed objects that ship in the ``pybullet`` wheel
  (``pybullet_data/random_urdfs/NNN/NNN.obj``, ~200-2,000 faces each). Split by index:
  ``000-799`` train, ``800-899`` val, ``900-999`` test.
- ``"procedural"``: random members of the project's shape families (:mod:`neural3d.shapes`:
  ellipsoid, rounded box, torus, capsule, cylinder, superquadric, CSG union and difference),
  meshed by marching cubes; shape ``i`` is family ``i % 8`` with parameters drawn from
  ``default_rng([seed, i])``.
- a folder: every mesh file under it (``.obj .ply .stl .off .glb .gltf``), in sorted path
  order. Files that are not meshes are skipped (and counted) before the split; broken meshes
  keep their place in the split and are skipped (and counted) when read.

Split: a fixed function of the position in the ordered source (:func:`split_sizes`): 10 %
val, 10 % test (at least one each), the rest train, in that order -- 800/100/100 for the
pybullet set. ``limit`` takes the first shapes of each split in the same proportions, so a
limited collection is a subset of the full one, split the same way.

Normalisation (:func:`neural3d.data.meshes.normalize_mesh`): the centre of the axis-aligned
bounding box to the origin, its longest side to 1 -- Occupancy Networks' convention
(``sample_mesh.py``: ``loc = (bbox_min + bbox_max) / 2``, ``scale = max extent``). DeepSDF
centres on the same bounding-box centre (``ComputeNormalizationParameters``) but scales to a
unit *sphere* (largest vertex distance times 1.03); the unit-cube frame is kept here and
DeepSDF's noise levels are converted into it (see :class:`CollectionConfig`).

Cached per shape (``.npz``, no pickles): surface points and face normals; near-surface SDF
samples (DeepSDF's two Gaussian noise levels plus a uniform share); uniform occupancy samples
in the unit cube with OccNet's padding. Ground truth comes from Open3D's ``RaycastingScene``
(:class:`neural3d.data.ground_truth.MeshGroundTruth`). Non-watertight meshes are repaired
(trimesh, then manifold3d) or skipped, and :class:`ShapeCollection` says how many.

Cache layout: ``<cache>/<source>-<hash of the settings>/`` holds ``index.json`` (each shape's
status, so skipped files are not re-read) and one ``NNNNN-<name>.npz`` per shape, all written
atomically; a second call with the same settings reads only ``index.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mpgym.errors import MpgymError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
Split = Literal["train", "val", "test"]
CACHE_VERSION = 2
PYBULLET_SHAPES = 1000
"""Meshes in ``pybullet_data/random_urdfs``."""
DEFAULT_CACHE = Path("runs") / "cache" / "shapes"
"""Where prepared collections go unless told otherwise."""
MAX_SAMPLES = 5_000_000
"""Largest sample count per array accepted in a config or a cache file."""
MAX_INDEX_BYTES = 64 * 2**20
"""Largest ``index.json`` read back."""
FAMILIES = (
    "sphere",
    "box",
    "torus",
    "capsule",
    "cylinder",
    "superquadric",
    "csg_union",
    "csg_difference",
)
"""Procedural families, in the order shape ``i`` cycles through them."""

_KEYS = {  # name -> (dtype, trailing shape, count field)
    "surface_points": (np.float32, (3,), "n_surface"),
    "surface_normals": (np.float32, (3,), "n_surface"),
    "sdf_points": (np.float32, (3,), "n_sdf"),
    "sdf": (np.float32, (), "n_sdf"),
    "occ_points": (np.float32, (3,), "n_occupancy"),
    "occupancy": (np.bool_, (), "n_occupancy"),
    "sigmas": (np.float32, (), None),
}


@dataclass(frozen=True)
class CollectionConfig:
    """What is sampled and cached for every shape (defaults: OccNet / DeepSDF conventions)."""

    n_surface: int = 20_000
    """Surface points with normals (OccNet stores 100,000; 20,000 keeps 1,000 shapes ~2 GB)."""
    n_sdf: int = 50_000
    """Near-surface + uniform SDF samples (DeepSDF samples 500,000 per shape)."""
    sdf_variances: tuple[float, float] = (0.005, 0.0005)
    """DeepSDF's two Gaussian noise variances around surface points (PreprocessMesh.cpp:
    ``variance = 0.005``, ``second_variance = variance / 10``), given in DeepSDF's unit-sphere
    frame and converted per shape: ``sigma = sqrt(var) * 1.03 * max_v |v|`` here."""
    sdf_uniform_fraction: float = 0.06
    """Share of SDF samples uniform in the padded cube (DeepSDF: 3 / 50, in its [-1, 1]^3)."""
    n_occupancy: int = 50_000
    """Uniform occupancy samples (OccNet's points.npz holds 100,000)."""
    padding: float = 0.1
    """Uniform samples lie in a cube of side ``1 + padding`` (OccNet: 0.1, i.e. [-0.55, 0.55]^3)."""
    procedural_shapes: int = 200
    """Shapes in the ``procedural`` source."""
    procedural_resolution: int = 64
    """Marching-cubes cells per axis for procedural meshes."""
    seed: int = 0
    """Seed of every draw; shape at position ``i`` uses ``default_rng([seed, i])``."""

    @property
    def half_side(self) -> float:
        """Half side of the sampling cube."""
        return (1.0 + self.padding) / 2


@dataclass(frozen=True)
class ShapeRecord:
    """One usable shape of a collection."""

    name: str
    """Unique name (``pybullet-042``, ``torus-0002``, ``chairs__a.obj``)."""
    position: int
    """Place in the ordered source, which fixes the split."""
    split: str
    """``train``, ``val`` or ``test``."""
    path: Path
    """The cached ``.npz``."""
    repaired: bool = False
    """Whether it needed repair to become watertight."""


@dataclass(frozen=True)
class CachedShape:
    """A shape's cached samples, all in the unit-cube frame (float32 unless noted)."""

    name: str
    surface_points: np.ndarray  # (n_surface, 3)
    surface_normals: np.ndarray  # (n_surface, 3), unit length
    sdf_points: np.ndarray  # (n_sdf, 3)
    sdf: np.ndarray  # (n_sdf,), negative inside
    occ_points: np.ndarray  # (n_occupancy, 3), uniform in the padded cube
    occupancy: np.ndarray  # (n_occupancy,) bool, True inside
    sigmas: np.ndarray  # (2,), the near-surface noise used for this shape


@dataclass
class ShapeCollection:
    """A prepared collection: which shapes, their split, and what happened to the others."""

    source: str
    """``pybullet``, ``procedural`` or the folder."""
    root: Path
    """The cache folder of these settings."""
    config: CollectionConfig
    """The settings."""
    shapes: tuple[ShapeRecord, ...]
    """Usable shapes, in source order."""
    skipped: tuple[tuple[str, str], ...] = ()
    """``(name, reason)`` of every file or mesh that was left out."""
    computed: int = 0
    """Shapes (usable or skipped) processed by this call."""
    reused: int = 0
    """Shapes (usable or skipped) whose result came from the cache."""
    seconds: float = 0.0
    """Wall time of the call."""
    _by_split: dict[str, list[ShapeRecord]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:  # noqa: D105
        self._by_split = {s: [r for r in self.shapes if r.split == s] for s in SPLITS}

    def __len__(self) -> int:
        return len(self.shapes)

    @property
    def repaired(self) -> int:
        """Shapes made watertight by repair."""
        return sum(r.repaired for r in self.shapes)

    def split(self, name: Split) -> list[ShapeRecord]:
        """The records of one split (``train``, ``val`` or ``test``)."""
        if name not in SPLITS:
            raise MpgymError(f"unknown split {name!r}; accepted: {', '.join(SPLITS)}.")
        return list(self._by_split[name])

    def load(self, which: int | ShapeRecord) -> CachedShape:
        """The cached samples of shape ``which`` (an index into :attr:`shapes` or a record)."""
        rec = self.shapes[which] if isinstance(which, (int, np.integer)) else which
        return load_cached_shape(rec.path, self.config, name=rec.name)

    def summary(self) -> str:
        """One line: counts per split, repaired, skipped, cache hits."""
        sizes = "/".join(str(len(self._by_split[s])) for s in SPLITS)
        return (
            f"{self.source}: {len(self)} shapes (train/val/test {sizes}), "
            f"{self.repaired} repaired, {len(self.skipped)} skipped, "
            f"{self.reused} from the cache, {self.seconds:.1f} s -> {self.root}"
        )


# ----------------------------------------------------------------------------------------------
# split and sampling (pure functions)
# ----------------------------------------------------------------------------------------------


def split_sizes(n: int) -> tuple[int, int, int]:
    """``(train, val, test)`` sizes for ``n`` shapes: 10 % val and test (>= 1 each), rest train.

    Raises:
        MpgymError: ``n < 3`` (one shape per split is the least a split can hold).

    Example:
        >>> split_sizes(1000), split_sizes(10), split_sizes(3)
        ((800, 100, 100), (8, 1, 1), (1, 1, 1))
    """
    if n < 3:
        raise MpgymError(
            f"a collection of {n} shape(s) is too small for a train/val/test "
            "split; at least 3 usable meshes are needed."
        )
    val = test = max(1, round(0.1 * n))
    return n - val - test, val, test


def split_of(position: int, n: int) -> str:
    """The split of the shape at ``position`` of ``n`` (train first, then val, then test)."""
    train, val, _ = split_sizes(n)
    return "train" if position < train else "val" if position < train + val else "test"


def limit_positions(n: int, limit: int | None) -> list[int]:
    """Positions kept by ``limit``: the first shapes of each split, in the split's proportions.

    Example:
        >>> limit_positions(1000, 5)
        [0, 1, 2, 800, 900]
    """
    if limit is None or limit >= n:
        return list(range(n))
    sizes, want = split_sizes(n), split_sizes(limit)
    starts = (0, sizes[0], sizes[0] + sizes[1])
    return [s + k for s, w in zip(starts, want, strict=True) for k in range(w)]


def sample_shape(mesh, config: CollectionConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Surface, near-surface SDF and uniform occupancy samples of one normalised mesh.

    Args:
        mesh: watertight ``trimesh.Trimesh`` already in the unit-cube frame.
        config: counts and noise levels.
        rng: numpy generator.

    Returns:
        The arrays of :class:`CachedShape` by name (float32; ``occupancy`` bool).
    """
    from neural3d.data.ground_truth import MeshGroundTruth
    from neural3d.data.sampling import sample_near_surface, sample_surface, sample_uniform

    gt = MeshGroundTruth(mesh)
    surf = sample_surface(mesh, config.n_surface, rng)
    # DeepSDF's unit sphere: 1.03 x the largest vertex distance from the bounding-box centre
    radius = 1.03 * float(np.linalg.norm(np.asarray(mesh.vertices), axis=1).max())
    sigmas = tuple(math.sqrt(v) * radius for v in config.sdf_variances)
    n_uni = int(round(config.n_sdf * config.sdf_uniform_fraction))
    near = sample_near_surface(surf.points, config.n_sdf - n_uni, sigmas, rng)
    sdf_pts = np.concatenate([near, sample_uniform(n_uni, config.half_side, rng)])
    occ_pts = sample_uniform(config.n_occupancy, config.half_side, rng)
    return {
        "surface_points": surf.points,
        "surface_normals": surf.normals,
        "sdf_points": sdf_pts,
        "sdf": gt.signed_distance(sdf_pts).astype(np.float32),
        "occ_points": occ_pts,
        "occupancy": gt.occupancy(occ_pts),
        "sigmas": np.asarray(sigmas, np.float32),
    }


def union_parts(mesh):
    """The boolean union of a mesh's closed parts (manifold3d), or the mesh itself.

    Objects composed of overlapping closed parts (every pybullet ``random_urdfs`` object is)
    break ray-parity occupancy and signed distance wherever two parts overlap, and parts that
    touch along an edge make the whole non-manifold. When the mesh has two or more connected
    parts and each is closed, they are reoriented outward and united into one solid; anything
    else is returned unchanged.
    """
    import trimesh

    parts = mesh.split(only_watertight=False)
    if len(parts) < 2 or not all(p.is_watertight for p in parts):
        return mesh
    try:
        import manifold3d

        solids = []
        for p in parts:
            trimesh.repair.fix_normals(p)
            solid = manifold3d.Manifold(
                manifold3d.Mesh(
                    vert_properties=np.asarray(p.vertices, np.float32),
                    tri_verts=np.asarray(p.faces, np.uint32),
                )
            )
            if solid.is_empty():
                return mesh
            solids.append(solid)
        out = manifold3d.Manifold.batch_boolean(solids, manifold3d.OpType.Add).to_mesh()
        united = trimesh.Trimesh(out.vert_properties[:, :3], out.tri_verts, process=True)
    except Exception as exc:  # noqa: BLE001 -- keep the mesh; the watertight check decides
        log.debug("union of %d parts failed: %s", len(parts), exc)
        return mesh
    return united if len(united.faces) and united.is_watertight else mesh


def make_watertight(mesh, what: str):
    """``(mesh, repaired)``: the union of its closed parts, or a watertight repair of it.

    Closed parts are united first (:func:`union_parts`; not counted as a repair); a mesh
    that is still not watertight gets trimesh's repair, then manifold3d's.

    Raises:
        MpgymError: neither repair gives a watertight mesh.
    """
    from neural3d.data.meshes import check_mesh, repair_mesh, watertight_report

    mesh = union_parts(mesh)
    if mesh.is_watertight:
        return mesh, False
    for method in ("trimesh", "manifold"):
        try:
            fixed = repair_mesh(mesh, method)  # type: ignore[arg-type]
            check_mesh(fixed, what)
        except Exception as exc:  # noqa: BLE001 -- a failed repair is a skipped mesh
            log.debug("%s: repair %s failed: %s", what, method, exc)
            continue
        if fixed.is_watertight:
            return fixed, True
    raise MpgymError(
        f"{what} is not watertight ({watertight_report(mesh)}) and neither "
        "trimesh nor manifold3d could close it."
    )


# ----------------------------------------------------------------------------------------------
# sources
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    name: str
    fingerprint: str
    load: Callable[[], object]  # -> trimesh.Trimesh (unnormalised); raises on bad input


def pybullet_mesh_dir() -> Path:
    """``pybullet_data/random_urdfs`` of the installed wheel."""
    try:
        import pybullet_data
    except ImportError:
        raise MpgymError(
            "the pybullet source needs the pybullet wheel (pip install pybullet); "
            "or use --source procedural or a folder of meshes."
        ) from None
    return Path(pybullet_data.getDataPath()) / "random_urdfs"


def _mesh_loader(path: Path) -> Callable[[], object]:
    def load():
        from neural3d.data.meshes import load_mesh

        return load_mesh(path, normalize=False)

    return load


def _pybullet_candidates() -> list[_Candidate]:
    root = pybullet_mesh_dir()
    dirs = sorted(p for p in root.glob("[0-9][0-9][0-9]") if p.is_dir()) if root.is_dir() else []
    if not dirs:
        raise MpgymError(
            f"no meshes in {root}; the pybullet wheel should ship "
            f"{PYBULLET_SHAPES} under random_urdfs/NNN/NNN.obj."
        )
    out = []
    for d in dirs:
        path = d / f"{d.name}.obj"
        out.append(_Candidate(f"pybullet-{d.name}", _stat(path), _mesh_loader(path)))
    return out


def _stat(path: Path) -> str:
    try:
        st = path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return "missing"


def procedural_shape(i: int, seed: int = 0):
    """Procedural shape ``i``: family ``FAMILIES[i % 8]``, parameters from ``[seed, i]``.

    Returns:
        A :class:`neural3d.shapes.Shape` inside ``[-0.5, 0.5]^3``.
    """
    from neural3d import shapes as S

    rng = np.random.default_rng([seed, i])

    def f(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    def v3(lo: float, hi: float) -> tuple[float, float, float]:
        x, y, z = (float(c) for c in rng.uniform(lo, hi, 3))
        return x, y, z

    family = FAMILIES[i % len(FAMILIES)]
    if family == "sphere":  # an ellipsoid: a sphere would normalise to one shape
        return S.Superquadric(v3(0.15, 0.45), 1.0, 1.0)
    if family == "box":
        return S.Box(v3(0.08, 0.4), rounding=f(0.0, 0.05))
    if family == "torus":
        minor = f(0.04, 0.15)
        return S.Torus(f(minor + 0.05, 0.45 - minor), minor)
    if family == "capsule":
        a = v3(-0.3, 0.3)
        return S.Capsule(a, (-a[0], -a[1], -a[2]), f(0.05, 0.15))
    if family == "cylinder":
        return S.Cylinder(f(0.05, 0.4), f(0.05, 0.4))
    if family == "superquadric":
        return S.Superquadric(v3(0.15, 0.45), f(0.2, 1.5), f(0.2, 1.5))
    if family == "csg_union":
        r = f(0.1, 0.25)
        return S.Sphere(r, (-0.15, 0.0, 0.0)) | S.Box(
            v3(0.08, 0.2), 0.02, (0.15, f(-0.1, 0.1), 0.0)
        )
    box = S.Box(v3(0.2, 0.4), rounding=0.03)
    return box - S.Cylinder(f(0.05, 0.8 * min(box.half_extents[:2])), 0.45)


def _procedural_candidates(config: CollectionConfig) -> list[_Candidate]:
    def loader(i: int):
        def load():
            from neural3d.mesh import extract_mesh

            return extract_mesh(
                procedural_shape(i, config.seed),
                0.55,
                config.procedural_resolution,
                0.0,
                normals="mesh",
            )

        return load

    return [
        _Candidate(f"{FAMILIES[i % len(FAMILIES)]}-{i:04d}", "procedural", loader(i))
        for i in range(config.procedural_shapes)
    ]


def _folder_candidates(folder: Path, cache_dir: Path) -> tuple[list[_Candidate], list]:
    from neural3d.data.meshes import MESH_SUFFIXES

    if not folder.is_dir():
        raise MpgymError(
            f"{folder} is not a folder; accepted sources: pybullet, procedural, "
            "or a folder of mesh files."
        )
    cache = cache_dir.resolve()
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and cache not in p.resolve().parents
    )
    cands, skipped = [], []
    for p in files:
        rel = p.relative_to(folder).as_posix()
        if p.suffix.lower() not in MESH_SUFFIXES:
            skipped.append((rel, f"not a mesh file (accepted: {' '.join(MESH_SUFFIXES)})"))
        else:
            cands.append(_Candidate(rel.replace("/", "__"), _stat(p), _mesh_loader(p)))
    return cands, skipped


def _candidates(
    source: str, config: CollectionConfig, cache_dir: Path
) -> tuple[str, list[_Candidate], list]:
    """``(source id, candidates in order, pre-split skips)``."""
    if source == "pybullet":
        return "pybullet", _pybullet_candidates(), []
    if source == "procedural":
        return "procedural", _procedural_candidates(config), []
    folder = Path(source).expanduser()
    if not folder.exists():
        raise MpgymError(
            f"unknown source {source!r}: not pybullet, procedural, or an existing folder of meshes."
        )
    cands, skipped = _folder_candidates(folder, cache_dir)
    return str(folder.resolve()), cands, skipped


# ----------------------------------------------------------------------------------------------
# the cache
# ----------------------------------------------------------------------------------------------


def check_config(config: CollectionConfig) -> None:
    """Raise :class:`MpgymError` for counts or noise levels no collection can use."""
    for name in ("n_surface", "n_sdf", "n_occupancy", "procedural_shapes"):
        v = getattr(config, name)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_SAMPLES:
            raise MpgymError(f"{name} must be a whole number in [1, {MAX_SAMPLES}]; got {v!r}.")
    if not (
        isinstance(config.procedural_resolution, int) and 16 <= config.procedural_resolution <= 512
    ):
        raise MpgymError(
            "procedural_resolution must be a whole number in [16, 512]; got "
            f"{config.procedural_resolution!r}."
        )
    if len(config.sdf_variances) != 2 or not all(
        math.isfinite(v) and v > 0 for v in config.sdf_variances
    ):
        raise MpgymError(
            f"sdf_variances must be two finite numbers > 0; got {config.sdf_variances!r}."
        )
    if not (math.isfinite(config.sdf_uniform_fraction) and 0 <= config.sdf_uniform_fraction < 1):
        raise MpgymError(
            f"sdf_uniform_fraction must lie in [0, 1); got {config.sdf_uniform_fraction!r}."
        )
    if not (math.isfinite(config.padding) and 0 <= config.padding <= 1):
        raise MpgymError(f"padding must lie in [0, 1]; got {config.padding!r}.")


def settings_key(source_id: str, config: CollectionConfig) -> str:
    """Hash of everything that changes the cached samples (16 hex digits)."""
    blob = json.dumps(
        {"version": CACHE_VERSION, "source": source_id, "config": asdict(config)}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _file_name(position: int, name: str) -> str:
    return f"{position:05d}-{re.sub(r'[^A-Za-z0-9._-]', '_', name)[:80]}.npz"


def _expected_bytes(config: CollectionConfig) -> int:
    n = 0
    for dtype, trail, count in _KEYS.values():
        k = getattr(config, count) if count else 2
        n += k * int(np.prod(trail, dtype=np.int64)) * np.dtype(dtype).itemsize
    return n


def save_cached_shape(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write one shape's arrays as an uncompressed ``.npz`` (no pickles), atomically."""
    from mpgym.checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    payload: dict[str, Any] = {k: np.ascontiguousarray(arrays[k], _KEYS[k][0]) for k in _KEYS}
    np.savez(buf, **payload)
    return atomic_write_bytes(path, buf.getvalue())


def load_cached_shape(path: str | Path, config: CollectionConfig, *, name: str = "") -> CachedShape:
    """Read a cached shape back, refusing anything but what :func:`save_cached_shape` writes.

    Checked before any array is read: the file size is bounded by what ``config`` implies, the
    archive holds exactly the expected names, and each member's size is bounded. Then every
    array must have the expected dtype and shape and finite values.

    Raises:
        MpgymError: naming the file and what is accepted.
    """
    import zipfile

    path = Path(path)
    accepted = (
        "accepted: an .npz written by `mpgym shapes prepare` with these settings "
        "(delete it and prepare again)"
    )
    limit = _expected_bytes(config) + 64 * 1024
    if not path.is_file():
        raise MpgymError(f"no cached shape at {path}; run `mpgym shapes prepare` first.")
    if path.stat().st_size > limit:
        raise MpgymError(
            f"{path} has {path.stat().st_size} bytes, more than the {limit} its "
            f"settings allow; {accepted}."
        )
    out: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            if set(npz.files) != set(_KEYS):
                raise ValueError(f"arrays {sorted(npz.files)[:10]}, expected {sorted(_KEYS)}")
            for key, (dtype, trail, count) in _KEYS.items():
                if npz.zip.getinfo(f"{key}.npy").file_size > limit:
                    raise ValueError(f"{key} is larger than its settings allow")
                arr = npz[key]
                n = getattr(config, count) if count else 2
                if arr.dtype != np.dtype(dtype) or arr.shape != (n, *trail):
                    raise ValueError(
                        f"{key} is {arr.dtype} {arr.shape}, expected "
                        f"{np.dtype(dtype)} {(n, *trail)}"
                    )
                if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                    raise ValueError(f"{key} has NaN or infinite values")
                out[key] = arr
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise MpgymError(
            f"{path} is not a usable cached shape ({str(exc)[:200]}); {accepted}."
        ) from None
    return CachedShape(name=name or path.stem, **out)


def _read_index(path: Path, key: str) -> dict[str, dict]:
    """Entries of a previous ``index.json`` of the same settings; {} if absent or unusable."""
    if not path.is_file():
        return {}
    try:
        if path.stat().st_size > MAX_INDEX_BYTES:
            raise ValueError("too large")
        data = json.loads(path.read_text("utf-8"))
        if data.get("key") != key or not isinstance(data.get("entries"), dict):
            raise ValueError("other settings")
        return {
            k: v
            for k, v in data["entries"].items()
            if isinstance(v, dict)
            and v.get("status") in ("ok", "repaired", "skipped")
            and isinstance(v.get("fingerprint"), str)
        }
    except (ValueError, OSError, AttributeError) as exc:
        log.warning("ignoring the cache index %s (%s); shapes will be sampled again", path, exc)
        return {}


def _write_index(
    path: Path, key: str, source_id: str, config: CollectionConfig, entries: dict[str, dict]
) -> None:
    from mpgym.checkpoint import atomic_write_text

    atomic_write_text(
        path,
        json.dumps(
            {
                "version": CACHE_VERSION,
                "key": key,
                "source": source_id,
                "config": asdict(config),
                "entries": entries,
            },
            indent=1,
        ),
    )


def _prepare_one(cand: _Candidate, position: int, config: CollectionConfig, path: Path) -> dict:
    """Load, repair, normalise, sample and cache one candidate; its index entry."""
    from neural3d.data.meshes import normalize_mesh

    try:
        mesh, repaired = make_watertight(cand.load(), cand.name)
        arrays = sample_shape(
            normalize_mesh(mesh), config, np.random.default_rng([config.seed, position])
        )
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 -- a bad mesh is skipped and counted, never fatal
        reason = str(exc) if isinstance(exc, MpgymError) else f"{type(exc).__name__}: {exc}"
        log.info("skipping %s: %s", cand.name, reason[:300])
        return {"fingerprint": cand.fingerprint, "status": "skipped", "reason": reason[:500]}
    save_cached_shape(path, arrays)
    return {"fingerprint": cand.fingerprint, "status": "repaired" if repaired else "ok"}


def _is_fresh(entry: dict, fingerprint: str, path: Path) -> bool:
    """Whether an index entry still describes the candidate (and its file is there)."""
    if entry["fingerprint"] != fingerprint:
        return False
    return entry["status"] == "skipped" or (path.is_file() and path.stat().st_size > 0)


def prepare_collection(
    source: str = "pybullet",
    config: CollectionConfig | None = None,
    *,
    limit: int | None = None,
    cache_dir: str | Path = DEFAULT_CACHE,
    progress_bar: bool = True,
) -> ShapeCollection:
    """Normalise, split, sample and cache a shape collection (instant when already cached).

    Args:
        source: ``"pybullet"``, ``"procedural"`` or a folder of mesh files.
        config: what to sample (:class:`CollectionConfig`).
        limit: keep only this many shapes, drawn from every split (:func:`limit_positions`).
        cache_dir: parent folder of the caches.
        progress_bar: show a progress bar on a terminal.

    Returns:
        The :class:`ShapeCollection`.

    Raises:
        MpgymError: an unknown source, bad settings, or fewer usable shapes than the split
            needs (one per split at least).
    """
    import time

    from mpgym.progress import progress

    t0 = time.perf_counter()
    config = config or CollectionConfig()
    check_config(config)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 3):
        raise MpgymError(
            f"--limit must be a whole number >= 3 (one shape per split); got {limit!r}."
        )
    cache_dir = Path(cache_dir)
    source_id, cands, skipped = _candidates(str(source), config, cache_dir)
    split_sizes(len(cands))  # too small before any work
    key = settings_key(source_id, config)
    label = source if source in ("pybullet", "procedural") else Path(source_id).name or "folder"
    root = cache_dir / f"{re.sub(r'[^A-Za-z0-9._-]', '_', label)[:40]}-{key}"
    index_path = root / "index.json"
    entries = _read_index(index_path, key)
    records, computed = [], 0
    keep = limit_positions(len(cands), limit)
    bar = progress(total=len(keep), desc=f"shapes ({label})", enable=progress_bar, unit="shape")
    try:
        for pos in keep:
            cand = cands[pos]
            path = root / _file_name(pos, cand.name)
            entry = entries.get(cand.name)
            if entry is None or not _is_fresh(entry, cand.fingerprint, path):
                entry = entries[cand.name] = _prepare_one(cand, pos, config, path)
                computed += 1
                if computed % 50 == 0:
                    _write_index(index_path, key, source_id, config, entries)
            if entry["status"] == "skipped":
                skipped.append((cand.name, entry.get("reason", "")))
            else:
                records.append(
                    ShapeRecord(
                        cand.name,
                        pos,
                        split_of(pos, len(cands)),
                        path,
                        entry["status"] == "repaired",
                    )
                )
            bar.update(1)
    finally:
        bar.close()
        if computed:
            _write_index(index_path, key, source_id, config, entries)
    coll = ShapeCollection(
        str(source),
        root,
        config,
        tuple(records),
        tuple(skipped),
        computed=computed,
        reused=len(keep) - computed,
        seconds=time.perf_counter() - t0,
    )
    empty = [s for s in SPLITS if not coll.split(s)]  # type: ignore[arg-type]
    if empty:
        raise MpgymError(
            f"the collection {source} has {len(records)} usable shape(s) "
            f"({len(skipped)} skipped) and none in the {', '.join(empty)} "
            "split; at least one usable mesh per split (3 or more) is needed."
        )
    log.info("%s", coll.summary())
    return coll
