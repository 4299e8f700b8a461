"""Networks of the deep agents (layer b): MLPs, Q-networks, actor-critics, a running normaliser.

Observations reach the networks as float32 vectors ``[B, obs_dim]`` (see
:func:`agents.deep.base.ObsEncoder`); actions leave them as ``[B]`` integers (Discrete) or
``[B, act_dim]`` floats (Box).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.deep.common import (
    categorical_log_prob,
    gaussian_entropy,
    gaussian_log_prob,
)

Activation = Literal["relu", "tanh"]
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def orthogonal_(weight: Tensor, gain: float) -> Tensor:
    """``nn.init.orthogonal_`` on one thread, so a seed gives the same weights at any thread count.

    The QR decomposition behind it rounds differently when LAPACK runs on several threads: with
    ``torch.set_num_threads(2)`` a 64x64 layer got other weights for the same seed (and PPO's
    Pendulum-v1 preset another result). The thread count is put back afterwards.
    """
    threads = torch.get_num_threads()
    if threads == 1:
        return nn.init.orthogonal_(weight, gain)
    torch.set_num_threads(1)
    try:
        return nn.init.orthogonal_(weight, gain)
    finally:
        torch.set_num_threads(threads)


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    *,
    activation: Activation = "relu",
    out_gain: float | None = None,
) -> nn.Sequential:
    """A multilayer perceptron ``in_dim -> hidden... -> out_dim`` (no output activation).

    Args:
        in_dim: input features.
        hidden: widths of the hidden layers (may be empty: a linear map).
        out_dim: output features.
        activation: hidden nonlinearity.
        out_gain: when given, orthogonal initialisation (Saxe et al. 2014) with gain sqrt(2)
            for hidden layers and ``out_gain`` for the output layer, biases 0 (the PPO
            implementation details of Huang et al. 2022); otherwise PyTorch's default.

    Returns:
        ``nn.Sequential`` mapping ``[B, in_dim]`` to ``[B, out_dim]``.
    """
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden]
    for a, b in zip(sizes[:-1], sizes[1:], strict=False):
        layers += [nn.Linear(a, b), _ACTIVATIONS[activation]()]
    layers.append(nn.Linear(sizes[-1], out_dim))
    if out_gain is not None:
        linears = [m for m in layers if isinstance(m, nn.Linear)]
        for i, lin in enumerate(linears):
            orthogonal_(lin.weight, out_gain if i == len(linears) - 1 else math.sqrt(2))
            nn.init.zeros_(lin.bias)
    return nn.Sequential(*layers)


class QNetwork(nn.Module):
    """``Q(s, .)`` for Discrete actions, optionally with a dueling head (Wang et al. 2016).

    Dueling: ``Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')`` on a shared torso.
    """

    def __init__(
        self, obs_dim: int, n_actions: int, hidden: Sequence[int], *, dueling: bool = False
    ):
        super().__init__()
        self.dueling = dueling
        if dueling:
            self.torso = mlp(obs_dim, hidden[:-1], hidden[-1]) if hidden else nn.Identity()
            width = hidden[-1] if hidden else obs_dim
            self.value_head = nn.Sequential(nn.ReLU(), nn.Linear(width, 1))
            self.adv_head = nn.Sequential(nn.ReLU(), nn.Linear(width, n_actions))
        else:
            self.net = mlp(obs_dim, hidden, n_actions)

    def forward(self, obs: Tensor) -> Tensor:
        """``[B, obs_dim]`` -> ``[B, n_actions]`` action values."""
        if not self.dueling:
            return self.net(obs)
        h = self.torso(obs)
        adv = self.adv_head(h)
        return self.value_head(h) + adv - adv.mean(dim=1, keepdim=True)


class ActorCritic(nn.Module):
    """A policy ``pi(a|s)`` and (optionally) a value function ``V(s)`` as separate MLPs.

    Discrete actions: a Categorical over logits. Box actions: a diagonal Gaussian
    ``N(mu(s), sigma^2)`` with ``log sigma`` a learned parameter (``std="param"``), an
    output of the network, ``N(mu(s), sigma(s)^2)`` (``std="state"``), or generalised
    state-dependent exploration (``std="sde"``, gSDE; Raffin et al. 2022): the action is
    ``mu(s) + z(s) E`` where ``z(s)`` is the actor's last hidden layer (no gradient) and
    ``E [latent, D]`` has entries ``N(0, sigma_jd^2)``, drawn by :meth:`reset_noise` and held
    for several steps, so exploration is smooth in time. Given ``z(s)`` the action is Gaussian
    with variance ``sum_j z_j(s)^2 sigma_jd^2``, which gives its log-probability and entropy.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        *,
        discrete: bool,
        hidden: Sequence[int] = (64, 64),
        activation: Activation = "tanh",
        critic: bool = True,
        std: Literal["param", "state", "sde"] = "param",
        log_std_init: float = 0.0,
    ):
        super().__init__()
        self.discrete = discrete
        self.state_std = (not discrete) and std == "state"
        self.sde = (not discrete) and std == "sde"
        out = action_dim * (2 if self.state_std else 1)
        self.actor = mlp(obs_dim, hidden, out, activation=activation, out_gain=0.01)
        self.critic = (
            mlp(obs_dim, hidden, 1, activation=activation, out_gain=1.0) if critic else None
        )
        if self.sde:
            latent = hidden[-1] if hidden else obs_dim
            self.log_std = nn.Parameter(torch.full((latent, action_dim), float(log_std_init)))
            self.sde_noise: Tensor | None = None
        elif not discrete and not self.state_std:
            self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        elif self.state_std:
            with torch.no_grad():
                self.actor[-1].bias[action_dim:] = log_std_init

    def _sde_params(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """gSDE: mean, log std ``[B, D]`` and the (detached) latent features ``[B, latent]``."""
        latent = self.actor[:-1](obs)
        mean = self.actor[-1](latent)
        z = latent.detach()
        var = (z * z) @ torch.exp(2.0 * self.log_std)
        return mean, 0.5 * torch.log(var + 1e-6), z

    @torch.no_grad()
    def reset_noise(self, n: int, generator: torch.Generator | None = None) -> None:
        """Draw gSDE exploration matrices ``E`` for ``n`` environments: ``[n, latent, D]``."""
        std = self.log_std.exp()
        self.sde_noise = torch.randn((n, *std.shape), generator=generator) * std

    def dist_params(self, obs: Tensor) -> tuple[Tensor, Tensor | None]:
        """Logits ``[B, A]`` (and None), or Gaussian mean and log std ``[B, D]`` each."""
        if self.sde:
            mean, log_std, _ = self._sde_params(obs)
            return mean, log_std
        out = self.actor(obs)
        if self.discrete:
            return out, None
        if self.state_std:
            mean, log_std = out.chunk(2, dim=-1)
            return mean, log_std.clamp(-20.0, 2.0)
        return out, self.log_std.expand_as(out)

    def value(self, obs: Tensor) -> Tensor:
        """``[B, obs_dim]`` -> ``[B]`` state values."""
        if self.critic is None:
            raise RuntimeError("this policy has no critic")
        return self.critic(obs).squeeze(-1)

    @torch.no_grad()
    def act(
        self, obs: Tensor, generator: torch.Generator | None, deterministic: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Sample (or take the mode of) the policy: actions and their log-probabilities ``[B]``."""
        if self.sde and not deterministic:
            mean, log_std, z = self._sde_params(obs)
            if self.sde_noise is None or self.sde_noise.shape[0] != len(obs):
                self.reset_noise(len(obs), generator)
            a = mean + torch.bmm(z.unsqueeze(1), self.sde_noise).squeeze(1)
            return a, gaussian_log_prob(mean, log_std, a)
        p, log_std = self.dist_params(obs)
        if self.discrete:
            if deterministic:
                a = p.argmax(-1)
            else:
                a = torch.multinomial(torch.softmax(p, -1), 1, generator=generator).squeeze(-1)
            return a, categorical_log_prob(p, a)
        if deterministic:
            a = p
        else:
            noise = torch.randn(p.shape, generator=generator, dtype=p.dtype)
            a = p + noise * log_std.exp()
        return a, gaussian_log_prob(p, log_std, a)

    def evaluate(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probabilities and entropies ``[B]`` of ``actions`` under the current policy."""
        p, log_std = self.dist_params(obs)
        if self.discrete:
            # categorical_log_prob and categorical_entropy, sharing one log-softmax
            logp = F.log_softmax(p, dim=-1)
            log_prob = logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            return log_prob, -(logp.exp() * logp).sum(-1)
        return gaussian_log_prob(p, log_std, actions), gaussian_entropy(log_std)


class RunningMeanStd:
    """Running mean and variance of a stream of arrays (Chan et al. parallel update).

    Used for observation normalisation ``(x - mean) / sqrt(var + eps)`` clipped to ``[-clip,
    clip]`` and for reward scaling; its state goes into the checkpoint.
    """

    def __init__(self, shape: tuple[int, ...] = (), eps: float = 1e-4):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = eps

    def update(self, x: np.ndarray) -> None:
        """Fold a batch ``[B, *shape]`` into the statistics."""
        x = np.asarray(x, dtype=np.float64)
        b_mean, b_var, b_count = x.mean(0), x.var(0), x.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var = m2 / total
        self.count = total

    def normalize(self, x: np.ndarray, clip: float = 10.0) -> np.ndarray:
        """``clip((x - mean) / sqrt(var + 1e-8))`` as float32."""
        return np.clip((x - self.mean) / np.sqrt(self.var + 1e-8), -clip, clip).astype(np.float32)

    def state_dict(self, prefix: str) -> dict[str, np.ndarray]:
        """Tensors for a checkpoint, under ``prefix``."""
        return {
            f"{prefix}.mean": self.mean,
            f"{prefix}.var": self.var,
            f"{prefix}.count": np.array(self.count),
        }

    def load_state_dict(self, state: dict, prefix: str) -> None:
        """Restore from :meth:`state_dict` output (tensors or arrays)."""
        self.mean = np.asarray(state[f"{prefix}.mean"], dtype=np.float64)
        self.var = np.asarray(state[f"{prefix}.var"], dtype=np.float64)
        self.count = float(np.asarray(state[f"{prefix}.count"]))
