"""Render rays through a radiance field with one of two samplers.

- ``occupancy`` (Instant-NGP / nerfacc): uniform steps of ``diag / num_samples`` across the
  scene box, one shared jitter per ray; samples in cells the :class:`OccupancyGrid` marks
  empty are dropped before the field is called, so the field sees only the occupied few.
- ``hierarchical`` (NeRF): ``num_samples`` stratified samples evaluated without gradients
  give weights; ``num_fine`` more are drawn from them (:func:`sample_pdf`); the field is
  evaluated with gradients on the sorted union (one network for both passes, as mip-NeRF).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neural3d.render.volume import (
    OccupancyGrid,
    RenderOutput,
    composite,
    intersect_aabb,
    render_weights,
    sample_pdf,
    sample_stratified,
)


def occupancy_step_size(aabb: Tensor, num_samples: int) -> float:
    """Render step: the box diagonal over ``num_samples``."""
    return float((aabb[3:] - aabb[:3]).norm()) / num_samples


def _render_occupancy(field: nn.Module, o: Tensor, d: Tensor, grid: OccupancyGrid | None,
                      num_samples: int, perturb: bool, generator, background) -> RenderOutput:
    aabb = field.aabb
    near, far = intersect_aabb(o, d, aabb)
    step = occupancy_step_size(aabb, num_samples)
    R = o.shape[0]
    k = torch.arange(num_samples, device=o.device, dtype=o.dtype)
    jitter = (torch.rand(R, 1, generator=generator).to(o.device) if perturb
              else torch.full((R, 1), 0.5, device=o.device))
    t_mid = near[:, None] + (k + jitter) * step  # [R, S]
    valid = t_mid < far[:, None]
    pts = o[:, None, :] + d[:, None, :] * t_mid[..., None]  # [R, S, 3]
    if grid is not None:
        valid &= grid.occupied(pts.reshape(-1, 3)).reshape(R, num_samples)
    sig = torch.zeros(R, num_samples, device=o.device, dtype=o.dtype)
    rgb = torch.zeros(R, num_samples, 3, device=o.device, dtype=o.dtype)
    if valid.any():
        s, c = field(pts[valid], d[:, None, :].expand_as(pts)[valid])
        sig = sig.masked_scatter(valid, s)
        rgb = rgb.masked_scatter(valid[..., None], c)
    t0 = (t_mid - 0.5 * step).clamp_min(near[:, None])
    t1 = torch.minimum(t_mid + 0.5 * step, far[:, None]).clamp_min(t0)
    return composite(sig, rgb, t0, t1, background=background)


def _render_hierarchical(field: nn.Module, o: Tensor, d: Tensor, num_coarse: int, num_fine: int,
                         perturb: bool, generator, background) -> RenderOutput:
    near, far = intersect_aabb(o, d, field.aabb)
    hit = far > near
    far = torch.where(hit, far, near + 1e-3)
    t0, t1 = sample_stratified(near, far, num_coarse, generator=generator, perturb=perturb)
    R = o.shape[0]
    with torch.no_grad():  # coarse pass: weights only
        tc = 0.5 * (t0 + t1)
        pts = o[:, None] + d[:, None] * tc[..., None]
        s = field.density(pts.reshape(-1, 3)).reshape(R, num_coarse)
        w, _ = render_weights(s, t1 - t0)
        bins = torch.cat([t0, t1[:, -1:]], -1)
        tf = sample_pdf(bins, w, num_fine, generator=generator, perturb=perturb)
        t = torch.sort(torch.cat([tc, tf], -1), -1).values  # [R, Sc + Sf]
    S = t.shape[1]
    pts = o[:, None] + d[:, None] * t[..., None]
    sig, rgb = field(pts.reshape(-1, 3), d[:, None].expand(R, S, 3).reshape(-1, 3))
    sig = sig.reshape(R, S) * hit[:, None]
    ends = torch.cat([t[:, 1:], far[:, None]], -1)
    return composite(sig, rgb.reshape(R, S, 3), t, ends, background=background)


def render_rays(field: nn.Module, origins: Tensor, dirs: Tensor, *,
                sampler: str = "occupancy", grid: OccupancyGrid | None = None,
                num_samples: int = 256, num_fine: int = 64, perturb: bool = False,
                generator: torch.Generator | None = None,
                background: Tensor | float | None = 1.0) -> RenderOutput:
    """Render ``R`` rays.

    Args:
        field: a :mod:`neural3d.nerf.fields` field (has ``aabb``, ``density``, ``forward``).
        origins: ``[R, 3]``.
        dirs: ``[R, 3]`` unit directions.
        sampler: ``"occupancy"`` or ``"hierarchical"``.
        grid: the occupancy grid (``occupancy`` sampler; None evaluates every step).
        num_samples: steps across the box diagonal (occupancy) or coarse samples.
        num_fine: fine samples (hierarchical).
        perturb: jitter samples (training).
        generator: for the jitter.
        background: colour behind the scene (scalar, ``[3]`` or ``[R, 3]``), None for none.

    Returns:
        :class:`RenderOutput` with ``rgb [R, 3]``, ``depth [R]``, ``opacity [R]``, ``weights``.
    """
    if sampler == "occupancy":
        return _render_occupancy(field, origins, dirs, grid, num_samples, perturb, generator,
                                 background)
    if sampler == "hierarchical":
        return _render_hierarchical(field, origins, dirs, num_samples, num_fine, perturb,
                                    generator, background)
    raise ValueError(f"unknown sampler {sampler!r}; accepted: 'occupancy', 'hierarchical'.")


@torch.no_grad()
def render_image(field: nn.Module, c2w: Tensor, intr, *, chunk: int = 8192,
                 background: float = 1.0, **kwargs) -> dict[str, Tensor]:
    """Render one view: ``{"rgb": [H, W, 3], "depth": [H, W], "opacity": [H, W]}``.

    ``kwargs`` go to :func:`render_rays` (sampler, grid, num_samples, num_fine).
    """
    from neural3d.cameras import pixel_rays

    dev = next(field.parameters()).device
    o, d = pixel_rays(c2w.to(dev, torch.float32), intr)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    parts = [render_rays(field, o[i:i + chunk], d[i:i + chunk], background=background, **kwargs)
             for i in range(0, len(o), chunk)]
    H, W = intr.height, intr.width
    return {"rgb": torch.cat([p.rgb for p in parts]).reshape(H, W, 3),
            "depth": torch.cat([p.depth for p in parts]).reshape(H, W),
            "opacity": torch.cat([p.opacity for p in parts]).reshape(H, W)}


def depth_to_image(depth: Tensor, opacity: Tensor, near: float | None = None,
                   far: float | None = None) -> Tensor:
    """Depth ``[H, W]`` to a grey image ``[H, W, 3]`` (near bright), white where empty."""
    dd = depth / opacity.clamp_min(1e-6)
    m = opacity > 0.5
    lo = near if near is not None else (float(dd[m].min()) if m.any() else 0.0)
    hi = far if far is not None else (float(dd[m].max()) if m.any() else 1.0)
    g = 1.0 - ((dd - lo) / max(hi - lo, 1e-6)).clamp(0, 1) * 0.85
    g = torch.where(m, g, torch.ones_like(g))
    return g[..., None].repeat(1, 1, 3)
