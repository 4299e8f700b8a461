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
matrices (skinning blends ``3 x 4`` transforms a few bodies at a time, in cache), produces the
blend shapes of a chunk of bodies and skins them while they are still in cache (only the output
is written to memory), regresses joints through ``J_regressor @ shapedirs`` when that is cheaper
(or a basis the caller caches, as :class:`bodies.BodyModel` does), and calls ``bmm`` directly
along the chain. :mod:`bodies._reference` holds the straightforward version the tests compare
against.

Layouts (those of the SMPL files and smplx): ``shapedirs [V, 3, S]``, ``posedirs [P, V*3]``
with ``P = 9 (J - 1)`` (row-major ``R - I`` of joints 1..J-1), ``weights [V, J]``,
``parents [J]`` with ``parents[0] = -1``.

References:
    Loper, Mahmood, Romero, Pons-Moll, Black. "SMPL: A Skinned Multi-Person Linear Model",
    SIGGRAPH Asia 2015. doi:10.1145/2816795.2818013.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from functools import lru_cache
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bodies.rotations import axis_angle_to_matrix
from mpgym.optional import optional_module

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
        Rg.append(torch.bmm(Rg[p], rot_mats[:, k]))  # bmm itself: matmul's wrapper costs more
        tg.append(torch.baddbmm(tg[p], Rg[p], rel[:, k]))
    R = torch.stack(Rg, 1)  # [B, J, 3, 3]
    t = torch.stack(tg, 1)  # [B, J, 3, 1]
    A = torch.cat([R, t - R @ joints.unsqueeze(-1)], dim=-1)
    return t[..., 0], A


def _skin_chunk(v: Tensor, wt: Tensor, A: Tensor) -> Tensor:
    """:func:`skin` for one chunk of bodies: ``[n, V, 3]``, ``[J, V]``, ``[n, J, 3, 4]``."""
    n, J = A.shape[:2]
    V = wt.shape[1]
    # blended transforms with vertices last: [n*12, J] @ [J, V] -> [n, 3, 4, V]
    T = (A.reshape(n, J, 12).transpose(1, 2).reshape(n * 12, J) @ wt).view(n, 3, 4, V)
    vt = v.transpose(1, 2)[:, None]  # [n, 1, 3, V]
    o = torch.addcmul(T[:, :, 3], T[:, :, 0], vt[:, :, 0])
    o.addcmul_(T[:, :, 1], vt[:, :, 1])
    o.addcmul_(T[:, :, 2], vt[:, :, 2])
    return o.transpose(1, 2)  # [n, V, 3]


SKIN_CHUNK = 8
"""Bodies per skinning chunk: their ``[8, 12, V]`` blended transforms (~2.6 MB) stay in a core's
cache; measured faster than 4, 16 or 32 at batch 1024."""


def skin(vertices: Tensor, weights: Tensor, A: Tensor, *, chunk: int = SKIN_CHUNK) -> Tensor:
    """Blend the joint transforms per vertex and apply them: ``v'_i = sum_k w_ik A_k [v_i; 1]``.

    For each chunk of bodies, the blended matrices come from one ``[chunk*12, J] @ [J, V]``
    product laid out with vertices last, and are applied column by column while they are still
    in cache; no ``[B, V, 4, 4]`` tensor is formed (smplx forms one for the whole batch).

    Args:
        vertices: ``[B, V, 3]`` rest-pose vertices (after blend shapes).
        weights: ``[V, J]`` skinning weights (rows sum to 1).
        A: ``[B, J, 3, 4]`` skinning transforms from :func:`rigid_transforms`.
        chunk: bodies per chunk (see :data:`SKIN_CHUNK`).

    Returns:
        ``[B, V, 3]`` posed vertices.
    """
    B = A.shape[0]
    wt = weights.t()  # [J, V]
    if B <= chunk:
        return _skin_chunk(vertices, wt, A)
    out = torch.empty_like(vertices)
    for i in range(0, B, chunk):
        out[i : i + chunk] = _skin_chunk(vertices[i : i + chunk], wt, A[i : i + chunk])
    return out


def joint_shape_basis(J_regressor: Tensor, v_template: Tensor, shapedirs: Tensor) -> Tensor:
    """Joints as an affine function of the betas, precontracted once per model.

    ``J(beta) = J_regressor (T + S beta) = [J_regressor T] + [J_regressor S] beta``.

    Args:
        J_regressor: ``[J, V]``.
        v_template: ``[V, 3]``.
        shapedirs: ``[V, 3, S]``.

    Returns:
        ``[J * 3, S + 1]``: the shape directions of the joints, then the template joints as the
        last column (``joints = basis[:, :S] @ beta + basis[:, S]``).
    """
    V, _, S = shapedirs.shape
    jd = (J_regressor @ shapedirs.reshape(V, 3 * S)).reshape(-1, S)
    return torch.cat([jd, (J_regressor @ v_template).reshape(-1, 1)], 1)


def _numba_kernel():
    """The compiled kernels (:mod:`bodies._skin_numba`); None without numba."""
    return optional_module("bodies._skin_numba")


def _compiled_path_applies(*tensors: Tensor) -> bool:
    """Whether the compiled path serves: CPU float32/float64 inputs, none needing a gradient."""
    dtype = tensors[0].dtype
    return (
        dtype in (torch.float32, torch.float64)
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
        and all(t.device.type == "cpu" and t.dtype == dtype for t in tensors)
        and _numba_kernel() is not None
    )


@lru_cache(maxsize=1)
def _blas_controller():
    """Numpy's BLAS as threadpoolctl sees it (None when threadpoolctl is missing)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController().select(user_api="blas")


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _pool(n: int) -> ThreadPoolExecutor:
    """``n`` worker threads, one pool per process (a forked child makes its own)."""
    key = (os.getpid(), n)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(n, thread_name_prefix="mpgym-lbs")
    return _POOLS[key]


class _Arrays(NamedTuple):
    """A model's arrays as :func:`lbs` takes them (layouts: module docstring)."""

    v_template: Tensor  # [V, 3]
    shapedirs: Tensor  # [V, 3, S]
    posedirs: Tensor  # [9 (J-1), V*3]
    J_regressor: Tensor  # [J, V]
    parents: Tensor  # [J]
    lbs_weights: Tensor  # [V, J]


def _lbs_compiled(
    betas: Tensor,
    rot_mats: Tensor,
    feat: Tensor,
    joints: Tensor,
    m: _Arrays,
    wt: np.ndarray,
    chunk: int,
) -> tuple[Tensor, Tensor]:
    """Steps 1, 3 and 4 without autograd; returns ``(vertices, posed_joints)``.

    Blend shapes by numpy's BLAS; kinematic chain and skinning by numba kernels; ``wt`` is the
    skinning weights joint-major, ``[J, V]`` contiguous (:func:`joint_major_weights`).

    numpy's BLAS, not torch's: the pose-corrective product ``[B, 207] @ [207, 20670]`` is most of
    the arithmetic, and torch's CPU wheels multiply through MKL, which on AMD processors took
    2.4x as long as numpy's OpenBLAS here (156 vs 65 ms at batch 1024).
    """
    k = _numba_kernel()
    B, J = rot_mats.shape[:2]
    V = m.v_template.shape[0]
    par = m.parents.tolist() if isinstance(m.parents, Tensor) else list(m.parents)
    if par[0] != -1 or any(not 0 <= p < i for i, p in enumerate(par[1:], 1)):
        raise ValueError(f"parents must list each joint after its parent (got {par}).")
    posed = torch.empty(B, J, 3, dtype=m.v_template.dtype)
    A12 = np.empty((B, J, 12), dtype=posed.numpy().dtype)
    k.chain(
        rot_mats.contiguous().numpy(),
        joints.contiguous().numpy(),
        np.asarray(par, dtype=np.int64),
        posed.numpy(),
        A12,
    )
    out = torch.empty(B, V, 3, dtype=m.v_template.dtype)
    if B == 1:
        _blend_and_skin_one(betas, feat, m, wt, A12, out)
    else:
        _blend_and_skin_chunks(betas, feat, m, wt, A12, out, chunk)
    return out, posed


def _blend_and_skin_one(
    betas: Tensor, feat: Tensor, m: _Arrays, wt: np.ndarray, A12: np.ndarray, out: Tensor
) -> None:
    """One body into ``out [1, V, 3]``: blend shapes by torch, then the skinning kernel.

    Torch's matrix-vector product reads ``posedirs`` (17 MB) on all threads.
    """
    V, S = m.v_template.shape[0], betas.shape[1]
    sd = m.shapedirs[..., :S].reshape(V * 3, S)
    v = torch.addmm(F.linear(betas, sd, m.v_template.reshape(-1)), feat, m.posedirs)
    _numba_kernel().skin(v.numpy().reshape(1, V, 3), wt, A12, out.numpy())


def _blend_and_skin_chunks(
    betas: Tensor,
    feat: Tensor,
    m: _Arrays,
    wt: np.ndarray,
    A12: np.ndarray,
    out: Tensor,
    chunk: int,
) -> None:
    """Blend shapes (numpy's BLAS) and skinning (numba) of chunks of bodies into ``out``.

    Each of torch's ``get_num_threads()`` worker threads takes whole chunks of bodies: it blends
    a chunk into its own buffer, still in cache when the (serial, GIL-free) skinning kernel reads
    it. BLAS runs single-threaded inside. Parallel over chunks rather than inside each call
    because two thread pools that take turns (OpenBLAS's and numba's OpenMP workers, which
    spin-wait after each call) stalled each other: 4 ms per switch at batch 1, where the whole
    computation takes 0.5 ms.
    """
    k = _numba_kernel()
    B, V, S = betas.shape[0], m.v_template.shape[0], betas.shape[1]
    sd_t = m.shapedirs[..., :S].reshape(V * 3, S).numpy().T  # [S, V*3] view
    vt = m.v_template.reshape(-1).numpy()
    pd = m.posedirs.numpy()
    b_np, f_np, o_np = betas.numpy(), feat.numpy(), out.numpy()
    n_threads = torch.get_num_threads()
    step = max(1, min(chunk, -(-B // n_threads)))

    def blend_and_skin(i: int) -> None:
        e = min(i + step, B)
        v = np.matmul(f_np[i:e], pd)  # 3. pose blend shapes
        v += b_np[i:e] @ sd_t  # 1. shape blend shapes
        v += vt
        k.skin(v.reshape(-1, V, 3), wt, A12[i:e], o_np[i:e])  # 4. skinning

    blas = _blas_controller()
    with blas.limit(limits=1) if blas is not None else nullcontext():
        if n_threads == 1 or step >= B:
            for i in range(0, B, step):
                blend_and_skin(i)
        else:
            list(_pool(n_threads).map(blend_and_skin, range(0, B, step)))


def joint_major_weights(lbs_weights: Tensor) -> Tensor:
    """``lbs_weights.t()`` as a contiguous ``[J, V]`` tensor: the layout the skinning kernel reads.

    Copying it takes 0.2 ms, a tenth of a whole batch-1 pose, so a caller that poses the same
    model again and again keeps it and passes it to :func:`lbs` (``joint_major=``), as
    :class:`bodies.BodyModel` does.
    """
    return lbs_weights.t().contiguous()


def _resolve_backend(
    backend: Literal["auto", "compiled", "torch"], tensors: tuple[Tensor, ...]
) -> Literal["compiled", "torch"]:
    """The backend that serves ``tensors``; ValueError for one that cannot or an unknown name."""
    if backend == "auto":
        return "compiled" if _compiled_path_applies(*tensors) else "torch"
    if backend == "compiled" and not _compiled_path_applies(*tensors):
        raise ValueError(
            "backend 'compiled' needs numba and CPU float32/float64 inputs that need no gradient "
            "(or torch.no_grad()); accepted otherwise: 'auto', 'torch'."
        )
    if backend not in ("compiled", "torch"):
        raise ValueError(f"unknown backend {backend!r}; accepted: 'auto', 'compiled', 'torch'.")
    return backend


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
    *,
    joint_basis: Tensor | None = None,  # [J*3, S+1] from joint_shape_basis
    joint_major: Tensor | None = None,  # [J, V] from joint_major_weights
    chunk: int | None = None,
    backend: Literal["auto", "compiled", "torch"] = "auto",
) -> tuple[Tensor, Tensor]:
    """Pose and shape a SMPL-format model (same arguments and results as ``smplx.lbs.lbs``).

    Two backends compute the same result:

    - ``"compiled"`` (the default when no gradient is needed, on CPU float32/float64 with numba
      installed): blend shapes through numpy's BLAS and skinning by a numba kernel
      (:mod:`bodies._skin_numba`), a chunk of bodies at a time on each of torch's threads;
    - ``"torch"`` (differentiable, any device): bodies go through steps 1, 3 and 4 in chunks,
      the shape and pose blend shapes of a chunk (``[chunk, V*3]``, ~5 MB) skinned while still
      in cache, so no ``[B, V, 3]`` intermediate is written to memory (only the output).

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
        joint_basis: the model's :func:`joint_shape_basis` when the caller caches it (as
            :class:`bodies.BodyModel` does); otherwise joints are regressed from the shaped
            vertices for small batches and through the precontracted basis for large ones,
            whichever takes fewer multiplications.
        joint_major: the model's :func:`joint_major_weights` when the caller caches it (as
            :class:`bodies.BodyModel` does); the compiled backend copies the weights into that
            layout otherwise.
        chunk: bodies per chunk of blend shapes and skinning (default 128 compiled, 64 torch).
        backend: ``"auto"``, ``"compiled"`` or ``"torch"`` (see above).

    Returns:
        ``(vertices [B, V, 3], joints [B, J, 3])``, both without global translation.
    """
    B = max(betas.shape[0], pose.shape[0])
    if betas.shape[0] != B:
        betas = betas.expand(B, -1)
    tensors = (betas, pose, v_template, shapedirs, posedirs, J_regressor, lbs_weights)
    backend = _resolve_backend(backend, tensors)
    rot_mats = (
        axis_angle_to_matrix(pose.reshape(B, -1, 3)) if pose2rot else pose.reshape(B, -1, 3, 3)
    )
    feat = pose_feature(rot_mats)  # [B, 9 (J-1)]
    m = _Arrays(v_template, shapedirs, posedirs, J_regressor, parents, lbs_weights)
    if backend == "compiled":
        # 2. Joint regression, then 1., 3. and 4. in the kernels
        joints = _rest_joints(betas, v_template, shapedirs, J_regressor, joint_basis)
        wt = joint_major_weights(lbs_weights) if joint_major is None else joint_major
        return _lbs_compiled(
            betas.contiguous(), rot_mats, feat, joints, m, wt.numpy(), chunk or 128
        )
    if B <= (chunk or 64):
        return _lbs_torch_whole(betas, rot_mats, feat, m, joint_basis)
    return _lbs_torch_chunked(betas, rot_mats, feat, m, joint_basis, chunk or 64)


def _lbs_torch_whole(
    betas: Tensor, rot_mats: Tensor, feat: Tensor, m: _Arrays, joint_basis: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The torch backend for one chunk of bodies (the batch-1 path), step by step."""
    B, S = betas.shape
    V = m.v_template.shape[0]
    # 1. Shape blend shapes
    v_shaped = F.linear(betas, m.shapedirs[..., :S].reshape(V * 3, S), m.v_template.reshape(-1))
    # 2. Joint regression
    joints = _rest_joints(betas, m.v_template, m.shapedirs, m.J_regressor, joint_basis, v_shaped)
    # 3. Pose blend shapes
    v_posed = torch.addmm(v_shaped, feat, m.posedirs).view(B, V, 3)
    # 4. Kinematic chain and skinning
    posed_joints, A = rigid_transforms(rot_mats, joints, m.parents)
    return skin(v_posed, m.lbs_weights, A), posed_joints


def _lbs_torch_chunked(
    betas: Tensor,
    rot_mats: Tensor,
    feat: Tensor,
    m: _Arrays,
    joint_basis: Tensor | None,
    chunk: int,
) -> tuple[Tensor, Tensor]:
    """The torch backend for many bodies: blend shapes and skinning a chunk at a time."""
    B, S = betas.shape
    V = m.v_template.shape[0]
    sd, vt = m.shapedirs[..., :S].reshape(V * 3, S), m.v_template.reshape(-1)
    # 2. Joints through the precontracted basis (cheaper than regressing B shaped meshes)
    joints = _rest_joints(betas, m.v_template, m.shapedirs, m.J_regressor, joint_basis)
    # 4a. Kinematic chain
    posed_joints, A = rigid_transforms(rot_mats, joints, m.parents)
    out = torch.empty(B, V, 3, dtype=m.v_template.dtype, device=m.v_template.device)
    wt = m.lbs_weights.t()
    for i in range(0, B, chunk):
        # 1. + 3. shape and pose blend shapes of the chunk, in place
        v_posed = F.linear(betas[i : i + chunk], sd, vt)
        v_posed = v_posed.addmm_(feat[i : i + chunk], m.posedirs).view(-1, V, 3)
        # 4b. skinning, in sub-chunks whose blended transforms stay in cache (see skin)
        n = len(v_posed)
        for k in range(0, n, SKIN_CHUNK):
            e = min(k + SKIN_CHUNK, n)
            out[i + k : i + e] = _skin_chunk(v_posed[k:e], wt, A[i + k : i + e])
    return out, posed_joints


def _rest_joints(betas, v_template, shapedirs, J_regressor, joint_basis, v_shaped=None):
    """Step 2, the rest-pose joints ``[B, J, 3]``.

    Through the joint basis when given, or for ``B >= S`` (where it takes fewer
    multiplications); else regressed from the shaped vertices.
    """
    B, S = betas.shape
    V, J = v_template.shape[0], J_regressor.shape[0]
    if joint_basis is not None or B >= S:
        jb = (
            joint_basis
            if joint_basis is not None
            else joint_shape_basis(J_regressor, v_template, shapedirs[..., :S])
        )
        return F.linear(betas, jb[:, :S], jb[:, S]).reshape(B, J, 3)
    if v_shaped is None:
        v_shaped = F.linear(betas, shapedirs[..., :S].reshape(V * 3, S), v_template.reshape(-1))
    if B == 1:  # three matrix-vector products: measured 2.6x faster than [J,V] @ [V,3]
        v = v_shaped.view(V, 3)
        return torch.stack([torch.mv(J_regressor, v[:, c]) for c in range(3)], -1)[None]
    return J_regressor @ v_shaped.view(B, V, 3)
