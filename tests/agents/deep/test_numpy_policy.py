"""The NumPy acting path: forward passes through parameter views, Categorical sampling."""

import numpy as np
import pytest
import torch
from torch import nn

from agents.deep.numpy_policy import (
    numpy_features,
    numpy_mlp,
    numpy_network,
    plain_mlp_layers,
    sample_categorical,
)
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


@pytest.mark.parametrize(("kind", "shape"), [("minatar", (10, 10, 4)), ("minatar", (3, 7, 5)),
                                             ("nature", (40, 44, 3))])
def test_numpy_cnn_matches_torch_and_sees_in_place_updates(kind, shape):
    import gymnasium as gym

    from agents.deep.features import CNNExtractor, image_layout

    torch.manual_seed(0)
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    layout = image_layout(space, "test")
    cnn = CNNExtractor(layout, kind, "test", orthogonal=True)
    # Nature's CNN is left to PyTorch by default (slower in NumPy), but computes the same
    assert (numpy_features(cnn) is None) == (kind == "nature")
    forward = numpy_features(cnn, max_macs=None)
    x = np.random.default_rng(0).integers(0, 256, (5, layout.dim)).astype(np.float32)
    with torch.no_grad():
        for p in cnn.parameters():
            p.add_(0.01 * torch.randn_like(p))  # in-place updates reach the views
        expected = cnn(torch.from_numpy(x)).numpy()
    got = forward(x)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_numpy_network_multi_input_and_refusals():
    import gymnasium as gym

    from agents.deep.features import DictEncoder, make_extractor

    torch.manual_seed(1)
    space = gym.spaces.Dict({"img": gym.spaces.Box(0, 1, (6, 6, 2), np.float32),
                             "vec": gym.spaces.Box(-1, 1, (3,), np.float32)})
    enc = DictEncoder(space, "test")
    feats = make_extractor(enc, "minatar", "test")
    head = mlp(feats.out_dim, (8,), 2, activation="relu")
    forward = numpy_network(feats, head)
    obs = enc({k: np.stack([space[k].sample() for _ in range(4)]) for k in space})
    with torch.no_grad():
        expected = head(feats(torch.from_numpy(obs))).numpy()
    np.testing.assert_allclose(forward(obs), expected, rtol=1e-4, atol=1e-5)
    # a padded convolution has no NumPy forward: the caller keeps PyTorch's
    feats.cnns["img"].cnn[0].padding = (1, 1)
    assert numpy_network(feats, head) is None
    assert numpy_features(nn.Linear(2, 2)) is None
