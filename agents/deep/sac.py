"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC: Algorithms and Applications", arXiv:1812.05905).

The method, per gradient step on a replayed minibatch ``(s, a, r, s', terminated)``:

1. Sample ``a~ = tanh(u)``, ``u = mu(s) + sigma(s) eps`` (reparameterised) with
   ``log pi(a~|s) = log N(u; mu, sigma^2) - sum_d log(1 - tanh(u_d)^2)``.
2. Temperature: descend ``J(alpha) = -log alpha * (log pi(a~|s) + H_target)`` with
   ``H_target = -|A|`` (automatic entropy tuning; alpha is learned as ``log alpha``).
3. Critics: ``y = r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha log pi(a'|s'))``
   with ``a' ~ pi(.|s')`` and the target critics ``Q'``; descend
   ``0.5 sum_i mean (Q_i(s, a) - y)^2``.
4. Actor: descend ``mean(alpha log pi(a~|s) - min_i Q_i(s, a~))``.
5. Targets: ``theta' <- (1 - tau) theta' + tau theta`` every ``target_update_interval`` steps.

The order of the steps, the loss scales and the defaults follow stable-baselines3's SAC, so its
rl-baselines3-zoo hyperparameters carry over. Speed, exact: the twin critics run as one batched
network (:class:`agents.deep.offpolicy.TwinQ`), the Adam updates are fused, a round's
minibatches are gathered at once and the env-step actor forward runs in NumPy (views of the
parameters). The targets are not batched over steps: the actor and the target critics change
at every step, so they could not be, exactly.

Example:
    >>> agent = SAC("Pendulum-v1", SAC.PRESETS["Pendulum-v1"]).learn()  # doctest: +SKIP
    >>> action, _ = agent.predict(obs)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.common.envs import EnvKwargs
from agents.deep.numpy_policy import numpy_mlp
from agents.deep.offpolicy import (
    OffPolicyAgent,
    TwinQ,
    check_tau,
    clipped_double_q_target,
    polyak_update,
)
from mpgym.checkpoint import CheckpointError
from mpgym.configs import check_ranges
from mpgym.nn import LOG_2PI, mlp

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
"""Bounds of the actor's log standard deviation (those of SB3 and the authors' code)."""
_LOG2 = math.log(2.0)


def squashed_log_prob(u: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """``log pi(tanh(u))`` for ``u ~ N(mean, diag(sigma^2))``: ``[..., D]`` -> ``[...]``.

    Change of variables ``a = tanh(u)``: ``log pi(a) = log N(u) - sum_d log(1 - tanh(u_d)^2)``
    (Haarnoja et al. 2018, appendix C), with the numerically stable
    ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2 u))``, finite for every ``u`` (the naive
    form gives ``log 0`` once ``tanh(u)`` rounds to 1).

    Args:
        u: ``[..., D]`` pre-squash samples.
        mean: ``[..., D]`` Gaussian means.
        log_std: ``[..., D]`` Gaussian log standard deviations.

    Returns:
        ``[...]`` log densities of ``tanh(u)`` on ``(-1, 1)^D``.

    Example:
        At ``u = mean = 0``, ``sigma = 1``: ``log N(0) = -0.5 log 2 pi`` and ``tanh'(0) = 1``:
        >>> squashed_log_prob(torch.zeros(1), torch.zeros(1), torch.zeros(1))
        tensor(-0.9189)
    """
    z = (u - mean) * torch.exp(-log_std)
    log_normal = (-0.5 * z * z - log_std - 0.5 * LOG_2PI).sum(-1)
    log_det = 2.0 * (_LOG2 - u - F.softplus(-2.0 * u))
    return log_normal - log_det.sum(-1)


@dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters; defaults are stable-baselines3's (``SAC(...)``) on Pendulum-v1.

    SB3 2.x: lr 3e-4, buffer 1e6, learning_starts 100, batch 256, tau 0.005, gamma 0.99, one
    gradient step per env step, ``ent_coef="auto"`` starting at 1, target entropy ``-|A|``,
    [256, 256] ReLU networks. ``SAC.PRESETS`` holds rl-baselines3-zoo's tuned sets.
    """

    env_id: str = "Pendulum-v1"
    """Gymnasium id of the environment (1-D Box actions with finite bounds)."""
    env_kwargs: EnvKwargs = field(default_factory=dict)
    """Keyword arguments of the env (``gymnasium.make(env_id, **env_kwargs)``), as JSON."""
    seed: int = 0
    """Seed of the env, the network initialisation, exploration and replay sampling."""
    total_timesteps: int = 20_000
    """Environment steps of ``learn()`` when no budget is given (zoo Pendulum-v1: 2e4)."""
    learning_rate: float = 3e-4
    """Adam step size of the actor, the critics and the temperature (SB3: 3e-4)."""
    buffer_size: int = 1_000_000
    """Replay capacity in transitions (SB3: 1e6)."""
    learning_starts: int = 100
    """Environment steps of uniform random actions before the first update (SB3: 100)."""
    batch_size: int = 256
    """Transitions per gradient step (SB3: 256)."""
    tau: float = 0.005
    """Polyak rate of the target critics (SB3: 0.005)."""
    gamma: float = 0.99
    """Discount factor (SB3: 0.99)."""
    train_freq: int = 1
    """Environment steps between training rounds (SB3: 1)."""
    gradient_steps: int = 1
    """Gradient steps per training round (SB3: 1)."""
    target_update_interval: int = 1
    """Gradient steps between target-critic updates (SB3: 1)."""
    ent_coef: Literal["auto", "fixed"] = "auto"
    """'auto' learns the temperature alpha (automatic entropy tuning); 'fixed' keeps it."""
    ent_coef_init: float = 1.0
    """Initial (or, with 'fixed', constant) temperature alpha (SB3's 'auto': 1.0)."""
    target_entropy: float | None = None
    """Entropy target of the temperature loss; None: ``-|A|`` (the paper's heuristic)."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the actor and of each critic (SB3: [256, 256])."""


_BASE = SACConfig()
SAC_PRESETS: dict[str, SACConfig] = {
    # rl-baselines3-zoo hyperparams/sac.yml, Pendulum-v1: 2e4 steps, learning_rate 1e-3,
    # everything else SB3's default.
    "Pendulum-v1": dataclasses.replace(_BASE, learning_rate=1e-3),
    # rl-baselines3-zoo hyperparams/sac.yml, MuJoCo defaults (listed for Hopper-v4): 1e6
    # steps, learning_starts 1e4, everything else SB3's default.
    "Hopper-v5": dataclasses.replace(
        _BASE, env_id="Hopper-v5", total_timesteps=1_000_000, learning_starts=10_000
    ),
}


class SquashedGaussianActor(nn.Module):
    """``pi(a|s)``: ``tanh`` of a Gaussian whose mean and log std come from one ReLU MLP.

    The last layer outputs ``[mean, log_std]`` (``[B, 2D]``): the same function as SB3's two
    heads on a shared torso, but a plain MLP, so acting runs in NumPy
    (:func:`agents.deep.numpy_policy.numpy_mlp`).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.act_dim = act_dim
        self.net = mlp(obs_dim, hidden, 2 * act_dim)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, obs_dim]`` -> mean and log std ``[B, D]`` (clamped to [-20, 2])."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Reparameterised actions ``tanh(mu + sigma eps)`` ``[B, D]`` and ``log pi`` ``[B]``."""
        mean, log_std = self(obs)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        u = mean + eps * log_std.exp()
        return torch.tanh(u), squashed_log_prob(u, mean, log_std)


class SAC(OffPolicyAgent):
    """Soft Actor-Critic for continuous (Box) actions, with automatic entropy tuning.

    Attributes:
        actor: the :class:`SquashedGaussianActor`.
        critic: the twin Q-networks (:class:`agents.deep.offpolicy.TwinQ`).
        critic_target: their Polyak-averaged copy.
        log_alpha: the learned log temperature (a scalar parameter).
    """

    name: ClassVar[str] = "sac"
    Config: ClassVar[type] = SACConfig
    PRESETS: ClassVar[dict[str, Any]] = SAC_PRESETS
    MODULES: ClassVar[tuple[str, ...]] = ("actor", "critic", "critic_target")
    config: SACConfig

    def _build_nets(self) -> None:
        cfg = self.config
        check_ranges(
            cfg,
            positive=("learning_rate", "ent_coef_init"),
            unit=("tau",),
            ints={"target_update_interval": (1, 2**62)},
        )
        check_tau(cfg)
        obs_dim, d = self.encoder.dim, self.act_dim
        self.actor = SquashedGaussianActor(obs_dim, d, cfg.hidden)
        self.critic = TwinQ(obs_dim, d, cfg.hidden)
        self.critic_target = TwinQ(obs_dim, d, cfg.hidden)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(
            torch.tensor(math.log(cfg.ent_coef_init)), requires_grad=cfg.ent_coef == "auto"
        )
        self.target_entropy = float(-d) if cfg.target_entropy is None else float(cfg.target_entropy)
        self.actor_optimizer = self._adam(self.actor.parameters(), cfg.learning_rate)
        self.critic_optimizer = self._adam(self.critic.parameters(), cfg.learning_rate)
        self.alpha_optimizer = (
            self._adam([self.log_alpha], cfg.learning_rate) if cfg.ent_coef == "auto" else None
        )
        self._numpy_actor = numpy_mlp(self.actor.net)

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts: dict[str, torch.optim.Optimizer] = {
            "actor": self.actor_optimizer,
            "critic": self.critic_optimizer,
        }
        if self.alpha_optimizer is not None:
            opts["alpha"] = self.alpha_optimizer
        return opts

    @property
    def alpha(self) -> float:
        """The current temperature ``exp(log alpha)``."""
        return float(self.log_alpha.detach().exp())

    def _extra_state(self) -> dict[str, Any]:
        return {"log_alpha": self.log_alpha.detach().clone()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        value = state.get("log_alpha")
        if value is None or tuple(value.shape) != () or not bool(torch.isfinite(value)):
            raise CheckpointError("checkpoint tensor log_alpha must be one finite number.")
        with torch.no_grad():
            self.log_alpha.copy_(value)

    def _finite_stats(self) -> dict[str, np.ndarray]:
        return {"entropy temperature log_alpha": self.log_alpha.detach().numpy()}

    # -- acting ------------------------------------------------------------------------------
    def _act_scaled(self, obs: Tensor, deterministic: bool) -> np.ndarray:
        mean, log_std = self.actor(obs)
        if deterministic:
            return torch.tanh(mean).numpy()
        eps = torch.randn(mean.shape, generator=self.torch_gen)
        return torch.tanh(mean + eps * log_std.exp()).numpy()

    def _explore(self, obs: np.ndarray) -> np.ndarray:
        """A sample ``tanh(mu + sigma eps)`` with ``eps`` from ``self.rng`` (NumPy forward)."""
        if self._numpy_actor is None:  # pragma: no cover - the actor is always a plain MLP
            with torch.no_grad():
                mean, log_std = (x.numpy()[0] for x in self.actor(torch.from_numpy(obs)[None]))
        else:
            out = self._numpy_actor(obs)
            mean, log_std = out[: self.act_dim], out[self.act_dim :]
            log_std = np.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)
        u = mean + np.exp(log_std) * self.rng.standard_normal(self.act_dim, np.float32)
        return np.tanh(u).astype(np.float32)

    # -- the update ----------------------------------------------------------------------------
    def _gradient_steps(self, batch: dict[str, Tensor]) -> dict[str, float]:
        cfg = self.config
        n = batch["obs"].shape[0]
        sums = torch.zeros(3)  # critic loss, actor loss, alpha loss
        for k in range(n):
            obs, next_obs = batch["obs"][k], batch["next_obs"][k]
            # 1. reparameterised sample at s (with gradient)
            a_pi, logp_pi = self.actor.sample(obs, self.torch_gen)
            # 2. the temperature, with alpha taken before its own step (as SB3)
            alpha = self.log_alpha.detach().exp()
            if self.alpha_optimizer is not None:
                alpha_loss = -(self.log_alpha * (logp_pi.detach() + self.target_entropy)).mean()
                self.alpha_optimizer.zero_grad(set_to_none=True)
                alpha_loss.backward()
                self.alpha_optimizer.step()
                sums[2] += alpha_loss.detach()
            # 3. the critics against the soft clipped double-Q target
            with torch.no_grad():
                a_next, logp_next = self.actor.sample(next_obs, self.torch_gen)
                next_q = self.critic_target(next_obs, a_next) - alpha * logp_next
                y = clipped_double_q_target(
                    batch["rewards"][k], batch["terminated"][k], next_q, cfg.gamma
                )
            q = self.critic(obs, batch["actions"][k])  # [2, B]
            critic_loss = 0.5 * (q - y).pow(2).mean(-1).sum()
            self.critic_optimizer.zero_grad(set_to_none=True)
            critic_loss.backward()
            self.critic_optimizer.step()
            # 4. the actor through the updated critics (no gradient into their weights)
            self.critic.requires_grad_(False)
            q_pi = self.critic(obs, a_pi)
            actor_loss = (alpha * logp_pi - torch.minimum(q_pi[0], q_pi[1])).mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.critic.requires_grad_(True)
            self.actor_optimizer.step()
            sums[0] += critic_loss.detach()
            sums[1] += actor_loss.detach()
            # 5. the target critics
            self.num_updates += 1
            if self.num_updates % cfg.target_update_interval == 0:
                polyak_update(
                    list(self.critic_target.parameters()), list(self.critic.parameters()), cfg.tau
                )
        means = (sums / max(n, 1)).tolist()
        out = {"critic_loss": means[0], "actor_loss": means[1], "alpha": self.alpha}
        if self.alpha_optimizer is not None:
            out["alpha_loss"] = means[2]
        return out
