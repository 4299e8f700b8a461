"""Latent diffusion over shape codes: moments of a known mixture, interpolation, files, refusals."""

import math

import numpy as np
import pytest
import torch

from generative.trainer import TrainConfig
from mpgym.errors import MpgymError
from neural3d.implicit.shape_prior import (
    CodePrior,
    ShapePriorConfig,
    check_codes,
    decode_shapes,
    expected_gaussian_norm,
    fit_standardization,
    interpolate_codes,
    load_prior,
    save_prior,
    slerp,
    train_prior,
)


def mixture_moments(weights, means, covs):
    """Closed-form mean and covariance of sum_k w_k N(mu_k, S_k)."""
    w = np.asarray(weights)[:, None]
    mu = (w * means).sum(0)
    second = sum(
        wk * (ck + np.outer(mk, mk)) for wk, mk, ck in zip(weights, means, covs, strict=True)
    )
    return mu, second - np.outer(mu, mu)


def sample_mixture(weights, means, covs, n, rng):
    k = rng.choice(len(weights), size=n, p=weights)
    out = np.empty((n, means.shape[1]))
    for j in range(len(weights)):
        idx = k == j
        out[idx] = rng.multivariate_normal(means[j], covs[j], idx.sum())
    return out.astype(np.float32)


def make_mixture(dim, rng):
    weights = np.array([0.5, 0.3, 0.2])
    # small, offset codes like DeepSDF's, so the standardisation matters
    means = 0.05 * rng.normal(size=(3, dim)) + 0.2
    covs = []
    for _ in range(3):
        a = 0.01 * rng.normal(size=(dim, dim))
        covs.append(a @ a.T / dim + 1e-4 * np.eye(dim))
    return weights, means, np.stack(covs)


@pytest.mark.parametrize(("dim", "prediction"), [(2, "eps"), (8, "eps"), (8, "v")])
def test_prior_reproduces_mixture_moments(dim, prediction):
    rng = np.random.default_rng(dim)
    weights, means, covs = make_mixture(dim, rng)
    codes = sample_mixture(weights, means, covs, 2000, rng)
    config = ShapePriorConfig(latent_dim=dim, hidden=128, sample_steps=50, prediction=prediction)
    train = TrainConfig(
        steps=1500, batch_size=256, lr=2e-3, ema=0.995, eval_every=1500, progress=False
    )
    prior, result = train_prior(codes, config, train)
    assert result.steps == 1500
    samples = prior.sample_codes(4000, torch.Generator().manual_seed(0)).double().numpy()
    mu, cov = mixture_moments(weights, means, covs)
    scale = np.sqrt(np.diag(cov))
    # mean within 0.1 standard deviations per dimension; covariance within 15% (Frobenius)
    assert np.abs(samples.mean(0) - mu).max() < 0.1 * scale.max()
    err = np.linalg.norm(np.cov(samples.T) - cov) / np.linalg.norm(cov)
    assert err < 0.15, err


def test_shapes_and_standardization():
    codes = torch.tensor([[0.0, 2.0], [2.0, 2.0]])
    mean, std = fit_standardization(codes)
    torch.testing.assert_close(mean, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(std, torch.tensor([1.0, 1e-8]))
    prior = CodePrior(ShapePriorConfig(latent_dim=2, hidden=16, T=20, sample_steps=5))
    prior.fit_normalization(codes)
    assert prior.loss(codes).shape == ()
    out = prior.sample_codes(3, torch.Generator().manual_seed(0))
    assert out.shape == (3, 2) and out.dtype == torch.float32
    out2 = prior.sample_codes(3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, out2)  # eta = 0: the generator fixes the result
    assert prior.sample_codes(2, sampler="ancestral").shape == (2, 2)


@pytest.mark.parametrize("method", ["slerp", "lerp"])
def test_interpolation_endpoints(method):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(16, generator=g), torch.randn(16, generator=g)
    strip = interpolate_codes(a, b, 7, method=method)
    assert strip.shape == (7, 16)
    assert torch.equal(strip[0], a) and torch.equal(strip[-1], b)


def test_slerp_keeps_the_shell():
    mid = slerp(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([0.5]))
    torch.testing.assert_close(mid[0], torch.tensor([math.sqrt(0.5)] * 2))
    # parallel codes fall back to lerp
    a = torch.tensor([1.0, 1.0])
    torch.testing.assert_close(slerp(a, 2 * a, torch.tensor([0.5]))[0], 1.5 * a)
    assert abs(expected_gaussian_norm(1) - math.sqrt(2 / math.pi)) < 1e-12


def test_save_load_round_trip(tmp_path):
    prior = CodePrior(ShapePriorConfig(latent_dim=4, hidden=16, T=20, sample_steps=4))
    prior.fit_normalization(torch.randn(10, 4) * 0.01 + 1)
    path = save_prior(prior, tmp_path / "prior.safetensors")
    back = load_prior(path)
    assert back.config == prior.config
    for k, v in prior.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(prior.eval().sample_codes(5, g1), back.sample_codes(5, g2))


def test_bad_codes_are_refused(tmp_path):
    with pytest.raises(MpgymError, match="width 3.*width 4"):
        check_codes(torch.zeros(5, 3), 4)
    with pytest.raises(MpgymError, match="NaN or infinity"):
        check_codes(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(MpgymError, match="shape"):
        check_codes(torch.zeros(2, 3, 4))
    with pytest.raises(MpgymError, match="width"):
        train_prior(np.zeros((10, 3), np.float32), ShapePriorConfig(latent_dim=4))
    with pytest.raises(MpgymError, match="width"):
        interpolate_codes(torch.zeros(3), torch.zeros(4))
    prior = CodePrior(ShapePriorConfig(latent_dim=4, hidden=8, T=10))
    with pytest.raises(MpgymError, match="width"):
        prior.fit_normalization(torch.zeros(5, 3))
    with pytest.raises(MpgymError, match="n must be"):
        prior.sample_codes(0)
    with pytest.raises(MpgymError, match="unknown prediction 'x0'.*'v'"):
        CodePrior(ShapePriorConfig(latent_dim=4, prediction="x0"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(MpgymError):
        load_prior(tmp_path / "junk.safetensors")


def test_decode_shapes_with_a_code_conditioned_sphere():
    # code (2,) = (radius, unused), field |x| - radius (an SDF); radius 1.5 exceeds the
    # corner distance 0.95 of the cube meshed, so that code has no surface
    def decoder_fn(code):
        return lambda p: p.norm(dim=1) - code[0]

    codes = torch.tensor([[0.3, 0.0], [0.4, 1.0], [1.5, 0.0]])
    meshes = decode_shapes(decoder_fn, codes, latent_dim=2, resolution=32, coarse_resolution=8)
    assert len(meshes) == 3 and meshes[2] is None
    for m, r in zip(meshes[:2], (0.3, 0.4), strict=True):
        assert m.is_watertight
        radii = np.linalg.norm(m.vertices, axis=1)
        assert abs(radii.mean() - r) < 0.01
    with pytest.raises(MpgymError, match="width"):
        decode_shapes(decoder_fn, torch.zeros(1, 3), latent_dim=2)


def test_save_mesh_grid(tmp_path):
    import trimesh
    from PIL import Image

    from neural3d.implicit.shape_prior import save_mesh_grid

    meshes = [trimesh.creation.icosphere(2, 0.3), None, trimesh.creation.box((0.5, 0.3, 0.2))]
    path = save_mesh_grid(tmp_path / "grid.png", meshes, nrow=3, size=32)
    img = np.asarray(Image.open(path))
    assert img.shape[:2] == (34, 100)
    assert img[1:33, 34:66].min() == 255  # the empty sample is a white tile
    assert img[1:33, 1:33].min() < 200  # the sphere is drawn
