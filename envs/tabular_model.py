"""The model of a discrete env as sparse matrices: what dynamic programming needs.

Convention (read this before writing a backup): the model stores *continuation*
probabilities ``P[s * A + a, s'] = sum over transitions to s' of prob * (1 - terminated)``, so a
Bellman backup is ``Q = R + gamma * (P @ V).reshape(S, A)`` and a terminating step never
bootstraps. This is the ``(1 - terminated) * V[s']`` rule, required because Gymnasium's own ``P``
is not absorbing at some goal states (CliffWalking's goal, Taxi after a drop-off): from there the
dict still lists moves as if the episode went on. ``terminal`` marks states entered by a
terminating transition; with ``terminal="absorbing"`` (default) those states get zero rows and
zero reward, so ``V = 0`` there as in the book (``absorbed`` records which ones were changed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from mpgym.errors import MpgymError

PROB_ATOL = 1e-6
"""Tolerance on ``sum_s' p(s' | s, a) = 1``."""


@dataclass(frozen=True)
class TabularModel:
    """A finite MDP with sparse transitions.

    Attributes:
        P: ``(S * A, S)`` CSR float64, continuation probabilities; row ``s * A + a``.
        R: ``(S, A)`` float64, expected reward ``sum_t prob_t * reward_t``.
        done: ``(S, A)`` float64, probability that the step from ``s`` with ``a`` terminates.
        terminal: ``(S,)`` bool, states entered by a terminating transition.
        absorbed: ``(S,)`` bool, terminal states whose outgoing moves were dropped (they were not
            absorbing in the env's ``P``); all False with ``terminal="as-given"``.
    """

    P: sp.csr_matrix
    R: np.ndarray
    done: np.ndarray
    terminal: np.ndarray
    absorbed: np.ndarray

    @property
    def n_states(self) -> int:
        """Number of states S."""
        return self.R.shape[0]

    @property
    def n_actions(self) -> int:
        """Number of actions A."""
        return self.R.shape[1]

    def transition(self, action: int) -> sp.csr_matrix:
        """``(S, S)`` continuation matrix of one action."""
        return self.P[action::self.n_actions]

    def policy_matrix(self, policy: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        """Markov chain of a policy: ``P_pi`` ``(S, S)`` and ``r_pi`` ``(S,)``.

        Args:
            policy: ``(S, A)`` action probabilities.
        """
        S, A = self.R.shape
        policy = check_policy(policy, S, A)
        rows = np.repeat(np.arange(S), A)
        D = sp.csr_matrix((policy.ravel(), (rows, np.arange(S * A))), shape=(S, S * A))
        return (D @ self.P).tocsr(), (policy * self.R).sum(axis=1)

    @classmethod
    def from_env(cls, env: Any, *, terminal: Literal["absorbing", "as-given"] = "absorbing"
                 ) -> TabularModel:
        """Build the model of any env exposing ``env.unwrapped.P`` (toy-text layout).

        Args:
            env: a Gymnasium env (wrapped or not) or an env id, with
                ``P[s][a] == [(prob, next_state, reward, terminated), ...]``.
            terminal: ``"absorbing"`` zeroes the rows of terminal states that the env's ``P``
                does not make absorbing; ``"as-given"`` keeps them.

        Raises:
            MpgymError: no ``P``, missing actions, bad next states, or probabilities of some
                ``(s, a)`` that do not sum to 1 (the message names it).
        """
        if isinstance(env, str):
            from envs.make import make_env

            env = make_env(env)
        P = getattr(getattr(env, "unwrapped", env), "P", None)
        if not isinstance(P, dict) or not P:
            name = getattr(getattr(env, "spec", None), "id", type(env).__name__)
            raise MpgymError(f"{name} exposes no model: TabularModel.from_env needs "
                             "env.unwrapped.P[s][a] = [(prob, next_state, reward, terminated)] "
                             "as in FrozenLake, Taxi, CliffWalking and the mpgym/ envs.")
        return cls.from_dict(P, terminal=terminal)

    @classmethod
    def from_dict(cls, P: dict, *, terminal: Literal["absorbing", "as-given"] = "absorbing"
                  ) -> TabularModel:
        """Build the model from a toy-text ``P`` dict (see :meth:`from_env`)."""
        if terminal not in ("absorbing", "as-given"):
            raise MpgymError(f"terminal must be 'absorbing' or 'as-given', got {terminal!r}.")
        S = len(P)
        if sorted(P) != list(range(S)):
            raise MpgymError(f"P must have the states 0..{S - 1} as keys.")
        A = len(P[0])
        rows, cols, probs, rewards, dones = [], [], [], [], []
        for s in range(S):
            if sorted(P[s]) != list(range(A)):
                raise MpgymError(f"P[{s}] must list the actions 0..{A - 1}, got {sorted(P[s])}.")
            for a in range(A):
                for t in P[s][a]:
                    if len(t) != 4:
                        raise MpgymError(f"P[{s}][{a}] holds {t!r}; each entry must be "
                                         "(prob, next_state, reward, terminated).")
                    rows.append(s * A + a)
                    cols.append(t[1])
                    probs.append(t[0])
                    rewards.append(t[2])
                    dones.append(t[3])
        return cls.from_transitions(np.array(rows), np.array(cols), np.array(probs, dtype=float),
                                    np.array(rewards, dtype=float), np.array(dones, dtype=bool),
                                    n_states=S, n_actions=A, terminal=terminal)

    @classmethod
    def from_transitions(cls, rows: np.ndarray, next_states: np.ndarray, probs: np.ndarray,
                         rewards: np.ndarray, terminated: np.ndarray, *, n_states: int,
                         n_actions: int, terminal: Literal["absorbing", "as-given"] = "absorbing"
                         ) -> TabularModel:
        """Build the model from flat transition arrays (all ``(T,)``), vectorised.

        Args:
            rows: ``s * n_actions + a`` of each transition.
            next_states: ``s'`` of each transition.
            probs: probability of each transition.
            rewards: reward of each transition.
            terminated: whether each transition ends the episode.
            n_states: S.
            n_actions: A.
            terminal: see :meth:`from_env`.
        """
        S, A = int(n_states), int(n_actions)
        rows = np.asarray(rows, dtype=np.int64)
        next_states = np.asarray(next_states, dtype=np.int64)
        probs, rewards = np.asarray(probs, dtype=float), np.asarray(rewards, dtype=float)
        terminated = np.asarray(terminated, dtype=bool)
        _validate(rows, next_states, probs, rewards, S, A)
        keep = 1.0 - terminated
        R = np.bincount(rows, weights=probs * rewards, minlength=S * A).reshape(S, A)
        done = np.bincount(rows, weights=probs * terminated, minlength=S * A).reshape(S, A)
        P = sp.csr_matrix((probs * keep, (rows, next_states)), shape=(S * A, S))
        P.sum_duplicates()
        P.eliminate_zeros()
        is_terminal = np.zeros(S, dtype=bool)
        is_terminal[next_states[terminated & (probs > 0)]] = True
        entered_alive = np.zeros(S, dtype=bool)
        entered_alive[next_states[~terminated & (probs > 0)]] = True
        row_mass = np.asarray(P.sum(axis=1)).reshape(S, A).sum(axis=1)
        absorbed = np.zeros(S, dtype=bool)
        if terminal == "absorbing":
            absorbed = is_terminal & ~entered_alive & ((row_mass > 0) | (np.abs(R).sum(1) > 0))
            if absorbed.any():
                mask = np.repeat(~absorbed, A).astype(float)
                P = (sp.diags(mask) @ P).tocsr()
                P.eliminate_zeros()
                R = R * (~absorbed)[:, None]
                done = np.where(absorbed[:, None], 1.0, done)
        return cls(P=P, R=R, done=done, terminal=is_terminal, absorbed=absorbed)


def _validate(rows: np.ndarray, next_states: np.ndarray, probs: np.ndarray, rewards: np.ndarray,
              S: int, A: int) -> None:
    """Check ranges, finiteness and that probabilities of every (s, a) sum to 1."""
    if rows.size and (rows.min() < 0 or rows.max() >= S * A):
        raise MpgymError(f"transition rows must be s * {A} + a in [0, {S * A}).")
    bad = (next_states < 0) | (next_states >= S)
    if bad.any():
        i = int(np.argmax(bad))
        s, a = divmod(int(rows[i]), A)
        raise MpgymError(f"P[{s}][{a}] leads to state {int(next_states[i])}, outside 0..{S - 1}.")
    for name, arr in (("probabilities", probs), ("rewards", rewards)):
        if not np.isfinite(arr).all():
            i = int(np.argmax(~np.isfinite(arr)))
            s, a = divmod(int(rows[i]), A)
            raise MpgymError(f"P[{s}][{a}] has non-finite {name}; only finite values are accepted.")
    if (probs < 0).any():
        s, a = divmod(int(rows[int(np.argmax(probs < 0))]), A)
        raise MpgymError(f"P[{s}][{a}] has a negative probability; probabilities must be >= 0.")
    total = np.bincount(rows, weights=probs, minlength=S * A)
    off = np.abs(total - 1.0) > PROB_ATOL
    if off.any():
        i = int(np.argmax(off))
        s, a = divmod(i, A)
        raise MpgymError(f"probabilities of P[{s}][{a}] sum to {total[i]:.6g}, not 1 "
                         f"({int(off.sum())} (s, a) pairs are off); each P[s][a] must list "
                         "(prob, next_state, reward, terminated) with probs summing to 1.")


def check_policy(policy: np.ndarray, n_states: int, n_actions: int) -> np.ndarray:
    """Return ``policy`` as a float ``(S, A)`` array of probabilities, or raise MpgymError.

    A ``(S,)`` integer array of actions is accepted and turned into one-hot rows.
    """
    policy = np.asarray(policy)
    if policy.shape == (n_states,) and policy.dtype.kind in "iu":
        if policy.min() < 0 or policy.max() >= n_actions:
            raise MpgymError(f"policy actions must be in 0..{n_actions - 1}.")
        return np.eye(n_actions)[policy]
    if policy.shape != (n_states, n_actions):
        raise MpgymError(f"policy must be ({n_states}, {n_actions}) action probabilities or "
                         f"({n_states},) actions, got shape {policy.shape}.")
    policy = policy.astype(float)
    if (policy < 0).any() or not np.allclose(policy.sum(axis=1), 1.0, atol=1e-8):
        raise MpgymError("policy rows must be probabilities (>= 0, summing to 1).")
    return policy
