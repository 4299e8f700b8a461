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


def _held_out_body(model, i, seed=0, n=100):
    """Body ``i`` of the benchmark's held-out set (benchmarks/bodies.py) and a 5k-point scan."""
    import numpy as np
    import trimesh

    from bodies.motion import clip_poses

    g = torch.Generator().manual_seed(seed)
    te = clip_poses("test", mirror=False).reshape(-1, 69)
    idx = np.random.default_rng(seed).choice(len(te), n, replace=False)
    betas = torch.randn(n, 10, generator=g).to(torch.float64)[i : i + 1]
    pose = torch.as_tensor(te[idx[i : i + 1]], dtype=torch.float64)
    go = torch.zeros(1, 3, dtype=torch.float64)
    go[:, 1] = ((torch.rand(n, generator=g).to(torch.float64) - 0.5) * 1.2)[i]
    with torch.no_grad():
        gt = model(betas, pose, go)
    tm = trimesh.Trimesh(gt.vertices[0].numpy(), model.faces, process=False)
    pts, _ = trimesh.sample.sample_surface(tm, 5000, seed=i)
    noise = 0.005 * torch.randn(5000, 3, generator=torch.Generator().manual_seed(i))
    return gt, pose, go, torch.as_tensor(pts)[None] + noise.to(torch.float64)


def test_limb_search_restores_a_swapped_arm(model64):
    """A fit that matches the scan but for one arm: the search must find the scan's arm among
    the bank's and leave the other limbs alone."""
    from bodies.fit import LIMBS, FitResult, _default_bank, _limb_search

    gt, pose, go, pts = _held_out_body(model64, 15)
    bank = _default_bank(torch.float64)[::4]
    cols = [3 * (j - 1) + c for j in LIMBS["right arm"] for c in range(3)]
    wrong = pose.clone()
    wrong[:, cols] = bank[0, cols]  # some other pose's right arm
    bank = torch.cat([bank, pose])  # the scan's own pose is in the bank
    betas, transl = gt.betas, torch.zeros(1, 3, dtype=torch.float64)
    with torch.no_grad():
        r = model64(betas, wrong, go)
    fit = FitResult(betas, wrong, go, transl, r.vertices, r.joints, [], 0.0)
    body_pose, better = _limb_search(model64, fit, pts, bank, sigma=100.0)
    assert better.tolist() == [True]
    torch.testing.assert_close(body_pose[:, cols], pose[:, cols])
    rest = [c for c in range(69) if c not in cols]
    torch.testing.assert_close(body_pose[:, rest], wrong[:, rest])


def test_scan_fit_recovers_a_body_that_needs_the_limb_search(model64):
    """Held-out body 15 (arms in front of the body): the staged fit alone ends with both
    forearms wrong (PVE ~35 mm); with the limb search it is within the scan goal."""
    from bodies.fit import PRESETS, fit_to_scan
    from bodies.metrics import pve

    gt, _, _, pts = _held_out_body(model64, 15)
    r = fit_to_scan(model64, pts, PRESETS["scan"])
    assert float(pve(r.vertices, gt.vertices)[0]) < 15.0


def _posed(model64, seed):
    """A random body (betas, pose) and its vertices, as a scan of 6890 points."""
    g = torch.Generator().manual_seed(seed)
    betas = torch.randn(1, 10, generator=g, dtype=torch.float64)
    pose = 0.2 * torch.randn(1, 69, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = model64(betas, pose)
    return betas, pose, out


def test_fit_to_scan_starts_from_init_betas(model64):
    """With no stages the result is the start: init's betas, not zeros."""
    from bodies.fit import FitConfig, FitResult, fit_to_scan

    betas, pose, out = _posed(model64, 3)
    z = torch.zeros(1, 3, dtype=torch.float64)
    init = FitResult(betas, pose, z, z, out.vertices, out.joints, [], 0.0)
    none = FitConfig(pose_weights=(), shape_weights=())
    r = fit_to_scan(model64, out.vertices, none, init=init, limb_search=False)
    torch.testing.assert_close(r.betas, betas)
    torch.testing.assert_close(r.vertices, out.vertices)
    with pytest.raises(MpgymError, match="init has betas of shape"):
        fit_to_scan(model64, out.vertices, none, init=FitResult(
            betas[:, :5], pose, z, z, out.vertices, out.joints, [], 0.0))


def test_fit_to_scan_from_the_answer_stays_there(model64):
    """A short stage started from the true parameters keeps the true betas (zeros: ~1.0 off)."""
    from bodies.fit import FitConfig, FitResult, fit_to_scan

    betas, pose, out = _posed(model64, 4)
    z = torch.zeros(1, 3, dtype=torch.float64)
    init = FitResult(betas, pose, z, z, out.vertices, out.joints, [], 0.0)
    cfg = FitConfig(pose_weights=(1.0,), shape_weights=(0.01,), steps_per_stage=3)
    r = fit_to_scan(model64, out.vertices, cfg, init=init, limb_search=False)
    assert (r.betas - betas).abs().max() < 0.05


def test_results_print_shapes_not_values(model64):
    from bodies.fit import FitResult

    betas, pose, out = _posed(model64, 5)
    text = repr(out)
    assert text.startswith("BodyOutput(vertices=float64[1, 6890, 3], joints=float64[1, 24, 3]")
    z = torch.zeros(1, 3, dtype=torch.float64)
    fit = FitResult(betas, pose, z, z, out.vertices, out.joints, [1.5, 0.25], 2.0)
    assert repr(fit) == (
        "FitResult(betas=float64[1, 10], body_pose=float64[1, 69], global_orient=float64[1, 3], "
        "transl=float64[1, 3], vertices=float64[1, 6890, 3], joints=float64[1, 24, 3], "
        "losses=[1.5, 0.25], seconds=2)"
    )
    assert repr(model64) == (
        "BodyModel(model='smpl_compatible_v1.npz', vertices=6890, faces=13776, joints=24, "
        "num_betas=10, dtype=float64)"
    )


def test_clip_prints_shapes_not_values():
    pytest.importorskip("pybullet")
    from bodies.motion import load_clip

    text = repr(load_clip("walk"))
    assert text.startswith("Clip(name='walk', global_orient=float64[")
    assert "[" in text and len(text) < 300
