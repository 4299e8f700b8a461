"""Differentiable Volumetric Rendering (Niemeyer et al., CVPR 2020) of implicit surfaces.

An occupancy field ``f(p)`` (a logit; surface at ``f = level``, level 0 i.e. probability 0.5)
and a colour field ``c(p)`` render a pixel by finding where its ray first enters the surface:

1. **March** (no gradients): evaluate ``f - level`` at ``n_steps`` evenly spaced depths in
   ``[near, far]``; take the first outside -> inside sign change.
2. **Secant** (no gradients): refine the depth in that interval with ``n_secant`` steps
   (DVR: 8).
3. **Implicit gradient**: the depth ``d`` satisfies ``f(o + d w; theta) = level``. Differentiating
   gives ``dd/dtheta = -(df/dtheta) / (grad_p f . w)``, i.e. for the point
   ``dp/dtheta = -w (grad_p f . w)^-1 df/dtheta`` (DVR eq. 9). :class:`SurfaceDepth` is the
   custom ``torch.autograd.Function`` that returns ``d`` and back-propagates this formula to
   the field's parameters (``|grad_p f . w|`` clamped at 1e-3, as DVR's code), so no
   gradient flows through the iterations of steps 1-2.

Then ``rgb = c(o + d w)``. The losses of the paper: RGB L1 on pixels that hit in both the
prediction and the mask; for mask pixels the prediction misses, an occupancy push-up at a
random point on the ray; for pixels outside the mask, a free-space push-down at the predicted
surface point (or a random point).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Field = Callable[[Tensor], Tensor]


@dataclass
class SurfaceHit:
    """Where rays meet the surface.

    Attributes:
        depth: ``[R]`` distance along each (unit) ray; ``far`` where there is no hit.
        hit: ``[R]`` bool, True where an outside -> inside crossing was found.
    """

    depth: Tensor
    hit: Tensor


@torch.no_grad()
def find_surface(field: Field, origins: Tensor, dirs: Tensor, *, near: float, far: float,
                 n_steps: int = 64, n_secant: int = 8, level: float = 0.0,
                 chunk: int = 8192) -> SurfaceHit:
    """First outside -> inside crossing of ``field - level`` along each ray, secant-refined.

    Args:
        field: ``[N, 3] -> [N]`` occupancy logits (inside where ``> level``).
        origins: ``[R, 3]`` ray origins.
        dirs: ``[R, 3]`` unit directions.
        near: start depth.
        far: end depth.
        n_steps: evenly spaced samples for the sign search (DVR: 128 at test time).
        n_secant: secant iterations (DVR: 8).
        level: the iso-level of the surface (a logit: 0 is probability 0.5).
        chunk: rays per batch of field queries.

    Returns:
        :class:`SurfaceHit`.
    """
    depths, hits = [], []
    t = torch.linspace(near, far, n_steps, dtype=origins.dtype, device=origins.device)
    for s in range(0, len(origins), chunk):
        o, w = origins[s:s + chunk], dirs[s:s + chunk]
        p = o[:, None, :] + t[None, :, None] * w[:, None, :]                # [r, S, 3]
        v = field(p.reshape(-1, 3)).reshape(len(o), n_steps) - level        # [r, S]
        cross = (v[:, :-1] <= 0) & (v[:, 1:] > 0)                           # outside -> inside
        hit = cross.any(dim=1)
        i = torch.where(hit, cross.float().argmax(dim=1), torch.zeros_like(hit, dtype=torch.long))
        d_lo, d_hi = t[i], t[i + 1]
        f_lo, f_hi = v.gather(1, i[:, None])[:, 0], v.gather(1, i[:, None] + 1)[:, 0]
        d = d_lo
        for _ in range(n_secant):
            d = d_lo - f_lo * (d_hi - d_lo) / (f_hi - f_lo).clamp(min=1e-12)
            f_mid = field(o + d[:, None] * w) - level
            inside = f_mid > 0
            d_hi, f_hi = torch.where(inside, d, d_hi), torch.where(inside, f_mid, f_hi)
            d_lo, f_lo = torch.where(inside, d_lo, d), torch.where(inside, f_lo, f_mid)
        depths.append(torch.where(hit, d, torch.full_like(d, far)))
        hits.append(hit)
    return SurfaceHit(torch.cat(depths), torch.cat(hits))


class SurfaceDepth(torch.autograd.Function):
    """Identity on precomputed surface depths whose backward is DVR's implicit gradient.

    ``apply(field, level, depth [R], origins [R, 3], dirs [R, 3], *params)`` returns ``depth``;
    in backward, ``dL/dtheta = sum_r dL/dd_r * (-(df/dtheta)(p_r) / (grad_p f(p_r) . w_r))``.
    ``params`` must be the tensors ``field`` depends on (e.g. ``list(net.parameters())``).
    """

    @staticmethod
    def forward(ctx, field: Field, level: float, depth: Tensor, origins: Tensor, dirs: Tensor,
                *params: Tensor) -> Tensor:
        """Return ``depth`` unchanged; remember what backward needs."""
        ctx.field, ctx.level = field, level
        ctx.save_for_backward(depth, origins, dirs, *params)
        return depth.detach().clone()

    @staticmethod
    def backward(ctx, grad_depth: Tensor):
        """Implicit gradient ``-(df/dtheta) / (grad_p f . w)`` times ``grad_depth``."""
        depth, origins, dirs, *params = ctx.saved_tensors
        with torch.enable_grad():
            p = (origins + depth[:, None] * dirs).detach().requires_grad_(True)
            f = ctx.field(p) - ctx.level                                         # [R]
            (grad_p,) = torch.autograd.grad(f.sum(), p, retain_graph=True)       # [R, 3]
            denom = (grad_p * dirs).sum(-1)
            denom = torch.where(denom.abs() < 1e-3, torch.full_like(denom, 1e-3) *
                                torch.where(denom < 0, -1.0, 1.0), denom)
            weights = -grad_depth / denom
            grads = torch.autograd.grad(f, params, grad_outputs=weights, allow_unused=True)
        return (None, None, None, None, None, *grads)


def surface_depth(field: Field, params: list[Tensor], origins: Tensor, dirs: Tensor, *,
                  near: float, far: float, n_steps: int = 64, n_secant: int = 8,
                  level: float = 0.0) -> tuple[Tensor, Tensor]:
    """Differentiable depth of the first surface crossing: ``(depth [R], hit [R])``.

    ``depth`` carries DVR's implicit gradient to ``params`` (only meaningful where ``hit``).
    """
    s = find_surface(field, origins, dirs, near=near, far=far, n_steps=n_steps,
                     n_secant=n_secant, level=level)
    d = SurfaceDepth.apply(field, level, s.depth, origins, dirs, *params)
    return d, s.hit


@dataclass
class DVROutput:
    """What :func:`render_dvr` returns (per ray)."""

    rgb: Tensor
    """``[R, 3]`` colour at the surface point (background where no hit)."""
    hit: Tensor
    """``[R]`` bool: the ray met the surface."""
    depth: Tensor
    """``[R]`` differentiable depth."""
    points: Tensor
    """``[R, 3]`` surface points ``o + d w`` (differentiable)."""


def render_dvr(occupancy: Field, color: Callable[[Tensor], Tensor], params: list[Tensor],
               origins: Tensor, dirs: Tensor, *, near: float, far: float, n_steps: int = 64,
               n_secant: int = 8, level: float = 0.0, background: float = 1.0) -> DVROutput:
    """Render rays through an occupancy field and a colour field (forward pass of DVR).

    Args:
        occupancy: ``[N, 3] -> [N]`` logits (inside ``> level``).
        color: ``[N, 3] -> [N, 3]`` colours in [0, 1].
        params: the occupancy field's parameters (receive the implicit gradient).
        origins: ``[R, 3]`` ray origins.
        dirs: ``[R, 3]`` unit directions.
        near: start depth.
        far: end depth.
        n_steps: sign-search samples.
        n_secant: secant steps.
        level: the iso-level of the surface.
        background: colour of rays that miss.
    """
    d, hit = surface_depth(occupancy, params, origins, dirs, near=near, far=far,
                           n_steps=n_steps, n_secant=n_secant, level=level)
    pts = origins + d[:, None] * dirs
    rgb = torch.full_like(origins, background)
    if hit.any():
        rgb = torch.where(hit[:, None], color(torch.where(hit[:, None], pts, origins)), rgb)
    return DVROutput(rgb, hit, d, pts)


# ----------------------------------------------------------------------------------------------
# (c) fitting an occupancy + colour field to multi-view images
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DVRConfig:
    """Options of :func:`fit_dvr`.

    Small CPU defaults; DVR's own: 64 -> 128 ray samples, 1024 rays per image, lr 1e-4,
    days on a GPU.
    """

    hidden: int = 64
    """Width of the occupancy decoder (ResNet-FC) and the colour MLP."""
    blocks: int = 3
    """ResNet blocks of the occupancy decoder."""
    num_freqs: int = 4
    """Positional-encoding octaves of both fields."""
    prior_radius: float = 0.3
    """The occupancy starts as a sphere of this radius: logit = net(x) + 10 (r - |x|)."""
    iterations: int = 600
    """Steps."""
    rays: int = 1024
    """Rays per step (random pixels of random views)."""
    n_steps: int = 48
    """Samples per ray for the sign search."""
    n_secant: int = 8
    """Secant steps (DVR: 8)."""
    lr: float = 2e-3
    """Adam learning rate."""
    mask_weight: float = 1.0
    """Weight of the silhouette (occupancy / free-space) terms."""
    near: float = 0.5
    """Ray start depth (cameras at radius ~1.6)."""
    far: float = 2.8
    """Ray end depth."""
    seed: int = 0
    """Seed."""


class DVRFields(torch.nn.Module):
    """An occupancy logit field (sphere prior + ResNet-FC) and a colour field."""

    def __init__(self, config: DVRConfig):
        super().__init__()
        from neural3d.encodings import PositionalEncoding
        from neural3d.implicit.networks import OccupancyDecoder

        self.occ = OccupancyDecoder(0, config.hidden, config.blocks, config.num_freqs)
        enc = PositionalEncoding(3, config.num_freqs)
        self.rgb = torch.nn.Sequential(enc, torch.nn.Linear(enc.out_dim, config.hidden),
                                       torch.nn.ReLU(), torch.nn.Linear(config.hidden, 3))
        self.prior_radius = config.prior_radius

    def occupancy(self, p: Tensor) -> Tensor:
        """Logits ``[N]`` at ``[N, 3]`` (inside > 0)."""
        return self.occ(p[None])[0] + 10.0 * (self.prior_radius - p.norm(dim=-1))

    def color(self, p: Tensor) -> Tensor:
        """Colours ``[N, 3]`` in (0, 1)."""
        return torch.sigmoid(self.rgb(p))


def dvr_loss(fields: DVRFields, origins: Tensor, dirs: Tensor, rgb_gt: Tensor, mask_gt: Tensor,
             config: DVRConfig, gen: torch.Generator) -> tuple[Tensor, dict]:
    """DVR's losses on a batch of rays.

    RGB L1 where both prediction and mask hit; occupancy push-up on missed mask rays (at the
    most occupied of 16 random ray samples); free-space push-down on all samples of rays
    outside the mask and, as in DVR, at the predicted surface point of rays that hit outside
    the mask.
    """
    import torch.nn.functional as F

    params = list(fields.occ.parameters())
    out = render_dvr(fields.occupancy, fields.color, params, origins, dirs, near=config.near,
                     far=config.far, n_steps=config.n_steps, n_secant=config.n_secant)
    both = out.hit & mask_gt
    rgb = (out.rgb[both] - rgb_gt[both]).abs().mean() if both.any() else origins.sum() * 0
    t = config.near + (config.far - config.near) * torch.rand(len(origins), 16, generator=gen)
    logits = fields.occupancy((origins[:, None] + t[..., None] * dirs[:, None]).reshape(-1, 3))
    logits = logits.reshape(len(origins), 16)
    miss = mask_gt & ~out.hit
    occ = F.softplus(-logits[miss].max(dim=1).values).mean() if miss.any() else rgb * 0
    free = F.softplus(logits[~mask_gt]).mean() if (~mask_gt).any() else rgb * 0
    false_hit = out.hit & ~mask_gt
    if false_hit.any():  # DVR's free-space term at the predicted surface point itself
        free = free + F.softplus(fields.occupancy(out.points[false_hit].detach())).mean()
    loss = rgb + config.mask_weight * (occ + free)
    return loss, {"rgb": rgb.item(), "occupancy": occ.item(), "freespace": free.item()}


def fit_dvr(images: Tensor, c2w: Tensor, intrinsics, config: DVRConfig = DVRConfig(), *,
            progress_bar: bool = True) -> tuple[DVRFields, list[float]]:
    """Fit occupancy + colour to RGBA views ``[V, H, W, 4]`` with cameras ``[V, 4, 4]``.

    ``progress_bar`` shows a bar with the running loss on a terminal.

    Returns:
        The fields and the loss per step.
    """
    from mpgym.progress import progress
    from neural3d.cameras import pixel_rays

    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    o, d = pixel_rays(c2w.float(), intrinsics)                    # [V, H, W, 3]
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    rgb, mask = images[..., :3].reshape(-1, 3), images[..., 3].reshape(-1) > 0.5
    fields = DVRFields(config)
    opt = torch.optim.Adam(fields.parameters(), lr=config.lr)
    losses = []
    bar = progress(range(config.iterations), desc="dvr", enable=progress_bar)
    for step in bar:
        idx = torch.randint(0, len(o), (config.rays,), generator=gen)
        loss, _ = dvr_loss(fields, o[idx], d[idx], rgb[idx], mask[idx], config, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return fields.eval(), losses
