"""Sutton & Barto's Gambler's Problem (Example 4.3)."""

from __future__ import annotations

import numpy as np

from envs.discrete import DiscreteModelEnv
from mpgym.errors import MpgymError


class GamblersProblemEnv(DiscreteModelEnv):
    """Bet on coin flips to reach a goal capital.

    ## Description
    Sutton & Barto (2018), Example 4.3. With capital ``s`` the gambler stakes ``a`` dollars; with
    probability ``p_heads`` they win ``a``, else lose it. The episode ends at 0 or at ``goal``.

    ## Action Space
    ``Discrete(goal // 2 + 1)``: the stake. A stake above ``min(s, goal - s)`` is clipped to it,
    so the model is that of the book (duplicate actions do not change the optimal values).

    ## Observation Space
    ``Discrete(goal + 1)``: the capital; 0 and ``goal`` are terminal.

    ## Starting State
    ``start_capital`` if given, else uniform over 1..goal-1.

    ## Rewards
    +1 on reaching ``goal``, 0 otherwise (undiscounted: values are win probabilities).

    ## Episode End
    Terminates at capital 0 or ``goal`` (absorbing in ``P``).

    ## Arguments
    ``p_heads`` (0.4 in Figure 4.3), ``goal`` (100), ``start_capital``, ``render_mode``.

    ## Version History
    * v0: initial version.
    """

    def __init__(self, p_heads: float = 0.4, goal: int = 100, start_capital: int | None = None,
                 render_mode: str | None = None):
        if not 0.0 < p_heads < 1.0:
            raise MpgymError(f"p_heads must be in (0, 1), got {p_heads}.")
        if int(goal) < 2:
            raise MpgymError(f"goal must be an integer >= 2, got {goal}.")
        self.p_heads, self.goal = float(p_heads), int(goal)
        n_actions = self.goal // 2 + 1
        P = {}
        for s in range(self.goal + 1):
            if s in (0, self.goal):
                P[s] = {a: [(1.0, s, 0.0, True)] for a in range(n_actions)}
                continue
            P[s] = {a: self._transitions(s, min(a, s, self.goal - s)) for a in range(n_actions)}
        isd = np.zeros(self.goal + 1)
        if start_capital is None:
            isd[1:self.goal] = 1.0 / (self.goal - 1)
        elif 0 < int(start_capital) < self.goal:
            isd[int(start_capital)] = 1.0
        else:
            raise MpgymError(f"start_capital must be in 1..{self.goal - 1}, got {start_capital}.")
        super().__init__(P, isd, render_mode)

    def _transitions(self, s: int, stake: int) -> list[tuple[float, int, float, bool]]:
        if stake == 0:
            return [(1.0, s, 0.0, False)]
        win, lose = s + stake, s - stake
        return [(self.p_heads, win, float(win == self.goal), win == self.goal),
                (1.0 - self.p_heads, lose, 0.0, lose == 0)]

    def _render_text(self) -> str:
        """``ansi``: the capital."""
        return f"capital {self.s} / {self.goal}\n"

    def _render_rgb(self) -> np.ndarray:
        """``rgb_array``: a (16, goal + 1, 3) bar of the capital."""
        img = np.full((16, self.goal + 1, 3), 235, dtype=np.uint8)
        img[:, : self.s + 1] = (120, 210, 120)
        return img
