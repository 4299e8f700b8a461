"""COLMAP sparse models (text and binary), and COLMAP captures as multi-view datasets.

A capture folder, as COLMAP's ``mapper`` (or ``image_undistorter``) leaves it::

    DIR/images/IMG_0001.jpg ...          the photos, named as in the model
    DIR/sparse/0/cameras.bin images.bin points3D.bin   (or the three .txt; or DIR/sparse/ itself)

Model files (facts from COLMAP's ``doc/format.rst`` and ``src/colmap/scene/reconstruction_io_*``;
binary is little-endian, every record preceded by a ``uint64`` count):

- ``cameras``: text ``CAMERA_ID MODEL WIDTH HEIGHT PARAMS...``; binary ``uint32 id, int32
  model_id, uint64 width, uint64 height`` and the model's number of ``float64`` parameters
  (:data:`CAMERA_MODELS`).
- ``images``: text, two lines per image: ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` and
  ``X Y POINT3D_ID ...`` (``-1``: no 3D point; the line may be empty); binary ``uint32 id, 4 x
  float64 q, 3 x float64 t, uint32 camera_id``, the name as NUL-terminated UTF-8, a ``uint64``
  count and per 2D point ``float64 x, float64 y, int64 point3D_id``. ``(q, t)`` is the
  world-to-camera pose in OpenCV axes: ``x_cam = R(q) x_world + t``, ``q = (w, x, y, z)``.
- ``points3D``: text ``POINT3D_ID X Y Z R G B ERROR (IMAGE_ID POINT2D_IDX)...``; binary ``uint64
  id, 3 x float64 xyz, 3 x uint8 rgb, float64 error``, a ``uint64`` track length and per track
  element ``uint32 image_id, uint32 point2D_idx``.

COLMAP's pixel convention (upper-left corner at (0, 0), first pixel centre at (0.5, 0.5)) is
:mod:`neural3d.cameras`'s, so focal lengths and principal points carry over unchanged.

As a dataset (:func:`load_colmap`, reached through ``load_split(DIR, split)``): poses become
camera-to-world in OpenGL axes; ``SIMPLE_PINHOLE`` and ``PINHOLE`` images are used as they are;
``SIMPLE_RADIAL``, ``RADIAL`` and ``OPENCV`` images are resampled (bilinear) to a pinhole camera
of the same size and principal point whose focal length is chosen, as COLMAP's undistorter does,
so every output pixel sees the inside of the photo; other models are refused. Views are sorted by
name and every 8th (``index % 8 == 0``) is the test (and val) split, as for one
``transforms.json``. COLMAP's world has arbitrary origin, scale and orientation; it is mapped by
the similarity of :class:`SceneNormalization` (recorded as :attr:`MultiviewData.world_transform`,
applied to poses and points alike) so that a capture looks like a NeRF-synthetic scene.
"""

from __future__ import annotations

import io
import logging
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from mpgym.checkpoint import atomic_write_bytes
from mpgym.errors import MpgymError, check_positive
from neural3d.cameras import Intrinsics
from neural3d.data.multiview import HOLDOUT_EVERY, MultiviewData

log = logging.getLogger(__name__)

__all__ = [
    "CAMERA_MODELS",
    "SUPPORTED_MODELS",
    "ColmapCamera",
    "ColmapImage",
    "ColmapModel",
    "ColmapPoint3D",
    "SceneNormalization",
    "colmap_points",
    "distort",
    "find_sparse_dir",
    "load_colmap",
    "normalization_transform",
    "qvec_to_rotmat",
    "read_model",
    "rotmat_to_qvec",
    "undistort_image",
    "undistort_points",
    "undistorted_intrinsics",
    "write_colmap_from_multiview",
    "write_model",
]

CAMERA_MODELS: dict[str, tuple[int, int]] = {
    "SIMPLE_PINHOLE": (0, 3), "PINHOLE": (1, 4), "SIMPLE_RADIAL": (2, 4), "RADIAL": (3, 5),
    "OPENCV": (4, 8), "OPENCV_FISHEYE": (5, 8), "FULL_OPENCV": (6, 12), "FOV": (7, 5),
    "SIMPLE_RADIAL_FISHEYE": (8, 4), "RADIAL_FISHEYE": (9, 5), "THIN_PRISM_FISHEYE": (10, 12),
    "RAD_TAN_THIN_PRISM_FISHEYE": (11, 16), "SIMPLE_DIVISION": (12, 4), "DIVISION": (13, 5),
    "SIMPLE_FISHEYE": (14, 3), "FISHEYE": (15, 4), "EUCM": (16, 6), "EQUIRECTANGULAR": (17, 2),
}
"""COLMAP camera model name -> ``(model_id, number of parameters)``."""
_MODEL_NAMES = {mid: name for name, (mid, _) in CAMERA_MODELS.items()}

SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
"""Camera models :func:`load_colmap` turns into pinhole images."""

_FILES = ("cameras", "images", "points3D")
_U32, _U64, _I64_MAX = 2**32 - 1, 2**64 - 1, 2**63 - 1
_MAX_SIDE = 2**31 - 1
_CAMERA = struct.Struct("<IiQQ")  # id, model_id, width, height
_IMAGE = struct.Struct("<I7dI")  # id, qw qx qy qz, tx ty tz, camera_id
_POINT = struct.Struct("<Q3d3Bd")  # id, xyz, rgb, error
_COUNT = struct.Struct("<Q")
_POINT2D = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")])
_TRACK = np.dtype([("image_id", "<u4"), ("point2D_idx", "<u4")])


# --------------------------------------------------------------------------- the model


@dataclass(eq=False)
class ColmapCamera:
    """One camera (intrinsics) of a COLMAP model."""

    id: int
    model: str
    """A key of :data:`CAMERA_MODELS`."""
    width: int
    height: int
    params: np.ndarray
    """``(P,)`` float64 in the model's order (``PINHOLE``: fx, fy, cx, cy; ``OPENCV``: fx, fy,
    cx, cy, k1, k2, p1, p2)."""


@dataclass(eq=False)
class ColmapImage:
    """One registered image: its world-to-camera pose (OpenCV axes) and 2D points."""

    id: int
    qvec: np.ndarray
    """``(4,)`` rotation world -> camera as a quaternion ``w, x, y, z``."""
    tvec: np.ndarray
    """``(3,)`` translation world -> camera."""
    camera_id: int
    name: str
    """File name relative to the images folder."""
    points2D: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    """``(P, 2)`` float64 keypoint positions in pixels."""
    point3D_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """``(P,)`` int64 id of each keypoint's 3D point, -1 for none."""

    def c2w(self) -> np.ndarray:
        """``(4, 4)`` float64 camera-to-world in OpenGL axes (:mod:`neural3d.cameras`)."""
        import torch

        from neural3d.cameras import opencv_to_opengl

        r = qvec_to_rotmat(self.qvec)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = r.T, -r.T @ self.tvec
        return opencv_to_opengl(torch.as_tensor(pose)).numpy()


@dataclass(eq=False)
class ColmapPoint3D:
    """One triangulated point and its track (the observations it came from)."""

    id: int
    xyz: np.ndarray
    """``(3,)`` float64 world position."""
    rgb: np.ndarray
    """``(3,)`` uint8 colour."""
    error: float
    """Mean reprojection error in pixels (-1 when unknown)."""
    image_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """``(T,)`` int64 images that observe the point."""
    point2D_idxs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """``(T,)`` int64 index of the observation among each image's 2D points."""


@dataclass(eq=False)
class ColmapModel:
    """A sparse reconstruction: cameras, images and points, each by id."""

    cameras: dict[int, ColmapCamera] = field(default_factory=dict)
    images: dict[int, ColmapImage] = field(default_factory=dict)
    points3D: dict[int, ColmapPoint3D] = field(default_factory=dict)

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """``xyz (M, 3)`` float64 and ``rgb (M, 3)`` uint8 of every point, in id order."""
        pts = [self.points3D[k] for k in sorted(self.points3D)]
        if not pts:
            return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
        return np.stack([p.xyz for p in pts]), np.stack([p.rgb for p in pts]).astype(np.uint8)


def qvec_to_rotmat(qvec: np.ndarray) -> np.ndarray:
    """``(3, 3)`` rotation of the quaternion ``(w, x, y, z)`` (normalised first).

    Example:
        >>> qvec_to_rotmat(np.array([0.0, 0.0, 0.0, 1.0])).round(6)  # 180 degrees about z
        array([[-1.,  0.,  0.],
               [ 0., -1.,  0.],
               [ 0.,  0.,  1.]])
    """
    w, x, y, z = np.asarray(qvec, dtype=np.float64) / np.linalg.norm(qvec)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def rotmat_to_qvec(r: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)``, ``w >= 0``, of a ``(3, 3)`` rotation.

    Shepperd's method: divide by the largest of ``4w^2, 4x^2, 4y^2, 4z^2`` for accuracy.
    """
    r = np.asarray(r, dtype=np.float64)
    t = np.trace(r)
    k = int(np.argmax([t, r[0, 0], r[1, 1], r[2, 2]]))
    if k == 0:
        s = 2 * math.sqrt(max(1 + t, 0.0))
        q = [s / 4, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif k == 1:
        s = 2 * math.sqrt(max(1 + r[0, 0] - r[1, 1] - r[2, 2], 0.0))
        q = [(r[2, 1] - r[1, 2]) / s, s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif k == 2:
        s = 2 * math.sqrt(max(1 + r[1, 1] - r[0, 0] - r[2, 2], 0.0))
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s]
    else:
        s = 2 * math.sqrt(max(1 + r[2, 2] - r[0, 0] - r[1, 1], 0.0))
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4]
    q = np.array(q) / np.linalg.norm(q)
    return -q if q[0] < 0 else q


# --------------------------------------------------------------------------- checks


def _check_model(model: ColmapModel, where: str, ext: str = "") -> None:
    """Refuse values no COLMAP model has, naming the file and what is accepted.

    Files are named ``where/<file><ext>`` (``where`` alone when ``ext`` is empty).
    """

    def name(f: str) -> str:
        return f"{where}/{f}{ext}" if ext else where

    for cam in model.cameras.values():
        _check_camera(cam, name("cameras"))
    for img in model.images.values():
        what = f"{name('images')}: image {img.id} ({img.name[:80]!r})"
        with np.errstate(over="ignore", invalid="ignore"):
            norm = float(np.linalg.norm(img.qvec))
        if not (np.isfinite(img.qvec).all() and math.isfinite(norm) and norm > 1e-12):
            raise MpgymError(f"{what}: quaternion {img.qvec.tolist()} is not a finite non-zero "
                             "rotation; expected QW QX QY QZ of unit norm.")
        if not np.isfinite(img.tvec).all():
            raise MpgymError(f"{what}: translation {img.tvec.tolist()} is not finite.")
        if img.camera_id not in model.cameras:
            raise MpgymError(f"{what} refers to camera {img.camera_id}, which is not in the "
                             f"cameras file (ids: {sorted(model.cameras)[:10]}).")
        if not img.name or "\0" in img.name:
            raise MpgymError(f"{what}: expected a non-empty file name without NUL characters.")
        if not np.isfinite(img.points2D).all():
            raise MpgymError(f"{what}: 2D points contain NaN or infinity.")
    for p in model.points3D.values():
        if not (np.isfinite(p.xyz).all() and math.isfinite(p.error)):
            raise MpgymError(f"{name('points3D')}: point {p.id} has non-finite position "
                             f"{p.xyz.tolist()} or error {p.error}; expected finite numbers.")


def _check_camera(cam: ColmapCamera, where: str) -> None:
    if cam.model not in CAMERA_MODELS:
        raise MpgymError(f"{where}: camera {cam.id} has unknown model {cam.model[:40]!r}; "
                         f"accepted: {', '.join(CAMERA_MODELS)}.")
    n = CAMERA_MODELS[cam.model][1]
    if cam.params.shape != (n,):
        raise MpgymError(f"{where}: camera {cam.id} ({cam.model}) has {cam.params.size} "
                         f"parameters; that model has {n}.")
    if not np.isfinite(cam.params).all():
        raise MpgymError(f"{where}: camera {cam.id} has non-finite parameters "
                         f"{cam.params.tolist()}.")
    if not (1 <= cam.width <= _MAX_SIDE and 1 <= cam.height <= _MAX_SIDE):
        raise MpgymError(f"{where}: camera {cam.id} is {cam.width}x{cam.height}; accepted sides: "
                         f"1 to {_MAX_SIDE} pixels.")


def _check_id(value: int, top: int, what: str, where: str) -> int:
    if not 0 <= value <= top:
        raise MpgymError(f"{where}: {what} {value} is out of range; accepted: 0 to {top}.")
    return value


def _add(table: dict, key: int, value: object, what: str, where: str) -> None:
    if key in table:
        raise MpgymError(f"{where}: {what} {key} appears twice; ids must be unique.")
    table[key] = value


# --------------------------------------------------------------------------- binary files


class _Bin:
    """Bounds-checked little-endian reads from one file's bytes.

    A count read from the file is checked against the bytes that remain before anything is
    allocated for it, so a hostile count costs nothing.
    """

    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def _need(self, n: int, what: str) -> None:
        if n > len(self.data) - self.pos:
            raise MpgymError(f"{self.path}: {what} needs {n} bytes at offset {self.pos} but "
                             f"{len(self.data) - self.pos} remain; the file is truncated or not "
                             f"a COLMAP binary {self.path.stem} file.")

    def unpack(self, st: struct.Struct, what: str) -> tuple:
        self._need(st.size, what)
        values = st.unpack_from(self.data, self.pos)
        self.pos += st.size
        return values

    def count(self, what: str, min_record: int) -> int:
        """A ``uint64`` count of records of at least ``min_record`` bytes each."""
        (n,) = self.unpack(_COUNT, f"the number of {what}")
        self._need(n * min_record, f"{n} {what}")
        return n

    def array(self, dtype: np.dtype, n: int, what: str) -> np.ndarray:
        self._need(n * dtype.itemsize, f"{n} {what}")
        out = np.frombuffer(self.data, dtype, count=n, offset=self.pos).copy()
        self.pos += n * dtype.itemsize
        return out

    def cstring(self, what: str) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise MpgymError(f"{self.path}: {what} has no terminating NUL byte; the file is "
                             "truncated or not a COLMAP binary images file.")
        raw, self.pos = self.data[self.pos:end], end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MpgymError(f"{self.path}: {what} is not UTF-8 text.") from None

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise MpgymError(f"{self.path}: {len(self.data) - self.pos} bytes follow the last "
                             "record; expected the file to end there.")


def _read_cameras_bin(b: _Bin) -> dict[int, ColmapCamera]:
    cameras: dict[int, ColmapCamera] = {}
    for _ in range(b.count("cameras", _CAMERA.size + 16)):
        cid, mid, w, h = b.unpack(_CAMERA, "a camera record")
        if mid not in _MODEL_NAMES:
            raise MpgymError(f"{b.path}: camera {cid} has unknown model id {mid}; accepted: "
                             + ", ".join(f"{i} ({n})" for i, n in _MODEL_NAMES.items()) + ".")
        name = _MODEL_NAMES[mid]
        params = b.array(np.dtype("<f8"), CAMERA_MODELS[name][1], "camera parameters")
        _add(cameras, cid, ColmapCamera(cid, name, w, h, params.astype(np.float64)), "camera",
             str(b.path))
    return cameras


def _read_images_bin(b: _Bin) -> dict[int, ColmapImage]:
    images: dict[int, ColmapImage] = {}
    for _ in range(b.count("images", _IMAGE.size + 1 + _COUNT.size)):
        iid, *pose, cid = b.unpack(_IMAGE, "an image record")
        name = b.cstring(f"the name of image {iid}")
        n = b.count(f"2D points of image {iid}", _POINT2D.itemsize)
        pts = b.array(_POINT2D, n, "2D points")
        img = ColmapImage(iid, np.array(pose[:4]), np.array(pose[4:]), cid, name,
                          np.stack([pts["x"], pts["y"]], -1).astype(np.float64),
                          pts["id"].astype(np.int64))
        _add(images, iid, img, "image", str(b.path))
    return images


def _read_points_bin(b: _Bin) -> dict[int, ColmapPoint3D]:
    points: dict[int, ColmapPoint3D] = {}
    for _ in range(b.count("points", _POINT.size + _COUNT.size)):
        pid, x, y, z, r, g, bl, err = b.unpack(_POINT, "a point record")
        track = b.array(_TRACK, b.count(f"track elements of point {pid}", _TRACK.itemsize),
                        "track elements")
        p = ColmapPoint3D(pid, np.array([x, y, z]), np.array([r, g, bl], np.uint8), err,
                          track["image_id"].astype(np.int64),
                          track["point2D_idx"].astype(np.int64))
        _add(points, pid, p, "point", str(b.path))
    return points


def _cameras_bin(cameras: dict[int, ColmapCamera]) -> bytes:
    out = [_COUNT.pack(len(cameras))]
    for c in cameras.values():
        out += [_CAMERA.pack(c.id, CAMERA_MODELS[c.model][0], c.width, c.height),
                np.asarray(c.params, "<f8").tobytes()]
    return b"".join(out)


def _images_bin(images: dict[int, ColmapImage]) -> bytes:
    out = [_COUNT.pack(len(images))]
    for im in images.values():
        pts = np.zeros(len(im.point3D_ids), _POINT2D)
        pts["x"], pts["y"], pts["id"] = im.points2D[:, 0], im.points2D[:, 1], im.point3D_ids
        out += [_IMAGE.pack(im.id, *map(float, im.qvec), *map(float, im.tvec), im.camera_id),
                im.name.encode("utf-8") + b"\0", _COUNT.pack(len(pts)), pts.tobytes()]
    return b"".join(out)


def _points_bin(points: dict[int, ColmapPoint3D]) -> bytes:
    out = [_COUNT.pack(len(points))]
    for p in points.values():
        track = np.zeros(len(p.image_ids), _TRACK)
        track["image_id"], track["point2D_idx"] = p.image_ids, p.point2D_idxs
        out += [_POINT.pack(p.id, *map(float, p.xyz), *map(int, p.rgb), float(p.error)),
                _COUNT.pack(len(track)), track.tobytes()]
    return b"".join(out)


# --------------------------------------------------------------------------- text files


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise MpgymError(f"{path} is not UTF-8 text; expected a COLMAP text model file.") from None
    return [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines())]


def _parse(tokens: list[str], kind: type, where: str, what: str) -> list:
    """``tokens`` as ints or finite floats; anything else -> MpgymError naming the line."""
    try:
        values = [kind(t) for t in tokens]
    except (ValueError, OverflowError):
        raise MpgymError(f"{where}: {what} {' '.join(tokens)[:80]!r} is not "
                         f"{'whole numbers' if kind is int else 'numbers'}.") from None
    if kind is float and not all(math.isfinite(v) for v in values):
        raise MpgymError(f"{where}: {what} contains NaN or infinity.")
    return values


def _read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cameras: dict[int, ColmapCamera] = {}
    for no, line in _lines(path):
        if not line or line.startswith("#"):
            continue
        where, tok = f"{path}:{no}", line.split()
        if len(tok) < 4:
            raise MpgymError(f"{where}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS...")
        cid, w, h = _parse([tok[0], tok[2], tok[3]], int, where, "CAMERA_ID WIDTH HEIGHT")
        _check_id(cid, _U32, "CAMERA_ID", where)
        params = np.array(_parse(tok[4:], float, where, "PARAMS"), dtype=np.float64)
        cam = ColmapCamera(cid, tok[1], w, h, params)
        _check_camera(cam, where)
        _add(cameras, cid, cam, "camera", str(path))
    return cameras


def _read_images_txt(path: Path) -> dict[int, ColmapImage]:
    images: dict[int, ColmapImage] = {}
    lines, i = _lines(path), 0
    while i < len(lines):
        no, line = lines[i]
        i += 1
        if not line or line.startswith("#"):
            continue
        points = lines[i][1] if i < len(lines) else ""  # the 2D points line may be empty
        i += 1
        where, tok = f"{path}:{no}", line.split(maxsplit=9)
        if len(tok) < 10:
            raise MpgymError(f"{where}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME.")
        iid, cid = _parse([tok[0], tok[8]], int, where, "IMAGE_ID CAMERA_ID")
        pose = np.array(_parse(tok[1:8], float, where, "QW QX QY QZ TX TY TZ"))
        pt = points.split()
        if len(pt) % 3:
            raise MpgymError(f"{path}:{no + 1}: {len(pt)} numbers; expected (X Y POINT3D_ID) "
                             "triples.")
        xy = np.array(_parse(pt[0::3] + pt[1::3], float, f"{path}:{no + 1}", "X Y"))
        ids = np.array(_parse(pt[2::3], int, f"{path}:{no + 1}", "POINT3D_ID"), dtype=object)
        if len(ids) and not all(-1 <= v <= _I64_MAX for v in ids):
            raise MpgymError(f"{path}:{no + 1}: POINT3D_ID out of range; accepted: -1 (none) "
                             f"to {_I64_MAX}.")
        img = ColmapImage(_check_id(iid, _U32, "IMAGE_ID", where), pose[:4], pose[4:],
                          _check_id(cid, _U32, "CAMERA_ID", where), tok[9],
                          xy.reshape(2, -1).T.copy(), ids.astype(np.int64))
        _add(images, iid, img, "image", str(path))
    return images


def _read_points_txt(path: Path) -> dict[int, ColmapPoint3D]:
    points: dict[int, ColmapPoint3D] = {}
    for no, line in _lines(path):
        if not line or line.startswith("#"):
            continue
        where, tok = f"{path}:{no}", line.split()
        if len(tok) < 8 or len(tok) % 2:
            raise MpgymError(f"{where}: expected POINT3D_ID X Y Z R G B ERROR and "
                             "(IMAGE_ID POINT2D_IDX) pairs.")
        pid, *ints = _parse([tok[0], *tok[4:7], *tok[8:]], int, where, "ids and colours")
        xyz_err = _parse([*tok[1:4], tok[7]], float, where, "X Y Z ERROR")
        if not all(0 <= v <= 255 for v in ints[:3]):
            raise MpgymError(f"{where}: colour {ints[:3]} out of range; accepted: 0 to 255.")
        track = np.array(ints[3:], dtype=object).reshape(-1, 2)
        if track.size and not ((track >= 0) & (track <= _U32)).all():
            raise MpgymError(f"{where}: track ids out of range; accepted: 0 to {_U32}.")
        p = ColmapPoint3D(_check_id(pid, _U64, "POINT3D_ID", where), np.array(xyz_err[:3]),
                          np.array(ints[:3], np.uint8), xyz_err[3],
                          track[:, 0].astype(np.int64), track[:, 1].astype(np.int64))
        _add(points, pid, p, "point", str(path))
    return points


def _num(v: float) -> str:
    return repr(float(v))  # shortest text that reads back as the same double


def _cameras_txt(cameras: dict[int, ColmapCamera]) -> bytes:
    rows = ["# COLMAP cameras: CAMERA_ID MODEL WIDTH HEIGHT PARAMS...",
            f"# Number of cameras: {len(cameras)}"]
    rows += [" ".join([str(c.id), c.model, str(c.width), str(c.height),
                       *map(_num, c.params)]) for c in cameras.values()]
    return ("\n".join(rows) + "\n").encode()


def _images_txt(images: dict[int, ColmapImage]) -> bytes:
    rows = ["# COLMAP images, two lines each: IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME",
            "# and X Y POINT3D_ID for every 2D point (-1: no 3D point)",
            f"# Number of images: {len(images)}"]
    for im in images.values():
        rows.append(" ".join([str(im.id), *map(_num, im.qvec), *map(_num, im.tvec),
                              str(im.camera_id), im.name]))
        rows.append(" ".join(f"{_num(x)} {_num(y)} {int(k)}"
                             for (x, y), k in zip(im.points2D, im.point3D_ids, strict=True)))
    return ("\n".join(rows) + "\n").encode()


def _points_txt(points: dict[int, ColmapPoint3D]) -> bytes:
    rows = ["# COLMAP points: POINT3D_ID X Y Z R G B ERROR and (IMAGE_ID POINT2D_IDX)...",
            f"# Number of points: {len(points)}"]
    for p in points.values():
        track = [f"{int(a)} {int(b)}" for a, b in zip(p.image_ids, p.point2D_idxs, strict=True)]
        rows.append(" ".join([str(p.id), *map(_num, p.xyz), *map(str, map(int, p.rgb)),
                              _num(p.error), *track]))
    return ("\n".join(rows) + "\n").encode()


# --------------------------------------------------------------------------- read / write


def read_model(path: str | Path, ext: Literal[".bin", ".txt"] | None = None) -> ColmapModel:
    """Read the COLMAP model in folder ``path`` (``cameras``, ``images``, ``points3D``).

    Args:
        path: the folder holding the three files (e.g. ``DIR/sparse/0``).
        ext: ``".bin"`` or ``".txt"``; default: binary when all three ``.bin`` files exist
            (as COLMAP itself prefers), else text.

    Raises:
        MpgymError: missing files, truncated or garbled records, unknown camera models, wrong
            parameter counts, non-finite values, zero quaternions, an image whose camera is
            missing -- naming the file and what is accepted.
    """
    path = Path(path)
    if ext is None:
        ext = ".bin" if all((path / f"{f}.bin").is_file() for f in _FILES) else ".txt"
    if ext not in (".bin", ".txt"):
        raise MpgymError(f"ext must be '.bin' or '.txt'; got {ext!r}.")
    missing = [f"{f}{ext}" for f in _FILES if not (path / f"{f}{ext}").is_file()]
    if missing:
        raise MpgymError(f"{path} has no {', '.join(missing)}; a COLMAP model folder holds "
                         "cameras, images and points3D, all .bin or all .txt.")
    files = [path / f"{f}{ext}" for f in _FILES]
    try:
        if ext == ".txt":
            model = ColmapModel(_read_cameras_txt(files[0]), _read_images_txt(files[1]),
                                _read_points_txt(files[2]))
        else:
            bins = [_Bin(f.read_bytes(), f) for f in files]
            model = ColmapModel(_read_cameras_bin(bins[0]), _read_images_bin(bins[1]),
                                _read_points_bin(bins[2]))
            for b in bins:
                b.finish()
    except MemoryError:
        raise MpgymError(f"{path}: not enough memory to read this model.") from None
    _check_model(model, str(path), ext)
    return model


def write_model(model: ColmapModel, path: str | Path,
                ext: Literal[".bin", ".txt"] = ".bin") -> Path:
    """Write ``model`` as ``cameras``, ``images``, ``points3D`` with ``ext`` into folder ``path``.

    The model is checked and every file encoded before anything is written; each file is
    written atomically (temporary file + rename). Returns ``path``.
    """
    path = Path(path)
    if ext not in (".bin", ".txt"):
        raise MpgymError(f"ext must be '.bin' or '.txt'; got {ext!r}.")
    _check_model(model, "the model to write")
    if ext == ".txt" and any(len(im.name.split()) != 1 or im.name != im.name.strip()
                             for im in model.images.values()):
        raise MpgymError("image names with white space cannot be written as COLMAP text; "
                         "use ext='.bin'.")
    if ext == ".bin":
        blobs = [_cameras_bin(model.cameras), _images_bin(model.images),
                 _points_bin(model.points3D)]
    else:
        blobs = [_cameras_txt(model.cameras), _images_txt(model.images),
                 _points_txt(model.points3D)]
    for name, blob in zip(_FILES, blobs, strict=True):
        atomic_write_bytes(path / f"{name}{ext}", blob)
    return path


# --------------------------------------------------------------------------- lens distortion


def _lens(cam: ColmapCamera, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(fx, fy, cx, cy)`` and OpenCV ``(k1, k2, p1, p2)`` of a supported camera model."""
    p = cam.params
    zero = np.zeros(4)
    if cam.model == "SIMPLE_PINHOLE":
        return np.array([p[0], p[0], p[1], p[2]]), zero
    if cam.model == "PINHOLE":
        return p[:4].copy(), zero
    if cam.model == "SIMPLE_RADIAL":
        return np.array([p[0], p[0], p[1], p[2]]), np.array([p[3], 0, 0, 0])
    if cam.model == "RADIAL":
        return np.array([p[0], p[0], p[1], p[2]]), np.array([p[3], p[4], 0, 0])
    if cam.model == "OPENCV":
        return p[:4].copy(), p[4:8].copy()
    raise MpgymError(f"{where}: camera {cam.id} uses the {cam.model} model; supported: "
                     f"{', '.join(SUPPORTED_MODELS)} (undistort other lenses first, e.g. with "
                     "`colmap image_undistorter`).")


def distort(x: np.ndarray, y: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV radial-tangential distortion of normalised image coordinates (COLMAP's OPENCV).

    ``x_d = x (1 + k1 r^2 + k2 r^4) + 2 p1 x y + p2 (r^2 + 2 x^2)``,
    ``y_d = y (1 + k1 r^2 + k2 r^4) + p1 (r^2 + 2 y^2) + 2 p2 x y`` with ``r^2 = x^2 + y^2`` and
    ``k = (k1, k2, p1, p2)``; arrays of any (equal) shape.

    Example:
        >>> distort(np.array([0.5]), np.array([0.0]), np.array([0.1, 0.0, 0.0, 0.0]))[0]
        array([0.5125])
    """
    k1, k2, p1, p2 = k
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + k2 * r2)
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def undistort_points(xd: np.ndarray, yd: np.ndarray, k: np.ndarray, *, iterations: int = 50,
                     tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Invert :func:`distort`: Newton steps on ``distort(x, y) = (xd, yd)`` from ``(xd, yd)``.

    Each step is clipped to ``max(0.1 |x|, 0.1)`` (a trust region, as COLMAP's iterative
    undistortion) so strong distortion does not overshoot.

    Raises:
        MpgymError: when some point does not converge (distortion not invertible there).
    """
    k1, k2, p1, p2 = k
    x, y = xd.astype(np.float64).copy(), yd.astype(np.float64).copy()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(iterations):
            fx, fy = distort(x, y, k)
            ex, ey = fx - xd, fy - yd
            r2 = x * x + y * y
            radial, q = 1 + r2 * (k1 + k2 * r2), 2 * k1 + 4 * k2 * r2  # d radial / dx = q x
            a = radial + q * x * x + 2 * p1 * y + 6 * p2 * x  # Jacobian [[a, b], [b, d]]
            b = q * x * y + 2 * p1 * x + 2 * p2 * y
            d = radial + q * y * y + 6 * p1 * y + 2 * p2 * x
            det = a * d - b * b
            sx, sy = (d * ex - b * ey) / det, (a * ey - b * ex) / det
            limit = np.maximum(0.1 * np.hypot(x, y), 0.1)
            scale = np.minimum(1.0, limit / np.maximum(np.hypot(sx, sy), 1e-300))
            x, y = x - sx * scale, y - sy * scale
        fx, fy = distort(x, y, k)
        err = np.hypot(fx - xd, fy - yd)
    if not (np.isfinite(err).all() and (err <= tol * (1 + np.hypot(xd, yd))).all()):
        raise MpgymError(f"lens distortion {np.asarray(k).tolist()} cannot be inverted over the "
                         "image (it folds back on itself); accepted: distortion that is "
                         "one-to-one across the photo.")
    return x, y


def _border(width: int, height: int, n: int = 64) -> tuple[np.ndarray, ...]:
    """Pixel positions along the left, right, top and bottom image edges: 4 x ``(n, 2)``."""
    u, v = np.linspace(0, width, n), np.linspace(0, height, n)
    return (np.stack([np.zeros(n), v], -1), np.stack([np.full(n, width), v], -1),
            np.stack([u, np.zeros(n)], -1), np.stack([u, np.full(n, height)], -1))


def undistorted_intrinsics(lens: np.ndarray, k: np.ndarray, width: int, height: int,
                           where: str) -> Intrinsics:
    """Pinhole camera, same size and principal point, whose every pixel sees the photo.

    The photo's edges are undistorted; the focal lengths are scaled by one factor so the image
    rectangle fits inside the undistorted edges (COLMAP's undistorter without blank pixels).
    """
    fx, fy, cx, cy = lens
    edges = []
    for e in _border(width, height):
        try:
            edges.append(undistort_points((e[:, 0] - cx) / fx, (e[:, 1] - cy) / fy, k))
        except MpgymError as exc:
            raise MpgymError(f"{where}: {exc}") from None
    left, right = edges[0][0].max(), edges[1][0].min()
    top, bottom = edges[2][1].max(), edges[3][1].min()
    if not (left < 0 < right and top < 0 < bottom):
        raise MpgymError(f"{where}: the principal point ({cx:g}, {cy:g}) lies outside the "
                         "undistorted image; expected it inside the photo.")
    s = max(cx / (-left) / fx, (width - cx) / right / fx, cy / (-top) / fy,
            (height - cy) / bottom / fy)
    return Intrinsics(width, height, float(fx * s), float(fy * s), float(cx), float(cy))


def _bilinear(img: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Sample ``img (H, W, C)`` bilinearly at pixel positions ``px, py (...)``: ``(..., C)``.

    Pixel centres are at +0.5; positions beyond the edge pixels are clamped to them.
    """
    h, w = img.shape[:2]
    x = np.clip(px - 0.5, 0, w - 1)
    y = np.clip(py - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    ax, ay = (x - x0)[..., None], (y - y0)[..., None]
    src = img.astype(np.float32)
    top = src[y0, x0] * (1 - ax) + src[y0, x1] * ax
    bot = src[y1, x0] * (1 - ax) + src[y1, x1] * ax
    return (top * (1 - ay) + bot * ay).astype(np.float32)


def undistort_image(img: np.ndarray, lens: np.ndarray, k: np.ndarray,
                    out: Intrinsics) -> np.ndarray:
    """Resample a distorted photo ``img (H, W, C)`` to the pinhole camera ``out``.

    Each output pixel centre is lifted to a ray (``out``), distorted with ``k`` and projected
    with ``lens = (fx, fy, cx, cy)`` into the photo, then sampled bilinearly. Returns
    ``(out.height, out.width, C)`` of ``img``'s dtype (rounded for integers).
    """
    fx, fy, cx, cy = lens
    rows = []
    u = (np.arange(out.width) + 0.5 - out.cx) / out.fx
    for start in range(0, out.height, 256):  # row blocks bound the memory of the sample maps
        v = (np.arange(start, min(start + 256, out.height)) + 0.5 - out.cy) / out.fy
        x, y = np.meshgrid(u, v)
        xd, yd = distort(x, y, k)
        rows.append(_bilinear(img, fx * xd + cx, fy * yd + cy))
    res = np.concatenate(rows)
    if np.issubdtype(img.dtype, np.integer):
        return np.clip(np.rint(res), 0, np.iinfo(img.dtype).max).astype(img.dtype)
    return res.astype(img.dtype)


# --------------------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class SceneNormalization:
    """How a capture's world is mapped to the one NeRF and splats train in.

    ``p' = s R (p - c)``: ``c`` is the centre (``"focus"``: the point nearest to every camera's
    optical axis, in the least-squares sense -- what an object-centred capture looks at; it
    falls back to ``"poses"`` when the axes are nearly parallel or the point is behind the
    cameras; ``"poses"``: the mean camera position, nerfstudio's ``center_method="poses"``;
    ``"none"``: the origin). ``R`` (``orient="up"``) turns the capture's up direction to ``+z``
    with the smallest rotation, so turntables orbit the right axis: the normal of the plane the
    camera positions lie near (orbits, domes), signed and checked against the mean camera up
    vector, which alone (nerfstudio's ``"up"``) is biased by partial orbits.
    ``s`` makes the mean camera distance from ``c`` equal ``radius`` -- NeRF-synthetic's 4, so the
    default scene box ``[-1.5, 1.5]^3`` holds an object the cameras circle (Instant-NGP's
    ``colmap2nerf`` also scales to a mean distance of 4); ``None`` keeps COLMAP's scale.
    """

    center: Literal["focus", "poses", "none"] = "focus"
    """Which point becomes the origin."""
    orient: Literal["up", "none"] = "up"
    """Rotate the capture's up direction to +z, or keep COLMAP's axes."""
    radius: float | None = 4.0
    """Mean camera distance from the origin after scaling; None: no scaling."""


def _focus(c2w: np.ndarray) -> np.ndarray | None:
    """Least-squares point nearest to every optical axis ``(3,)``, or None when ill-posed."""
    d = -c2w[:, :3, 2] / np.linalg.norm(c2w[:, :3, 2], axis=-1, keepdims=True)  # OpenGL: -z
    c = c2w[:, :3, 3]
    proj = np.eye(3) - d[:, :, None] * d[:, None, :]  # (N, 3, 3) projections off each axis
    a, b = proj.sum(0), (proj @ c[..., None]).sum(0)[:, 0]
    if not np.isfinite(a).all() or np.linalg.eigvalsh(a)[0] < 0.02 * len(c):
        return None  # axes (nearly) parallel: a forward-facing capture has no focus
    p = np.linalg.solve(a, b)
    return p if np.isfinite(p).all() and (((p - c) * d).sum(-1) > 0).mean() > 0.5 else None


def _up(c2w: np.ndarray) -> np.ndarray:
    """The capture's up direction ``(3,)``.

    The normal of the plane the cameras lie near, when that is clear and within 45 degrees of
    the mean camera up vector, else that mean. Cameras orbiting an object lie near a
    horizontal plane (a ring or a dome) even when they cover only part of the orbit, which
    biases the mean up vector towards the covered side.
    """
    mean_up = c2w[:, :3, 1].mean(0)
    pos = c2w[:, :3, 3] - c2w[:, :3, 3].mean(0)
    if len(pos) < 3 or not np.isfinite(pos).all() or not np.linalg.norm(mean_up) > 1e-9:
        return mean_up
    _, sv, vt = np.linalg.svd(pos, full_matrices=False)
    normal, cos = vt[-1], float(vt[-1] @ mean_up) / float(np.linalg.norm(mean_up))
    if sv[-1] < 0.5 * sv[1] and abs(cos) > math.cos(math.radians(45)):
        return normal * math.copysign(1.0, cos)
    return mean_up


def _rotation_to_z(up: np.ndarray) -> np.ndarray:
    """Smallest rotation ``(3, 3)`` taking the direction ``up`` to ``+z`` (identity if ~0)."""
    n = np.linalg.norm(up)
    if not n > 1e-9:
        return np.eye(3)
    u, z = up / n, np.array([0.0, 0.0, 1.0])
    axis, cos = np.cross(u, z), float(u @ z)
    if np.linalg.norm(axis) < 1e-12:
        return np.eye(3) if cos > 0 else np.diag([1.0, -1.0, -1.0])  # 180 degrees about x
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + k + k @ k / (1 + cos)  # Rodrigues with sin = |axis|, 1 - cos = sin^2/(1+cos)


def normalization_transform(c2w: np.ndarray, norm: SceneNormalization) -> np.ndarray:
    """``(4, 4)`` similarity ``T = [[s R, -s R c], [0, 1]]`` of :class:`SceneNormalization`.

    Args:
        c2w: ``(N, 4, 4)`` camera-to-world (OpenGL axes) of every view of the capture.
        norm: the normalisation.

    Raises:
        MpgymError: when the result is not finite (camera positions beyond float range).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        pos = c2w[:, :3, 3]
        c = np.zeros(3)
        if norm.center == "focus":
            focus = _focus(c2w)
            c = pos.mean(0) if focus is None else focus
        elif norm.center == "poses":
            c = pos.mean(0)
        r = _rotation_to_z(_up(c2w)) if norm.orient == "up" else np.eye(3)
        s = 1.0
        if norm.radius is not None:
            dist = float(np.linalg.norm(pos - c, axis=-1).mean())
            s = norm.radius / dist if dist > 1e-12 else 1.0
        t = np.eye(4)
        t[:3, :3], t[:3, 3] = s * r, -s * r @ c
    if not (np.isfinite(t).all() and s > 0):
        raise MpgymError(f"camera positions (up to {np.abs(pos).max():.3g}) cannot be "
                         "normalised; expected finite positions of moderate size.")
    return t


def _apply(t: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Poses ``(N, 4, 4)`` moved by the similarity ``t``: rotation ``R R_c``, position ``t(p)``."""
    s = np.cbrt(np.linalg.det(t[:3, :3]))
    out = c2w.copy()
    out[:, :3, :3] = (t[:3, :3] / s) @ c2w[:, :3, :3]
    out[:, :3, 3] = c2w[:, :3, 3] @ t[:3, :3].T + t[:3, 3]
    return out


def _scene_box(xyz: np.ndarray, radius: float) -> float | None:
    """Half side of a box holding 97% of the points (+10%), within [radius/20, radius]."""
    if len(xyz) == 0:
        return None
    s = 1.1 * float(np.quantile(np.abs(xyz).max(-1), 0.97))
    return float(np.clip(s, radius / 20, radius))


# --------------------------------------------------------------------------- captures


def find_sparse_dir(root: str | Path) -> Path | None:
    """``root/sparse/0`` or ``root/sparse`` when it holds a model (.bin or .txt), else None."""
    root = Path(root)
    for d in (root / "sparse" / "0", root / "sparse"):
        if any(all((d / f"{f}{e}").is_file() for f in _FILES) for e in (".bin", ".txt")):
            return d
    return None


def _open_capture(root: Path) -> tuple[Path, ColmapModel, list[ColmapImage]]:
    """The model folder, model, and its images sorted by name (natural order)."""
    from neural3d.data.multiview import _natural_key

    sparse = find_sparse_dir(root)
    if sparse is None:
        raise MpgymError(f"{root} holds no COLMAP model; expected {root}/sparse/0/ (or "
                         f"{root}/sparse/) with cameras, images and points3D (.bin or .txt).")
    model = read_model(sparse)
    images = sorted(model.images.values(), key=lambda im: _natural_key(im.name))
    if len(images) < 2:
        raise MpgymError(f"{sparse} registers {len(images)} image; every 8th image is held out "
                         "for testing, which needs at least 2.")
    return sparse, model, images


def _normalized(model: ColmapModel, images: list[ColmapImage],
                norm: SceneNormalization) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(T (4,4), c2w (N,4,4), xyz (M,3), rgb (M,3) in [0,1])``, all moved by ``T``, float64."""
    c2w = np.stack([im.c2w() for im in images])
    t = normalization_transform(c2w, norm)
    xyz, rgb = model.points()
    with np.errstate(over="ignore", invalid="ignore"):
        poses, xyz = _apply(t, c2w), xyz @ t[:3, :3].T + t[:3, 3]
        ok = np.isfinite(poses.astype(np.float32)).all() and np.isfinite(
            xyz.astype(np.float32)).all()
    if not ok:
        raise MpgymError("the normalised camera poses or points do not fit in float32; "
                         "expected coordinates below 3e38.")
    return t, poses, xyz, rgb / 255.0


def colmap_points(root: str | Path, norm: SceneNormalization | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The capture's 3D points as :func:`load_colmap` places them (to initialise splats).

    Returns:
        ``xyz (M, 3)`` float32 in the normalised world, ``rgb (M, 3)`` float32 in [0, 1].
    """
    _, model, images = _open_capture(Path(root))
    _, _, xyz, rgb = _normalized(model, images, norm or SceneNormalization())
    return xyz.astype(np.float32), rgb.astype(np.float32)


def _check_files(images_dir: Path, images: list[ColmapImage], sparse: Path) -> None:
    missing = [im.name for im in images if not _safe_is_file(images_dir / im.name)]
    if missing:
        shown = ", ".join(repr(n[:80]) for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise MpgymError(f"{images_dir} lacks {len(missing)} of the {len(images)} images that "
                         f"{sparse} registers: {shown}{more}.")


def _safe_is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except (OSError, ValueError):  # embedded NUL, name too long
        return False


def load_colmap(root: str | Path, split: str = "train", *, downscale: int = 1,
                max_views: int | None = None,
                norm: SceneNormalization | None = None) -> MultiviewData:
    """One split of a COLMAP capture (``root/images`` + ``root/sparse/0``) as a dataset.

    Args:
        root: the capture folder.
        split: ``"train"``, ``"val"`` or ``"test"`` (views sorted by name; every 8th is
            ``test`` and ``val``).
        downscale: integer factor to shrink images by (area averaging), after undistortion.
        max_views: keep only the first views of the split.
        norm: the world normalisation (default :class:`SceneNormalization`); recorded in
            ``world_transform``, applied to poses and ``points``.

    Raises:
        MpgymError: no or a bad model, an unsupported camera model, missing or unreadable
            images, images of different sizes.
    """
    check_positive("downscale", downscale)
    if max_views is not None:
        check_positive("max_views", max_views)
    root = Path(root)
    sparse, model, images = _open_capture(root)
    for cid in sorted({im.camera_id for im in images}):
        _lens(model.cameras[cid], str(sparse))  # refuse unsupported models before any image
    _check_files(root / "images", images, sparse)
    t, poses, xyz, rgb = _normalized(model, images, norm or SceneNormalization())
    test = split in ("test", "val")
    chosen = [i for i in range(len(images)) if (i % HOLDOUT_EVERY == 0) == test]
    chosen = chosen[:max_views] if max_views else chosen
    pixels, cams, files, size = [], [], [], None
    cache: dict[tuple, Intrinsics] = {}
    for i in chosen:
        img, intr = _load_view(root / "images", images[i], model, sparse, downscale, cache)
        if size is not None and img.shape != size:
            raise MpgymError(f"{root / 'images'}: {images[i].name} is {img.shape[1]}x"
                             f"{img.shape[0]} after undistortion but earlier images are "
                             f"{size[1]}x{size[0]}; all views must have one size.")
        size = img.shape
        pixels.append(img)
        cams.append(intr)
        files.append(root / "images" / images[i].name)
    try:
        imgs = np.stack(pixels).astype(np.float32) / 255.0
    except MemoryError:
        raise MpgymError(f"{root}: not enough memory for {len(pixels)} images.") from None
    same = all(c == cams[0] for c in cams)
    radius = float(np.linalg.norm(poses[:, :3, 3], axis=-1).mean())
    return MultiviewData(imgs, poses[chosen].astype(np.float32), cams[0], files,
                         cameras=None if same else cams, scene_box=_scene_box(xyz, radius),
                         points=xyz.astype(np.float32), point_colors=rgb.astype(np.float32),
                         world_transform=t)


def _load_view(images_dir: Path, im: ColmapImage, model: ColmapModel, sparse: Path,
               downscale: int, cache: dict[tuple, Intrinsics]) -> tuple[np.ndarray, Intrinsics]:
    """``(H, W, 4)`` uint8 pinhole image of ``im`` and its intrinsics."""
    from neural3d.data.multiview import _check_camera as check_rays
    from neural3d.data.multiview import _downscaled, _read_image

    cam = model.cameras[im.camera_id]
    f = images_dir / im.name
    img = _read_image(f)
    h, w = img.shape[:2]
    sx, sy = w / cam.width, h / cam.height
    if abs(sx - sy) > 0.01 * max(sx, sy) + 1.0 / min(cam.width, cam.height):
        raise MpgymError(f"{f} is {w}x{h} but camera {cam.id} in {sparse} is {cam.width}x"
                         f"{cam.height}; accepted: that size or the same aspect ratio.")
    lens, k = _lens(cam, str(sparse))
    if not (lens[0] > 0 and lens[1] > 0):
        raise MpgymError(f"{sparse}: camera {cam.id} has focal lengths {lens[:2].tolist()}; "
                         "expected positive numbers of pixels.")
    lens = lens * [sx, sy, sx, sy]  # intrinsics of the file's size; distortion is size-free
    where = f"{sparse}: camera {cam.id}"
    check_rays(Intrinsics(w, h, *map(float, lens)), where)
    if np.any(k != 0):
        key = (cam.id, w, h)
        if key not in cache:
            cache[key] = undistorted_intrinsics(lens, k, w, h, where)
        intr = cache[key]
        check_rays(intr, where)
        img = undistort_image(img, lens, k, intr)
    else:
        intr = Intrinsics(w, h, *map(float, lens))
    if downscale > 1:
        img = _downscaled(img, downscale, f)
        intr = Intrinsics(img.shape[1], img.shape[0], intr.fx * img.shape[1] / w,
                          intr.fy * img.shape[0] / h, intr.cx * img.shape[1] / w,
                          intr.cy * img.shape[0] / h)
    return img, intr


# --------------------------------------------------------------------------- writing captures


def write_colmap_from_multiview(data: MultiviewData, out_dir: str | Path, *,
                                ext: Literal[".bin", ".txt"] = ".bin",
                                points: np.ndarray | None = None,
                                point_colors: np.ndarray | None = None) -> Path:
    """Write ``data`` as a COLMAP capture: ``out_dir/images/*.png`` + ``out_dir/sparse/0``.

    One ``PINHOLE`` camera per distinct intrinsics; images named ``frame_00000.png ...`` in view
    order (RGBA PNG); poses converted to COLMAP's world-to-camera OpenCV convention. Points
    (``(M, 3)``, default ``data.points``) with colours in [0, 1] (default ``data.point_colors``,
    else grey) become ``points3D`` with empty tracks. Images are written before the model, so an
    interrupted write leaves no loadable capture. Returns ``out_dir``.
    """
    from PIL import Image

    out = Path(out_dir)
    model = ColmapModel()
    cam_ids: dict[Intrinsics, int] = {}
    for i in range(len(data)):
        intr = data.camera(i)
        if intr not in cam_ids:
            cam_ids[intr] = len(cam_ids) + 1
            model.cameras[cam_ids[intr]] = ColmapCamera(
                cam_ids[intr], "PINHOLE", intr.width, intr.height,
                np.array([intr.fx, intr.fy, intr.cx, intr.cy], dtype=np.float64))
        qvec, tvec = _world_to_camera(np.asarray(data.c2w[i], dtype=np.float64), i)
        name = f"frame_{i:05d}.png"
        model.images[i + 1] = ColmapImage(i + 1, qvec, tvec, cam_ids[intr], name)
        rgba = (np.clip(data.images[i], 0, 1) * 255).round().astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
        atomic_write_bytes(out / "images" / name, buf.getvalue())
    xyz = data.points if points is None else points
    colors = point_colors if point_colors is not None else (
        data.point_colors if points is None else None)
    if xyz is not None:
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        rgb = np.full(xyz.shape, 0.5) if colors is None else np.asarray(colors, np.float64)
        if rgb.shape != xyz.shape:
            raise MpgymError(f"point colours have shape {rgb.shape}; expected {xyz.shape}, one "
                             "RGB triple in [0, 1] per point.")
        rgb8 = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
        for j, (p, c) in enumerate(zip(xyz, rgb8, strict=True)):
            model.points3D[j + 1] = ColmapPoint3D(j + 1, p.copy(), c.copy(), 0.0)
    write_model(model, out / "sparse" / "0", ext)
    return out


def _world_to_camera(c2w: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
    """COLMAP ``(qvec, tvec)`` of an OpenGL camera-to-world ``(4, 4)`` pose."""
    r_gl = c2w[:3, :3]
    if not np.allclose(r_gl.T @ r_gl, np.eye(3), atol=1e-4):
        raise MpgymError(f"view {i}: the rotation of its pose is not orthonormal; COLMAP poses "
                         "are rigid (rotation and translation only).")
    r_cv = r_gl * np.array([1.0, -1.0, -1.0])  # OpenGL -> OpenCV: flip camera y and z columns
    r = r_cv.T  # world -> camera
    return rotmat_to_qvec(r), -r @ c2w[:3, 3]


def _fuzz_load(path: str) -> None:
    """Fuzzing entry (tests): read the model and load both splits of a COLMAP capture."""
    import torch

    sparse = find_sparse_dir(path)
    if sparse is not None:
        read_model(sparse)
    colmap_points(path)
    for split in ("train", "test"):
        data = load_colmap(path, split)
        o, d = data.rays()
        if not (torch.isfinite(o).all() and torch.isfinite(d).all()):
            raise AssertionError(f"{split}: accepted cameras give non-finite rays")
