"""Projection of 3D Gaussians into a pinhole camera (the 3DGS "preprocess" step), in plain torch.

Each Gaussian ``(mu, Sigma)`` with ``Sigma = R S S^T R^T`` (``R`` from a unit quaternion
``(w, x, y, z)``, ``S = diag(scales)``) becomes a 2D Gaussian on the image by the EWA splatting
approximation (Zwicker et al. 2002, as in Kerbl et al. 2023):

    t = W mu + b                                  (world -> camera, OpenCV axes: +z forward)
    Sigma' = J W Sigma W^T J^T + eps2d I          (2 x 2, pixels^2)
    J = [[fx / t_z, 0, -fx t_x' / t_z^2],
         [0, fy / t_z, -fy t_y' / t_z^2]]

where ``t_x' / t_z`` and ``t_y' / t_z`` are clamped to ``+-1.3 tan(fov / 2)`` per axis (so Gaussians
far outside the view do not get huge footprints), and ``eps2d = 0.3`` px^2 is the low-pass filter
that keeps every footprint at least about a pixel wide. The rasterizer needs the inverse, the
*conic* ``(a, b, c)`` with ``Sigma'^{-1} = [[a, b], [b, c]]``, and a radius
``ceil(3 sqrt(lambda_max))`` with ``lambda = mid +- sqrt(max(0.1, mid^2 - det))``.

With ``antialiased=True`` (gsplat's ``rasterize_mode="antialiased"``, the 2D filter of
Mip-Splatting, Yu et al. 2024) the filter is read as the pixel's own footprint: the covariance
is widened the same way, but each Gaussian's opacity is scaled by

    rho = sqrt(max(det(Sigma' - eps2d I) / det(Sigma'), 0))

so that widening keeps its integral (mass) instead of adding it: a Gaussian far below a pixel
fades in proportion to the area it covers rather than becoming a pixel-wide blob of its full
opacity. The factor is :attr:`Projection.compensation`; the renderer multiplies it in.

Pixel coordinates follow :mod:`neural3d.cameras`: pixel ``(i, j)`` has its centre at
``(i + 0.5, j + 0.5)``, so the mean lands at ``(fx t_x / t_z + cx, fy t_y / t_z + cy)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mpgym.errors import MpgymError
from neural3d.cameras import Intrinsics, opengl_to_opencv

__all__ = ["EPS2D", "FAR", "FRUSTUM_CLAMP", "NEAR", "Projection", "project_gaussians",
           "quat_to_rotmat"]

FRUSTUM_CLAMP = 1.3
"""Camera-space ``x/z``, ``y/z`` used in the EWA Jacobian are clamped to this times tan(fov/2)."""
NEAR, FAR = 0.01, 1e10
"""Default depth range outside which Gaussians are culled."""
EPS2D = 0.3
"""Default low-pass filter on the 2D covariance's diagonal (pixels^2), as in 3DGS."""


@dataclass
class Projection:
    """Per-Gaussian image-space quantities for one camera (culled Gaussians have ``radii == 0``)."""

    means2d: Tensor
    """``[N, 2]`` centres in pixels (x right, y down; pixel centres at ``+0.5``)."""
    conics: Tensor
    """``[N, 3]`` ``(a, b, c)``: upper triangle of the inverse 2D covariance."""
    depths: Tensor
    """``[N]`` camera-space depth ``t_z`` (positive in front of the camera)."""
    radii: Tensor
    """``[N]`` int32 footprint radius in pixels, ``0`` for culled Gaussians."""
    cov2d: Tensor
    """``[N, 3]`` ``(xx, xy, yy)`` of the 2D covariance, low-pass ``eps2d`` included."""
    compensation: Tensor | None = None
    """``[N]`` opacity factor ``rho`` of the antialiased mode, or None (classic mode)."""


def _rotation_entries(q: Tensor) -> tuple[tuple[Tensor, Tensor, Tensor], ...]:
    """The 3 x 3 rotation entries (each ``[...]``) of unit quaternions ``[..., 4]`` (w, x, y, z)."""
    w, x, y, z = q.unbind(-1)
    xx, yy, zz, xy, xz, yz = x * x, y * y, z * z, x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    return (
        (1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy)),
        (2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx)),
        (2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy)),
    )


def quat_to_rotmat(q: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` from unit quaternions ``[..., 4]`` ordered (w, x, y, z).

    Example:
        >>> quat_to_rotmat(torch.tensor([1.0, 0, 0, 0]))
        tensor([[1., 0., 0.],
                [0., 1., 0.],
                [0., 0., 1.]])
    """
    return torch.stack([torch.stack(r, dim=-1) for r in _rotation_entries(q)], dim=-2)


def _world_to_camera(c2w: Tensor) -> tuple[Tensor, Tensor]:
    """``(R [3, 3], t [3])`` of the OpenCV-axes world-to-camera map for an OpenGL ``c2w``."""
    cv = opengl_to_opencv(c2w)
    rot = cv[:3, :3].T  # inverse of a rotation
    return rot, -rot @ cv[:3, 3]


def _check_inputs(means: Tensor, scales: Tensor, rotations: Tensor, c2w: Tensor) -> None:
    """One clear error for shapes :func:`project_gaussians` cannot take.

    Values are not scanned here (a NaN passes through to the outputs, which
    :func:`neural3d.splat.rasterize.rasterize_gaussians` refuses); that keeps the projection of
    100k Gaussians free of four extra passes over memory.
    """
    n = means.shape[0] if means.ndim == 2 else -1
    if (means.ndim != 2 or means.shape[1] != 3 or tuple(scales.shape) != (n, 3)
            or tuple(rotations.shape) != (n, 4) or tuple(c2w.shape) != (4, 4)):
        raise MpgymError(
            "project_gaussians needs means [N, 3], scales [N, 3], rotations [N, 4] and c2w "
            f"[4, 4]; got {tuple(means.shape)}, {tuple(scales.shape)}, "
            f"{tuple(rotations.shape)}, {tuple(c2w.shape)}."
        )


def _ewa_cov2d(t: Tensor, z: Tensor, scales: Tensor, rotations: Tensor, rot_w2c: list,
               intr: Intrinsics, *, with_det: bool = False
               ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """``J W R S (J W R S)^T`` as ``(xx, xy, yy)`` ``[N]`` each, and its determinant or None.

    All before the low-pass; the determinant only when ``with_det``.

    The determinant is ``|p x q|^2`` of the rows ``p``, ``q`` of ``J W R S`` (Lagrange's
    identity), not ``xx yy - xy^2``: for footprints far below a pixel the difference cancels
    most of float32's digits, the cross product does not.

    ``t [N, 3]``: camera-space means; ``z [N]``: their (safe, positive) depths; ``rot_w2c``: the
    world-to-camera rotation ``W`` as nested lists of floats. ``J`` uses ``t_x / t_z`` and
    ``t_y / t_z`` clamped to ``1.3 tan(fov / 2)`` per axis. Written entry by entry on ``[N]``
    tensors: ``J`` is sparse and every matrix is tiny, where batched 3 x 3 matmuls and stacks
    cost several times more.
    """
    lim_x = FRUSTUM_CLAMP * 0.5 * intr.width / intr.fx  # 1.3 tan(fov_x / 2)
    lim_y = FRUSTUM_CLAMP * 0.5 * intr.height / intr.fy  # 1.3 tan(fov_y / 2)
    ux = (t[:, 0] / z).clamp(-lim_x, lim_x)
    uy = (t[:, 1] / z).clamp(-lim_y, lim_y)
    # J = [[fx/z, 0, -fx ux/z], [0, fy/z, -fy uy/z]]; rows of J W, each a triple of [N] tensors
    jx, jy = intr.fx / z, intr.fy / z
    jxz, jyz = -jx * ux, -jy * uy
    W = rot_w2c
    jw0 = [jx * W[0][j] + jxz * W[2][j] for j in range(3)]
    jw1 = [jy * W[1][j] + jyz * W[2][j] for j in range(3)]
    R = _rotation_entries(rotations)
    s = scales.unbind(-1)
    # rows of J W R S
    b0 = [(jw0[0] * R[0][k] + jw0[1] * R[1][k] + jw0[2] * R[2][k]) * s[k] for k in range(3)]
    b1 = [(jw1[0] * R[0][k] + jw1[1] * R[1][k] + jw1[2] * R[2][k]) * s[k] for k in range(3)]
    xx = b0[0] * b0[0] + b0[1] * b0[1] + b0[2] * b0[2]
    xy = b0[0] * b1[0] + b0[1] * b1[1] + b0[2] * b1[2]
    yy = b1[0] * b1[0] + b1[1] * b1[1] + b1[2] * b1[2]
    if not with_det:
        return xx, xy, yy, None
    c0 = b0[1] * b1[2] - b0[2] * b1[1]
    c1 = b0[2] * b1[0] - b0[0] * b1[2]
    c2 = b0[0] * b1[1] - b0[1] * b1[0]
    return xx, xy, yy, c0 * c0 + c1 * c1 + c2 * c2


def _radii(cov: Tensor, det: Tensor) -> Tensor:
    """``ceil(3 sqrt(lambda_max))`` of 2D covariances ``(xx, xy, yy) [N, 3]`` as int32 ``[N]``."""
    mid = 0.5 * (cov[:, 0] + cov[:, 2])
    lam = mid + torch.sqrt((mid * mid - det).clamp_min(0.1))
    return torch.ceil(3.0 * torch.sqrt(lam)).to(torch.int32)


def project_gaussians(
    means: Tensor,
    scales: Tensor,
    rotations: Tensor,
    c2w: Tensor,
    intr: Intrinsics,
    *,
    near: float = NEAR,
    far: float = FAR,
    eps2d: float = EPS2D,
    antialiased: bool = False,
) -> Projection:
    """Project 3D Gaussians into one camera (differentiable w.r.t. means, scales, rotations).

    Args:
        means: ``[N, 3]`` world-space centres.
        scales: ``[N, 3]`` standard deviations along the Gaussian's own axes (after ``exp``).
        rotations: ``[N, 4]`` unit quaternions ``(w, x, y, z)``.
        c2w: ``[4, 4]`` camera-to-world in OpenGL axes (as :mod:`neural3d.cameras`).
        intr: pinhole intrinsics in pixels.
        near: Gaussians with depth below this are culled.
        far: Gaussians with depth above this are culled.
        eps2d: low-pass filter added to the 2D covariance's diagonal (pixels^2).
        antialiased: also return the opacity factor that keeps each footprint's mass through
            the filter (:attr:`Projection.compensation`; see the module docstring).

    Returns:
        A :class:`Projection`. Culled Gaussians (outside ``[near, far]``, singular covariance, or
        a footprint square that misses the image) get ``radii == 0`` and finite other fields.

    Example:
        An isotropic Gaussian of scale ``s`` on the optical axis at depth ``z`` projects to the
        principal point with covariance ``(f s / z)^2 + eps2d`` on the diagonal:

        >>> from neural3d.cameras import Intrinsics
        >>> c2w = torch.eye(4); c2w[2, 3] = 4.0  # at z = 4 looking down -z at the origin
        >>> intr = Intrinsics(64, 64, 80, 80, 32, 32)
        >>> p = project_gaussians(torch.zeros(1, 3), torch.full((1, 3), 0.1),
        ...                       torch.tensor([[1.0, 0, 0, 0]]), c2w, intr)
        >>> p.means2d, p.cov2d, p.radii
        (tensor([[32., 32.]]), tensor([[4.3000, 0.0000, 4.3000]]), tensor([7], dtype=torch.int32))
    """
    _check_inputs(means, scales, rotations, c2w)
    rot_w2c, t_w2c = _world_to_camera(c2w.detach().to(means))
    t = torch.addmm(t_w2c, means, rot_w2c.T)  # [N, 3] camera space, OpenCV axes
    depth = t[:, 2]
    in_range = (depth >= near) & (depth <= far)
    z = torch.where(in_range, depth, torch.ones_like(depth))  # keep culled ones finite
    xx0, xy, yy0, det0 = _ewa_cov2d(t, z, scales, rotations, rot_w2c.tolist(), intr,
                                    with_det=antialiased)
    xx, yy = xx0 + eps2d, yy0 + eps2d  # low-pass filter: at least ~a pixel wide
    det = xx * yy - xy * xy
    ok = in_range & (det > 0)
    inv_det = 1.0 / torch.where(ok, det, torch.ones_like(det))
    compensation = None
    if det0 is not None:
        ratio = det0 * inv_det
        pos = ratio > 0  # sqrt's gradient is kept finite where the factor is 0
        compensation = torch.where(pos, torch.sqrt(torch.where(pos, ratio, 1.0)), 0.0)
    cov = torch.stack([xx, xy, yy], dim=-1)  # [N, 3]
    conics = torch.stack([yy * inv_det, -xy * inv_det, xx * inv_det], dim=-1)
    inv_z = 1.0 / z
    means2d = torch.stack([intr.fx * t[:, 0] * inv_z + intr.cx,
                           intr.fy * t[:, 1] * inv_z + intr.cy], dim=-1)
    with torch.no_grad():
        radii = _radii(cov, det)
        r = radii.to(means2d.dtype)
        mx, my = means2d[:, 0], means2d[:, 1]
        on_image = (mx + r > 0) & (mx - r < intr.width) & (my + r > 0) & (my - r < intr.height)
        radii = torch.where(ok & on_image, radii, torch.zeros_like(radii))
    return Projection(means2d=means2d, conics=conics, depths=depth, radii=radii, cov2d=cov,
                      compensation=compensation)
