"""Sutton & Barto's random walk (Example 6.2) with a configurable number of states."""

from __future__ import annotations

import numpy as np

from envs.discrete import DiscreteModelEnv

LEFT, RIGHT = 0, 1


def true_values(n_states: int = 5) -> np.ndarray:
    """Values of the non-terminal states under the equiprobable random policy: ``k / (n + 1)``.

    Example:
        >>> true_values(5).round(3).tolist()
        [0.167, 0.333, 0.5, 0.667, 0.833]
    """
    return np.arange(1, n_states + 1) / (n_states + 1)


class RandomWalkEnv(DiscreteModelEnv):
    """A chain of ``n_states`` cells between two terminal ends.

    ## Description
    Sutton & Barto (2018), Example 6.2: states A-E between two terminals; the walk starts in the
    centre. The book's Markov reward process is this env under the equiprobable random policy.

    ## Action Space
    ``Discrete(2)``: 0 LEFT, 1 RIGHT (deterministic moves).

    ## Observation Space
    ``Discrete(n_states + 2)``: 0 and ``n_states + 1`` are the terminal ends, 1..n_states the chain.

    ## Starting State
    The centre cell ``(n_states + 1) // 2`` (state C for 5 states).

    ## Rewards
    +1 on entering the right end, 0 otherwise.

    ## Episode End
    Terminates at either end (absorbing in ``P``).

    ## Arguments
    ``n_states`` (default 5; 19 for Example 7.1), ``render_mode``: ``"ansi"`` or ``"rgb_array"``.

    ## Version History
    * v0: initial version.
    """

    def __init__(self, n_states: int = 5, render_mode: str | None = None):
        from mpgym.errors import MpgymError

        if int(n_states) < 1:
            raise MpgymError(f"n_states must be a positive integer, got {n_states}.")
        self.n_states = n = int(n_states)
        P = {}
        for s in range(n + 2):
            if s in (0, n + 1):
                P[s] = {a: [(1.0, s, 0.0, True)] for a in (LEFT, RIGHT)}
                continue
            P[s] = {LEFT: [(1.0, s - 1, 0.0, s - 1 == 0)],
                    RIGHT: [(1.0, s + 1, 1.0 if s + 1 == n + 1 else 0.0, s + 1 == n + 1)]}
        isd = np.zeros(n + 2)
        isd[(n + 1) // 2] = 1.0
        super().__init__(P, isd, render_mode)

    def _render_text(self) -> str:
        """``ansi``: ``|..@..|``."""
        cells = ["|"] + ["."] * self.n_states + ["|"]
        cells[self.s] = "@"
        return "".join(cells) + "\n"

    def _render_rgb(self) -> np.ndarray:
        """``rgb_array``: a (32, 32 * (n + 2), 3) strip."""
        img = np.full((32, 32 * (self.n_states + 2), 3), 235, dtype=np.uint8)
        img[:, :32] = img[:, -32:] = 160
        img[8:24, self.s * 32 + 8:self.s * 32 + 24] = (200, 30, 30)
        img[:, ::32] = 150
        return img
