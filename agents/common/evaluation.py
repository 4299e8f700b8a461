"""Evaluate any policy (mpgym agent, stable-baselines3 model, or a function) on an env.

The same function scores tabular agents, deep agents and SB3 models, so comparisons are like
with like: episode ``i`` starts from ``env.reset(seed=seed + i)``.

Success is the env's own signal, and the result says which one was used (:func:`success_rule`):
``info["is_success"]`` at the episode's last step when the env reports it (robotics envs, SB3's
convention); else, for an env with a model ``P`` (toy-text and ``mpgym/`` grids), ending in a
goal -- every termination when all terminating moves are alike (CliffWalking ends only at the
goal, Taxi only on a drop-off), a termination with positive reward when terminal states differ
(FrozenLake: 1 at the goal, 0 in a hole); else ``return >= spec.reward_threshold`` (CartPole:
475). Otherwise there is no success rate (``None``) rather than a wrong one.

An env may also name ``info`` keys to average over each episode's steps in
``metadata["episode_metrics"]`` (``HumanoidImitate-v0``: the joint-position error ``mpjpe``);
the result holds them per episode (:attr:`EvalResult.metrics`) and their means in its summary.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from envs.make import make_env
from mpgym.errors import MpgymError

RULE_INFO = "info['is_success']"
"""Success rule: the env's ``info["is_success"]`` at the last step."""
RULE_TERMINATED = "terminated (every terminal state is a goal)"
"""Success rule: the episode terminated (not truncated)."""
RULE_POSITIVE_TERMINAL = "terminated with reward > 0 (the goal)"
"""Success rule: the last step terminated the episode with a positive reward."""


@dataclass
class EvalResult:
    """Returns, lengths and successes of evaluation episodes.

    Attributes:
        returns: (n_episodes,) float, undiscounted return of each episode.
        lengths: (n_episodes,) int, steps in each episode.
        frames: ``rgb_array`` frames of the first episode (its first ``max_frames``) when
            ``render=True``, else empty.
        successes: (n_episodes,) bool, whether each episode succeeded, or None when the env
            gives no success signal.
        success_rule: how success was decided (see :func:`success_rule`), or None.
        metrics: per-episode means over the steps of the ``info`` keys the env names in
            ``metadata["episode_metrics"]`` (key -> (n_episodes,) float).
        fps: the env's ``metadata["render_fps"]`` (frames per second of ``frames``), or None.
    """

    returns: np.ndarray
    lengths: np.ndarray
    frames: list[np.ndarray] = field(default_factory=list)
    successes: np.ndarray | None = None
    success_rule: str | None = None
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    fps: float | None = None

    @property
    def mean_return(self) -> float:
        """Mean undiscounted return."""
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        """Standard deviation of the returns."""
        return float(np.std(self.returns))

    @property
    def success_rate(self) -> float | None:
        """Fraction of successful episodes by :attr:`success_rule` (None: no success signal)."""
        if self.successes is None:
            return None
        return float(np.mean(self.successes))

    def summary(self) -> dict[str, Any]:
        """Mean/std return, mean length, success rate and its rule, for logs and tables."""
        return {"mean_return": self.mean_return, "std_return": self.std_return,
                "mean_length": float(np.mean(self.lengths)), "success_rate": self.success_rate,
                "success_rule": self.success_rule, "episodes": len(self.returns),
                **{f"mean_{k}": float(np.mean(v)) for k, v in self.metrics.items()}}


PolicyLike = Callable[[Any], Any] | Any


def uses_action_masks(policy: Any) -> bool:
    """Whether ``policy`` is an mpgym agent trained with ``action_masks`` (A2C, PPO)."""
    return bool(getattr(getattr(policy, "config", None), "action_masks", False))


def _as_action_fn(policy: PolicyLike, deterministic: bool) -> Callable[[Any, dict], Any]:
    """``(obs, info) -> action`` of ``policy``.

    An agent trained with action masks gets the env's ``info["action_mask"]`` (when the info
    has one).
    """
    if uses_action_masks(policy):
        return lambda obs, info: policy.predict(obs, deterministic=deterministic,
                                                action_masks=info.get("action_mask"))[0]
    if hasattr(policy, "predict"):  # mpgym agent or SB3 model
        return lambda obs, info: policy.predict(obs, deterministic=deterministic)[0]
    if callable(policy):
        def act(obs: Any, info: dict) -> Any:
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


def terminal_rewards(env: gym.Env) -> set[float] | None:
    """Rewards of the moves that end an episode, from the env's model ``P`` (None: no model).

    Moves out of terminal states are skipped: Gymnasium's ``P`` lists moves from CliffWalking's
    goal as if the episode went on, and ``mpgym/`` envs make terminal states absorbing.
    """
    P = getattr(env.unwrapped, "P", None)
    if not isinstance(P, dict) or not P:
        return None
    try:
        moves = [t for s in P.values() for a in s.values() for t in a]
        terminal = {int(t[1]) for t in moves if t[3] and t[0] > 0}
        return {float(t[2]) for s, acts in P.items() if s not in terminal
                for a in acts.values() for t in a if t[3] and t[0] > 0}
    except (AttributeError, TypeError, ValueError, IndexError):  # not the toy-text layout
        return None


def success_rule(env: gym.Env, last_info: dict[str, Any] | None = None) -> str | None:
    """How :func:`evaluate_policy` decides success on ``env`` (None: no success signal).

    Args:
        env: the evaluation env.
        last_info: the ``info`` of an episode's last step, if one was run.

    Returns:
        :data:`RULE_INFO`, :data:`RULE_TERMINATED`, :data:`RULE_POSITIVE_TERMINAL`,
        ``"return >= reward_threshold (T)"``, or None.
    """
    if last_info is not None and "is_success" in last_info:
        return RULE_INFO
    rewards = terminal_rewards(env)
    if rewards:
        if len(rewards) == 1 or min(rewards) > 0:
            return RULE_TERMINATED
        if max(rewards) > 0:
            return RULE_POSITIVE_TERMINAL
    threshold = getattr(env.spec, "reward_threshold", None) if env.spec is not None else None
    if threshold is not None:
        return f"return >= reward_threshold ({float(threshold)})"
    return None


def _succeeded(rule: str | None, env: gym.Env, ret: float, terminated: bool, reward: float,
               info: dict[str, Any]) -> bool:
    if rule == RULE_INFO:
        return bool(info.get("is_success", False))
    if rule == RULE_TERMINATED:
        return terminated
    if rule == RULE_POSITIVE_TERMINAL:
        return terminated and reward > 0
    return ret >= float(env.spec.reward_threshold)  # type: ignore[union-attr]


@contextlib.contextmanager
def quiet_pygame(render_mode: str | None) -> Iterator[None]:
    """Keep pygame (Gymnasium's renderers) from probing audio and, off screen, the display.

    ``pygame.init()`` opens an audio device (ALSA prints a dozen "cannot find card" lines on a
    machine without one) and, for ``rgb_array`` rendering, looks for a display (SDL prints
    ``error: XDG_RUNTIME_DIR is invalid or not set`` when there is none). RL never plays sound,
    and ``rgb_array`` frames need no window, so inside the block ``SDL_AUDIODRIVER`` and (for
    ``rgb_array``) ``SDL_VIDEODRIVER`` default to ``dummy``; values the user set are kept and
    the environment is restored afterwards.
    """
    wanted = {"SDL_AUDIODRIVER": "dummy"}
    if render_mode == "rgb_array":
        wanted["SDL_VIDEODRIVER"] = "dummy"
    added = [k for k in wanted if k not in os.environ]
    for k in added:
        os.environ[k] = wanted[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _play_episode(
    env: gym.Env,
    act: Callable[[Any, dict], Any],
    seed: int,
    max_steps: int,
    frames: list | None,
    max_frames: int,
    metric_keys: tuple[str, ...] = (),
) -> tuple[float, int, bool, float, dict[str, Any], dict[str, float]]:
    """One episode from ``env.reset(seed=seed)``, at most ``max_steps`` steps.

    Appends rendered frames to ``frames`` (when given) up to ``max_frames``.

    Returns:
        ``(return, length, terminated, last reward, last info, mean of each metric key)``.
    """
    obs, info = env.reset(seed=seed)
    if frames is not None:
        frames.append(env.render())
    terminated = truncated = False
    total, steps, reward = 0.0, 0, 0.0
    sums = dict.fromkeys(metric_keys, 0.0)
    while not (terminated or truncated) and steps < max_steps:
        action = _to_env_action(act(obs, info), env.action_space)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        steps += 1
        for k in metric_keys:
            sums[k] += float(info[k])
        if frames is not None and len(frames) < max_frames:
            frames.append(env.render())
    means = {k: v / max(steps, 1) for k, v in sums.items()}
    return total, steps, bool(terminated), float(reward), info, means


def evaluate_policy(
    policy: PolicyLike,
    env: str | gym.Env,
    n_episodes: int = 10,
    *,
    seed: int = 0,
    deterministic: bool = True,
    render: bool = False,
    max_steps: int = 100_000,
    max_frames: int = 1000,
    env_kwargs: dict[str, Any] | None = None,
) -> EvalResult:
    """Run ``n_episodes`` episodes of ``policy``; collect returns, lengths and successes.

    Args:
        policy: an object with ``predict(obs, deterministic=...) -> (action, state)`` (mpgym
            agents, stable-baselines3 models) or a function ``obs -> action``.
        env: an env id or an env (not vectorised). With ``render=True`` an id is made with
            ``render_mode="rgb_array"``.
        n_episodes: number of episodes.
        seed: episode ``i`` starts from ``env.reset(seed=seed + i)``.
        deterministic: passed to ``predict`` (greedy actions when true).
        render: collect the first episode's frames (at most ``max_frames``: a policy that
            never ends an episode must not fill the memory with pictures).
        max_frames: cap on the frames kept when ``render=True``.
        max_steps: safety cap per episode for envs without a time limit (a capped episode
            counts as truncated).
        env_kwargs: keyword arguments of ``gymnasium.make`` when ``env`` is an id
            (``{"is_slippery": False}``).

    Returns:
        EvalResult with ``returns``, ``lengths`` (and ``successes`` where the env has a
        success signal, see the module docstring) of shape (n_episodes,).
    """
    if n_episodes < 1:
        raise MpgymError(f"n_episodes must be >= 1, got {n_episodes}.")
    if seed < 0:
        raise MpgymError(f"seed must be >= 0 (Gymnasium's reset accepts no negative seeds), "
                         f"got {seed}.")
    env = make_env(env, render_mode="rgb_array" if render else None, **(env_kwargs or {}))
    if render and env.render_mode != "rgb_array":
        raise MpgymError(f"render=True needs an env made with render_mode='rgb_array'; "
                         f"this one has render_mode={env.render_mode!r}.")
    act = _as_action_fn(policy, deterministic)
    returns, lengths, frames = np.zeros(n_episodes), np.zeros(n_episodes, dtype=int), []
    successes = np.zeros(n_episodes, dtype=bool)
    rule: str | None = None
    metadata = env.metadata or {}
    keys = tuple(metadata.get("episode_metrics", ()))
    metrics = {k: np.zeros(n_episodes) for k in keys}
    with quiet_pygame(env.render_mode):
        for i in range(n_episodes):
            total, steps, terminated, reward, info, means = _play_episode(
                env, act, seed + i, max_steps, frames if render and i == 0 else None, max_frames,
                keys)
            if i == 0:
                rule = success_rule(env, info)
            returns[i], lengths[i] = total, steps
            for k, v in means.items():
                metrics[k][i] = v
            if rule is not None:
                successes[i] = _succeeded(rule, env, total, terminated, reward, info)
    fps = metadata.get("render_fps")
    return EvalResult(returns=returns, lengths=lengths, frames=frames,
                      successes=successes if rule is not None else None, success_rule=rule,
                      metrics=metrics, fps=float(fps) if fps else None)
