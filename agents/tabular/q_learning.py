"""Q-learning (Watkins 1989; Sutton & Barto, sec. 6.5): off-policy TD control."""

from __future__ import annotations

from dataclasses import dataclass

from agents.common.schedules import Schedule
from agents.tabular.base import TabularAgent, TabularConfig
from agents.tabular.targets import q_learning_target


@dataclass(frozen=True)
class QLearningConfig(TabularConfig):
    """Q-learning; defaults reach the optimal FrozenLake-v1 success rate (0.74) within 2 points."""


class QLearning(TabularAgent):
    """Q-learning: ``Q(s, a) += alpha * (r + gamma * max_a' Q(s', a') - Q(s, a))``.

    Acts epsilon-greedily, learns the greedy policy. ``learn(n)`` counts episodes.
    """

    name = "q-learning"
    Config = QLearningConfig
    PRESETS = {
        "frozenlake": QLearningConfig(),
        # Example 6.6 (Figure 6.4): epsilon 0.1, alpha 0.5, undiscounted, 500 episodes.
        "cliff": QLearningConfig(env_id="CliffWalking-v1", episodes=500, gamma=1.0,
                                 alpha=Schedule(0.5), epsilon=Schedule(0.1)),
        "taxi": QLearningConfig(env_id="Taxi-v4", episodes=5000, gamma=0.99, alpha=Schedule(0.5),
                                epsilon=Schedule(1.0, 0.01, 3000, "linear")),
    }

    def td_target(self, reward: float, s2: int, terminated: bool, epsilon: float) -> float:
        """``r + gamma * max_a Q(s', a)`` (0 after a terminating step)."""
        return q_learning_target(reward, self.q[s2], self.config.gamma, terminated)
