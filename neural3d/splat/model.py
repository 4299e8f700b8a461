"""The parameters of a 3D Gaussian splat scene, stored before activation as the 3DGS ``.ply``.

``GaussianModel.params`` is an ``nn.ParameterDict`` with, for ``N`` Gaussians and
``K = (max_sh_degree + 1)^2`` SH coefficients per colour channel:

- ``means [N, 3]``: world positions (no activation);
- ``log_scales [N, 3]``: ``exp`` gives standard deviations (:meth:`GaussianModel.scales`);
- ``quats [N, 4]``: ``(w, x, y, z)``, normalised on use (:meth:`GaussianModel.rotations`);
- ``opacity_logits [N]``: ``sigmoid`` gives opacities (:meth:`GaussianModel.opacities`);
- ``sh_dc [N, 1, 3]``: SH degree 0 (colour ``SH_C0 * f + 0.5``);
- ``sh_rest [N, K - 1, 3]``: SH degrees 1..max_sh_degree.

Density control (:mod:`neural3d.splat.strategy`) replaces these tensors with new
``nn.Parameter`` s of another ``N``, so nothing here caches ``N``: it is always read from
``params["means"]``. ``sh_degree`` is the active degree (0 at the start of training, raised by
the trainer every 1000 steps as in 3DGS); ``max_sh_degree`` fixes ``K``.

Initialisation follows the 3DGS reference (``GaussianModel.create_from_pcd``): isotropic scales
from the mean squared distance to the 3 nearest neighbours, identity rotations, opacity 0.1,
DC colour from the points, higher SH bands zero.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mpgym.errors import MpgymError, check_positive
from neural3d.splat.project import quat_to_rotmat as unit_quat_to_rotmat
from neural3d.splat.sh import MAX_SH_DEGREE, eval_sh, num_sh_bases, rgb_to_sh, sh_to_rgb

__all__ = ["PARAM_NAMES", "GaussianModel", "build_covariance", "knn_log_scales",
           "quat_to_rotmat"]

log = logging.getLogger(__name__)

PARAM_NAMES = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")
"""Keys of ``GaussianModel.params`` (and of :meth:`GaussianModel.to_tensors`), in order."""

MIN_SQUARED_DISTANCE = 1e-7
"""Floor on the mean squared neighbour distance, so duplicate points get a finite log-scale
(the reference clamps ``distCUDA2`` at the same value)."""

# The 12 vertices of an icosahedron (a spherical 5-design: averaging over them integrates every
# polynomial of degree <= 5 over the sphere exactly), for view-averaged NeRF colours.
_PHI = (1 + math.sqrt(5)) / 2
_ICOSAHEDRON = np.array([(0, s, t * _PHI) for s in (-1, 1) for t in (-1, 1)]
                        + [(s, t * _PHI, 0) for s in (-1, 1) for t in (-1, 1)]
                        + [(t * _PHI, 0, s) for s in (-1, 1) for t in (-1, 1)], np.float64)
_ICOSAHEDRON /= np.linalg.norm(_ICOSAHEDRON, axis=1, keepdims=True)


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices of quaternions ``(w, x, y, z)``, normalised here.

    Args:
        quats: ``[..., 4]``, any non-zero length.

    Returns:
        ``[..., 3, 3]``.

    Example:
        >>> quat_to_rotmat(torch.tensor([2.0, 0.0, 0.0, 0.0])).tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    return unit_quat_to_rotmat(torch.nn.functional.normalize(quats, dim=-1))


def build_covariance(scales: Tensor, quats: Tensor) -> Tensor:
    """World covariances ``Sigma = R S S^T R^T`` with ``S = diag(scales)``, ``R = R(quats)``.

    Args:
        scales: ``[..., 3]`` standard deviations along the Gaussian's own axes (activated).
        quats: ``[..., 4]`` rotations ``(w, x, y, z)``, any non-zero length.

    Returns:
        ``[..., 3, 3]`` symmetric positive semi-definite.
    """
    m = quat_to_rotmat(quats) * scales[..., None, :]  # R S: column j of R scaled by s_j
    return m @ m.transpose(-1, -2)


def knn_log_scales(xyz: np.ndarray, k: int = 3) -> np.ndarray:
    """3DGS's initial log-scale: ``log sqrt(mean of squared distances to k nearest neighbours)``.

    Args:
        xyz: ``(N, 3)`` points, ``N >= 2`` (with ``N <= k`` all other points are used).
        k: neighbours (3 in the reference).

    Returns:
        ``(N,)`` float64; duplicates are floored at ``log sqrt(MIN_SQUARED_DISTANCE)``.

    Example:
        >>> pts = np.array([[0, 0, 0], [2, 0, 0]], float)
        >>> np.exp(knn_log_scales(pts)).tolist()
        [2.0, 2.0]
    """
    from scipy.spatial import cKDTree

    kk = min(k, len(xyz) - 1)
    dist, _ = cKDTree(xyz).query(xyz, k=kk + 1)  # column 0: the point itself (distance 0)
    d2 = np.maximum((np.asarray(dist).reshape(len(xyz), -1)[:, 1:] ** 2).mean(1),
                    MIN_SQUARED_DISTANCE)
    return 0.5 * np.log(d2)


def _expected_shapes(n: int, max_sh_degree: int) -> dict[str, tuple[int, ...]]:
    k = num_sh_bases(max_sh_degree)
    return {"means": (n, 3), "log_scales": (n, 3), "quats": (n, 4), "opacity_logits": (n,),
            "sh_dc": (n, 1, 3), "sh_rest": (n, k - 1, 3)}


def _check_sh_degree(name: str, value: Any, top: int = MAX_SH_DEGREE) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= top:
        raise MpgymError(f"{name} must be an integer 0..{top}; got {value!r}.")
    return int(value)


def _validate_tensors(tensors: Mapping[str, Any], max_sh_degree: int) -> dict[str, Tensor]:
    """Check names, shapes, dtypes and finiteness; return float tensors (``means``' dtype)."""
    if not isinstance(tensors, Mapping):
        raise MpgymError(f"Gaussian parameters must be a mapping of {list(PARAM_NAMES)} to "
                         f"tensors; got {type(tensors).__name__}.")
    missing, extra = set(PARAM_NAMES) - set(tensors), set(tensors) - set(PARAM_NAMES)
    if missing or extra:
        raise MpgymError(f"Gaussian parameters: missing {sorted(missing)}, unexpected "
                         f"{sorted(extra)}; expected exactly {list(PARAM_NAMES)}.")
    out = {name: torch.as_tensor(tensors[name]) for name in PARAM_NAMES}
    means = out["means"]
    if means.dim() != 2 or means.shape[1] != 3:
        raise MpgymError(f"Gaussian 'means' has shape {tuple(means.shape)}; expected (N, 3).")
    expected = _expected_shapes(means.shape[0], max_sh_degree)
    for name, t in out.items():
        if tuple(t.shape) != expected[name]:
            raise MpgymError(
                f"Gaussian {name!r} has shape {tuple(t.shape)}; expected {expected[name]} "
                f"(N = {means.shape[0]} from 'means', max_sh_degree = {max_sh_degree}).")
        if not t.is_floating_point():
            raise MpgymError(f"Gaussian {name!r} holds {t.dtype}; expected floating point.")
        if not bool(torch.isfinite(t).all()):
            raise MpgymError(f"Gaussian {name!r} contains NaN or infinity; only finite "
                             "values are accepted.")
    return {name: t.to(means.dtype) for name, t in out.items()}


def _points_array(xyz: Any, what: str) -> np.ndarray:
    """``(N, 3)`` finite float64 points with ``N >= 2``, or one clear error."""
    arr = np.asarray(xyz.detach().cpu() if isinstance(xyz, Tensor) else xyz)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.dtype.kind not in "fiu":
        raise MpgymError(f"{what} must be an (N, 3) array of numbers; got shape "
                         f"{arr.shape} of {arr.dtype}.")
    if arr.shape[0] < 2:
        raise MpgymError(f"{what} has {arr.shape[0]} point(s); at least 2 are needed (the "
                         "initial scales come from distances to neighbours).")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise MpgymError(f"{what} contains NaN or infinity; only finite values are accepted.")
    return arr


def _colors_array(rgb: Any, n: int) -> np.ndarray:
    """``(n, 3)`` colours in [0, 1] from floats in [0, 1] or integers 0..255; grey for None."""
    if rgb is None:
        return np.full((n, 3), 0.5)
    arr = np.asarray(rgb.detach().cpu() if isinstance(rgb, Tensor) else rgb)
    accepted = "floats in [0, 1] or integers 0..255"
    if arr.shape != (n, 3) or arr.dtype.kind not in "fiu":
        raise MpgymError(f"rgb must be an ({n}, 3) array of {accepted}, one row per point; "
                         f"got shape {arr.shape} of {arr.dtype}.")
    scale = 255.0 if arr.dtype.kind in "iu" else 1.0
    arr = arr.astype(np.float64) / scale
    if not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
        raise MpgymError(f"rgb values lie outside [0, 1] (or are not finite); expected {accepted}.")
    return arr


def _mesh_colors(mesh: Any, faces: np.ndarray, bary: np.ndarray) -> np.ndarray | None:
    """``(n, 3)`` colours in [0, 1] at surface samples, or None if the mesh has none."""
    visual = mesh.visual
    if visual.kind == "texture":  # bake the texture into per-vertex colours first
        try:
            visual = visual.to_color()
        except Exception as exc:  # noqa: BLE001 -- a broken texture leaves the samples grey
            log.warning("from_mesh: could not read the mesh's texture (%s); using grey", exc)
            return None
    if visual.kind == "vertex":
        vc = np.asarray(visual.vertex_colors, np.float64)[:, :3] / 255.0  # (V, 3)
        return np.einsum("nk,nkc->nc", bary, vc[np.asarray(mesh.faces)[faces]])
    if visual.kind == "face":
        return np.asarray(visual.face_colors, np.float64)[faces, :3] / 255.0
    return None


class GaussianModel(nn.Module):
    """3D Gaussians with SH colour, parameters stored before activation.

    Args:
        tensors: the six parameters (:data:`PARAM_NAMES`, shapes in the module docstring),
            tensors or arrays, floating point and finite; copied, in ``means``' dtype.
        max_sh_degree: 0..3, fixes ``K = (max_sh_degree + 1)^2``.
        sh_degree: active degree, 0..max_sh_degree.

    Raises:
        MpgymError: a missing or extra tensor, a wrong shape or dtype, NaN or infinity.
    """

    params: nn.ParameterDict

    def __init__(self, tensors: Mapping[str, Any], *, max_sh_degree: int = MAX_SH_DEGREE,
                 sh_degree: int = 0):
        super().__init__()
        self.max_sh_degree = _check_sh_degree("max_sh_degree", max_sh_degree)
        valid = _validate_tensors(tensors, self.max_sh_degree)
        # A list keeps PARAM_NAMES' order (ParameterDict sorts the keys of a plain dict).
        self.params = nn.ParameterDict(
            [(name, nn.Parameter(valid[name].detach().clone())) for name in PARAM_NAMES])
        self.sh_degree = sh_degree

    @property
    def sh_degree(self) -> int:
        """Active SH degree used by :meth:`colors` (0..max_sh_degree)."""
        return self._sh_degree

    @sh_degree.setter
    def sh_degree(self, value: int) -> None:
        self._sh_degree = _check_sh_degree("sh_degree", value, self.max_sh_degree)

    @property
    def num_gaussians(self) -> int:
        """``N``, read from ``params["means"]`` (never cached)."""
        return int(self.params["means"].shape[0])

    def scales(self) -> Tensor:
        """``[N, 3]`` standard deviations ``exp(log_scales)``."""
        return torch.exp(self.params["log_scales"])

    def rotations(self) -> Tensor:
        """``[N, 4]`` unit quaternions ``(w, x, y, z)``."""
        return torch.nn.functional.normalize(self.params["quats"], dim=-1)

    def opacities(self) -> Tensor:
        """``[N]`` opacities ``sigmoid(opacity_logits)`` in (0, 1)."""
        return torch.sigmoid(self.params["opacity_logits"])

    def sh(self) -> Tensor:
        """``[N, K, 3]`` all SH coefficients, DC first."""
        return torch.cat([self.params["sh_dc"], self.params["sh_rest"]], dim=1)

    def covariances(self) -> Tensor:
        """``[N, 3, 3]`` world covariances ``R S S^T R^T``."""
        return build_covariance(self.scales(), self.params["quats"])

    def colors(self, camera_center: Tensor) -> Tensor:
        """``[N, 3]`` colours seen from ``camera_center [3]`` at the active SH degree.

        ``max(eval_sh(sh_degree, sh, means - camera_center) + 0.5, 0)``, as the 3DGS reference
        (which clamps negative colours to zero).
        """
        k = num_sh_bases(self.sh_degree)
        dc, rest = self.params["sh_dc"], self.params["sh_rest"]
        coeffs = dc if k == 1 else torch.cat([dc, rest[:, : k - 1]], dim=1)  # [N, k, 3]
        dirs = self.params["means"] - camera_center.to(dc)
        return torch.clamp_min(eval_sh(self.sh_degree, coeffs, dirs) + 0.5, 0.0)

    def to_tensors(self) -> dict[str, Tensor]:
        """Detached copies of the parameters (for safetensors checkpoints), keyed as ``params``."""
        return {name: self.params[name].detach().clone() for name in PARAM_NAMES}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, Any], max_sh_degree: int | None = None, *,
                     sh_degree: int = 0) -> GaussianModel:
        """Rebuild a model from :meth:`to_tensors` output (e.g. a loaded checkpoint).

        Args:
            tensors: the six parameters keyed by :data:`PARAM_NAMES`.
            max_sh_degree: 0..3; None infers it from ``sh_rest``'s ``K - 1`` (0, 3, 8 or 15).
            sh_degree: active degree.

        Raises:
            MpgymError: missing or unexpected names, shapes that do not fit ``max_sh_degree``
                or each other, non-float or non-finite values.
        """
        if max_sh_degree is None:
            rest = tensors.get("sh_rest") if isinstance(tensors, Mapping) else None
            shape = tuple(getattr(rest, "shape", ()))
            bases = {num_sh_bases(d) - 1: d for d in range(MAX_SH_DEGREE + 1)}
            if len(shape) != 3 or shape[1] not in bases:
                raise MpgymError(f"Gaussian 'sh_rest' has shape {shape}; "
                                 "expected (N, K - 1, 3) with K - 1 in (0, 3, 8, 15), SH degree "
                                 "0..3.")
            max_sh_degree = bases[shape[1]]
        return cls(tensors, max_sh_degree=max_sh_degree, sh_degree=sh_degree)

    def extra_repr(self) -> str:
        """Sizes shown by ``print(model)``."""
        return (f"num_gaussians={self.num_gaussians}, sh_degree={self.sh_degree}, "
                f"max_sh_degree={self.max_sh_degree}")

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def from_points(cls, xyz: Any, rgb: Any = None, *, sh_degree: int = MAX_SH_DEGREE,
                    opacity: float = 0.1) -> GaussianModel:
        """One Gaussian per point, initialised as the 3DGS reference does.

        Args:
            xyz: ``(N, 3)`` points (array or tensor), ``N >= 2``.
            rgb: ``(N, 3)`` colours, floats in [0, 1] or integers 0..255 (COLMAP's uint8);
                None for grey 0.5.
            sh_degree: the model's ``max_sh_degree`` (its active degree starts at 0).
            opacity: initial opacity in (0, 1) (0.1 in 3DGS).

        Returns:
            A float32 model on the CPU: isotropic scales from :func:`knn_log_scales`,
            identity rotations, ``sh_dc = rgb_to_sh(rgb)``, ``sh_rest = 0``,
            ``opacity_logits = logit(opacity)``.
        """
        max_deg = _check_sh_degree("sh_degree", sh_degree)
        pts = _points_array(xyz, "xyz")
        colors = _colors_array(rgb, len(pts))
        if not (isinstance(opacity, (int, float, np.floating)) and 0.0 < opacity < 1.0):
            raise MpgymError(f"opacity must be a number in (0, 1); got {opacity!r}.")
        n, k = len(pts), num_sh_bases(max_deg)
        f32 = torch.float32
        quats = torch.zeros(n, 4, dtype=f32)
        quats[:, 0] = 1.0
        tensors = {
            "means": torch.as_tensor(pts, dtype=f32),
            "log_scales": torch.as_tensor(knn_log_scales(pts), dtype=f32)[:, None].repeat(1, 3),
            "quats": quats,
            "opacity_logits": torch.full((n,), math.log(opacity / (1.0 - opacity)), dtype=f32),
            "sh_dc": rgb_to_sh(torch.as_tensor(colors, dtype=f32))[:, None, :],
            "sh_rest": torch.zeros(n, k - 1, 3, dtype=f32),
        }
        return cls(tensors, max_sh_degree=max_deg)

    @classmethod
    def random(cls, n: int, box_half_side: float, *, seed: int,
               sh_degree: int = MAX_SH_DEGREE, opacity: float = 0.1,
               center: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> GaussianModel:
        """``n`` Gaussians uniform in a cube, 3DGS's initialisation for synthetic scenes.

        The reference draws 100,000 points in ``[-1.3, 1.3]^3`` and DC coefficients uniform in
        ``[0, 1/255)``, i.e. colours within 0.0011 of grey; the rest is :meth:`from_points`.

        Args:
            n: number of Gaussians, >= 2.
            box_half_side: half the cube's side (1.3 for NeRF-synthetic scenes).
            seed: for the positions and colours.
            sh_degree: the model's ``max_sh_degree``.
            opacity: initial opacity.
            center: the cube's centre.
        """
        check_positive("n", n)
        check_positive("box_half_side", box_half_side, integer=False)
        rng = np.random.default_rng(seed)
        xyz = (rng.random((int(n), 3)) * 2.0 - 1.0) * box_half_side + np.asarray(center, float)
        dc = torch.from_numpy(rng.random((int(n), 3)) / 255.0)
        rgb = sh_to_rgb(dc).clamp(0.0, 1.0)
        return cls.from_points(xyz, rgb, sh_degree=sh_degree, opacity=opacity)

    @classmethod
    def from_mesh(cls, mesh: Any, n: int, *, seed: int, sh_degree: int = MAX_SH_DEGREE,
                  opacity: float = 0.1) -> GaussianModel:
        """``n`` Gaussians at area-uniform samples of a triangle mesh's surface.

        Args:
            mesh: a ``trimesh.Trimesh`` with at least one face of non-zero area.
            n: number of Gaussians, >= 2.
            seed: for the surface samples.
            sh_degree: the model's ``max_sh_degree``.
            opacity: initial opacity.

        Returns:
            A model whose colours are the mesh's vertex colours interpolated at the samples
            (face colours, or a texture baked to vertices, likewise); grey without colours.
        """
        import trimesh

        check_positive("n", n)
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            raise MpgymError(f"from_mesh needs a trimesh.Trimesh with faces; got "
                             f"{type(mesh).__name__}.")
        area = float(mesh.area)
        if not (math.isfinite(area) and area > 0):
            raise MpgymError(f"the mesh's surface area is {area}; a surface of non-zero, finite "
                             "area is needed to sample Gaussians on.")
        pts, faces, bary = trimesh.sample.sample_surface(mesh, int(n), seed=seed,
                                                         return_barycentric=True)
        colors = _mesh_colors(mesh, faces, bary)
        return cls.from_points(pts, None if colors is None else np.clip(colors, 0, 1),
                               sh_degree=sh_degree, opacity=opacity)

    @classmethod
    def from_nerf(cls, field: nn.Module, n: int, *, seed: int, aabb: Any = None,
                  grid: nn.Module | None = None, threshold: float | None = None,
                  sh_degree: int = MAX_SH_DEGREE, opacity: float = 0.1) -> GaussianModel:
        """``n`` Gaussians where a trained NeRF is dense, coloured by its view-averaged colour.

        Candidates are drawn uniformly in the box (or in the occupied cells of ``grid``) and
        kept where ``field.density(x) > threshold``; up to ``256 n`` candidates are tried.
        Each kept point's colour is the mean of ``field(x, d)`` over the 12 icosahedron
        directions (exact for the low-order variation a colour MLP shows), higher SH bands
        start at zero.

        Args:
            field: a :mod:`neural3d.nerf.fields` field (``density(x [M, 3]) -> [M]``,
                ``forward(x, d) -> (sigma [M], rgb [M, 3])``, buffer ``aabb [6]``).
            n: number of Gaussians, >= 2.
            seed: for the candidates.
            aabb: ``[6]`` box to sample (default: ``field.aabb``).
            grid: a :class:`neural3d.render.volume.OccupancyGrid` trained with the field;
                candidates then come from its occupied cells only (far fewer are wasted).
            threshold: density per world unit taken as "inside" (default
                :data:`neural3d.nerf.io.DENSITY_LEVEL`, the NeRF mesh-export level).
            sh_degree: the model's ``max_sh_degree``.
            opacity: initial opacity.

        Raises:
            MpgymError: bad ``n``/box/threshold, an empty grid, or fewer than 2 dense points
                found (an untrained field or a threshold above its densities).
        """
        check_positive("n", n)
        if threshold is None:
            from neural3d.nerf.io import DENSITY_LEVEL

            threshold = DENSITY_LEVEL
        pts = _sample_dense_points(field, int(n), seed=seed, aabb=aabb, grid=grid,
                                   threshold=threshold)
        rgb = _view_averaged_colors(field, pts)
        return cls.from_points(pts.cpu().double().numpy(), rgb.cpu().double().clamp(0, 1).numpy(),
                               sh_degree=sh_degree, opacity=opacity)


# -- initialisation from a NeRF ---------------------------------------------------------------

_NERF_BATCH = 1 << 16
"""Points per field evaluation (bounds memory: the hash field's features are ~100 B a point)."""

_NERF_CANDIDATES_PER_POINT = 256
"""Candidate budget per requested Gaussian (acceptance can be ~1 % for a thin surface)."""


def _field_device(field: Any) -> torch.device:
    """Where the field's tensors live (its ``aabb`` buffer or first parameter), else CPU."""
    aabb = getattr(field, "aabb", None)
    if isinstance(aabb, Tensor):
        return aabb.device
    first = next(iter(field.parameters()), None) if isinstance(field, nn.Module) else None
    return first.device if first is not None else torch.device("cpu")


def _field_box(field: Any, aabb: Any) -> Tensor:
    """``[6]`` float32 box (``field.aabb`` by default) with min < max, or one clear error."""
    if aabb is None:
        aabb = getattr(field, "aabb", None)
        if aabb is None:
            raise MpgymError("from_nerf: the field has no 'aabb'; pass aabb=[xmin, ymin, zmin, "
                             "xmax, ymax, zmax].")
    box = torch.as_tensor(aabb, dtype=torch.float32).detach().cpu().reshape(-1)
    if box.numel() != 6 or not bool(torch.isfinite(box).all() and (box[3:] > box[:3]).all()):
        raise MpgymError(f"from_nerf: aabb must be 6 finite numbers [xmin, ymin, zmin, xmax, "
                         f"ymax, zmax] with min < max; got {box.tolist()}.")
    return box


def _candidates(m: int, box: Tensor, cells: Tensor | None, resolution: int,
                gen: torch.Generator) -> Tensor:
    """``[m, 3]`` uniform points in ``box``, or in the listed flat grid ``cells`` of it."""
    u = torch.rand(m, 3, generator=gen)
    if cells is not None:  # pick a cell, then a point inside it (flat index i r^2 + j r + k)
        c = cells[torch.randint(len(cells), (m,), generator=gen)]
        ijk = torch.stack([c // (resolution * resolution), (c // resolution) % resolution,
                           c % resolution], -1)
        u = (ijk + u) / resolution
    return box[:3] + u * (box[3:] - box[:3])


@torch.no_grad()
def _sample_dense_points(field: Any, n: int, *, seed: int, aabb: Any, grid: Any,
                         threshold: float) -> Tensor:
    """Up to ``n`` points ``[M, 3]`` (CPU) with ``field.density > threshold``, ``M >= 2``."""
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold >= 0):
        raise MpgymError(f"from_nerf: threshold must be a finite density >= 0; got "
                         f"{threshold!r}.")
    cells, resolution = None, 1
    if grid is not None:
        box = _field_box(field, grid.aabb)
        cells = torch.nonzero(grid.binary.detach().cpu().reshape(-1)).reshape(-1)
        resolution = int(grid.resolution)
        if len(cells) == 0:
            raise MpgymError("from_nerf: the occupancy grid has no occupied cell; nothing to "
                             "sample (pass grid=None to search the whole box).")
    else:
        box = _field_box(field, aabb)
    device = _field_device(field)
    gen = torch.Generator().manual_seed(int(seed))
    found, total, tried, peak = [], 0, 0, 0.0
    while total < n and tried < _NERF_CANDIDATES_PER_POINT * n:
        x = _candidates(_NERF_BATCH, box, cells, resolution, gen)
        sigma = field.density(x.to(device)).reshape(-1).float().cpu()
        finite = torch.isfinite(sigma)
        peak = max(peak, float(sigma[finite].max()) if bool(finite.any()) else peak)
        keep = x[finite & (sigma > threshold)]
        found.append(keep)
        total, tried = total + len(keep), tried + _NERF_BATCH
    if total < 2:
        raise MpgymError(f"from_nerf: {total} of {tried} points sampled in the box have density "
                         f"above {threshold} (highest seen {peak:.3g}); the NeRF looks untrained "
                         "or the threshold is too high.")
    if total < n:
        log.warning("from_nerf: found %d dense points of the %d asked for after %d candidates",
                    total, n, tried)
    return torch.cat(found)[:n]


@torch.no_grad()
def _view_averaged_colors(field: Any, pts: Tensor) -> Tensor:
    """``[M, 3]`` mean of ``field(pts, d)[1]`` over the 12 icosahedron directions ``d``."""
    device = _field_device(field)
    dirs = torch.as_tensor(_ICOSAHEDRON, dtype=torch.float32, device=device)
    out = []
    for chunk in pts.split(_NERF_BATCH):
        x = chunk.to(device)
        acc = torch.zeros(len(x), 3, device=device)
        for d in dirs:
            acc += field(x, d.expand(len(x), 3))[1].float()
        out.append((acc / len(dirs)).cpu())
    return torch.cat(out)
