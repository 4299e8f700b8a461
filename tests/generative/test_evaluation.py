import numpy as np
import pytest
import torch

from generative.autoregressive import FVSBN, FVSBNConfig
from generative.data import load_digits_split
from generative.evaluation import (
    dequantized_nll,
    exact_nll,
    frechet_distance,
    nats_to_bits_per_dim,
    train_classifier,
)
from generative.flows import Glow, GlowConfig


def test_bits_per_dim():
    assert nats_to_bits_per_dim(64 * np.log(2)) == pytest.approx(1.0)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # equal covariances: FD is the squared distance of the means
    assert frechet_distance(a, a + np.array([1.0, 2.0, 0.0])) == pytest.approx(5.0, rel=1e-9)
    # 1-D Gaussians: (m1 - m2)^2 + (s1 - s2)^2
    x = rng.normal(size=(200_000, 1))
    expected = (1 + 2 * float(x.mean())) ** 2 + 4 * float(x.var(ddof=1))
    assert frechet_distance(x, 3 * x + 1) == pytest.approx(expected, rel=1e-6)
    # against scipy's matrix square root on non-commuting covariances
    from scipy.linalg import sqrtm

    b = rng.normal(size=(500, 3)) @ rng.normal(size=(3, 3))
    c = rng.normal(size=(500, 3)) @ rng.normal(size=(3, 3)) + 0.5
    s1, s2 = np.cov(b, rowvar=False), np.cov(c, rowvar=False)
    ref = ((b.mean(0) - c.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
    assert frechet_distance(b, c) == pytest.approx(ref, rel=1e-6)


def test_untrained_uniform_model_scores_64_ln_17():
    model = FVSBN(FVSBNConfig())
    torch.nn.init.zeros_(model.linear.weight)
    torch.nn.init.zeros_(model.linear.bias)
    x = load_digits_split().x_test
    assert exact_nll(model, x) == pytest.approx(64 * np.log(17), rel=1e-6)


def test_dequantised_bound_is_at_least_the_importance_weighted_one():
    torch.manual_seed(0)
    flow = Glow(GlowConfig(steps_per_level=1, hidden=8))
    x = torch.randint(0, 17, (16, 64))
    k1 = dequantized_nll(flow, x, samples=1, generator=torch.Generator().manual_seed(0))
    k16 = dequantized_nll(flow, x, samples=16, generator=torch.Generator().manual_seed(0))
    assert k16 <= k1 + 1e-3


@pytest.mark.slow
def test_feature_classifier_reaches_97_percent():
    res = train_classifier(load_digits_split(), steps=1500)
    assert res.test_acc >= 0.97
