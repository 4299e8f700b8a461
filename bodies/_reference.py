"""Straightforward reference implementations that the fast paths are tested against.

Written for clarity, not speed: the kinematic chain joint by joint with 4x4 matrices, and
skinning with one blended 4x4 matrix per vertex, as in the SMPL paper (eqs. 2-4).
"""

from __future__ import annotations

import torch
from torch import Tensor


def rodrigues_reference(r: Tensor) -> Tensor:
    """Rodrigues' formula with the axis normalised (``[N, 3] -> [N, 3, 3]``); not safe at 0."""
    angle = r.norm(dim=-1, keepdim=True)
    k = r / angle
    K = torch.zeros(r.shape[0], 3, 3, dtype=r.dtype, device=r.device)
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    K = K - K.transpose(1, 2)
    s, c = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    return torch.eye(3, dtype=r.dtype, device=r.device) + s * K + (1 - c) * K @ K


def lbs_reference(
    betas: Tensor,
    pose: Tensor,
    v_template: Tensor,
    shapedirs: Tensor,
    posedirs: Tensor,
    J_regressor: Tensor,
    parents: Tensor,
    lbs_weights: Tensor,
) -> tuple[Tensor, Tensor]:
    """SMPL forward pass, one joint and one vertex matrix at a time (see :func:`bodies.lbs.lbs`).

    Args:
        betas: ``[B, S]``.
        pose: ``[B, J*3]`` axis-angle.
        v_template: ``[V, 3]``.
        shapedirs: ``[V, 3, S]``.
        posedirs: ``[9 (J - 1), V*3]``.
        J_regressor: ``[J, V]``.
        parents: ``[J]``.
        lbs_weights: ``[V, J]``.

    Returns:
        ``(vertices [B, V, 3], joints [B, J, 3])``.
    """
    B, J = pose.shape[0], J_regressor.shape[0]
    eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
    v_shaped = v_template + torch.einsum("bs,vcs->bvc", betas, shapedirs[..., : betas.shape[1]])
    joints = torch.einsum("jv,bvc->bjc", J_regressor, v_shaped)
    aa = pose.reshape(B * J, 3)
    safe = aa.norm(dim=-1, keepdim=True) > 0
    R = torch.where(
        safe[..., None], rodrigues_reference(torch.where(safe, aa, torch.ones_like(aa))), eye
    ).reshape(B, J, 3, 3)
    v_posed = v_shaped + ((R[:, 1:] - eye).reshape(B, -1) @ posedirs).reshape(B, -1, 3)
    G = []
    for k in range(J):
        local = torch.zeros(B, 4, 4, dtype=pose.dtype, device=pose.device)
        local[:, :3, :3] = R[:, k]
        local[:, :3, 3] = joints[:, k] - (joints[:, int(parents[k])] if k > 0 else 0)
        local[:, 3, 3] = 1
        G.append(local if k == 0 else G[int(parents[k])] @ local)
    Gs = torch.stack(G, 1)  # [B, J, 4, 4]
    posed_joints = Gs[:, :, :3, 3]
    unrest = torch.eye(4, dtype=pose.dtype, device=pose.device).repeat(B, J, 1, 1)
    unrest[:, :, :3, 3] = -joints
    A = Gs @ unrest
    T = torch.einsum("vk,bkij->bvij", lbs_weights, A)  # one 4x4 per vertex
    vh = torch.cat([v_posed, torch.ones_like(v_posed[..., :1])], -1)
    verts = (T @ vh[..., None])[..., :3, 0]
    return verts, posed_joints
