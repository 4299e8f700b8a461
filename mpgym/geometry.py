"""Geometry on point sets that several packages share: nearest neighbours and rigid alignment.

Conventions: NumPy point sets are ``(N, 3)`` float arrays, tensors are batched ``[B, N, 3]``;
distances are Euclidean and unsquared unless a name says ``sq``. Nearest neighbours come from
scipy's ``cKDTree`` (``O(N log M)``) or, for tensors, optionally from brute force
(``torch.cdist``, ``O(N M)`` memory and time), which the KD-tree path is tested against.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor


def nearest(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point of ``src (N, 3)`` its nearest point in ``dst (M, 3)`` (KD-tree).

    Returns:
        ``(distances (N,), indices (N,))``, unsquared Euclidean distances.

    Example:
        >>> nearest(np.zeros((1, 3)), np.array([[0.0, 0.0, 3.0], [0.0, 1.0, 0.0]]))
        (array([1.]), array([1]))
    """
    from scipy.spatial import cKDTree

    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    if len(src) == 0 or len(dst) == 0:
        raise ValueError("nearest() needs two non-empty point sets")
    d, i = cKDTree(dst).query(src, k=1, workers=-1)
    return d, i


def nearest_sq_distances(
    a: Tensor,
    b: Tensor,
    *,
    method: Literal["kdtree", "brute"] = "kdtree",
    a_trees: list | None = None,
) -> tuple[Tensor, Tensor]:
    """Squared distance from each point to the nearest point of the other set, both ways.

    The two terms of a Chamfer distance. Differentiable in both sets: the neighbours are chosen
    without gradient, the squared distances to them carry it (as a brute-force minimum does).

    - ``"kdtree"``: a ``cKDTree`` over each body of ``b`` per call, and one over each of ``a``
      unless ``a_trees`` passes them in (build them once when ``a`` is fixed, e.g. a scan);
      ``O((N + M) log)`` per body.
    - ``"brute"``: ``torch.cdist`` over all pairs (``[B, N, M]`` memory), on any device.

    Args:
        a: ``[B, N, 3]`` points.
        b: ``[B, M, 3]`` points.
        method: ``"kdtree"`` or ``"brute"``.
        a_trees: for ``"kdtree"``, a ``cKDTree`` per body of ``a`` (built here when None).

    Returns:
        ``(a_to_b [B, N], b_to_a [B, M])`` squared distances.

    Example:
        >>> a = torch.zeros(1, 1, 3)
        >>> b = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]]])
        >>> nearest_sq_distances(a, b)
        (tensor([[1.]]), tensor([[1., 9.]]))
    """
    if method == "brute":
        d = torch.cdist(a, b)  # [B, N, M]
        return d.min(2).values ** 2, d.min(1).values ** 2
    if method != "kdtree":
        raise ValueError(f"unknown method {method!r}; accepted: 'kdtree', 'brute'.")
    from scipy.spatial import cKDTree

    an = a.detach().cpu().numpy()
    bn = b.detach().cpu().numpy()
    trees = a_trees if a_trees is not None else [cKDTree(x) for x in an]
    i_ab = np.stack([cKDTree(bn[k]).query(an[k])[1] for k in range(len(an))])  # [B, N]
    i_ba = np.stack([trees[k].query(bn[k])[1] for k in range(len(bn))])  # [B, M]
    i_ab = torch.as_tensor(i_ab, device=a.device)
    i_ba = torch.as_tensor(i_ba, device=a.device)
    near_b = torch.gather(b, 1, i_ab[..., None].expand(-1, -1, 3))
    near_a = torch.gather(a, 1, i_ba[..., None].expand(-1, -1, 3))
    return (a - near_b).pow(2).sum(-1), (b - near_a).pow(2).sum(-1)


def similarity_transform(
    src: Tensor, dst: Tensor, weights: Tensor | None = None, *, scale: bool = True
) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted least-squares ``dst ~ s R src + t`` (Umeyama; Kabsch without the scale).

    ``H = sum_i w_i (src_i - mu_src)(dst_i - mu_dst)^T = U S V^T``, ``R = V D U^T`` with
    ``D = diag(1, 1, sign det(V U^T))`` (a reflection is never used),
    ``s = tr(S D) / sum_i w_i |src_i - mu_src|^2``, ``t = mu_dst - s R mu_src``.

    Args:
        src: ``[B, N, 3]`` points.
        dst: ``[B, N, 3]`` corresponding points.
        weights: ``[B, N]`` non-negative weights (default 1); zero leaves a point out.
        scale: fit the scale ``s`` (Umeyama); False keeps ``s = 1`` (Kabsch).

    Returns:
        ``(s [B], R [B, 3, 3], t [B, 3])``.

    References:
        Umeyama. "Least-squares estimation of transformation parameters between two point
        patterns", IEEE TPAMI 13(4), 1991. doi:10.1109/34.88573.
    """
    w = torch.ones_like(src[..., :1]) if weights is None else weights[..., None].to(src.dtype)
    mu_s = (w * src).sum(1) / w.sum(1)  # [B, 3]
    mu_d = (w * dst).sum(1) / w.sum(1)
    s_c, d_c = src - mu_s[:, None], dst - mu_d[:, None]
    U, S, Vh = torch.linalg.svd((s_c * w).transpose(1, 2) @ d_c)  # [B, 3, 3]
    d = torch.sign(torch.linalg.det(U @ Vh))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    R = Vh.transpose(1, 2) @ D @ U.transpose(1, 2)
    if scale:
        s = (S * D.diagonal(dim1=-2, dim2=-1)).sum(-1) / (w * s_c * s_c).sum((1, 2))
    else:
        s = torch.ones_like(d)
    t = mu_d - s[:, None] * (R @ mu_s[..., None])[..., 0]
    return s, R, t
