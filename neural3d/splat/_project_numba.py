"""Compiled projection and SH colours, forward and backward (CPU).

:func:`project_colour` does, for one camera and in one pass over the Gaussians (parallel), what
:func:`neural3d.splat.project.project_gaussians`, :meth:`GaussianModel.scales`, ``rotations``,
``opacities`` and ``colors`` do in torch: the same formulas in the same order, float32 (so the
results agree to float32 rounding; a radius ``ceil(3 sqrt(lambda))`` may differ by one where
``3 sqrt(lambda)`` lies within rounding of an integer). The torch path runs ~40 separate
element-wise passes over ``[N]`` tensors plus a batched ``[N, 1, K] x [N, K, 3]`` product for
the colours -- ~16 ms for 100k Gaussians on 2 cores, a quarter of a 256^2 render -- where this
kernel reads each Gaussian once. :func:`project_colour_backward` is its hand-derived backward
(the same subgradients as torch's autograd; tested against it in float64): in a training step
at 128x128 with 40k Gaussians on one thread the two take ~13 ms where the torch functions and
their autograd took ~48 ms of a ~104 ms step. :func:`neural3d.splat.render.render` uses them as
one autograd node. In the antialiased rasterize mode the opacities carry the factor
``sqrt(det0 / det)`` of :mod:`neural3d.splat.project`, with ``det0 = |p x q|^2`` from the rows
of ``J W R S`` as there. Both kernels let LLVM fuse multiply-adds (``fastmath={"contract"}``,
which only rounds less: 4.14 -> 3.87 ms for 100k Gaussians at SH degree 3 on 2 threads).
Imported lazily.
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


@njit
def _camera_terms(means, g, W, trans, near, far, fx, fy, lim_x, lim_y):  # pragma: no cover
    """Camera-space terms of Gaussian ``g``.

    The mean ``t``, the depth used (``z``, 1 if culled), ``t_x / z``, ``t_y / z``, their clamped
    values, and the rows ``a``, ``b`` of ``J W``.
    """
    mx, my, mz = means[g, 0], means[g, 1], means[g, 2]
    tx = W[0, 0] * mx + W[0, 1] * my + W[0, 2] * mz + trans[0]
    ty = W[1, 0] * mx + W[1, 1] * my + W[1, 2] * mz + trans[1]
    tz = W[2, 0] * mx + W[2, 1] * my + W[2, 2] * mz + trans[2]
    in_range = (tz >= near) & (tz <= far)
    z = tz if in_range else _F(1.0)
    rx, ry = tx / z, ty / z
    ux = min(max(rx, -lim_x), lim_x)
    uy = min(max(ry, -lim_y), lim_y)
    jx, jy = fx / z, fy / z
    jxz, jyz = -jx * ux, -jy * uy
    a = (jx * W[0, 0] + jxz * W[2, 0], jx * W[0, 1] + jxz * W[2, 1], jx * W[0, 2] + jxz * W[2, 2])
    b = (jy * W[1, 0] + jyz * W[2, 0], jy * W[1, 1] + jyz * W[2, 1], jy * W[1, 2] + jyz * W[2, 2])
    return tx, ty, tz, in_range, z, rx, ry, ux, uy, jx, jy, a, b


@njit
def _rotation(quats, g):  # pragma: no cover
    """Rotation of Gaussian ``g``.

    ``|q|``, the unit quaternion (w, x, y, z) as torch.nn.functional.normalize (eps 1e-12) makes
    it, and the rows of its rotation matrix.
    """
    one, two = _F(1.0), _F(2.0)
    pw, px, py, pz = quats[g, 0], quats[g, 1], quats[g, 2], quats[g, 3]
    norm = math.sqrt(pw * pw + px * px + py * py + pz * pz)
    qn = max(norm, _F(1e-12))
    qw, qx, qy, qz = pw / qn, px / qn, py / qn, pz / qn
    xx_, yy_, zz_ = qx * qx, qy * qy, qz * qz
    xy_, xz_, yz_ = qx * qy, qx * qz, qy * qz
    wx_, wy_, wz_ = qw * qx, qw * qy, qw * qz
    r0 = (one - two * (yy_ + zz_), two * (xy_ - wz_), two * (xz_ + wy_))
    r1 = (two * (xy_ + wz_), one - two * (xx_ + zz_), two * (yz_ - wx_))
    r2 = (two * (xz_ - wy_), two * (yz_ + wx_), one - two * (xx_ + yy_))
    return norm, qn, (qw, qx, qy, qz), r0, r1, r2


@njit
def _view_direction(means, g, centre):  # pragma: no cover
    """View direction of Gaussian ``g``.

    The unit direction from the camera centre, its length, and the length divided by
    (``max(|d|, 1e-12)``, as torch.nn.functional.normalize).
    """
    dx, dy, dz = means[g, 0] - centre[0], means[g, 1] - centre[1], means[g, 2] - centre[2]
    norm = math.sqrt(dx * dx + dy * dy + dz * dz)
    dn = max(norm, _F(1e-12))
    return dx / dn, dy / dn, dz / dn, norm, dn


@njit
def _jwr(a, r0, r1, r2):  # pragma: no cover
    """The row ``a`` (of ``J W``) times the rotation ``R`` (rows r0, r1, r2): a row of ``J W R``."""
    return (a[0] * r0[0] + a[1] * r1[0] + a[2] * r2[0], a[0] * r0[1] + a[1] * r1[1] + a[2] * r2[1],
            a[0] * r0[2] + a[1] * r1[2] + a[2] * r2[2])


@njit(parallel=True, cache=True, fastmath={"contract"}, error_model="numpy")
def project_colour(means, log_scales, quats, opacity_logits, sh_dc, sh_rest, deg, rot, trans,
                   centre, cam, means2d, conics, depths, radii, cov2d, colors,
                   opac):  # pragma: no cover
    """Project, colour and activate every Gaussian for one camera (outputs written in place).

    ``rot [3, 3]``, ``trans [3]``: world to camera (OpenCV axes); ``centre [3]``: the camera
    centre; ``cam``: ``(fx, fy, cx, cy, width, height, near, far, eps2d, lim_x, lim_y,
    antialiased)``. ``sh_dc [N, 1, 3]``, ``sh_rest [N, K - 1, 3]`` with ``K >= (deg + 1)^2``.
    Outputs as :class:`~neural3d.splat.project.Projection` (``radii`` int32, 0 when culled),
    the clamped colours ``max(SH + 0.5, 0)`` and the opacities ``sigmoid(logit)``, times the
    compensation ``rho`` when ``antialiased`` is nonzero.
    """
    fx, fy, cx, cy = _F(cam[0]), _F(cam[1]), _F(cam[2]), _F(cam[3])
    width, height, near, far = _F(cam[4]), _F(cam[5]), _F(cam[6]), _F(cam[7])
    eps2d, lim_x, lim_y = _F(cam[8]), _F(cam[9]), _F(cam[10])
    antialiased = cam[11] != 0.0
    W = rot
    one, zero = _F(1.0), _F(0.0)
    for g in prange(means.shape[0]):
        tx, ty, tz, in_range, z, _, _, _, _, _, _, a, b = _camera_terms(
            means, g, W, trans, near, far, fx, fy, lim_x, lim_y)
        _, _, _, r0, r1, r2 = _rotation(quats, g)
        s0 = math.exp(log_scales[g, 0])
        s1 = math.exp(log_scales[g, 1])
        s2 = math.exp(log_scales[g, 2])
        # rows of J W R S
        P, Q = _jwr(a, r0, r1, r2), _jwr(b, r0, r1, r2)
        p0, p1, p2 = P[0] * s0, P[1] * s1, P[2] * s2
        q0, q1, q2 = Q[0] * s0, Q[1] * s1, Q[2] * s2
        cxx0 = p0 * p0 + p1 * p1 + p2 * p2
        cxy = p0 * q0 + p1 * q1 + p2 * q2
        cyy0 = q0 * q0 + q1 * q1 + q2 * q2
        cxx, cyy = cxx0 + eps2d, cyy0 + eps2d
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
        if antialiased:  # det0 = |p x q|^2, as project.py (no cancellation)
            c0, c1, c2 = p1 * q2 - p2 * q1, p2 * q0 - p0 * q2, p0 * q1 - p1 * q0
            ratio = (c0 * c0 + c1 * c1 + c2 * c2) * inv_det
            opac[g] *= math.sqrt(ratio) if ratio > zero else zero
        dx, dy, dz, _, _ = _view_direction(means, g, centre)
        for ch in range(3):
            colors[g, ch] = max(_sh_colour(deg, sh_dc, sh_rest, g, ch, dx, dy, dz) + _F(0.5),
                                zero)


@njit(inline="always")
def _sh_backward(deg, dc, rest, g_dc, g_rest, g, gc0, gc1, gc2, x, y, z):  # pragma: no cover
    """Backward of the three channels' SH sums, given their upstream gradients ``gc*``.

    The coefficients' gradients are written to ``g_dc``, ``g_rest``; the unit direction's returned.
    """
    c0 = _F(_C0)
    g_dc[g, 0, 0], g_dc[g, 0, 1], g_dc[g, 0, 2] = c0 * gc0, c0 * gc1, c0 * gc2
    gx, gy, gz = _F(0.0), _F(0.0), _F(0.0)
    if deg == 0:
        return gx, gy, gz
    # basis values and their (d/dx, d/dy, d/dz), ordered as neural3d.encodings.spherical_harmonics
    c1 = _F(_C1)
    b = (-c1 * y, c1 * z, -c1 * x)
    db = ((_F(0.0), -c1, _F(0.0)), (_F(0.0), _F(0.0), c1), (-c1, _F(0.0), _F(0.0)))
    for k in range(3):
        g_rest[g, k, 0], g_rest[g, k, 1], g_rest[g, k, 2] = b[k] * gc0, b[k] * gc1, b[k] * gc2
        w = gc0 * rest[g, k, 0] + gc1 * rest[g, k, 1] + gc2 * rest[g, k, 2]
        gx += w * db[k][0]
        gy += w * db[k][1]
        gz += w * db[k][2]
    if deg == 1:
        return gx, gy, gz
    xx, yy, zz = x * x, y * y, z * z
    two, three, four = _F(2.0), _F(3.0), _F(4.0)
    a = (_F(_C2[0]), _F(_C2[1]), _F(_C2[2]), _F(_C2[3]), _F(_C2[4]))
    b2 = (a[0] * x * y, a[1] * y * z, a[2] * (two * zz - xx - yy), a[3] * x * z, a[4] * (xx - yy))
    db2 = ((a[0] * y, a[0] * x, _F(0.0)), (_F(0.0), a[1] * z, a[1] * y),
           (-two * a[2] * x, -two * a[2] * y, four * a[2] * z), (a[3] * z, _F(0.0), a[3] * x),
           (two * a[4] * x, -two * a[4] * y, _F(0.0)))
    for k in range(5):
        j = 3 + k
        g_rest[g, j, 0], g_rest[g, j, 1], g_rest[g, j, 2] = b2[k] * gc0, b2[k] * gc1, b2[k] * gc2
        w = gc0 * rest[g, j, 0] + gc1 * rest[g, j, 1] + gc2 * rest[g, j, 2]
        gx += w * db2[k][0]
        gy += w * db2[k][1]
        gz += w * db2[k][2]
    if deg == 2:
        return gx, gy, gz
    e = (_F(_C3[0]), _F(_C3[1]), _F(_C3[2]), _F(_C3[3]), _F(_C3[4]), _F(_C3[5]), _F(_C3[6]))
    six, eight = _F(6.0), _F(8.0)
    b3 = (e[0] * y * (three * xx - yy), e[1] * x * y * z, e[2] * y * (four * zz - xx - yy),
          e[3] * z * (two * zz - three * xx - three * yy), e[4] * x * (four * zz - xx - yy),
          e[5] * z * (xx - yy), e[6] * x * (xx - three * yy))
    db3 = ((e[0] * six * x * y, e[0] * (three * xx - three * yy), _F(0.0)),
           (e[1] * y * z, e[1] * x * z, e[1] * x * y),
           (-two * e[2] * x * y, e[2] * (four * zz - xx - three * yy), eight * e[2] * y * z),
           (-six * e[3] * x * z, -six * e[3] * y * z, e[3] * (six * zz - three * xx - three * yy)),
           (e[4] * (four * zz - three * xx - yy), -two * e[4] * x * y, eight * e[4] * x * z),
           (two * e[5] * x * z, -two * e[5] * y * z, e[5] * (xx - yy)),
           (e[6] * (three * xx - three * yy), -six * e[6] * x * y, _F(0.0)))
    for k in range(7):
        j = 8 + k
        g_rest[g, j, 0], g_rest[g, j, 1], g_rest[g, j, 2] = b3[k] * gc0, b3[k] * gc1, b3[k] * gc2
        w = gc0 * rest[g, j, 0] + gc1 * rest[g, j, 1] + gc2 * rest[g, j, 2]
        gx += w * db3[k][0]
        gy += w * db3[k][1]
        gz += w * db3[k][2]
    return gx, gy, gz


@njit(parallel=True, cache=True, fastmath={"contract"}, error_model="numpy")
def project_colour_backward(means, log_scales, quats, opacity_logits, sh_dc, sh_rest, deg, rot,
                            trans, centre, cam, opac, g_means2d, g_conics, g_depths, g_colors,
                            g_opac, g_means, g_log_scales, g_quats, g_logits, g_dc,
                            g_rest):  # pragma: no cover
    """Gradients of :func:`project_colour`'s differentiable outputs w.r.t. the parameters.

    Recomputes each Gaussian's forward quantities and applies the chain rule in reverse, with
    the subgradients torch's autograd takes through the same formulas (``clamp`` passes the
    gradient at its bounds, culled Gaussians use ``z = 1``, ``max(., 0)`` of a colour passes it
    at 0). ``g_rest`` entries beyond the active degree are written as zero; everything is written
    in place (parallel over Gaussians, no shared writes).
    """
    fx, fy = _F(cam[0]), _F(cam[1])
    near, far = _F(cam[6]), _F(cam[7])
    eps2d, lim_x, lim_y = _F(cam[8]), _F(cam[9]), _F(cam[10])
    antialiased = cam[11] != 0.0
    W = rot
    one, two, zero = _F(1.0), _F(2.0), _F(0.0)
    n_rest = sh_rest.shape[1]
    active = (deg + 1) * (deg + 1) - 1
    for g in prange(means.shape[0]):
        # ---- forward, as project_colour
        tx, ty, tz, in_range, z, rx, ry, ux, uy, jx, jy, a, b = _camera_terms(
            means, g, W, trans, near, far, fx, fy, lim_x, lim_y)
        a0, a1, a2 = a
        b0, b1, b2 = b
        qnorm, qn, (qw, qx, qy, qz), r0, r1, r2 = _rotation(quats, g)
        r00, r01, r02 = r0
        r10, r11, r12 = r1
        r20, r21, r22 = r2
        s0 = math.exp(log_scales[g, 0])
        s1 = math.exp(log_scales[g, 1])
        s2 = math.exp(log_scales[g, 2])
        P0, P1, P2 = _jwr(a, r0, r1, r2)
        Q0, Q1, Q2 = _jwr(b, r0, r1, r2)
        p0, p1, p2 = P0 * s0, P1 * s1, P2 * s2
        q0, q1, q2 = Q0 * s0, Q1 * s1, Q2 * s2
        cxx0 = p0 * p0 + p1 * p1 + p2 * p2
        cxy = p0 * q0 + p1 * q1 + p2 * q2
        cyy0 = q0 * q0 + q1 * q1 + q2 * q2
        cxx, cyy = cxx0 + eps2d, cyy0 + eps2d
        det = cxx * cyy - cxy * cxy
        ok = in_range & (det > zero)
        # ---- conic (a, b, c) = (cyy, -cxy, cxx) / det  (det := 1 where not ok)
        gA, gB, gC = g_conics[g, 0], g_conics[g, 1], g_conics[g, 2]
        inv = one / det if ok else one
        if ok:
            g_det = -(gA * cyy - gB * cxy + gC * cxx) * inv * inv
            g_cxx = gC * inv + g_det * cyy
            g_cyy = gA * inv + g_det * cxx
            g_cxy = -gB * inv - two * g_det * cxy
        else:
            g_cxx, g_cyy, g_cxy = gC, gA, -gB
        # ---- opacity: sigmoid(logit), times rho = sqrt(det0 / det) in the antialiased mode,
        # det0 = |c|^2 with c = p x q (its gradient goes to p and q below)
        c0, c1, c2, g_det0 = zero, zero, zero, zero
        if antialiased:
            c0, c1, c2 = p1 * q2 - p2 * q1, p2 * q0 - p0 * q2, p0 * q1 - p1 * q0
            sig = one / (one + math.exp(-opacity_logits[g]))
            ratio = (c0 * c0 + c1 * c1 + c2 * c2) * inv
            rho = math.sqrt(ratio) if ratio > zero else zero
            g_logits[g] = g_opac[g] * rho * sig * (one - sig)
            if ratio > zero:
                g_ratio = g_opac[g] * sig * _F(0.5) / rho
                g_det0 = g_ratio * inv
                if ok:  # det itself (1 where not ok, a constant)
                    g_det = -g_ratio * ratio * inv
                    g_cxx += g_det * cyy
                    g_cyy += g_det * cxx
                    g_cxy -= two * g_det * cxy
        else:
            o = opac[g]
            g_logits[g] = g_opac[g] * o * (one - o)
        # ---- 2D covariance from the rows p, q of J W R S
        gp0 = two * g_cxx * p0 + g_cxy * q0
        gp1 = two * g_cxx * p1 + g_cxy * q1
        gp2 = two * g_cxx * p2 + g_cxy * q2
        gq0 = two * g_cyy * q0 + g_cxy * p0
        gq1 = two * g_cyy * q1 + g_cxy * p1
        gq2 = two * g_cyy * q2 + g_cxy * p2
        if g_det0 != zero:  # d|p x q|^2 / dp = 2 q x c, / dq = 2 c x p
            gp0 += two * g_det0 * (q1 * c2 - q2 * c1)
            gp1 += two * g_det0 * (q2 * c0 - q0 * c2)
            gp2 += two * g_det0 * (q0 * c1 - q1 * c0)
            gq0 += two * g_det0 * (c1 * p2 - c2 * p1)
            gq1 += two * g_det0 * (c2 * p0 - c0 * p2)
            gq2 += two * g_det0 * (c0 * p1 - c1 * p0)
        g_log_scales[g, 0] = (gp0 * P0 + gq0 * Q0) * s0
        g_log_scales[g, 1] = (gp1 * P1 + gq1 * Q1) * s1
        g_log_scales[g, 2] = (gp2 * P2 + gq2 * Q2) * s2
        gP0, gP1, gP2 = gp0 * s0, gp1 * s1, gp2 * s2
        gQ0, gQ1, gQ2 = gq0 * s0, gq1 * s1, gq2 * s2
        # P_k = sum_i a_i R_ik, Q_k = sum_i b_i R_ik
        ga0 = gP0 * r00 + gP1 * r01 + gP2 * r02
        ga1 = gP0 * r10 + gP1 * r11 + gP2 * r12
        ga2 = gP0 * r20 + gP1 * r21 + gP2 * r22
        gb0 = gQ0 * r00 + gQ1 * r01 + gQ2 * r02
        gb1 = gQ0 * r10 + gQ1 * r11 + gQ2 * r12
        gb2 = gQ0 * r20 + gQ1 * r21 + gQ2 * r22
        g00, g01, g02 = gP0 * a0 + gQ0 * b0, gP1 * a0 + gQ1 * b0, gP2 * a0 + gQ2 * b0
        g10, g11, g12 = gP0 * a1 + gQ0 * b1, gP1 * a1 + gQ1 * b1, gP2 * a1 + gQ2 * b1
        g20, g21, g22 = gP0 * a2 + gQ0 * b2, gP1 * a2 + gQ1 * b2, gP2 * a2 + gQ2 * b2
        # rotation entries -> unit quaternion -> raw quaternion (normalize's backward)
        gqw = two * (-qz * g01 + qy * g02 + qz * g10 - qx * g12 - qy * g20 + qx * g21)
        gqx = two * (qy * g01 + qz * g02 + qy * g10 - two * qx * g11 - qw * g12 + qz * g20
                     + qw * g21 - two * qx * g22)
        gqy = two * (-two * qy * g00 + qx * g01 + qw * g02 + qx * g10 + qz * g12 - qw * g20
                     + qz * g21 - two * qy * g22)
        gqz = two * (-two * qz * g00 - qw * g01 + qx * g02 + qw * g10 - two * qz * g11
                     + qy * g12 + qx * g20 + qy * g21)
        if qnorm > _F(1e-12):
            dot = qw * gqw + qx * gqx + qy * gqy + qz * gqz
            gqw, gqx, gqy, gqz = gqw - qw * dot, gqx - qx * dot, gqy - qy * dot, gqz - qz * dot
        g_quats[g, 0], g_quats[g, 1] = gqw / qn, gqx / qn
        g_quats[g, 2], g_quats[g, 3] = gqy / qn, gqz / qn
        # rows of J W: a = jx W0 + jxz W2, b = jy W1 + jyz W2
        g_jx = ga0 * W[0, 0] + ga1 * W[0, 1] + ga2 * W[0, 2]
        g_jxz = ga0 * W[2, 0] + ga1 * W[2, 1] + ga2 * W[2, 2]
        g_jy = gb0 * W[1, 0] + gb1 * W[1, 1] + gb2 * W[1, 2]
        g_jyz = gb0 * W[2, 0] + gb1 * W[2, 1] + gb2 * W[2, 2]
        g_jx -= ux * g_jxz
        g_jy -= uy * g_jyz
        g_ux, g_uy = -jx * g_jxz, -jy * g_jyz
        g_z = -(g_jx * jx + g_jy * jy) / z
        g_tx, g_ty = zero, zero
        if -lim_x <= rx <= lim_x:
            g_tx += g_ux / z
            g_z -= g_ux * rx / z
        if -lim_y <= ry <= lim_y:
            g_ty += g_uy / z
            g_z -= g_uy * ry / z
        # means2d = (fx tx / z + cx, fy ty / z + cy)
        inv_z = one / z
        gu, gv = g_means2d[g, 0], g_means2d[g, 1]
        g_tx += gu * fx * inv_z
        g_ty += gv * fy * inv_z
        g_z -= (gu * fx * tx + gv * fy * ty) * inv_z * inv_z
        g_tz = g_depths[g]
        if in_range:
            g_tz += g_z
        # ---- colours: max(SH(d) + 0.5, 0) with d the unit direction from the camera centre
        ux_, uy_, uz_, dnorm, dn = _view_direction(means, g, centre)
        # the clamp passes the gradient where SH + 0.5 >= 0: recomputed, since the clamped
        # output cannot tell a sum of exactly -0.5 (gradient passes) from one below it
        gc = [zero, zero, zero]
        for ch in range(3):
            if _sh_colour(deg, sh_dc, sh_rest, g, ch, ux_, uy_, uz_) + _F(0.5) >= zero:
                gc[ch] = g_colors[g, ch]
        gdx, gdy, gdz = _sh_backward(deg, sh_dc, sh_rest, g_dc, g_rest, g, gc[0], gc[1], gc[2],
                                     ux_, uy_, uz_)
        for j in range(active, n_rest):
            g_rest[g, j, 0], g_rest[g, j, 1], g_rest[g, j, 2] = zero, zero, zero
        if dnorm > _F(1e-12):
            dot = ux_ * gdx + uy_ * gdy + uz_ * gdz
            gdx, gdy, gdz = gdx - ux_ * dot, gdy - uy_ * dot, gdz - uz_ * dot
        gdx, gdy, gdz = gdx / dn, gdy / dn, gdz / dn
        # ---- means: camera space t = W m + trans, and the colour direction m - centre
        g_means[g, 0] = W[0, 0] * g_tx + W[1, 0] * g_ty + W[2, 0] * g_tz + gdx
        g_means[g, 1] = W[0, 1] * g_tx + W[1, 1] * g_ty + W[2, 1] * g_tz + gdy
        g_means[g, 2] = W[0, 2] * g_tx + W[1, 2] * g_ty + W[2, 2] * g_tz + gdz
