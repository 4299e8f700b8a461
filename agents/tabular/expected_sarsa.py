"""Expected SARSA (van Seijen et al. 2009; Sutton & Barto, sec. 6.6)."""

from __future__ import annotations

from dataclasses import dataclass

from agents.common.schedules import Schedule
from agents.tabular.base import TabularAgent, TabularConfig, epsilon_greedy_probs
from agents.tabular.targets import expected_sarsa_target


@dataclass(frozen=True)
class ExpectedSarsaConfig(TabularConfig):
    """Expected SARSA; same defaults as SARSA and Q-learning."""


class ExpectedSarsa(TabularAgent):
    """Expected SARSA: the target averages ``Q(s', .)`` under the epsilon-greedy policy.

    Lower variance than SARSA, so it tolerates larger step sizes (Figure 6.3 of the book,
    Cliff Walking). ``learn(n)`` counts episodes.
    """

    name = "expected-sarsa"
    Config = ExpectedSarsaConfig
    PRESETS = {
        "frozenlake": ExpectedSarsaConfig(),
        "cliff": ExpectedSarsaConfig(env_id="CliffWalking-v1", episodes=500, gamma=1.0,
                                     alpha=Schedule(0.9), epsilon=Schedule(0.1)),
    }

    def td_target(self, reward: float, s2: int, terminated: bool, epsilon: float) -> float:
        """``r + gamma * sum_a pi(a | s') Q(s', a)`` under the epsilon-greedy policy."""
        probs = epsilon_greedy_probs(self.q[s2], epsilon)
        return expected_sarsa_target(reward, self.q[s2], probs, self.config.gamma, terminated)
