import math

import pytest
import torch

from neural3d.encodings import (
    FourierFeatures,
    HashEncoding,
    PositionalEncoding,
    SphericalHarmonics,
    positional_encode,
)


@pytest.mark.parametrize("batch", [(), (2,), (1, 2)])
def test_positional_encoding_shape_and_values(batch):
    pe = PositionalEncoding(3, 10)
    x = torch.rand(*batch, 3)
    y = pe(x)
    assert y.shape == (*batch, 63) and pe.out_dim == 63
    assert torch.equal(y[..., :3], x)
    # octave k holds sin(2^k x) then cos(2^k x)
    k = 3
    assert torch.allclose(y[..., 3 + 6 * k: 6 + 6 * k], torch.sin(2.0**k * x))
    assert torch.allclose(y[..., 6 + 6 * k: 9 + 6 * k], torch.cos(2.0**k * x))
    assert positional_encode(torch.zeros(1, 1), 2).tolist() == [[0.0, 0.0, 1.0, 0.0, 1.0]]


def test_fourier_features_seeded_and_formula():
    a = FourierFeatures(3, 16, 10.0, generator=torch.Generator().manual_seed(1))
    b = FourierFeatures(3, 16, 10.0, generator=torch.Generator().manual_seed(1))
    x = torch.rand(5, 3)
    assert a.out_dim == 32 and torch.equal(a(x), b(x))
    proj = 2 * math.pi * x @ a.B.T
    assert torch.allclose(a(x), torch.cat([torch.cos(proj), torch.sin(proj)], -1), atol=1e-5)
    assert "B" in a.state_dict()


def _fibonacci_sphere(n):
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5**0.5) * i
    r = torch.sqrt(1 - z * z)
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)


def test_spherical_harmonics_are_orthonormal():
    d = _fibonacci_sphere(20000)
    Y = SphericalHarmonics(4)(d)  # [n, 16]
    gram = 4 * math.pi * Y.T @ Y / len(d)  # integral over the sphere
    assert torch.allclose(gram, torch.eye(16, dtype=gram.dtype), atol=2e-3)


def test_hash_encoding_module_shapes():
    enc = HashEncoding(4, 2, 12, 4, 32, generator=torch.Generator().manual_seed(0))
    y = enc(torch.rand(2, 7, 3))
    assert y.shape == (2, 7, 8) and enc.out_dim == 8
    assert enc.table.abs().max() <= 1e-4
