"""Geometric metrics between point sets, meshes and occupancy grids.

Nearest neighbours come from :func:`mpgym.geometry.nearest` (scipy KD-trees).

Conventions (stated once, used everywhere; they follow Occupancy Networks' evaluation code):

- distances are Euclidean and **unsquared** unless the name says L2;
- ``accuracy`` = mean distance from predicted points to the ground truth, ``completeness`` =
  mean distance from ground-truth points to the prediction;
- Chamfer-L1 = ``(accuracy + completeness) / 2`` (means, not sums);
- Chamfer-L2 = ``(mean d_pred->gt^2 + mean d_gt->pred^2) / 2`` (squared distances; DeepSDF
  reports the *sum* of the two means, i.e. twice this value);
- normal consistency = ``(mean |n_p . n_gt(nn)| + mean |n_gt . n_p(nn)|) / 2`` (orientation
  ignored, 1 is perfect);
- F-score at ``tau``: precision = fraction of predicted points within ``tau`` of the ground
  truth, recall = fraction of ground-truth points within ``tau`` of the prediction,
  ``F = 2PR / (P + R)`` (Tatarchenko et al. 2019);
- volumetric IoU = ``|A and B| / |A or B|`` on occupancy samples (uniform points in the box).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpgym.geometry import nearest


def chamfer_l1(a: np.ndarray, b: np.ndarray) -> float:
    """Chamfer-L1 ``(mean_a d(a, B) + mean_b d(b, A)) / 2``, unsquared.

    Example:
        >>> chamfer_l1(np.zeros((1, 3)), np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]]))
        1.0
    """
    return float(0.5 * (nearest(a, b)[0].mean() + nearest(b, a)[0].mean()))


def chamfer_l2(a: np.ndarray, b: np.ndarray) -> float:
    """Chamfer-L2 ``(mean_a d(a, B)^2 + mean_b d(b, A)^2) / 2`` (squared distances).

    Example:
        >>> chamfer_l2(np.zeros((1, 3)), np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]]))
        3.0
    """
    return float(0.5 * ((nearest(a, b)[0] ** 2).mean() + (nearest(b, a)[0] ** 2).mean()))


def normal_consistency(a: np.ndarray, na: np.ndarray, b: np.ndarray, nb: np.ndarray) -> float:
    """Mean ``|n . n'|`` between each point's normal and its nearest neighbour's, both ways.

    Args:
        a: ``(N, 3)`` points.
        na: ``(N, 3)`` their unit normals.
        b: ``(M, 3)`` points.
        nb: ``(M, 3)`` their unit normals.
    """
    _, ia = nearest(a, b)
    _, ib = nearest(b, a)
    ab = np.abs((na * nb[ia]).sum(-1)).mean()
    ba = np.abs((nb * na[ib]).sum(-1)).mean()
    return float(0.5 * (ab + ba))


@dataclass
class FScore:
    """F-score at a threshold with its precision and recall."""

    fscore: float
    precision: float
    recall: float
    threshold: float


def fscore(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.01) -> FScore:
    """F-score at ``threshold`` between predicted and ground-truth point sets.

    Example:
        >>> fscore(np.zeros((1, 3)), np.array([[0.0, 0, 0.005], [0.0, 0, 1.0]]), 0.01).fscore
        0.6666666666666666
    """
    precision = float((nearest(pred, gt)[0] < threshold).mean())
    recall = float((nearest(gt, pred)[0] < threshold).mean())
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return FScore(f, precision, recall, threshold)


def volumetric_iou(occ_a: np.ndarray, occ_b: np.ndarray) -> float:
    """``|A and B| / |A or B|`` of two boolean occupancy arrays of the same shape.

    Example:
        >>> volumetric_iou(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
        0.3333333333333333
    """
    a, b = np.asarray(occ_a, bool), np.asarray(occ_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"occupancy shapes differ: {a.shape} vs {b.shape}")
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@dataclass
class MeshMetrics:
    """Metrics of a predicted surface against the ground truth (conventions: module doc)."""

    chamfer_l1: float
    chamfer_l2: float
    accuracy: float
    completeness: float
    normal_consistency: float
    fscore: float
    precision: float
    recall: float
    threshold: float


def surface_metrics(pred_points: np.ndarray, pred_normals: np.ndarray, gt_points: np.ndarray,
                    gt_normals: np.ndarray, threshold: float = 0.01) -> MeshMetrics:
    """All surface metrics from sampled points with normals (one KD-tree query each way).

    Args:
        pred_points: ``(N, 3)`` predicted surface points.
        pred_normals: ``(N, 3)`` their unit normals.
        gt_points: ``(M, 3)`` ground-truth surface points.
        gt_normals: ``(M, 3)`` their unit normals.
        threshold: F-score distance.
    """
    d_pg, i_pg = nearest(pred_points, gt_points)
    d_gp, i_gp = nearest(gt_points, pred_points)
    nc = 0.5 * (np.abs((pred_normals * gt_normals[i_pg]).sum(-1)).mean()
                + np.abs((gt_normals * pred_normals[i_gp]).sum(-1)).mean())
    p, r = float((d_pg < threshold).mean()), float((d_gp < threshold).mean())
    return MeshMetrics(
        chamfer_l1=float(0.5 * (d_pg.mean() + d_gp.mean())),
        chamfer_l2=float(0.5 * ((d_pg**2).mean() + (d_gp**2).mean())),
        accuracy=float(d_pg.mean()), completeness=float(d_gp.mean()),
        normal_consistency=float(nc),
        fscore=0.0 if p + r == 0 else 2 * p * r / (p + r), precision=p, recall=r,
        threshold=threshold)


def mesh_metrics(pred, gt, *, n_points: int = 100_000, threshold: float = 0.01,
                 rng: np.random.Generator | None = None) -> MeshMetrics:
    """Surface metrics between two meshes, each sampled uniformly by area.

    Args:
        pred: predicted ``trimesh.Trimesh``.
        gt: ground-truth ``trimesh.Trimesh``, or a ``(points (M, 3), normals (M, 3))`` pair
            (e.g. exact samples of an analytic shape).
        n_points: points sampled on each mesh.
        threshold: F-score distance.
        rng: generator for the sampling (default seed 0).
    """
    from neural3d.data.sampling import sample_surface

    rng = rng if rng is not None else np.random.default_rng(0)
    if len(pred.faces) == 0:
        raise ValueError("the predicted mesh is empty")
    p = sample_surface(pred, n_points, rng)
    if isinstance(gt, tuple):
        gp, gn = gt
    else:
        g = sample_surface(gt, n_points, rng)
        gp, gn = g.points, g.normals
    return surface_metrics(p.points, p.normals, np.asarray(gp), np.asarray(gn), threshold)
