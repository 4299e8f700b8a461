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

    def run_episode(self, episode: int, seed: int | None) -> tuple[float, int]:
        """One episode of epsilon-greedy interaction with Expected SARSA updates."""
        eps, gamma, cap = self.config.epsilon(episode), self.config.gamma, self.config.max_steps
        s = int(self.env.reset(seed=seed)[0])
        ret, length, done = 0.0, 0, False
        while not done and length < cap:
            a = self.behave(s, eps)
            s2, r, terminated, truncated, _ = self.env.step(a)
            s2 = int(s2)
            probs = epsilon_greedy_probs(self.q[s2], eps)
            target = expected_sarsa_target(r, self.q[s2], probs, gamma, terminated)
            self.q[s, a] += self.step_size(s, a, episode) * (target - self.q[s, a])
            ret, length, done, s = ret + float(r), length + 1, terminated or truncated, s2
        return ret, length
