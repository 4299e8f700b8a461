"""Proximal Policy Optimization with the clipped surrogate (Schulman et al. 2017).

After each rollout of ``n_envs * n_steps`` steps (see :mod:`agents.deep.onpolicy`), advantages
come from GAE(lambda); then ``n_epochs`` passes over shuffled minibatches minimise
``L = L_clip + vf_coef * (V(s) - G)^2 - ent_coef * H[pi(.|s)]`` with
``L_clip = -mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A))`` (:func:`ppo_clip_loss`).

Example:
    >>> agent = PPO("CartPole-v1").learn(100_000)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from agents.deep.buffers import RolloutBatch
from agents.deep.common import ppo_clip_loss, standardize
from agents.deep.onpolicy import OnPolicyAgent, OnPolicyConfig
from mpgym.errors import MpgymError, check_positive


@dataclass(frozen=True)
class PPOConfig(OnPolicyConfig):
    """PPO hyperparameters; defaults are rl-baselines3-zoo's tuned CartPole-v1 set.

    Zoo ppo.yml, CartPole-v1: 8 envs, n_steps 32, batch 256, gae_lambda 0.8, gamma 0.98,
    20 epochs, lr linearly annealed from 1e-3, clip range linearly annealed from 0.2, 1e5 steps.
    Here 10 epochs instead of 20: the same final return for half the gradient steps (seeds 0-4
    all reach a mean evaluation return of 500 after 1e5 steps, measured here).
    """

    total_timesteps: int = 100_000
    """Environment steps of ``learn()`` without a budget (zoo CartPole: 1e5)."""
    n_steps: int = 32
    """Steps per environment between updates."""
    learning_rate: float = 1e-3
    """Initial Adam step size."""
    gamma: float = 0.98
    """Discount factor."""
    gae_lambda: float = 0.8
    """GAE lambda."""
    batch_size: int = 256
    """Minibatch size."""
    n_epochs: int = 10
    """Passes over each rollout (zoo: 20; 10 solves CartPole here with half the gradient steps)."""
    clip_range: float = 0.2
    """Initial epsilon of the clipped surrogate."""
    clip_schedule: Literal["constant", "linear"] = "linear"
    """'linear' anneals the clip range to 0 with the remaining budget."""
    normalize_advantage: bool = True
    """Standardise advantages within each minibatch."""
    target_kl: float | None = None
    """Stop an update's epochs early when the approximate KL exceeds 1.5 x this."""
    desired_kl: float | None = None
    """Adapt the step size to keep each minibatch's approximate KL to the rollout's policy near
    this (rsl_rl's ``adaptive`` schedule): before each minibatch's step (but the first of an
    update, whose policy is still the rollout's), the step size is divided by 1.5 when that KL
    exceeds 2 x this and multiplied by 1.5 when it is below half of it, within
    [:data:`ADAPTIVE_LR_MIN`, :data:`ADAPTIVE_LR_MAX`]. It starts at ``learning_rate``, is
    logged as ``learning_rate`` and is saved with the optimiser. ``None``: the step size
    follows ``lr_schedule``, which must be 'constant' when this is set."""


ADAPTIVE_LR_MIN, ADAPTIVE_LR_MAX, ADAPTIVE_LR_FACTOR = 1e-5, 1e-2, 1.5
"""Bounds and factor of the ``desired_kl`` step size (rsl_rl's values)."""


PPO_PRESETS: dict[str, PPOConfig] = {
    "CartPole-v1": PPOConfig(),
    # rl-baselines3-zoo ppo.yml (Acrobot-v1: -73.5 after 1e6 steps).
    "Acrobot-v1": PPOConfig(
        env_id="Acrobot-v1",
        total_timesteps=1_000_000,
        n_envs=16,
        n_steps=256,
        gae_lambda=0.94,
        gamma=0.99,
        n_epochs=4,
        batch_size=64,
        ent_coef=0.0,
        lr_schedule="constant",
        learning_rate=3e-4,
        clip_schedule="constant",
        normalize_obs=True,
    ),
    # rl-baselines3-zoo ppo.yml (MountainCar-v0).
    "MountainCar-v0": PPOConfig(
        env_id="MountainCar-v0",
        total_timesteps=1_000_000,
        n_envs=16,
        n_steps=16,
        gae_lambda=0.98,
        gamma=0.99,
        n_epochs=4,
        batch_size=64,
        ent_coef=0.0,
        lr_schedule="constant",
        learning_rate=3e-4,
        clip_schedule="constant",
        normalize_obs=True,
    ),
    # rl-baselines3-zoo ppo.yml (LunarLander-v3: 242 after 1e6 steps; needs Box2D).
    "LunarLander-v3": PPOConfig(
        env_id="LunarLander-v3",
        total_timesteps=1_000_000,
        n_envs=16,
        n_steps=1024,
        batch_size=64,
        gae_lambda=0.98,
        gamma=0.999,
        n_epochs=4,
        ent_coef=0.01,
        lr_schedule="constant",
        learning_rate=3e-4,
        clip_schedule="constant",
    ),
    # rl-baselines3-zoo ppo.yml (Pendulum-v1: -172 after 1e5 steps) with its gSDE exploration
    # (resampled every 4 steps) and observation and reward normalisation. Measured here: -176
    # after 1e5 steps (seed 0); a plain Gaussian policy stayed near -450 to -670.
    "Pendulum-v1": PPOConfig(
        env_id="Pendulum-v1",
        total_timesteps=100_000,
        n_envs=4,
        n_steps=1024,
        gae_lambda=0.95,
        gamma=0.9,
        n_epochs=10,
        batch_size=64,
        learning_rate=1e-3,
        lr_schedule="constant",
        clip_range=0.2,
        clip_schedule="constant",
        normalize_obs=True,
        normalize_reward=True,
        std="sde",
        sde_sample_freq=4,
        log_std_init=0.0,
    ),
    # DeepMimic's walk (mpgym/HumanoidImitate-v0, envs.imitation) with residual PD targets
    # around the reference. DeepMimic's PPO: gamma 0.95, lambda 0.95, clip 0.2, 4096 samples
    # per update, ReLU MLPs, small step sizes. Chosen with seed 0 over the first 0.4-0.8M steps
    # (the training episodes' lengths and the updates' KL): at step size 3e-4 the 37-D
    # Gaussian's updates reached an approximate KL of 1-23 per rollout and the episodes stopped
    # lengthening near 27 steps; 1e-4 keeps it near 0.02-0.03. An initial std of 0.2 (0.1 rad)
    # lengthened the first episodes faster than 0.37. The copies step on a thread per core
    # (MuJoCo releases the GIL): 2,683 steps/s against 2,120 in a SyncVectorEnv and 1,318 in
    # an AsyncVectorEnv (16 copies, 2 cores, 8,192-step rollouts with updates).
    # The step size adapts to an approximate KL of 0.02 per minibatch (``desired_kl``, starting
    # at 1e-4): at a constant 1e-4 the updates' mean KL grew from 0.03 to 0.28 over 14M steps
    # while the Gaussian's std shrank, and the training episodes stopped lengthening near 3 s
    # after ~9M steps. Seed 0 with the adaptive step size (tuning starts 2,000,000+i): the
    # episodes kept lengthening (4.9 s at 11.25M steps), 5-episode checks survived 10 s in
    # 0.2-1.0 of their episodes from 8.4M steps on, and after 2 h (15.4M steps) 15 of 20 starts
    # survived at 96 mm MPJPE (benchmarks/results/imitation-tuning-s0.json).
    # The budget is a cap above what 2 hours on 2 cores give (~18M steps before the update ran
    # on both cores, ~21M after): the walk benchmark's limit is the wall time.
    "imitate-walk": PPOConfig(
        env_id="mpgym/HumanoidImitate-v0",
        env_kwargs={"motion": "walk", "config": {"action_mode": "residual"}},
        total_timesteps=30_000_000,
        n_envs=16,
        vectorization="thread",
        n_steps=256,
        batch_size=1024,
        n_epochs=5,
        gamma=0.95,
        gae_lambda=0.95,
        learning_rate=1e-4,
        lr_schedule="constant",
        desired_kl=0.02,
        clip_range=0.2,
        clip_schedule="constant",
        ent_coef=0.0,
        max_grad_norm=1.0,
        hidden=(512, 256),
        activation="relu",
        normalize_obs=True,
        log_std_init=-1.6,
    ),
}

# MinAtar (Young & Tian 2019, arXiv:1903.03176; the '-v0' ids: all 6 actions, as in the paper).
# rl-baselines3-zoo's ppo.yml Atari set (8 envs, 128 steps, 4 epochs, batch 256, lr 2.5e-4 and
# clip 0.1 both annealed linearly, entropy 0.01, vf 0.5) on the MinAtar paper's small network
# (conv 16 3x3 -> fc 128, shared by actor and critic, linear heads as SB3's CNN policies) and
# its budget of 5M frames (MinAtar has no frame skip). The paper has no PPO; REFERENCE for
# scale, its curves at 5M frames (see agents.deep.dqn.MINATAR_DQN_REFERENCE): DQN Breakout ~10,
# Space Invaders ~43; online actor-critic AC(0.8) ~17.5 and ~185.
_MINATAR = PPOConfig(
    total_timesteps=5_000_000,
    n_envs=8,
    n_steps=128,
    n_epochs=4,
    batch_size=256,
    learning_rate=2.5e-4,
    lr_schedule="linear",
    clip_range=0.1,
    clip_schedule="linear",
    gamma=0.99,
    gae_lambda=0.95,
    ent_coef=0.01,
    vf_coef=0.5,
    max_grad_norm=0.5,
    hidden=(),
    policy="cnn",
    features="minatar",
)
PPO_PRESETS["minatar-breakout"] = replace(_MINATAR, env_id="MinAtar/Breakout-v0")
PPO_PRESETS["minatar-space-invaders"] = replace(_MINATAR, env_id="MinAtar/SpaceInvaders-v0")


class PPO(OnPolicyAgent):
    """PPO-Clip for Discrete and Box action spaces over ``gymnasium.vector`` envs."""

    name: ClassVar[str] = "ppo"
    Config: ClassVar[type] = PPOConfig
    PRESETS: ClassVar[dict[str, Any]] = PPO_PRESETS
    config: PPOConfig

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        if cfg.desired_kl is not None:
            check_positive("--desired-kl", cfg.desired_kl, integer=False)
            if cfg.lr_schedule != "constant":
                raise MpgymError(
                    f"--desired-kl {cfg.desired_kl} adapts the step size itself; it needs "
                    f"--lr-schedule constant, not {cfg.lr_schedule!r}."
                )
        return torch.optim.Adam(
            self.policy.parameters(), lr=self.config.learning_rate, eps=1e-5, fused=True
        )

    def _update(self, batch: RolloutBatch, progress_remaining: float) -> dict[str, float]:
        cfg = self.config
        clip = cfg.clip_range * (progress_remaining if cfg.clip_schedule == "linear" else 1.0)
        n = batch.obs.shape[0]
        batch_size = min(cfg.batch_size, n)
        sums = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0}
        count = 0
        for _ in range(cfg.n_epochs):
            perm = torch.randperm(n, generator=self.torch_gen)
            kls = []
            for start in range(0, n - batch_size + 1, batch_size):
                idx = perm[start : start + batch_size]
                stats = self._minibatch_step(batch, idx, clip, adapt=count > 0)
                for k, v in stats.items():
                    sums[k] += v
                kls.append(stats["approx_kl"])
                count += 1
            if cfg.target_kl is not None and sum(kls) / len(kls) > 1.5 * cfg.target_kl:
                break
        stats = {k: v / max(count, 1) for k, v in sums.items()} | {"clip_range": clip}
        if cfg.desired_kl is not None:
            stats["learning_rate"] = self.optimizer.param_groups[0]["lr"]
        return stats

    def _minibatch_step(
        self, batch: RolloutBatch, idx: torch.Tensor, clip: float, *, adapt: bool = False
    ) -> dict[str, float]:
        cfg = self.config
        obs, actions = batch.obs[idx], batch.actions[idx]
        adv = batch.advantages[idx]
        if cfg.normalize_advantage and len(adv) > 1:
            adv = standardize(adv)
        masks = None if batch.masks is None else batch.masks[idx]
        log_prob, entropy, values = self.policy.evaluate_value(obs, actions, masks)
        log_ratio = log_prob - batch.log_probs[idx]
        ratio = log_ratio.exp()
        policy_loss = ppo_clip_loss(ratio, adv, clip)
        value_loss = F.mse_loss(values, batch.returns[idx])
        with torch.no_grad():
            approx_kl = ((ratio - 1.0) - log_ratio).mean().item()  # Schulman's k3 estimator
        if adapt and cfg.desired_kl is not None:
            self._adapt_step_size(approx_kl)
        stats = self._gradient_step(policy_loss, value_loss, entropy.mean())
        return stats | {"approx_kl": approx_kl}

    def _adapt_step_size(self, kl: float) -> None:
        """rsl_rl's adaptive schedule: move the step size towards ``desired_kl`` (config)."""
        desired = self.config.desired_kl
        for group in self.optimizer.param_groups:
            if kl > 2.0 * desired:
                group["lr"] = max(group["lr"] / ADAPTIVE_LR_FACTOR, ADAPTIVE_LR_MIN)
            elif kl < 0.5 * desired:
                group["lr"] = min(group["lr"] * ADAPTIVE_LR_FACTOR, ADAPTIVE_LR_MAX)
