"""The NumPy acting path: forward passes through parameter views, Categorical sampling."""

import numpy as np
import pytest
import torch
from torch import nn

from agents.deep.numpy_policy import numpy_mlp, plain_mlp_layers, sample_categorical
from mpgym.nn import mlp


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_numpy_mlp_matches_torch_and_sees_in_place_updates(activation):
    torch.manual_seed(0)
    net = mlp(5, (16, 8), 3, activation=activation)
    forward = numpy_mlp(net)
    x = np.random.default_rng(0).normal(size=(32, 5)).astype(np.float32)
    with torch.no_grad():
        for p in net.parameters():  # the optimisers' in-place updates are seen by the views
            p.mul_(-1.5)
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(forward(x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(forward(x[0]), expected[0], rtol=1e-5, atol=1e-6)  # one obs


def test_only_plain_mlps_qualify():
    assert numpy_mlp(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2), nn.Linear(2, 1))) is None
    assert numpy_mlp(nn.Sequential(nn.Linear(2, 1, bias=False))) is None
    assert numpy_mlp(nn.Linear(2, 1)) is None  # not a Sequential
    tanh_net = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1))
    assert plain_mlp_layers(tanh_net) is not None
    assert plain_mlp_layers(tanh_net, (nn.ReLU,)) is None  # ReLU-only callers (DQN's backward)


def test_sample_categorical_log_probs_and_frequencies():
    logits = np.array([[0.0, np.log(3.0)], [5.0, 5.0], [0.0, -np.inf]])
    n = 20_000
    actions, logp = sample_categorical(np.repeat(logits, n, axis=0), np.random.default_rng(1))
    probs = np.array([[0.25, 0.75], [0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(logp, np.log(probs[np.repeat(np.arange(3), n), actions]), atol=1e-12)
    freq = (actions.reshape(3, n)[..., None] == np.arange(2)).mean(1)
    np.testing.assert_allclose(freq, probs, atol=4 * 0.5 / np.sqrt(n))
