"""Render a :class:`~neural3d.splat.model.GaussianModel` from one camera: project, colour, blend.

``render`` is the three pure steps in a row -- :func:`~neural3d.splat.project.project_gaussians`,
the model's view-dependent SH colours, :func:`~neural3d.splat.rasterize.rasterize_gaussians` --
with depth riding as one more blended channel when asked for. It reads only the model's
``params["means"]``, ``scales()``, ``rotations()``, ``opacities()`` and ``colors(centre)``;
a :class:`~neural3d.splat.model.GaussianModel`'s float32 CPU parameters go instead through one
compiled pass that does the same (:mod:`neural3d.splat._project_numba`: ~6 ms instead of ~16 ms
for 100k Gaussians on 2 cores), with a compiled backward when gradients are wanted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
import torch
from torch import Tensor

from mpgym.errors import MpgymError
from mpgym.optional import optional_module
from neural3d.cameras import Intrinsics, opengl_to_opencv
from neural3d.splat.presets import RasterizeMode
from neural3d.splat.project import EPS2D, FAR, FRUSTUM_CLAMP, NEAR, Projection, project_gaussians
from neural3d.splat.rasterize import Backend, rasterize_gaussians

__all__ = ["RASTERIZE_MODES", "RasterizeMode", "RenderOutput", "render"]

RASTERIZE_MODES: tuple[str, ...] = get_args(RasterizeMode)
"""``classic``: 3DGS's 0.3-px dilation; ``antialiased``: the same dilation with each opacity
scaled to keep the footprint's mass (Mip-Splatting's 2D filter, gsplat's mode of that name; see
:mod:`neural3d.splat.project`). A model is rendered in the mode it was trained in."""


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
    opacity_factor: Tensor | None = None
    """``[N]`` the antialiased mode's factor on each opacity in this view, in ``[0, 1]``
    (detached; None in the classic mode, where it is 1): a Gaussian's peak alpha is its opacity
    times this. Density control's effective opacity reset reads it."""


def render(
    model: Any,
    c2w: Tensor,
    intr: Intrinsics,
    *,
    background: Tensor | None = None,
    depth: bool = False,
    backend: Backend = "auto",
    rasterize_mode: RasterizeMode = "classic",
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
        rasterize_mode: ``"classic"`` or ``"antialiased"`` (:data:`RASTERIZE_MODES`).

    Returns:
        A :class:`RenderOutput`.
    """
    if rasterize_mode not in RASTERIZE_MODES:
        raise MpgymError(f"rasterize_mode must be one of {', '.join(RASTERIZE_MODES)}; "
                         f"got {rasterize_mode!r}.")
    antialiased = rasterize_mode == "antialiased"
    means = model.params["means"]
    c2w = torch.as_tensor(c2w).to(device=means.device, dtype=means.dtype)
    if tuple(c2w.shape) != (4, 4):
        raise MpgymError(f"render needs a [4, 4] camera-to-world pose; got {tuple(c2w.shape)}.")
    fused = _fused_projection(model, c2w, intr, backend, antialiased=antialiased)
    factor = None
    if fused is not None:
        proj, colors, opacities = fused
        if antialiased:  # the kernel multiplies the factor in; divide the plain opacity out
            plain = torch.sigmoid(model.params["opacity_logits"].detach()).clamp_min(1e-30)
            factor = (opacities.detach() / plain).clamp(0.0, 1.0)
    else:
        proj = project_gaussians(means, model.scales(), model.rotations(), c2w, intr,
                                 antialiased=antialiased)
        colors, opacities = model.colors(c2w[:3, 3]), model.opacities()  # [N, 3], [N]
        if proj.compensation is not None:
            opacities = opacities * proj.compensation
            factor = proj.compensation.detach().clamp(0.0, 1.0)
    means2d = proj.means2d
    if means2d.requires_grad:
        means2d.retain_grad()
    bg = None if background is None else torch.as_tensor(background).to(colors)
    if depth:  # z blended like a colour; its background is 0 so alpha can normalise it
        colors = torch.cat([colors, proj.depths[:, None]], dim=-1)
        bg = None if bg is None else torch.cat([bg, bg.new_zeros(1)])
    image, alpha = rasterize_gaussians(means2d, proj.conics, colors, opacities,
                                       proj.depths, proj.radii, intr.width, intr.height,
                                       background=bg, backend=backend)
    expected = None
    if depth:
        image, acc_depth = image[..., :3], image[..., 3]
        covered = alpha > 0
        expected = torch.where(covered, acc_depth / torch.where(covered, alpha, 1.0), 0.0)
    return RenderOutput(image=image, alpha=alpha, depth=expected, means2d=means2d,
                        radii=proj.radii, visible=proj.radii > 0, opacity_factor=factor)


_FUSED_PARAMS = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")


def _fused_projection(model: Any, c2w: Tensor, intr: Intrinsics, backend: Backend, *,
                      antialiased: bool = False) -> tuple[Projection, Tensor, Tensor] | None:
    """Projection, colours and opacities from the compiled kernels, or None if they do not apply.

    The opacities include the antialiased mode's factor when ``antialiased``.

    They apply to a :class:`~neural3d.splat.model.GaussianModel`'s float32 CPU parameters when
    the rasterizer backend is ``"numba"`` or ``"auto"`` on CPU with numba installed
    (:mod:`neural3d.splat._project_numba`; the same formulas as the torch functions, with a
    hand-written backward: one pass over the Gaussians each way where the torch functions make
    ~40 element-wise passes and a batched 16 x 3 SH product, and their autograd as many again:
    ~48 of a ~104 ms training step at 128x128 with 40k Gaussians).
    """
    params = getattr(model, "params", None)
    if backend not in ("auto", "numba") or not all(k in (params or {}) for k in _FUSED_PARAMS):
        return None
    tensors = [params[k] for k in _FUSED_PARAMS]
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors):
        return None
    deg = getattr(model, "sh_degree", None)
    if not isinstance(deg, int) or not 0 <= deg <= 3 or tensors[5].shape[1] < (deg + 1) ** 2 - 1:
        return None
    kernel = optional_module("neural3d.splat._project_numba")
    if kernel is None:
        return None
    cv = opengl_to_opencv(c2w.detach().to(torch.float32))  # as project_gaussians computes them
    rot = cv[:3, :3].T
    camera = (deg, rot.contiguous().numpy(), (-rot @ cv[:3, 3]).numpy(),
              cv[:3, 3].contiguous().numpy(),
              np.array([intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height, NEAR, FAR,
                        EPS2D, FRUSTUM_CLAMP * 0.5 * intr.width / intr.fx,
                        FRUSTUM_CLAMP * 0.5 * intr.height / intr.fy, float(antialiased)],
                       np.float64))
    means2d, conics, depths, radii, cov2d, colors, opac = _FusedProjection.apply(
        kernel, camera, *tensors)
    proj = Projection(means2d=means2d, conics=conics, depths=depths, radii=radii, cov2d=cov2d)
    return proj, colors, opac


def _arrays(tensors: Any) -> list[np.ndarray]:
    return [t.detach().contiguous().numpy() for t in tensors]


class _FusedProjection(torch.autograd.Function):
    """The compiled projection and its backward as one autograd node.

    ``cov2d`` and ``radii`` are not differentiable here (the renderer does not use them).
    """

    @staticmethod
    def forward(ctx: Any, kernel: Any, camera: tuple, *tensors: Tensor) -> tuple[Tensor, ...]:
        n = tensors[0].shape[0]
        out = [np.empty((n, 2), np.float32), np.empty((n, 3), np.float32),
               np.empty(n, np.float32), np.empty(n, np.int32), np.empty((n, 3), np.float32),
               np.empty((n, 3), np.float32), np.empty(n, np.float32)]
        kernel.project_colour(*_arrays(tensors), *camera, *out)
        means2d, conics, depths, radii, cov2d, colors, opac = (torch.from_numpy(a) for a in out)
        ctx.kernel, ctx.camera = kernel, camera
        ctx.save_for_backward(*tensors, opac)
        ctx.mark_non_differentiable(radii, cov2d)
        return means2d, conics, depths, radii, cov2d, colors, opac

    @staticmethod
    def backward(ctx: Any, g_means2d: Tensor, g_conics: Tensor, g_depths: Tensor, _g_radii: Any,
                 _g_cov2d: Any, g_colors: Tensor, g_opac: Tensor) -> tuple[Any, ...]:
        *tensors, opac = ctx.saved_tensors
        grads = [np.empty(tuple(t.shape), np.float32) for t in tensors]
        upstream = _arrays((g_means2d, g_conics, g_depths, g_colors, g_opac))
        ctx.kernel.project_colour_backward(*_arrays(tensors), *ctx.camera, opac.numpy(),
                                           *upstream, *grads)
        return (None, None, *(torch.from_numpy(g) for g in grads))
