"""REINFORCE: Monte Carlo policy gradient with reward-to-go and an optional learned baseline.

Williams (1992); Sutton & Barto (2018), section 13.4. After ``batch_episodes`` complete
episodes, one gradient step on ``L = -mean_t(log pi(a_t|s_t) (G_t - b(s_t)))`` with ``G_t`` the
discounted reward-to-go (:func:`reward_to_go`) and ``b(s) = V(s)`` a value network fitted to
``G_t`` by least squares (``baseline="value"``) or ``b = 0`` (``baseline="none"``).
Discrete actions use a Categorical policy, Box actions a Gaussian ``N(mu(s), sigma(s)^2)``.

Example:
    >>> agent = REINFORCE("CartPole-v1").learn(200_000)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from agents.common import Callback
from agents.common.callbacks import learning_hooks
from agents.common.envs import EnvKwargs
from agents.common.returns import reward_to_go
from agents.deep.base import PolicyAgent, check_step
from agents.deep.common import standardize
from mpgym.nn import Activation
from mpgym.progress import progress


@dataclass(frozen=True)
class REINFORCEConfig:
    """REINFORCE hyperparameters; defaults tuned here for CartPole-v1 (>= 195 within 1e5 steps)."""

    env_id: str = "CartPole-v1"
    """Gymnasium id of the environment (Discrete or Box actions)."""
    env_kwargs: EnvKwargs = field(default_factory=dict)
    """Keyword arguments of the env (``gymnasium.make(env_id, **env_kwargs)``), as JSON on the
    command line: ``--env-kwargs '{"is_slippery": false}'``."""
    seed: int = 0
    """Seed of the env, the network initialisation and action sampling."""
    total_timesteps: int = 100_000
    """Environment steps of ``learn()`` without a budget."""
    learning_rate: float = 3e-3
    """Adam step size of the policy."""
    value_learning_rate: float = 1e-2
    """Adam step size of the baseline."""
    gamma: float = 0.99
    """Discount factor of the reward-to-go."""
    batch_episodes: int = 4
    """Complete episodes per gradient step."""
    baseline: Literal["value", "none"] = "value"
    """'value': subtract a learned V(s); 'none': plain reward-to-go."""
    normalize_advantage: bool = True
    """Standardise ``G_t - b(s_t)`` over each batch."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of the policy (and baseline) MLPs."""
    activation: Activation = "tanh"
    """Hidden nonlinearity."""
    std: Literal["param", "state"] = "state"
    """Gaussian policies: sigma(s) from the network ('state') or a learned constant ('param')."""
    log_std_init: float = 0.0
    """Initial log sigma of Gaussian policies."""


REINFORCE_PRESETS: dict[str, REINFORCEConfig] = {
    "CartPole-v1": REINFORCEConfig(),
    "Acrobot-v1": REINFORCEConfig(env_id="Acrobot-v1", total_timesteps=200_000),
    "MountainCar-v0": REINFORCEConfig(env_id="MountainCar-v0", total_timesteps=500_000),
    "LunarLander-v3": REINFORCEConfig(
        env_id="LunarLander-v3", total_timesteps=1_000_000, learning_rate=1e-3, batch_episodes=8
    ),
    "Pendulum-v1": REINFORCEConfig(
        env_id="Pendulum-v1",
        total_timesteps=300_000,
        gamma=0.95,
        learning_rate=1e-3,
        batch_episodes=8,
    ),
}


class REINFORCE(PolicyAgent):
    """Monte Carlo policy gradient for Discrete and Box actions, with an optional baseline."""

    name: ClassVar[str] = "reinforce"
    Config: ClassVar[type] = REINFORCEConfig
    PRESETS: ClassVar[dict[str, Any]] = REINFORCE_PRESETS
    config: REINFORCEConfig

    def _build(self) -> None:
        cfg = self.config
        self._build_policy(critic=cfg.baseline == "value")
        groups = [{"params": self.policy.actor.parameters(), "lr": cfg.learning_rate}]
        if self.policy.critic is not None:
            groups.append(
                {"params": self.policy.critic.parameters(), "lr": cfg.value_learning_rate}
            )
        if not self.discrete and not self.policy.state_std:
            groups.append({"params": [self.policy.log_std], "lr": cfg.learning_rate})
        self.optimizer = torch.optim.Adam(groups)

    # -- the update --------------------------------------------------------------------------
    def update(self, obs: np.ndarray, actions: np.ndarray, returns: np.ndarray) -> dict[str, float]:
        """One policy-gradient step (and one baseline step) on a batch of complete episodes.

        Args:
            obs: ``[T, obs_dim]`` encoded observations of all steps of the batch.
            actions: ``[T]`` or ``[T, D]`` actions taken (before clipping to the Box).
            returns: ``[T]`` reward-to-go ``G_t`` of each step within its episode.

        Returns:
            ``policy_loss``, ``value_loss`` (NaN without baseline) and ``entropy``.
        """
        cfg = self.config
        x = torch.from_numpy(obs)
        a = torch.from_numpy(actions)
        g = torch.from_numpy(returns.astype(np.float32))
        log_prob, entropy = self.policy.evaluate(x, a)
        value_loss = torch.zeros(())
        adv = g
        if self.policy.critic is not None:
            values = self.policy.value(x)
            value_loss = F.mse_loss(values, g)
            adv = g - values.detach()
        if cfg.normalize_advantage and len(adv) > 1:
            adv = standardize(adv)
        policy_loss = -(log_prob * adv).mean()
        loss = policy_loss + value_loss - cfg.ent_coef * entropy.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {
            "policy_loss": policy_loss.item(),
            "value_loss": value_loss.item() if self.policy.critic is not None else math.nan,
            "entropy": entropy.mean().item(),
        }

    def episode_returns_to_go(
        self, rewards: list[float], final_obs: Any, *, time_limit: bool
    ) -> np.ndarray:
        """``G_t`` of every step of a finished episode (:func:`reward_to_go`).

        An episode cut by a time limit is bootstrapped with ``V(s_T)`` of its final
        observation when there is a baseline (``G_t`` then includes ``gamma^(T-t) V(s_T)``).

        Args:
            rewards: the episode's ``T`` rewards.
            final_obs: its final (raw) observation ``s_T``.
            time_limit: whether it was truncated (not terminated).

        Returns:
            ``[T]`` float64 returns.
        """
        tail = 0.0
        if time_limit and self.policy.critic is not None:
            with torch.no_grad():
                tail = float(self.policy.value(torch.from_numpy(self.preprocess(final_obs))))
        return reward_to_go(np.append(rewards, tail), self.config.gamma)[:-1]

    # -- the loop ----------------------------------------------------------------------------
    def learn(
        self,
        total_timesteps: int | None = None,
        callback: Callback | None = None,
        progress_bar: bool = True,
        reset_num_timesteps: bool = True,
    ) -> REINFORCE:
        """Play episodes with the current policy; update after every ``batch_episodes``.

        Args:
            total_timesteps: environment steps (default ``config.total_timesteps``); the last,
                incomplete batch of episodes is not used.
            callback: called after every env step (see :mod:`agents.common.callbacks`): a
                function ``callback(locals()) -> bool | None``, a ``BaseCallback`` or a list;
                False stops. ``on_rollout_end`` runs before each batch's update.
            progress_bar: show a progress bar on a terminal.
            reset_num_timesteps: True (SB3's default) restarts the counters; False continues
                them. REINFORCE has no schedules, and each call starts a fresh episode.

        Returns:
            ``self``.

        Raises:
            MpgymError: a budget below 1, or parameters that became NaN/inf.
        """
        cfg = self.config
        total = total_timesteps if total_timesteps is not None else cfg.total_timesteps
        self._setup_learn(total, reset_num_timesteps)
        env = self.env
        raw, _ = env.reset(seed=cfg.seed + self.num_episodes)
        obs_b, act_b, ret_b, rewards = [], [], [], []
        episodes_in_batch, ep_start, stats = 0, 0, {}
        bar = progress(
            total=total, desc=f"reinforce {self.env_id}", enable=progress_bar, unit="step"
        )
        with self._training(), bar, learning_hooks(self, callback) as hooks:
            for _ in range(total):
                obs = self.preprocess(raw)
                action, _ = self.policy.act(torch.from_numpy(obs), self.torch_gen)
                action_np = action.numpy()[0]
                raw, reward, terminated, truncated, info = env.step(self.env_actions(action_np))
                check_step(self.env_id, raw, reward)
                obs_b.append(obs[0])
                act_b.append(action_np)
                rewards.append(float(reward))
                self.num_timesteps += 1
                bar.update(1)
                if terminated or truncated:
                    ret_b.append(self.episode_returns_to_go(
                        rewards[ep_start:], raw, time_limit=truncated and not terminated))
                    self._episodes_done(
                        [(sum(rewards[ep_start:]), len(rewards) - ep_start)], **stats
                    )
                    ep_start = len(rewards)
                    episodes_in_batch += 1
                    raw, _ = env.reset()
                    if episodes_in_batch == cfg.batch_episodes:
                        if hooks is not None:
                            hooks.rollout_end()
                        stats = self.update(np.stack(obs_b), np.stack(act_b), np.concatenate(ret_b))
                        self.num_updates += 1
                        self.check_finite_state(f"after update {self.num_updates}")
                        self.log_update(**stats)
                        obs_b, act_b, ret_b, rewards = [], [], [], []
                        episodes_in_batch, ep_start = 0, 0
                if hooks is not None and not hooks.step(locals(), terminated or truncated,
                                                        [info]):
                    break
        return self
