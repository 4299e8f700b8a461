"""Networks of the deep agents (layer b): Q-networks, actor-critics, a running normaliser.

They are built from :func:`mpgym.nn.mlp`, the project's one MLP.

Observations reach the networks as float32 vectors ``[B, obs_dim]`` (see
:func:`agents.deep.base.ObsEncoder`); actions leave them as ``[B]`` integers (Discrete) or
``[B, act_dim]`` floats (Box). Image and ``Dict`` observations arrive flattened the same way
and pass a feature extractor first (``features``, from :mod:`agents.deep.features`): the MLPs
then run on its ``[B, features.out_dim]`` output. Without one (MLP policies) nothing changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.deep.common import categorical_log_prob, gaussian_entropy, mask_logits
from agents.deep.features import FeatureExtractor
from mpgym.nn import Activation, diag_gaussian_log_prob, mlp


class QNetwork(nn.Module):
    """``Q(s, .)`` for Discrete actions, optionally with a dueling head (Wang et al. 2016).

    Dueling: ``Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')`` on a shared torso. With a
    feature extractor (``features``, for images) the MLP runs on its output.
    """

    def __init__(
        self, obs_dim: int, n_actions: int, hidden: Sequence[int], *, dueling: bool = False,
        features: FeatureExtractor | None = None,
    ):
        super().__init__()
        self.dueling = dueling
        self.features = features
        if features is not None:
            obs_dim = features.out_dim
        if dueling:
            self.torso = mlp(obs_dim, hidden[:-1], hidden[-1]) if hidden else nn.Identity()
            width = hidden[-1] if hidden else obs_dim
            self.value_head = nn.Sequential(nn.ReLU(), nn.Linear(width, 1))
            self.adv_head = nn.Sequential(nn.ReLU(), nn.Linear(width, n_actions))
        else:
            self.net = mlp(obs_dim, hidden, n_actions)

    @property
    def plain_mlp(self) -> nn.Module | None:
        """``self.net`` when it is the whole network (a plain MLP), else None.

        None with a feature extractor or a dueling head; for the NumPy forward pass and the
        hand-written backward pass, which only MLPs have.
        """
        return None if self.dueling or self.features is not None else self.net

    def forward(self, obs: Tensor) -> Tensor:
        """``[B, obs_dim]`` -> ``[B, n_actions]`` action values."""
        if self.features is not None:
            obs = self.features(obs)
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

    With a feature extractor (``features``, for images) both MLPs run on its output, computed
    once per call and shared by actor and critic (stable-baselines3's default for A2C/PPO);
    :meth:`act_value` and :meth:`evaluate_value` give the policy and the value from one pass.
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
        features: FeatureExtractor | None = None,
    ):
        super().__init__()
        self.discrete = discrete
        self.features = features
        if features is not None:
            obs_dim = features.out_dim
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
        return self._dist_params(obs if self.features is None else self.features(obs))

    def _dist_params(self, h: Tensor) -> tuple[Tensor, Tensor | None]:
        """:meth:`dist_params` of extracted features ``h`` (the observations for MLPs)."""
        if self.sde:
            mean, log_std, _ = self._sde_params(h)
            return mean, log_std
        out = self.actor(h)
        if self.discrete:
            return out, None
        if self.state_std:
            mean, log_std = out.chunk(2, dim=-1)
            return mean, log_std.clamp(-20.0, 2.0)
        return out, self.log_std.expand_as(out)

    def value(self, obs: Tensor) -> Tensor:
        """``[B, obs_dim]`` -> ``[B]`` state values."""
        return self._value(obs if self.features is None else self.features(obs))

    def _value(self, h: Tensor) -> Tensor:
        if self.critic is None:
            raise RuntimeError("this policy has no critic")
        return self.critic(h).squeeze(-1)

    @torch.no_grad()
    def act(
        self, obs: Tensor, generator: torch.Generator | None, deterministic: bool = False,
        masks: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Sample (or take the mode of) the policy: actions and their log-probabilities ``[B]``.

        ``masks [B, A]`` (Discrete only; True: allowed) restricts the Categorical to the allowed
        actions (:func:`agents.deep.common.mask_logits`).
        """
        return self._act(obs if self.features is None else self.features(obs), generator,
                         deterministic, masks)

    @torch.no_grad()
    def act_value(
        self, obs: Tensor, generator: torch.Generator | None, deterministic: bool = False,
        masks: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`act` and :meth:`value` through one pass of the feature extractor."""
        h = obs if self.features is None else self.features(obs)
        actions, log_probs = self._act(h, generator, deterministic, masks)
        return actions, log_probs, self._value(h)

    def _act(
        self, h: Tensor, generator: torch.Generator | None, deterministic: bool,
        masks: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        if self.sde and not deterministic:
            mean, log_std, z = self._sde_params(h)
            if self.sde_noise is None or self.sde_noise.shape[0] != len(h):
                self.reset_noise(len(h), generator)
            a = mean + torch.bmm(z.unsqueeze(1), self.sde_noise).squeeze(1)
            return a, diag_gaussian_log_prob(a, mean, log_std=log_std)
        p, log_std = self._dist_params(h)
        if self.discrete:
            if masks is not None:
                p = mask_logits(p, masks)
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
        return a, diag_gaussian_log_prob(a, p, log_std=log_std)

    def evaluate(self, obs: Tensor, actions: Tensor,
                 masks: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Log-probabilities and entropies ``[B]`` of ``actions`` under the current policy.

        Restricted to the allowed actions ``masks`` as in :meth:`act`.
        """
        return self._evaluate(obs if self.features is None else self.features(obs), actions,
                              masks)

    def evaluate_value(self, obs: Tensor, actions: Tensor,
                       masks: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`evaluate` and :meth:`value` through one pass of the feature extractor."""
        h = obs if self.features is None else self.features(obs)
        log_prob, entropy = self._evaluate(h, actions, masks)
        return log_prob, entropy, self._value(h)

    def _evaluate(self, h: Tensor, actions: Tensor,
                  masks: Tensor | None = None) -> tuple[Tensor, Tensor]:
        p, log_std = self._dist_params(h)
        if self.discrete:
            if masks is not None:
                p = mask_logits(p, masks)
            # categorical_log_prob and categorical_entropy, sharing one log-softmax
            logp = F.log_softmax(p, dim=-1)
            log_prob = logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            return log_prob, -(logp.exp() * logp).sum(-1)
        return diag_gaussian_log_prob(actions, p, log_std=log_std), gaussian_entropy(log_std)


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
