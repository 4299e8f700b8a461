"""Value iteration and policy iteration as agents: plan on the env's model, then act greedily.

The solvers are :func:`agents.tabular.dp.value_iteration` and
:func:`agents.tabular.dp.policy_iteration`; these classes give them the agent API (``learn``,
``predict``, ``save``, ``load``) so ``mpgym train value-iteration --env FrozenLake-v1`` works
like any other algorithm. ``learn`` builds the model ``P`` of the env with
:meth:`envs.TabularModel.from_env` (toy-text envs and the ``mpgym/`` envs expose it), solves it
and keeps ``Q*``, ``V*`` and the greedy policy. With ``gamma = 1`` on slippery FrozenLake 4x4
the start state's value is the optimal success probability without a time limit, 14/17 =
0.824; the default ``gamma = 0.99`` gives the policy whose success within Gymnasium's 100-step
limit is 0.74 (the ``reward_threshold`` note "optimum = 0.74").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np

from agents.common.base import Callback
from agents.common.callbacks import learning_hooks
from agents.common.envs import EnvKwargs
from agents.tabular.base import TabularAgent
from agents.tabular.dp import SolveInfo, bellman_backup, policy_iteration, value_iteration
from mpgym.checkpoint import CheckpointError
from mpgym.errors import MpgymError, check_positive
from mpgym.runs import RunDir


@dataclass(frozen=True)
class ValueIterationConfig:
    """Value iteration on the env's model (defaults: FrozenLake-v1, success 0.74 in 100 steps)."""

    env_id: str = "FrozenLake-v1"
    """Gymnasium id of an env that exposes its model ``P`` (toy-text or mpgym/)."""
    env_kwargs: EnvKwargs = field(default_factory=dict)
    """Keyword arguments of the env (``gymnasium.make(env_id, **env_kwargs)``), as JSON on the
    command line: ``--env-kwargs '{"is_slippery": false}'``."""
    seed: int = 0
    """Seed of the agent's generator (DP itself is deterministic)."""
    gamma: float = 0.99
    """Discount factor in [0, 1] (1 needs every policy the solver meets to terminate)."""
    tol: float = 1e-10
    """Stop when the guaranteed bound on ``max |V - V*|`` is below this (gamma < 1), or the
    Bellman residual is (gamma = 1)."""
    max_sweeps: int = 1_000_000
    """Cap on Bellman sweeps (``learn(n)`` overrides it)."""


@dataclass(frozen=True)
class PolicyIterationConfig:
    """Policy iteration on the env's model (defaults: FrozenLake-v1, as value iteration)."""

    env_id: str = "FrozenLake-v1"
    """Gymnasium id of an env that exposes its model ``P`` (toy-text or mpgym/)."""
    env_kwargs: EnvKwargs = field(default_factory=dict)
    """Keyword arguments of the env (``gymnasium.make(env_id, **env_kwargs)``), as JSON on the
    command line: ``--env-kwargs '{"is_slippery": false}'``."""
    seed: int = 0
    """Seed of the agent's generator (DP itself is deterministic)."""
    gamma: float = 0.99
    """Discount factor in [0, 1] (1 needs every policy the solver meets to terminate)."""
    evaluation: Literal["linear", "iterative"] = "linear"
    """How each policy is evaluated: an exact sparse linear solve, or repeated backups."""
    max_improvements: int = 1000
    """Cap on policy improvement steps (``learn(n)`` overrides it)."""


class _PlanningAgent(TabularAgent):
    """Shared plumbing: the model, the solution tables, predict, checkpoints."""

    budget_unit: ClassVar[Literal["timesteps", "episodes"]] = "episodes"

    def __init__(self, env: str | gym.Env, config: Any | None = None, *,
                 run_dir: str | Path | RunDir | None = None):
        super().__init__(env, config, run_dir=run_dir)
        self.v = np.zeros(self.n_states)
        self.pi = np.full((self.n_states, self.n_actions), 1.0 / self.n_actions)
        self.info: SolveInfo | None = None

    def _solve(self, model: Any, budget: int | None) -> tuple[np.ndarray, np.ndarray, SolveInfo]:
        raise NotImplementedError

    def learn(self, total_timesteps: int | None = None, callback: Callback | None = None,
              progress_bar: bool = True) -> _PlanningAgent:
        """Build the env's model and solve it; ``total_timesteps`` caps sweeps/improvements.

        Returns:
            ``self``, with ``q`` ``(S, A)``, ``v`` ``(S,)``, ``pi`` ``(S, A)`` one-hot and
            ``info`` (:class:`SolveInfo`). With a run directory, ``solve.json`` holds ``info``.

        Raises:
            MpgymError: the env exposes no model, or a budget below 1.
        """
        from envs.tabular_model import TabularModel

        if total_timesteps is not None:
            check_positive("total_timesteps", total_timesteps)
        model = TabularModel.from_env(self.env)
        if model.R.shape != (self.n_states, self.n_actions):
            raise MpgymError(f"the model of {self.config.env_id} has shape {model.R.shape}, "
                             f"but its spaces say ({self.n_states}, {self.n_actions}).")
        V, pi, info = self._solve(model, total_timesteps)
        self.v, self.pi, self.info = V, pi, info
        self.q = bellman_backup(model, V, self.config.gamma)
        self.num_episodes += 1
        if self.run is not None:
            self.run.write_json("solve.json", dataclasses.asdict(info))
        with learning_hooks(self, callback) as hooks:  # one call, after solving
            if hooks is not None:
                hooks.step(locals())
        return self

    def predict(self, obs: Any, deterministic: bool = True) -> tuple[np.ndarray, None]:
        """The planned policy's action for ``obs`` (batched ``obs`` gives batched actions).

        DP policies are deterministic; ``deterministic=False`` gives the same action.
        """
        obs_arr = np.asarray(obs, dtype=np.int64)
        if obs_arr.size and (obs_arr.min() < 0 or obs_arr.max() >= self.n_states):
            raise MpgymError(f"observation {obs!r} is outside 0..{self.n_states - 1}.")
        return np.argmax(self.pi[obs_arr], axis=-1), None

    def policy(self) -> np.ndarray:
        """``(S, A)`` one-hot planned policy."""
        return self.pi

    def values(self) -> np.ndarray:
        """``(S,)`` planned state values ``V*``."""
        return self.v

    def state_dict(self) -> dict[str, Any]:
        """``q`` ``(S, A)``, ``v`` ``(S,)`` and the policy ``pi`` ``(S, A)``."""
        return {"q": self.q, "v": self.v, "pi": self.pi}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the tables; shapes must fit the env and ``pi`` must be a policy.

        Raises:
            CheckpointError: missing tables, other shapes, non-finite values, or a ``pi`` whose
                rows are not probability vectors.
        """
        S, A = self.n_states, self.n_actions
        tables = {}
        for name, shape in (("q", (S, A)), ("v", (S,)), ("pi", (S, A))):
            if name not in state:
                raise CheckpointError(f"checkpoint has no {name!r} table.")
            x = np.asarray(state[name], dtype=float)
            if x.shape != shape or not np.isfinite(x).all():
                raise CheckpointError(f"checkpoint table {name!r} has shape {x.shape}; the env "
                                      f"needs {shape} finite values.")
            tables[name] = x
        pi = tables["pi"]
        if (pi < 0).any() or not np.allclose(pi.sum(axis=1), 1.0):
            raise CheckpointError("checkpoint policy 'pi' must have rows of probabilities.")
        self.q, self.v, self.pi = tables["q"], tables["v"], pi


class ValueIteration(_PlanningAgent):
    """Value iteration (Bellman 1957; Sutton & Barto, sec. 4.4) with MacQueen's stopping bound."""

    name: ClassVar[str] = "value-iteration"
    Config: ClassVar[type] = ValueIterationConfig
    PRESETS: ClassVar[dict[str, Any]] = {
        "frozenlake": ValueIterationConfig(),
        "frozenlake-undiscounted": ValueIterationConfig(gamma=1.0),
        "gambler": ValueIterationConfig(env_id="mpgym/GamblersProblem-v0", gamma=1.0),
    }
    config: ValueIterationConfig

    def _solve(self, model: Any, budget: int | None) -> tuple[np.ndarray, np.ndarray, SolveInfo]:
        cfg = self.config
        return value_iteration(model, cfg.gamma, cfg.tol,
                               max_sweeps=budget if budget is not None else cfg.max_sweeps)


class PolicyIteration(_PlanningAgent):
    """Policy iteration (Howard 1960; Sutton & Barto, sec. 4.3) with exact evaluation."""

    name: ClassVar[str] = "policy-iteration"
    Config: ClassVar[type] = PolicyIterationConfig
    PRESETS: ClassVar[dict[str, Any]] = {
        "frozenlake": PolicyIterationConfig(),
        "frozenlake-undiscounted": PolicyIterationConfig(gamma=1.0),
    }
    config: PolicyIterationConfig

    def _solve(self, model: Any, budget: int | None) -> tuple[np.ndarray, np.ndarray, SolveInfo]:
        cfg = self.config
        return policy_iteration(
            model, cfg.gamma, evaluation=cfg.evaluation,
            max_improvements=budget if budget is not None else cfg.max_improvements)
