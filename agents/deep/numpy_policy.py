"""Acting through NumPy views of small PyTorch MLPs (the fast path of an env step).

One forward pass of a small MLP costs tens of microseconds in PyTorch's dispatcher and a few in
NumPy, which dominates an env step of CartPole-sized problems. The arrays built here are views
of the parameters (``weight.detach().numpy()`` shares memory), and optimisers update parameters
in place, so a NumPy forward always matches its module without copying. Only plain MLPs qualify:
an ``nn.Sequential`` of biased ``nn.Linear`` layers and the activations in
:data:`NUMPY_ACTIVATIONS`; anything else keeps the PyTorch forward (callers get None). That
includes every network with a CNN feature extractor (:mod:`agents.deep.features`): a
convolution's forward pass costs more than PyTorch's dispatch, so pixel policies act through
PyTorch, exactly as they train.

Used by DQN's greedy action (:meth:`agents.deep.dqn.DQN.greedy_action_fn`, and its hand-written
backward pass for ReLU MLPs) and by the rollouts of A2C and PPO
(:meth:`agents.deep.onpolicy.OnPolicyAgent.numpy_rollout_policy`).
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
