"""Making environments from ids, with clear errors; and what an env was made from.

``make_env("FrozenLake-v1")`` is ``gymnasium.make`` plus: ids under ``mpgym/`` work without
importing :mod:`envs` first, an unknown id says which ids exist, and a ready-made
``gymnasium.Env`` is passed through unchanged. :func:`env_recipe` gives the ``(id, kwargs)``
that rebuild an env, so a checkpoint can record it. Environments know no agent: this lives in
``envs`` so that both ``envs`` and ``agents`` use it and the imports point one way.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

import gymnasium as gym

from mpgym.errors import MpgymError


def _ensure_registered(env_id: str) -> None:
    if env_id.startswith("mpgym/") and env_id not in gym.registry:
        import envs  # noqa: F401  (registers the mpgym/ ids)
    if env_id.startswith("MinAtar/") and env_id not in gym.registry:
        # MinAtar registers its Gymnasium ids only when asked (minatar.gym.register_envs).
        try:
            from minatar.gym import register_envs
        except ImportError:
            raise MpgymError(f"{env_id!r} needs the minatar package: pip install minatar "
                             "(or the project's 'rl' extra).") from None
        register_envs()


def make_env(env: str | gym.Env, *, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """Return ``env`` itself, or ``gymnasium.make(env, render_mode=..., **kwargs)``.

    Args:
        env: an env id (``"FrozenLake-v1"``, ``"mpgym/GridWorld-v0"``,
            ``"envs:mpgym/GridWorld-v0"``) or an existing environment.
        render_mode: passed to ``gymnasium.make`` (ignored for an existing env).
        **kwargs: extra keyword arguments of the env (``map_name="8x8"``...).

    Raises:
        MpgymError: unknown id (with close matches), or arguments the env does not take.
    """
    if isinstance(env, gym.Env):
        return env
    if not isinstance(env, str):
        raise MpgymError(f"env must be an id string or a gymnasium.Env, got {type(env).__name__}.")
    _ensure_registered(env.split(":", 1)[-1])
    try:
        return gym.make(env, render_mode=render_mode, **kwargs)
    except (MemoryError, OverflowError) as exc:
        raise MpgymError(f"cannot make environment {env!r} with {kwargs}: too large "
                         f"({type(exc).__name__}).") from None
    except gym.error.Error as exc:
        if isinstance(exc, (gym.error.NameNotFound, gym.error.VersionNotFound,
                            gym.error.NamespaceNotFound, gym.error.UnregisteredEnv)):
            close = difflib.get_close_matches(env, list(gym.registry), n=5, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise MpgymError(
                f"unknown environment id {env!r}.{hint} Run 'mpgym envs' for the accepted ids."
            ) from None
        raise MpgymError(f"cannot make environment {env!r}: {exc}") from None
    except (TypeError, ValueError, KeyError, IndexError, AssertionError) as exc:
        raise MpgymError(f"cannot make environment {env!r} with {kwargs}: {exc}") from None


def env_recipe(env: gym.Env) -> tuple[str, dict[str, Any]] | None:
    """``(id, kwargs)`` that ``make_env`` turns into an env like ``env``, or None if none does.

    An env made by ``gymnasium.make(id, **kwargs)`` is rebuilt from its spec (the kwargs that
    differ from the registration's). An env object built by hand, wrapped after ``make``, given
    another time limit, or holding arguments JSON cannot store, has no recipe.
    """
    spec = getattr(env, "spec", None)
    if spec is None or spec.id not in gym.registry:
        return None
    registered = gym.spec(spec.id)
    if tuple(spec.additional_wrappers) != tuple(registered.additional_wrappers):
        return None
    if spec.max_episode_steps != registered.max_episode_steps:
        return None
    kwargs = {k: v for k, v in spec.kwargs.items()
              if k != "render_mode" and (k not in registered.kwargs or registered.kwargs[k] != v)}
    try:
        if json.loads(json.dumps(kwargs, allow_nan=False)) != kwargs:
            return None
    except (TypeError, ValueError):
        return None
    return spec.id, kwargs


def registered_ids(predicate: Any, limit: int = 6) -> list[str]:
    """Up to ``limit`` registered ids whose spec satisfies ``predicate(spec)``.

    One id per entry point (so variants of one env are named once), in registry order.
    """
    ids, seen = [], set()
    for spec in gym.registry.values():
        if predicate(spec) and str(spec.entry_point) not in seen:
            seen.add(str(spec.entry_point))
            ids.append(spec.id)
    return ids[:limit]


def env_id_of(env: gym.Env | str) -> str:
    """The registered id of an env (``"FrozenLake-v1"``), or its class name if unregistered."""
    if isinstance(env, str):
        return env.split(":", 1)[-1]
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__
