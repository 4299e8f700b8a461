"""Slow reference of the Bellman backup: loops over the toy-text ``P`` dict, for tests."""

from __future__ import annotations

import numpy as np


def bellman_backup_reference(P: dict, V: np.ndarray, gamma: float) -> np.ndarray:
    """``Q[s, a] = sum_(p, s', r, term) p * (r + gamma * (1 - term) * V[s'])``, looping over P."""
    S, A = len(P), len(P[0])
    Q = np.zeros((S, A))
    for s in range(S):
        for a in range(A):
            for p, s2, r, term in P[s][a]:
                Q[s, a] += p * (r + gamma * (1.0 - float(term)) * V[s2])
    return Q
