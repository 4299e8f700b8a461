"""Training data for the multi-shape models: points with signed distance and occupancy.

One :class:`ShapeSamples` per shape, from an analytic :class:`~neural3d.shapes.Shape` (its own
ground truth) or a watertight mesh (Open3D ground truth, :mod:`neural3d.data.ground_truth`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from mpgym.errors import MpgymError
from neural3d.data.sampling import SamplingConfig, sample_surface, sample_training_points
from neural3d.shapes import Shape, project_to_surface, surface_normals


@dataclass
class ShapeSamples:
    """Samples of one shape (float32 arrays).

    Attributes:
        name: the shape's name.
        points: ``(N, 3)`` training points (uniform + near-surface).
        sdf: ``(N,)`` signed distance at ``points`` (negative inside).
        surface: ``(M, 3)`` points on the surface.
        normals: ``(M, 3)`` outward unit normals there.
        truth: the exact field ``(N, 3) -> (N,)`` (numpy), negative inside, for evaluation.
    """

    name: str
    points: np.ndarray
    sdf: np.ndarray
    surface: np.ndarray
    normals: np.ndarray
    truth: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def occupancy(self) -> np.ndarray:
        """``(N,)`` bool, True inside."""
        return self.sdf < 0


def shape_surface(shape: Shape, n: int, rng: np.random.Generator, *, resolution: int = 128
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points exactly on an analytic shape, with normals.

    Marching-cubes samples are projected onto the zero level set by Newton steps.

    Returns:
        ``(points (n, 3), normals (n, 3))``.
    """
    from neural3d.mesh import extract_mesh

    mesh = extract_mesh(shape, 0.55, resolution, normals="mesh")
    s = sample_surface(mesh, n, rng)
    x = project_to_surface(shape, torch.from_numpy(s.points))
    return x.numpy(), surface_normals(shape, x).numpy()


def samples_from_shape(name: str, shape: Shape, config: SamplingConfig, rng: np.random.Generator,
                       n_surface: int = 20_000) -> ShapeSamples:
    """Training samples of an analytic shape."""
    surf, nrm = shape_surface(shape, n_surface, rng)
    pts = sample_training_points(surf, config, rng)
    return ShapeSamples(name, pts, shape(pts).astype(np.float32), surf, nrm, shape)


def samples_from_mesh(name: str, mesh, config: SamplingConfig, rng: np.random.Generator,
                      n_surface: int = 20_000) -> ShapeSamples:
    """Training samples of a watertight mesh (raises if it is not watertight)."""
    from neural3d.data.ground_truth import MeshGroundTruth

    gt = MeshGroundTruth(mesh)
    s = sample_surface(mesh, n_surface, rng)
    pts = sample_training_points(s.points, config, rng)
    return ShapeSamples(name, pts, gt.signed_distance(pts), s.points, s.normals,
                        gt.signed_distance)


def batch_of_shapes(points: list[torch.Tensor], values: list[torch.Tensor], n: int,
                    gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random samples of every shape: ``(points [S, n, 3], values [S, n])``."""
    idx = [torch.randint(0, len(p), (n,), generator=gen) for p in points]
    return (torch.stack([p[i] for p, i in zip(points, idx, strict=True)]),
            torch.stack([v[i] for v, i in zip(values, idx, strict=True)]))


def model_from_state(build: Callable[[], nn.Module], state: dict[str, Tensor], what: str, *,
                     counts: dict[str, int] | None = None,
                     sizes: dict[str, int] | None = None) -> nn.Module:
    """Build a module from a (possibly hostile) config and load ``state`` into it.

    Sizes are checked before any real allocation: ``counts`` (layers, blocks, octaves) must
    lie in ``[0, len(state) + 64]`` and ``sizes`` (widths, code sizes) in ``[0, numel of
    state]``, since a module cannot have more of either than its saved tensors hold; then the
    module is built on the ``meta`` device (no memory) and its parameter shapes must equal the
    saved ones; only then is it built for real and loaded. Saved tensors must be finite floats.

    Args:
        build: makes the module from the config (called on ``meta`` first, then on the CPU).
        state: name -> tensor, as read from the checkpoint.
        what: the file, for messages.
        counts: config values bounded by the number of tensors.
        sizes: config values bounded by the number of saved elements.

    Returns:
        The module with ``state`` loaded.

    Raises:
        MpgymError: a config that builds no module, or tensors that do not match it.
    """
    from mpgym.errors import check_finite

    for name, t in state.items():
        if not t.dtype.is_floating_point:
            raise MpgymError(f"{what}: tensor {name!r} has dtype {t.dtype}; a float checkpoint "
                             "is expected.")
        check_finite(f"{what}: tensor {name!r}", t)
    numel = sum(t.numel() for t in state.values())
    for bound, group in ((len(state) + 64, counts or {}), (numel, sizes or {})):
        for key, value in group.items():
            if not 0 <= value <= bound:
                raise MpgymError(f"{what}: config {key} = {value} does not fit the checkpoint's "
                                 f"{len(state)} tensors of {numel} values in all.")
    try:
        with torch.device("meta"):
            skeleton = build()
        expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        del skeleton
    except (TypeError, ValueError, RuntimeError, OverflowError, ZeroDivisionError,
            IndexError) as exc:
        raise MpgymError(f"{what}: its config builds no network ({type(exc).__name__}: "
                         f"{str(exc)[:200]}).") from None
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))[:3]
        raise MpgymError(f"{what}: the saved tensors do not match the network its config "
                         f"describes (first differences: {diff}); the checkpoint is corrupt or "
                         "from another version.")
    model = build()
    model.load_state_dict(state)
    return model


def iou_of_field(fn, truth, n: int = 100_000, bounds: float = 0.55,
                 rng: np.random.Generator | None = None) -> float:
    """Volumetric IoU of ``fn(x) < 0`` against ``truth(x) < 0`` on ``n`` uniform points.

    The Occupancy Networks protocol (100k points in the box); both callables take and
    return numpy arrays.
    """
    from neural3d.data.sampling import sample_uniform
    from neural3d.metrics import volumetric_iou

    rng = rng if rng is not None else np.random.default_rng(0)
    x = sample_uniform(n, bounds, rng)
    return volumetric_iou(np.asarray(fn(x)) < 0, np.asarray(truth(x)) < 0)


def ious_of_shapes(shapes: list[ShapeSamples], field_of: Callable[[int], Callable]
                   ) -> dict[str, float]:
    """:func:`iou_of_field` of ``field_of(i)`` for every shape ``i`` that has a ``truth``."""
    return {s.name: iou_of_field(field_of(i), s.truth)
            for i, s in enumerate(shapes) if s.truth is not None}
