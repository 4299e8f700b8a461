import math

import pytest
import torch

from mpgym.errors import MpgymError
from neural3d.splat._reference import rasterize_reference
from neural3d.splat.rasterize import rasterize_gaussians

W, H = 40, 36  # not multiples of 16: partial tiles on the right and bottom
FAST = ["numba", "torch"]


def _conics_and_radii(sx, sy, angle, eps2d=0.3):
    """2D covariances from axis std devs (px) and angle, plus the low-pass, as project does."""
    c, s = torch.cos(angle), torch.sin(angle)
    xx = c * c * sx * sx + s * s * sy * sy + eps2d
    yy = s * s * sx * sx + c * c * sy * sy + eps2d
    xy = c * s * (sx * sx - sy * sy)
    det = xx * yy - xy * xy
    conics = torch.stack([yy / det, -xy / det, xx / det], dim=-1)
    mid = 0.5 * (xx + yy)
    radii = torch.ceil(3 * torch.sqrt(mid + torch.sqrt((mid * mid - det).clamp_min(0.1))))
    return conics, radii.to(torch.int32)


def _scene(kind: str, seed: int = 0, C: int = 3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    n = {"random": 50, "sparse": 20, "saturated": 60, "clamp": 30}[kind]
    if kind == "sparse":  # everything in the top-left tile area: the other tiles stay empty
        means = rand(n, 2) * 14 + 1
    elif kind == "saturated":  # piled on the centre: T drops below 1e-4 and pixels stop
        means = torch.tensor([W / 2, H / 2], dtype=torch.float64) + (rand(n, 2) - 0.5) * 8
    else:  # spread over and beyond the image: many cross tile borders and image edges
        means = rand(n, 2) * torch.tensor([W + 16, H + 16], dtype=torch.float64) - 8
    big = 10.0 if kind == "saturated" else 6.0
    sx, sy = rand(n) * big + 0.3, rand(n) * big + 0.3
    if kind in ("random", "sparse"):
        sx[:3] = 1e-6  # degenerate: only the 0.3 px low-pass is left along one axis
        sy[1:3] = 1e-6
    conics, radii = _conics_and_radii(sx, sy, rand(n) * math.pi)
    opac = {"random": rand(n) * 0.9 + 0.05, "sparse": rand(n) * 0.9 + 0.05,
            "saturated": rand(n) * 0.2 + 0.75, "clamp": rand(n) * 0.01 + 0.99}[kind]
    if kind == "random":
        radii[5] = 0  # culled by projection
        opac[6] = 0.002  # below 1/255 everywhere
    colors = rand(n, C)
    depths = rand(n) * 5 + 1
    return [t.to(dtype) for t in (means, conics, colors, opac, depths)] + [radii]


def _run(fn, scene, *, background=None, tile_size=16, seed=1):
    means, conics, colors, opac, depths, radii = scene
    leaves = [t.detach().clone().requires_grad_() for t in (means, conics, colors, opac)]
    image, alpha = fn(*leaves, depths, radii, W, H, background=background, tile_size=tile_size)
    g = torch.Generator().manual_seed(seed)
    w_img = torch.randn(image.shape, generator=g, dtype=image.dtype)
    w_alpha = torch.randn(alpha.shape, generator=g, dtype=alpha.dtype)
    ((image * w_img).sum() + (alpha * w_alpha).sum()).backward()
    return image.detach(), alpha.detach(), [t.grad for t in leaves]


def _fast(backend):
    return lambda *a, **k: rasterize_gaussians(*a, backend=backend, **k)


def _assert_grads_close(got, want, rtol=1e-4):
    for name, a, b in zip(("means2d", "conics", "colors", "opacities"), got, want, strict=True):
        scale = float(b.abs().max()) or 1.0
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * scale, msg=f"dL/d{name}")


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("kind,C", [("random", 3), ("sparse", 3), ("saturated", 4), ("clamp", 3),
                                    ("random", 1), ("saturated", 6)])
def test_matches_reference_image_and_gradients(backend, kind, C):
    scene = _scene(kind, C=C)
    bg = torch.linspace(0.2, 0.8, C)
    img, alpha, grads = _run(_fast(backend), scene, background=bg)
    img_r, alpha_r, grads_r = _run(rasterize_reference, scene, background=bg)
    torch.testing.assert_close(img, img_r, rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(alpha, alpha_r, rtol=1e-5, atol=2e-6)
    _assert_grads_close(grads, grads_r)
    assert all(bool(g.abs().sum() > 0) for g in grads)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("tile_size", [8, 32])
def test_other_tile_size_matches_reference(backend, tile_size):
    scene = _scene("random", seed=3)
    got = _run(_fast(backend), scene, tile_size=tile_size)
    want = _run(rasterize_reference, scene, tile_size=tile_size)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=2e-6)
    _assert_grads_close(got[2], want[2])


def test_scenes_exercise_the_rules():
    """The saturated scene stops early; the clamp scene hits 0.99; sparse leaves tiles empty."""
    _, alpha, _ = _run(rasterize_reference, _scene("saturated"))
    assert float(alpha.max()) > 0.999  # without the stop, 60 layers of >= 0.75 would give ~1
    assert float(alpha.max()) <= 1 - 1e-4 + 1e-7  # T never goes below the 1e-4 threshold
    means, conics, colors, opac, depths, radii = _scene("clamp")
    centre = torch.tensor([[20.5, 18.5]])  # on a pixel centre: o exp(0) = o > 0.99
    single = rasterize_reference(centre, conics[:1], colors[:1], opac[:1], depths[:1],
                                 radii[:1], W, H)[1]
    assert float(single.max()) == pytest.approx(0.99)
    img, alpha, _ = _run(rasterize_reference, _scene("sparse"))
    assert float(alpha[:, 32:].abs().max()) == 0.0


@pytest.mark.parametrize("backend", FAST + ["reference"])
def test_background_fills_empty_tiles_exactly(backend):
    fn = rasterize_reference if backend == "reference" else _fast(backend)
    means, conics, colors, opac, depths, radii = _scene("sparse", C=4)
    bg = torch.tensor([0.1, 0.2, 0.3, 0.4])
    img, alpha = fn(means, conics, colors, opac, depths, radii, W, H, background=bg)
    raw, alpha0 = fn(means, conics, colors, opac, depths, radii, W, H)
    torch.testing.assert_close(alpha, alpha0)
    torch.testing.assert_close(img, raw + (1 - alpha)[..., None] * bg)
    assert torch.equal(img[:, 32:], bg.expand(H, W - 32, 4))


@pytest.mark.parametrize("backend", FAST)
def test_nothing_drawn(backend):
    means, conics, colors, opac, depths, radii = _scene("random")
    bg = torch.tensor([0.5, 0.25, 1.0])
    img, alpha = rasterize_gaussians(means, conics, colors, opac, depths, torch.zeros_like(radii),
                                     W, H, background=bg, backend=backend)
    assert torch.equal(alpha, torch.zeros(H, W)) and torch.equal(img, bg.expand(H, W, 3))
    img, alpha = rasterize_gaussians(means[:0], conics[:0], colors[:0], opac[:0], depths[:0],
                                     radii[:0], W, H, backend=backend)
    assert img.shape == (H, W, 3) and float(img.abs().sum()) == 0.0


def test_single_gaussian_closed_form():
    """Doc example: alpha = o exp(-0.5 d^2) for an isotropic unit conic."""
    args = (torch.tensor([[1.5, 1.5]]), torch.tensor([[1.0, 0.0, 1.0]]), torch.ones(1, 1),
            torch.tensor([0.5]), torch.ones(1), torch.tensor([3]), 3, 3)
    for backend in FAST:
        _, alpha = rasterize_gaussians(*args, backend=backend)
        e = 0.5 * math.exp(-0.5)
        torch.testing.assert_close(alpha[1], torch.tensor([e, 0.5, e]))
        torch.testing.assert_close(alpha[0, 0], torch.tensor(0.5 * math.exp(-1.0)))


def _smooth_scene():
    """Wide Gaussians on a small image: alpha stays far from 1/255 and T far from 1e-4."""
    g = torch.Generator().manual_seed(5)
    n, w, h = 4, 10, 9
    means = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([w, h])
    conics, radii = _conics_and_radii(torch.rand(n, generator=g, dtype=torch.float64) * 3 + 8,
                                      torch.rand(n, generator=g, dtype=torch.float64) * 3 + 8,
                                      torch.rand(n, generator=g, dtype=torch.float64))
    colors = torch.rand(n, 2, generator=g, dtype=torch.float64)
    opac = torch.rand(n, generator=g, dtype=torch.float64) * 0.4 + 0.3
    return means, conics, colors, opac, torch.arange(n, dtype=torch.float64), radii, w, h


@pytest.mark.parametrize("fn", ["torch", "reference"])
def test_gradcheck_in_smooth_regime(fn):
    means, conics, colors, opac, depths, radii, w, h = _smooth_scene()
    bg = torch.tensor([0.3, 0.6], dtype=torch.float64)
    raster = rasterize_reference if fn == "reference" else _fast("torch")

    def f(m, c, col, o):
        return raster(m, c, col, o, depths, radii, w, h, background=bg, tile_size=4)

    leaves = [t.clone().requires_grad_() for t in (means, conics, colors, opac)]
    assert torch.autograd.gradcheck(f, leaves)


def test_numba_is_deterministic_across_thread_counts():
    numba = pytest.importorskip("numba")
    scene = _scene("random", seed=7)
    have = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = _run(_fast("numba"), scene)
    finally:
        numba.set_num_threads(have)
    many = _run(_fast("numba"), scene)
    assert torch.equal(one[0], many[0])
    assert all(torch.equal(a, b) for a, b in zip(one[2], many[2], strict=True))


def test_bad_input_raises():
    means, conics, colors, opac, depths, radii = _scene("random")
    with pytest.raises(MpgymError, match="conics"):
        rasterize_gaussians(means, conics[:, :2], colors, opac, depths, radii, W, H)
    with pytest.raises(MpgymError, match="colors"):
        rasterize_gaussians(means, conics, colors[:-1], opac, depths, radii, W, H)
    bad = means.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(MpgymError, match="NaN"):
        rasterize_gaussians(bad, conics, colors, opac, depths, radii, W, H)
    with pytest.raises(MpgymError, match="integer"):
        rasterize_gaussians(means, conics, colors, opac, depths, radii.float(), W, H)
    with pytest.raises(MpgymError, match="background"):
        rasterize_gaussians(means, conics, colors, opac, depths, radii, W, H,
                            background=torch.zeros(4))
    with pytest.raises(MpgymError, match="accepted"):
        rasterize_gaussians(means, conics, colors, opac, depths, radii, W, H, backend="cuda")


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_each_backend_refuses_non_finite_inputs_by_name(backend, value):
    """The numba backend tests finiteness in its own compiled pass, the torch one with torch."""
    *floats, radii = _scene("random")
    scene = dict(zip(("means2d", "conics", "colors", "opacities", "depths"), floats, strict=True))
    for name in scene:
        bad = {**scene, name: scene[name].clone()}
        bad[name].view(-1)[-1] = value
        with pytest.raises(MpgymError, match=f"{name} contains NaN or infinity"):
            rasterize_gaussians(*bad.values(), radii, W, H, backend=backend)


def test_numba_refuses_more_entries_per_tile_than_its_float_index_holds(monkeypatch):
    from neural3d.splat import rasterize as R

    means, conics, colors, opac, depths, radii = _scene("random")
    rasterize_gaussians(means, conics, colors, opac, depths, radii, W, H, backend="numba")
    monkeypatch.setattr(R, "_MAX_TILE_ENTRIES", 2)  # the real bound is 2^24
    with pytest.raises(MpgymError, match="at most 1 Gaussians over one tile; use backend='torch'"):
        rasterize_gaussians(means, conics, colors, opac, depths, radii, W, H, backend="numba")


def test_gsplat_refused_clearly_without_cuda_or_package():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the gsplat path is covered by the gpu test")
    means, conics, colors, opac, depths, radii = _scene("random")
    with pytest.raises(MpgymError, match="gsplat"):
        rasterize_gaussians(means, conics, colors, opac, depths, radii, W, H, backend="gsplat")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gsplat_agrees_with_torch_backend_on_cuda():
    pytest.importorskip("gsplat")
    # gsplat clamps alpha at 0.999 (not 0.99): keep opacities below both
    means, conics, colors, opac, depths, radii = [t.cuda() for t in _scene("random")]
    opac = opac.clamp_max(0.9)
    scene = (means, conics, colors, opac, depths, radii)
    got = _run(_fast("gsplat"), scene)
    want = _run(_fast("torch"), scene)
    torch.testing.assert_close(got[0], want[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got[1], want[1], rtol=1e-4, atol=1e-4)
    _assert_grads_close(got[2], want[2], rtol=1e-3)
