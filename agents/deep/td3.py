"""Twin Delayed DDPG (Fujimoto et al. 2018, ICML; arXiv:1802.09477).

A deterministic actor ``mu(s) = tanh(f(s))`` in the scaled action space, and per gradient step
on a replayed minibatch ``(s, a, r, s', terminated)``:

1. Target policy smoothing: ``a' = clip(mu'(s') + clip(eps, -c, c), -1, 1)``,
   ``eps ~ N(0, sigma~^2)`` (sigma~ 0.2, c 0.5).
2. Clipped double Q-learning: ``y = r + gamma (1 - terminated) min_i Q'_i(s', a')``; descend
   ``sum_i mean (Q_i(s, a) - y)^2``.
3. Delayed policy updates: every ``policy_delay`` (2) critic steps, descend
   ``-mean Q_1(s, mu(s))`` and move both targets: ``theta' <- (1 - tau) theta' + tau theta``.

Exploration adds ``N(0, 0.1^2)`` noise to ``mu(s)`` (clipped to the bounds). The losses, their
order and the defaults follow stable-baselines3's TD3. Speed, exact: the target networks only
change at a delayed update, so the targets of all the critic steps up to the next one come
from one batched forward pass (their smoothing noise drawn in one call); the twin critics run
as one batched network, Adam is fused and the env-step actor forward runs in NumPy.

Example:
    >>> agent = TD3("Pendulum-v1", TD3.PRESETS["Pendulum-v1"]).learn()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
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
from mpgym.configs import check_ranges
from mpgym.errors import MpgymError
from mpgym.nn import mlp


def smoothed_target_actions(target_actions: Tensor, noise: Tensor, noise_clip: float) -> Tensor:
    """Target policy smoothing: ``clip(mu'(s') + clip(noise, -c, c), -1, 1)``.

    Args:
        target_actions: ``[..., D]`` target-actor actions in ``[-1, 1]``.
        noise: ``[..., D]`` Gaussian noise (already scaled by sigma~).
        noise_clip: ``c``, the bound of each noise component.

    Returns:
        ``[..., D]`` smoothed actions in ``[-1, 1]``.

    Example:
        >>> smoothed_target_actions(torch.tensor([0.0, 0.9]), torch.tensor([2.0, 0.3]), 0.5)
        tensor([0.5000, 1.0000])
    """
    return (target_actions + noise.clamp(-noise_clip, noise_clip)).clamp(-1.0, 1.0)


@dataclass(frozen=True)
class TD3Config:
    """TD3 hyperparameters; defaults are stable-baselines3's (``TD3(...)``) on Pendulum-v1.

    SB3 2.x: lr 1e-3, buffer 1e6, learning_starts 100, batch 256, tau 0.005, gamma 0.99, one
    gradient step per env step, policy_delay 2, target noise 0.2 clipped at 0.5, [400, 300]
    ReLU networks; exploration noise N(0, 0.1^2) as in the paper and rl-baselines3-zoo (SB3's
    own default has none). ``TD3.PRESETS`` holds rl-baselines3-zoo's tuned sets.
    """

    env_id: str = "Pendulum-v1"
    """Gymnasium id of the environment (1-D Box actions with finite bounds)."""
    env_kwargs: EnvKwargs = field(default_factory=dict)
    """Keyword arguments of the env (``gymnasium.make(env_id, **env_kwargs)``), as JSON."""
    seed: int = 0
    """Seed of the env, the network initialisation, exploration and replay sampling."""
    total_timesteps: int = 20_000
    """Environment steps of ``learn()`` when no budget is given (zoo Pendulum-v1: 2e4)."""
    learning_rate: float = 1e-3
    """Adam step size of the actor and the critics (SB3: 1e-3)."""
    buffer_size: int = 1_000_000
    """Replay capacity in transitions (SB3: 1e6)."""
    learning_starts: int = 100
    """Environment steps of uniform random actions before the first update (SB3: 100)."""
    batch_size: int = 256
    """Transitions per gradient step (SB3: 256)."""
    tau: float = 0.005
    """Polyak rate of the target actor and critics (SB3: 0.005)."""
    gamma: float = 0.99
    """Discount factor (SB3: 0.99)."""
    train_freq: int = 1
    """Environment steps between training rounds (SB3: 1)."""
    gradient_steps: int = 1
    """Gradient steps per training round (SB3: 1)."""
    policy_delay: int = 2
    """Critic steps per actor step and target update (the paper and SB3: 2)."""
    target_policy_noise: float = 0.2
    """Std of the target smoothing noise, in scaled action units (the paper and SB3: 0.2)."""
    target_noise_clip: float = 0.5
    """Bound of each target smoothing noise component (the paper and SB3: 0.5)."""
    action_noise: float = 0.1
    """Std of the Gaussian exploration noise, in scaled action units (paper, zoo: 0.1)."""
    hidden: tuple[int, ...] = (400, 300)
    """Hidden widths of the actor and of each critic (SB3 and the paper: [400, 300])."""


_BASE = TD3Config()
TD3_PRESETS: dict[str, TD3Config] = {
    # rl-baselines3-zoo hyperparams/td3.yml, Pendulum-v1: 2e4 steps, gamma 0.98, buffer 2e5,
    # learning_starts 1e4, normal noise 0.1, lr 1e-3, [400, 300].
    "Pendulum-v1": dataclasses.replace(
        _BASE, gamma=0.98, buffer_size=200_000, learning_starts=10_000
    ),
    # rl-baselines3-zoo hyperparams/td3.yml, MuJoCo defaults (listed for Hopper-v4): 1e6
    # steps, learning_starts 1e4, normal noise 0.1, lr 1e-3, batch 256, [400, 300].
    "Hopper-v5": dataclasses.replace(
        _BASE, env_id="Hopper-v5", total_timesteps=1_000_000, learning_starts=10_000
    ),
}


class DeterministicActor(nn.Module):
    """``mu(s) = tanh(f(s))`` in ``[-1, 1]^D``, ``f`` a ReLU MLP (NumPy-able)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim)

    def forward(self, obs: Tensor) -> Tensor:
        """``[B, obs_dim]`` -> ``[B, D]`` actions in ``[-1, 1]``."""
        return torch.tanh(self.net(obs))


class TD3(OffPolicyAgent):
    """TD3 for continuous (Box) actions: twin critics, delayed updates, target smoothing.

    Attributes:
        actor, actor_target: the :class:`DeterministicActor` and its Polyak-averaged copy.
        critic, critic_target: the twin Q-networks and their copy.
    """

    name: ClassVar[str] = "td3"
    Config: ClassVar[type] = TD3Config
    PRESETS: ClassVar[dict[str, Any]] = TD3_PRESETS
    MODULES: ClassVar[tuple[str, ...]] = ("actor", "actor_target", "critic", "critic_target")
    config: TD3Config

    def _build_nets(self) -> None:
        cfg = self.config
        check_ranges(cfg, positive=("learning_rate",), ints={"policy_delay": (1, 2**62)})
        check_tau(cfg)
        for name in ("target_policy_noise", "target_noise_clip", "action_noise"):
            value = getattr(cfg, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (0.0 <= value < float("inf"))
            ):
                raise MpgymError(
                    f"--{name.replace('_', '-')} must be a finite number >= 0; got {value!r}."
                )
        obs_dim, d = self.encoder.dim, self.act_dim
        self.actor = DeterministicActor(obs_dim, d, cfg.hidden)
        self.actor_target = DeterministicActor(obs_dim, d, cfg.hidden)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.actor_target.requires_grad_(False)
        self.critic = TwinQ(obs_dim, d, cfg.hidden)
        self.critic_target = TwinQ(obs_dim, d, cfg.hidden)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.actor_optimizer = self._adam(self.actor.parameters(), cfg.learning_rate)
        self.critic_optimizer = self._adam(self.critic.parameters(), cfg.learning_rate)
        self._numpy_actor = numpy_mlp(self.actor.net)

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    # -- acting ------------------------------------------------------------------------------
    def _act_scaled(self, obs: Tensor, deterministic: bool) -> np.ndarray:
        a = self.actor(obs).numpy()
        if deterministic:
            return a
        noise = self.rng.normal(0.0, self.config.action_noise, a.shape)
        return np.clip(a + noise, -1.0, 1.0).astype(np.float32)

    def _explore(self, obs: np.ndarray) -> np.ndarray:
        """``clip(mu(s) + N(0, sigma^2), -1, 1)`` with the noise from ``self.rng``."""
        if self._numpy_actor is None:  # pragma: no cover - the actor is always a plain MLP
            with torch.no_grad():
                mu = self.actor(torch.from_numpy(obs)[None]).numpy()[0]
        else:
            mu = np.tanh(self._numpy_actor(obs))
        noise = self.rng.normal(0.0, self.config.action_noise, self.act_dim)
        return np.clip(mu + noise, -1.0, 1.0).astype(np.float32)

    # -- the update ----------------------------------------------------------------------------
    def _gradient_steps(self, batch: dict[str, Tensor]) -> dict[str, float]:
        cfg = self.config
        n, b = batch["rewards"].shape
        critic_sum, actor_sum, actor_steps = torch.zeros(()), torch.zeros(()), 0
        taken = 0
        while taken < n:
            # The targets only change at a delayed update: one forward for the steps up to it.
            span = min(n - taken, cfg.policy_delay - self.num_updates % cfg.policy_delay)
            sl = slice(taken, taken + span)
            with torch.no_grad():
                next_obs = batch["next_obs"][sl].reshape(span * b, -1)
                noise = torch.randn((span * b, self.act_dim), generator=self.torch_gen)
                a_next = smoothed_target_actions(
                    self.actor_target(next_obs),
                    noise * cfg.target_policy_noise,
                    cfg.target_noise_clip,
                )
                next_q = self.critic_target(next_obs, a_next).view(2, span, b)
                y = clipped_double_q_target(
                    batch["rewards"][sl], batch["terminated"][sl], next_q, cfg.gamma
                )  # [span, B]
            for k in range(span):
                obs = batch["obs"][taken + k]
                q = self.critic(obs, batch["actions"][taken + k])  # [2, B]
                critic_loss = (q - y[k]).pow(2).mean(-1).sum()
                self.critic_optimizer.zero_grad(set_to_none=True)
                critic_loss.backward()
                self.critic_optimizer.step()
                critic_sum += critic_loss.detach()
                self.num_updates += 1
                if self.num_updates % cfg.policy_delay == 0:
                    actor_sum += self._actor_step(obs)
                    actor_steps += 1
            taken += span
        out = {"critic_loss": float(critic_sum) / max(n, 1)}
        if actor_steps:
            out["actor_loss"] = float(actor_sum) / actor_steps
        elif "actor_loss" in self.losses:
            out["actor_loss"] = self.losses["actor_loss"]
        return out

    def _actor_step(self, obs: Tensor) -> Tensor:
        """One delayed step: descend ``-mean Q_1(s, mu(s))``, then move both targets."""
        cfg = self.config
        self.critic.requires_grad_(False)
        actor_loss = -self.critic(obs, self.actor(obs))[0].mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.critic.requires_grad_(True)
        self.actor_optimizer.step()
        polyak_update(
            list(self.critic_target.parameters()), list(self.critic.parameters()), cfg.tau
        )
        polyak_update(list(self.actor_target.parameters()), list(self.actor.parameters()), cfg.tau)
        return actor_loss.detach()
