"""What every tabular agent shares: config fields, Q table, epsilon-greedy, episode loop.

Checkpoints are ``{config, state_dict}`` with the table ``q`` and visit counts ``n``.

An env observing a ``Tuple`` of ``Discrete`` members (Blackjack-v1) is numbered into one
``Discrete`` index by :class:`envs.tuple_discrete.TupleToDiscrete`, applied by the agent itself;
``predict`` takes either the index or the env's tuple.

Tabular agents count their budget in **episodes**: ``learn(500)`` runs 500 episodes, and
``learn()`` runs ``config.episodes``. Each episode logs one row to ``metrics.csv``:
``episode``, ``timestep`` (env steps so far), ``return``, ``length``, ``epsilon``, ``alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np

from agents.common.base import Agent, Callback
from agents.common.callbacks import learning_hooks
from agents.common.envs import EnvKwargs, require_discrete
from agents.common.plotting import plot_learning_curve
from agents.common.schedules import Schedule, visit_step_size
from envs.tuple_discrete import TupleToDiscrete, discrete_observations
from mpgym.errors import MpgymError
from mpgym.progress import progress
from mpgym.runs import RunDir


@dataclass(frozen=True)
class TabularConfig:
    """Fields shared by the sampling-based tabular agents.

    The defaults (5000 episodes, epsilon 1 -> 0.01 over the first half, alpha 0.1 -> 0.01) take
    Q-learning and SARSA on FrozenLake-v1 (slippery 4x4) to a greedy policy whose success rate
    within the 100-step limit is 0.730 against the optimum's 0.740 (seeds 0-2, measured here).
    """

    env_id: str = "FrozenLake-v1"
    """Gymnasium id of an env with Discrete observations and actions (toy-text or mpgym/)."""
    env_kwargs: EnvKwargs = field(default_factory=dict)
    """Keyword arguments of the env (``gymnasium.make(env_id, **env_kwargs)``), as JSON on the
    command line: ``--env-kwargs '{"is_slippery": false}'``."""
    seed: int = 0
    """Seed of the agent's generator and of the env's first reset."""
    episodes: int = 5000
    """Training budget in episodes (``learn(n)`` overrides it)."""
    gamma: float = 0.99
    """Discount factor."""
    alpha: Schedule = Schedule(0.1, 0.01, 5000, "linear")
    """Step size as a function of the episode number (used when step_size='schedule')."""
    step_size: Literal["schedule", "1/n"] = "schedule"
    """'schedule': alpha(episode); '1/n': 1 / N(s, a), the sample average."""
    epsilon: Schedule = Schedule(1.0, 0.01, 2500, "linear")
    """Exploration rate of the epsilon-greedy behaviour policy, per episode."""
    q_init: float = 0.0
    """Initial action values (optimistic values encourage exploration)."""
    max_steps: int = 10_000
    """Cap on steps per episode, for envs without a time limit (CliffWalking-v1)."""


def epsilon_greedy_probs(q: np.ndarray, epsilon: float) -> np.ndarray:
    """Action probabilities of epsilon-greedy on ``q`` ``(..., A)``, ties shared equally.

    Example:
        >>> epsilon_greedy_probs(np.array([1.0, 3.0, 3.0]), 0.3).round(2).tolist()
        [0.1, 0.45, 0.45]
    """
    q = np.asarray(q, dtype=float)
    best = (q == q.max(axis=-1, keepdims=True)).astype(float)
    greedy = best / best.sum(axis=-1, keepdims=True)
    return (1.0 - epsilon) * greedy + epsilon / q.shape[-1]


class TabularAgent(Agent):
    """Base of the tabular agents: a ``(S, A)`` table ``q`` and visit counts ``n``.

    Subclasses implement :meth:`run_episode` (one episode of interaction and updates).
    """

    Config: ClassVar[type] = TabularConfig
    budget_unit: ClassVar[Literal["timesteps", "episodes"]] = "episodes"

    def __init__(self, env: str | gym.Env, config: Any | None = None, *,
                 run_dir: str | Path | RunDir | None = None):
        super().__init__(env, config, run_dir=run_dir)
        self.n_states, self.n_actions = require_discrete(self.env, type(self).__name__)
        self.q = np.full((self.n_states, self.n_actions), float(getattr(self.config, "q_init", 0)))
        self.n = np.zeros((self.n_states, self.n_actions))

    def _make_env(self, env: str | gym.Env) -> gym.Env:
        """The env, with a ``Tuple`` of ``Discrete`` observations numbered into one index."""
        return discrete_observations(super()._make_env(env))

    # -- acting -----------------------------------------------------------------------------
    def greedy(self, s: int) -> int:
        """Greedy action in ``s``, ties broken at random (with ``self.rng``)."""
        q = self.q[s]
        best = np.flatnonzero(q == q.max())
        return int(best[0] if best.size == 1 else best[self.rng.integers(best.size)])

    def behave(self, s: int, epsilon: float) -> int:
        """Epsilon-greedy action in ``s``."""
        if self.rng.random() < epsilon:
            return int(self.rng.integers(self.n_actions))
        return self.greedy(s)

    def obs_index(self, obs: Any) -> np.ndarray:
        """``obs`` as state indices: the env's tuple (Blackjack) numbered, indices checked."""
        if isinstance(obs, tuple) and isinstance(self.env, TupleToDiscrete):
            obs = self.env.observation(obs)
        obs_arr = np.asarray(obs, dtype=np.int64)
        if obs_arr.size and (obs_arr.min() < 0 or obs_arr.max() >= self.n_states):
            raise MpgymError(f"observation {obs!r} is outside 0..{self.n_states - 1}.")
        return obs_arr

    def predict(self, obs: Any, deterministic: bool = True) -> tuple[np.ndarray, None]:
        """Greedy action for ``obs`` (first maximiser), as SB3's ``(action, None)``.

        With ``deterministic=False`` the action is epsilon-greedy with the schedule's final
        epsilon. Batched ``obs`` gives batched actions.
        """
        obs_arr = self.obs_index(obs)
        if deterministic:
            return np.argmax(self.q[obs_arr], axis=-1), None
        eps = self.config.epsilon(self.config.episodes)
        actions = np.vectorize(lambda s: self.behave(int(s), eps), otypes=[np.int64])(obs_arr)
        return actions, None

    def policy(self) -> np.ndarray:
        """``(S, A)`` one-hot greedy policy (first maximiser), e.g. for ``policy_evaluation``."""
        return np.eye(self.n_actions)[np.argmax(self.q, axis=1)]

    def values(self) -> np.ndarray:
        """``(S,)`` greedy state values ``max_a q[s, a]``."""
        return self.q.max(axis=1)

    def step_size(self, s: int, a: int, episode: int) -> float:
        """Step size for updating ``(s, a)`` (counts the visit)."""
        self.n[s, a] += 1
        if self.config.step_size == "1/n":
            return float(visit_step_size(self.n[s, a]))
        return self.config.alpha(episode)

    # -- learning loop ----------------------------------------------------------------------
    def schedule_values(self, episode: int) -> dict[str, float]:
        """The schedules' values in ``episode``, logged with each episode's row."""
        return {"epsilon": self.config.epsilon(episode), "alpha": self.config.alpha(episode)}

    def td_target(self, reward: float, s2: int, terminated: bool, epsilon: float) -> float:
        """One-step target for ``Q(s, a)`` after ``(s, a, reward, s2)`` (see ``targets.py``)."""
        raise NotImplementedError

    def run_episode(self, episode: int, seed: int | None) -> tuple[float, int]:
        """Play one episode from ``env.reset(seed=seed)``, updating; return (return, length).

        The default is off-policy-style one-step TD control: act epsilon-greedily, then move
        ``Q(s, a)`` toward :meth:`td_target` (Q-learning, Expected SARSA). SARSA, which must
        pick ``a'`` before its update, and Monte Carlo override this.
        """
        eps, max_steps = self.config.epsilon(episode), self.config.max_steps
        s = int(self.env.reset(seed=seed)[0])
        ret, length, done = 0.0, 0, False
        while not done and length < max_steps:
            a = self.behave(s, eps)
            s2, r, terminated, truncated, _ = self.env.step(a)
            s2 = int(s2)
            target = self.td_target(float(r), s2, terminated, eps)
            self.q[s, a] += self.step_size(s, a, episode) * (target - self.q[s, a])
            ret, length, done, s = ret + float(r), length + 1, terminated or truncated, s2
        return ret, length

    def learn(self, total_timesteps: int | None = None, callback: Callback | None = None,
              progress_bar: bool = True) -> TabularAgent:
        """Train for ``total_timesteps`` **episodes** (default ``config.episodes``).

        Args:
            total_timesteps: number of episodes (SB3's name, kept for a common API).
            callback: called after each episode (see :mod:`agents.common.callbacks`): a
                function ``callback(locals()) -> bool | None``, a ``BaseCallback`` or a list;
                False stops.
            progress_bar: show a progress bar (only on a terminal).

        Returns:
            self. With a run directory, ``metrics.csv`` gets a row per episode and
            ``learning_curve.png`` is drawn at the end.
        """
        episodes = self.config.episodes if total_timesteps is None else int(total_timesteps)
        if episodes < 0:
            raise MpgymError(f"the episode budget must be >= 0, got {episodes}.")
        bar = progress(total=episodes, desc=self.name, enable=progress_bar, unit="ep")
        with bar, learning_hooks(self, callback) as hooks:
            for _ in range(episodes):
                episode = self.num_episodes
                seed = self.config.seed if episode == 0 else None  # seed the env once
                ret, length = self.run_episode(episode, seed)
                self.num_episodes += 1
                self.num_timesteps += length
                self.log(episode=self.num_episodes, timestep=self.num_timesteps, **{"return": ret},
                         length=length, **self.schedule_values(episode))
                bar.update(1)
                if hooks is not None and not hooks.step(locals()):
                    break
        if self.run is not None and self.history:
            plot_learning_curve(self.run, x="episode", title=f"{self.name} on {self.config.env_id}")
        return self

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The table and the visit counts."""
        return {"q": self.q, "n": self.n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``q`` and ``n`` (shapes must match the env)."""
        if "q" not in state:
            raise MpgymError("checkpoint has no 'q' table.")
        q = np.asarray(state["q"], dtype=float)
        n = np.asarray(state.get("n", np.zeros_like(q)), dtype=float)
        if q.shape != self.q.shape or n.shape != self.q.shape:
            shape = q.shape if q.shape != self.q.shape else n.shape
            raise MpgymError(f"checkpoint table has shape {shape}, but the env needs "
                             f"{self.q.shape} (states, actions); load it with the env it was "
                             "trained on.")
        self.q, self.n = q, n
