"""Acting through NumPy views of small PyTorch MLPs (the fast path of an env step).

One forward pass of a small MLP costs tens of microseconds in PyTorch's dispatcher and a few in
NumPy, which dominates an env step of CartPole-sized problems. The arrays built here are views
of the parameters (``weight.detach().numpy()`` shares memory), and optimisers update parameters
in place, so a NumPy forward always matches its module without copying. Plain MLPs qualify
(an ``nn.Sequential`` of biased ``nn.Linear`` layers and the activations in
:data:`NUMPY_ACTIVATIONS`), and so do the CNN feature extractors of
:mod:`agents.deep.features` (:func:`numpy_features`): each convolution becomes one gather of the
image's patches and one matrix product (im2col), which for the few images of an acting step is far
cheaper than PyTorch's convolution dispatch (MinAtar's CNN on 8 images: ~0.3 ms in PyTorch,
~0.05 ms here). Anything else keeps the PyTorch forward (callers get None).

Used by DQN's greedy action (:meth:`agents.deep.dqn.DQN.greedy_action_fn`, and its hand-written
backward pass for ReLU MLPs) and by the rollouts of A2C and PPO
(:meth:`agents.deep.onpolicy.OnPolicyAgent.numpy_rollout_policy`). Training always runs through
PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import nn

NUMPY_ACTIVATIONS: dict[type[nn.Module], Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: np.tanh,
    nn.ReLU: lambda x: np.maximum(x, 0.0),
}
"""The hidden nonlinearities a NumPy forward pass can reproduce, by module type."""


def plain_mlp_layers(
    net: nn.Module | None, activations: tuple[type[nn.Module], ...] = tuple(NUMPY_ACTIVATIONS)
) -> list[nn.Module] | None:
    """The layers of ``net`` when it is a plain MLP, else None.

    Args:
        net: the module to inspect (None gives None).
        activations: the activation types allowed between the Linear layers (exact types).

    Returns:
        ``list(net)`` when ``net`` is an ``nn.Sequential`` of ``nn.Linear`` layers with biases
        and modules of the ``activations`` types only; otherwise None.
    """
    if not isinstance(net, nn.Sequential):
        return None
    layers = list(net)
    for m in layers:
        if isinstance(m, nn.Linear):
            if m.bias is None:
                return None
        elif type(m) not in activations:
            return None
    return layers


def numpy_mlp(net: nn.Module | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """A NumPy forward pass of the plain MLP ``net`` through views of its parameters, or None.

    Args:
        net: an ``nn.Sequential`` of Linear layers and Tanh/ReLU (see :func:`plain_mlp_layers`),
            or None.

    Returns:
        ``x [..., in] -> [..., out]`` computing ``x @ W^T + b`` and the activations in float32
        for float32 input, or None when ``net`` is not a plain MLP (or is None).

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> x = np.ones((4, 2), np.float32)
        >>> bool(np.allclose(numpy_mlp(net)(x), net(torch.from_numpy(x)).detach().numpy()))
        True
    """
    layers = plain_mlp_layers(net)
    if layers is None:
        return None
    plan: list = [
        (m.weight.detach().numpy().T, m.bias.detach().numpy())
        if isinstance(m, nn.Linear)
        else NUMPY_ACTIVATIONS[type(m)]
        for m in layers
    ]

    def forward(x: np.ndarray) -> np.ndarray:
        for layer in plan:
            x = layer(x) if callable(layer) else x @ layer[0] + layer[1]
        return x

    return forward


def _patch_index(conv: nn.Conv2d, chw: tuple[int, int, int], channel_last: bool) -> np.ndarray:
    """Gather index ``[H' W', C k k]`` of ``conv``'s input patches in a flattened image.

    The image is flattened channel-first (``(c, y, x)``) or channel-last (``(y, x, c)``); the
    columns run ``(c, ky, kx)``, the order of ``conv.weight.reshape(C', -1)``.
    """
    c, h, w = chw
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    oy, ox = np.divmod(np.arange(ho * wo), wo)
    ci, ky, kx = np.unravel_index(np.arange(c * kh * kw), (c, kh, kw))
    y = oy[:, None] * sh + ky[None]
    x = ox[:, None] * sw + kx[None]
    return (y * w * c + x * c + ci[None]) if channel_last else (ci[None] * h * w + y * w + x)


def _numpy_conv(conv: nn.Conv2d, chw: tuple[int, int, int],
                channel_last: bool) -> Callable[[np.ndarray], np.ndarray] | None:
    """``[B, C H W] -> [B, H' W' C']`` (output channel-last) of a biased, unpadded ``conv``.

    im2col by one gather (:func:`_patch_index`) and one product with the weight's view. None
    for padded, dilated or grouped convolutions, or ones without bias.
    """
    if (conv.bias is None or conv.groups != 1 or conv.padding not in ((0, 0), "valid")
            or conv.dilation != (1, 1) or conv.padding_mode != "zeros"):
        return None
    index = _patch_index(conv, chw, channel_last)
    w = conv.weight.detach().numpy().reshape(conv.out_channels, -1).T  # [C k k, C'] view
    b = conv.bias.detach().numpy()

    def forward(x: np.ndarray) -> np.ndarray:
        return (np.take(x, index, axis=1).reshape(-1, w.shape[0]) @ w + b).reshape(len(x), -1)

    return forward


NUMPY_CONV_MAX_MACS = 1e6
"""Largest CNN (multiply-adds per image in its convolutions) :func:`numpy_features` takes.

MinAtar's CNN (37k) acts 2-3x faster in NumPy; Nature-DQN's on 84x84 frames (7.7M) is slower
there than in PyTorch's convolution kernels once a step holds more than one image."""


def numpy_features(features: nn.Module | None, *, max_macs: float | None = NUMPY_CONV_MAX_MACS
                   ) -> Callable[[np.ndarray], np.ndarray] | None:
    """A NumPy forward pass of a feature extractor through views of its parameters, or None.

    Args:
        features: a :class:`agents.deep.features.CNNExtractor` or
            :class:`agents.deep.features.MultiInputExtractor` (or None).
        max_macs: None, or the largest convolution work per image taken
            (:data:`NUMPY_CONV_MAX_MACS`); larger CNNs give None and keep PyTorch's forward.

    Returns:
        ``x [B, dim] -> [B, out_dim]`` float32 (the extractor's flattened channel-first input),
        or None for other modules, or CNNs with layers the NumPy path does not reproduce.

    Example:
        >>> import torch
        >>> from agents.deep.features import CNNExtractor, ImageLayout
        >>> cnn = CNNExtractor(ImageLayout((5, 5, 2), (2, 5, 5), (0, 3, 1, 2), 1.0), "minatar", "x")
        >>> x = np.random.default_rng(0).random((3, 50), dtype=np.float32)
        >>> ref = cnn(torch.from_numpy(x)).detach().numpy()
        >>> bool(np.allclose(numpy_features(cnn)(x), ref, atol=1e-5))
        True
    """
    from agents.deep.features import CNNExtractor, MultiInputExtractor

    if isinstance(features, MultiInputExtractor):
        parts = {k: numpy_features(m, max_macs=max_macs) for k, m in features.cnns.items()}
        if any(f is None for f in parts.values()):
            return None
        bounds, width = np.cumsum(features.sizes)[:-1], sum(features.sizes)

        def multi(x: np.ndarray) -> np.ndarray:
            chunks = np.split(x.reshape(-1, width), bounds, axis=1)
            return np.concatenate([parts[k](c) if k in parts else c
                                   for k, c in zip(features.keys, chunks, strict=True)], axis=1)

        return multi
    if not isinstance(features, CNNExtractor):
        return None
    layers = list(features.cnn)
    n_conv = sum(isinstance(m, nn.Conv2d) for m in layers)
    # the extractor is [Conv2d, ReLU] * n, Flatten, Linear, ReLU (features.CNNExtractor)
    if (len(layers) != 2 * n_conv + 3 or not isinstance(layers[-3], nn.Flatten)
            or any(type(m) is not nn.ReLU for m in layers[1:-3:2] + layers[-1:])):
        return None
    convs, macs = [], 0
    chw = features.chw
    for i, m in enumerate(layers[0:-3:2]):  # the first takes the channel-first input
        convs.append(_numpy_conv(m, chw, channel_last=i > 0))
        chw = (m.out_channels, (chw[1] - m.kernel_size[0]) // m.stride[0] + 1,
               (chw[2] - m.kernel_size[1]) // m.stride[1] + 1)
        macs += m.weight.numel() * chw[1] * chw[2]
    if max_macs is not None and macs > max_macs:
        return None
    head = plain_mlp_layers(nn.Sequential(*layers[-2:]))
    if head is None or any(c is None for c in convs):
        return None
    linear = numpy_mlp(nn.Sequential(*head))
    assert linear is not None
    # PyTorch's Flatten reads [C, H, W]: gather the last channel-last output in that order
    c, h, w = chw
    to_chw = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).ravel()
    scale, n_in = np.float32(features.scale), int(np.prod(features.chw))

    def forward(x: np.ndarray) -> np.ndarray:
        x = x.reshape(-1, n_in)
        if scale != 1.0:
            x = x * scale
        for conv in convs:
            x = np.maximum(conv(x), 0.0)
        return linear(np.take(x, to_chw, axis=1))

    return forward


def numpy_network(features: nn.Module | None,
                  net: nn.Module | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """``net(features(x))`` in NumPy (``net`` alone without features), or None.

    None when either part has no NumPy forward (:func:`numpy_features`, :func:`numpy_mlp`).
    """
    mlp_fn = numpy_mlp(net)
    if features is None or mlp_fn is None:
        return mlp_fn
    feat = numpy_features(features)
    if feat is None:
        return None
    return lambda x: mlp_fn(feat(x))


def sample_categorical(
    logits: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one action per row of a Categorical over ``logits`` (inverse CDF), in NumPy.

    Args:
        logits: ``[N, A]`` unnormalised log-probabilities.
        rng: the generator of the uniform draws (one per row).

    Returns:
        Actions ``[N]`` (int64) and their log-probabilities ``[N]``.

    Example:
        >>> a, logp = sample_categorical(np.array([[0.0, -np.inf]]), np.random.default_rng(0))
        >>> a.tolist(), logp.tolist()
        ([0], [0.0])
    """
    logits = logits - logits.max(1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    cdf = np.exp(logp).cumsum(1)
    u = rng.random((len(logits), 1)) * cdf[:, -1:]
    actions = np.minimum((cdf < u).sum(1), logp.shape[1] - 1)
    return actions, logp[np.arange(len(actions)), actions]
