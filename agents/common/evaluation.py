"""Evaluate any policy (mpgym agent, stable-baselines3 model, or a function) on an env.

The same function scores tabular agents, deep agents and SB3 models, so comparisons are like
with like: episode ``i`` starts from ``env.reset(seed=seed + i)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from agents.common.envs import make_env
from mpgym.errors import MpgymError


@dataclass
class EvalResult:
    """Returns and lengths of evaluation episodes.

    Attributes:
        returns: (n_episodes,) float, undiscounted return of each episode.
        lengths: (n_episodes,) int, steps in each episode.
        frames: ``rgb_array`` frames of the first episode when ``render=True``, else empty.
    """

    returns: np.ndarray
    lengths: np.ndarray
    frames: list[np.ndarray] = field(default_factory=list)

    @property
    def mean_return(self) -> float:
        """Mean undiscounted return."""
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        """Standard deviation of the returns."""
        return float(np.std(self.returns))

    @property
    def success_rate(self) -> float:
        """Fraction of episodes with a positive return (goal reached in sparse-reward envs)."""
        return float(np.mean(self.returns > 0))

    def summary(self) -> dict[str, float]:
        """Mean/std return, mean length and success rate, for logs and tables."""
        return {"mean_return": self.mean_return, "std_return": self.std_return,
                "mean_length": float(np.mean(self.lengths)), "success_rate": self.success_rate,
                "episodes": len(self.returns)}


PolicyLike = Callable[[Any], Any] | Any


def _as_action_fn(policy: PolicyLike, deterministic: bool) -> Callable[[Any], Any]:
    if hasattr(policy, "predict"):  # mpgym agent or SB3 model
        return lambda obs: policy.predict(obs, deterministic=deterministic)[0]
    if callable(policy):
        def act(obs: Any) -> Any:
            out = policy(obs)
            return out[0] if isinstance(out, tuple) else out
        return act
    raise MpgymError(
        f"cannot evaluate a {type(policy).__name__}; accepted: an object with "
        "predict(obs, deterministic) (mpgym agent, SB3 model) or a function obs -> action."
    )


def _to_env_action(action: Any, space: gym.Space) -> Any:
    if isinstance(space, gym.spaces.Discrete):
        return int(np.asarray(action).reshape(-1)[0])
    return np.asarray(action, dtype=space.dtype).reshape(space.shape)


def evaluate_policy(
    policy: PolicyLike,
    env: str | gym.Env,
    n_episodes: int = 10,
    *,
    seed: int = 0,
    deterministic: bool = True,
    render: bool = False,
    max_steps: int = 100_000,
) -> EvalResult:
    """Run ``n_episodes`` episodes of ``policy`` and collect returns and lengths.

    Args:
        policy: an object with ``predict(obs, deterministic=...) -> (action, state)`` (mpgym
            agents, stable-baselines3 models) or a function ``obs -> action``.
        env: an env id or an env (not vectorised). With ``render=True`` an id is made with
            ``render_mode="rgb_array"``.
        n_episodes: number of episodes.
        seed: episode ``i`` starts from ``env.reset(seed=seed + i)``.
        deterministic: passed to ``predict`` (greedy actions when true).
        render: collect the first episode's frames.
        max_steps: safety cap per episode for envs without a time limit.

    Returns:
        EvalResult with ``returns`` and ``lengths`` of shape (n_episodes,).
    """
    if n_episodes < 1:
        raise MpgymError(f"n_episodes must be >= 1, got {n_episodes}.")
    if render:  # Gymnasium's pygame renderers must not look for a sound card
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    env = make_env(env, render_mode="rgb_array" if render else None)
    if render and env.render_mode != "rgb_array":
        raise MpgymError(f"render=True needs an env made with render_mode='rgb_array'; "
                         f"this one has render_mode={env.render_mode!r}.")
    act = _as_action_fn(policy, deterministic)
    returns, lengths, frames = np.zeros(n_episodes), np.zeros(n_episodes, dtype=int), []
    for i in range(n_episodes):
        obs, _ = env.reset(seed=seed + i)
        if render and i == 0:
            frames.append(env.render())
        done, total, steps = False, 0.0, 0
        while not done and steps < max_steps:
            action = _to_env_action(act(obs), env.action_space)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            steps += 1
            done = terminated or truncated
            if render and i == 0:
                frames.append(env.render())
        returns[i], lengths[i] = total, steps
    return EvalResult(returns=returns, lengths=lengths, frames=frames)
