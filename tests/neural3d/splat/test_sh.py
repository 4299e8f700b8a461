"""Spherical harmonics of the splat colours: constants, orthonormality, convention, gradients."""

import doctest
import math

import numpy as np
import pytest
import torch

import neural3d.splat.sh as sh_module
from mpgym.errors import MpgymError
from neural3d.splat.sh import SH_C0, eval_sh, num_sh_bases, rgb_to_sh, sh_basis, sh_to_rgb


def test_docstring_examples():
    assert doctest.testmod(sh_module).failed == 0


def test_num_sh_bases_and_c0():
    assert [num_sh_bases(d) for d in range(4)] == [1, 4, 9, 16]
    assert SH_C0 == pytest.approx(1 / (2 * math.sqrt(math.pi)), abs=1e-16)


def test_degree_zero_is_c0_times_the_coefficient():
    g = torch.Generator().manual_seed(0)
    coeffs = torch.randn(7, 16, 3, generator=g, dtype=torch.float64)
    dirs = torch.randn(7, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(eval_sh(0, coeffs, dirs), SH_C0 * coeffs[:, 0], rtol=0, atol=0)


def test_only_the_active_degree_counts_and_length_does_not():
    g = torch.Generator().manual_seed(1)
    coeffs = torch.randn(5, 16, 2, generator=g, dtype=torch.float64)
    dirs = torch.randn(5, 3, generator=g, dtype=torch.float64)
    for degree in range(4):
        k = num_sh_bases(degree)
        torch.testing.assert_close(eval_sh(degree, coeffs, dirs), eval_sh(degree, coeffs[:, :k],
                                                                           3.7 * dirs))


def _sphere_quadrature(n_theta=8, n_phi=16):
    """Gauss-Legendre in cos(theta) x uniform phi: exact for polynomials of degree <= 7."""
    z, wz = np.polynomial.legendre.leggauss(n_theta)
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    r = np.sqrt(1 - zz**2)
    dirs = np.stack([r * np.cos(pp), r * np.sin(pp), zz], -1).reshape(-1, 3)
    weights = (wz[:, None] * np.full(n_phi, 2 * np.pi / n_phi)).reshape(-1)
    return torch.as_tensor(dirs), torch.as_tensor(weights)


def test_basis_is_orthonormal_on_the_sphere():
    dirs, w = _sphere_quadrature()
    assert float(w.sum()) == pytest.approx(4 * math.pi)
    y = sh_basis(3, dirs)  # [M, 16]
    gram = (y * w[:, None]).T @ y  # products have degree <= 6: integrated exactly
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=1e-12, rtol=0)


def _real_sh_scipy(degree, dirs):
    """Real SH with the Condon-Shortley phase (scipy's complex Y includes it), ordered m=-l..l."""
    from scipy.special import sph_harm_y

    x, y, z = dirs.T
    theta, phi = np.arccos(np.clip(z, -1, 1)), np.arctan2(y, x)
    cols = []
    for n in range(degree + 1):
        for m in range(-n, n + 1):
            c = sph_harm_y(n, abs(m), theta, phi)
            cols.append(c.real if m == 0 else math.sqrt(2) * (c.imag if m < 0 else c.real))
    return np.stack(cols, -1)


def test_basis_matches_scipy_real_harmonics_with_condon_shortley_phase():
    rng = np.random.default_rng(2)
    d = rng.normal(size=(50, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    ours = sh_basis(3, torch.as_tensor(d)).numpy()
    np.testing.assert_allclose(ours, _real_sh_scipy(3, d), atol=1e-12)


def test_reference_constants_at_the_axes():
    # 3DGS: index 3 = -C1 x, 8 = C2[4] (xx - yy), 15 = C3[6] x (xx - 3yy); 6 and 12 at +z.
    ex = sh_basis(3, torch.tensor([[1.0, 0, 0]], dtype=torch.float64))[0]
    ez = sh_basis(3, torch.tensor([[0, 0, 1.0]], dtype=torch.float64))[0]
    assert ex[3].item() == pytest.approx(-0.4886025119029199, abs=1e-15)
    assert ex[8].item() == pytest.approx(0.5462742152960396, abs=1e-15)
    assert ex[15].item() == pytest.approx(-0.5900435899266435, abs=1e-15)
    assert ez[6].item() == pytest.approx(2 * 0.31539156525252005, abs=1e-15)
    assert ez[12].item() == pytest.approx(2 * 0.3731763325901154, abs=1e-15)


def test_eval_sh_gradients():
    g = torch.Generator().manual_seed(3)
    coeffs = torch.randn(4, 16, 3, generator=g, dtype=torch.float64, requires_grad=True)
    dirs = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    for degree in range(4):
        assert torch.autograd.gradcheck(lambda c, d, k=degree: eval_sh(k, c, d), (coeffs, dirs))


def test_rgb_sh_round_trip():
    rgb = torch.rand(10, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(sh_to_rgb(rgb_to_sh(rgb)), rgb)
    assert rgb_to_sh(torch.tensor(0.5)).item() == 0.0
    # a DC-only Gaussian shows sh_to_rgb(f) from every direction (renderer adds the 0.5)
    f = rgb_to_sh(rgb)[:, None, :]
    torch.testing.assert_close(eval_sh(0, f, torch.randn(10, 3, dtype=torch.float64)) + 0.5, rgb)


@pytest.mark.parametrize("degree, k", [(4, 25), (-1, 1), (1, 3)])
def test_bad_degree_or_too_few_coefficients(degree, k):
    with pytest.raises(MpgymError, match="degree|K >="):
        eval_sh(degree, torch.zeros(2, k, 3), torch.ones(2, 3))


def test_mismatched_directions_are_refused():
    with pytest.raises(MpgymError, match="do not match"):
        eval_sh(1, torch.zeros(2, 4, 3), torch.ones(3, 3))
