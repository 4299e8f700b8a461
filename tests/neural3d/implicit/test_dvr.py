import pytest
import torch

from neural3d.render.dvr import find_surface, render_dvr, surface_depth


def _setup():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(),
                              torch.nn.Linear(16, 1)).double()

    def field(p):  # an occupancy logit: a sphere of radius 0.4, perturbed by the network
        return 0.4 - p.norm(dim=-1) + 0.1 * net(p).squeeze(-1)

    o = torch.tensor([[0.0, 0.0, 2.0], [0.1, 0.05, 2.0], [1.5, 0.2, 0.1]], dtype=torch.float64)
    w = -o / o.norm(dim=-1, keepdim=True)
    w = w + torch.tensor([[0.0, 0.02, 0], [0.01, 0, 0], [0, 0, 0.03]], dtype=torch.float64)
    return net, field, o, w / w.norm(dim=-1, keepdim=True)


def test_secant_finds_exact_sphere_depth():
    o = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 2.0], [0.0, 0.3, 2.0]], dtype=torch.float64)
    w = torch.tensor([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]], dtype=torch.float64)
    s = find_surface(lambda p: 0.5 - p.norm(dim=-1), o, w, near=0.5, far=3.0, n_steps=32,
                     n_secant=8)
    assert s.hit.tolist() == [True, False, True]
    assert s.depth[0].item() == pytest.approx(1.5, abs=1e-10)
    assert s.depth[2].item() == pytest.approx(2.0 - (0.25 - 0.09) ** 0.5, abs=1e-8)


def test_implicit_gradient_matches_finite_differences():
    net, field, o, w = _setup()
    params = list(net.parameters())
    c = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    kw = dict(near=0.5, far=3.0, n_steps=64, n_secant=30)
    d, hit = surface_depth(field, params, o, w, **kw)
    assert hit.all()
    (d * c).sum().backward()
    eps = 1e-6
    for p in params:
        for idx in [(0,) * p.dim(), tuple(s - 1 for s in p.shape)]:
            with torch.no_grad():
                p[idx] += eps
                dp, _ = surface_depth(field, params, o, w, **kw)
                p[idx] -= 2 * eps
                dm, _ = surface_depth(field, params, o, w, **kw)
                p[idx] += eps
            fd = ((dp - dm) * c).sum() / (2 * eps)
            assert p.grad[idx].item() == pytest.approx(fd.item(), rel=1e-5, abs=1e-9)


def test_render_colour_gradient_flows_to_occupancy_params():
    net, field, o, w = _setup()
    colour = torch.nn.Linear(3, 3).double()
    out = render_dvr(field, lambda p: torch.sigmoid(colour(p)), list(net.parameters()), o, w,
                     near=0.5, far=3.0)
    out.rgb.sum().backward()
    assert out.hit.all()
    assert net[0].weight.grad.abs().sum() > 0 and colour.weight.grad.abs().sum() > 0
