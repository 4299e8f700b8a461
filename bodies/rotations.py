"""Rotation conversions on batched tensors (pure functions, any leading batch shape ``...``).

Conventions: axis-angle vectors ``r`` with angle ``|r|`` (right-hand rule); rotation matrices
act on column vectors (``x' = R x``); quaternions are ``(w, x, y, z)``; the 6D representation of
Zhou et al. (CVPR 2019) is the first two *rows* of ``R`` flattened (as PyTorch3D does).

References:
    Zhou, Barnes, Lu, Yang, Li. "On the Continuity of Rotation Representations in Neural
    Networks", CVPR 2019. arXiv:1812.07035.
"""

from __future__ import annotations

import torch
from torch import Tensor

_SMALL = 1e-6  # below this squared angle the Taylor series is exact to float64 precision


def skew(v: Tensor) -> Tensor:
    """Cross-product matrix ``[v]_x`` with ``[v]_x u = v x u``.

    Args:
        v: ``[..., 3]``.

    Returns:
        ``[..., 3, 3]``.
    """
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(r: Tensor) -> Tensor:
    """Rodrigues' formula ``R = I + sin(t)/t [r]_x + (1 - cos t)/t^2 [r]_x^2``, ``t = |r|``.

    Numerically safe at zero angle: below ``t^2 = 1e-6`` the coefficients come from their Taylor
    series, so values and gradients stay finite (the gradient at ``r = 0`` is ``[.]_x``).
    Example: ``axis_angle_to_matrix(tensor([0, 0, pi/2]))`` maps x to y.

    Args:
        r: ``[..., 3]`` axis-angle vectors.

    Returns:
        ``[..., 3, 3]`` rotation matrices.
    """
    t2 = (r * r).sum(-1, keepdim=True)[..., None]  # [..., 1, 1]
    small = t2 < _SMALL
    t2_safe = torch.where(small, torch.ones_like(t2), t2)
    t = t2_safe.sqrt()
    a = torch.where(small, 1.0 - t2 / 6.0, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24.0, (1.0 - torch.cos(t)) / t2_safe)
    k = skew(r)
    eye = torch.eye(3, dtype=r.dtype, device=r.device)
    return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    """Inverse of :func:`axis_angle_to_matrix` (angle in ``[0, pi]``), via quaternions.

    Args:
        R: ``[..., 3, 3]`` rotation matrices.

    Returns:
        ``[..., 3]`` axis-angle vectors.
    """
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Unit quaternion ``(w, x, y, z)`` to rotation matrix (``q`` is normalised first).

    Args:
        q: ``[..., 4]``.

    Returns:
        ``[..., 3, 3]``.
    """
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    m = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    ]
    return torch.stack(m, dim=-1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(R: Tensor) -> Tensor:
    """Rotation matrix to unit quaternion ``(w, x, y, z)`` with ``w >= 0``.

    Uses the numerically best of the four candidate formulas per matrix (Shepperd's method).

    Args:
        R: ``[..., 3, 3]``.

    Returns:
        ``[..., 4]``.
    """
    m = R
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = torch.stack(
        [
            torch.stack(
                [
                    1 + tr,
                    m[..., 2, 1] - m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] - m[..., 0, 1],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 2, 1] - m[..., 1, 2],
                    1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                    m[..., 0, 1] + m[..., 1, 0],
                    m[..., 0, 2] + m[..., 2, 0],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 0, 1] + m[..., 1, 0],
                    1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
                    m[..., 1, 2] + m[..., 2, 1],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 1, 0] - m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 1, 2] + m[..., 2, 1],
                    1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2],
                ],
                -1,
            ),
        ],
        dim=-2,
    )  # [..., 4, 4]; candidate i has component i equal to 4 q_i^2 (up to scale)
    diag = torch.stack(
        [
            1 + tr,
            1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
            1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
            1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2],
        ],
        -1,
    )
    best = diag.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_axis_angle(q: Tensor) -> Tensor:
    """Unit quaternion ``(w, x, y, z)`` to axis-angle, angle in ``[0, pi]``.

    Args:
        q: ``[..., 4]``.

    Returns:
        ``[..., 3]``.
    """
    q = torch.where(q[..., :1] < 0, -q, q)
    v = q[..., 1:]
    s = v.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(s, q[..., :1])
    small = s < 1e-7
    scale = torch.where(
        small, 2.0 / q[..., :1].clamp_min(1e-12), angle / torch.where(small, 1.0, s)
    )
    return v * scale


def rot6d_to_matrix(d6: Tensor) -> Tensor:
    """6D representation (first two rows) to a rotation matrix by Gram-Schmidt.

    Args:
        d6: ``[..., 6]``.

    Returns:
        ``[..., 3, 3]`` with rows ``b1, b2, b1 x b2``.
    """
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-2)


def matrix_to_rot6d(R: Tensor) -> Tensor:
    """Rotation matrix to the 6D representation (its first two rows).

    Args:
        R: ``[..., 3, 3]``.

    Returns:
        ``[..., 6]``.
    """
    return R[..., :2, :].reshape(*R.shape[:-2], 6)
