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


def test_fit_dvr_learns_a_capsule_silhouette_from_renders():
    """100 steps on 12 ray-cast 32x32 views: the sphere prior (IoU ~0.48) becomes the capsule."""
    import math

    import numpy as np

    from neural3d.cameras import Intrinsics, pixel_rays, sphere_poses, turntable_poses
    from neural3d.data.multiview import render_views
    from neural3d.data.scenes import scene_from_mesh
    from neural3d.mesh import extract_mesh
    from neural3d.metrics import volumetric_iou
    from neural3d.render.dvr import DVRConfig, fit_dvr
    from neural3d.shapes import get_shape

    torch.set_num_threads(1)
    scene = scene_from_mesh(extract_mesh(get_shape("capsule"), 0.55, 64, normals="mesh"))
    intr = Intrinsics.from_fov(math.radians(40), 32, 32)
    train_c2w = sphere_poses(12, 1.6, rng=np.random.default_rng(0), upper=False)
    train = torch.from_numpy(render_views(scene, train_c2w, intr))
    test_c2w = turntable_poses(3, 1.6, math.radians(20))
    test = render_views(scene, test_c2w, intr)

    def silhouette_iou(fields):
        ious = []
        for c2w, img in zip(test_c2w, test, strict=True):
            o, d = pixel_rays(torch.from_numpy(c2w).float(), intr)
            hit = find_surface(fields.occupancy, o.reshape(-1, 3), d.reshape(-1, 3), near=0.5,
                               far=2.8, n_steps=64).hit
            ious.append(volumetric_iou(hit.numpy(), img[..., 3].reshape(-1) > 0.5))
        return float(np.mean(ious))

    c2w = torch.from_numpy(train_c2w)
    start, _ = fit_dvr(train, c2w, intr, DVRConfig(iterations=0), progress_bar=False)
    fields, losses = fit_dvr(train, c2w, intr, DVRConfig(iterations=100, rays=256),
                             progress_bar=False)
    assert silhouette_iou(start) < 0.6
    assert silhouette_iou(fields) > 0.85
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])


def test_the_iso_level_moves_the_surface():
    """``level`` is the iso-value: the field 0.5 - |p| crosses 0.1 on the sphere of radius 0.4."""
    o = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64)
    w = torch.tensor([[0.0, 0.0, -1.0]], dtype=torch.float64)
    for level, radius in ((0.0, 0.5), (0.1, 0.4), (-0.2, 0.7)):
        s = find_surface(lambda p: 0.5 - p.norm(dim=-1), o, w, near=0.5, far=3.0, n_steps=32,
                         level=level)
        assert s.hit.all() and s.depth.item() == pytest.approx(2.0 - radius, abs=1e-10)
