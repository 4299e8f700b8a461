"""Base of the prediction agents (TD(0), Monte Carlo): estimate ``V_pi`` of a fixed policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from agents.common.envs import EnvKwargs
from agents.common.schedules import Schedule
from agents.tabular.base import TabularAgent
from envs.tabular_model import check_policy
from mpgym.errors import MpgymError
from mpgym.runs import RunDir


@dataclass(frozen=True)
class PredictionConfig:
    """Prediction of the values of a fixed policy (Example 6.2 by default)."""

    env_id: str = "mpgym/RandomWalk-v0"
    """Gymnasium id of an env with Discrete observations and actions."""
    env_kwargs: EnvKwargs = field(default_factory=dict)
    """Keyword arguments of the env (``gymnasium.make(env_id, **env_kwargs)``), as JSON on the
    command line: ``--env-kwargs '{"is_slippery": false}'``."""
    seed: int = 0
    """Seed of the agent's generator and of the env's first reset."""
    episodes: int = 100
    """Training budget in episodes (Example 6.2 shows 100)."""
    gamma: float = 1.0
    """Discount factor (the random walk is undiscounted)."""
    alpha: Schedule = Schedule(0.1)
    """Step size per episode (used when step_size='schedule')."""
    step_size: Literal["schedule", "1/n"] = "schedule"
    """'schedule': alpha(episode); '1/n': 1 / N(s), the sample average."""
    v_init: float = 0.5
    """Initial state values (0.5 in Example 6.2)."""
    max_steps: int = 10_000
    """Cap on steps per episode, for envs without a time limit."""


class TabularPredictionAgent(TabularAgent):
    """Estimates ``v`` ``(S,)`` for the target ``policy`` ``(S, A)`` (default: equiprobable).

    ``predict`` samples the target policy (it has no greedy policy of its own); with
    ``deterministic=True`` it returns the policy's most probable action.
    """

    Config = PredictionConfig

    def __init__(self, env: str | gym.Env, config: Any | None = None, *,
                 run_dir: str | Path | RunDir | None = None, policy: np.ndarray | None = None):
        super().__init__(env, config, run_dir=run_dir)
        S, A = self.n_states, self.n_actions
        self.target = np.full((S, A), 1.0 / A) if policy is None else check_policy(policy, S, A)
        self._cdf = np.cumsum(self.target, axis=1)
        self.v = np.full(S, float(self.config.v_init))
        self.n_v = np.zeros(S)

    def act(self, s: int) -> int:
        """Sample the target policy in ``s``."""
        a = int(np.searchsorted(self._cdf[s], self.rng.random() * self._cdf[s, -1], side="right"))
        return min(a, self.n_actions - 1)

    def predict(self, obs: Any, deterministic: bool = True) -> tuple[np.ndarray, None]:
        """An action of the target policy for ``obs`` (SB3's ``(action, None)``)."""
        obs_arr = self.obs_index(obs)
        if deterministic:
            return np.argmax(self.target[obs_arr], axis=-1), None
        return np.vectorize(self.act, otypes=[np.int64])(obs_arr), None

    def values(self) -> np.ndarray:
        """``(S,)`` estimated state values."""
        return self.v

    def state_step_size(self, s: int, episode: int) -> float:
        """Step size for updating ``v[s]`` (counts the visit)."""
        self.n_v[s] += 1
        if self.config.step_size == "1/n":
            return 1.0 / self.n_v[s]
        return self.config.alpha(episode)

    def schedule_values(self, episode: int) -> dict[str, float]:
        """Only the step size: prediction has no exploration."""
        return {"alpha": self.config.alpha(episode)}

    def state_dict(self) -> dict[str, Any]:
        """Values, visit counts and the target policy."""
        return {"v": self.v, "n_v": self.n_v, "target": self.target}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore values, counts and target policy (shapes must match the env)."""
        missing = [k for k in ("v", "n_v", "target") if k not in state]
        if missing:
            raise MpgymError(f"checkpoint lacks {missing}.")
        v = np.asarray(state["v"], dtype=float)
        n_v = np.asarray(state["n_v"], dtype=float)
        if v.shape != (self.n_states,) or n_v.shape != (self.n_states,):
            raise MpgymError(f"checkpoint values have shapes {v.shape} and {n_v.shape}, but the "
                             f"env has {self.n_states} states.")
        self.v, self.n_v = v, n_v
        self.target = check_policy(np.asarray(state["target"], dtype=float), *self.q.shape)
        self._cdf = np.cumsum(self.target, axis=1)
