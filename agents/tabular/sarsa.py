"""SARSA (Rummery & Niranjan 1994; Sutton & Barto, sec. 6.4): on-policy TD control."""

from __future__ import annotations

from dataclasses import dataclass

from agents.common.schedules import Schedule
from agents.tabular.base import TabularAgent, TabularConfig
from agents.tabular.targets import sarsa_target


@dataclass(frozen=True)
class SarsaConfig(TabularConfig):
    """SARSA; defaults reach the optimal FrozenLake-v1 success rate (0.74) within 2 points."""


class Sarsa(TabularAgent):
    """SARSA: ``Q(s, a) += alpha * (r + gamma * Q(s', a') - Q(s, a))``, ``a'`` epsilon-greedy.

    Learns the value of the epsilon-greedy policy it follows. ``learn(n)`` counts episodes.
    """

    name = "sarsa"
    Config = SarsaConfig
    PRESETS = {
        "frozenlake": SarsaConfig(),
        # Example 6.6 (Figure 6.4): epsilon 0.1, alpha 0.5, undiscounted, 500 episodes.
        "cliff": SarsaConfig(env_id="CliffWalking-v1", episodes=500, gamma=1.0,
                             alpha=Schedule(0.5), epsilon=Schedule(0.1)),
        # Example 6.5 (Figure 6.3): epsilon 0.1, alpha 0.5, undiscounted, 170 episodes.
        "windy": SarsaConfig(env_id="mpgym/WindyGridWorld-v0", episodes=170, gamma=1.0,
                             alpha=Schedule(0.5), epsilon=Schedule(0.1)),
    }

    def run_episode(self, episode: int, seed: int | None) -> tuple[float, int]:
        """One episode of epsilon-greedy interaction with SARSA updates."""
        cfg = self.config
        eps, gamma, max_steps = cfg.epsilon(episode), cfg.gamma, cfg.max_steps
        s = int(self.env.reset(seed=seed)[0])
        a = self.behave(s, eps)
        ret, length, done = 0.0, 0, False
        while not done and length < max_steps:
            s2, r, terminated, truncated, _ = self.env.step(a)
            s2 = int(s2)
            a2 = self.behave(s2, eps)
            target = sarsa_target(float(r), self.q[s2, a2], gamma, terminated)
            self.q[s, a] += self.step_size(s, a, episode) * (target - self.q[s, a])
            ret, length, done = ret + float(r), length + 1, terminated or truncated
            s, a = s2, a2
        return ret, length
