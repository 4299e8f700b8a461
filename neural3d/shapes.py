"""Procedural shapes with signed distance functions, and CSG on them.

Convention: a signed distance function ``f(x)`` is **negative inside**, zero on the surface
and positive outside (DeepSDF, IGR, Open3D ``RaycastingScene``; note that trimesh's
``proximity.signed_distance`` uses the opposite sign). All functions take points as a torch
tensor ``[..., 3]`` and return ``[...]``; they are differentiable, so ``torch.autograd`` gives
the exact gradient (unit length wherever the SDF is exact).

Three layers, as everywhere in mpgym:

- pure functions ``sdf_sphere``, ``sdf_box``, ``sdf_torus``, ``sdf_capsule``, ``sdf_cylinder``,
  ``sdf_superquadric`` (formulas from Inigo Quilez, "distance functions", iquilezles.org);
- frozen-dataclass shapes (:class:`Sphere`, :class:`Box`, ..., :class:`Union`,
  :class:`Difference`, :class:`Intersection`) that are callables ``[..., 3] -> [...]`` on
  tensors *or* numpy arrays, so they plug into :func:`neural3d.mesh.extract_mesh`;
- :data:`SHAPES`, the built-in library used by the examples, tests and benchmarks, each
  fitting inside the unit cube ``[-0.5, 0.5]^3``.

Exactness: sphere, box, torus, capsule and cylinder are exact Euclidean distances. The
superquadric uses the radial distance along the ray from its centre (exact on the
surface and along those rays, a bound elsewhere). CSG with ``min``/``max`` gives the exact
distance outside a union but only a bound inside it (and similarly for differences); the
zero level set, which is what meshes and metrics use, is always exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Tensor = torch.Tensor

# ----------------------------------------------------------------------------------------------
# (a) pure functions: points [..., 3] -> signed distance [...]
# ----------------------------------------------------------------------------------------------


def sdf_sphere(p: Tensor, radius: float) -> Tensor:
    """Signed distance to a sphere at the origin: ``|p| - r``.

    Args:
        p: points ``[..., 3]``.
        radius: sphere radius.

    Returns:
        ``[...]`` signed distances (negative inside).

    Example:
        >>> sdf_sphere(torch.tensor([[0.0, 0.0, 2.0]]), 1.0)
        tensor([1.])
    """
    return p.norm(dim=-1) - radius


def sdf_box(p: Tensor, half_extents: tuple[float, float, float], rounding: float = 0.0) -> Tensor:
    """Signed distance to an axis-aligned box centred at the origin (optionally rounded).

    ``q = |p| - b``; ``f = |max(q, 0)| + min(max(q_x, q_y, q_z), 0) - rounding``.

    Args:
        p: points ``[..., 3]``.
        half_extents: half side lengths ``(bx, by, bz)`` (before rounding).
        rounding: radius of the rounded edges; the box grows by it.

    Returns:
        ``[...]`` signed distances.

    Example:
        >>> sdf_box(torch.tensor([[2.0, 0.0, 0.0]]), (1.0, 1.0, 1.0))
        tensor([1.])
    """
    b = p.new_tensor(half_extents)
    q = p.abs() - b
    outside = q.clamp(min=0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp(max=0)
    return outside + inside - rounding


def sdf_torus(p: Tensor, major: float, minor: float) -> Tensor:
    """Signed distance to a torus around the z axis: ``|(|p_xy| - R, p_z)| - r``.

    Args:
        p: points ``[..., 3]``.
        major: distance ``R`` from the centre to the tube's centre line.
        minor: tube radius ``r``.

    Returns:
        ``[...]`` signed distances.

    Example:
        >>> sdf_torus(torch.tensor([[1.0, 0.0, 0.0]]), 1.0, 0.25)
        tensor([-0.2500])
    """
    q = torch.stack([p[..., :2].norm(dim=-1) - major, p[..., 2]], dim=-1)
    return q.norm(dim=-1) - minor


def sdf_capsule(p: Tensor, a: tuple[float, float, float], b: tuple[float, float, float],
                radius: float) -> Tensor:
    """Signed distance to a capsule: the segment ``ab`` thickened by ``radius``.

    ``h = clamp((p - a).(b - a) / |b - a|^2, 0, 1)``; ``f = |p - a - h (b - a)| - r``.

    Args:
        p: points ``[..., 3]``.
        a: one end of the segment.
        b: the other end.
        radius: thickness.

    Returns:
        ``[...]`` signed distances.
    """
    a_t, b_t = p.new_tensor(a), p.new_tensor(b)
    pa, ba = p - a_t, b_t - a_t
    h = ((pa * ba).sum(-1) / (ba * ba).sum()).clamp(0.0, 1.0)
    return (pa - h[..., None] * ba).norm(dim=-1) - radius


def sdf_cylinder(p: Tensor, radius: float, half_height: float) -> Tensor:
    """Signed distance to a capped cylinder along the z axis, centred at the origin.

    Args:
        p: points ``[..., 3]``.
        radius: cylinder radius.
        half_height: half its length along z.

    Returns:
        ``[...]`` signed distances.
    """
    d = torch.stack([p[..., :2].norm(dim=-1) - radius, p[..., 2].abs() - half_height], dim=-1)
    return d.max(dim=-1).values.clamp(max=0) + d.clamp(min=0).norm(dim=-1)


def sdf_superquadric(p: Tensor, scales: tuple[float, float, float], e1: float, e2: float) -> Tensor:
    """Radial signed distance to a superquadric (Barr 1981), exact on the surface.

    Inside-outside function ``F = ((|x/a|^(2/e2) + |y/b|^(2/e2))^(e2/e1) + |z/c|^(2/e1))``;
    the point ``p / F^(e1/2)`` lies on the surface along the ray from the centre, so
    ``f = |p| (1 - F^(-e1/2))`` is the distance along that ray (Solina & Bajcsy 1990). It is
    zero exactly on the surface, negative inside, and a bound elsewhere, not a Euclidean
    distance.

    Args:
        p: points ``[..., 3]``.
        scales: semi-axes ``(a, b, c)``.
        e1: north-south squareness (1 ellipsoid, -> 0 box-like, 2 octahedron-like).
        e2: east-west squareness.

    Returns:
        ``[...]`` signed radial distances.
    """
    s = p.new_tensor(scales)
    q = (p / s).abs().clamp(min=1e-9)
    xy = (q[..., 0] ** (2.0 / e2) + q[..., 1] ** (2.0 / e2)) ** (e2 / e1)
    f_io = xy + q[..., 2] ** (2.0 / e1)
    return p.norm(dim=-1) * (1.0 - f_io.clamp(min=1e-12) ** (-e1 / 2.0))


# ----------------------------------------------------------------------------------------------
# (b) shapes as callables
# ----------------------------------------------------------------------------------------------


class Shape:
    """A solid given by its signed distance function; call it on points ``[..., 3]``.

    Accepts a torch tensor (returns a tensor, differentiable) or anything numpy converts
    (returns a float32 numpy array), so the same object feeds training, metrics and
    :func:`neural3d.mesh.extract_mesh`.
    """

    exact: bool = True
    """Whether ``sdf`` is the true Euclidean distance everywhere (else exact only at 0)."""

    def sdf(self, p: Tensor) -> Tensor:
        """Signed distance ``[..., 3] -> [...]`` on tensors."""
        raise NotImplementedError

    def __call__(self, p: Any) -> Any:
        """Signed distance of tensors (differentiable) or arrays (float32 numpy)."""
        if isinstance(p, torch.Tensor):
            return self.sdf(p)
        t = torch.as_tensor(np.asarray(p, dtype=np.float32))
        with torch.no_grad():
            return self.sdf(t).numpy()

    def __or__(self, other: Shape) -> Union:
        return Union((self, other))

    def __sub__(self, other: Shape) -> Difference:
        return Difference(self, other)

    def __and__(self, other: Shape) -> Intersection:
        return Intersection((self, other))


@dataclass(frozen=True)
class Sphere(Shape):
    """A sphere."""

    radius: float = 0.4
    """Radius."""
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Centre."""

    def sdf(self, p: Tensor) -> Tensor:  # noqa: D102
        return sdf_sphere(p - p.new_tensor(self.center), self.radius)


@dataclass(frozen=True)
class Box(Shape):
    """An axis-aligned box, optionally with rounded edges."""

    half_extents: tuple[float, float, float] = (0.35, 0.25, 0.2)
    """Half side lengths (before rounding)."""
    rounding: float = 0.0
    """Edge radius (the box grows by it)."""
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Centre."""

    def sdf(self, p: Tensor) -> Tensor:  # noqa: D102
        return sdf_box(p - p.new_tensor(self.center), self.half_extents, self.rounding)


@dataclass(frozen=True)
class Torus(Shape):
    """A torus around the z axis."""

    major: float = 0.3
    """Distance from the centre to the tube's centre line."""
    minor: float = 0.12
    """Tube radius."""
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Centre."""

    def sdf(self, p: Tensor) -> Tensor:  # noqa: D102
        return sdf_torus(p - p.new_tensor(self.center), self.major, self.minor)


@dataclass(frozen=True)
class Capsule(Shape):
    """A segment thickened by a radius."""

    a: tuple[float, float, float] = (-0.25, -0.15, 0.0)
    """One end of the segment."""
    b: tuple[float, float, float] = (0.25, 0.15, 0.0)
    """The other end."""
    radius: float = 0.15
    """Thickness."""

    def sdf(self, p: Tensor) -> Tensor:  # noqa: D102
        return sdf_capsule(p, self.a, self.b, self.radius)


@dataclass(frozen=True)
class Cylinder(Shape):
    """A capped cylinder along z."""

    radius: float = 0.25
    """Radius."""
    half_height: float = 0.35
    """Half length along z."""
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Centre."""

    def sdf(self, p: Tensor) -> Tensor:  # noqa: D102
        return sdf_cylinder(p - p.new_tensor(self.center), self.radius, self.half_height)


@dataclass(frozen=True)
class Superquadric(Shape):
    """A superquadric (radial distance; see :func:`sdf_superquadric`)."""

    scales: tuple[float, float, float] = (0.4, 0.3, 0.3)
    """Semi-axes."""
    e1: float = 0.5
    """North-south squareness."""
    e2: float = 0.5
    """East-west squareness."""
    exact = False

    def sdf(self, p: Tensor) -> Tensor:  # noqa: D102
        return sdf_superquadric(p, self.scales, self.e1, self.e2)


@dataclass(frozen=True)
class Union(Shape):
    """Union: ``min`` of the parts' distances (exact outside, a bound inside)."""

    parts: tuple[Shape, ...]
    """The shapes joined."""
    exact = False

    def sdf(self, p: Tensor) -> Tensor:  # noqa: D102
        return torch.stack([s.sdf(p) for s in self.parts], dim=-1).min(dim=-1).values


@dataclass(frozen=True)
class Intersection(Shape):
    """Intersection: ``max`` of the parts' distances (a bound)."""

    parts: tuple[Shape, ...]
    """The shapes intersected."""
    exact = False

    def sdf(self, p: Tensor) -> Tensor:  # noqa: D102
        return torch.stack([s.sdf(p) for s in self.parts], dim=-1).max(dim=-1).values


@dataclass(frozen=True)
class Difference(Shape):
    """``a`` minus ``b``: ``max(f_a, -f_b)`` (a bound)."""

    a: Shape
    """The shape cut from."""
    b: Shape
    """The shape removed."""
    exact = False

    def sdf(self, p: Tensor) -> Tensor:  # noqa: D102
        return torch.maximum(self.a.sdf(p), -self.b.sdf(p))


# ----------------------------------------------------------------------------------------------
# the built-in library (each inside [-0.5, 0.5]^3)
# ----------------------------------------------------------------------------------------------

SHAPES: dict[str, Callable[[], Shape]] = {
    "sphere": lambda: Sphere(0.4),
    "box": lambda: Box((0.35, 0.25, 0.2), rounding=0.02),
    "torus": lambda: Torus(0.3, 0.12),
    "capsule": lambda: Capsule(),
    "cylinder": lambda: Cylinder(0.25, 0.35),
    "superquadric": lambda: Superquadric((0.4, 0.3, 0.3), 0.5, 0.5),
    "csg_union": lambda: Sphere(0.25, (-0.12, 0.0, 0.0)) | Box((0.18, 0.18, 0.18), 0.02,
                                                              (0.18, 0.0, 0.0)),
    "csg_difference": lambda: Box((0.3, 0.3, 0.2), rounding=0.03) - Cylinder(0.15, 0.4),
}
"""Built-in shapes by name: ``SHAPES["torus"]()``."""


def get_shape(name: str) -> Shape:
    """A built-in shape by name.

    Raises:
        MpgymError: unknown name (the message lists the accepted ones).
    """
    from mpgym.errors import MpgymError

    if name not in SHAPES:
        raise MpgymError(f"unknown shape {name!r}; accepted: {', '.join(SHAPES)}.")
    return SHAPES[name]()


def project_to_surface(shape: Shape, points: Tensor, iterations: int = 8) -> Tensor:
    """Move points onto ``shape``'s zero level set by Newton steps ``x -= f(x) g / |g|^2``.

    Args:
        shape: any :class:`Shape`.
        points: ``[N, 3]`` starting points near the surface (e.g. marching-cubes vertices).
        iterations: Newton steps (exact SDFs converge in one).

    Returns:
        ``[N, 3]`` points with ``|f| ~ 1e-7``.
    """
    x = points.detach().clone()
    for _ in range(iterations):
        x.requires_grad_(True)
        f = shape.sdf(x)
        (g,) = torch.autograd.grad(f.sum(), x)
        with torch.no_grad():
            x = x - (f / (g * g).sum(-1).clamp(min=1e-12))[:, None] * g
    return x.detach()


def surface_normals(shape: Shape, points: Tensor) -> Tensor:
    """Outward unit normals ``grad f / |grad f|`` at ``points`` ``[N, 3]`` -> ``[N, 3]``."""
    x = points.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(shape.sdf(x).sum(), x)
    return torch.nn.functional.normalize(g, dim=-1)
