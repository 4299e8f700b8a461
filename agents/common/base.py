"""The agent API every mpgym agent follows (familiar to stable-baselines3 users).

``Cls(env, config, run_dir=...)``, ``learn(budget, callback, progress_bar) -> self``,
``predict(obs, deterministic) -> (action, None)``, ``save(path)``, ``Cls.load(path, env)``.
A subclass supplies ``name`` (its registry name, also the checkpoint ``kind``), ``Config`` (a
frozen dataclass with at least ``env_id: str``, ``seed: int`` and ``env_kwargs``), optional
``PRESETS``, and implements ``learn``, ``predict``, ``state_dict`` and ``load_state_dict``.
Checkpoints hold ``{config, state_dict}`` only (safetensors), so renaming an attribute never
breaks a file.

The env is rebuilt on ``load`` from ``config.env_id`` and ``config.env_kwargs``. An agent made
with an env object that no id and keyword arguments can rebuild (built by hand, wrapped after
``gymnasium.make``) saves normally, but loading it needs ``env=``: it is never silently
replaced by another env.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Union

import gymnasium as gym
import numpy as np

from agents.common.envs import parse_env_kwargs
from envs.make import env_id_of, env_recipe, make_env
from mpgym.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mpgym.configs import check_types, config_from_dict
from mpgym.errors import MpgymError
from mpgym.runs import RunDir

if TYPE_CHECKING:
    from agents.common.callbacks import BaseCallback

log = logging.getLogger(__name__)

Callback = Union[  # noqa: UP007 - "BaseCallback" is a forward reference
    Callable[[dict[str, Any]], "bool | None"], "BaseCallback", Sequence[Any]]
"""What ``learn(callback=...)`` takes: ``callback(locals()) -> bool | None`` (returning
``False`` stops learning, as in SB3), a :class:`~agents.common.callbacks.BaseCallback`, or a
list of these (see :mod:`agents.common.callbacks`)."""

METRIC_X = ("timestep", "episode")
"""Column names agents log the learning-curve x axis under (first present is plotted)."""
METRIC_RETURN = "return"
"""Column name of the episode return in ``metrics.csv``."""


def set_generator_state(gen: np.random.Generator, state: Any, what: str) -> None:
    """``gen.bit_generator.state = state``; :class:`MpgymError` for a state that does not fit."""
    try:
        if not isinstance(state, dict) or state.get("bit_generator") != type(
                gen.bit_generator).__name__:
            raise ValueError("another kind of generator")
        gen.bit_generator.state = state
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise CheckpointError(f"the checkpoint's state of {what} is invalid ({exc}).") from None


def keep_going(callback: Callback | None, locals_: dict[str, Any]) -> bool:
    """Call ``callback`` (if any) and return False only when it returned exactly ``False``."""
    return callback is None or callback(locals_) is not False


def check_config(config: Any) -> Any:
    """Check a (nested) dataclass config: field types (:func:`mpgym.configs.check_types`), ranges.

    Returns:
        ``config``.

    Raises:
        MpgymError: naming the field, the value found and what is accepted.
    """
    check_types(config)
    _check_ranges(config)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_config(value)
    if hasattr(config, "env_kwargs"):
        parse_env_kwargs(config.env_kwargs)
    return config


_COUNTS = ("total_timesteps", "episodes", "max_steps", "n_envs", "n_steps", "batch_size",
           "n_epochs", "buffer_size", "train_freq", "gradient_steps", "target_update_interval",
           "batch_episodes", "max_sweeps", "max_improvements", "hidden")
"""Config fields (of any agent that has them) that count something: each must be >= 1."""


def _check_ranges(config: Any) -> None:
    """Check ranges: counts (each hidden width too) >= 1, seed and learning_starts >= 0.

    Also ``gamma`` in [0, 1].
    """
    name = type(config).__name__
    for field_name in _COUNTS:
        value = getattr(config, field_name, None)
        values = value if isinstance(value, tuple) else (value,)
        if value is not None and any(isinstance(v, int) and v < 1 for v in values):
            raise MpgymError(f"config field {name}.{field_name} must be >= 1; got {value!r}.")
    if getattr(config, "seed", 0) < 0:
        raise MpgymError(f"config field {name}.seed must be >= 0; got {config.seed!r}.")
    if getattr(config, "learning_starts", 0) < 0:
        raise MpgymError(f"config field {name}.learning_starts must be >= 0; "
                         f"got {config.learning_starts!r}.")
    gamma = getattr(config, "gamma", None)
    if isinstance(gamma, int | float) and not 0.0 <= gamma <= 1.0:
        raise MpgymError(f"config field {name}.gamma must be in [0, 1]; got {gamma!r}.")


class Agent(abc.ABC):
    """Base class: env and config handling, run directory, metrics, save/load.

    Attributes:
        env: the training environment (a ``gymnasium.Env``).
        config: the frozen dataclass config (``config.env_id`` names the env).
        run: the run directory, or None (then metrics stay in ``history`` only).
        history: every metrics row logged, as dicts (also written to ``metrics.csv``).
        num_timesteps: environment steps taken by ``learn`` so far.
        num_episodes: episodes finished by ``learn`` so far.
        rng: the agent's NumPy generator, seeded from ``config.seed``.
    """

    name: ClassVar[str] = ""
    """Registry name (``"q-learning"``, ``"dqn"``); also the checkpoint ``kind``."""
    Config: ClassVar[type]
    """The frozen dataclass config of this agent."""
    PRESETS: ClassVar[dict[str, Any]] = {}
    """Named configs (``{"frozenlake": Config(...)}``) for ``--preset``."""
    budget_unit: ClassVar[Literal["timesteps", "episodes"]] = "timesteps"
    """What ``learn(total_timesteps)`` counts."""

    def __init__(self, env: str | gym.Env, config: Any | None = None, *,
                 run_dir: str | Path | RunDir | None = None):
        config: Any = self.Config() if config is None else config
        if not isinstance(config, self.Config):
            raise MpgymError(f"{type(self).__name__} takes a {self.Config.__name__}, "
                             f"got {type(config).__name__}.")
        check_config(config)
        if env is None:
            env = config.env_id
        config = self._config_for_env(env, config)
        self.config: Any = config
        self.env_rebuildable = isinstance(env, str) or env_recipe(env) is not None
        """Whether ``config.env_id`` and ``config.env_kwargs`` rebuild the env (see ``load``)."""
        self.env = self._make_env(env)
        self.run = run_dir if isinstance(run_dir, RunDir) or run_dir is None else RunDir(run_dir)
        self.history: list[dict[str, Any]] = []
        self.num_timesteps = 0
        self.num_episodes = 0
        self.rng = np.random.default_rng(config.seed)

    @staticmethod
    def _config_for_env(env: str | gym.Env, config: Any) -> Any:
        """``config`` with ``env_id`` (and ``env_kwargs``) describing ``env``."""
        changes: dict[str, Any] = {}
        has_kwargs = any(f.name == "env_kwargs" for f in dataclasses.fields(config))
        if isinstance(env, str):
            changes["env_id"] = env.split(":", 1)[-1]
            if has_kwargs:
                changes["env_kwargs"] = parse_env_kwargs(config.env_kwargs)
        elif isinstance(env, gym.Env):
            recipe = env_recipe(env)
            changes["env_id"] = recipe[0] if recipe is not None else env_id_of(env)
            if has_kwargs:
                changes["env_kwargs"] = recipe[1] if recipe is not None else {}
        else:
            raise MpgymError(f"env must be an id string or a gymnasium.Env, "
                             f"got {type(env).__name__}.")
        return dataclasses.replace(config, **changes)

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments the env is made with (``config.env_kwargs``, or none)."""
        return dict(getattr(self.config, "env_kwargs", None) or {})

    def _make_env(self, env: str | gym.Env) -> gym.Env:
        """Build the training env (override for vectorised envs or wrappers)."""
        return make_env(env, **self.env_kwargs) if isinstance(env, str) else env

    # -- what a subclass implements ---------------------------------------------------------
    @abc.abstractmethod
    def learn(self, total_timesteps: int | None = None, callback: Callback | None = None,
              progress_bar: bool = True) -> Agent:
        """Train for ``total_timesteps`` (None: the config's budget); return ``self``."""

    @abc.abstractmethod
    def predict(self, obs: Any, deterministic: bool = True) -> tuple[Any, None]:
        """Action for ``obs`` (greedy when ``deterministic``), and ``None`` as SB3's state."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Name -> numpy array or torch tensor: everything needed to act and resume."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    # -- shared plumbing --------------------------------------------------------------------
    def log(self, **metrics: Any) -> None:
        """Record one metrics row (in ``history`` and the run's ``metrics.csv``).

        An episode row (one with ``return``) also gives the TensorBoard scalars
        ``episode/return`` and ``episode/length`` at its ``timestep`` (else ``episode``) when
        the run directory has ``tensorboard`` on.
        """
        self.history.append(metrics)
        if self.run is not None:
            self.run.metrics.log(**metrics)
            if self.run.tensorboard and METRIC_RETURN in metrics:
                step = next((metrics[x] for x in METRIC_X if x in metrics), self.num_timesteps)
                self.run.scalars("episode", int(step), {
                    k: metrics[k] for k in (METRIC_RETURN, "length") if k in metrics})

    def log_update(self, **stats: Any) -> None:
        """Record one update's statistics (losses, entropy, KL...) for TensorBoard.

        They become scalars ``train/<name>`` at ``num_timesteps`` when the run directory has
        ``tensorboard`` on; otherwise this does nothing (``metrics.csv`` keeps the latest
        values on its episode rows).
        """
        if self.run is not None and self.run.tensorboard:
            self.run.scalars("train", self.num_timesteps, stats)

    def meta(self) -> dict[str, Any]:
        """Counters and RNG state stored beside the weights in a checkpoint (JSON)."""
        return {"num_timesteps": self.num_timesteps, "num_episodes": self.num_episodes,
                "env_rebuildable": self.env_rebuildable,
                "rng": self.rng.bit_generator.state}

    def load_meta(self, meta: dict[str, Any]) -> None:
        """Restore what :meth:`meta` returned (missing keys keep their fresh values).

        Raises:
            MpgymError: values of the wrong type or range.
        """
        for key in ("num_timesteps", "num_episodes"):
            value = meta.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**62:
                raise CheckpointError(f"checkpoint meta {key!r} must be a count >= 0, "
                                      f"got {value!r}.")
            setattr(self, key, value)
        if "rng" in meta:
            set_generator_state(self.rng, meta["rng"], "the agent's generator")

    def resume_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """What continuing ``learn`` needs beyond :meth:`state_dict`: ``(tensors, json)``.

        Tensor names must not collide with :meth:`state_dict`'s; the JSON goes under the
        checkpoint meta's ``"resume"`` key. The default has nothing to add.
        """
        return {}, {}

    def load_resume_state(self, tensors: dict[str, Any], info: dict[str, Any]) -> None:  # noqa: B027
        """Restore what :meth:`resume_state` returned (``tensors`` is the whole checkpoint)."""

    @staticmethod
    def checkpoint_path(path: str | Path | RunDir) -> Path:
        """The checkpoint file for ``path`` (a run dir gets ``checkpoint.safetensors``)."""
        path = Path(path)
        if path.is_dir() or path.suffix == "":
            path = path / "checkpoint.safetensors"
        return path

    def save(self, path: str | Path | RunDir, *, resume: bool = True) -> Path:
        """Write ``{config, state_dict}`` to ``path`` (a run dir gets checkpoint.safetensors).

        The checkpoint also holds what continuing needs (optimiser state, counters, generator
        states, the env's state where it can be snapshotted): ``Cls.load(path).learn(n,
        reset_num_timesteps=False)`` continues the run. ``resume=False`` leaves that out: a
        smaller file for acting and evaluating (networks and normalisation statistics), from
        which learning starts with a fresh optimiser.
        """
        path = self.checkpoint_path(path)
        tensors, info = self.resume_state() if resume else ({}, {})
        state = self.state_dict()
        clash = set(tensors) & set(state)
        if clash:  # pragma: no cover - a programming error in a subclass
            raise RuntimeError(f"resume tensors {sorted(clash)} collide with the state dict")
        return save_checkpoint(path, {**state, **tensors}, kind=self.name, config=self.config,
                               meta={**self.meta(), "resume": info})

    @classmethod
    def load(cls, path: str | Path, env: str | gym.Env | None = None) -> Agent:
        """Load an agent saved by :meth:`save` (a file or a run directory).

        Args:
            path: ``checkpoint.safetensors`` or the run directory holding it.
            env: env to attach (default: made from the saved ``config.env_id`` and
                ``config.env_kwargs``; required when the agent was trained on an env object
                that these cannot rebuild).

        Raises:
            CheckpointError: missing/corrupt file, or a checkpoint of another algorithm.
            MpgymError: a config or tensors that do not fit this agent, or a saved env that
                cannot be rebuilt and no ``env=``.
        """
        ckpt = load_checkpoint(path, expected_kind=cls.name)
        if not isinstance(ckpt.meta, dict):
            raise CheckpointError(f"{path}: checkpoint meta must be a JSON object.")
        config = check_config(config_from_dict(cls.Config, ckpt.config))
        rebuildable = ckpt.meta.get("env_rebuildable", True)
        if env is None or (isinstance(env, str) and env.split(":", 1)[-1] == config.env_id):
            if rebuildable is not True:
                raise MpgymError(
                    f"{path} was trained on an env object ({config.env_id}) that its id and "
                    f"env_kwargs cannot rebuild; pass that env to load: "
                    f"{cls.__name__}.load(path, env=my_env).")
            env = config.env_id
        elif isinstance(env, str) and getattr(config, "env_kwargs", None):
            log.info("loading on %s: the saved env_kwargs of %s are not applied", env,
                     config.env_id)
            config = dataclasses.replace(config, env_kwargs={})
        cls._check_loadable(config, ckpt.state_dict)
        try:
            agent = cls(env, config)
            agent.load_state_dict(ckpt.state_dict)
            agent.load_meta(ckpt.meta)
            resume = ckpt.meta.get("resume", {})
            if not isinstance(resume, dict):
                raise CheckpointError(f"{path}: checkpoint meta 'resume' must be a JSON object.")
            agent.load_resume_state(ckpt.state_dict, resume)
        except MpgymError:
            raise
        except (MemoryError, OverflowError, ValueError, TypeError, KeyError, IndexError,
                RuntimeError) as exc:
            raise CheckpointError(f"{path} does not fit a {cls.__name__}: "
                                  f"{type(exc).__name__}: {exc}") from None
        return agent

    @classmethod
    def _check_loadable(cls, config: Any, state: dict[str, Any]) -> None:
        """Refuse, before building anything, a config that the tensors cannot belong to.

        Every hidden width must be at most the number of stored values (a layer of width
        ``w`` stores at least ``w`` biases), so a config cannot make ``load`` allocate more
        than the file justifies.

        Raises:
            CheckpointError: naming the field.
        """
        stored = sum(int(np.prod(tuple(getattr(v, "shape", ())))) for v in state.values())
        for width in getattr(config, "hidden", ()) or ():
            if width > stored:
                raise CheckpointError(f"checkpoint config asks for a hidden layer of width "
                                      f"{width}, but the file stores only {stored} values.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.config.env_id!r}, seed={self.config.seed})"
