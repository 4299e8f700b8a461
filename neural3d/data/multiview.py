"""Multi-view datasets (NeRF-synthetic, nerfstudio, Instant-NGP, COLMAP): read, write, render.

Layouts read by :func:`load_split` (``file_path`` relative to the JSON file; it may omit the
extension, as NeRF-synthetic's does; backslashes are read as ``/``, as Instant-NGP does)::

    DIR/transforms_train.json   {"camera_angle_x": 0.6911, "frames": [{"file_path":
    DIR/transforms_val.json       "./train/r_0", "transform_matrix": [[...4x4...]]}, ...]}
    DIR/transforms_test.json    (NeRF-synthetic / Blender: one file per split)
    DIR/train/r_0.png ...        RGBA PNGs (alpha = coverage)

    DIR/transforms.json         one file with every frame (nerfstudio, Instant-NGP, colmap2nerf)

    DIR/images/*, DIR/sparse/0/ a COLMAP capture (no transforms JSON): read by
                                :func:`neural3d.data.colmap.load_colmap`

With a single ``transforms.json`` (or a JSON file given directly), frames are sorted by
``file_path`` (natural order) and every 8th from the first (index ``% 8 == 0``) is held out as
the test (and val) split, the LLFF / mip-NeRF 360 convention (nerfstudio's ``interval`` split).

Poses are camera-to-world in OpenGL axes (see :mod:`neural3d.cameras`), 4x4 or 3x4.
Intrinsics (scene-wide, or per frame where a frame has its own keys): ``fl_x, fl_y`` (pixels),
``cx, cy`` (pixels; default the image centre), ``w, h`` (the size they refer to; they are
scaled to the real image size), or ``camera_angle_x`` / ``camera_angle_y`` (radians).
Lens distortion (``k1 ... p2``) is not modelled: non-zero values are reported and ignored.

Instant-NGP's scene keys ``scale`` (default 0.33), ``offset`` (default 0.5, a number or 3),
``aabb`` and ``aabb_scale`` (default 1): when any is present, camera positions become
``p * scale + offset - 0.5`` -- Instant-NGP's ``nerf_matrix_to_ngp`` (``p * scale + offset``,
``src/nerf_loader.cu``), shifted so that its unit cube ``[0, 1]^3`` is centred on the origin
(rotations are kept; Instant-NGP's own axis cycling is internal to its renderer). The scene box
is then Instant-NGP's: side ``aabb_scale`` (at most 128) around the cube's centre, i.e.
``[-s, s]^3`` with ``s = aabb_scale / 2`` (:attr:`MultiviewData.scene_box`). Without these keys
positions are used as given. nerfstudio's ``applied_transform`` (original data -> saved poses)
is already contained in the saved poses; it is checked and kept in
:attr:`MultiviewData.applied_transform`, not applied again.

:func:`render_dataset` ray-casts a mesh with Open3D's ``RaycastingScene`` (CPU): albedo from
vertex colours or a procedural texture, Lambertian shading with ambient light plus a
Blinn-Phong specular term (so colour depends on the view direction), 2x2 supersampling for
anti-aliased edges and alpha.
"""

from __future__ import annotations

import json
import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mpgym.checkpoint import atomic_write_text
from mpgym.errors import MpgymError, check_positive
from neural3d.cameras import Intrinsics, focal_from_fov, look_at, sphere_poses
from neural3d.data.scenes import TexturedScene

log = logging.getLogger(__name__)

__all__ = [
    "HOLDOUT_EVERY",
    "NGP_SCALE",
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

NGP_SCALE = 0.33
"""Instant-NGP's default ``scale`` (``NERF_SCALE`` in its loader)."""

HOLDOUT_EVERY = 8
"""Without a test split, sorted frames with ``index % 8 == 0`` are the test views."""

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_FOCAL_KEYS = ("fl_x", "fl_y", "camera_angle_x", "camera_angle_y")
_CAMERA_KEYS = (*_FOCAL_KEYS, "cx", "cy", "w", "h")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_NGP_KEYS = ("scale", "offset", "aabb", "aabb_scale")
_NGP_MAX_AABB_SCALE = 128.0
_PIL_DEFAULT_MAX_PIXELS = 89_478_485


@dataclass
class MultiviewData:
    """One split: RGBA images and their cameras."""

    images: np.ndarray
    """``(N, H, W, 4)`` float32 RGBA in [0, 1] (alpha 1 when the files have none)."""
    c2w: np.ndarray
    """``(N, 4, 4)`` float32 camera-to-world, OpenGL axes."""
    intrinsics: Intrinsics
    """Pinhole intrinsics shared by all views (the first view's when they differ)."""
    files: list[Path] = field(default_factory=list)
    """The image file of each view."""
    cameras: list[Intrinsics] | None = None
    """Per-view intrinsics when views differ (one image size); None: all share ``intrinsics``."""
    scene_box: float | None = None
    """Half side ``s`` of the scene box ``[-s, s]^3`` the dataset declares (Instant-NGP's
    ``aabb_scale / 2``), or None when it declares none."""
    applied_transform: np.ndarray | None = None
    """``(4, 4)`` nerfstudio's ``applied_transform`` (original data -> these poses; already
    contained in ``c2w``), or None."""
    points: np.ndarray | None = None
    """``(M, 3)`` float32 sparse 3D points in the poses' world (COLMAP's ``points3D``), or None."""
    point_colors: np.ndarray | None = None
    """``(M, 3)`` float32 colours of ``points`` in [0, 1], or None."""
    world_transform: np.ndarray | None = None
    """``(4, 4)`` similarity from the source's world to this one, ``p' = T[:3, :3] p + T[:3, 3]``
    with ``T[:3, :3] = s R`` (COLMAP captures: :class:`neural3d.data.colmap.SceneNormalization`);
    already applied to ``c2w`` and ``points``. None: the poses are used as the files give them."""

    def __len__(self) -> int:
        return len(self.images)

    def camera(self, i: int) -> Intrinsics:
        """Intrinsics of view ``i``."""
        return self.intrinsics if self.cameras is None else self.cameras[i]

    def rays(self) -> tuple[Any, Any]:
        """Rays of every pixel: origins and unit directions, each ``[N, H, W, 3]`` float32 torch."""
        import torch

        from neural3d.cameras import pixel_rays

        c2w = torch.as_tensor(self.c2w, dtype=torch.float32)
        if self.cameras is None:
            return pixel_rays(c2w, self.intrinsics)
        pairs = [pixel_rays(c2w[i], self.cameras[i]) for i in range(len(self))]
        return torch.stack([o for o, _ in pairs]), torch.stack([d for _, d in pairs])

    def rgb(self, background: Literal["white", "black"] = "white") -> np.ndarray:
        """``(N, H, W, 3)`` colours composited over a white or black background."""
        bg = 1.0 if background == "white" else 0.0
        a = self.images[..., 3:]
        return self.images[..., :3] * a + bg * (1 - a)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise MpgymError(f"missing {path.name} in {path.parent}; a dataset folder has "
                         "transforms_train.json and transforms_test.json (NeRF-synthetic) or "
                         "one transforms.json (nerfstudio, Instant-NGP), or images/ and "
                         "sparse/0/ (COLMAP).")
    try:
        meta = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, digits
        raise MpgymError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise MpgymError(f"{path}: field 'frames' is missing or empty; expected a list of "
                         "{'file_path', 'transform_matrix'} entries.")
    for i, fr in enumerate(meta["frames"]):
        if not isinstance(fr, dict) or not isinstance(fr.get("file_path"), str):
            raise MpgymError(f"{path}: frames[{i}] has no 'file_path' string; expected "
                             "{'file_path', 'transform_matrix'} entries.")
    return meta


def _number(d: dict, key: str, where: str, *, positive: bool = False) -> float | None:
    """``d[key]`` as a finite float (``None`` when absent); refuses other types."""
    v = d.get(key)
    if v is None:
        return None
    try:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    except OverflowError:
        ok = False
    if not ok or (positive and not v > 0):
        what = "a finite number > 0" if positive else "a finite number"
        raise MpgymError(f"{where}: field {key!r} is {repr(v)[:40]}; expected {what}.")
    return float(v)


def _angle(d: dict, key: str, where: str) -> float | None:
    a = _number(d, key, where)
    if a is not None and not 0 < a < math.pi:
        raise MpgymError(f"{where}: field {key!r} is {a!r}; expected the field of view in "
                         "radians, in (0, pi).")
    return a


def _check_scene_camera(meta: dict, where: str) -> None:
    """Refuse bad scene-wide camera keys once, naming the file rather than a frame."""
    for k in ("fl_x", "fl_y", "w", "h"):
        _number(meta, k, where, positive=True)
    for k in ("cx", "cy", *_DISTORTION_KEYS):
        _number(meta, k, where)
    for k in ("camera_angle_x", "camera_angle_y"):
        _angle(meta, k, where)


def _camera_keys(meta: dict, frame: dict) -> dict:
    """Scene-wide camera keys overridden by a frame's own (its focal keys replace all four)."""
    cam = {k: meta[k] for k in _CAMERA_KEYS if k in meta}
    if any(k in frame for k in _FOCAL_KEYS):
        cam = {k: v for k, v in cam.items() if k not in _FOCAL_KEYS}
    cam.update({k: frame[k] for k in _CAMERA_KEYS if k in frame})
    return cam


def _intrinsics(cam: dict, where: str, width: int, height: int) -> Intrinsics:
    """Pinhole intrinsics for an image of ``width x height`` from ``transforms.json`` keys."""
    w = _number(cam, "w", where, positive=True) or float(width)
    h = _number(cam, "h", where, positive=True) or float(height)
    fx = _number(cam, "fl_x", where, positive=True)
    fy = _number(cam, "fl_y", where, positive=True)
    if fx is None and (ax := _angle(cam, "camera_angle_x", where)) is not None:
        fx = focal_from_fov(ax, w)
    if fy is None and (ay := _angle(cam, "camera_angle_y", where)) is not None:
        fy = focal_from_fov(ay, h)
    if fx is None and fy is None:
        raise MpgymError(f"{where}: no focal length; expected 'camera_angle_x' (the horizontal "
                         "field of view in radians, in (0, pi)) or 'fl_x'/'fl_y' in pixels.")
    fx = fy if fx is None else fx
    fy = fx if fy is None else fy
    cx = _number(cam, "cx", where)
    cy = _number(cam, "cy", where)
    sx, sy = width / w, height / h  # the keys describe a w x h image; the file may be resized
    cx = w / 2 if cx is None else cx
    cy = h / 2 if cy is None else cy
    return Intrinsics(width, height, fx * sx, fy * sy, cx * sx, cy * sy)


_MAX_RAY_SLOPE = 1e6
"""Largest ``|pixel offset / focal length|`` accepted: rays within 89.99994 degrees of the axis."""


def _check_camera(intr: Intrinsics, where: str) -> None:
    """Refuse intrinsics whose rays would be infinite or NaN (tiny focal, huge principal point)."""
    slopes = [(0 - intr.cx) / intr.fx, (intr.width - intr.cx) / intr.fx,
              (0 - intr.cy) / intr.fy, (intr.height - intr.cy) / intr.fy]
    if not all(math.isfinite(v) and abs(v) <= _MAX_RAY_SLOPE for v in slopes):
        raise MpgymError(f"{where}: intrinsics fx={intr.fx:g}, fy={intr.fy:g}, cx={intr.cx:g}, "
                         f"cy={intr.cy:g} for {intr.width}x{intr.height} pixels give rays "
                         "(nearly) perpendicular to the view axis; expected a pinhole camera "
                         "with a field of view below 180 degrees.")


def _frame_file(base: Path, frame: dict, path: Path, i: int) -> Path:
    fp = frame["file_path"].replace("\\", "/")
    try:
        f = (base / fp).resolve()
        candidates = [f]
        if f.suffix.lower() not in _IMAGE_SUFFIXES:
            candidates += [f.with_name(f.name + ext) for ext in _IMAGE_SUFFIXES]
        found = next((c for c in candidates if c.is_file()), None)
    except (OSError, ValueError):  # embedded NUL, name too long, loops
        found, f = None, base / "?"
    if found is None:
        raise MpgymError(f"{path}: frames[{i}].file_path {fp[:200]!r} -> {f} does not exist.")
    return found


def _matrix(value: Any, what: str, rows: tuple[int, ...]) -> np.ndarray:
    """A finite ``(r, 4)`` matrix (``r`` in ``rows``), extended to 4x4."""
    try:
        m = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise MpgymError(f"{what} is not numeric; expected a 4x4 matrix.") from None
    if m.ndim != 2 or m.shape[1] != 4 or m.shape[0] not in rows:
        raise MpgymError(f"{what} has shape {m.shape}; expected 4x4"
                         f"{' or 3x4' if 3 in rows else ''}.")
    if not np.isfinite(m).all():
        raise MpgymError(f"{what} contains NaN or infinity.")
    if m.shape[0] == 3:
        m = np.concatenate([m, [[0.0, 0.0, 0.0, 1.0]]])
    return m


def _frame_pose(frame: dict, path: Path, i: int) -> np.ndarray:
    what = f"{path}: frames[{i}].transform_matrix"
    if "transform_matrix" not in frame:
        raise MpgymError(f"{what} is missing; expected a 4x4 camera-to-world matrix.")
    m = _matrix(frame["transform_matrix"], what, (3, 4))
    norms = np.linalg.norm(m[:3, :3], axis=0)
    ok = bool(((norms > 1e-6) & (norms < 1e6)).all())
    if not ok or not abs(np.linalg.det(m[:3, :3])) > 1e-6 * float(np.prod(norms)):
        raise MpgymError(f"{what} has a singular or badly scaled rotation part; expected a "
                         "camera-to-world pose (orthonormal rotation columns).")
    return m


@dataclass(frozen=True)
class _SceneTransform:
    """Instant-NGP's ``p * scale + offset`` (minus the cube centre 0.5) and its box."""

    scale: float
    offset: np.ndarray  # (3,)
    scene_box: float


def _aabb(value: Any, path: Path) -> np.ndarray:
    """Instant-NGP's ``aabb``: ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]``, finite, max > min."""
    try:
        box = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        box = np.zeros(0)
    if box.shape != (2, 3) or not np.isfinite(box).all() or not (box[1] > box[0]).all():
        raise MpgymError(f"{path}: field 'aabb' is {str(value)[:80]}; expected "
                         "[[xmin, ymin, zmin], [xmax, ymax, zmax]] with finite max > min.")
    return box


def _ngp_transform(meta: dict, path: Path) -> _SceneTransform | None:
    if not any(k in meta for k in _NGP_KEYS):
        return None
    where = str(path)
    scale = _number(meta, "scale", where, positive=True) or NGP_SCALE
    offset = np.full(3, 0.5)
    if "offset" in meta:
        o = meta["offset"]
        if isinstance(o, list) and len(o) == 3:
            offset = np.array([_number({"offset": v}, "offset", where) for v in o])
        else:
            offset = np.full(3, _number(meta, "offset", where) or 0.0)
    if "aabb" in meta:  # Instant-NGP: fit the box into the unit cube, centred at 0.5
        box = _aabb(meta["aabb"], path)
        scale = 1.0 / max(float((box[1] - box[0]).max()), 1e-6)
        offset = 0.5 - 0.5 * (box[0] + box[1]) * scale
    aabb_scale = _number(meta, "aabb_scale", where, positive=True) or 1.0
    if aabb_scale > _NGP_MAX_AABB_SCALE:
        log.info("%s: aabb_scale %g clamped to %g (as Instant-NGP)", path, aabb_scale,
                 _NGP_MAX_AABB_SCALE)
        aabb_scale = _NGP_MAX_AABB_SCALE
    return _SceneTransform(scale, offset, aabb_scale / 2)


def _find_json(root: Path, split: str) -> tuple[Path, bool]:
    """The JSON file holding ``split`` and whether it holds every frame (split by hold-out)."""
    if root.suffix.lower() == ".json" and not root.is_dir():
        return root, True
    per_split = root / f"transforms_{split}.json"
    if not per_split.is_file() and (root / "transforms.json").is_file():
        return root / "transforms.json", True
    return per_split, False


def _natural_key(name: str) -> list:
    """``frame_2`` before ``frame_10`` (digit runs compared as numbers, without ``int()``)."""
    key = []
    for t in re.split(r"(\d+)", name):
        digits = t.lstrip("0")
        key.append((0, len(digits), digits, t) if t.isdigit() else (1, 0, t, t))
    return key


def _holdout(frames: list[dict], split: str, path: Path) -> list[int]:
    """Indices of ``split``'s frames when one file holds all: every 8th (sorted) is a test view."""
    if len(frames) < 2:
        raise MpgymError(f"{path} holds {len(frames)} frame; without transforms_train.json / "
                         "transforms_test.json every 8th frame is held out for testing, which "
                         "needs at least 2 frames.")
    order = sorted(range(len(frames)), key=lambda i: _natural_key(frames[i]["file_path"]))
    test = split in ("test", "val")
    return [i for k, i in enumerate(order) if (k % HOLDOUT_EVERY == 0) == test]


def _read_image(f: Path) -> np.ndarray:
    """``(H, W, 4)`` uint8 RGBA; any decoding problem or a decompression bomb -> MpgymError."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS or _PIL_DEFAULT_MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                w, h = im.size
                if not 0 < w * h <= limit:
                    raise MpgymError(f"{f} declares {w}x{h} pixels; accepted: 1 to {limit} "
                                     "pixels (PIL's decompression-bomb limit).")
                return np.asarray(im.convert("RGBA"))
    except MpgymError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MpgymError(f"{f} declares more pixels than PIL's decompression-bomb limit "
                         f"({limit}).") from None
    except MemoryError:
        raise MpgymError(f"{f}: not enough memory to decode this image.") from None
    except Exception as exc:  # noqa: BLE001 -- PIL's decoders raise many types on corrupt files
        raise MpgymError(f"{f} is not a readable image ({type(exc).__name__}: "
                         f"{str(exc)[:200]}).") from None


def _downscaled(img: np.ndarray, factor: int, f: Path) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    if w // factor < 1 or h // factor < 1:
        raise MpgymError(f"{f} is {w}x{h}; downscale {factor} would leave no pixel.")
    small = Image.fromarray(img, "RGBA").resize((w // factor, h // factor), Image.BOX)
    return np.asarray(small)


def load_split(root: str | Path, split: str = "train", *, downscale: int = 1,
               max_views: int | None = None) -> MultiviewData:
    """Read one split of a dataset (NeRF-synthetic, nerfstudio, Instant-NGP or COLMAP layout).

    Args:
        root: the folder holding ``transforms_<split>.json`` or one ``transforms.json``, or a
            ``.json`` file holding every frame, or a COLMAP capture (``images/`` and
            ``sparse/0/``, no transforms JSON; see :func:`neural3d.data.colmap.load_colmap`).
        split: ``"train"``, ``"val"`` or ``"test"`` (from one file: every 8th sorted frame is
            ``test`` and ``val``, the others ``train``).
        downscale: integer factor to shrink images by (area averaging), e.g. 4 for 800 -> 200.
        max_views: keep only the first views.

    Raises:
        MpgymError: missing/invalid JSON or fields, unreadable images, mixed image sizes, NaNs.
    """
    check_positive("downscale", downscale)
    if max_views is not None:
        check_positive("max_views", max_views)
    path, single = _find_json(Path(root), split)
    if not path.is_file() and Path(root).is_dir() and (Path(root) / "sparse").is_dir():
        from neural3d.data.colmap import load_colmap

        return load_colmap(root, split, downscale=downscale, max_views=max_views)
    meta = _read_json(path)
    frames = meta["frames"]
    chosen = _holdout(frames, split, path) if single else list(range(len(frames)))
    chosen = chosen[:max_views] if max_views else chosen
    ngp = _ngp_transform(meta, path)
    applied = None
    if "applied_transform" in meta:
        applied = _matrix(meta["applied_transform"], f"{path}: field 'applied_transform'", (3, 4))
    _check_scene_camera(meta, str(path))
    if any(_number(meta, k, str(path)) for k in _DISTORTION_KEYS):
        log.warning("%s: lens distortion (k1..p2) is not modelled and is ignored", path)
    images, poses, files, cams = [], [], [], []
    size = None
    for i in chosen:
        img, pose, f, intr, size = _load_frame(path, meta, i, size, ngp, downscale)
        images.append(img)
        poses.append(pose)
        files.append(f)
        cams.append(intr)
    try:
        imgs = np.stack(images).astype(np.float32) / 255.0
    except MemoryError:
        raise MpgymError(f"{path}: not enough memory for {len(images)} images of "
                         f"{images[0].shape[1]}x{images[0].shape[0]}.") from None
    same = all(c == cams[0] for c in cams)
    return MultiviewData(imgs, np.stack(poses).astype(np.float32), cams[0], files,
                         cameras=None if same else cams,
                         scene_box=None if ngp is None else ngp.scene_box,
                         applied_transform=applied)


def _load_frame(path: Path, meta: dict, i: int, size: tuple[int, ...] | None,
                ngp: _SceneTransform | None, downscale: int
                ) -> tuple[np.ndarray, np.ndarray, Path, Intrinsics, tuple[int, ...]]:
    """Frame ``i`` of ``meta``: ``(image, pose, file, intrinsics, size)``, checked.

    ``size`` is the first frame's image shape (None for the first frame); the returned
    ``size`` is that, or this frame's shape when it is the first. The image is downscaled
    and the pose moved by the Instant-NGP ``scale``/``offset`` when ``ngp`` is given.
    """
    fr = meta["frames"][i]
    f = _frame_file(path.parent, fr, path, i)
    pose = _frame_pose(fr, path, i)
    img = _read_image(f)
    size = size or img.shape
    if img.shape != size:
        raise MpgymError(f"{path}: image {f.name} is {img.shape[1]}x{img.shape[0]} but "
                         f"earlier ones are {size[1]}x{size[0]}; all views must have one "
                         "size.")
    intr = _intrinsics(_camera_keys(meta, fr), f"{path}: frames[{i}]", img.shape[1],
                       img.shape[0])
    _check_camera(intr, f"{path}: frames[{i}]")
    if downscale > 1:
        img = _downscaled(img, downscale, f)
        intr = _resized(intr, img.shape[1], img.shape[0])
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused just below
        if ngp is not None:
            pose[:3, 3] = pose[:3, 3] * ngp.scale + ngp.offset - 0.5
        finite = bool(np.isfinite(pose.astype(np.float32)).all())
    if not finite:
        raise MpgymError(f"{path}: frames[{i}].transform_matrix (after scale and offset) "
                         "does not fit in float32; expected positions below 3e38.")
    return img, pose, f, intr, size


def _resized(intr: Intrinsics, width: int, height: int) -> Intrinsics:
    sx, sy = width / intr.width, height / intr.height
    return Intrinsics(width, height, intr.fx * sx, intr.fy * sy, intr.cx * sx, intr.cy * sy)


def _fuzz_load(path: str) -> None:
    """Fuzzing entry (tests): load the train and test splits of a dataset folder or JSON."""
    import torch

    for split in ("train", "test"):
        data = load_split(path, split)
        o, d = data.rays()
        if not (torch.isfinite(o).all() and torch.isfinite(d).all()):
            raise AssertionError(f"{split}: accepted cameras give non-finite rays")


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


def check_render_config(config: RenderDatasetConfig) -> None:
    """Refuse, before any work, counts, sizes and angles no dataset can have.

    Raises:
        MpgymError: naming the option and what is accepted.
    """
    check_positive("--views", config.views)
    check_positive("--resolution", config.resolution)
    if config.resolution < 8:
        raise MpgymError(f"--resolution must be at least 8 pixels; got {config.resolution}.")
    for name in ("val_views", "test_views"):
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise MpgymError(f"--{name.replace('_', '-')} must be a whole number >= 0; got {v!r}.")
    check_positive("--radius", config.radius, integer=False)
    check_positive("--mesh-size", config.mesh_size, integer=False)
    if not 0 < config.camera_angle_x < math.pi:
        raise MpgymError(f"--camera-angle-x must be in (0, pi) radians; got "
                         f"{config.camera_angle_x!r}.")


def render_dataset(config: RenderDatasetConfig) -> Path:
    """Render train/val/test splits of a scene into ``config.out``; returns the folder.

    Train and val cameras are random on the upper hemisphere (as NeRF-synthetic's), test
    cameras evenly spaced around the scene at 20-40 degrees of elevation.
    """
    check_render_config(config)
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
    for i, pose in enumerate(data.c2w):
        intr = data.camera(i)
        uv, depth = project(center, torch.as_tensor(pose, dtype=torch.float64), intr)
        u, v = float(uv[0, 0]), float(uv[0, 1])
        if depth[0] > 0 and 0 <= u <= intr.width and 0 <= v <= intr.height:
            return
    raise MpgymError(f"{what} {np.round(aabb, 3).tolist()} is seen by none of the {len(data)} "
                     "cameras (its centre projects outside every image); check the scene bound "
                     "(--aabb-scale) and that poses are camera-to-world in OpenGL axes.")
