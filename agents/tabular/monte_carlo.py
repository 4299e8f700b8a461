"""Monte Carlo prediction and control (Sutton & Barto, ch. 5).

``MCPrediction``: first- or every-visit estimate of ``V_pi`` (sec. 5.1). ``MCControl``:
on-policy first-visit control with an epsilon-soft policy (sec. 5.4). ``MCExploringStarts``:
control with exploring starts (sec. 5.3): each episode starts from a random non-terminal
state and a random action, then follows the greedy policy; the env must expose its state as
``env.unwrapped.s`` and its model as ``P`` (toy-text envs and mpgym/ envs do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from agents.common.returns import reward_to_go
from agents.common.schedules import Schedule
from agents.tabular.base import TabularAgent, TabularConfig
from agents.tabular.prediction import PredictionConfig, TabularPredictionAgent
from mpgym.errors import MpgymError

Visit = Literal["first", "every"]


def visit_mask(keys: list[int], visit: Visit) -> np.ndarray:
    """``(T,)`` bool: which steps of an episode update their state (or state-action) ``key``.

    Example:
        >>> visit_mask([3, 4, 3], "first").tolist(), visit_mask([3, 4, 3], "every").tolist()
        ([True, True, False], [True, True, True])
    """
    if visit == "every":
        return np.ones(len(keys), dtype=bool)
    if visit != "first":
        raise MpgymError(f"visit must be 'first' or 'every', got {visit!r}.")
    seen: set[int] = set()
    mask = np.zeros(len(keys), dtype=bool)
    for t, k in enumerate(keys):
        if k not in seen:
            seen.add(k)
            mask[t] = True
    return mask


@dataclass(frozen=True)
class MCPredictionConfig(PredictionConfig):
    """Monte Carlo prediction; Example 6.2 compares constant-alpha MC (alpha 0.01-0.04)."""

    alpha: Schedule = Schedule(0.02)
    """Step size per episode (used when step_size='schedule')."""
    visit: Visit = "first"
    """'first': update a state at its first visit in an episode; 'every': at each visit."""


class MCPrediction(TabularPredictionAgent):
    """Monte Carlo prediction: ``V(s) += alpha * (G_t - V(s))`` at the end of each episode."""

    name = "mc-prediction"
    Config = MCPredictionConfig
    PRESETS = {"random-walk": MCPredictionConfig()}

    def run_episode(self, episode: int, seed: int | None) -> tuple[float, int]:
        """Generate an episode with the target policy, then update from its returns."""
        states: list[int] = []
        rewards: list[float] = []
        s = int(self.env.reset(seed=seed)[0])
        done = False
        while not done and len(states) < self.config.max_steps:
            s2, r, terminated, truncated, _ = self.env.step(self.act(s))
            states.append(s)
            rewards.append(float(r))
            done, s = terminated or truncated, int(s2)
        returns = reward_to_go(np.array(rewards), self.config.gamma)
        for t in np.flatnonzero(visit_mask(states, self.config.visit)):
            st = states[t]
            self.v[st] += self.state_step_size(st, episode) * (returns[t] - self.v[st])
        return float(sum(rewards)), len(states)


@dataclass(frozen=True)
class MCControlConfig(TabularConfig):
    """On-policy Monte Carlo control with an epsilon-soft policy (sample averages by default)."""

    step_size: Literal["schedule", "1/n"] = "1/n"
    """'schedule': alpha(episode); '1/n': 1 / N(s, a), the sample average (the book's)."""
    visit: Visit = "first"
    """'first': update a pair at its first visit in an episode; 'every': at each visit."""


class MCControl(TabularAgent):
    """On-policy first-visit MC control for epsilon-soft policies (Sutton & Barto, sec. 5.4)."""

    name = "mc-control"
    Config = MCControlConfig
    PRESETS = {"frozenlake": MCControlConfig()}

    def first_action(self, s: int, episode: int) -> int:
        """The first action of an episode (epsilon-greedy here)."""
        return self.behave(s, self.config.epsilon(episode))

    def start_state(self, s: int) -> int:
        """The state an episode starts in (the env's reset state here)."""
        return s

    def run_episode(self, episode: int, seed: int | None) -> tuple[float, int]:
        """Generate an episode, then move ``Q`` toward the returns of its visited pairs."""
        eps = self.config.epsilon(episode)
        s = self.start_state(int(self.env.reset(seed=seed)[0]))
        a = self.first_action(s, episode)
        pairs: list[tuple[int, int]] = []
        rewards: list[float] = []
        done = False
        while not done and len(pairs) < self.config.max_steps:
            s2, r, terminated, truncated, _ = self.env.step(a)
            pairs.append((s, a))
            rewards.append(float(r))
            done, s = terminated or truncated, int(s2)
            a = self.behave(s, eps)
        returns = reward_to_go(np.array(rewards), self.config.gamma)
        keys = [st * self.n_actions + at for st, at in pairs]
        for t in np.flatnonzero(visit_mask(keys, self.config.visit)):
            st, at = pairs[t]
            self.q[st, at] += self.step_size(st, at, episode) * (returns[t] - self.q[st, at])
        return float(sum(rewards)), len(pairs)


@dataclass(frozen=True)
class MCExploringStartsConfig(MCControlConfig):
    """Monte Carlo ES: random start pairs, then the greedy policy (epsilon 0)."""

    epsilon: Schedule = Schedule(0.0)
    """Exploration after the first step (0: greedy, as in the book's MC ES)."""


class MCExploringStarts(MCControl):
    """Monte Carlo control with exploring starts (Sutton & Barto, sec. 5.3, Figure 5.2)."""

    name = "mc-es"
    Config = MCExploringStartsConfig
    PRESETS = {"frozenlake": MCExploringStartsConfig()}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from envs.tabular_model import TabularModel

        base = self.env.unwrapped
        if not hasattr(base, "P"):
            raise MpgymError(f"exploring starts need an env whose state can be set "
                             f"(env.unwrapped.s) and that exposes P; {self.config.env_id} does "
                             "not. Accepted: toy-text envs (FrozenLake, Taxi, CliffWalking) and "
                             "mpgym/ envs; or use mc-control.")
        model = TabularModel.from_env(self.env)
        self.starts = np.flatnonzero(~model.terminal & (model.done.min(axis=1) < 1.0))

    def start_state(self, s: int) -> int:
        """A uniformly random non-terminal state, written into the env."""
        s = int(self.starts[self.rng.integers(self.starts.size)])
        self.env.unwrapped.s = s  # type: ignore[attr-defined]
        return s

    def first_action(self, s: int, episode: int) -> int:
        """A uniformly random first action."""
        return int(self.rng.integers(self.n_actions))
