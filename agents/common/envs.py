"""Making environments from ids with clear errors, and checking their spaces.

``make_env("FrozenLake-v1")`` is ``gymnasium.make`` plus: ids under ``mpgym/`` work without
importing :mod:`envs` first, an unknown id says which ids exist, and a ready-made
``gymnasium.Env`` is passed through unchanged.
"""

from __future__ import annotations

import difflib
from typing import Any

import gymnasium as gym

from mpgym.errors import MpgymError


def _ensure_registered(env_id: str) -> None:
    if env_id.startswith("mpgym/") and env_id not in gym.registry:
        import envs  # noqa: F401  (registers the mpgym/ ids)


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
    except gym.error.Error as exc:
        if isinstance(exc, (gym.error.NameNotFound, gym.error.VersionNotFound,
                            gym.error.NamespaceNotFound, gym.error.UnregisteredEnv)):
            close = difflib.get_close_matches(env, list(gym.registry), n=5, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise MpgymError(
                f"unknown environment id {env!r}.{hint} Run 'mpgym envs' for the accepted ids."
            ) from None
        raise MpgymError(f"cannot make environment {env!r}: {exc}") from None
    except TypeError as exc:
        raise MpgymError(f"cannot make environment {env!r} with {kwargs}: {exc}") from None


def env_id_of(env: gym.Env | str) -> str:
    """The registered id of an env (``"FrozenLake-v1"``), or its class name if unregistered."""
    if isinstance(env, str):
        return env.split(":", 1)[-1]
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__


def require_discrete(env: gym.Env, who: str) -> tuple[int, int]:
    """Check that ``env`` has Discrete observation and action spaces; return ``(n_s, n_a)``.

    Raises:
        MpgymError: naming the spaces found and what ``who`` accepts.
    """
    obs, act = env.observation_space, env.action_space
    if not (isinstance(obs, gym.spaces.Discrete) and isinstance(act, gym.spaces.Discrete)):
        raise MpgymError(
            f"{who} needs Discrete observation and action spaces, but {env_id_of(env)} has "
            f"observation_space={obs} and action_space={act}. Tabular agents accept toy-text envs "
            "(FrozenLake-v1, Taxi-v3, CliffWalking-v1) and mpgym/ grids; use a deep agent "
            "(dqn, ppo...) for continuous spaces."
        )
    return int(obs.n), int(act.n)
