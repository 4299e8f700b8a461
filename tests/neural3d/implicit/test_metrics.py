import numpy as np
import pytest

from neural3d.metrics import (
    chamfer_l1,
    chamfer_l2,
    fscore,
    mesh_metrics,
    normal_consistency,
    surface_metrics,
    volumetric_iou,
)


def test_hand_computed_chamfer():
    a = np.zeros((1, 3))
    b = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]])
    # a->b: 1; b->a: (1 + 3) / 2 = 2; L1 = (1 + 2) / 2
    assert chamfer_l1(a, b) == pytest.approx(1.5)
    # squared: a->b 1; b->a (1 + 9) / 2 = 5; L2 = (1 + 5) / 2
    assert chamfer_l2(a, b) == pytest.approx(3.0)
    assert chamfer_l1(b, b) == 0.0


def test_fscore_precision_recall():
    pred = np.zeros((1, 3))
    gt = np.array([[0.0, 0, 0.005], [0.0, 0, 1.0]])
    f = fscore(pred, gt, 0.01)
    assert (f.precision, f.recall) == (1.0, 0.5)
    assert f.fscore == pytest.approx(2 / 3)
    assert fscore(pred, gt + 5, 0.01).fscore == 0.0


def test_normal_consistency_ignores_orientation():
    p = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    n = np.array([[0.0, 0, 1], [0.0, 0, 1]])
    assert normal_consistency(p, n, p, -n) == 1.0
    n2 = np.array([[0.0, 1, 0], [0.0, 0, 1]])
    assert normal_consistency(p, n, p, n2) == pytest.approx(0.5)


def test_volumetric_iou():
    assert volumetric_iou(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool)) == \
        pytest.approx(1 / 3)
    assert volumetric_iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    with pytest.raises(ValueError):
        volumetric_iou(np.zeros(3, bool), np.zeros(4, bool))


def test_surface_metrics_consistent_with_single_metrics():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 3)), rng.normal(size=(300, 3))
    na = rng.normal(size=(200, 3))
    nb = rng.normal(size=(300, 3))
    na /= np.linalg.norm(na, axis=1, keepdims=True)
    nb /= np.linalg.norm(nb, axis=1, keepdims=True)
    m = surface_metrics(a, na, b, nb, 0.3)
    assert m.chamfer_l1 == pytest.approx(chamfer_l1(a, b))
    assert m.chamfer_l2 == pytest.approx(chamfer_l2(a, b))
    assert m.normal_consistency == pytest.approx(normal_consistency(a, na, b, nb))
    assert m.fscore == pytest.approx(fscore(a, b, 0.3).fscore)


def test_mesh_metrics_of_scaled_sphere():
    import trimesh

    s1 = trimesh.creation.icosphere(5, radius=0.4)
    s2 = trimesh.creation.icosphere(5, radius=0.41)
    m = mesh_metrics(s1, s2, n_points=20000)
    assert m.chamfer_l1 == pytest.approx(0.01, abs=1.5e-3)  # radial gap 0.01 + sampling
    assert m.normal_consistency > 0.99
    assert mesh_metrics(s1, s1).fscore > 0.99  # 100k points: sampling floor below 1e-2
