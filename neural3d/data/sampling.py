"""Point sampling as the implicit-shape papers do it (numpy, explicit generators).

- :func:`sample_surface`: points uniformly by area on a mesh, with face normals, optional noise.
- :func:`sample_uniform`: points uniformly in a box.
- :func:`sample_near_surface`: surface points perturbed by isotropic Gaussians, one sigma per
  share (DeepSDF: variances 0.005 and 0.0005, i.e. sigmas ~0.071 and ~0.022 at unit-sphere
  scale; Occupancy Networks: uniform points plus points near the surface).
- :func:`sample_training_points`: the mix of both, driven by :class:`SamplingConfig`.

Points are float32 numpy arrays ``(N, 3)``; every function takes a ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SurfaceSamples:
    """Points on a surface with their unit normals, ``(N, 3)`` float32 each."""

    points: np.ndarray
    normals: np.ndarray


@dataclass(frozen=True)
class SamplingConfig:
    """How many training points, and where (DeepSDF-style near-surface mix)."""

    n_points: int = 50_000
    """Total points per shape."""
    uniform_fraction: float = 0.125
    """Share drawn uniformly in the box (IGR uses 1/8; DeepSDF ~0.05)."""
    sigmas: tuple[float, ...] = (0.01, 0.05)
    """Gaussian standard deviations around surface points, each an equal share of the rest
    (DeepSDF: sqrt(0.0005) and sqrt(0.005) at unit-sphere scale ~ 0.011 and 0.035 at
    unit-cube scale)."""
    bounds: float = 0.55
    """Half side of the sampling box ``[-b, b]^3``."""


def sample_surface(mesh, n: int, rng: np.random.Generator, *, noise: float = 0.0
                   ) -> SurfaceSamples:
    """``n`` points uniformly by area on ``mesh`` with face normals, plus optional noise.

    Args:
        mesh: ``trimesh.Trimesh`` with faces.
        n: number of points.
        rng: numpy generator.
        noise: standard deviation of isotropic Gaussian noise added to the points.
    """
    area = np.asarray(mesh.area_faces, dtype=np.float64)
    if len(area) == 0 or area.sum() <= 0:
        raise ValueError("cannot sample the surface of a mesh with no area")
    faces = rng.choice(len(area), size=n, p=area / area.sum())
    u, v = rng.random((2, n))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    tri = np.asarray(mesh.triangles)[faces]                          # (n, 3, 3)
    pts = tri[:, 0] + u[:, None] * (tri[:, 1] - tri[:, 0]) + v[:, None] * (tri[:, 2] - tri[:, 0])
    if noise > 0:
        pts = pts + rng.normal(scale=noise, size=pts.shape)
    normals = np.asarray(mesh.face_normals)[faces]
    return SurfaceSamples(pts.astype(np.float32), normals.astype(np.float32))


def sample_uniform(n: int, bounds: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly in ``[-bounds, bounds]^3`` -> ``(n, 3)`` float32."""
    return rng.uniform(-bounds, bounds, size=(n, 3)).astype(np.float32)


def sample_near_surface(surface: np.ndarray, n: int, sigmas: tuple[float, ...],
                        rng: np.random.Generator) -> np.ndarray:
    """``n`` points: random surface points plus ``N(0, sigma^2 I)``, equal shares per sigma.

    Args:
        surface: ``(M, 3)`` surface points to perturb.
        n: number of points.
        sigmas: standard deviations; point ``i`` uses ``sigmas[i % len(sigmas)]``.
        rng: numpy generator.
    """
    base = surface[rng.integers(0, len(surface), size=n)]
    s = np.asarray(sigmas, dtype=np.float32)[np.arange(n) % len(sigmas)]
    return (base + rng.normal(size=(n, 3)) * s[:, None]).astype(np.float32)


def sample_training_points(surface: np.ndarray, config: SamplingConfig,
                           rng: np.random.Generator) -> np.ndarray:
    """The uniform + near-surface mix of ``config`` around ``surface (M, 3)`` -> ``(N, 3)``."""
    n_uni = int(round(config.n_points * config.uniform_fraction))
    near = sample_near_surface(surface, config.n_points - n_uni, config.sigmas, rng)
    return np.concatenate([sample_uniform(n_uni, config.bounds, rng), near])
