import math

import pytest
import torch

from neural3d.render.volume import (
    OccupancyGrid,
    composite,
    intersect_aabb,
    render_weights,
    sample_pdf,
    sample_stratified,
)


def test_weights_sum_to_opacity_and_transmittance():
    g = torch.Generator().manual_seed(0)
    sig = torch.rand(64, 32, generator=g) * 5
    t0, t1 = sample_stratified(torch.full((64,), 1.0), torch.full((64,), 3.0), 32, generator=g)
    out = composite(sig, torch.rand(64, 32, 3, generator=g), t0, t1)
    torch.testing.assert_close(out.weights.sum(-1), out.opacity)
    tau = (sig * (t1 - t0)).sum(-1)
    torch.testing.assert_close(out.opacity, 1 - torch.exp(-tau))  # 1 - T_{S+1}
    w, T = render_weights(sig, t1 - t0)
    torch.testing.assert_close(T[:, 1:], T[:, :-1] * torch.exp(-sig[:, :-1] * (t1 - t0)[:, :-1]))


def test_docstring_examples():
    w, T = render_weights(torch.tensor([[0.0, 1e9]]), torch.tensor([[1.0, 1.0]]))
    assert w.tolist() == [[0.0, 1.0]] and T.tolist() == [[1.0, 1.0]]
    out = composite(torch.tensor([[1.0]]), torch.ones(1, 1, 3), torch.zeros(1, 1), torch.ones(1, 1))
    assert out.opacity.item() == pytest.approx(1 - math.exp(-1))


@pytest.mark.parametrize("sigma", [0.5, 3.0])
def test_constant_slab_matches_closed_form(sigma):
    # density sigma on [a, b], zero elsewhere; colour c; white background
    a, b, S = 1.0, 2.5, 4000
    t = torch.linspace(0.0, 4.0, S + 1, dtype=torch.float64)
    t0, t1 = t[:-1][None], t[1:][None]
    mid = 0.5 * (t0 + t1)
    sig = torch.where((mid > a) & (mid < b), sigma, 0.0)
    c = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64)
    out = composite(sig, c.expand(1, S, 3), t0, t1, background=1.0)
    L = b - a
    opacity = 1 - math.exp(-sigma * L)
    # int_a^b t sigma e^{-sigma (t - a)} dt
    depth = a * opacity + 1 / sigma - math.exp(-sigma * L) * (L + 1 / sigma)
    assert out.opacity.item() == pytest.approx(opacity, rel=1e-6)
    assert out.depth.item() == pytest.approx(depth, rel=1e-5)
    torch.testing.assert_close(out.rgb[0], c * opacity + (1 - opacity))


def test_intersect_aabb():
    aabb = torch.tensor([-1.0, -1, -1, 1, 1, 1])
    o = torch.tensor([[0.0, 0, 5], [3.0, 3, 5], [0, 0, 0]])
    d = torch.tensor([[0.0, 0, -1], [0.0, 0, -1], [1.0, 0, 0]])
    near, far = intersect_aabb(o, d, aabb)
    assert near[0] == pytest.approx(4) and far[0] == pytest.approx(6)
    assert far[1] <= near[1]  # miss
    assert near[2] == 0 and far[2] == pytest.approx(1)  # starts inside


def test_sample_pdf_follows_weights():
    bins = torch.linspace(0, 1, 11)[None].repeat(2, 1)
    w = torch.zeros(2, 10)
    w[:, 7] = 1.0
    s = sample_pdf(bins, w, 200, generator=torch.Generator().manual_seed(0))
    assert ((s >= 0.7) & (s <= 0.8)).float().mean() > 0.98
    assert torch.all(s[:, 1:] >= s[:, :-1])


def _ball_density(p):
    return torch.where(p.norm(dim=-1) < 0.3, 100.0, 0.0)


def test_occupancy_grid_never_skips_dense_cells():
    aabb = torch.tensor([-1.0, -1, -1, 1, 1, 1])
    step = 0.01
    g = torch.Generator().manual_seed(0)
    # cell-aligned density: constant per cell, so one sample per cell sees it exactly
    cube = lambda p: torch.where((p.abs() < 0.25).all(-1), 50.0, 0.0)  # noqa: E731
    grid = OccupancyGrid(aabb, 16)
    grid.update(cube, step, warmup=True, generator=g)
    pts = torch.rand(50000, 3, generator=g) * 2 - 1
    dense = 1 - torch.exp(-cube(pts) * step) > grid.threshold
    assert dense.any() and grid.occupied(pts)[dense].all()
    assert grid.occupancy_fraction == pytest.approx(64 / 16**3)
    # a ball not aligned with cells: the one-cell dilation keeps every point inside it
    grid = OccupancyGrid(aabb, 16, dilation=1)
    for _ in range(3):
        grid.update(_ball_density, step, warmup=False, generator=g)
    grid.update(_ball_density, step, warmup=True, generator=g)
    dense = 1 - torch.exp(-_ball_density(pts) * step) > grid.threshold
    assert grid.occupied(pts)[dense].all()
    assert grid.occupancy_fraction < 0.1  # and it does prune


def test_occupancy_grid_ema_decays():
    aabb = torch.tensor([-1.0, -1, -1, 1, 1, 1])
    grid = OccupancyGrid(aabb, 8, decay=0.5)
    grid.update(lambda p: torch.full((len(p),), 1e3), 0.01, warmup=True)
    grid.update(lambda p: torch.zeros(len(p)), 0.01, warmup=True)
    torch.testing.assert_close(grid.values, torch.full((512,), 0.5 * (1 - math.exp(-10))))
