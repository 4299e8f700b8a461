"""Discounted return of every step of one complete episode (pure function, NumPy).

The Monte Carlo target of tabular MC prediction and control (Sutton & Barto, ch. 5) and of
REINFORCE (sec. 13.3). Rollouts of vector envs, which hold several episodes per env and end
mid-episode, use :func:`agents.deep.common.rollout_returns` instead.
"""

from __future__ import annotations

import numpy as np


def reward_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted reward-to-go of one episode, ``G_t = sum_{k>=0} gamma^k r_{t+k}``.

    Computed backwards, ``G_t = r_t + gamma * G_{t+1}`` with ``G_T = 0``.

    Args:
        rewards: ``[T]`` rewards of one complete episode (a bootstrap value may be appended
            as a last reward and its return dropped, as REINFORCE does for time limits).
        gamma: discount factor in [0, 1].

    Returns:
        ``[T]`` float64 returns; ``G_0`` is the episode's discounted return.

    Example:
        >>> reward_to_go(np.array([1.0, 1.0, 1.0]), 0.5)
        array([1.75, 1.5 , 1.  ])
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    out = np.empty_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out
