"""Making environments from ids with clear errors, and checking their spaces.

Making envs from ids (``make_env``, ``env_recipe``, ``env_id_of``) lives in :mod:`envs.make`:
environments know no agent, so that code sits below both packages.

Agents record how their env was made (``env_id`` and ``env_kwargs``, see :func:`env_recipe`)
so a checkpoint rebuilds the same env, and can snapshot an env's state
(:func:`env_state` / :func:`restore_env_state`) so training continues where it stopped.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import concatenate, iterate

from envs.make import env_id_of, registered_ids
from mpgym.errors import MpgymError

log = logging.getLogger(__name__)


def parse_env_kwargs(value: Any) -> dict[str, Any]:
    """Check (and parse, from a JSON string) the keyword arguments of an env.

    Args:
        value: a dict with string keys and JSON values, or its JSON text
            (``'{"is_slippery": false}'``).

    Returns:
        The dict (JSON-normalised: tuples become lists).

    Raises:
        MpgymError: not a JSON object, or values JSON cannot hold.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise MpgymError(f"env_kwargs must be a JSON object such as "
                             f"'{{\"is_slippery\": false}}'; got {value!r} ({exc}).") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise MpgymError(f"env_kwargs must be a JSON object (a dict with string keys), "
                         f"got {type(value).__name__}.")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise MpgymError(f"env_kwargs must hold JSON values (numbers, strings, booleans, "
                         f"lists, dicts): {exc}.") from None


def _env_kwargs_constructor() -> Any:
    """Tyro's parser for ``--env-kwargs JSON`` (None when tyro is not installed)."""
    try:
        from tyro.constructors import PrimitiveConstructorSpec
    except ImportError:  # pragma: no cover - tyro is a core dependency
        return None

    def from_str(args: list[str]) -> dict[str, Any]:
        try:
            return parse_env_kwargs(args[0])
        except MpgymError as exc:
            raise ValueError(str(exc)) from None

    return PrimitiveConstructorSpec(
        nargs=1, metavar="JSON", instance_from_str=from_str,
        is_instance=lambda x: isinstance(x, dict),
        str_from_instance=lambda d: [json.dumps(d)])


EnvKwargs = Annotated[dict[str, Any], _env_kwargs_constructor()]
"""Type of the configs' ``env_kwargs`` field: a JSON object, given on the command line as
``--env-kwargs '{"is_slippery": false}'``."""


# -- vector envs ------------------------------------------------------------------------------
class ThreadedVectorEnv(SyncVectorEnv):
    """A ``SyncVectorEnv`` whose sub-envs step on a pool of threads (same-step autoreset).

    For envs whose step is mostly a simulator call that releases the GIL (MuJoCo's
    ``mj_step``): contiguous slices of the sub-envs step on ``n_threads`` threads, so the
    physics of a vector step runs on every core while the Python around it takes turns.
    Gymnasium has no such vector env; its ``AsyncVectorEnv`` (one process per sub-env) spends
    more on pipes and pickling than it saves when a step costs ~150 us (``HumanoidImitate-v0``
    with 16 copies on 2 cores: 1,318 steps/s async, 2,008 sync, in PPO's rollouts). Each sub-env
    sees the same calls in the same order as in ``SyncVectorEnv``, so results are identical.
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], n_threads: int | None = None,
                 **kwargs: Any):
        kwargs.setdefault("autoreset_mode", AutoresetMode.SAME_STEP)
        if kwargs["autoreset_mode"] != AutoresetMode.SAME_STEP:
            raise MpgymError("ThreadedVectorEnv supports autoreset_mode=SAME_STEP only.")
        super().__init__(env_fns, **kwargs)
        n = max(1, min(n_threads or os.cpu_count() or 1, self.num_envs))
        bounds = np.linspace(0, self.num_envs, n + 1).round().astype(int)
        self._slices = [range(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self._pool = ThreadPoolExecutor(n, thread_name_prefix="vector-env") if n > 1 else None

    @property
    def n_threads(self) -> int:
        """Threads the sub-envs step on."""
        return len(self._slices)

    def _step_slice(self, envs: range, actions: list[Any]) -> list[tuple]:
        out = []
        for i in envs:
            obs, reward, terminated, truncated, info = self.envs[i].step(actions[i])
            final = None
            if terminated or truncated:
                final = {"final_obs": obs, "final_info": info}
                obs, info = self.envs[i].reset()
            out.append((obs, reward, terminated, truncated, info, final))
        return out

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Step every sub-env (on the threads), resetting those whose episode ended."""
        acts = list(iterate(self.action_space, actions))
        if self._pool is None:
            parts = [self._step_slice(sl, acts) for sl in self._slices]
        else:
            parts = list(self._pool.map(lambda sl: self._step_slice(sl, acts), self._slices))
        infos: dict[str, Any] = {}
        i = 0
        for part in parts:  # bookkeeping in sub-env order, as SyncVectorEnv does it
            for obs, reward, terminated, truncated, info, final in part:
                self._env_obs[i] = obs
                self._rewards[i], self._terminations[i], self._truncations[i] = (
                    reward, terminated, truncated)
                if final is not None:
                    infos = self._add_info(infos, final, i)
                infos = self._add_info(infos, info, i)
                i += 1
        self._observations = concatenate(self.single_observation_space, self._env_obs,
                                         self._observations)
        obs = copy.deepcopy(self._observations) if self.copy else self._observations
        return (obs, np.copy(self._rewards), np.copy(self._terminations),
                np.copy(self._truncations), infos)

    def close_extras(self, **kwargs: Any) -> None:
        """Close the sub-envs and stop the threads."""
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        super().close_extras(**kwargs)


# -- env state snapshots ----------------------------------------------------------------------
_SCALARS = (bool, int, type(None))
_ARRAY_KINDS = "biuf"


def _layers(env: Any, prefix: str = "env") -> list[tuple[str, Any]]:
    """Every wrapper layer, base env and sub-env of ``env``, with a stable name each."""
    out, node, depth = [], env, 0
    while node is not None and depth < 64:
        name = f"{prefix}.{depth}"
        out.append((name, node))
        for i, sub in enumerate(getattr(node, "envs", None) or ()):
            if isinstance(sub, (gym.Env, gym.Wrapper)):
                out.extend(_layers(sub, f"{name}.envs.{i}"))
        nxt = vars(node).get("env")
        node, depth = (nxt if nxt is not node else None), depth + 1
    return out


def env_state(env: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Snapshot the mutable state of ``env`` (all layers): ``(arrays, json)``.

    Numeric array attributes go to ``arrays`` (``"env.3.state"``); integers, booleans, None
    and the NumPy generators' states go to ``json`` with each layer's class name (float
    attributes are taken for constants and left alone). Enough for the toy-text,
    classic-control and ``mpgym/`` envs (and their vector forms) to continue exactly.
    """
    arrays: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {}
    for name, layer in _layers(env):
        scalars: dict[str, Any] = {}
        for attr, value in vars(layer).items():
            if isinstance(value, np.ndarray) and value.dtype.kind in _ARRAY_KINDS:
                arrays[f"{name}.{attr}"] = value.copy()
            elif isinstance(value, np.random.Generator):
                scalars[attr] = {"bit_generator": value.bit_generator.state}
            elif isinstance(value, _SCALARS):
                scalars[attr] = value
            elif isinstance(value, np.integer | np.bool_):
                scalars[attr] = value.item()
        info[name] = {"class": type(layer).__name__, "scalars": scalars}
    return arrays, info


def snapshot_supported(env: Any) -> bool:
    """Whether :func:`env_state` captures all of ``env``'s state.

    Not for envs stepped in other processes (``AsyncVectorEnv``) or holding a simulator's
    state outside NumPy arrays (MuJoCo's ``MjData``): an agent continuing from a checkpoint
    starts new episodes in those instead of restoring half a state.
    """
    for _, layer in _layers(env):
        if isinstance(layer, gym.vector.AsyncVectorEnv):
            return False
        for value in vars(layer).values():
            if type(value).__module__.split(".")[0] == "mujoco":
                return False
    return True


def restore_env_state(env: Any, arrays: dict[str, Any], info: Any) -> None:
    """Put a snapshot of :func:`env_state` back into an env of the same construction.

    Raises:
        MpgymError: the snapshot does not fit ``env`` (other classes, shapes or dtypes).
    """
    layers = dict(_layers(env))
    if not isinstance(info, dict) or set(info) != set(layers):
        raise MpgymError("the saved env state does not fit this env (other wrappers or layers).")
    updates: list[tuple[Any, str, Any]] = []
    for name, layer in layers.items():
        saved = info[name]
        if (not isinstance(saved, dict) or saved.get("class") != type(layer).__name__
                or not isinstance(saved.get("scalars"), dict)):
            raise MpgymError(f"the saved env state does not fit this env (layer {name} is a "
                             f"{type(layer).__name__}).")
        current = vars(layer)
        for attr, value in saved["scalars"].items():
            now = current.get(attr, ...)
            if isinstance(now, np.random.Generator):
                state = value.get("bit_generator") if isinstance(value, dict) else None
                updates.append((now.bit_generator, "state", state))
            elif (now is not ... and isinstance(now, _SCALARS + (np.integer, np.bool_))
                  and isinstance(value, _SCALARS) and not (isinstance(value, int)
                                                           and abs(value) >= 2**63)):
                updates.append((layer, attr, value))
        prefix = f"{name}."
        for key, value in arrays.items():
            attr = key[len(prefix):]
            if not key.startswith(prefix) or "." in attr:
                continue
            now = current.get(attr)
            value = np.asarray(value)
            if not (isinstance(now, np.ndarray) and now.shape == value.shape
                    and now.dtype == value.dtype):
                raise MpgymError(f"the saved env state {key} does not fit this env "
                                 f"(shape {value.shape} {value.dtype}).")
            updates.append((layer, attr, value.copy()))
    for obj, attr, value in updates:
        try:
            setattr(obj, attr, value)
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise MpgymError(f"the saved env state does not fit this env ({attr}: {exc}).") \
                from None


def require_discrete(env: gym.Env, who: str) -> tuple[int, int]:
    """Check that ``env`` has Discrete observation and action spaces; return ``(n_s, n_a)``.

    Raises:
        MpgymError: naming the spaces found and what ``who`` accepts.
    """
    obs, act = env.observation_space, env.action_space
    if not (isinstance(obs, gym.spaces.Discrete) and isinstance(act, gym.spaces.Discrete)):
        toy = registered_ids(lambda s: isinstance(s.entry_point, str)
                             and "toy_text" in s.entry_point and "Blackjack" not in s.id
                             and s.namespace is None, limit=4)
        raise MpgymError(
            f"{who} needs Discrete observation and action spaces, but {env_id_of(env)} has "
            f"observation_space={obs} and action_space={act}. Tabular agents accept toy-text envs "
            f"({', '.join(toy)}) and mpgym/ grids ('mpgym envs' lists them); use a deep agent "
            "(dqn, ppo...) for continuous spaces."
        )
    return int(obs.n), int(act.n)
