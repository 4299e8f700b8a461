"""Render a :class:`~neural3d.splat.model.GaussianModel` from one camera: project, colour, blend.

``render`` is the three pure steps in a row -- :func:`~neural3d.splat.project.project_gaussians`,
the model's view-dependent SH colours, :func:`~neural3d.splat.rasterize.rasterize_gaussians` --
with depth riding as one more blended channel when asked for. It reads only the model's
``params["means"]``, ``scales()``, ``rotations()``, ``opacities()`` and ``colors(centre)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mpgym.errors import MpgymError
from neural3d.cameras import Intrinsics
from neural3d.splat.project import project_gaussians
from neural3d.splat.rasterize import Backend, rasterize_gaussians

__all__ = ["RenderOutput", "render"]


@dataclass
class RenderOutput:
    """What one view of a Gaussian model gives."""

    image: Tensor
    """``[H, W, 3]`` colour, background blended in."""
    alpha: Tensor
    """``[H, W]`` accumulated opacity ``1 - T_final``."""
    depth: Tensor | None
    """``[H, W]`` expected depth ``sum(w z) / alpha`` (0 where alpha is 0), or None."""
    means2d: Tensor
    """``[N, 2]`` projected centres in pixels; when they require grad, ``means2d.grad`` after
    backward is the screen-space gradient density control accumulates (in pixels: multiply by
    ``(W / 2, H / 2)`` for the NDC units of the 3DGS threshold)."""
    radii: Tensor
    """``[N]`` int32 footprint radii (0 = culled)."""
    visible: Tensor
    """``[N]`` bool: ``radii > 0``."""


def render(
    model: Any,
    c2w: Tensor,
    intr: Intrinsics,
    *,
    background: Tensor | None = None,
    depth: bool = False,
    backend: Backend = "auto",
) -> RenderOutput:
    """Render ``model`` seen from ``c2w`` (differentiable w.r.t. all the model's parameters).

    Args:
        model: a :class:`~neural3d.splat.model.GaussianModel` (or anything with the same
            ``params["means"]``, ``scales()``, ``rotations()``, ``opacities()``, ``colors()``).
        c2w: ``[4, 4]`` camera-to-world in OpenGL axes.
        intr: pinhole intrinsics.
        background: ``[3]`` colour behind the Gaussians (default black).
        depth: also return the expected depth (one more blended channel).
        backend: rasterizer backend (see :func:`~neural3d.splat.rasterize.rasterize_gaussians`).

    Returns:
        A :class:`RenderOutput`.
    """
    means = model.params["means"]
    c2w = torch.as_tensor(c2w).to(device=means.device, dtype=means.dtype)
    if tuple(c2w.shape) != (4, 4):
        raise MpgymError(f"render needs a [4, 4] camera-to-world pose; got {tuple(c2w.shape)}.")
    proj = project_gaussians(means, model.scales(), model.rotations(), c2w, intr)
    means2d = proj.means2d
    if means2d.requires_grad:
        means2d.retain_grad()
    colors = model.colors(c2w[:3, 3])  # [N, 3]
    bg = None if background is None else torch.as_tensor(background).to(colors)
    if depth:  # z blended like a colour; its background is 0 so alpha can normalise it
        colors = torch.cat([colors, proj.depths[:, None]], dim=-1)
        bg = None if bg is None else torch.cat([bg, bg.new_zeros(1)])
    image, alpha = rasterize_gaussians(means2d, proj.conics, colors, model.opacities(),
                                       proj.depths, proj.radii, intr.width, intr.height,
                                       background=bg, backend=backend)
    expected = None
    if depth:
        image, acc_depth = image[..., :3], image[..., 3]
        covered = alpha > 0
        expected = torch.where(covered, acc_depth / torch.where(covered, alpha, 1.0), 0.0)
    return RenderOutput(image=image, alpha=alpha, depth=expected, means2d=means2d,
                        radii=proj.radii, visible=proj.radii > 0)
