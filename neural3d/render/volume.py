"""Volume rendering for radiance fields: compositing, samplers and an occupancy grid.

Conventions: a batch of ``R`` rays, each with ``S`` samples described by interval ends
``t_starts, t_ends [R, S]`` along unit directions; densities ``sigmas [R, S]`` (per unit
length, >= 0) and colours ``rgbs [R, S, 3]`` are evaluated at the interval midpoints.

Quadrature (Max 1995; NeRF eq. 3):

    alpha_i = 1 - exp(-sigma_i delta_i),   T_i = prod_{j<i} (1 - alpha_j),   w_i = T_i alpha_i,
    C = sum_i w_i c_i,   depth = sum_i w_i t_i,   opacity = sum_i w_i = 1 - T_{S+1}.

The occupancy grid (:class:`OccupancyGrid`) follows nerfacc's ``OccGridEstimator``: a binary
grid over the scene box, refreshed every few steps from an exponential moving average of the
field's opacity per cell, used to drop samples in empty space before the field is evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "OccupancyGrid",
    "RenderOutput",
    "composite",
    "intersect_aabb",
    "render_weights",
    "sample_pdf",
    "sample_stratified",
]


@dataclass
class RenderOutput:
    """What compositing returns for ``R`` rays with ``S`` samples."""

    rgb: Tensor
    """``[R, 3]`` colour (background already added when one was given)."""
    depth: Tensor
    """``[R]`` expected termination distance ``sum_i w_i t_i`` (0 where nothing was hit)."""
    opacity: Tensor
    """``[R]`` accumulated opacity ``sum_i w_i`` in [0, 1]."""
    weights: Tensor
    """``[R, S]`` compositing weights ``w_i = T_i alpha_i``."""


def render_weights(sigmas: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
    """Compositing weights and transmittance from densities.

    Args:
        sigmas: ``[..., S]`` densities (>= 0).
        deltas: ``[..., S]`` interval lengths.

    Returns:
        ``weights [..., S]`` (``T_i alpha_i``) and ``transmittance [..., S]`` (``T_i``, light
        reaching sample ``i``).

    Example:
        >>> w, T = render_weights(torch.tensor([[0.0, 1e9]]), torch.tensor([[1.0, 1.0]]))
        >>> w.tolist(), T.tolist()
        ([[0.0, 1.0]], [[1.0, 1.0]])
    """
    tau = sigmas * deltas  # optical thickness per interval
    # T_i = exp(-sum_{j<i} tau_j): an exclusive cumulative sum, stable for large tau
    cum = torch.cumsum(tau, dim=-1)
    transmittance = torch.exp(-(cum - tau))
    alphas = 1.0 - torch.exp(-tau)
    return transmittance * alphas, transmittance


def composite(sigmas: Tensor, rgbs: Tensor, t_starts: Tensor, t_ends: Tensor, *,
              background: Tensor | float | None = None) -> RenderOutput:
    """Alpha-composite samples along rays.

    Args:
        sigmas: ``[R, S]`` densities.
        rgbs: ``[R, S, 3]`` colours.
        t_starts: ``[R, S]`` interval starts.
        t_ends: ``[R, S]`` interval ends.
        background: colour ``[3]``/``[R, 3]``/scalar added with weight ``1 - opacity``.

    Returns:
        :class:`RenderOutput`.

    Example:
        >>> s = torch.tensor([[1.0]]); t0 = torch.zeros(1, 1); t1 = torch.ones(1, 1)
        >>> out = composite(s, torch.ones(1, 1, 3), t0, t1)
        >>> round(out.opacity.item(), 4)  # 1 - exp(-1)
        0.6321
    """
    weights, _ = render_weights(sigmas, t_ends - t_starts)
    opacity = weights.sum(-1)
    rgb = (weights[..., None] * rgbs).sum(-2)
    depth = (weights * 0.5 * (t_starts + t_ends)).sum(-1)
    if background is not None:
        rgb = rgb + (1.0 - opacity[..., None]) * torch.as_tensor(background, dtype=rgb.dtype,
                                                                 device=rgb.device)
    return RenderOutput(rgb=rgb, depth=depth, opacity=opacity, weights=weights)


def intersect_aabb(origins: Tensor, dirs: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Slab test: entry and exit distances of rays through a box.

    Args:
        origins: ``[R, 3]``.
        dirs: ``[R, 3]``.
        aabb: ``[6]`` (xmin, ymin, zmin, xmax, ymax, zmax).

    Returns:
        ``t_near, t_far [R]``, with ``t_near`` clamped at 0; a ray that misses has
        ``t_far <= t_near``.
    """
    inv = 1.0 / torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t0 = (aabb[:3] - origins) * inv
    t1 = (aabb[3:] - origins) * inv
    t_near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    t_far = torch.maximum(t0, t1).amin(-1)
    return t_near, t_far


def sample_stratified(near: Tensor, far: Tensor, num_samples: int, *,
                      generator: torch.Generator | None = None,
                      perturb: bool = True) -> tuple[Tensor, Tensor]:
    """Stratified samples: ``S`` equal bins in ``[near, far]`` with one jittered point each.

    Args:
        near: ``[R]``.
        far: ``[R]``.
        num_samples: ``S``.
        generator: for the jitter.
        perturb: jitter the bin edges (training); midpoints otherwise (evaluation).

    Returns:
        ``t_starts, t_ends [R, S]`` tiling ``[near, far]``.
    """
    u = torch.linspace(0.0, 1.0, num_samples + 1, device=near.device, dtype=near.dtype)
    edges = near[:, None] + (far - near)[:, None] * u  # [R, S+1]
    if perturb:
        step = (far - near)[:, None] / num_samples
        jitter = torch.rand(near.shape[0], 1, generator=generator, dtype=near.dtype).to(near.device)
        edges = edges + (jitter - 0.5) * step
        edges = torch.maximum(torch.minimum(edges, far[:, None]), near[:, None])
    return edges[:, :-1], edges[:, 1:]


def sample_pdf(bins: Tensor, weights: Tensor, num_samples: int, *,
               generator: torch.Generator | None = None, perturb: bool = True) -> Tensor:
    """Hierarchical sampling: draw from the piecewise-constant pdf the weights define (NeRF 5.2).

    Args:
        bins: ``[R, S+1]`` bin edges (sorted).
        weights: ``[R, S]`` non-negative weights of the bins.
        num_samples: ``K`` new samples per ray.
        generator: for the uniform draws.
        perturb: random ``u`` (training) or evenly spaced ``u`` (evaluation).

    Returns:
        ``[R, K]`` sorted sample positions.
    """
    w = weights.detach() + 1e-5  # keep every bin reachable
    pdf = w / w.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)  # [R, S+1]
    R = bins.shape[0]
    if perturb:
        u = torch.rand(R, num_samples, generator=generator, dtype=bins.dtype).to(bins.device)
        u = u.sort(-1).values
    else:
        u = torch.linspace(0, 1, num_samples + 2, dtype=bins.dtype, device=bins.device)[1:-1]
        u = u.expand(R, num_samples).contiguous()
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[-1] - 1)
    c0, c1 = cdf.gather(1, idx - 1), cdf.gather(1, idx)
    b0, b1 = bins.gather(1, idx - 1), bins.gather(1, idx)
    frac = ((u - c0) / (c1 - c0).clamp_min(1e-12)).clamp(0, 1)
    return b0 + frac * (b1 - b0)


class OccupancyGrid(torch.nn.Module):
    """Binary occupancy over the scene box, updated from the field's density (nerfacc-style).

    Each update re-evaluates a random point in (a subset of) the cells, stores
    ``max(decay * old, 1 - exp(-sigma * step_size))`` per cell and marks cells whose value
    exceeds ``min(threshold, mean)``; with ``dilation = k`` the mark then grows by ``k`` cells,
    so that density between the sampled points of neighbouring cells is not skipped (costs
    samples; nerfacc does not dilate). During warm-up every
    cell is updated; afterwards a quarter of all cells plus a quarter of the occupied ones
    (as nerfacc's ``OccGridEstimator``: 128^3 cells, EMA 0.95, threshold 0.01).

    Args:
        aabb: ``[6]`` scene box.
        resolution: cells per axis.
        decay: EMA factor.
        threshold: opacity threshold.
        dilation: cells to grow occupied regions by after each update.
    """

    values: Tensor
    binary: Tensor
    aabb: Tensor

    def __init__(self, aabb: Tensor, resolution: int = 128, *, decay: float = 0.95,
                 threshold: float = 0.01, dilation: int = 0):
        super().__init__()
        self.resolution, self.decay, self.threshold = resolution, decay, threshold
        self.dilation = dilation
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).clone())
        self.register_buffer("values", torch.zeros(resolution**3))
        self.register_buffer("binary", torch.ones(resolution**3, dtype=torch.bool))

    def cell_of(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Flat cell index ``[N]`` of points ``[N, 3]`` and whether they are inside the box."""
        lo, hi = self.aabb[:3], self.aabb[3:]
        u = (points - lo) / (hi - lo)
        inside = ((u >= 0) & (u <= 1)).all(-1)
        ijk = (u * self.resolution).long().clamp(0, self.resolution - 1)
        r = self.resolution
        return ijk[:, 0] * r * r + ijk[:, 1] * r + ijk[:, 2], inside

    def occupied(self, points: Tensor) -> Tensor:
        """``[N]`` bool: the point lies in the box and in an occupied cell."""
        idx, inside = self.cell_of(points)
        return inside & self.binary[idx]

    @property
    def occupancy_fraction(self) -> float:
        """Fraction of cells marked occupied."""
        return float(self.binary.float().mean())

    @torch.no_grad()
    def update(self, density_fn, step_size: float, *, warmup: bool,
               generator: torch.Generator | None = None, chunk: int = 65536) -> None:
        """Refresh the grid.

        Args:
            density_fn: maps world points ``[N, 3]`` to densities ``[N]``.
            step_size: the render step; the stored value is ``1 - exp(-sigma * step_size)``.
            warmup: update every cell (else a random quarter plus a quarter of occupied ones).
            generator: for cell choice and the point inside each cell.
            chunk: points per ``density_fn`` call.
        """
        n = self.resolution**3
        dev = self.values.device
        if warmup:
            cells = torch.arange(n, device=dev)
        else:
            rand = torch.randint(0, n, (n // 4,), generator=generator).to(dev)
            occ = self.binary.nonzero()[:, 0]
            pick = torch.randint(0, max(len(occ), 1), (len(occ) // 4,), generator=generator)
            cells = torch.cat([rand, occ[pick.to(dev)]]) if len(occ) else rand
        r = self.resolution
        ijk = torch.stack([cells // (r * r), (cells // r) % r, cells % r], -1).float()
        jitter = torch.rand(len(cells), 3, generator=generator).to(dev)
        lo, hi = self.aabb[:3], self.aabb[3:]
        pts = lo + (ijk + jitter) / r * (hi - lo)
        sig = torch.cat([density_fn(p).reshape(-1) for p in pts.split(chunk)]) if len(pts) else pts
        opac = 1.0 - torch.exp(-sig.float() * step_size)
        self.values[cells] = torch.maximum(self.values[cells] * self.decay, opac)
        thr = min(self.threshold, float(self.values.mean()))
        occ = self.values > thr
        if not occ.any():  # a uniform field (e.g. at initialisation): keep every cell
            occ = self.values >= thr
        if self.dilation > 0:
            k = 2 * self.dilation + 1
            occ = F.max_pool3d(occ.float().reshape(1, 1, r, r, r), k, stride=1,
                               padding=self.dilation).reshape(-1) > 0
        self.binary = occ
