"""Adaptive density control: clone/split/prune on hand-built models, Adam rows, opacity reset."""

import math
import types

import pytest
import torch

from mpgym.errors import MpgymError
from neural3d.splat.model import GaussianModel, quat_to_rotmat
from neural3d.splat.presets import SplatConfig
from neural3d.splat.strategy import (
    DensityControl,
    camera_extent,
    duplicate,
    effective_reset_caps,
    remove,
    reset_opacity,
    split,
)

EXTENT = 10.0  # percent_dense 0.01 -> clone below 0.1, world prune above 1.0


def _model():
    """Four Gaussians: 0 small (clone), 1 large (split), 2 quiet, 3 transparent (pruned)."""
    q = torch.tensor([[1.0, 0, 0, 0], [0.9, 0.1, 0.3, -0.2], [1, 0, 0, 0], [1, 0, 0, 0]])
    t = {
        "means": torch.arange(12, dtype=torch.float32).reshape(4, 3),
        "log_scales": torch.tensor([0.05, 0.5, 0.05, 0.05]).log()[:, None].repeat(1, 3),
        "quats": q,
        "opacity_logits": torch.logit(torch.tensor([0.5, 0.6, 0.7, 0.001])),
        "sh_dc": torch.arange(12, dtype=torch.float32).reshape(4, 1, 3) / 10,
        "sh_rest": torch.arange(4 * 15 * 3, dtype=torch.float32).reshape(4, 15, 3) / 100,
    }
    t["log_scales"][1] = torch.tensor([0.5, 0.2, 0.3]).log()  # anisotropic, largest 0.5
    return GaussianModel(t, max_sh_degree=3)


def _adam(model):
    """Adam with named groups; moments set to the row index (+0.5 for exp_avg_sq)."""
    groups = [{"params": [p], "name": k, "lr": 1e-3} for k, p in model.params.items()]
    opt = torch.optim.Adam(groups, eps=1e-15)
    for g in opt.param_groups:
        p = g["params"][0]
        rows = torch.arange(len(p), dtype=torch.float32).view(-1, *([1] * (p.dim() - 1)))
        opt.state[p] = {"step": torch.tensor(7.0), "exp_avg": rows.expand_as(p).clone(),
                        "exp_avg_sq": (rows + 0.5).expand_as(p).clone()}
    return opt


def _strategy(**kw):
    cfg = SplatConfig(**{"densify_from": 0, "densify_every": 100, "opacity_reset_every": 3000,
                         **kw})
    return DensityControl(cfg, EXTENT, generator=torch.Generator().manual_seed(0))


def _stats(s, grads, counts=(1, 1, 1, 1), radii=(1, 1, 1, 1)):
    s.state = {"grad2d": torch.tensor(grads, dtype=torch.float32),
               "count": torch.tensor(counts, dtype=torch.float32),
               "max_radii": torch.tensor(radii, dtype=torch.float32)}


def _check_optimizer_follows(model, opt):
    for g in opt.param_groups:
        assert g["params"][0] is model.params[g["name"]]
        assert opt.state[g["params"][0]]["exp_avg"].shape == model.params[g["name"]].shape


def test_clone_split_prune_counts_values_and_adam_rows():
    model, s = _model(), _strategy()
    opt = _adam(model)
    before = {k: v.detach().clone() for k, v in model.params.items()}
    # mean gradient 4e-4/2 = 2e-4 (reaches the threshold) for 0; 1 reaches it; 2 is below
    _stats(s, [4e-4, 3e-4, 1e-4, 9e-4], counts=(2, 1, 1, 1))
    gen = torch.Generator().manual_seed(0)
    eps = torch.randn(2, 3, generator=gen)  # what split draws for its one parent, two children
    report = s.densify(model, opt, prune_big=False)
    assert (report.cloned, report.split, report.pruned) == (2, 1, 2)  # 3 cloned, both pruned
    # order: kept [0, 2, 3], clones [0', 3'], children [1a, 1b]; prune removes 3 and 3'
    assert model.num_gaussians == 5
    order = [0, 2, 0]
    for k in model.params:
        assert torch.equal(model.params[k][:3].detach(), before[k][order]), k
    # children: parent's colour, opacity and rotation, scales / 1.6, means from the parent's
    # Gaussian: mu + R (s * eps)
    kids = slice(3, 5)
    for k in ("sh_dc", "sh_rest", "opacity_logits", "quats"):
        assert torch.equal(model.params[k][kids].detach(), before[k][[1, 1]]), k
    s1 = before["log_scales"][1].exp()
    torch.testing.assert_close(model.params["log_scales"][kids].detach().exp(),
                               (s1 / 1.6).expand(2, 3))
    offsets = (quat_to_rotmat(before["quats"][1])[None] @ (s1 * eps)[..., None])[..., 0]
    torch.testing.assert_close(model.params["means"][kids].detach(), before["means"][1] + offsets)
    # Adam: kept rows keep their moments (row index 0, 2), clones and children start at zero
    _check_optimizer_follows(model, opt)
    for g in opt.param_groups:
        st = opt.state[g["params"][0]]
        first = st["exp_avg"].reshape(5, -1)[:, 0]
        assert first.tolist() == [0.0, 2.0, 0.0, 0.0, 0.0], g["name"]
        assert st["exp_avg_sq"].reshape(5, -1)[:, 0].tolist() == [0.5, 2.5, 0.0, 0.0, 0.0]
        assert float(st["step"]) == 7.0
    # statistics restart at zero for the new set
    assert all(v.shape == (5,) and not v.any() for v in s.state.values())
    # and Adam still steps on the new tensors
    loss = sum(p.sum() for p in model.params.values())
    loss.backward()
    opt.step()


def test_world_and_screen_pruning_only_after_first_reset():
    model, s = _model(), _strategy(prune_world_fraction=0.04)  # prune above 0.4: Gaussian 1
    _stats(s, [0, 0, 0, 0], radii=(1, 1, 25, 1))  # 2 was 25 px on screen
    assert s.densify(model, None, prune_big=False).pruned == 1  # only the transparent one
    model, s = _model(), _strategy(prune_world_fraction=0.04)
    _stats(s, [0, 0, 0, 0], radii=(1, 1, 25, 1))
    r = s.densify(model, None, prune_big=True)
    assert r.pruned == 3 and model.num_gaussians == 1
    torch.testing.assert_close(model.params["means"].detach(), torch.tensor([[0.0, 1, 2]]))
    model, s = _model(), _strategy(prune_world_fraction=0.04, prune_screen_px=0)
    _stats(s, [0, 0, 0, 0], radii=(1, 1, 25, 1))
    assert s.densify(model, None, prune_big=True).pruned == 2  # screen test off


def test_max_gaussians_keeps_largest_gradients():
    model, s = _model(), _strategy(max_gaussians=5)  # room for one new Gaussian
    _stats(s, [3e-4, 5e-4, 1e-4, 1e-4])
    r = s.densify(model, None, prune_big=False)
    assert (r.cloned, r.split) == (0, 1)  # 1 has the larger gradient


def test_opacity_reset_value_and_moments():
    model = _model()
    opt = _adam(model)
    reset_opacity(model, opt)
    torch.testing.assert_close(model.opacities().detach(), torch.tensor([0.01, 0.01, 0.01, 0.001]))
    _check_optimizer_follows(model, opt)
    st = opt.state[model.params["opacity_logits"]]
    assert not st["exp_avg"].any() and not st["exp_avg_sq"].any()
    assert opt.state[model.params["means"]]["exp_avg"][3, 0] == 3.0  # others untouched


def test_helpers_keep_optimizer_rows():
    model = _model()
    opt = _adam(model)
    duplicate(model, opt, torch.tensor([False, True, False, True]))
    remove(model, opt, torch.tensor([True, False, False, False, False, False]))
    split(model, opt, torch.tensor([False, False, True, False, False]))
    # [0,1,2,3,1',3'] -> [1,2,3,1',3'] -> [1,2,1',3', 3a, 3b]
    assert model.num_gaussians == 6
    _check_optimizer_follows(model, opt)
    got = opt.state[model.params["sh_rest"]]["exp_avg"][:, 0, 0].tolist()
    assert got == [1.0, 2.0, 0.0, 0.0, 0.0, 0.0]
    torch.testing.assert_close(model.params["sh_dc"][[0, 2]].detach(),
                               torch.tensor([[[0.3, 0.4, 0.5]]] * 2))


def _out(grad, radii, visible, h=20, w=40, factor=None):
    means2d = torch.zeros(len(grad), 2, requires_grad=True)
    (means2d * torch.tensor(grad)).sum().backward()
    return types.SimpleNamespace(means2d=means2d, radii=torch.tensor(radii, dtype=torch.int32),
                                 visible=torch.tensor(visible), image=torch.zeros(h, w, 3),
                                 opacity_factor=None if factor is None else torch.tensor(factor))


def test_accumulates_ndc_gradient_norm_of_visible_gaussians():
    s = _strategy()
    s.accumulate(_out([[1.0, 0.0], [0.3, 0.4], [5.0, 5.0]], [3, 4, 0], [True, True, False]))
    s.accumulate(_out([[0.0, 1.0], [0.0, 0.0], [5.0, 5.0]], [2, 9, 0], [True, True, False]))
    # pixel gradient times (W/2, H/2) = (20, 10)
    torch.testing.assert_close(s.state["grad2d"], torch.tensor([20.0 + 10.0, math.hypot(6, 4),
                                                                0.0]))
    assert s.state["count"].tolist() == [2, 2, 0]
    assert s.state["max_radii"].tolist() == [3, 9, 0]
    assert s.state["max_factor"].tolist() == [0, 0, 0]  # classic renders carry no factor


def test_pre_backward_retains_the_2d_mean_gradient():
    s = _strategy()
    leaf = torch.ones(3, 2, requires_grad=True)
    out = types.SimpleNamespace(means2d=leaf * 2)
    s.step_pre_backward(out)
    out.means2d.sum().backward()
    assert out.means2d.grad is not None


@pytest.mark.parametrize(("step", "densified", "reset"), [
    (100, False, False), (200, True, False), (250, False, False), (3000, True, True),
    (15_000, False, False)])
def test_schedule_of_post_backward(step, densified, reset, monkeypatch):
    s = DensityControl(SplatConfig(densify_from=100, background="black"), EXTENT)
    calls = []
    monkeypatch.setattr(s, "densify", lambda m, o, prune_big: calls.append(prune_big) or
                        types.SimpleNamespace(reset=False))
    model = _model()
    out = _out([[0.0, 0.0]] * 4, [1] * 4, [True] * 4)
    r = s.step_post_backward(step, model, None, out)
    # the big-Gaussian pruning starts only after the first reset (3000 is not > 3000)
    assert calls == ([False] if densified else []) and bool(r.reset) == reset


def test_white_background_resets_at_densify_from():
    s = DensityControl(SplatConfig(densify_from=100, background="white"), EXTENT)
    r = s.step_post_backward(100, _model(), None, _out([[0.0, 0.0]] * 4, [1] * 4, [True] * 4))
    assert r.reset


def test_camera_extent():
    c2w = torch.eye(4).repeat(2, 1, 1)
    c2w[0, 0, 3], c2w[1, 0, 3] = 4.0, -4.0
    assert camera_extent(c2w) == pytest.approx(4.4)


def test_per_gaussian_reset_caps():
    torch.testing.assert_close(effective_reset_caps(torch.tensor([1.0, 0.1, 0.005, 0.0])),
                               torch.tensor([0.01, 0.1, 2.0, 0.01]))
    model = _model()  # opacities 0.5, 0.6, 0.7, 0.001
    reset_opacity(model, None, torch.tensor([0.01, 0.2, 2.0, 0.5]))
    torch.testing.assert_close(model.opacities().detach(), torch.tensor([0.01, 0.2, 0.7, 0.001]))


def _thin_scene():
    """One round Gaussian and one sub-pixel-thin one (0.002 across, 1 m long) seen from 4 m."""
    t = {"means": torch.tensor([[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0]]),
         "log_scales": torch.tensor([[0.1, 0.1, 0.1], [0.002, 0.5, 0.002]]).log(),
         "quats": torch.tensor([[1.0, 0, 0, 0]] * 2),
         "opacity_logits": torch.logit(torch.tensor([0.9, 0.9])),
         "sh_dc": torch.zeros(2, 1, 3), "sh_rest": torch.zeros(2, 15, 3)}
    c2w = torch.eye(4)
    c2w[2, 3] = 4.0  # OpenGL: looking down -z at the origin
    return GaussianModel(t, max_sh_degree=3), c2w


@pytest.mark.parametrize("mode", ["raw", "effective"])
@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_effective_reset_keeps_thin_gaussians_above_the_alpha_cut(mode, backend):
    from neural3d.cameras import Intrinsics
    from neural3d.splat.rasterize import MIN_ALPHA
    from neural3d.splat.render import render

    model, c2w = _thin_scene()
    intr = Intrinsics.from_fov(math.radians(40), 64)
    s = DensityControl(SplatConfig(opacity_reset=mode, background="black"), EXTENT)
    out = render(model, c2w, intr, rasterize_mode="antialiased", backend=backend)
    factor = out.opacity_factor
    assert factor[0] > 0.9 and factor[1] < 0.1  # the thin one loses most of its alpha
    out.image.sum().backward()
    s.accumulate(out)
    s.reset_opacity(model, None)
    peak = model.opacities().detach() * factor
    if mode == "raw":  # 3DGS: opacity 0.01, so the thin Gaussian's alpha is under the cut
        torch.testing.assert_close(model.opacities().detach(), torch.tensor([0.01, 0.01]))
        assert peak[1] < MIN_ALPHA
    else:  # each peak alpha is 0.01
        torch.testing.assert_close(peak, torch.tensor([0.01, 0.01]))
    assert not s.state["max_factor"].any()  # the record restarts after a reset
    out = render(model, c2w, intr, rasterize_mode="antialiased", backend=backend)
    out.image.sum().backward()
    got_gradient = bool(model.params["opacity_logits"].grad[1] != 0)
    assert got_gradient == (mode == "effective")


def test_factor_record_follows_clone_split_prune_and_outlives_densification():
    model, s = _model(), _strategy()
    _stats(s, [4e-4, 3e-4, 1e-4, 9e-4], counts=(2, 1, 1, 1))
    s.state["max_factor"] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    s.densify(model, None, prune_big=False)
    # kept [0, 2, 3], clones [0', 3'], children [1a, 1b]; 3 and 3' pruned
    assert s.state["max_factor"].tolist() == pytest.approx([0.1, 0.3, 0.1, 0.2, 0.2])
    assert not s.state["grad2d"].any() and not s.state["count"].any()


def test_loads_checkpoint_statistics_without_the_factor_record():
    s = _strategy()
    old = {k: torch.ones(4) for k in ("grad2d", "count", "max_radii")}
    s.load_state_dict(old, 4)
    assert s.state["max_factor"].tolist() == [0, 0, 0, 0]
    with pytest.raises(MpgymError, match="max_factor"):
        s.load_state_dict({**old, "max_factor": torch.ones(3)}, 4)
