"""Linear blend skinning for SMPL-format models: pure functions on batched tensors.

The SMPL model (Loper et al. 2015) poses a body in four steps, numbered as in the paper:

1. shape blend shapes   ``v_shaped = T + S beta``                     (:func:`blend_shapes`)
2. joint regression     ``J = J_regressor v_shaped``                  (:func:`vertices2joints`)
3. pose blend shapes    ``v_posed = v_shaped + P (R(theta) - I)``     (:func:`pose_feature`)
4. kinematic chain + skinning
   ``t'_i = sum_k w_ki G_k(theta, J) (t_i + s_i(beta) + p_i(theta))``
   (:func:`rigid_transforms`, :func:`skin`).

:func:`lbs` takes the same arguments as ``smplx.lbs.lbs`` and returns the same
``(vertices, joints)``; it is faster because it never forms smplx's ``[B, V, 4, 4]`` per-vertex
matrices, regresses joints from a precontracted ``J_regressor @ shapedirs``, and composes the
chain one tree level at a time. :mod:`bodies._reference` holds the straightforward version the
tests compare against.

Layouts (those of the SMPL files and smplx): ``shapedirs [V, 3, S]``, ``posedirs [P, V*3]``
with ``P = 9 (J - 1)`` (row-major ``R - I`` of joints 1..J-1), ``weights [V, J]``,
``parents [J]`` with ``parents[0] = -1``.

References:
    Loper, Mahmood, Romero, Pons-Moll, Black. "SMPL: A Skinned Multi-Person Linear Model",
    SIGGRAPH Asia 2015. doi:10.1145/2816795.2818013.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bodies.rotations import axis_angle_to_matrix

batch_rodrigues = axis_angle_to_matrix  # smplx's name for the same function


def blend_shapes(betas: Tensor, shapedirs: Tensor) -> Tensor:
    """Shape (or any linear) blend shapes ``sum_s beta_s S_s``.

    Args:
        betas: ``[B, S]`` coefficients.
        shapedirs: ``[V, 3, S]`` basis.

    Returns:
        ``[B, V, 3]`` offsets.
    """
    V, _, S = shapedirs.shape
    return F.linear(betas, shapedirs.reshape(V * 3, S)).reshape(betas.shape[0], V, 3)


def vertices2joints(J_regressor: Tensor, vertices: Tensor) -> Tensor:
    """Joints as fixed linear combinations of vertices.

    Args:
        J_regressor: ``[J, V]``.
        vertices: ``[B, V, 3]``.

    Returns:
        ``[B, J, 3]``.
    """
    return torch.einsum("jv,bvc->bjc", J_regressor, vertices)


def pose_feature(rot_mats: Tensor) -> Tensor:
    """The pose-corrective feature ``vec(R_k - I)`` of every joint but the root.

    Args:
        rot_mats: ``[B, J, 3, 3]`` local joint rotations.

    Returns:
        ``[B, 9 (J - 1)]`` (zero in the rest pose).
    """
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).reshape(rot_mats.shape[0], -1)


def rigid_transforms(rot_mats: Tensor, joints: Tensor, parents: Tensor) -> tuple[Tensor, Tensor]:
    """Walk the kinematic chain: world transforms ``G_k`` and skinning transforms ``A_k``.

    ``G_k = G_parent(k) [R_k | J_k - J_parent(k)]`` and ``A_k = G_k [I | -J_k]``, the transform
    that takes a rest-pose point to its posed position when it moves rigidly with joint ``k``.

    Args:
        rot_mats: ``[B, J, 3, 3]`` local rotations.
        joints: ``[B, J, 3]`` rest-pose joint locations.
        parents: ``[J]`` parent indices, ``parents[0] = -1``, each parent before its children.

    Returns:
        ``(posed_joints [B, J, 3], A [B, J, 3, 4])``.
    """
    par = parents.tolist() if isinstance(parents, Tensor) else list(parents)
    rel = joints.clone()
    rel[:, 1:] -= joints[:, par[1:]]
    rel = rel.unsqueeze(-1)  # [B, J, 3, 1]
    Rg, tg = [rot_mats[:, 0]], [rel[:, 0]]
    for k in range(1, len(par)):  # 3x3 and 3x1 products: cheaper than smplx's 4x4 ones
        p = par[k]
        if not 0 <= p < k:
            raise ValueError(f"parents must list each joint after its parent (got {par}).")
        Rg.append(Rg[p] @ rot_mats[:, k])
        tg.append(torch.baddbmm(tg[p], Rg[p], rel[:, k]))
    R = torch.stack(Rg, 1)  # [B, J, 3, 3]
    t = torch.stack(tg, 1)  # [B, J, 3, 1]
    A = torch.cat([R, t - R @ joints.unsqueeze(-1)], dim=-1)
    return t[..., 0], A


def skin(vertices: Tensor, weights: Tensor, A: Tensor, *, chunk: int = 32) -> Tensor:
    """Blend the joint transforms per vertex and apply them: ``v'_i = sum_k w_ik A_k [v_i; 1]``.

    For each chunk of bodies, the blended matrices come from one ``[chunk*12, J] @ [J, V]``
    product laid out with vertices last, and are applied column by column while they are still
    in cache; no ``[B, V, 4, 4]`` tensor is formed (smplx forms one for the whole batch).

    Args:
        vertices: ``[B, V, 3]`` rest-pose vertices (after blend shapes).
        weights: ``[V, J]`` skinning weights (rows sum to 1).
        A: ``[B, J, 3, 4]`` skinning transforms from :func:`rigid_transforms`.
        chunk: bodies per chunk (32: a chunk's ``[32, 12, V]`` matrices take ~10 MB).

    Returns:
        ``[B, V, 3]`` posed vertices.
    """
    B, J = A.shape[:2]
    V = weights.shape[0]
    wt = weights.t()  # [J, V]
    out = torch.empty_like(vertices)
    for i in range(0, B, chunk):
        a = A[i : i + chunk]
        n = a.shape[0]
        T = (a.reshape(n, J, 12).transpose(1, 2).reshape(n * 12, J) @ wt).view(n, 3, 4, V)
        v = vertices[i : i + chunk].transpose(1, 2)[:, None]  # [n, 1, 3, V]
        o = torch.addcmul(T[:, :, 3], T[:, :, 0], v[:, :, 0])
        o.addcmul_(T[:, :, 1], v[:, :, 1])
        o.addcmul_(T[:, :, 2], v[:, :, 2])
        out[i : i + n] = o.transpose(1, 2)
    return out


def lbs(
    betas: Tensor,  # [B, S]
    pose: Tensor,  # [B, J*3] axis-angle, or [B, J, 3, 3] rotation matrices
    v_template: Tensor,  # [V, 3]
    shapedirs: Tensor,  # [V, 3, S]
    posedirs: Tensor,  # [9 (J-1), V*3]
    J_regressor: Tensor,  # [J, V]
    parents: Tensor,  # [J]
    lbs_weights: Tensor,  # [V, J]
    pose2rot: bool = True,
) -> tuple[Tensor, Tensor]:
    """Pose and shape a SMPL-format model (same arguments and results as ``smplx.lbs.lbs``).

    Args:
        betas: ``[B, S]`` shape coefficients.
        pose: ``[B, J*3]`` axis-angle (root first), or ``[B, J, 3, 3]`` with ``pose2rot=False``.
        v_template: ``[V, 3]`` template vertices.
        shapedirs: ``[V, 3, S]`` shape basis.
        posedirs: ``[9 (J - 1), V*3]`` pose-corrective basis.
        J_regressor: ``[J, V]`` joint regressor.
        parents: ``[J]`` kinematic tree.
        lbs_weights: ``[V, J]`` skinning weights.
        pose2rot: whether ``pose`` is axis-angle (True) or rotation matrices.

    Returns:
        ``(vertices [B, V, 3], joints [B, J, 3])``, both without global translation.
    """
    B = max(betas.shape[0], pose.shape[0])
    V = v_template.shape[0]
    J = J_regressor.shape[0]
    S = betas.shape[1]
    if betas.shape[0] != B:
        betas = betas.expand(B, -1)
    # 1. Shape blend shapes, 2. joints: J(beta) = J_regressor T + (J_regressor S) beta
    sd = shapedirs[..., :S].reshape(V * 3, S)
    v_shaped = F.linear(betas, sd, v_template.reshape(-1))  # [B, V*3]
    j_template = J_regressor @ v_template  # [J, 3]
    j_dirs = (J_regressor @ shapedirs[..., :S].reshape(V, 3 * S)).reshape(J * 3, S)
    joints = F.linear(betas, j_dirs, j_template.reshape(-1)).reshape(B, J, 3)
    # 3. Pose blend shapes
    rot_mats = (
        axis_angle_to_matrix(pose.reshape(B, -1, 3)) if pose2rot else pose.reshape(B, -1, 3, 3)
    )
    v_posed = torch.addmm(v_shaped, pose_feature(rot_mats), posedirs).reshape(B, V, 3)
    # 4. Kinematic chain and skinning
    posed_joints, A = rigid_transforms(rot_mats, joints, parents)
    return skin(v_posed, lbs_weights, A), posed_joints
