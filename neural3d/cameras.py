"""Pinhole cameras in the NeRF-synthetic (Blender) convention, and ray generation.

Conventions (fixed for the whole of ``neural3d``):

- A pose is a camera-to-world matrix ``c2w`` of shape ``[..., 4, 4]`` in **OpenGL axes**: the
  camera looks down its ``-z`` axis, ``+y`` is up and ``+x`` is right -- what NeRF-synthetic's
  ``transforms_*.json`` stores. OpenCV axes (``+z`` forward, ``+y`` down) differ by flipping the
  ``y`` and ``z`` columns; :func:`opengl_to_opencv` / :func:`opencv_to_opengl` convert.
- Intrinsics are ``fx, fy, cx, cy`` in pixels, image ``width x height``; pixel ``(i, j)`` (column,
  row) has its centre at ``(i + 0.5, j + 0.5)``. NeRF-synthetic gives only ``camera_angle_x``
  (horizontal field of view): ``fx = fy = 0.5 * width / tan(0.5 * camera_angle_x)``.
- Rays are ``origins, directions`` with directions normalised to unit length (so ``t`` along a
  ray is metric distance) unless ``normalize=False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Intrinsics",
    "focal_from_fov",
    "fov_from_focal",
    "look_at",
    "opencv_to_opengl",
    "opengl_to_opencv",
    "pixel_rays",
    "project",
    "sphere_poses",
    "turntable_poses",
]


def focal_from_fov(fov: float, size: int) -> float:
    """Focal length in pixels from a field of view in radians across ``size`` pixels.

    Example:
        >>> focal_from_fov(math.pi / 2, 100)  # 90 degrees across 100 px
        50.00000000000001
    """
    return 0.5 * size / math.tan(0.5 * fov)


def fov_from_focal(focal: float, size: int) -> float:
    """Field of view in radians from a focal length in px (inverse of ``focal_from_fov``)."""
    return 2.0 * math.atan(0.5 * size / focal)


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels."""

    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    fx: float
    """Horizontal focal length in pixels."""
    fy: float
    """Vertical focal length in pixels."""
    cx: float
    """Principal point x (pixels; ``width / 2`` for NeRF-synthetic)."""
    cy: float
    """Principal point y (pixels; ``height / 2`` for NeRF-synthetic)."""

    @classmethod
    def from_fov(cls, camera_angle_x: float, width: int, height: int | None = None) -> Intrinsics:
        """NeRF-synthetic intrinsics: square pixels, centred principal point."""
        height = width if height is None else height
        f = focal_from_fov(camera_angle_x, width)
        return cls(width, height, f, f, width / 2.0, height / 2.0)

    @property
    def camera_angle_x(self) -> float:
        """Horizontal field of view in radians (the ``transforms.json`` field)."""
        return fov_from_focal(self.fx, self.width)

    @property
    def K(self) -> np.ndarray:
        """The 3x3 OpenCV calibration matrix."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    def scaled(self, factor: float) -> Intrinsics:
        """The same camera with the image resized by ``factor`` (e.g. 0.5 for half resolution)."""
        return Intrinsics(round(self.width * factor), round(self.height * factor), self.fx * factor,
                          self.fy * factor, self.cx * factor, self.cy * factor)


_FLIP_YZ = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def opengl_to_opencv(c2w: Tensor) -> Tensor:
    """Camera-to-world ``[..., 4, 4]`` from OpenGL axes to OpenCV axes (flip camera y and z).

    The conversion is its own inverse.
    """
    return c2w @ _FLIP_YZ.to(c2w)


def opencv_to_opengl(c2w: Tensor) -> Tensor:
    """Camera-to-world ``[..., 4, 4]`` from OpenCV axes to OpenGL axes."""
    return c2w @ _FLIP_YZ.to(c2w)


def pixel_rays(c2w: Tensor, intr: Intrinsics, *, normalize: bool = True) -> tuple[Tensor, Tensor]:
    """One ray per pixel centre for OpenGL-axes cameras.

    Args:
        c2w: ``[..., 4, 4]`` (or ``[..., 3, 4]``) camera-to-world in OpenGL axes.
        intr: the intrinsics (shared by all cameras).
        normalize: return unit directions (else the ``z = -1`` plane directions NeRF uses).

    Returns:
        ``origins, directions``, each ``[..., height, width, 3]``.
    """
    dev, dt = c2w.device, c2w.dtype
    i = torch.arange(intr.width, device=dev, dtype=dt) + 0.5
    j = torch.arange(intr.height, device=dev, dtype=dt) + 0.5
    jj, ii = torch.meshgrid(j, i, indexing="ij")  # [H, W]
    d_cam = torch.stack([(ii - intr.cx) / intr.fx, -(jj - intr.cy) / intr.fy,
                         -torch.ones_like(ii)], dim=-1)  # [H, W, 3], OpenGL: -z forward, +y up
    R = c2w[..., None, None, :3, :3]  # [..., 1, 1, 3, 3]
    dirs = (R @ d_cam[..., None])[..., 0]  # [..., H, W, 3]
    if normalize:
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = c2w[..., None, None, :3, 3].expand_as(dirs)
    return origins, dirs


def project(points: Tensor, c2w: Tensor, intr: Intrinsics) -> tuple[Tensor, Tensor]:
    """Project world points into an OpenGL-axes camera.

    Args:
        points: ``[N, 3]`` world points.
        c2w: ``[4, 4]`` camera-to-world (OpenGL axes).
        intr: intrinsics.

    Returns:
        ``pixels [N, 2]`` (x right, y down, pixel units, centres at +0.5) and ``depth [N]``
        (distance along the viewing axis; positive in front of the camera).
    """
    w2c = torch.linalg.inv(c2w)
    p = points @ w2c[:3, :3].T + w2c[:3, 3]  # camera coords, OpenGL
    depth = -p[:, 2]
    u = intr.fx * p[:, 0] / depth + intr.cx
    v = -intr.fy * p[:, 1] / depth + intr.cy
    return torch.stack([u, v], dim=-1), depth


def look_at(eye: np.ndarray, target: np.ndarray | None = None,
            up: np.ndarray | None = None) -> np.ndarray:
    """Camera-to-world (OpenGL axes) of a camera at ``eye`` looking at ``target``.

    ``target`` defaults to the origin and ``up`` to world ``+z``, as in Blender
    scenes. Returns a ``[4, 4]`` float64 array.
    """
    target = np.zeros(3) if target is None else target
    up = np.array([0.0, 0.0, 1.0]) if up is None else up
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    back = eye - target
    back /= np.linalg.norm(back)  # camera +z points away from the target
    right = np.cross(up, back)
    if np.linalg.norm(right) < 1e-8:  # looking along up: pick any perpendicular
        right = np.cross(np.array([0.0, 1.0, 0.0]), back)
    right /= np.linalg.norm(right)
    cam_up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, cam_up, back, eye
    return c2w


def sphere_poses(n: int, radius: float, *, rng: np.random.Generator, upper: bool = True,
                 min_elevation: float = 0.0) -> np.ndarray:
    """``n`` cameras at random on a sphere (or upper hemisphere) looking at the origin.

    Args:
        n: number of cameras.
        radius: distance to the origin.
        rng: NumPy generator (explicit randomness).
        upper: only the ``z >= 0`` hemisphere, as NeRF-synthetic's train views.
        min_elevation: lowest elevation in radians (with ``upper``).

    Returns:
        ``[n, 4, 4]`` camera-to-world matrices (OpenGL axes).
    """
    lo = math.sin(min_elevation) if upper else -1.0
    z = rng.uniform(lo, 1.0, n) * 0.98  # keep away from the pole where up is degenerate
    phi = rng.uniform(0, 2 * math.pi, n)
    r = np.sqrt(1 - z * z)
    eyes = radius * np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)
    return np.stack([look_at(e) for e in eyes]) if n else np.zeros((0, 4, 4))


def turntable_poses(n: int, radius: float, elevation: float = math.radians(30)) -> np.ndarray:
    """``n`` cameras evenly around the ``z`` axis at one elevation (radians): ``[n, 4, 4]``."""
    phi = np.linspace(0, 2 * math.pi, n, endpoint=False)
    z, r = math.sin(elevation), math.cos(elevation)
    eyes = radius * np.stack([r * np.cos(phi), r * np.sin(phi), np.full(n, z)], axis=-1)
    return np.stack([look_at(e) for e in eyes])
