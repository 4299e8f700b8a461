import math

import pytest
import torch

from bodies.fit import fit_to_joints, gmof
from bodies.metrics import mpjpe, pa_mpjpe
from bodies.rotations import axis_angle_to_matrix
from mpgym.errors import MpgymError


def test_pa_mpjpe_removes_similarity_transform():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 24, 3, generator=g, dtype=torch.float64)
    R = axis_angle_to_matrix(torch.tensor([[0.3, -1.0, 0.5]], dtype=torch.float64))
    y = 1.7 * x @ R.transpose(1, 2) + torch.tensor([0.1, 2.0, -3.0], dtype=torch.float64)
    assert pa_mpjpe(x, y).max() < 1e-6
    torch.testing.assert_close(
        mpjpe(x, x + torch.tensor([0.003, 0.0, 0.004], dtype=torch.float64)),
        torch.full((2,), 5.0, dtype=torch.float64),
    )


def test_gmof_closed_form():
    r = torch.tensor([0.0, 100.0, 1e6])
    torch.testing.assert_close(
        gmof(r, 100.0), torch.tensor([0.0, 5000.0, 1e4 * 1e12 / (1e4 + 1e12)])
    )


def test_walk_clip_retargets_to_forward_bending_knees():
    from bodies.motion import load_clip

    bp = load_clip("walk").body_pose
    assert bp.shape[1:] == (23, 3)
    assert bp[:, 3, 0].min() > 0 and bp[:, 3, 0].max() > 1.0  # left knee flexes about +x
    assert math.isclose(bp[:, 9].sum(), 0.0)  # collars stay at rest


def test_fewer_than_four_visible_joints_is_an_error(model64):
    j = torch.full((1, 24, 3), float("nan"), dtype=torch.float64)
    j[0, :3] = 0.0
    with pytest.raises(MpgymError, match="3 visible joints; at least 4"):
        fit_to_joints(model64, j)


def test_kdtree_chamfer_equals_brute_force():
    from bodies.fit import chamfer_terms, chamfer_terms_kdtree

    g = torch.Generator().manual_seed(1)
    verts = torch.randn(2, 300, 3, generator=g, dtype=torch.float64, requires_grad=True)
    pts = torch.randn(2, 500, 3, generator=g, dtype=torch.float64)
    a, b = chamfer_terms(verts, pts)
    ak, bk = chamfer_terms_kdtree(verts, pts)
    torch.testing.assert_close(ak, a)
    torch.testing.assert_close(bk, b)
    (ga,) = torch.autograd.grad((a.sum() + b.sum()), verts)
    (gk,) = torch.autograd.grad((ak.sum() + bk.sum()), verts)
    torch.testing.assert_close(gk, ga)
