"""Adaptive density control of 3D Gaussian splatting as a strategy object.

The training loop calls two hooks and knows nothing else about densification::

    out = render(model, c2w, intr)
    strategy.step_pre_backward(out)                 # keep the 2D means' gradient
    loss.backward(); optimizer.step()
    strategy.step_post_backward(step, model, optimizer, out)

:class:`DensityControl` follows 3DGS (Kerbl et al. 2023, Sec. 5.2 and the reference's
``densify_and_prune``): while ``step < densify_until`` it accumulates, per Gaussian, the norm of
the view-space positional gradient -- the gradient w.r.t. the 2D mean in NDC, i.e. the pixel
gradient times ``(W/2, H/2)`` -- and counts the steps the Gaussian was visible. Every
``densify_every`` steps after ``densify_from`` a Gaussian whose mean gradient reaches
``densify_grad_threshold`` is *cloned* when small (largest scale <= ``percent_dense`` x scene
extent) and *split* into two when large (children sampled from the parent's Gaussian, scales /
1.6); then Gaussians with opacity below ``prune_opacity`` are removed, and after the first opacity
reset also those larger than ``prune_world_fraction`` x extent or whose 2D radius exceeded
``prune_screen_px`` (the reference zeroes its radius record just before that test, so there it
never fires; gsplat turns it off by default -- ``prune_screen_px=0`` does the same here). Every
``opacity_reset_every`` steps opacities drop to at most 0.01.

In the antialiased rasterize mode a Gaussian's peak alpha is its opacity times a factor
``f = sqrt(det S / det(S + 0.3 I))`` of its 2D covariance ``S``, far below 1 for sub-pixel-thin
Gaussians; a raw reset to 0.01 puts those under the rasterizer's 1/255 cut in every view, where
no gradient reaches them again and, above the 0.005 pruning threshold, nothing removes them. With
``opacity_reset="effective"`` the reset caps the peak alpha instead: opacity to at most
``0.01 / f_max``, ``f_max`` the largest factor the Gaussian had in a training view since the last
reset (tracked like the 2D radii; clones and split children inherit it). This is ours, not the
reference's or gsplat's (both reset the raw opacity in every mode).

Every parameter edit rebuilds the ``model.params`` entry as a new ``nn.Parameter`` *and* the
Adam moments of the optimizer's param group of the same ``name`` (:func:`edit_gaussians`): rows
of kept Gaussians keep their moments, new rows (clones, split children) start at zero, and an
opacity reset zeroes the opacity moments, as in the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from mpgym.errors import MpgymError
from neural3d.splat.model import GaussianModel, quat_to_rotmat
from neural3d.splat.presets import SplatConfig

if TYPE_CHECKING:
    from neural3d.splat.render import RenderOutput

__all__ = ["DensityControl", "DensityReport", "camera_extent", "duplicate", "edit_gaussians",
           "effective_reset_caps", "remove", "reset_opacity", "split"]

SPLIT_CHILDREN = 2
"""Children per split Gaussian (3DGS's ``N``)."""
SPLIT_SCALE_DIVISOR = 0.8 * SPLIT_CHILDREN
"""A split child's scales are its parent's divided by this (1.6)."""
RESET_OPACITY = 0.01
"""Opacity reset: every Gaussian's opacity becomes ``min(opacity, 0.01)``."""
_MOMENTS = ("exp_avg", "exp_avg_sq")
_WINDOW = ("grad2d", "count", "max_radii")
"""Statistics gathered between two densifications."""
_STATISTICS = (*_WINDOW, "max_factor")


@dataclass
class DensityReport:
    """What one :meth:`DensityControl.step_post_backward` did (all zero on most steps)."""

    cloned: int = 0
    """Gaussians cloned."""
    split: int = 0
    """Gaussians split (each replaced by two children)."""
    pruned: int = 0
    """Gaussians removed."""
    reset: bool = False
    """Whether opacities were reset."""


def camera_extent(c2w: Tensor | np.ndarray) -> float:
    """3DGS's scene extent: 1.1 x the largest distance of a camera centre from their mean.

    Args:
        c2w: ``[V, 4, 4]`` camera-to-world matrices.

    Example: cameras at ``(+-4, 0, 0)`` give ``1.1 * 4 = 4.4``.
    """
    centres = torch.as_tensor(c2w, dtype=torch.float64)[:, :3, 3]  # [V, 3]
    radius = float((centres - centres.mean(0)).norm(dim=-1).max())
    return 1.1 * radius if radius > 0 else 1.0


# --- parameter edits that keep the optimizer consistent ---------------------------------------


def _group_by_name(optimizer: torch.optim.Optimizer | None) -> dict[str, dict]:
    if optimizer is None:
        return {}
    return {g["name"]: g for g in optimizer.param_groups if "name" in g}


def _replace(model: GaussianModel, optimizer: torch.optim.Optimizer | None, name: str,
             tensor: Tensor, moment_fn: Callable[[Tensor], Tensor]) -> None:
    """Put ``tensor`` in ``model.params[name]`` as a new Parameter, and in its Adam group."""
    old = model.params[name]
    new = nn.Parameter(tensor, requires_grad=old.requires_grad)
    group = _group_by_name(optimizer).get(name)
    if optimizer is not None and group is not None:
        state = optimizer.state.pop(group["params"][0], None)
        group["params"][0] = new
        if state:
            for k in _MOMENTS:
                if k in state:
                    state[k] = moment_fn(state[k])
            optimizer.state[new] = state
    model.params[name] = new


def edit_gaussians(model: GaussianModel, optimizer: torch.optim.Optimizer | None,
                   param_fn: Callable[[str, Tensor], Tensor],
                   moment_fn: Callable[[Tensor], Tensor]) -> None:
    """Replace every ``model.params[name]`` by ``param_fn(name, old)`` and its Adam moments.

    Args:
        model: a :class:`~neural3d.splat.model.GaussianModel` (``params`` [N, ...] tensors).
        optimizer: Adam whose param groups carry ``name`` = the params key and hold that one
            tensor (or None: parameters only).
        param_fn: ``(name, old [N, ...]) -> new [M, ...]`` (old is detached).
        moment_fn: ``old moment [N, ...] -> new [M, ...]``, the same row edit for ``exp_avg`` and
            ``exp_avg_sq`` (Adam's ``step`` count is kept).
    """
    for name in list(model.params.keys()):
        _replace(model, optimizer, name, param_fn(name, model.params[name].detach()), moment_fn)


def duplicate(model: GaussianModel, optimizer: torch.optim.Optimizer | None, mask: Tensor) -> None:
    """Append a copy of each Gaussian in ``mask [N] bool``; the copies' moments start at zero."""
    edit_gaussians(model, optimizer, lambda _, p: torch.cat([p, p[mask]]),
                   lambda m: torch.cat([m, torch.zeros_like(m[mask])]))


def split(model: GaussianModel, optimizer: torch.optim.Optimizer | None, mask: Tensor,
          generator: torch.Generator | None = None) -> None:
    """Replace each Gaussian in ``mask [N] bool`` by two children sampled from it.

    Children go after the kept Gaussians (order: all first children, then all second ones).
    Their means are ``mu + R (s * eps)``, ``eps ~ N(0, I)``; their scales ``s / 1.6``; rotation,
    opacity and colour are the parent's; their moments start at zero.
    """
    keep, k = ~mask, SPLIT_CHILDREN
    scales = model.params["log_scales"].detach()[mask].exp().repeat(k, 1)  # [k*S, 3]
    rots = quat_to_rotmat(model.params["quats"].detach()[mask]).repeat(k, 1, 1)  # [k*S, 3, 3]
    eps = torch.randn(scales.shape, generator=generator, dtype=scales.dtype, device="cpu")
    offsets = (rots @ (scales * eps.to(scales.device))[..., None])[..., 0]  # [k*S, 3]

    def children(name: str, p: Tensor) -> Tensor:
        rep = p[mask].repeat(k, *([1] * (p.dim() - 1)))
        if name == "means":
            rep = rep + offsets
        elif name == "log_scales":
            rep = (scales / SPLIT_SCALE_DIVISOR).log()
        return torch.cat([p[keep], rep])

    edit_gaussians(model, optimizer, children,
                   lambda m: torch.cat([m[keep], torch.zeros_like(m[mask]).repeat(
                       k, *([1] * (m.dim() - 1)))]))


def remove(model: GaussianModel, optimizer: torch.optim.Optimizer | None, mask: Tensor) -> None:
    """Delete the Gaussians in ``mask [N] bool`` (parameters and moments)."""
    keep = ~mask
    edit_gaussians(model, optimizer, lambda _, p: p[keep], lambda m: m[keep])


def reset_opacity(model: GaussianModel, optimizer: torch.optim.Optimizer | None,
                  value: float | Tensor = RESET_OPACITY) -> None:
    """Opacities to ``min(opacity, value)`` (as logits); the opacity moments restart at zero.

    Args:
        model: the Gaussians (``params["opacity_logits"]`` replaced).
        optimizer: its Adam (the opacity group's moments zeroed), or None.
        value: one cap for every Gaussian, or ``[N]`` caps (values >= 1 leave that opacity as it
            is).
    """
    logits = model.params["opacity_logits"].detach()
    cap = torch.as_tensor(value, dtype=logits.dtype, device=logits.device)
    limit = torch.logit(cap.clamp(1e-6, 1 - 1e-6))
    new = torch.where(cap < 1, torch.minimum(logits, limit), logits)
    _replace(model, optimizer, "opacity_logits", new.clone(), torch.zeros_like)


def effective_reset_caps(max_factor: Tensor, value: float = RESET_OPACITY) -> Tensor:
    """``[N]`` opacity caps that bring each Gaussian's peak alpha to at most ``value``.

    Args:
        max_factor: ``[N]`` largest antialiasing factor each Gaussian had in a view (0: never
            seen, which gets the raw cap ``value``).
        value: the peak alpha to cap at (3DGS's reset value, 0.01).

    Example: factors ``[1, 0.1, 0.005, 0]`` give caps ``[0.01, 0.1, 2, 0.01]`` (a cap above 1
    leaves the opacity as it is: its alpha is under ``value`` already).
    """
    seen = max_factor > 0
    return torch.where(seen, value / torch.where(seen, max_factor, 1.0), value)


# --- the strategy ------------------------------------------------------------------------------


class DensityControl:
    """3DGS's adaptive density control (clone, split, prune, opacity reset).

    Args:
        config: the run's :class:`SplatConfig` (its ``densify_*``, ``prune_*``, ``percent_dense``,
            ``opacity_reset_every``, ``max_gaussians`` and ``background`` fields).
        scene_extent: the scene's size (:func:`camera_extent`), which the world-size thresholds
            scale with.
        generator: randomness of the split children (kept in :meth:`state_dict` via the caller).

    Attributes:
        state: ``grad2d [N]`` (summed NDC gradient norms), ``count [N]`` (visible steps),
            ``max_radii [N]`` (largest 2D radius in pixels), reset after each densification;
            ``max_factor [N]`` (largest antialiasing factor in a view, 0 in the classic mode),
            reset after each opacity reset.
    """

    def __init__(self, config: SplatConfig, scene_extent: float, *,
                 generator: torch.Generator | None = None):
        self.config, self.scene_extent, self.generator = config, float(scene_extent), generator
        self.state: dict[str, Tensor] = {}

    def _ensure_state(self, n: int, device: torch.device) -> None:
        if not self.state or len(self.state["grad2d"]) != n:
            self.state = {k: torch.zeros(n, device=device) for k in _STATISTICS}

    def step_pre_backward(self, out: RenderOutput) -> None:
        """Ask autograd to keep the gradient of ``out.means2d [N, 2]`` (a non-leaf tensor)."""
        if out.means2d.requires_grad:
            out.means2d.retain_grad()

    @torch.no_grad()
    def accumulate(self, out: RenderOutput) -> None:
        """Add this step's NDC gradient norm, visibility and 2D radius to :attr:`state`.

        Args:
            out: the :class:`~neural3d.splat.render.RenderOutput` after backward (``means2d.grad
                [N, 2]`` in pixels, ``radii [N]``, ``visible [N]``, ``image [H, W, 3]``).
        """
        n = out.means2d.shape[0]
        self._ensure_state(n, out.means2d.device)
        grad = out.means2d.grad
        if grad is None:
            return
        h, w = out.image.shape[:2]
        ndc = grad * grad.new_tensor([w / 2.0, h / 2.0])  # d/d(NDC) = d/d(pixel) * (W/2, H/2)
        vis = out.visible
        s = self.state
        # Dense where() rather than boolean-mask indexing: the same values (adding 0 to the
        # unseen), ~1 ms instead of ~3.4 ms a step at 50k Gaussians on one thread.
        s["grad2d"].add_(torch.where(vis, torch.linalg.vector_norm(ndc, dim=-1), 0.0))
        s["count"].add_(vis)
        torch.where(vis, torch.maximum(s["max_radii"], out.radii.to(torch.float32)),
                    s["max_radii"], out=s["max_radii"])
        if out.opacity_factor is not None:
            torch.where(vis, torch.maximum(s["max_factor"], out.opacity_factor),
                        s["max_factor"], out=s["max_factor"])

    def step_post_backward(self, step: int, model: GaussianModel,
                           optimizer: torch.optim.Optimizer | None,
                           out: RenderOutput) -> DensityReport:
        """Accumulate statistics; densify, prune and reset opacities when ``step`` says so.

        Args:
            step: the step just taken, counted from 1 (3DGS's ``iteration``).
            model: the :class:`~neural3d.splat.model.GaussianModel` (edited in place).
            optimizer: its Adam, one param group per ``model.params`` key (``name`` = the key).
            out: this step's render output, after backward.
        """
        c, report = self.config, DensityReport()
        if step >= c.densify_until:
            return report
        self.accumulate(out)
        if step > c.densify_from and step % c.densify_every == 0:
            report = self.densify(model, optimizer, prune_big=step > c.opacity_reset_every)
        if step % c.opacity_reset_every == 0 or (c.background == "white"
                                                  and step == c.densify_from):
            self.reset_opacity(model, optimizer)
            report.reset = True
        return report

    @torch.no_grad()
    def reset_opacity(self, model: GaussianModel,
                      optimizer: torch.optim.Optimizer | None) -> None:
        """Reset opacities as ``config.opacity_reset`` says; restart the factor record."""
        n = model.params["means"].shape[0]
        self._ensure_state(n, model.params["means"].device)
        if self.config.opacity_reset == "effective":
            reset_opacity(model, optimizer, effective_reset_caps(self.state["max_factor"]))
        else:
            reset_opacity(model, optimizer)
        self.state["max_factor"].zero_()

    @torch.no_grad()
    def densify(self, model: GaussianModel, optimizer: torch.optim.Optimizer | None, *,
                prune_big: bool) -> DensityReport:
        """Clone, split, then prune, from the statistics gathered so far; reset the statistics."""
        c, s = self.config, self.state
        n = model.params["means"].shape[0]
        self._ensure_state(n, model.params["means"].device)
        grads = s["grad2d"] / s["count"].clamp_min(1)  # never-seen Gaussians: 0
        max_scale = model.params["log_scales"].detach().exp().amax(-1)  # [N]
        big = max_scale > c.percent_dense * self.scene_extent
        want = self._capped(grads >= c.densify_grad_threshold, grads, n)
        clone_mask, split_mask = want & ~big, want & big
        n_clone, n_split = int(clone_mask.sum()), int(split_mask.sum())
        # statistics follow their Gaussians so that the screen-size test below sees them
        self._edit_state(lambda t: torch.cat([t, t[clone_mask]]))
        duplicate(model, optimizer, clone_mask)
        split_mask = torch.cat([split_mask, split_mask.new_zeros(n_clone)])
        self._edit_state(
            lambda t: torch.cat([t[~split_mask], t[split_mask].repeat(SPLIT_CHILDREN)]))
        split(model, optimizer, split_mask, self.generator)
        prune = self._prune_mask(model, prune_big)
        remove(model, optimizer, prune)
        self._edit_state(lambda t: t[~prune])
        for k in _WINDOW:  # the factor record lasts until the next opacity reset
            self.state[k].zero_()
        return DensityReport(cloned=n_clone, split=n_split, pruned=int(prune.sum()))

    def _capped(self, want: Tensor, grads: Tensor, n: int) -> Tensor:
        """``want`` limited to the largest gradients that keep N within ``max_gaussians``."""
        cap = self.config.max_gaussians
        if cap <= 0 or n + int(want.sum()) <= cap:
            return want
        room = max(cap - n, 0)  # a clone or a split each add one Gaussian
        keep = torch.zeros_like(want)
        if room > 0:
            order = torch.argsort(torch.where(want, grads, -1.0), descending=True, stable=True)
            keep[order[:room]] = True
        return keep & want

    def _edit_state(self, fn: Callable[[Tensor], Tensor]) -> None:
        self.state = {k: fn(v) for k, v in self.state.items()}

    def _prune_mask(self, model: GaussianModel, prune_big: bool) -> Tensor:
        """``[N] bool``: too transparent; after the first reset also too large (world or screen)."""
        c = self.config
        mask = torch.sigmoid(model.params["opacity_logits"].detach()) < c.prune_opacity
        if prune_big:
            max_scale = model.params["log_scales"].detach().exp().amax(-1)
            mask |= max_scale > c.prune_world_fraction * self.scene_extent
            if c.prune_screen_px > 0:
                mask |= self.state["max_radii"] > c.prune_screen_px
        return mask

    def state_dict(self) -> dict[str, Tensor]:
        """The accumulated statistics (for checkpoints)."""
        return {k: v.clone() for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, Tensor], n: int) -> None:
        """Restore :meth:`state_dict`: the ``[N]`` statistics of ``n`` Gaussians, or none.

        A checkpoint written before the factor record existed restores it as zeros (the next
        reset is then raw).

        Raises:
            MpgymError: some but not all statistics, or one that is not ``n`` finite floats.
        """
        if not state:
            self.state = {}
            return
        if "max_factor" not in state and all(k in state for k in _WINDOW):
            state = {**state, "max_factor": torch.zeros_like(state["grad2d"])}
        for k in _STATISTICS:
            v = state.get(k)
            if (v is None or v.ndim != 1 or len(v) != n or not v.is_floating_point()
                    or not bool(torch.isfinite(v).all())):
                raise MpgymError(f"density statistic {k!r} must be {n} finite floats (one per "
                                 f"Gaussian); got {None if v is None else tuple(v.shape)}.")
        self.state = {k: state[k].clone() for k in _STATISTICS}
