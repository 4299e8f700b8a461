"""Training callbacks in the style of stable-baselines3, for every agent's ``learn``.

``learn(..., callback=...)`` accepts ``None``, a :class:`BaseCallback`, a plain function
``callback(locals()) -> bool | None`` (it receives the learn loop's local variables, as it always
has), or a list of these (made a :class:`CallbackList` by :func:`convert_callback`). Returning
``False`` from a function or from ``on_step`` stops learning at once; ``True`` or ``None``
continues.

When the hooks run:

- ``on_training_start``: once per ``learn`` call, after the envs are reset, before the first step.
- ``on_step``: after every env step -- a vector step (``n_envs`` transitions) for A2C and PPO,
  one step for DQN, REINFORCE, SAC and TD3, one *episode* for the tabular TD and Monte Carlo
  agents (their budget unit), and once after solving for the planning agents. A stop request
  in the middle of an A2C/PPO rollout ends learning in that vector step: the partial rollout is
  not used for an update.
- ``on_rollout_end``: A2C and PPO after each complete rollout, before its update; REINFORCE
  when a batch of episodes is complete, before its update. Other agents never call it.
- ``on_training_end``: when ``learn`` returns (budget spent or a callback stopped it); not when
  it raises.

With no callback the loops do one ``is None`` test per step and build nothing.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.common.base import METRIC_RETURN, Agent
from agents.common.evaluation import evaluate_policy
from envs.make import make_env
from mpgym.checkpoint import atomic_write_bytes
from mpgym.errors import MpgymError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepLocals:
    """What a :class:`BaseCallback` sees of the latest step (``self.locals``).

    A stable view, the same for every agent, instead of the learn loops' local variables.

    Attributes:
        num_timesteps: the agent's environment steps so far (real transitions, all envs).
        dones: (n_envs,) bool, which envs ended an episode at this step (tabular agents:
            ``[True]``, one call per episode).
        infos: one ``info`` dict per env from this step (Gymnasium's vectorised info split
            per env; the tabular and planning agents give empty dicts).
        episode_returns: undiscounted returns of the episodes that ended at this step.
        episode_lengths: lengths of those episodes, in the same order.
    """

    num_timesteps: int
    dones: np.ndarray
    infos: list[dict[str, Any]]
    episode_returns: tuple[float, ...] = ()
    episode_lengths: tuple[int, ...] = ()


def per_env_infos(info: Any, n_envs: int) -> list[dict[str, Any]]:
    """Gymnasium's vectorised ``info`` (a dict of arrays with ``_key`` masks) as a dict per env.

    A list or tuple of dicts (one per env) is returned as a list; None gives empty dicts.
    """
    if info is None:
        return [{} for _ in range(n_envs)]
    if not isinstance(info, dict):
        return list(info)
    out: list[dict[str, Any]] = [{} for _ in range(n_envs)]
    for key, value in info.items():
        if key.startswith("_"):
            continue
        mask = info.get("_" + key)
        if isinstance(value, dict):
            value = per_env_infos(value, n_envs)
        elif mask is None and not (hasattr(value, "__len__") and len(value) == n_envs):
            value = [value] * n_envs  # not per env: the same for every env
        for i in range(n_envs):
            if mask is None or mask[i]:
                out[i][key] = value[i]
    return out


class BaseCallback:
    """Base class of callbacks (stable-baselines3's ``BaseCallback``).

    Override the hooks :meth:`on_training_start`, :meth:`on_step`, :meth:`on_rollout_end` and
    :meth:`on_training_end`, or, as in SB3, their underscored twins (``_on_step`` ...), which
    the default hooks call. ``on_step`` returning ``False`` stops learning; ``True`` and
    ``None`` continue (as for function callbacks). The fields below are kept up to date by the
    agent (:meth:`update_locals`) before each ``on_step``; counters are never reset, so a
    callback reused over ``learn`` calls keeps counting, as in SB3.

    Attributes:
        agent: the agent being trained (also ``model``, SB3's name); None before training.
        n_calls: how many times ``on_step`` was called (for a child of :class:`EvalCallback`:
            how many times it fired).
        num_timesteps: the agent's ``num_timesteps`` at the latest call.
        locals: a :class:`StepLocals` of the latest step (None before the first).
        parent: the callback that calls this one (:class:`EvalCallback` for its
            ``callback_on_new_best``), else None.
        verbose: 0 quiet; 1 and more log progress (``logging`` at INFO level).
    """

    def __init__(self, verbose: int = 0):
        self.agent: Agent | None = None
        self.n_calls = 0
        self.num_timesteps = 0
        self.locals: StepLocals | None = None
        self.parent: BaseCallback | None = None
        self.verbose = verbose
        self._loop_locals: dict[str, Any] = {}

    @property
    def model(self) -> Agent | None:
        """The agent (SB3's name for it)."""
        return self.agent

    @property
    def training_env(self) -> Any:
        """The env the agent steps (A2C/PPO: the vector env)."""
        agent = self.agent
        return getattr(agent, "vec_env", None) or getattr(agent, "env", None)

    # -- called by the agent -----------------------------------------------------------------
    def init_callback(self, agent: Agent) -> None:
        """Attach to ``agent`` (at the start of each ``learn``)."""
        self.agent = agent
        self._init_callback()

    def update_locals(self, step: StepLocals, loop_locals: dict[str, Any]) -> None:
        """Count a call and store the step (before :meth:`on_step`)."""
        self.n_calls += 1
        self.num_timesteps = step.num_timesteps
        self.locals = step
        self._loop_locals = loop_locals

    # -- the hooks ---------------------------------------------------------------------------
    def on_training_start(self) -> None:
        """Once per ``learn`` call, before the first step."""
        if self.agent is not None:
            self.num_timesteps = self.agent.num_timesteps
        self._on_training_start()

    def on_step(self) -> bool:
        """After every step; return False to stop learning."""
        return self._on_step()

    def on_rollout_end(self) -> None:
        """On-policy agents: a rollout is complete, before its update."""
        self._on_rollout_end()

    def on_training_end(self) -> None:
        """When ``learn`` returns."""
        self._on_training_end()

    def _init_callback(self) -> None:
        """Extra set-up once the agent is known."""

    def _on_training_start(self) -> None:
        """Override point of :meth:`on_training_start`."""

    def _on_step(self) -> bool:
        """Override point of :meth:`on_step`; True continues."""
        return True

    def _on_rollout_end(self) -> None:
        """Override point of :meth:`on_rollout_end`."""

    def _on_training_end(self) -> None:
        """Override point of :meth:`on_training_end`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_calls={self.n_calls})"


class FunctionCallback(BaseCallback):
    """A plain function ``callback(locals()) -> bool | None`` as a callback.

    The function receives the learn loop's local variables (``self`` is the agent), as
    ``learn(callback=function)`` always passed them; returning exactly ``False`` stops.
    """

    def __init__(self, function: Callable[[dict[str, Any]], Any], verbose: int = 0):
        super().__init__(verbose)
        self.function = function

    def _on_step(self) -> bool:
        return self.function(self._loop_locals) is not False


class CallbackList(BaseCallback):
    """Several callbacks called in order; learning stops when any of them returns False.

    Every callback is called at each step, even after one asked to stop (as in SB3).
    """

    def __init__(self, callbacks: Sequence[Any]):
        super().__init__()
        if not isinstance(callbacks, (list, tuple)):
            raise MpgymError(f"CallbackList takes a list of callbacks, got "
                             f"{type(callbacks).__name__}.")
        self.callbacks = [c for c in map(convert_callback, callbacks) if c is not None]

    def _init_callback(self) -> None:
        for c in self.callbacks:
            c.init_callback(self.agent)  # type: ignore[arg-type]

    def _on_training_start(self) -> None:
        for c in self.callbacks:
            c.on_training_start()

    def _on_step(self) -> bool:
        keep = True
        for c in self.callbacks:
            c.update_locals(self.locals, self._loop_locals)  # type: ignore[arg-type]
            keep = c.on_step() is not False and keep
        return keep

    def _on_rollout_end(self) -> None:
        for c in self.callbacks:
            c.on_rollout_end()

    def _on_training_end(self) -> None:
        for c in self.callbacks:
            c.on_training_end()


def convert_callback(callback: Any) -> BaseCallback | None:
    """``None``, a :class:`BaseCallback`, a function or a list of these -> a callback or None.

    Raises:
        MpgymError: anything else (naming what was given and what is accepted).
    """
    if callback is None or isinstance(callback, BaseCallback):
        return callback
    if isinstance(callback, (list, tuple)):
        return CallbackList(callback)
    if callable(callback):
        return FunctionCallback(callback)
    raise MpgymError(f"callback must be a function callback(locals()) -> bool | None, a "
                     f"BaseCallback, or a list of these; got {type(callback).__name__}.")


def _check_count(name: str, value: Any) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise MpgymError(f"{name} must be a whole number >= 1; got {value!r}.")
    return int(value)


class CheckpointCallback(BaseCallback):
    """Save the agent every ``save_freq`` calls of ``on_step`` (SB3's ``CheckpointCallback``).

    Files: ``<save_path>/<name_prefix>_<num_timesteps>_steps.safetensors``, written atomically
    by ``agent.save`` (with what continuing needs); load one with ``Cls.load(file)``.

    Args:
        save_freq: save when ``n_calls`` is a multiple of this (env steps for single-env
            agents, vector steps for A2C/PPO, episodes for tabular agents).
        save_path: the directory (made when missing).
        name_prefix: start of the file names.
        verbose: 1 logs each save.
    """

    def __init__(self, save_freq: int, save_path: str | Path, name_prefix: str = "rl_model",
                 verbose: int = 0):
        super().__init__(verbose)
        self.save_freq = _check_count("CheckpointCallback save_freq", save_freq)
        self.save_path = Path(save_path)
        self.name_prefix = name_prefix
        self.saved: list[Path] = []
        """The files written, in order."""

    def checkpoint_file(self, num_timesteps: int) -> Path:
        """The file of the checkpoint taken at ``num_timesteps``."""
        return self.save_path / f"{self.name_prefix}_{num_timesteps}_steps.safetensors"

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            assert self.agent is not None
            path = self.agent.save(self.checkpoint_file(self.num_timesteps))
            self.saved.append(path)
            if self.verbose >= 1:
                log.info("saved checkpoint %s", path)
        return True


class ResumableCheckpointCallback(BaseCallback):
    """Keep one resumable checkpoint, rewritten every ``every`` timesteps (``--save-every``).

    Unlike :class:`CheckpointCallback` (a new file per save), this overwrites one checkpoint --
    ``path``, default the agent's run directory -- with everything continuing needs (a replay
    agent's buffer beside it; ``agent.save_resumable``), written atomically, so a run killed at
    any moment loses at most ``every`` timesteps: ``Cls.load(path).learn(n,
    reset_num_timesteps=False)`` (``mpgym train ALGO --resume --out RUN``) goes on from it.

    Args:
        every: save when at least this many timesteps passed since the last save.
        path: the checkpoint file or run directory (None: the agent's run directory).
        verbose: 1 logs each save.
    """

    def __init__(self, every: int, path: str | Path | None = None, verbose: int = 0):
        super().__init__(verbose)
        self.every = _check_count("ResumableCheckpointCallback every", every)
        self.path = None if path is None else Path(path)
        self._last = 0
        self.saves = 0
        """How many saves were written."""

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps
        save = getattr(self.agent, "save_resumable", None)
        if save is None or (self.path is None and getattr(self.agent, "run", None) is None):
            raise MpgymError(
                f"ResumableCheckpointCallback needs an agent that saves resumable checkpoints "
                f"(the deep agents) with a path or a run directory; got "
                f"{type(self.agent).__name__} with {self.path or 'no path and no run'}."
            )

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.every:
            assert self.agent is not None
            path = self.agent.save_resumable(self.path)
            self._last = self.num_timesteps
            self.saves += 1
            if self.verbose >= 1:
                log.info("saved %s at %d timesteps", path, self.num_timesteps)
        return True


class EvalCallback(BaseCallback):
    """Evaluate the agent every ``eval_freq`` calls on a separate env; keep the best model.

    Each evaluation runs :func:`agents.common.evaluate_policy` (episode ``i`` starts from
    ``reset(seed=seed + i)``, so every evaluation scores the same start states) and records
    ``num_timesteps``, the returns and the lengths. After a new best mean return the agent is
    saved to ``<best_model_save_path>/best_model.safetensors`` and ``callback_on_new_best`` is
    called; its False stops learning.

    ``<log_path>/evaluations.npz`` (rewritten atomically after each evaluation) holds, as SB3's:
    ``timesteps`` (n_evals,) int, ``results`` (n_evals, n_eval_episodes) float returns and
    ``ep_lengths`` (n_evals, n_eval_episodes) int; plus ``successes`` (same shape, bool) when
    the env gives a success signal. With a TensorBoard run directory the agent's run also gets
    ``eval/mean_return`` and ``eval/mean_length`` at ``num_timesteps``.

    Args:
        eval_env: an env id or a (not vectorised) env, separate from the training env.
        eval_freq: evaluate when ``n_calls`` is a multiple of this (see :class:`BaseCallback`).
        n_eval_episodes: episodes per evaluation.
        deterministic: greedy actions.
        best_model_save_path: directory of ``best_model.safetensors`` (None: not saved).
        log_path: directory of ``evaluations.npz`` (None: kept in memory only).
        callback_on_new_best: called after each new best (``StopTrainingOnRewardThreshold``).
        verbose: 1 logs each evaluation.
        seed: first reset seed of each evaluation's episodes.
        env_kwargs: keyword arguments of the env when ``eval_env`` is an id.

    Attributes:
        evaluations_timesteps: ``num_timesteps`` of each evaluation.
        evaluations_results: the returns of each evaluation ((n_eval_episodes,) arrays).
        evaluations_length: the lengths of each evaluation.
        last_mean_reward: mean return of the latest evaluation.
        best_mean_reward: the best mean return so far (``-inf`` before the first).
    """

    BEST_MODEL_FILE = "best_model.safetensors"
    EVALUATIONS_FILE = "evaluations.npz"

    def __init__(
        self,
        eval_env: str | gym.Env,
        eval_freq: int = 10_000,
        n_eval_episodes: int = 5,
        deterministic: bool = True,
        best_model_save_path: str | Path | None = None,
        log_path: str | Path | None = None,
        callback_on_new_best: BaseCallback | None = None,
        verbose: int = 1,
        *,
        seed: int = 0,
        env_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__(verbose)
        if isinstance(eval_env, gym.vector.VectorEnv):
            raise MpgymError("EvalCallback evaluates on a single env; pass an env id or a "
                             "gymnasium.Env, not a vector env.")
        self.eval_env = make_env(eval_env, **(env_kwargs or {}))
        self.eval_freq = _check_count("EvalCallback eval_freq", eval_freq)
        self.n_eval_episodes = _check_count("EvalCallback n_eval_episodes", n_eval_episodes)
        if not isinstance(seed, int) or seed < 0:
            raise MpgymError(f"EvalCallback seed must be an int >= 0; got {seed!r}.")
        self.seed = seed
        self.deterministic = deterministic
        self.best_model_save_path = None if best_model_save_path is None else Path(
            best_model_save_path)
        self.log_path = None if log_path is None else Path(log_path)
        if callback_on_new_best is not None and not isinstance(callback_on_new_best,
                                                               BaseCallback):
            raise MpgymError(f"callback_on_new_best must be a BaseCallback (such as "
                             f"StopTrainingOnRewardThreshold); got "
                             f"{type(callback_on_new_best).__name__}.")
        self.callback_on_new_best = callback_on_new_best
        if callback_on_new_best is not None:
            callback_on_new_best.parent = self
        self.evaluations_timesteps: list[int] = []
        self.evaluations_results: list[np.ndarray] = []
        self.evaluations_length: list[np.ndarray] = []
        self.evaluations_successes: list[np.ndarray] = []
        self.last_mean_reward = -np.inf
        self.best_mean_reward = -np.inf

    def _init_callback(self) -> None:
        if self.callback_on_new_best is not None:
            self.callback_on_new_best.init_callback(self.agent)  # type: ignore[arg-type]

    def _on_training_start(self) -> None:
        if self.callback_on_new_best is not None:
            self.callback_on_new_best.on_training_start()

    def _on_training_end(self) -> None:
        if self.callback_on_new_best is not None:
            self.callback_on_new_best.on_training_end()

    def _on_step(self) -> bool:
        if self.n_calls % self.eval_freq != 0:
            return True
        agent = self.agent
        assert agent is not None
        result = evaluate_policy(agent, self.eval_env, self.n_eval_episodes, seed=self.seed,
                                 deterministic=self.deterministic)
        self.evaluations_timesteps.append(self.num_timesteps)
        self.evaluations_results.append(result.returns)
        self.evaluations_length.append(result.lengths)
        if result.successes is not None:
            self.evaluations_successes.append(result.successes)
        self.last_mean_reward = result.mean_return
        if self.log_path is not None:
            self._write_evaluations()
        if agent.run is not None:
            agent.run.scalars("eval", self.num_timesteps, {
                "mean_return": result.mean_return, "mean_length": float(result.lengths.mean())})
        if self.verbose >= 1:
            log.info("eval at %d steps: return %.3f +- %.3f", self.num_timesteps,
                     result.mean_return, result.std_return)
        if result.mean_return <= self.best_mean_reward:
            return True
        self.best_mean_reward = result.mean_return
        if self.best_model_save_path is not None:
            path = agent.save(self.best_model_save_path / self.BEST_MODEL_FILE)
            if self.verbose >= 1:
                log.info("new best mean return %.3f: saved %s", result.mean_return, path)
        child = self.callback_on_new_best
        if child is None:
            return True
        child.update_locals(self.locals, self._loop_locals)  # type: ignore[arg-type]
        return child.on_step() is not False

    def _write_evaluations(self) -> None:
        """``evaluations.npz`` (see the class docstring), written atomically."""
        arrays = {"timesteps": np.asarray(self.evaluations_timesteps, dtype=np.int64),
                  "results": np.stack(self.evaluations_results),
                  "ep_lengths": np.stack(self.evaluations_length)}
        if len(self.evaluations_successes) == len(self.evaluations_results):
            arrays["successes"] = np.stack(self.evaluations_successes)
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]  # (numpy stubs: allow_pickle)
        assert self.log_path is not None
        atomic_write_bytes(self.log_path / self.EVALUATIONS_FILE, buf.getvalue())


class StopTrainingOnRewardThreshold(BaseCallback):
    """Stop learning once the best evaluation mean return reaches ``reward_threshold``.

    Use it as :class:`EvalCallback`'s ``callback_on_new_best`` (it reads the parent's
    ``best_mean_reward``), as in SB3.

    Args:
        reward_threshold: stop when ``best_mean_reward >= reward_threshold``.
        verbose: 1 logs the stop.
    """

    def __init__(self, reward_threshold: float, verbose: int = 0):
        super().__init__(verbose)
        if not isinstance(reward_threshold, (int, float, np.number)) or isinstance(
                reward_threshold, bool):
            raise MpgymError(f"reward_threshold must be a number; got {reward_threshold!r}.")
        self.reward_threshold = float(reward_threshold)

    def _init_callback(self) -> None:
        if not isinstance(self.parent, EvalCallback):
            raise MpgymError("StopTrainingOnRewardThreshold reads the evaluations of an "
                             "EvalCallback: pass it as EvalCallback(..., callback_on_new_best="
                             "StopTrainingOnRewardThreshold(...)).")

    def _on_step(self) -> bool:
        assert isinstance(self.parent, EvalCallback)
        best = self.parent.best_mean_reward
        if best < self.reward_threshold:
            return True
        if self.verbose >= 1:
            log.info("stopping: best mean return %.3f reached the threshold %.3f", best,
                     self.reward_threshold)
        return False


# -- what the learn loops call ------------------------------------------------------------------
class CallbackError(MpgymError):
    """A callback raised during ``learn``; the agent was saved first when it has a run directory.

    The callback's own exception is the ``__cause__``.
    """


def _callback_failed(agent: Agent, callback: BaseCallback, hook: str,
                     exc: Exception) -> CallbackError:
    """Save the agent (if it has a run directory) and say what failed, where it was saved."""
    function = getattr(callback, "function", None)
    name = getattr(function, "__qualname__", None) or type(callback).__name__
    if agent.run is not None:
        try:
            agent.save(agent.run.path)
            where = f"the agent was saved to {agent.run.path}"
        except Exception as save_exc:  # noqa: BLE001 -- reported with the callback's error
            where = f"saving the agent failed too ({type(save_exc).__name__}: {save_exc})"
    else:
        where = "the agent has no run directory and stays usable in memory (agent.save(PATH))"
    return CallbackError(
        f"the callback {name} raised {type(exc).__name__}: {exc} (in {hook}, at "
        f"{agent.num_timesteps} timesteps); {where}."
    )


def _call(agent: Agent, callback: BaseCallback, hook: str) -> Any:
    """``callback.hook()``; an exception it raises becomes a :class:`CallbackError`."""
    try:
        return getattr(callback, hook)()
    except Exception as exc:
        raise _callback_failed(agent, callback, hook, exc) from exc


class LearnHooks:
    """The callback of one ``learn`` call, fed by the loop (see :func:`learning_hooks`)."""

    __slots__ = ("agent", "callback", "_seen")

    def __init__(self, agent: Agent, callback: BaseCallback):
        self.agent = agent
        self.callback = callback
        self._seen = len(agent.history)

    def step(self, loop_locals: dict[str, Any], dones: Any = True, infos: Any = None) -> bool:
        """Call ``on_step`` after a step; False when learning must stop.

        Args:
            loop_locals: the loop's ``locals()`` (what plain function callbacks receive).
            dones: whether each env ended an episode at this step (a bool for one env).
            infos: the step's info -- one dict per env (a list), or Gymnasium's vectorised
                dict of arrays; None: empty dicts.
        """
        dones = np.atleast_1d(np.asarray(dones, dtype=bool))
        history = self.agent.history
        ended = [row for row in history[self._seen:] if METRIC_RETURN in row and "length" in row]
        self._seen = len(history)
        step = StepLocals(
            num_timesteps=self.agent.num_timesteps, dones=dones,
            infos=per_env_infos(infos, len(dones)),
            episode_returns=tuple(float(r[METRIC_RETURN]) for r in ended),
            episode_lengths=tuple(int(r["length"]) for r in ended))
        self.callback.update_locals(step, loop_locals)
        return _call(self.agent, self.callback, "on_step") is not False

    def rollout_end(self) -> None:
        """Call ``on_rollout_end`` (on-policy agents, before an update)."""
        _call(self.agent, self.callback, "on_rollout_end")


@contextlib.contextmanager
def learning_hooks(agent: Agent, callback: Any) -> Iterator[LearnHooks | None]:
    """Around a learn loop: the converted callback (None without one), then a log flush.

    The loop calls ``hooks.step(locals(), dones, infos)`` after each step, only when hooks is
    not None (``if hooks is not None and not hooks.step(...): break``), so that learning with
    no callback builds nothing per step. ``on_training_start`` runs on entry,
    ``on_training_end`` on a normal exit; the run directory's TensorBoard events are flushed
    on any exit.

    Raises:
        MpgymError: a ``callback`` of a type that is not accepted.
        CallbackError: a callback raised (the agent was saved first, when it has a run
            directory).
    """
    cb = convert_callback(callback)
    try:
        if cb is None:
            yield None
        else:
            cb.init_callback(agent)
            _call(agent, cb, "on_training_start")
            yield LearnHooks(agent, cb)
            _call(agent, cb, "on_training_end")
    finally:
        if agent.run is not None:
            agent.run.flush()


__all__ = ["BaseCallback", "CallbackError", "CallbackList", "CheckpointCallback", "EvalCallback",
           "FunctionCallback", "LearnHooks", "StepLocals", "StopTrainingOnRewardThreshold",
           "convert_callback", "learning_hooks", "per_env_infos"]
