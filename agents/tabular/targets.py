"""One-step TD targets (pure functions): ``r + gamma * (1 - terminated) * <next value>``.

A terminating step never bootstraps; a truncated one (time limit) does, so callers pass
``terminated`` only, never ``truncated`` (Sutton & Barto, ch. 6; Pardo et al. 2018).
"""

from __future__ import annotations

import numpy as np


def sarsa_target(reward: float, q_next_action: float, gamma: float, terminated: bool) -> float:
    """SARSA: ``r + gamma * (1 - terminated) * Q(s', a')`` (eq. 6.7).

    Example:
        >>> sarsa_target(-1.0, 4.0, 0.5, False), sarsa_target(-1.0, 4.0, 0.5, True)
        (1.0, -1.0)
    """
    return float(reward) + (0.0 if terminated else gamma * float(q_next_action))


def q_learning_target(reward: float, q_next: np.ndarray, gamma: float, terminated: bool
                      ) -> float:
    """Q-learning: ``r + gamma * (1 - terminated) * max_a Q(s', a)`` (eq. 6.8).

    Example:
        >>> q_learning_target(0.0, np.array([1.0, 3.0]), 0.9, False)
        2.7
    """
    return float(reward) + (0.0 if terminated else gamma * float(q_next.max()))


def expected_sarsa_target(reward: float, q_next: np.ndarray, next_probs: np.ndarray,
                          gamma: float, terminated: bool) -> float:
    """Expected SARSA: ``r + gamma * (1 - terminated) * sum_a pi(a | s') Q(s', a)`` (eq. 6.9).

    Example:
        >>> expected_sarsa_target(0.0, np.array([1.0, 3.0]), np.array([0.25, 0.75]), 1.0, False)
        2.5
    """
    return float(reward) + (0.0 if terminated else gamma * float(np.dot(next_probs, q_next)))


def td0_target(reward: float, v_next: float, gamma: float, terminated: bool) -> float:
    """TD(0) prediction: ``r + gamma * (1 - terminated) * V(s')`` (eq. 6.2)."""
    return float(reward) + (0.0 if terminated else gamma * float(v_next))

