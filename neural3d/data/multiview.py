"""Multi-view datasets in the NeRF-synthetic (Blender) layout: read, write, render.

Layout (what NeRF-synthetic scenes and colmap2nerf-style folders hold)::

    DIR/transforms_train.json   {"camera_angle_x": 0.6911, "frames": [{"file_path":
    DIR/transforms_val.json       "./train/r_0", "transform_matrix": [[...4x4...]]}, ...]}
    DIR/transforms_test.json
    DIR/train/r_0.png ...        RGBA PNGs (alpha = coverage)

``file_path`` may omit ``.png`` (as NeRF-synthetic's does); poses are camera-to-world in OpenGL
axes (see :mod:`neural3d.cameras`). A single ``transforms.json`` (colmap2nerf / Instant-NGP) is
read as the ``train`` split; its optional ``fl_x, fl_y, cx, cy, w, h`` override
``camera_angle_x``.

:func:`render_dataset` ray-casts a mesh with Open3D's ``RaycastingScene`` (CPU): albedo from
vertex colours or a procedural texture, Lambertian shading with ambient light plus a
Blinn-Phong specular term (so colour depends on the view direction), 2x2 supersampling for
anti-aliased edges and alpha.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from mpgym.checkpoint import atomic_write_text
from mpgym.errors import MpgymError
from neural3d.cameras import Intrinsics, look_at, sphere_poses
from neural3d.data.scenes import TexturedScene

log = logging.getLogger(__name__)

__all__ = [
    "MultiviewData",
    "RenderDatasetConfig",
    "check_scene_visible",
    "load_split",
    "render_dataset",
    "render_views",
    "write_split",
]

Background = Literal["white", "black", "random"]

NERF_SYNTHETIC_ANGLE = 0.6911112070083618
"""``camera_angle_x`` of the NeRF-synthetic scenes (about 39.6 degrees)."""


@dataclass
class MultiviewData:
    """One split: RGBA images and their cameras."""

    images: np.ndarray
    """``(N, H, W, 4)`` float32 RGBA in [0, 1] (alpha 1 when the files have none)."""
    c2w: np.ndarray
    """``(N, 4, 4)`` float32 camera-to-world, OpenGL axes."""
    intrinsics: Intrinsics
    """Shared pinhole intrinsics."""
    files: list[Path] = field(default_factory=list)
    """The image file of each view."""

    def __len__(self) -> int:
        return len(self.images)

    def rgb(self, background: Literal["white", "black"] = "white") -> np.ndarray:
        """``(N, H, W, 3)`` colours composited over a white or black background."""
        bg = 1.0 if background == "white" else 0.0
        a = self.images[..., 3:]
        return self.images[..., :3] * a + bg * (1 - a)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise MpgymError(f"missing {path.name} in {path.parent}; a NeRF-synthetic folder has "
                         "transforms_train.json, transforms_val.json and transforms_test.json "
                         "(or one transforms.json).")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MpgymError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise MpgymError(f"{path}: field 'frames' is missing or empty; expected a list of "
                         "{'file_path', 'transform_matrix'} entries.")
    return meta


def _intrinsics(meta: dict, path: Path, width: int, height: int) -> Intrinsics:
    if "fl_x" in meta:
        sx, sy = width / meta.get("w", width), height / meta.get("h", height)
        fx = float(meta["fl_x"]) * sx
        fy = float(meta.get("fl_y", meta["fl_x"])) * sy
        cx = float(meta.get("cx", meta.get("w", width) / 2)) * sx
        cy = float(meta.get("cy", meta.get("h", height) / 2)) * sy
        return Intrinsics(width, height, fx, fy, cx, cy)
    angle = meta.get("camera_angle_x")
    if not isinstance(angle, (int, float)) or not 0 < angle < math.pi:
        raise MpgymError(f"{path}: field 'camera_angle_x' is {angle!r}; expected the horizontal "
                         "field of view in radians, in (0, pi) (or fl_x/fl_y/cx/cy).")
    return Intrinsics.from_fov(float(angle), width, height)


def _frame_file(root: Path, frame: dict, path: Path, i: int) -> Path:
    fp = frame.get("file_path")
    if not isinstance(fp, str):
        raise MpgymError(f"{path}: frames[{i}] has no 'file_path' string.")
    f = (root / fp).resolve()
    if f.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        f = f.with_name(f.name + ".png")
    if not f.is_file():
        raise MpgymError(f"{path}: frames[{i}].file_path {fp!r} -> {f} does not exist.")
    return f


def _frame_pose(frame: dict, path: Path, i: int) -> np.ndarray:
    try:
        m = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (KeyError, ValueError, TypeError):
        raise MpgymError(f"{path}: frames[{i}].transform_matrix is missing or not numeric; "
                         "expected a 4x4 camera-to-world matrix.") from None
    if m.shape != (4, 4):
        raise MpgymError(f"{path}: frames[{i}].transform_matrix has shape {m.shape}; expected 4x4.")
    if not np.isfinite(m).all():
        raise MpgymError(f"{path}: frames[{i}].transform_matrix contains NaN or infinity.")
    return m


def load_split(root: str | Path, split: str = "train", *, downscale: int = 1,
               max_views: int | None = None) -> MultiviewData:
    """Read one split of a NeRF-synthetic-layout folder.

    Args:
        root: the folder holding ``transforms_<split>.json`` (or ``transforms.json``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        downscale: integer factor to shrink images by (area averaging), e.g. 4 for 800 -> 200.
        max_views: keep only the first views.

    Raises:
        MpgymError: missing/invalid JSON or fields, missing images, mixed image sizes, NaNs.
    """
    from PIL import Image

    root = Path(root)
    path = root / f"transforms_{split}.json"
    if not path.is_file() and (root / "transforms.json").is_file() and split == "train":
        path = root / "transforms.json"
    meta = _read_json(path)
    frames = meta["frames"][:max_views] if max_views else meta["frames"]
    images, poses, files = [], [], []
    size = None
    for i, fr in enumerate(frames):
        f = _frame_file(root, fr, path, i)
        poses.append(_frame_pose(fr, path, i))
        im = Image.open(f).convert("RGBA")
        if size is None:
            size = im.size
        elif im.size != size:
            raise MpgymError(f"{path}: image {f.name} is {im.size[0]}x{im.size[1]} but earlier "
                             f"ones are {size[0]}x{size[1]}; all views must have one size.")
        if downscale > 1:
            im = im.resize((im.width // downscale, im.height // downscale), Image.BOX)
        images.append(np.asarray(im, dtype=np.float32) / 255.0)
        files.append(f)
    assert size is not None
    imgs = np.stack(images)
    intr = _intrinsics(meta, path, size[0], size[1])
    if downscale > 1:
        intr = intr.scaled(imgs.shape[2] / size[0])
    return MultiviewData(imgs, np.stack(poses).astype(np.float32), intr, files)


def write_split(root: str | Path, split: str, images: np.ndarray, c2w: np.ndarray,
                intr: Intrinsics) -> Path:
    """Write RGBA ``images (N, H, W, 4)`` in [0, 1] and poses as ``transforms_<split>.json``."""
    from PIL import Image

    root = Path(root)
    (root / split).mkdir(parents=True, exist_ok=True)
    frames = []
    for i, (img, pose) in enumerate(zip(images, c2w, strict=True)):
        Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8), "RGBA").save(
            root / split / f"r_{i}.png")
        frames.append({"file_path": f"./{split}/r_{i}",
                       "transform_matrix": np.asarray(pose).tolist()})
    meta = {"camera_angle_x": intr.camera_angle_x, "frames": frames}
    return atomic_write_text(root / f"transforms_{split}.json", json.dumps(meta, indent=2))


def render_views(scene: TexturedScene, c2w: np.ndarray, intr: Intrinsics, *,
                 supersample: int = 2, light_dir: tuple[float, float, float] = (0.4, -0.5, 0.8),
                 specular: float = 0.35, shininess: float = 32.0) -> np.ndarray:
    """Ray-cast ``scene`` from each camera: ``(N, H, W, 4)`` float32 RGBA.

    Shading: ``albedo * (0.25 + 0.75 max(0, n.l)) + specular * max(0, n.h)^shininess`` with a
    directional light ``l`` and the half-vector ``h`` of ``l`` and the view direction.
    """
    import open3d as o3d
    import torch

    from neural3d.cameras import pixel_rays

    mesh = scene.mesh
    rc = o3d.t.geometry.RaycastingScene()
    rc.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
                     o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)))
    big = intr.scaled(supersample)
    light = np.asarray(light_dir, dtype=np.float64)
    light /= np.linalg.norm(light)
    out = []
    for pose in c2w:
        o, d = pixel_rays(torch.as_tensor(pose, dtype=torch.float64), big)
        rays = np.concatenate([o.numpy(), d.numpy()], -1).reshape(-1, 6).astype(np.float32)
        hit = rc.cast_rays(o3d.core.Tensor(rays))
        t = hit["t_hit"].numpy()
        mask = np.isfinite(t)
        rgba = np.zeros((len(t), 4))
        if mask.any():
            dirs = rays[mask, 3:].astype(np.float64)
            pts = rays[mask, :3] + dirs * t[mask, None]
            faces = hit["primitive_ids"].numpy()[mask].astype(np.int64)
            n = hit["primitive_normals"].numpy()[mask].astype(np.float64)
            n = np.where(((n * dirs).sum(-1) > 0)[:, None], -n, n)  # two-sided: face the viewer
            albedo = scene.albedo(pts, faces, hit["primitive_uvs"].numpy()[mask])
            diffuse = 0.25 + 0.75 * np.clip(n @ light, 0, None)
            h = light - dirs
            h /= np.linalg.norm(h, axis=-1, keepdims=True)
            spec = specular * np.clip((n * h).sum(-1), 0, None) ** shininess
            rgba[mask, :3] = np.clip(albedo * diffuse[:, None] + spec[:, None], 0, 1)
            rgba[mask, 3] = 1.0
        img = rgba.reshape(big.height, big.width, 4)
        s = supersample  # box-filter down; colour premultiplied then un-premultiplied
        pm = np.concatenate([img[..., :3] * img[..., 3:], img[..., 3:]], -1)
        pm = pm.reshape(intr.height, s, intr.width, s, 4).mean((1, 3))
        a = pm[..., 3:]
        col = np.where(a > 0, pm[..., :3] / np.maximum(a, 1e-8), 0.0)
        out.append(np.concatenate([col, a], -1).astype(np.float32))
    return np.stack(out)


@dataclass(frozen=True)
class RenderDatasetConfig:
    """Options of ``mpgym render-dataset``."""

    source: str = "tabletop"
    """A built-in scene name (tabletop, ball) or a mesh file (.obj, .ply, .stl, .off, .glb)."""
    out: Path = Path("data/tabletop")
    """Output folder (NeRF-synthetic layout)."""
    views: int = 100
    """Training views (NeRF-synthetic has 100)."""
    val_views: int = 8
    """Validation views."""
    test_views: int = 16
    """Test views (evenly spread; NeRF-synthetic has 200)."""
    resolution: int = 128
    """Image width and height in pixels."""
    radius: float = 4.0
    """Camera distance to the origin (NeRF-synthetic: about 4.03)."""
    camera_angle_x: float = NERF_SYNTHETIC_ANGLE
    """Horizontal field of view in radians (NeRF-synthetic's)."""
    mesh_size: float = 1.8
    """Longest side a user's mesh is scaled to (built-in scenes fit [-1, 1]^3 already)."""
    seed: int = 0
    """Seed for the camera positions."""


def _load_scene(source: str, mesh_size: float) -> TexturedScene:
    from neural3d.data.scenes import BUILTIN_SCENES, builtin_scene, scene_from_mesh

    if source in BUILTIN_SCENES:
        return builtin_scene(source)
    if not Path(source).exists():
        raise MpgymError(f"{source!r} is neither a built-in scene ({', '.join(BUILTIN_SCENES)}) "
                         "nor an existing mesh file.")
    from neural3d.data.meshes import load_mesh

    return scene_from_mesh(load_mesh(source, normalize=True, size=mesh_size))


def render_dataset(config: RenderDatasetConfig) -> Path:
    """Render train/val/test splits of a scene into ``config.out``; returns the folder.

    Train and val cameras are random on the upper hemisphere (as NeRF-synthetic's), test
    cameras evenly spaced around the scene at 20-40 degrees of elevation.
    """
    if config.views < 1 or config.resolution < 8:
        raise MpgymError(f"views must be >= 1 and resolution >= 8 (got {config.views}, "
                         f"{config.resolution}).")
    scene = _load_scene(config.source, config.mesh_size)
    rng = np.random.default_rng(config.seed)
    intr = Intrinsics.from_fov(config.camera_angle_x, config.resolution)
    splits = {
        "train": sphere_poses(config.views, config.radius, rng=rng, min_elevation=0.1),
        "val": sphere_poses(config.val_views, config.radius, rng=rng, min_elevation=0.1),
    }
    k = np.arange(config.test_views)
    phi = 2 * np.pi * (k + 0.5) / max(config.test_views, 1)
    elev = np.radians(20 + 20 * (k % 2))
    eyes = config.radius * np.stack([np.cos(elev) * np.cos(phi), np.cos(elev) * np.sin(phi),
                                     np.sin(elev)], -1)
    splits["test"] = np.stack([look_at(e) for e in eyes]) if len(eyes) else np.zeros((0, 4, 4))
    for name, poses in splits.items():
        if len(poses) == 0:
            continue
        log.info("render-dataset: %s, %d views at %dx%d", name, len(poses), intr.width, intr.height)
        write_split(config.out, name, render_views(scene, poses, intr), poses, intr)
    return Path(config.out)


def check_scene_visible(data: MultiviewData, aabb: np.ndarray, what: str = "the scene box") -> None:
    """Raise unless the centre of ``aabb`` (6,) is in front of and inside the image of some camera.

    Catches a scene bound that excludes every camera's view (wrong scale or axes convention).
    """
    import torch

    from neural3d.cameras import project

    center = torch.as_tensor((aabb[:3] + aabb[3:]) / 2, dtype=torch.float64)[None]
    intr = data.intrinsics
    for pose in data.c2w:
        uv, depth = project(center, torch.as_tensor(pose, dtype=torch.float64), intr)
        u, v = float(uv[0, 0]), float(uv[0, 1])
        if depth[0] > 0 and 0 <= u <= intr.width and 0 <= v <= intr.height:
            return
    raise MpgymError(f"{what} {np.round(aabb, 3).tolist()} is seen by none of the {len(data)} "
                     "cameras (its centre projects outside every image); check the scene bound "
                     "(--aabb-scale) and that poses are camera-to-world in OpenGL axes.")
