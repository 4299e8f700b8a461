"""IGR's loss: which points each term sees, and closed-form values on known fields."""

import pytest
import torch

from neural3d.implicit.igr import IGRConfig, igr_loss, local_sigmas, sample_off_surface

R = 0.3


def _sphere_batch(b=64, m=64, u=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = torch.nn.functional.normalize(torch.randn(b, 3, generator=gen), dim=-1)
    surface = R * n
    near = surface + 0.05 * torch.randn(b, 3, generator=gen)
    near = near[: m]
    uniform = (torch.rand(u, 3, generator=gen) * 2 - 1) * 0.55
    return surface, n, near, uniform


def exact_sphere_sdf(x: torch.Tensor) -> torch.Tensor:
    return x.norm(dim=-1) - R


def quadratic_sphere_field(x: torch.Tensor) -> torch.Tensor:
    """``(|x|^2 - r^2) / (2 r)``: zero on the sphere, gradient ``x / r`` (unit only there)."""
    return ((x**2).sum(-1) - R**2) / (2 * R)


def test_exact_sdf_of_a_sphere_has_zero_surface_normal_and_eikonal_terms():
    surface, normals, near, uniform = _sphere_batch()
    cfg = IGRConfig(offsurface_weight=0.0)
    loss, terms = igr_loss(exact_sphere_sdf, surface, normals, near, uniform, cfg)
    assert terms["surface"] == pytest.approx(0.0, abs=1e-6)
    assert terms["normal"] == pytest.approx(0.0, abs=1e-5)
    assert terms["eikonal"] == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)


def test_eikonal_term_is_computed_on_exactly_the_off_surface_samples():
    """A field with unit gradient on the surface only: surface points in the eikonal batch
    would pull its mean towards 0, so the closed form over ``near`` + ``uniform`` decides."""
    surface, normals, near, uniform = _sphere_batch(b=128, m=128, u=16)
    seen: list[torch.Tensor] = []

    def field(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach().clone())
        return quadratic_sphere_field(x)

    cfg = IGRConfig(offsurface_weight=0.0, normal_weight=1.0, eikonal_points="off_surface")
    _, terms = igr_loss(field, surface, normals, near, uniform, cfg)
    off = torch.cat([near, uniform])
    expected = ((off.norm(dim=-1) / R - 1) ** 2).mean().item()
    with_surface = ((torch.cat([surface, off]).norm(dim=-1) / R - 1) ** 2).mean().item()
    assert terms["eikonal"] == pytest.approx(expected, rel=1e-5)
    assert abs(expected - with_surface) > 0.1 * expected  # the two readings are far apart
    # the CPU default adds the surface points (measured better on a real mesh)
    _, terms2 = igr_loss(quadratic_sphere_field, surface, normals, near, uniform,
                         IGRConfig(offsurface_weight=0.0))
    assert terms2["eikonal"] == pytest.approx(with_surface, rel=1e-5)
    # the surface term and the normal term: exact on the sphere for this field too
    assert terms["surface"] == pytest.approx(0.0, abs=1e-6)
    assert terms["normal"] == pytest.approx(0.0, abs=1e-5)
    # the model saw each set once, in one batch: surface, near, uniform
    assert len(seen) == 1
    assert torch.equal(seen[0], torch.cat([surface, near, uniform]))


def test_paper_preset_follows_the_paper():
    from neural3d.implicit.igr import PRESETS

    assert PRESETS["paper"].eikonal_points == "off_surface"
    assert PRESETS["cpu"].eikonal_points == "with_surface"


def test_offsurface_term_uses_the_uniform_samples_only():
    surface, normals, near, uniform = _sphere_batch(u=32)
    cfg = IGRConfig(offsurface_weight=1.0, offsurface_alpha=10.0)
    _, terms = igr_loss(exact_sphere_sdf, surface, normals, near, uniform, cfg)
    expected = torch.exp(-10.0 * exact_sphere_sdf(uniform).abs()).mean().item()
    assert terms["offsurface"] == pytest.approx(expected, rel=1e-5)
    _, terms = igr_loss(exact_sphere_sdf, surface, None, near, uniform[:0], cfg)
    assert "offsurface" not in terms and "normal" not in terms


def test_off_surface_distribution_is_per_point_gaussian_plus_uniform_box():
    gen = torch.Generator().manual_seed(0)
    surface = torch.zeros(20_000, 3)
    surface[10_000:] = 0.2
    sig = torch.full((20_000,), 0.01)
    sig[10_000:] = 0.05
    near, uni = sample_off_surface(surface, sig, 5000, 0.5, gen)
    assert near.shape == (20_000, 3) and uni.shape == (5000, 3)
    assert (near[:10_000] - surface[:10_000]).std().item() == pytest.approx(0.01, rel=0.05)
    assert (near[10_000:] - surface[10_000:]).std().item() == pytest.approx(0.05, rel=0.05)
    assert uni.abs().max() <= 0.5
    assert uni.mean(0).abs().max() < 0.02 and uni.std().item() == pytest.approx(0.5 / 3**0.5,
                                                                               rel=0.05)


def test_local_sigma_is_the_distance_to_the_kth_neighbour():
    import numpy as np

    x = np.arange(10, dtype=np.float32)[:, None] * np.array([[1.0, 0.0, 0.0]], np.float32)
    sig = local_sigmas(x, 2)
    assert sig[0] == pytest.approx(2.0) and sig[5] == pytest.approx(1.0)
