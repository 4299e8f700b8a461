"""The PointFlow protocol for scoring sets of generated shapes against a reference set.

Yang et al. 2019 (PointFlow, ICCV) fixed the protocol most shape-generation papers report:
every shape becomes a cloud of 2,048 surface points; clouds are compared pairwise by Chamfer
distance (CD) and Earth mover's distance (EMD); a generated set ``S`` is scored against a
reference set ``R`` (the held-out test shapes) by

- **MMD** (minimum matching distance, lower is better): for every reference cloud the distance
  to its nearest generated cloud, averaged over ``R`` -- fidelity;
- **COV** (coverage, higher is better): the share of reference clouds that are the nearest
  reference of at least one generated cloud -- diversity;
- **1-NNA** (leave-one-out 1-nearest-neighbour accuracy, 0.5 is ideal): pool ``S`` and ``R``,
  classify each cloud by the set of its nearest other cloud; 0.5 means the sets cannot be told
  apart, 1.0 that they are disjoint (or that ``S`` copies ``R``'s shapes elsewhere than ``R``).

Conventions, as in PointFlow's ``metrics/evaluation_metrics.py``:

- ``CD(X, Y) = mean_x min_y |x - y|^2 + mean_y min_x |x - y|^2`` -- *squared* distances, the
  sum of the two means (not halved);
- ``EMD(X, Y) = min over bijections phi of mean_x |x - phi(x)|`` -- *unsquared* distances,
  the mean over the matched pairs, on clouds of equal size (PointFlow uses an approximate CUDA
  matcher; :func:`emd` solves the assignment exactly with
  ``scipy.optimize.linear_sum_assignment``);
- MMD, COV and 1-NNA from the ``(|S|, |R|)`` distance matrix exactly as ``lgan_mmd_cov`` and
  ``knn(k=1)`` compute them.

Normalisation: PointFlow computes the metrics in the dataset's frame (its generated clouds are
de-normalised with the dataset's global mean and standard deviation first). Later work (PVD,
LION) normalises every cloud to its own bounding box, so that a generator is not rewarded or
punished for the position and scale of its shapes. :func:`normalize_clouds` offers both:
``"none"`` (the frame the clouds are in -- for an mpgym collection that is already the unit
cube, see :mod:`neural3d.data.collections`) and ``"box"`` (each cloud's bounding box centred
and its longest side scaled to 1, the collection's own convention; LION's ``[-1, 1]`` box has
side 2, which multiplies CD by 4 and EMD by 2).

Cost: exact EMD on 2,048 points takes about 2 s per pair on one CPU core (Hungarian
algorithm, ``O(n^3)``), far too slow for the ``|S| |R| + |S|^2 + |R|^2`` pairs a set metric
needs. :func:`pairwise_emd` therefore takes ``points``: each cloud is subsampled (without
replacement, by a seeded generator) to that many points and the assignment is solved exactly
on the subsample -- the documented approximate fast path (256 points: ~3 ms a pair). CD on
the CPU uses KD-trees (``scipy.spatial.cKDTree``, ~3 ms a pair at 2,048 points), with a
batched-matmul torch path for GPUs; both are tested against the brute-force definition.

References:
    Yang, Huang, Hao, Liu, Belongie, Hariharan. "PointFlow: 3D Point Cloud Generation with
    Continuous Normalizing Flows." ICCV 2019. arXiv:1906.12320.
    Achlioptas, Diamanti, Mitliagkas, Guibas. "Learning Representations and Generative Models
    for 3D Point Clouds." ICML 2018 (MMD and COV). arXiv:1707.02392.
    Lopez-Paz, Oquab. "Revisiting Classifier Two-Sample Tests." ICLR 2017 (1-NNA).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mpgym.errors import MpgymError

log = logging.getLogger(__name__)

N_POINTS = 2048
"""Points per shape in the PointFlow protocol."""

Normalize = Literal["none", "box"]
ChamferBackend = Literal["kdtree", "torch"]


# ----------------------------------------------------------------------------------------------
# clouds
# ----------------------------------------------------------------------------------------------


def _check_clouds(name: str, clouds: np.ndarray) -> np.ndarray:
    """``clouds`` as float64 ``(K, N, 3)``; one clear error otherwise."""
    arr = np.asarray(clouds)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise MpgymError(
            f"{name} has shape {arr.shape}; accepted: (K, N, 3) point clouds, "
            "K >= 1 clouds of N >= 1 points."
        )
    if arr.dtype.kind not in "fiu":
        raise MpgymError(f"{name} holds {arr.dtype} values; accepted: real numbers.")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise MpgymError(f"{name} contains NaN or infinity; only finite points are accepted.")
    return arr


def _check_cloud(name: str, cloud: np.ndarray) -> np.ndarray:
    return _check_clouds(name, np.asarray(cloud)[None])[0]


def sample_point_clouds(
    meshes: Sequence, rng: np.random.Generator, n: int = N_POINTS
) -> np.ndarray:
    """``n`` points uniformly by area on each mesh (the protocol's 2,048 by default).

    Args:
        meshes: ``K`` ``trimesh.Trimesh`` objects with faces.
        rng: numpy generator (the draws are in mesh order, so one seed gives one set).
        n: points per shape.

    Returns:
        ``(K, n, 3)`` float32 clouds, in the meshes' own frame.

    Raises:
        MpgymError: no meshes, ``n < 1``, or a mesh with no area.
    """
    from neural3d.data.sampling import sample_surface

    if len(meshes) == 0:
        raise MpgymError("no meshes to sample; give at least one.")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise MpgymError(f"points per shape must be a whole number >= 1; got {n!r}.")
    out = np.empty((len(meshes), n, 3), np.float32)
    for i, mesh in enumerate(meshes):
        try:
            out[i] = sample_surface(mesh, n, rng).points
        except ValueError as exc:
            raise MpgymError(
                f"mesh {i} cannot be sampled ({exc}); a mesh with faces of positive area is needed."
            ) from None
    return out


def normalize_clouds(clouds: np.ndarray, mode: Normalize = "box") -> np.ndarray:
    """Put clouds in a common frame before comparing them.

    Args:
        clouds: ``(K, N, 3)`` points.
        mode: ``"box"`` -- centre each cloud's axis-aligned bounding box at the origin and scale
            its longest side to 1 (the collection's unit-cube convention); ``"none"`` -- keep
            the frame (PointFlow's own evaluation, in the dataset frame).

    Returns:
        ``(K, N, 3)`` float64.

    Example:
        >>> normalize_clouds(np.array([[[0.0, 0, 0], [4, 2, 0]]]))[0].tolist()
        [[-0.5, -0.25, 0.0], [0.5, 0.25, 0.0]]
    """
    arr = _check_clouds("clouds", clouds)
    if mode == "none":
        return arr
    if mode != "box":
        raise MpgymError(f"unknown normalisation {mode!r}; accepted: box, none.")
    lo, hi = arr.min(axis=1, keepdims=True), arr.max(axis=1, keepdims=True)  # (K, 1, 3)
    extent = (hi - lo).max(axis=2, keepdims=True)  # (K, 1, 1)
    if (extent <= 0).any():
        bad = int(np.flatnonzero(extent.ravel() <= 0)[0])
        raise MpgymError(
            f"cloud {bad} has all its points at one place; a cloud with extent "
            "is needed for --normalize box."
        )
    return (arr - (lo + hi) / 2) / extent


# ----------------------------------------------------------------------------------------------
# distances between two clouds
# ----------------------------------------------------------------------------------------------


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """PointFlow's Chamfer distance: the sum of the two mean *squared* nearest distances.

    ``CD(A, B) = mean_{x in A} min_{y in B} |x - y|^2 + mean_{y in B} min_{x in A} |x - y|^2``.

    Args:
        a: ``(N, 3)`` points.
        b: ``(M, 3)`` points (``M`` may differ from ``N``).

    Example:
        >>> chamfer(np.zeros((1, 3)), np.array([[0.0, 0, 1], [0, 0, 2]]))  # 1 + (1 + 4) / 2
        3.5
    """
    from scipy.spatial import cKDTree

    a, b = _check_cloud("a", a), _check_cloud("b", b)
    d_ab, _ = cKDTree(b).query(a)
    d_ba, _ = cKDTree(a).query(b)
    return float((d_ab**2).mean() + (d_ba**2).mean())


def emd(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Earth mover's distance between equal-size clouds: mean matched distance.

    ``EMD(A, B) = min_{phi: A -> B bijective} (1/N) sum_x |x - phi(x)|``, solved with the
    Hungarian algorithm (``scipy.optimize.linear_sum_assignment``), ``O(N^3)``.

    Args:
        a: ``(N, 3)`` points.
        b: ``(N, 3)`` points.

    Raises:
        MpgymError: clouds of different sizes.

    Example:
        >>> emd(np.array([[0.0, 0, 0], [1, 0, 0]]), np.array([[1.0, 0, 1], [0, 0, 1]]))
        1.0
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    a, b = _check_cloud("a", a), _check_cloud("b", b)
    if len(a) != len(b):
        raise MpgymError(f"EMD needs clouds of equal size; got {len(a)} and {len(b)} points.")
    cost = cdist(a, b)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


# ----------------------------------------------------------------------------------------------
# distance matrices between two sets
# ----------------------------------------------------------------------------------------------


def pairwise_chamfer(
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    backend: ChamferBackend = "kdtree",
    device: str = "cpu",
    batch: int = 8,
) -> np.ndarray:
    """Chamfer distance between every cloud of ``x`` and every cloud of ``y``.

    Args:
        x: ``(K, N, 3)`` clouds.
        y: ``(L, M, 3)`` clouds, or None for ``x`` against itself (symmetric, computed once
            per pair, zero diagonal).
        backend: ``"kdtree"`` (one ``cKDTree`` per cloud, two queries per pair; fastest on
            the CPU) or ``"torch"`` (``[b, N, M]`` squared distances by one batched matmul of
            augmented coordinates; for GPUs).
        device: torch device for ``backend="torch"``.
        batch: clouds of ``y`` per matmul for ``backend="torch"``.

    Returns:
        ``(K, L)`` float64 matrix.
    """
    xs = _check_clouds("x", x)
    same = y is None
    ys = xs if y is None else _check_clouds("y", y)
    if backend == "kdtree":
        return _pairwise_chamfer_kdtree(xs, ys, same)
    if backend == "torch":
        return _pairwise_chamfer_torch(xs, ys, same, device=device, batch=batch)
    raise MpgymError(f"unknown Chamfer backend {backend!r}; accepted: kdtree, torch.")


def _pairwise_chamfer_kdtree(xs: np.ndarray, ys: np.ndarray, same: bool) -> np.ndarray:
    from scipy.spatial import cKDTree

    tx = [cKDTree(c) for c in xs]
    ty = tx if same else [cKDTree(c) for c in ys]
    out = np.zeros((len(xs), len(ys)))
    for i in range(len(xs)):
        for j in range(i + 1 if same else 0, len(ys)):
            d_xy, _ = ty[j].query(xs[i])
            d_yx, _ = tx[i].query(ys[j])
            out[i, j] = (d_xy**2).mean() + (d_yx**2).mean()
            if same:
                out[j, i] = out[i, j]
    return out


def _pairwise_chamfer_torch(
    xs: np.ndarray, ys: np.ndarray, same: bool, *, device: str, batch: int
) -> np.ndarray:
    """``|x - y|^2 = [x, |x|^2, 1] . [-2y, 1, |y|^2]``: one matmul, then two minima."""
    import torch

    def augment(c: np.ndarray, left: bool) -> torch.Tensor:
        t = torch.as_tensor(c, dtype=torch.float64, device=device)  # [K, N, 3]
        sq = (t * t).sum(-1, keepdim=True)  # [K, N, 1]
        one = torch.ones_like(sq)
        return torch.cat([t, sq, one] if left else [-2 * t, one, sq], dim=-1)  # [K, N, 5]

    ax, ay = augment(xs, True), augment(ys, False)
    out = torch.zeros(len(xs), len(ys), dtype=torch.float64, device=device)
    for i in range(len(xs)):
        start = i + 1 if same else 0
        for s in range(start, len(ys), batch):
            d = (ax[i] @ ay[s : s + batch].transpose(1, 2)).clamp_(min=0)  # [b, N, M]
            out[i, s : s + batch] = d.min(2).values.mean(1) + d.min(1).values.mean(1)
    if same:
        out = out + out.T
    return out.cpu().numpy()


def pairwise_emd(
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    points: int | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Earth mover's distance between every cloud of ``x`` and every cloud of ``y``.

    Exact when ``points`` is None (or at least the clouds' size); otherwise the approximate
    fast path: every cloud is first subsampled to ``points`` points, once, without
    replacement, and the assignment is solved exactly on the subsamples. The subsample's EMD
    is a noisy, slightly upward-biased estimate of the full one (sparser clouds match less
    closely); it ranks pairs the same way on average, which is what MMD, COV and 1-NNA use.

    Args:
        x: ``(K, N, 3)`` clouds.
        y: ``(L, N, 3)`` clouds of the same size ``N``, or None for ``x`` against itself.
        points: subsample size for the fast path, or None for exact EMD on all ``N`` points.
        rng: generator for the subsampling (default ``default_rng(0)``).

    Returns:
        ``(K, L)`` float64 matrix.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    xs = _check_clouds("x", x)
    same = y is None
    ys = xs if y is None else _check_clouds("y", y)
    if xs.shape[1] != ys.shape[1]:
        raise MpgymError(
            f"EMD needs clouds of equal size; got {xs.shape[1]} and {ys.shape[1]} points."
        )
    if points is not None:
        if not isinstance(points, (int, np.integer)) or points < 1:
            raise MpgymError(f"EMD points must be a whole number >= 1 or None; got {points!r}.")
        if points < xs.shape[1]:
            rng = rng if rng is not None else np.random.default_rng(0)
            xs = _subsample(xs, points, rng)
            ys = xs if same else _subsample(ys, points, rng)
    out = np.zeros((len(xs), len(ys)))
    for i in range(len(xs)):
        for j in range(i + 1 if same else 0, len(ys)):
            cost = cdist(xs[i], ys[j])
            r, c = linear_sum_assignment(cost)
            out[i, j] = cost[r, c].mean()
            if same:
                out[j, i] = out[i, j]
    return out


def _subsample(clouds: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    idx = np.stack([rng.choice(clouds.shape[1], k, replace=False) for _ in clouds])  # (K, k)
    return np.take_along_axis(clouds, idx[:, :, None], axis=1)


# ----------------------------------------------------------------------------------------------
# set metrics from distance matrices
# ----------------------------------------------------------------------------------------------


def _check_matrix(name: str, m: np.ndarray, square: bool = False) -> np.ndarray:
    arr = np.asarray(m, dtype=np.float64)
    if (
        arr.ndim != 2
        or arr.shape[0] < 1
        or arr.shape[1] < 1
        or (square and arr.shape[0] != arr.shape[1])
    ):
        kind = "a square (K, K)" if square else "a (K, L)"
        raise MpgymError(f"{name} has shape {arr.shape}; accepted: {kind} distance matrix.")
    if np.isnan(arr).any():
        raise MpgymError(f"{name} contains NaN; distances must be numbers.")
    return arr


def mmd(d_sr: np.ndarray) -> float:
    """Minimum matching distance: mean over references of the distance to the nearest sample.

    Args:
        d_sr: ``(S, R)`` distances from generated clouds (rows) to reference clouds (columns).

    Example:
        >>> mmd(np.array([[1.0, 5.0], [2.0, 3.0]]))  # (min(1, 2) + min(5, 3)) / 2
        2.0
    """
    return float(_check_matrix("the sample-reference distances", d_sr).min(axis=0).mean())


def coverage(d_sr: np.ndarray) -> float:
    """Coverage: share of references that are the nearest reference of some generated cloud.

    Args:
        d_sr: ``(S, R)`` distances from generated clouds (rows) to reference clouds (columns).

    Example:
        >>> coverage(np.array([[1.0, 5.0], [2.0, 3.0]]))  # both samples pick reference 0
        0.5
    """
    d = _check_matrix("the sample-reference distances", d_sr)
    return float(len(np.unique(d.argmin(axis=1))) / d.shape[1])


def one_nn_accuracy(d_ss: np.ndarray, d_sr: np.ndarray, d_rr: np.ndarray) -> float:
    """Leave-one-out 1-NN two-sample accuracy (0.5 ideal, 1.0 when the sets separate).

    Every cloud of ``S + R`` is labelled with the set of its nearest *other* cloud; the
    result is the share labelled correctly.

    Args:
        d_ss: ``(S, S)`` distances among generated clouds.
        d_sr: ``(S, R)`` distances from generated to reference clouds.
        d_rr: ``(R, R)`` distances among reference clouds.

    Example:
        >>> far = np.array([[0.0, 1], [1, 0]])
        >>> one_nn_accuracy(far, np.full((2, 2), 9.0), far)  # each set is its own neighbour
        1.0
    """
    ss = _check_matrix("the sample-sample distances", d_ss, square=True)
    rr = _check_matrix("the reference-reference distances", d_rr, square=True)
    sr = _check_matrix("the sample-reference distances", d_sr)
    if sr.shape != (len(ss), len(rr)):
        raise MpgymError(
            f"the sample-reference distances have shape {sr.shape}; with "
            f"{len(ss)} samples and {len(rr)} references "
            f"({len(ss)}, {len(rr)}) is needed."
        )
    if len(ss) + len(rr) < 3:
        raise MpgymError("1-NNA needs at least 3 clouds in the two sets together.")
    full = np.block([[ss, sr], [sr.T, rr]])  # (S + R, S + R)
    np.fill_diagonal(full, np.inf)  # leave one out
    label = np.r_[np.ones(len(ss)), np.zeros(len(rr))]
    pred = label[full.argmin(axis=1)]
    return float((pred == label).mean())


@dataclass(frozen=True)
class SetMetrics:
    """MMD, COV and 1-NNA of a generated set against a reference set, for CD and EMD."""

    mmd_cd: float
    """Minimum matching distance under Chamfer (lower is better)."""
    cov_cd: float
    """Coverage under Chamfer (higher is better, at most 1)."""
    nna_cd: float
    """1-NN accuracy under Chamfer (0.5 ideal)."""
    mmd_emd: float | None
    """Minimum matching distance under EMD, or None when EMD was not computed."""
    cov_emd: float | None
    """Coverage under EMD."""
    nna_emd: float | None
    """1-NN accuracy under EMD."""
    n_sample: int
    """Generated clouds."""
    n_ref: int
    """Reference clouds."""


def with_empty_samples(d_ss: np.ndarray, d_sr: np.ndarray,
                       k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distance matrices with ``k`` empty generated shapes appended to the samples.

    An empty shape (no surface to sample) is at distance 0 from another empty one and infinitely
    far from every shape with a surface, so in 1-NNA it is always told apart from the
    references (its nearest other cloud is an empty sample, or -- when it is the only one --
    every distance ties at infinity and it is counted as a sample); it is never a reference's
    nearest sample, so MMD and COV over the non-empty rows are unchanged.

    Example:
        >>> ss, sr = with_empty_samples(np.zeros((1, 1)), np.ones((1, 2)), 2)
        >>> ss
        array([[ 0., inf, inf],
               [inf,  0.,  0.],
               [inf,  0.,  0.]])
    """
    ss = _check_matrix("the sample-sample distances", d_ss, square=True)
    sr = _check_matrix("the sample-reference distances", d_sr)
    if k < 0:
        raise MpgymError(f"the number of empty samples must be >= 0; got {k}.")
    n = len(ss)
    out_ss = np.full((n + k, n + k), np.inf)
    out_ss[:n, :n] = ss
    out_ss[n:, n:] = 0.0
    return out_ss, np.vstack([sr, np.full((k, sr.shape[1]), np.inf)])


def shape_set_metrics(
    sample: np.ndarray,
    ref: np.ndarray,
    *,
    empty_samples: int = 0,
    normalize: Normalize = "box",
    emd_points: int | None = 256,
    with_emd: bool = True,
    chamfer_backend: ChamferBackend = "kdtree",
    device: str = "cpu",
    rng: np.random.Generator | None = None,
) -> SetMetrics:
    """The PointFlow table row of ``sample`` against ``ref``.

    Args:
        sample: ``(S, N, 3)`` generated clouds (2,048 points each in the protocol).
        ref: ``(R, N, 3)`` reference clouds (the held-out test shapes).
        empty_samples: generated shapes beyond ``sample`` that have no surface; they count in
            1-NNA as :func:`with_empty_samples` says (dropping them would flatter a generator
            that fails often) and in ``n_sample``.
        normalize: see :func:`normalize_clouds`.
        emd_points: subsample size of the approximate EMD (:func:`pairwise_emd`); None for
            exact EMD on all points (about 2 s a pair at 2,048 points).
        with_emd: compute the EMD columns at all.
        chamfer_backend: ``"kdtree"`` (CPU) or ``"torch"``.
        device: torch device for the torch backend.
        rng: generator for the EMD subsampling.

    Returns:
        :class:`SetMetrics`.
    """
    s = normalize_clouds(sample, normalize)
    r = normalize_clouds(ref, normalize)
    if len(s) + len(r) < 3:
        raise MpgymError("set metrics need at least 3 clouds in the two sets together.")
    cd_sr = pairwise_chamfer(s, r, backend=chamfer_backend, device=device)
    cd_ss = pairwise_chamfer(s, backend=chamfer_backend, device=device)
    cd_rr = pairwise_chamfer(r, backend=chamfer_backend, device=device)
    emd_cols: tuple[float | None, float | None, float | None] = (None, None, None)
    if with_emd:
        rng = rng if rng is not None else np.random.default_rng(0)
        both = pairwise_emd(np.concatenate([s, r]), points=emd_points, rng=rng)
        k = len(s)
        em_ss, em_sr, em_rr = both[:k, :k], both[:k, k:], both[k:, k:]
        emd_cols = (mmd(em_sr), coverage(em_sr),
                    one_nn_accuracy(*with_empty_samples(em_ss, em_sr, empty_samples), em_rr))
    return SetMetrics(
        mmd_cd=mmd(cd_sr),
        cov_cd=coverage(cd_sr),
        nna_cd=one_nn_accuracy(*with_empty_samples(cd_ss, cd_sr, empty_samples), cd_rr),
        mmd_emd=emd_cols[0],
        cov_emd=emd_cols[1],
        nna_emd=emd_cols[2],
        n_sample=len(s) + empty_samples,
        n_ref=len(r),
    )
