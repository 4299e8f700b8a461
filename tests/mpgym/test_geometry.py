import numpy as np
import pytest
import torch

from mpgym.geometry import nearest, nearest_sq_distances, similarity_transform


def _rotation(axis_angle):
    from scipy.spatial.transform import Rotation

    return torch.as_tensor(Rotation.from_rotvec(axis_angle).as_matrix())


def test_nearest_hand_computed():
    d, i = nearest(np.array([[0.0, 0, 0], [0, 0, 2.5]]), np.array([[0.0, 0, 1], [0, 0, 3]]))
    np.testing.assert_allclose(d, [1.0, 0.5])
    assert i.tolist() == [0, 1]
    with pytest.raises(ValueError, match="non-empty"):
        nearest(np.zeros((0, 3)), np.zeros((2, 3)))


def test_nearest_sq_distances_hand_computed_both_ways():
    a = torch.tensor([[[0.0, 0, 0], [0, 0, 2.5]]])
    b = torch.tensor([[[0.0, 0, 1], [0, 0, 3], [0, 4, 0]]])
    for method in ("kdtree", "brute"):
        ab, ba = nearest_sq_distances(a, b, method=method)
        torch.testing.assert_close(ab, torch.tensor([[1.0, 0.25]]))
        torch.testing.assert_close(ba, torch.tensor([[1.0, 0.25, 16.0]]))
    with pytest.raises(ValueError, match="accepted: 'kdtree', 'brute'"):
        nearest_sq_distances(a, b, method="octree")


def test_kdtree_equals_brute_force_values_and_gradients():
    from scipy.spatial import cKDTree

    g = torch.Generator().manual_seed(1)
    verts = torch.randn(2, 300, 3, generator=g, dtype=torch.float64, requires_grad=True)
    pts = torch.randn(2, 500, 3, generator=g, dtype=torch.float64)
    a, b = nearest_sq_distances(pts, verts, method="brute")
    trees = [cKDTree(x) for x in pts.numpy()]
    ak, bk = nearest_sq_distances(pts, verts, a_trees=trees)
    torch.testing.assert_close(ak, a)
    torch.testing.assert_close(bk, b)
    (ga,) = torch.autograd.grad(a.sum() + b.sum(), verts)
    (gk,) = torch.autograd.grad(ak.sum() + bk.sum(), verts)
    torch.testing.assert_close(gk, ga)


def test_similarity_transform_recovers_a_known_one():
    g = torch.Generator().manual_seed(0)
    src = torch.randn(2, 30, 3, generator=g, dtype=torch.float64)
    R = torch.stack([_rotation([0.3, -1.0, 0.5]), _rotation([2.5, 0.2, -0.4])])
    t = torch.tensor([[0.1, 2.0, -3.0], [1.0, 0.0, 0.5]], dtype=torch.float64)
    dst = 1.7 * src @ R.transpose(1, 2) + t[:, None]
    s, R_, t_ = similarity_transform(src, dst)
    torch.testing.assert_close(s, torch.full((2,), 1.7, dtype=torch.float64))
    torch.testing.assert_close(R_, R)
    torch.testing.assert_close(t_, t)
    s, R_, t_ = similarity_transform(src, dst / 1.7, scale=False)  # Kabsch: rotation only
    torch.testing.assert_close(s, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(R_, R)


def test_weights_leave_points_out_and_reflections_are_never_used():
    g = torch.Generator().manual_seed(2)
    src = torch.randn(1, 20, 3, generator=g, dtype=torch.float64)
    R = _rotation([0.0, 0.7, 0.0])[None]
    dst = src @ R.transpose(1, 2)
    dst[0, :5] += 10.0  # outliers, weighted out
    w = torch.ones(1, 20, dtype=torch.float64)
    w[0, :5] = 0.0
    _, R_, t_ = similarity_transform(src, dst, w, scale=False)
    torch.testing.assert_close(R_, R)
    torch.testing.assert_close(t_, torch.zeros(1, 3, dtype=torch.float64))
    mirrored = src * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    _, R_m, _ = similarity_transform(src, mirrored)
    assert torch.linalg.det(R_m).item() == pytest.approx(1.0)
