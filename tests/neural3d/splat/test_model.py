"""GaussianModel: parameters, activations, colours, covariances, constructors, checkpoints."""

import doctest
import math

import numpy as np
import pytest
import torch
from torch import nn

import neural3d.splat.model as model_module
from mpgym import load_checkpoint, save_checkpoint
from mpgym.errors import MpgymError
from neural3d.splat.model import (
    PARAM_NAMES,
    GaussianModel,
    build_covariance,
    knn_log_scales,
    quat_to_rotmat,
)
from neural3d.splat.sh import SH_C0, eval_sh, rgb_to_sh


def _tensors(n=5, degree=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    shapes = {"means": (n, 3), "log_scales": (n, 3), "quats": (n, 4), "opacity_logits": (n,),
              "sh_dc": (n, 1, 3), "sh_rest": (n, k - 1, 3)}
    return {name: torch.randn(*s, generator=g, dtype=dtype) for name, s in shapes.items()}


def test_docstring_examples():
    assert doctest.testmod(model_module).failed == 0


def test_parameters_and_activations():
    t = _tensors()
    m = GaussianModel(t, max_sh_degree=3)
    assert list(m.params.keys()) == list(PARAM_NAMES)
    assert m.num_gaussians == 5 and m.sh_degree == 0 and m.max_sh_degree == 3
    assert all(isinstance(p, nn.Parameter) for p in m.parameters())
    torch.testing.assert_close(m.scales(), t["log_scales"].exp())
    torch.testing.assert_close(m.rotations(), t["quats"] / t["quats"].norm(dim=1, keepdim=True))
    torch.testing.assert_close(m.opacities(), torch.sigmoid(t["opacity_logits"]))
    torch.testing.assert_close(m.sh(), torch.cat([t["sh_dc"], t["sh_rest"]], 1))
    assert m.sh().shape == (5, 16, 3)
    t["means"].zero_()  # the model holds copies
    assert m.params["means"].abs().sum() > 0


def test_colors_follow_the_active_degree_and_clamp_at_zero():
    t = _tensors(n=6, seed=1, dtype=torch.float64)
    t["sh_dc"][0] = -5.0  # dark enough to go negative from every direction
    m = GaussianModel(t, max_sh_degree=3)
    cam = torch.tensor([0.3, -2.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(m.colors(cam), (SH_C0 * t["sh_dc"][:, 0] + 0.5).clamp_min(0))
    for degree in (1, 2, 3):
        m.sh_degree = degree
        raw = eval_sh(degree, m.sh(), t["means"] - cam) + 0.5
        torch.testing.assert_close(m.colors(cam), raw.clamp_min(0))
    assert (raw[0] < 0).all() and (m.colors(cam)[0] == 0).all()  # the clamp did something
    with pytest.raises(MpgymError, match="sh_degree"):
        m.sh_degree = 4


def test_quaternions_and_covariances_match_scipy():
    from scipy.spatial.transform import Rotation

    t = _tensors(n=8, seed=2, dtype=torch.float64)
    m = GaussianModel(t, max_sh_degree=3)
    q = t["quats"].numpy()
    r = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()  # scipy is scalar-last
    np.testing.assert_allclose(quat_to_rotmat(t["quats"]).numpy(), r, atol=1e-12)
    s = np.exp(t["log_scales"].numpy())
    expected = r @ (s[:, :, None] ** 2 * np.eye(3)) @ r.transpose(0, 2, 1)
    np.testing.assert_allclose(m.covariances().detach().numpy(), expected, atol=1e-12)
    ident = build_covariance(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 0, 0, 0]]))
    torch.testing.assert_close(ident[0], torch.diag(torch.tensor([1.0, 4.0, 9.0])))


def test_gradients_reach_every_parameter():
    m = GaussianModel(_tensors(n=4, seed=3), max_sh_degree=3, sh_degree=3)
    loss = m.colors(torch.zeros(3)).sum() + m.covariances().sum() + m.opacities().sum()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_nothing_caches_n():
    m = GaussianModel(_tensors(n=5), max_sh_degree=3, sh_degree=1)
    bigger = _tensors(n=9, seed=5)
    for name in PARAM_NAMES:
        m.params[name] = nn.Parameter(bigger[name])
    assert m.num_gaussians == 9
    assert m.colors(torch.zeros(3)).shape == (9, 3) and m.covariances().shape == (9, 3, 3)


def test_checkpoint_round_trip_through_safetensors(tmp_path):
    m = GaussianModel(_tensors(n=7, degree=2, seed=6), max_sh_degree=2)
    save_checkpoint(tmp_path / "c.safetensors", m.to_tensors(), kind="splat-test")
    state = load_checkpoint(tmp_path / "c.safetensors").state_dict
    for degree in (2, None):  # given, or inferred from sh_rest
        back = GaussianModel.from_tensors(state, degree, sh_degree=1)
        assert back.max_sh_degree == 2 and back.sh_degree == 1
        for name in PARAM_NAMES:
            assert torch.equal(back.params[name], m.params[name])


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.pop("quats"), "missing \\['quats'\\]"),
    (lambda t: t.update(extra=torch.zeros(5)), "unexpected \\['extra'\\]"),
    (lambda t: t.update(quats=torch.zeros(5, 3)),
     "'quats' has shape \\(5, 3\\); expected \\(5, 4\\)"),
    (lambda t: t.update(sh_rest=torch.zeros(5, 8, 3)), "'sh_rest' has shape"),
    (lambda t: t.update(opacity_logits=torch.zeros(5, dtype=torch.int32)), "floating point"),
    (lambda t: t["means"].__setitem__((0, 0), math.nan), "NaN"),
    (lambda t: t.update(means=torch.zeros(5)), "expected \\(N, 3\\)"),
])
def test_from_tensors_refuses_bad_tensors(edit, match):
    t = _tensors()
    edit(t)
    with pytest.raises(MpgymError, match=match):
        GaussianModel.from_tensors(t, 3)


def test_from_tensors_cannot_infer_a_bad_degree():
    t = _tensors()
    t["sh_rest"] = torch.zeros(5, 5, 3)
    with pytest.raises(MpgymError, match="K - 1 in"):
        GaussianModel.from_tensors(t)


def test_knn_log_scales_equal_brute_force():
    rng = np.random.default_rng(7)
    pts = rng.normal(size=(40, 3))
    d2 = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    d2[np.arange(40), np.arange(40)] = np.inf
    expected = 0.5 * np.log(np.sort(d2, axis=1)[:, :3].mean(1))
    np.testing.assert_allclose(knn_log_scales(pts), expected, rtol=1e-12)
    dup = np.zeros((3, 3))  # coincident points: floored, finite
    np.testing.assert_allclose(knn_log_scales(dup), 0.5 * np.log(1e-7))


def test_from_points_initialises_as_3dgs():
    rng = np.random.default_rng(8)
    xyz = rng.normal(size=(30, 3)).astype(np.float32)
    rgb = rng.random((30, 3)).astype(np.float32)
    m = GaussianModel.from_points(torch.as_tensor(xyz), rgb, sh_degree=2, opacity=0.1)
    p = m.params
    assert m.max_sh_degree == 2 and m.sh_degree == 0 and p["sh_rest"].shape == (30, 8, 3)
    assert torch.equal(p["means"], torch.as_tensor(xyz)) and p["means"].dtype == torch.float32
    ls = torch.as_tensor(knn_log_scales(xyz.astype(np.float64)), dtype=torch.float32)
    torch.testing.assert_close(p["log_scales"], ls[:, None].expand(30, 3))
    assert torch.equal(p["quats"], torch.tensor([[1.0, 0, 0, 0]]).expand(30, 4))
    torch.testing.assert_close(m.opacities(), torch.full((30,), 0.1))
    torch.testing.assert_close(p["sh_dc"][:, 0], rgb_to_sh(torch.as_tensor(rgb)))
    assert not p["sh_rest"].any()


def test_from_points_colours_grey_and_uint8():
    xyz = np.eye(3) * 2
    grey = GaussianModel.from_points(xyz)
    assert not grey.params["sh_dc"].any()  # rgb 0.5 -> coefficient 0
    u8 = GaussianModel.from_points(xyz, np.array([[255, 0, 51]] * 3, np.uint8))
    torch.testing.assert_close(u8.params["sh_dc"][0, 0], rgb_to_sh(torch.tensor([1.0, 0, 0.2])))


@pytest.mark.parametrize("kwargs, match", [
    ({"xyz": np.zeros((1, 3))}, "at least 2"),
    ({"xyz": np.zeros((4, 2))}, "\\(N, 3\\)"),
    ({"xyz": np.full((4, 3), np.nan)}, "NaN"),
    ({"rgb": np.full((4, 3), 2.0)}, "outside \\[0, 1\\]"),
    ({"rgb": np.zeros((3, 3))}, "one row per point"),
    ({"opacity": 1.0}, "opacity"),
    ({"sh_degree": 4}, "sh_degree"),
])
def test_from_points_refuses_bad_input(kwargs, match):
    args = {"xyz": np.random.default_rng(0).normal(size=(4, 3)), "rgb": None, **kwargs}
    xyz = args.pop("xyz")
    with pytest.raises(MpgymError, match=match):
        GaussianModel.from_points(xyz, **args)


def test_random_is_seeded_inside_the_box_and_near_grey():
    a = GaussianModel.random(200, 1.3, seed=0)
    b = GaussianModel.random(200, 1.3, seed=0)
    c = GaussianModel.random(200, 0.5, seed=1, center=(1.0, 2.0, 3.0), sh_degree=1)
    assert all(torch.equal(a.params[k], b.params[k]) for k in PARAM_NAMES)
    assert a.num_gaussians == 200 and a.params["means"].abs().max() <= 1.3
    assert ((c.params["means"] - torch.tensor([1.0, 2, 3])).abs().max() <= 0.5)
    dc = a.params["sh_dc"]  # 3DGS: coefficients uniform in [0, 1/255)
    assert dc.min() >= -1e-6 and dc.max() < 1 / 255 + 1e-6
    with pytest.raises(MpgymError, match="n must be"):
        GaussianModel.random(0, 1.0, seed=0)


def test_from_mesh_samples_the_surface_with_vertex_colours():
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=3)
    mesh.visual.vertex_colors = np.tile([255, 0, 0, 255], (len(mesh.vertices), 1))
    m = GaussianModel.from_mesh(mesh, 300, seed=0)
    r = m.params["means"].norm(dim=1)
    assert m.num_gaussians == 300 and r.max() <= 1 + 1e-5 and r.min() > 0.98
    torch.testing.assert_close(m.params["sh_dc"][:, 0],
                               rgb_to_sh(torch.tensor([1.0, 0, 0])).expand(300, 3))
    again = GaussianModel.from_mesh(mesh, 300, seed=0)
    assert torch.equal(again.params["means"], m.params["means"])
    plain = GaussianModel.from_mesh(trimesh.creation.box(), 50, seed=1)
    assert not plain.params["sh_dc"].any()  # no colours: grey
    with pytest.raises(MpgymError, match="trimesh.Trimesh"):
        GaussianModel.from_mesh("mesh.obj", 10, seed=0)


class _BallField(nn.Module):
    """Density 100 inside a ball of radius 0.5 at c, colour base + 0.3 d (view-averages to base)."""

    def __init__(self, center=(0.2, 0.0, -0.1)):
        super().__init__()
        self.register_buffer("aabb", torch.tensor([-1.0, -1, -1, 1, 1, 1]))
        self.c = torch.tensor(center)
        self.base = torch.tensor([0.2, 0.4, 0.6])

    def density(self, x):
        return 100.0 * ((x - self.c).norm(dim=-1) < 0.5).float()

    def forward(self, x, d):
        return self.density(x), self.base + 0.3 * d


def test_from_nerf_samples_dense_points_with_view_averaged_colour():
    field = _BallField()
    m = GaussianModel.from_nerf(field, 500, seed=0, threshold=10.0, sh_degree=1)
    assert m.num_gaussians == 500 and m.max_sh_degree == 1
    assert ((m.params["means"] - field.c).norm(dim=1) < 0.5).all()
    torch.testing.assert_close(m.params["sh_dc"][:, 0], rgb_to_sh(field.base).expand(500, 3),
                               atol=1e-5, rtol=0)


def test_from_nerf_uses_the_occupancy_grid():
    from neural3d.render.volume import OccupancyGrid

    field = _BallField()
    grid = OccupancyGrid(field.aabb, 4)
    grid.binary.zero_()
    grid.binary[grid.cell_of(torch.tensor([[0.3, 0.1, 0.1]]))[0]] = True  # cell [0, 0.5]^3
    m = GaussianModel.from_nerf(field, 100, seed=1, grid=grid)
    x = m.params["means"]
    assert ((x >= 0) & (x <= 0.5)).all() and ((x - field.c).norm(dim=1) < 0.5).all()
    grid.binary.zero_()
    with pytest.raises(MpgymError, match="no occupied cell"):
        GaussianModel.from_nerf(field, 10, seed=0, grid=grid)


def test_from_nerf_refuses_an_untrained_field_and_bad_options():
    from neural3d.nerf.fields import HashField

    field = HashField(torch.tensor([-1.0, -1, -1, 1, 1, 1]), num_levels=2, log2_table_size=8,
                      base_resolution=4, max_resolution=8, hidden=8,
                      generator=torch.Generator().manual_seed(0))
    with pytest.raises(MpgymError, match="untrained or the threshold"):
        GaussianModel.from_nerf(field, 4, seed=0)  # starts near-empty (density ~0.02)
    with pytest.raises(MpgymError, match="aabb"):
        GaussianModel.from_nerf(_BallField(), 4, seed=0, aabb=[0, 0, 0, 0, 1, 1])
    with pytest.raises(MpgymError, match="threshold"):
        GaussianModel.from_nerf(_BallField(), 4, seed=0, threshold=-1.0)
    with pytest.raises(MpgymError, match="n must be"):
        GaussianModel.from_nerf(_BallField(), 0, seed=0)
