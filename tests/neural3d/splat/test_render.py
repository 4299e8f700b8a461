import math

import numpy as np
import pytest
import torch

from neural3d.cameras import Intrinsics, look_at
from neural3d.splat._reference import rasterize_reference
from neural3d.splat.model import GaussianModel
from neural3d.splat.project import project_gaussians
from neural3d.splat.render import render

INTR = Intrinsics(40, 36, 45.0, 45.0, 20.0, 18.0)
EYE = np.array([2.5, 1.0, 1.0])
C2W = torch.tensor(look_at(EYE), dtype=torch.float32)


def _model(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * 1.2
    means[0] = torch.tensor(EYE * 1.3, dtype=torch.float32)  # behind the camera
    log_scales = torch.log(torch.rand(n, 3, generator=g) * 0.12 + 0.03)
    log_scales[1, 2] = -20.0  # degenerate: a flat disc
    quats = torch.randn(n, 4, generator=g)
    model = GaussianModel({
        "means": means,
        "log_scales": log_scales,
        "quats": quats,
        "opacity_logits": torch.randn(n, generator=g) * 1.5,
        "sh_dc": torch.randn(n, 1, 3, generator=g) * 0.8,
        "sh_rest": torch.randn(n, 3, 3, generator=g) * 0.2,
    }, max_sh_degree=1, sh_degree=1)
    return model


def _reference_render(model, c2w, intr, background, mode="classic"):
    p = project_gaussians(model.params["means"], model.scales(), model.rotations(), c2w, intr,
                          antialiased=mode == "antialiased")
    colors = model.colors(c2w[:3, 3])
    opac = model.opacities() if p.compensation is None else model.opacities() * p.compensation
    return rasterize_reference(p.means2d, p.conics, colors, opac, p.depths, p.radii,
                               intr.width, intr.height, background=background)


def _loss(image, alpha, seed=3):
    g = torch.Generator().manual_seed(seed)
    return ((image * torch.randn(image.shape, generator=g)).sum()
            + (alpha * torch.randn(alpha.shape, generator=g)).sum())


@pytest.mark.parametrize("mode", ["classic", "antialiased"])
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_pipeline_gradients_match_reference(backend, mode):
    bg = torch.tensor([0.1, 0.5, 0.9])
    fast, ref = _model(), _model()
    out = render(fast, C2W, INTR, background=bg, backend=backend, rasterize_mode=mode)
    img_r, alpha_r = _reference_render(ref, C2W, INTR, bg, mode)
    torch.testing.assert_close(out.image, img_r, rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(out.alpha, alpha_r, rtol=1e-5, atol=2e-6)
    _loss(out.image, out.alpha).backward()
    _loss(img_r, alpha_r).backward()
    for name, p in fast.params.items():
        want = ref.params[name].grad
        scale = float(want.abs().max())
        assert scale > 0, name
        torch.testing.assert_close(p.grad, want, rtol=1e-4, atol=1e-4 * scale, msg=name)
    assert not out.visible[0] and out.radii[0] == 0  # behind the camera
    assert out.visible[1]
    assert float(fast.params["means"].grad[0].abs().sum()) == 0.0
    # the antialiased factor density control reads: the projection's compensation
    if mode == "classic":
        assert out.opacity_factor is None
    else:
        comp = project_gaussians(ref.params["means"], ref.scales(), ref.rotations(), C2W, INTR,
                                 antialiased=True).compensation.detach()
        assert not out.opacity_factor.requires_grad
        vis = out.visible  # culled Gaussians' factors are not used
        torch.testing.assert_close(out.opacity_factor[vis], comp[vis], rtol=1e-5, atol=1e-7)
        assert float(out.opacity_factor.min()) >= 0 and float(out.opacity_factor.max()) <= 1


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_means2d_grad_is_kept_for_density_control(backend):
    model = _model()
    out = render(model, C2W, INTR, backend=backend)
    out.image.sum().backward()
    assert out.means2d.grad is not None and out.means2d.grad.shape == (40, 2)
    assert float(out.means2d.grad[~out.visible].abs().sum()) == 0.0
    assert float(out.means2d.grad[out.visible].abs().sum()) > 0.0


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_depth_of_a_fronto_parallel_layer(backend):
    """Gaussians all at distance d on the optical axis's normal plane: expected depth is d."""
    d, n = 3.0, 25
    g = torch.Generator().manual_seed(4)
    xy = (torch.rand(n, 2, generator=g) - 0.5) * 2.0
    means = torch.cat([xy, torch.full((n, 1), -d)], dim=-1)  # camera at origin looks down -z
    model = GaussianModel({
        "means": means,
        "log_scales": torch.full((n, 3), math.log(0.15)),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        "opacity_logits": torch.zeros(n),
        "sh_dc": torch.zeros(n, 1, 3),
        "sh_rest": torch.zeros(n, 0, 3),
    }, max_sh_degree=0)
    out = render(model, torch.eye(4), INTR, depth=True, backend=backend)
    covered = out.alpha > 0
    assert covered.float().mean() > 0.5
    # float32 1 - T loses digits where alpha is tiny
    torch.testing.assert_close(out.depth[covered], torch.full_like(out.depth[covered], d),
                               rtol=1e-4, atol=0)
    assert float(out.depth[~covered].detach().abs().sum()) == 0.0
    assert out.image.shape == (36, 40, 3)
    # a depth loss reaches the means' z through the blended depth channel
    out.depth[covered].sum().backward()
    assert float(model.params["means"].grad[:, 2].abs().sum()) > 0


def test_render_without_grad_is_the_same():
    model = _model()
    with torch.no_grad():
        a = render(model, C2W, INTR, backend="numba")
    b = render(model, C2W, INTR, backend="torch")
    torch.testing.assert_close(a.image, b.image.detach(), rtol=1e-5, atol=2e-6)
    assert a.depth is None


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_compiled_projection_and_colours_match_torch(degree):
    """Without gradients ``render`` projects and colours in one compiled pass; same results."""
    from neural3d.splat.render import _fused_projection

    g = torch.Generator().manual_seed(degree)
    model = _model(n=300, seed=degree)
    model.params["sh_rest"] = torch.randn(300, 15, 3, generator=g) * 0.3
    model.max_sh_degree, model.sh_degree = 3, degree
    with torch.no_grad():
        proj, colors, opac = _fused_projection(model, C2W, INTR, "auto")
        ref = project_gaussians(model.params["means"], model.scales(), model.rotations(), C2W,
                                INTR)
        for name in ("means2d", "conics", "depths", "cov2d"):
            torch.testing.assert_close(getattr(proj, name), getattr(ref, name), rtol=1e-5,
                                       atol=1e-5)
        # a radius may differ by one only where 3 sqrt(lambda) is within rounding of an integer
        assert int((proj.radii != ref.radii).sum()) <= 1
        assert int(ref.radii[0]) == 0 and int(proj.radii[0]) == 0  # behind the camera: culled
        torch.testing.assert_close(colors, model.colors(C2W[:3, 3]), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(opac, model.opacities())
        fused = render(model, C2W, INTR, backend="numba")
    unfused = render(model, C2W, INTR, backend="numba")  # gradients on: the torch functions
    torch.testing.assert_close(fused.image, unfused.image.detach(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("degree, mode", [(0, "classic"), (1, "classic"), (2, "classic"),
                                          (3, "classic"), (0, "antialiased"), (3, "antialiased")])
def test_compiled_projection_gradients_match_torch_autograd(degree, mode):
    """The compiled backward against torch's autograd through the same formulas in float64, on
    Gaussians behind the camera, far outside the view (the Jacobian's clamp), flat, and with
    random quaternions, at every SH degree (higher coefficients get zero gradient), in both
    rasterize modes (the antialiased opacity factor's gradient reaches the scales, rotations
    and means)."""
    from neural3d.splat.render import _fused_projection

    g = torch.Generator().manual_seed(10 + degree)
    n = 300
    model = _model(n=n, seed=degree)
    model.params["sh_rest"] = torch.nn.Parameter(torch.randn(n, 15, 3, generator=g) * 0.3)
    model.max_sh_degree, model.sh_degree = 3, degree
    with torch.no_grad():
        # beyond 1.3 tan(fov / 2) to the camera's right and up: clamped in J
        model.params["means"][5:10] += 4.0 * C2W[:3, 0]
        model.params["means"][10:15] += 4.0 * C2W[:3, 1]
    weights = [torch.randn(s, generator=g, dtype=torch.float64)
               for s in [(n, 2), (n, 3), (n,), (n, 3), (n,)]]
    antialiased = mode == "antialiased"
    proj, colors, opac = _fused_projection(model, C2W, INTR, "auto", antialiased=antialiased)
    assert colors.grad_fn is not None
    outputs = (proj.means2d, proj.conics, proj.depths, colors, opac)
    sum((o.double() * w).sum() for o, w in zip(outputs, weights, strict=True)).backward()

    ref = GaussianModel({k: v.detach().double() for k, v in model.params.items()},
                        max_sh_degree=3, sh_degree=degree)
    p = project_gaussians(ref.params["means"], ref.scales(), ref.rotations(), C2W.double(), INTR,
                          antialiased=antialiased)
    opac_ref = ref.opacities() * (p.compensation if antialiased else 1.0)
    lim_x, lim_y = 1.3 * 0.5 * INTR.width / INTR.fx, 1.3 * 0.5 * INTR.height / INTR.fy
    assert bool(((p.means2d[5:10, 0] - INTR.cx) / INTR.fx > lim_x).all())  # clamped
    assert bool(((INTR.cy - p.means2d[10:15, 1]) / INTR.fy > lim_y).all())  # (y down)
    assert int(p.radii[0]) == 0  # behind the camera
    torch.testing.assert_close(opac.detach().double(), opac_ref.detach(), rtol=1e-5, atol=1e-7)
    outputs = (p.means2d, p.conics, p.depths, ref.colors(C2W[:3, 3].double()), opac_ref)
    sum((o * w).sum() for o, w in zip(outputs, weights, strict=True)).backward()
    for name, param in model.params.items():
        want = ref.params[name].grad
        want = torch.zeros_like(param.grad.double()) if want is None else want
        scale = float(want.abs().max()) + 1e-12
        err = float((param.grad.double() - want).abs().max()) / scale
        assert err < 1e-5, (name, err)
    if degree < 3:
        assert float(model.params["sh_rest"].grad[:, (degree + 1) ** 2 - 1:].abs().max()) == 0


def test_compiled_projection_is_not_used_where_it_does_not_apply():
    from neural3d.splat.render import _fused_projection

    model = _model()
    with torch.no_grad():
        assert _fused_projection(model, C2W, INTR, "torch") is None
        assert _fused_projection(model.to(torch.float64), C2W, INTR, "auto") is None


def test_antialiased_mode_keeps_each_footprints_mass():
    """An isotropic Gaussian on the optical axis: the antialiased factor is the closed form
    sqrt(det(Sigma) / det(Sigma + 0.3 I)), so the image integral of its alpha is the opacity times
    the undilated footprint's area 2 pi sqrt(det Sigma), where classic mode adds the dilation's
    (up to the 1/255 and 3-sigma cut-offs, ~1% here)."""
    z, o = 3.0, 0.8
    intr = Intrinsics(64, 64, 60.0, 60.0, 32.0, 32.0)
    masses = {}
    for s in (0.004, 0.1):  # a sub-pixel Gaussian, and one ~2 px wide
        model = GaussianModel({
            "means": torch.tensor([[0.0, 0.0, -z]]), "log_scales": torch.full((1, 3), math.log(s)),
            "quats": torch.tensor([[1.0, 0, 0, 0]]),
            "opacity_logits": torch.tensor([math.log(o / (1 - o))]),
            "sh_dc": torch.zeros(1, 1, 3), "sh_rest": torch.zeros(1, 0, 3)}, max_sh_degree=0)
        var = (60.0 * s / z) ** 2
        rho = var / (var + 0.3)
        p = project_gaussians(model.params["means"], model.scales(), model.rotations(),
                              torch.eye(4), intr, antialiased=True)
        torch.testing.assert_close(p.compensation, torch.tensor([rho]))
        for mode in ("classic", "antialiased"):
            for backend in ("numba", "torch"):
                with torch.no_grad():
                    out = render(model, torch.eye(4), intr, backend=backend, rasterize_mode=mode)
                masses[s, mode, backend] = float(out.alpha.sum())
    area = 2 * math.pi * ((60.0 * 0.1 / z) ** 2 + 0.3)  # the ~2-px one: sampled finely enough
    rho = (60.0 * 0.1 / z) ** 2 / ((60.0 * 0.1 / z) ** 2 + 0.3)
    for backend in ("numba", "torch"):
        assert masses[0.1, "classic", backend] == pytest.approx(o * area, rel=0.03)
        assert masses[0.1, "antialiased", backend] == pytest.approx(o * rho * area, rel=0.03)
        # the sub-pixel one (rho ~0.02) fades with its area in antialiased mode, not in classic
        assert masses[0.004, "antialiased", backend] < 0.03 * masses[0.004, "classic", backend]


def test_an_unknown_rasterize_mode_is_refused():
    from mpgym import MpgymError

    with pytest.raises(MpgymError, match="rasterize_mode must be one of classic, antialiased"):
        render(_model(), C2W, INTR, rasterize_mode="mip")
