"""The agent API every mpgym agent follows (familiar to stable-baselines3 users).

``Cls(env, config, run_dir=...)``, ``learn(budget, callback, progress_bar) -> self``,
``predict(obs, deterministic) -> (action, None)``, ``save(path)``, ``Cls.load(path, env)``.
A subclass supplies ``name`` (its registry name, also the checkpoint ``kind``), ``Config`` (a
frozen dataclass with at least ``env_id: str`` and ``seed: int``), optional ``PRESETS``, and
implements ``learn``, ``predict``, ``state_dict`` and ``load_state_dict``. Checkpoints hold
``{config, state_dict}`` only (safetensors), so renaming an attribute never breaks a file.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np

from agents.common.envs import env_id_of, make_env
from mpgym.checkpoint import load_checkpoint, save_checkpoint
from mpgym.errors import MpgymError
from mpgym.runs import RunDir

log = logging.getLogger(__name__)

Callback = Callable[[dict[str, Any]], "bool | None"]
"""``callback(locals()) -> bool | None``; returning ``False`` stops learning (as in SB3)."""

METRIC_X = ("timestep", "episode")
"""Column names agents log the learning-curve x axis under (first present is plotted)."""
METRIC_RETURN = "return"
"""Column name of the episode return in ``metrics.csv``."""


def keep_going(callback: Callback | None, locals_: dict[str, Any]) -> bool:
    """Call ``callback`` (if any) and return False only when it returned exactly ``False``."""
    return callback is None or callback(locals_) is not False


def _resolve(tp: Any, value: Any) -> Any:
    """Turn a JSON value back into ``tp`` (nested dataclasses, tuples, Paths)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return config_from_dict(tp, value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            if (dataclasses.is_dataclass(arg) and isinstance(value, dict)) or (
                    typing.get_origin(arg) is tuple or arg is tuple):
                return _resolve(arg, value)
        return value
    if (origin is tuple or tp is tuple) and isinstance(value, list):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_resolve(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_resolve(a, v) for a, v in zip(args, value, strict=True))
        return tuple(value)
    if tp is Path and isinstance(value, str):
        return Path(value)
    return value


def config_from_dict(config_cls: Any, data: dict[str, Any]) -> Any:
    """Rebuild a (frozen, possibly nested) dataclass config from its JSON form.

    Unknown keys (``"algo"`` written by the CLI, fields removed since) are ignored with a log
    line; lists become tuples where the field is a tuple; nested dataclasses are rebuilt.
    """
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"{config_cls!r} is not a dataclass")
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # unresolved forward references: fall back to raw values
        hints = {}
    names = {f.name for f in dataclasses.fields(config_cls) if f.init}
    unknown = sorted(set(data) - names - {"algo", "kind"})
    if unknown:
        log.info("ignoring config keys %s unknown to %s", unknown, config_cls.__name__)
    kwargs = {k: _resolve(hints.get(k, Any), v) for k, v in data.items() if k in names}
    try:
        return config_cls(**kwargs)
    except TypeError as exc:
        raise MpgymError(f"config does not fit {config_cls.__name__}: {exc}") from None


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
        if env is None:
            env = config.env_id
        if isinstance(env, str) and env.split(":", 1)[-1] != config.env_id:
            config = dataclasses.replace(config, env_id=env.split(":", 1)[-1])
        elif isinstance(env, gym.Env) and env_id_of(env) != config.env_id and env.spec is not None:
            config = dataclasses.replace(config, env_id=env_id_of(env))
        self.config: Any = config
        self.env = self._make_env(env)
        self.run = run_dir if isinstance(run_dir, RunDir) or run_dir is None else RunDir(run_dir)
        self.history: list[dict[str, Any]] = []
        self.num_timesteps = 0
        self.num_episodes = 0
        self.rng = np.random.default_rng(config.seed)

    def _make_env(self, env: str | gym.Env) -> gym.Env:
        """Build the training env (override for vectorised envs or wrappers)."""
        return make_env(env)

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
        """Record one metrics row (in ``history`` and the run's ``metrics.csv``)."""
        self.history.append(metrics)
        if self.run is not None:
            self.run.metrics.log(**metrics)

    def meta(self) -> dict[str, Any]:
        """Counters stored beside the weights in a checkpoint."""
        return {"num_timesteps": self.num_timesteps, "num_episodes": self.num_episodes}

    def save(self, path: str | Path | RunDir) -> Path:
        """Write ``{config, state_dict}`` to ``path`` (a run dir gets checkpoint.safetensors)."""
        path = Path(path)
        if path.is_dir() or path.suffix == "":
            path = path / "checkpoint.safetensors"
        return save_checkpoint(path, self.state_dict(), kind=self.name, config=self.config,
                               meta=self.meta())

    @classmethod
    def load(cls, path: str | Path, env: str | gym.Env | None = None) -> Agent:
        """Load an agent saved by :meth:`save` (a file or a run directory).

        Args:
            path: ``checkpoint.safetensors`` or the run directory holding it.
            env: env to attach (default: made from the saved ``config.env_id``).

        Raises:
            CheckpointError: missing/corrupt file, or a checkpoint of another algorithm.
        """
        ckpt = load_checkpoint(path, expected_kind=cls.name)
        config = config_from_dict(cls.Config, ckpt.config)
        agent = cls(env if env is not None else config.env_id, config)
        agent.load_state_dict(ckpt.state_dict)
        agent.num_timesteps = int(ckpt.meta.get("num_timesteps", 0))
        agent.num_episodes = int(ckpt.meta.get("num_episodes", 0))
        return agent

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.config.env_id!r}, seed={self.config.seed})"
