"""A Gymnasium env driven by its own model ``P[s][a] = [(prob, next_state, reward, terminated)]``.

This is the layout of Gymnasium's toy-text envs: the model is built once, ``step`` samples from
it, and planners read it from ``env.unwrapped.P`` (see :class:`envs.TabularModel`).
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from mpgym.errors import MpgymError

Transition = tuple[float, int, float, bool]
"""``(prob, next_state, reward, terminated)``, as in Gymnasium's toy-text ``P``."""
ModelDict = dict[int, dict[int, list[Transition]]]


class DiscreteModelEnv(gym.Env[np.int64, np.int64]):
    """Base class: Discrete states and actions, transitions sampled from ``self.P``.

    Subclasses build ``P`` and the initial state distribution ``isd`` (shape ``(n_states,)``),
    call ``super().__init__(P, isd, render_mode)`` and draw the frames of :meth:`render`
    (``_render_text`` and ``_render_rgb``).
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, P: ModelDict, isd: np.ndarray, render_mode: str | None = None):
        n_states, n_actions = len(P), len(P[0])
        isd = np.asarray(isd, dtype=float)
        if isd.shape != (n_states,) or not np.isclose(isd.sum(), 1.0):
            raise MpgymError(f"initial state distribution must have shape ({n_states},) and sum to "
                             f"1; got shape {isd.shape} summing to {isd.sum():.6g}.")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise MpgymError(f"render_mode {render_mode!r} is not supported; accepted: "
                             f"{', '.join(self.metadata['render_modes'])} or None.")
        self.P = P
        self.isd = isd
        self.observation_space = gym.spaces.Discrete(n_states)
        self.action_space = gym.spaces.Discrete(n_actions)
        self.render_mode = render_mode
        self.s = int(np.argmax(isd))
        self.lastaction: int | None = None

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.int64, dict[str, Any]]:
        """Draw the start state from ``isd``; ``info["prob"]`` is its probability."""
        super().reset(seed=seed)
        self.s = int(self.np_random.choice(len(self.isd), p=self.isd))
        self.lastaction = None
        return np.int64(self.s), {"prob": 1.0}

    def step(self, action: int | np.integer) -> tuple[np.int64, SupportsFloat, bool, bool, dict]:
        """Sample ``(prob, s', r, terminated)`` from ``P[s][action]``."""
        if not self.action_space.contains(action):
            raise MpgymError(f"action {action!r} is not in {self.action_space}; accepted: "
                             f"integers 0..{len(self.P[self.s]) - 1}.")
        transitions = self.P[self.s][int(action)]
        probs = np.fromiter((t[0] for t in transitions), dtype=float, count=len(transitions))
        i = int(np.searchsorted(np.cumsum(probs), self.np_random.random() * probs.sum()))
        p, s, r, terminated = transitions[min(i, len(transitions) - 1)]
        self.s, self.lastaction = int(s), int(action)
        return np.int64(s), float(r), bool(terminated), False, {"prob": float(p)}

    def render(self) -> str | np.ndarray | None:
        """The state as text (``ansi``) or an RGB image (``rgb_array``); None without a mode."""
        if self.render_mode == "ansi":
            return self._render_text()
        if self.render_mode == "rgb_array":
            return self._render_rgb()
        return None

    def _render_text(self) -> str:
        """The ``ansi`` frame (the subclass draws it)."""
        raise NotImplementedError

    def _render_rgb(self) -> np.ndarray:
        """The ``rgb_array`` frame, uint8 ``(height, width, 3)`` (the subclass draws it)."""
        raise NotImplementedError
