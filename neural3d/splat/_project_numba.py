"""Compiled projection and SH colours for rendering without gradients (CPU).

:func:`project_colour` does, for one camera and in one pass over the Gaussians (parallel), what
:func:`neural3d.splat.project.project_gaussians`, :meth:`GaussianModel.scales`, ``rotations``,
``opacities`` and ``colors`` do in torch: the same formulas in the same order, float32 (so the
results agree to float32 rounding; a radius ``ceil(3 sqrt(lambda))`` may differ by one where
``3 sqrt(lambda)`` lies within rounding of an integer). The torch path runs ~40 separate
element-wise passes over ``[N]`` tensors plus a batched ``[N, 1, K] x [N, K, 3]`` product for
the colours -- ~16 ms for 100k Gaussians on 2 cores, a quarter of a 256^2 render -- where this
kernel reads each Gaussian once. It has no backward: training keeps the differentiable torch
functions, and :func:`neural3d.splat.render.render` takes this path only when no gradient is
wanted. Imported lazily.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from neural3d.encodings import _C0, _C1, _C2, _C3

_F = np.float32


@njit(inline="always")
def _sh_colour(deg, dc, rest, g, ch, x, y, z):  # pragma: no cover - compiled
    """``sum_k Y_k(x, y, z) coeff_k`` of channel ``ch`` up to degree ``deg`` (unit direction)."""
    c = _F(_C0) * dc[g, 0, ch]
    if deg > 0:
        c += _F(-_C1) * y * rest[g, 0, ch] + _F(_C1) * z * rest[g, 1, ch] \
            + _F(-_C1) * x * rest[g, 2, ch]
    if deg > 1:
        xx, yy, zz = x * x, y * y, z * z
        c += (_F(_C2[0]) * x * y * rest[g, 3, ch] + _F(_C2[1]) * y * z * rest[g, 4, ch]
              + _F(_C2[2]) * (_F(2.0) * zz - xx - yy) * rest[g, 5, ch]
              + _F(_C2[3]) * x * z * rest[g, 6, ch] + _F(_C2[4]) * (xx - yy) * rest[g, 7, ch])
        if deg > 2:
            c += (_F(_C3[0]) * y * (_F(3.0) * xx - yy) * rest[g, 8, ch]
                  + _F(_C3[1]) * x * y * z * rest[g, 9, ch]
                  + _F(_C3[2]) * y * (_F(4.0) * zz - xx - yy) * rest[g, 10, ch]
                  + _F(_C3[3]) * z * (_F(2.0) * zz - _F(3.0) * xx - _F(3.0) * yy)
                  * rest[g, 11, ch]
                  + _F(_C3[4]) * x * (_F(4.0) * zz - xx - yy) * rest[g, 12, ch]
                  + _F(_C3[5]) * z * (xx - yy) * rest[g, 13, ch]
                  + _F(_C3[6]) * x * (xx - _F(3.0) * yy) * rest[g, 14, ch])
    return c


@njit(parallel=True, cache=True, error_model="numpy")
def project_colour(means, log_scales, quats, opacity_logits, sh_dc, sh_rest, deg, rot, trans,
                   centre, cam, means2d, conics, depths, radii, cov2d, colors,
                   opac):  # pragma: no cover
    """Project, colour and activate every Gaussian for one camera (outputs written in place).

    ``rot [3, 3]``, ``trans [3]``: world to camera (OpenCV axes); ``centre [3]``: the camera
    centre; ``cam``: ``(fx, fy, cx, cy, width, height, near, far, eps2d, lim_x, lim_y)``.
    ``sh_dc [N, 1, 3]``, ``sh_rest [N, K - 1, 3]`` with ``K >= (deg + 1)^2``. Outputs as
    :class:`~neural3d.splat.project.Projection` (``radii`` int32, 0 when culled), the clamped
    colours ``max(SH + 0.5, 0)`` and the opacities ``sigmoid(logit)``.
    """
    fx, fy, cx, cy = _F(cam[0]), _F(cam[1]), _F(cam[2]), _F(cam[3])
    width, height, near, far = _F(cam[4]), _F(cam[5]), _F(cam[6]), _F(cam[7])
    eps2d, lim_x, lim_y = _F(cam[8]), _F(cam[9]), _F(cam[10])
    W = rot
    one, two, zero = _F(1.0), _F(2.0), _F(0.0)
    for g in prange(means.shape[0]):
        mx, my, mz = means[g, 0], means[g, 1], means[g, 2]
        tx = W[0, 0] * mx + W[0, 1] * my + W[0, 2] * mz + trans[0]
        ty = W[1, 0] * mx + W[1, 1] * my + W[1, 2] * mz + trans[1]
        tz = W[2, 0] * mx + W[2, 1] * my + W[2, 2] * mz + trans[2]
        in_range = (tz >= near) & (tz <= far)
        z = tz if in_range else one
        ux = min(max(tx / z, -lim_x), lim_x)
        uy = min(max(ty / z, -lim_y), lim_y)
        jx, jy = fx / z, fy / z
        jxz, jyz = -jx * ux, -jy * uy
        a0, a1, a2 = jx * W[0, 0] + jxz * W[2, 0], jx * W[0, 1] + jxz * W[2, 1], \
            jx * W[0, 2] + jxz * W[2, 2]
        b0, b1, b2 = jy * W[1, 0] + jyz * W[2, 0], jy * W[1, 1] + jyz * W[2, 1], \
            jy * W[1, 2] + jyz * W[2, 2]
        # unit quaternion (w, x, y, z), as torch.nn.functional.normalize (eps 1e-12)
        qw, qx, qy, qz = quats[g, 0], quats[g, 1], quats[g, 2], quats[g, 3]
        qn = max(math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz), _F(1e-12))
        qw, qx, qy, qz = qw / qn, qx / qn, qy / qn, qz / qn
        xx_, yy_, zz_ = qx * qx, qy * qy, qz * qz
        xy_, xz_, yz_ = qx * qy, qx * qz, qy * qz
        wx_, wy_, wz_ = qw * qx, qw * qy, qw * qz
        r00, r01, r02 = one - two * (yy_ + zz_), two * (xy_ - wz_), two * (xz_ + wy_)
        r10, r11, r12 = two * (xy_ + wz_), one - two * (xx_ + zz_), two * (yz_ - wx_)
        r20, r21, r22 = two * (xz_ - wy_), two * (yz_ + wx_), one - two * (xx_ + yy_)
        s0 = math.exp(log_scales[g, 0])
        s1 = math.exp(log_scales[g, 1])
        s2 = math.exp(log_scales[g, 2])
        # rows of J W R S
        p0 = (a0 * r00 + a1 * r10 + a2 * r20) * s0
        p1 = (a0 * r01 + a1 * r11 + a2 * r21) * s1
        p2 = (a0 * r02 + a1 * r12 + a2 * r22) * s2
        q0 = (b0 * r00 + b1 * r10 + b2 * r20) * s0
        q1 = (b0 * r01 + b1 * r11 + b2 * r21) * s1
        q2 = (b0 * r02 + b1 * r12 + b2 * r22) * s2
        cxx = p0 * p0 + p1 * p1 + p2 * p2 + eps2d
        cxy = p0 * q0 + p1 * q1 + p2 * q2
        cyy = q0 * q0 + q1 * q1 + q2 * q2 + eps2d
        det = cxx * cyy - cxy * cxy
        ok = in_range & (det > zero)
        inv_det = one / (det if ok else one)
        cov2d[g, 0], cov2d[g, 1], cov2d[g, 2] = cxx, cxy, cyy
        conics[g, 0], conics[g, 1], conics[g, 2] = cyy * inv_det, -cxy * inv_det, cxx * inv_det
        inv_z = one / z
        u, v = fx * tx * inv_z + cx, fy * ty * inv_z + cy
        means2d[g, 0], means2d[g, 1] = u, v
        depths[g] = tz
        mid = _F(0.5) * (cxx + cyy)
        lam = mid + math.sqrt(max(mid * mid - det, _F(0.1)))
        r = _F(math.ceil(_F(3.0) * math.sqrt(lam)))
        on_image = (u + r > zero) & (u - r < width) & (v + r > zero) & (v - r < height)
        radii[g] = np.int32(r) if ok & on_image else 0
        opac[g] = one / (one + math.exp(-opacity_logits[g]))
        dx, dy, dz = mx - centre[0], my - centre[1], mz - centre[2]
        dn = max(math.sqrt(dx * dx + dy * dy + dz * dz), _F(1e-12))
        dx, dy, dz = dx / dn, dy / dn, dz / dn
        for ch in range(3):
            colors[g, ch] = max(_sh_colour(deg, sh_dc, sh_rest, g, ch, dx, dy, dz) + _F(0.5),
                                zero)
