"""Next-best-view planning: choose depth-camera views of an object to observe its surface.

An object (a procedural shape, one of the pybullet ``random_urdfs`` meshes, a built-in shape or a
mesh file; normalised to a bounding box centred at the origin with longest side 1) sits inside a
sphere of ``n_views`` cameras (a Fibonacci sphere of radius ``radius`` looking at the centre).
Each step the agent picks a view; the env ray-casts a small depth image from it (Open3D's
``RaycastingScene``) and fuses it into a coarse voxel grid of free / occupied / unknown space
(:mod:`neural3d.fusion`). The reward is the fraction of the object's surface newly observed.

Ground truth, precomputed once per shape and cached in memory: ``n_points`` points sampled
uniformly on the surface, and the boolean matrix ``(n_views, n_points)`` of which view sees
which point (inside the image, nothing nearer on the ray from the camera within
``occlusion_tol``). Reward, coverage and the greedy oracle are exact lookups in it; the grid
update of a view is computed on its first visit and cached too, so a step takes well under a
millisecond once a shape's views have been seen.

Baselines (policies with ``predict(obs, deterministic=True) -> (action, None)`` as the agents
have): :class:`RandomViews`, :class:`FarthestView` (the unvisited view farthest from the
visited ones) and :class:`GreedyOracle` (the largest true coverage gain, from the env's ground
truth); :func:`mean_coverage` runs one over episodes.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from mpgym.errors import MpgymError
from neural3d import fusion

log = logging.getLogger(__name__)

GRID_HALF_SIDE = 0.55
"""The voxel grid covers ``[-0.55, 0.55]^3``: the unit cube with OccNet's 0.1 padding."""
SOURCES = ("procedural", "pybullet")
"""Shape collections (:mod:`neural3d.data.collections`); a built-in shape name or a mesh file
also work."""
RENDER_SIZE = 320
"""Side of the ``rgb_array`` frames in pixels."""
_SURFACE_SEED = 20_240_607
"""Salt of the per-shape surface sampling seed (``default_rng([salt, position])``)."""


@dataclass(frozen=True)
class NBVConfig:
    """Views, sensor, grid, ground truth and episode settings of :class:`NextBestViewEnv`."""

    n_views: int = 48
    """Candidate views on the sphere (the action count)."""
    radius: float = 2.0
    """Camera distance to the object's centre (the object fits in a ball of radius 0.87)."""
    fov_deg: float = 55.0
    """Field of view; 55 degrees at radius 2 keeps the whole unit cube in every image."""
    image_size: int = 64
    """Depth image width and height in pixels."""
    grid_size: int = 32
    """Voxels per axis of the fused grid over ``[-0.55, 0.55]^3``."""
    grid_encoding: Literal["labels", "onehot"] = "labels"
    """``labels``: uint8 ``(G, G, G)`` of 0 unknown, 1 free, 2 occupied; ``onehot``: float32
    ``(3, G, G, G)`` with those three as channels (for 3D convolutions)."""
    depth: Literal["none", "last"] = "none"
    """``last``: add the last depth image to the observation."""
    n_points: int = 4096
    """Surface points of the coverage ground truth."""
    occlusion_tol: float = 0.005
    """A point is seen when nothing on the ray to it is nearer than this (unit-cube units)."""
    budget: int = 10
    """Views per episode (``truncated`` after this many steps); at most ``n_views``."""
    coverage_threshold: float = 0.95
    """``terminated`` once the coverage reaches this."""
    first_view: Literal["agent", "random"] = "agent"
    """``agent``: the episode starts with nothing seen; ``random``: ``reset`` takes one random
    view (counted in the budget, not rewarded)."""
    cache_shapes: int = 128
    """Shapes whose ground truth is kept in memory (least recently used dropped first)."""


@dataclass
class ShapeData:
    """A shape's mesh caster and ground truth (arrays over ``P = n_points``, ``V = n_views``)."""

    name: str
    """The shape's name (``torus-0162``, ``pybullet-042``, ``sphere`` or the file)."""
    cast: fusion.MeshRayCaster
    """First hits on its mesh."""
    points: np.ndarray  # (P, 3) float32 surface points
    normals: np.ndarray  # (P, 3) float32 face normals at them
    visibility: np.ndarray  # (V, P) bool: view v sees point p
    observable: np.ndarray  # (P,) bool: some view sees it
    grid_updates: dict[int, tuple[np.ndarray, np.ndarray]]
    """View -> packed ``(free, occupied)`` bit masks over the ``G^3`` voxels (filled lazily)."""


class _UnreadableShape(MpgymError):
    """A shape's mesh that cannot be read (random draws skip it)."""


@dataclass(frozen=True)
class ShapeRef:
    """A shape of a source before it is loaded."""

    name: str
    """Its name."""
    position: int
    """Place in its source (seeds its surface samples)."""
    load: Callable[[], Any]
    """-> the normalised ``trimesh.Trimesh``."""


class NextBestViewEnv(gym.Env):
    """Pick the views of a depth camera that observe the most of an object's surface.

    ## Description
    A shape drawn per episode from a collection's split is normalised into the unit cube. The
    camera can stand at ``n_views`` fixed points of a Fibonacci sphere of radius ``radius``,
    looking at the centre (``view_directions``). Each view gives a ``image_size^2`` depth image
    that is fused into a voxel grid (:mod:`neural3d.fusion`: free along each ray up to its hit,
    occupied at the hit voxel; occupied wins over free).

    ## Action Space
    ``Discrete(n_views)``: the next view. Revisiting a view is allowed and earns 0; the unvisited
    views are ``info["action_mask"]`` for agents that mask actions.

    ## Observation Space
    ``Dict``: ``grid`` -- ``Box(0, 2, (G, G, G), uint8)`` with 0 unknown, 1 free, 2 occupied,
    index ``[i, j, k]`` along x, y, z over ``[-0.55, 0.55]^3`` (``grid_encoding="onehot"``:
    ``Box(0, 1, (3, G, G, G), float32)``, channels unknown, free, occupied); ``visited`` --
    ``MultiBinary(n_views)``; with ``depth="last"``, ``depth`` -- ``Box(0, radius + 1,
    (S, S), float32)``, the last image's depth along the optical axis, 0 where the ray missed
    (and before any view).

    ## Starting State
    A shape drawn uniformly from the split with the env's RNG (``options={"shape": i}`` picks
    the ``i``-th of ``shape_names``); nothing seen (``first_view="random"``: one random view).

    ## Rewards
    The fraction of the *observable* surface points (those some view sees; ``info["observable"]``
    is their share of all points) that the chosen view sees for the first time. The rewards of an
    episode sum to its final ``info["coverage"]``.

    ## Episode End
    Terminates when the coverage reaches ``coverage_threshold`` (``info["is_success"]``);
    truncates after ``budget`` views.

    ## Arguments
    ``shapes``: ``"procedural"`` (default: the project's 200 random procedural shapes, split
    160/20/20), ``"pybullet"`` (the wheel's 1,000 ``random_urdfs`` meshes, split 800/100/100 as
    :mod:`neural3d.data.collections` splits them), a built-in shape name
    (:data:`neural3d.shapes.SHAPES`) or a mesh file (one shape, whatever the split); ``split``:
    ``"train"``, ``"val"`` or ``"test"``; ``config``: :class:`NBVConfig` or a dict of its fields;
    ``render_mode``: ``None`` or ``"rgb_array"`` (the surface points green where seen, the views
    as dots, numbered in order, the last depth image and the coverage).

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(self, shapes: str = "procedural", *, split: str = "train",
                 config: NBVConfig | dict | None = None, render_mode: str | None = None):
        import torch

        from neural3d.cameras import Intrinsics, look_at, pixel_rays

        self.config = cfg = check_config(config)
        if render_mode not in (None, "rgb_array"):
            raise MpgymError(f"render_mode {render_mode!r} is not supported; accepted: None, "
                             "'rgb_array'.")
        self.render_mode = render_mode
        self._refs = shape_refs(shapes, split)
        self.split = split
        self.shape_names = tuple(r.name for r in self._refs)
        # views: camera-to-world (V, 4, 4), OpenGL axes, and the rays of their pixels
        self.view_directions = fusion.fibonacci_sphere(cfg.n_views)
        self.c2w = np.stack([look_at(cfg.radius * v) for v in self.view_directions])
        self.intrinsics = Intrinsics.from_fov(math.radians(cfg.fov_deg), cfg.image_size)
        o, d = pixel_rays(torch.as_tensor(self.c2w), self.intrinsics)  # (V, S, S, 3) each
        self._ray_o = o.reshape(cfg.n_views, -1, 3).numpy().astype(np.float32)
        self._ray_d = d.reshape(cfg.n_views, -1, 3).numpy().astype(np.float32)
        forward = -self.c2w[:, None, :3, 2]  # (V, 1, 3)
        self._z_of_t = (self._ray_d * forward).sum(-1).astype(np.float32)  # (V, S*S)
        self._cache: OrderedDict[str, ShapeData] = OrderedDict()
        self.unusable: dict[str, str] = {}
        """Shapes of the split that could not be loaded (name -> why), skipped by random draws."""
        self.action_space = gym.spaces.Discrete(cfg.n_views)
        self.observation_space = gym.spaces.Dict(_obs_spaces(cfg))
        g3 = cfg.grid_size ** 3
        self.shape: ShapeData | None = None
        self._free, self._occupied = np.zeros(g3, bool), np.zeros(g3, bool)
        self._seen = np.zeros(cfg.n_points, bool)
        self._visited = np.zeros(cfg.n_views, np.int8)
        self._depth = np.zeros((cfg.image_size,) * 2, np.float32)
        self.history: list[int] = []
        self._n_seen = 0

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Draw a shape (or ``options["shape"]``), forget all views."""
        super().reset(seed=seed)
        which = (options or {}).get("shape")
        if which is None:
            self.shape = self._draw_shape()
        elif not (isinstance(which, (int, np.integer)) and 0 <= which < len(self._refs)):
            raise MpgymError(f"options['shape'] must be an integer in [0, {len(self._refs) - 1}] "
                             f"(an index into shape_names); got {which!r}.")
        else:
            self.shape = self._shape_data(self._refs[int(which)])
        self._free[:], self._occupied[:], self._seen[:], self._visited[:] = False, False, False, 0
        self._depth[:] = 0.0
        self.history, self._n_seen = [], 0
        if self.config.first_view == "random":
            self._take_view(int(self.np_random.integers(self.config.n_views)))
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool,
                                         dict[str, Any]]:
        """Take the view ``action``; reward the newly seen share of the observable surface."""
        if self.shape is None:
            raise MpgymError("call reset() before step().")
        arr = np.asarray(action)
        if arr.size != 1 or arr.dtype.kind not in "iu" or not 0 <= arr.item() < len(self.c2w):
            raise MpgymError(f"action must be a view index, an integer in "
                             f"[0, {len(self.c2w) - 1}]; got {action!r}.")
        a = int(arr.item())
        new = self._take_view(a)
        reward = new / self._n_observable
        coverage = self._n_seen / self._n_observable
        terminated = coverage >= self.config.coverage_threshold
        truncated = not terminated and len(self.history) >= self.config.budget
        info = self._info()
        info.update(view=a, new_points=new, is_success=terminated)
        return self._obs(), float(reward), bool(terminated), bool(truncated), info

    def render(self) -> np.ndarray | None:
        """An RGB frame ``(RENDER_SIZE, RENDER_SIZE, 3)`` uint8 (None without ``rgb_array``)."""
        if self.render_mode != "rgb_array" or self.shape is None:
            return None
        return render_frame(self.shape, self._seen, self.view_directions, self.history,
                            self._depth, self.coverage, self.config.budget)

    # ------------------------------------------------------------------ ground truth
    @property
    def coverage(self) -> float:
        """Share of the observable surface points seen so far."""
        return self._n_seen / self._n_observable if self.shape is not None else 0.0

    def coverage_gains(self) -> np.ndarray:
        """``(n_views,)`` float: the reward each view would earn now (the greedy oracle's)."""
        if self.shape is None:
            raise MpgymError("call reset() before coverage_gains().")
        unseen = self.shape.observable & ~self._seen
        return self.shape.visibility[:, unseen].sum(axis=1) / self._n_observable

    @property
    def _n_observable(self) -> int:
        assert self.shape is not None
        return int(self.shape.observable.sum())

    def _take_view(self, a: int) -> int:
        """Fuse view ``a`` and mark its points seen; the number of points newly seen."""
        assert self.shape is not None
        vis = self.shape.visibility[a]
        new = int((vis & ~self._seen).sum())
        self._seen |= vis
        self._n_seen += new
        free, occupied = self._grid_update(a)
        g3 = self.config.grid_size ** 3
        self._free |= np.unpackbits(free, count=g3).view(bool)
        self._occupied |= np.unpackbits(occupied, count=g3).view(bool)
        self._visited[a] = 1
        self.history.append(a)
        if self.config.depth == "last" or self.render_mode is not None:
            t = self.shape.cast(self._ray_o[a], self._ray_d[a])
            z = np.where(np.isfinite(t), t * self._z_of_t[a], 0.0)
            self._depth = z.reshape(self._depth.shape).astype(np.float32)
        return new

    def _grid_update(self, a: int) -> tuple[np.ndarray, np.ndarray]:
        """Packed ``(free, occupied)`` voxel masks of view ``a`` on this shape (cached)."""
        assert self.shape is not None
        cached = self.shape.grid_updates.get(a)
        if cached is None:
            t = self.shape.cast(self._ray_o[a], self._ray_d[a])
            free, occupied = fusion.fuse_rays(self._ray_o[a], self._ray_d[a], t, -GRID_HALF_SIDE,
                                              GRID_HALF_SIDE, self.config.grid_size)
            cached = self.shape.grid_updates[a] = (np.packbits(free), np.packbits(occupied))
        return cached

    def _draw_shape(self) -> ShapeData:
        """A shape drawn uniformly from the split's usable ones.

        A mesh that cannot be read (pybullet's ``168.obj`` holds no triangles) keeps its place in
        the split, as in :mod:`neural3d.data.collections`, and is drawn again instead; it is
        remembered in ``unusable`` (name -> reason) and never loaded twice.
        """
        while True:
            ref = self._refs[int(self.np_random.integers(len(self._refs)))]
            if ref.name in self.unusable:
                if len(self.unusable) == len(self._refs):
                    raise MpgymError(f"no shape of the {self.split!r} split can be used: "
                                     + "; ".join(self.unusable.values()))
                continue
            try:
                return self._shape_data(ref)
            except _UnreadableShape as exc:
                self.unusable[ref.name] = str(exc)

    def _shape_data(self, ref: ShapeRef) -> ShapeData:
        """Load ``ref`` and compute its ground truth, or take it from the in-memory cache."""
        from neural3d.data.sampling import sample_surface

        if ref.name in self._cache:
            self._cache.move_to_end(ref.name)
            return self._cache[ref.name]
        cfg = self.config
        try:
            mesh = ref.load()
        except MpgymError as exc:
            raise _UnreadableShape(str(exc)) from None
        cast = fusion.MeshRayCaster(mesh.vertices, mesh.faces)
        surf = sample_surface(mesh, cfg.n_points, np.random.default_rng([_SURFACE_SEED,
                                                                          ref.position]))
        vis = fusion.point_visibility(cast, surf.points, self.c2w, fx=self.intrinsics.fx,
                                      fy=self.intrinsics.fy, width=cfg.image_size,
                                      height=cfg.image_size, tol=cfg.occlusion_tol)
        if not vis.any():
            raise MpgymError(f"no view sees any point of the shape {ref.name}; the views (radius "
                             f"{cfg.radius}, fov {cfg.fov_deg} deg) must look at the unit cube.")
        observable = np.asarray(vis.any(axis=0))
        data = ShapeData(ref.name, cast, surf.points, surf.normals, vis, observable, {})
        log.debug("%s: %d faces, %.1f %% of its surface observable", ref.name, len(mesh.faces),
                  100 * data.observable.mean())
        self._cache[ref.name] = data
        while len(self._cache) > cfg.cache_shapes:
            self._cache.popitem(last=False)
        return data

    # ------------------------------------------------------------------ observation
    def _obs(self) -> dict[str, np.ndarray]:
        g = self.config.grid_size
        labels = fusion.grid_labels(self._free, self._occupied).reshape(g, g, g)
        if self.config.grid_encoding == "onehot":
            grid: np.ndarray = np.stack([labels == c for c in range(3)]).astype(np.float32)
        else:
            grid = labels
        obs = {"grid": grid, "visited": self._visited.copy()}
        if self.config.depth == "last":
            obs["depth"] = self._depth.copy()
        return obs

    def _info(self) -> dict[str, Any]:
        assert self.shape is not None
        return {"shape": self.shape.name, "coverage": self.coverage, "views": len(self.history),
                "observable": float(self.shape.observable.mean()),
                "action_mask": (1 - self._visited).astype(np.int8)}


def _obs_spaces(cfg: NBVConfig) -> dict[str, gym.Space]:
    g = cfg.grid_size
    spaces: dict[str, gym.Space] = {
        "grid": gym.spaces.Box(0, 2, (g, g, g), np.uint8) if cfg.grid_encoding == "labels"
        else gym.spaces.Box(0.0, 1.0, (3, g, g, g), np.float32),
        "visited": gym.spaces.MultiBinary(cfg.n_views),
    }
    if cfg.depth == "last":
        size = (cfg.image_size, cfg.image_size)
        spaces["depth"] = gym.spaces.Box(0.0, cfg.radius + 1.0, size, np.float32)
    return spaces


# ---------------------------------------------------------------------- configuration and shapes
_RANGES = {  # field -> (lowest, highest) for whole numbers
    "n_views": (1, 10_000), "image_size": (2, 1024), "grid_size": (2, 256),
    "n_points": (1, 1_000_000), "budget": (1, 10_000), "cache_shapes": (1, 100_000)}


def check_config(config: Any) -> NBVConfig:
    """An :class:`NBVConfig` from one or a dict of its fields; :class:`MpgymError` when unusable."""
    from mpgym.configs import check_ranges, check_types, config_from_dict

    if config is None:
        return NBVConfig()
    if isinstance(config, dict):
        config = config_from_dict(NBVConfig, config)
    elif isinstance(config, NBVConfig):
        check_types(config)
    else:
        raise MpgymError(f"config must be an NBVConfig or a dict; got {type(config).__name__}.")
    c: NBVConfig = config
    check_ranges(c, ints=_RANGES, positive=("radius", "fov_deg", "occlusion_tol",
                                            "coverage_threshold"),
                 unit=("occlusion_tol", "coverage_threshold"))
    if c.budget > c.n_views:
        raise MpgymError(f"NBVConfig.budget {c.budget} is larger than the {c.n_views} views; "
                         "a budget of at most n_views is accepted (a revisit earns nothing).")
    reach = math.sqrt(3) * GRID_HALF_SIDE
    if c.radius <= reach or c.fov_deg >= 180:
        raise MpgymError(f"NBVConfig.radius {c.radius} / fov_deg {c.fov_deg}: cameras must stand "
                         f"outside the grid (radius > {reach:.3f}) and see ahead (fov_deg < 180).")
    return c


def shape_refs(shapes: str, split: str) -> list[ShapeRef]:
    """The shapes of ``shapes`` in ``split``, unloaded (a mesh file is loaded now, to check it).

    Raises:
        MpgymError: an unknown split or source, a missing pybullet wheel, a file that is not a
            usable mesh.
    """
    from neural3d.data import collections as C
    from neural3d.shapes import SHAPES

    if split not in C.SPLITS:
        raise MpgymError(f"unknown split {split!r}; accepted: {', '.join(C.SPLITS)}.")
    if shapes == "procedural":
        cc = C.CollectionConfig()
        n = cc.procedural_shapes
        return [ShapeRef(f"{C.FAMILIES[i % len(C.FAMILIES)]}-{i:04d}", i,
                         functools.partial(_procedural_mesh, i, cc.seed, cc.procedural_resolution))
                for i in range(n) if C.split_of(i, n) == split]
    if shapes == "pybullet":
        root = C.pybullet_mesh_dir()
        dirs = sorted(p for p in root.glob("[0-9][0-9][0-9]") if p.is_dir())
        if not dirs:
            raise MpgymError(f"no meshes in {root}; the pybullet wheel should ship "
                             f"{C.PYBULLET_SHAPES} under random_urdfs/NNN/NNN.obj.")
        return [ShapeRef(f"pybullet-{d.name}", i,
                         functools.partial(_pybullet_mesh, d / f"{d.name}.obj"))
                for i, d in enumerate(dirs) if C.split_of(i, len(dirs)) == split]
    if shapes in SHAPES:
        return [ShapeRef(shapes, 0, functools.partial(_builtin_mesh, shapes))]
    accepted = (f"accepted: {', '.join(SOURCES)}, a built-in shape ({', '.join(SHAPES)}) or a "
                "mesh file")
    if isinstance(shapes, (str, Path)) and (Path(shapes).suffix or Path(shapes).exists()):
        from neural3d.data.meshes import load_mesh

        try:
            mesh = load_mesh(shapes)
        except MpgymError as exc:
            raise MpgymError(f"shapes={str(shapes)!r} cannot be used: {exc} ({accepted})") from None
        return [ShapeRef(Path(shapes).name, 0, lambda: mesh)]
    raise MpgymError(f"unknown shapes {shapes!r}; {accepted}.")


def _procedural_mesh(i: int, seed: int, resolution: int) -> Any:
    """Procedural shape ``i`` of the collection, meshed as the collection meshes it."""
    from neural3d.data.collections import procedural_shape

    return _normalized_surface(procedural_shape(i, seed), resolution)


def _builtin_mesh(name: str) -> Any:
    from neural3d.shapes import get_shape

    return _normalized_surface(get_shape(name), 64)


def _normalized_surface(shape: Any, resolution: int) -> Any:
    from neural3d.data.meshes import normalize_mesh
    from neural3d.mesh import extract_mesh

    return normalize_mesh(extract_mesh(shape, 0.55, resolution, 0.0, normals="mesh"))


def _pybullet_mesh(path: Path) -> Any:
    """A pybullet object: its overlapping closed parts united (no hidden inner surfaces)."""
    from neural3d.data.collections import union_parts
    from neural3d.data.meshes import load_mesh, normalize_mesh

    return normalize_mesh(union_parts(load_mesh(path, normalize=False)))


# ---------------------------------------------------------------------- rendering
def _project(points: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Fixed oblique orthographic view (azimuth 35, elevation 25 degrees): pixels, depth."""
    az, el = math.radians(35.0), math.radians(25.0)
    right = np.array([-math.sin(az), math.cos(az), 0.0])
    toward = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    up = np.cross(toward, right)
    half = RENDER_SIZE / 2
    px = np.stack([half + scale * points @ right, half - scale * points @ up], axis=-1)
    return px, -(points @ toward)  # larger depth: farther from the viewer


def render_frame(shape: ShapeData, seen: np.ndarray, view_directions: np.ndarray,
                 history: list[int], depth: np.ndarray, coverage: float, budget: int
                 ) -> np.ndarray:
    """The frame of :meth:`NextBestViewEnv.render`: ``(RENDER_SIZE, RENDER_SIZE, 3)`` uint8.

    Surface points (green: seen, light grey: not yet, dark grey: no view sees them) shaded by
    their normals, the views as dots on a sphere around them (blue and numbered: visited, red:
    the last; those behind the object hidden by it), the last depth image in a corner and the
    coverage on top.
    """
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    scale = RENDER_SIZE / 2.2
    vpx, vz = _project(0.95 * view_directions, scale)
    im = Image.new("RGB", (RENDER_SIZE, RENDER_SIZE), (255, 255, 255))
    _draw_views(ImageDraw.Draw(im), vpx, history, vz > 0, font)  # behind the object
    px, z = _project(shape.points.astype(np.float64), scale)
    light = np.array([0.3, -0.4, 0.85]) / np.linalg.norm([0.3, -0.4, 0.85])
    shade = 0.45 + 0.55 * np.abs(shape.normals @ light)
    base = np.where(seen[:, None], [46, 160, 67],
                    np.where(shape.observable[:, None], [205, 205, 205], [110, 110, 110]))
    img = np.array(im)
    _splat(img, px, z, (base * shade[:, None]).astype(np.uint8), radius=2)
    im = Image.fromarray(img)
    draw = ImageDraw.Draw(im)
    _draw_views(draw, vpx, history, vz <= 0, font)  # in front
    draw.text((8, 6), f"coverage {coverage:.1%}   views {len(history)}/{budget}",
              fill=(0, 0, 0), font=font)
    hit = depth > 0
    if hit.any():  # near: white, far: dark grey, no hit: black
        near, far = float(depth[hit].min()), float(depth[hit].max())
        d = np.where(hit, 1.0 - 0.8 * (depth - near) / max(far - near, 1e-6), 0.0)
        inset = Image.fromarray((d * 255).astype(np.uint8))
        inset = inset.resize((80, 80), Image.Resampling.NEAREST)
        im.paste(inset, (RENDER_SIZE - 86, RENDER_SIZE - 86))
        draw.text((RENDER_SIZE - 86, RENDER_SIZE - 104), "depth", fill=(0, 0, 0), font=font)
    return np.asarray(im)


def _splat(img: np.ndarray, px: np.ndarray, z: np.ndarray, colour: np.ndarray, *,
           radius: int) -> None:
    """Draw points ``(N, 2)`` pixels as discs into ``img`` ``(H, W, 3)``, the nearest on top."""
    r = np.arange(-radius, radius + 1)
    offsets = np.array([(dx, dy) for dx in r for dy in r if dx * dx + dy * dy <= radius * radius])
    pix = (np.round(px)[:, None, :] + offsets[None]).reshape(-1, 2).astype(np.int64)
    zz, cc = np.repeat(z, len(offsets)), np.repeat(colour, len(offsets), axis=0)
    ok = ((pix >= 0) & (pix < np.array([img.shape[1], img.shape[0]]))).all(axis=1)
    flat = pix[ok, 1] * img.shape[1] + pix[ok, 0]
    order = np.lexsort((zz[ok], flat))  # per pixel, nearest first
    first = np.unique(flat[order], return_index=True)[1]
    img.reshape(-1, 3)[flat[order][first]] = cc[ok][order][first]


def _draw_views(draw: Any, vpx: np.ndarray, history: list[int], which: np.ndarray,
                font: Any) -> None:
    """Dots for the views in ``which``: grey, or blue and numbered in order, red for the last."""
    order = {v: n for n, v in enumerate(history)}  # a revisited view keeps its last number
    for v in np.flatnonzero(which).tolist():
        x, y = vpx[v]
        if v not in order:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(170, 170, 170))
            continue
        r, fill = (6, (220, 40, 40)) if v == history[-1] else (4, (40, 90, 220))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        draw.text((x + 6, y - 8), str(order[v] + 1), fill=fill, font=font)


# ---------------------------------------------------------------------- baselines
class RandomViews:
    """A uniformly random unvisited view (any view once all are visited).

    Args:
        env: the env (only its action count is used).
        seed: seed of the policy's own generator.
    """

    def __init__(self, env: gym.Env, seed: int | None = None):
        self.n_views = int(env.action_space.n)  # type: ignore[attr-defined]
        self.rng = np.random.default_rng(seed)

    def predict(self, obs: dict[str, np.ndarray], deterministic: bool = True) -> tuple[int, None]:
        """A random view among the unvisited ones of ``obs["visited"]``."""
        free = np.flatnonzero(np.asarray(obs["visited"]) == 0)
        pool = free if len(free) else np.arange(self.n_views)
        return int(self.rng.choice(pool)), None


class FarthestView:
    """The unvisited view with the largest angle to its nearest visited view (first: random).

    Farthest-point sampling on the view sphere: it spreads the views evenly without looking at
    the object.

    Args:
        env: the env (its ``view_directions`` are used).
        seed: seed of the first, random view.
    """

    def __init__(self, env: gym.Env, seed: int | None = None):
        self.directions = np.asarray(env.unwrapped.view_directions)  # type: ignore[attr-defined]
        self.rng = np.random.default_rng(seed)

    def predict(self, obs: dict[str, np.ndarray], deterministic: bool = True) -> tuple[int, None]:
        """The view farthest from the visited ones of ``obs["visited"]``."""
        visited = np.asarray(obs["visited"]).astype(bool)
        if not visited.any():
            return int(self.rng.integers(len(self.directions))), None
        nearest = (self.directions @ self.directions[visited].T).max(axis=1)  # cos to nearest
        nearest[visited] = np.inf
        return int(np.argmin(nearest)), None


class GreedyOracle:
    """The view with the largest true coverage gain (from the env's ground truth).

    Args:
        env: a :class:`NextBestViewEnv`, wrapped or not; the policy reads its current state, so
            it acts only in that env.
    """

    def __init__(self, env: gym.Env):
        if not isinstance(env.unwrapped, NextBestViewEnv):
            raise MpgymError(f"GreedyOracle needs a NextBestViewEnv; got "
                             f"{type(env.unwrapped).__name__}.")
        self.env: NextBestViewEnv = env.unwrapped

    def predict(self, obs: dict[str, np.ndarray], deterministic: bool = True) -> tuple[int, None]:
        """``argmax`` of :meth:`NextBestViewEnv.coverage_gains` (ties: the lowest index)."""
        return int(np.argmax(self.env.coverage_gains())), None


def mean_coverage(env: gym.Env, policy: Any, n_episodes: int, *, views: int = 5, seed: int = 0,
                  shapes: Literal["random", "in_order"] = "random") -> float:
    """Mean coverage after ``views`` views (or at an earlier episode end) over ``n_episodes``.

    Args:
        env: a :class:`NextBestViewEnv` (wrapped or not).
        policy: anything with ``predict(obs) -> (action, state)``; an mpgym agent trained with
            ``action_masks`` also gets ``action_masks=info["action_mask"]``.
        n_episodes: episodes; episode ``i`` resets with ``seed + i``.
        views: views per episode, at most the env's budget.
        seed: first reset seed.
        shapes: ``random`` (the env draws) or ``in_order`` (episode ``i`` on ``shape_names[i]``,
            ``n_episodes`` at most their count).
    """
    base: NextBestViewEnv = env.unwrapped  # type: ignore[assignment]
    if not 1 <= views <= base.config.budget:
        raise MpgymError(f"views must be in [1, {base.config.budget}] (the env's budget); "
                         f"got {views}.")
    if shapes == "in_order" and not 1 <= n_episodes <= len(base.shape_names):
        raise MpgymError(f"n_episodes must be in [1, {len(base.shape_names)}] with "
                         f"shapes='in_order'; got {n_episodes}.")
    total = 0.0
    for i in range(n_episodes):
        options = {"shape": i} if shapes == "in_order" else None
        obs, info = env.reset(seed=seed + i, options=options)
        for _ in range(views - len(base.history)):
            # an agent trained with action masks gets the env's (the unvisited views)
            masked = getattr(getattr(policy, "config", None), "action_masks", False)
            masks = {"action_masks": info["action_mask"]} if masked else {}
            obs, _, terminated, truncated, info = env.step(policy.predict(obs, **masks)[0])
            if terminated or truncated:
                break
        total += info["coverage"]
    return total / n_episodes
