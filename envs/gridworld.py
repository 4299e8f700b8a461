"""Grid worlds from ASCII maps: Sutton & Barto's 4x4 grid, Windy Gridworld, Cliff Walking.

Map characters (one string per row):

- ``S`` start (if absent, episodes start uniformly in any free non-terminal cell),
- ``G`` goal and ``T`` terminal cell (both end the episode on entry),
- ``H`` pit (ends the episode, reward ``rewards["H"]``),
- ``C`` cliff (reward ``rewards["C"]``, sends the agent back to ``S`` without ending),
- ``#`` wall (moving into it, or off the grid, leaves the agent in place),
- ``.`` free cell; any other character is a free cell whose entry reward is ``rewards[char]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from io import StringIO

import numpy as np

from envs.discrete import DiscreteModelEnv
from mpgym.errors import MpgymError

LEFT, DOWN, RIGHT, UP = 0, 1, 2, 3
MOVES = {LEFT: (0, -1), DOWN: (1, 0), RIGHT: (0, 1), UP: (-1, 0)}

MAPS: dict[str, list[str]] = {
    # Sutton & Barto (2018), Example 4.1: terminal corners, reward -1 per step.
    "4x4": ["T...", "....", "....", "...T"],
    # Example 6.5 (Windy Gridworld): 7 x 10, wind given in WINDS["windy"].
    "windy": [".........."] * 3 + ["S......G.."] + [".........."] * 3,
    # Example 6.6 (Cliff Walking): 4 x 12, cliff along the bottom edge.
    "cliff": ["............"] * 3 + ["SCCCCCCCCCCG"],
}
WINDS: dict[str, tuple[int, ...]] = {"windy": (0, 0, 0, 1, 1, 1, 2, 2, 1, 0)}
FREE, WALL = ".", "#"
TERMINAL_CELLS = "GTH"
COLORS = {".": (235, 235, 235), "#": (60, 60, 60), "S": (170, 200, 255), "G": (120, 210, 120),
          "T": (160, 160, 160), "H": (40, 40, 90), "C": (200, 80, 80)}


def parse_map(desc: Sequence[str]) -> np.ndarray:
    """Check an ASCII map and return it as a ``(rows, cols)`` array of characters.

    Raises:
        MpgymError: empty map, ragged rows, more than one ``S``, or no free cell.
    """
    if isinstance(desc, str):
        desc = [row for row in desc.strip().splitlines() if row.strip()]
    rows = [str(r).strip() for r in desc]
    if not rows or not rows[0]:
        raise MpgymError("a grid map needs at least one non-empty row, e.g. ['S..', '..G'].")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise MpgymError(f"every row of a grid map must have the same length; got lengths "
                         f"{[len(r) for r in rows]}.")
    grid = np.array([list(r) for r in rows])
    if (grid == "S").sum() > 1:
        raise MpgymError("a grid map may have at most one start 'S'.")
    if not np.isin(grid, list(WALL + TERMINAL_CELLS), invert=True).any():
        raise MpgymError("a grid map needs at least one free, non-terminal cell to start in.")
    if (grid == "C").any() and not (grid == "S").any():
        raise MpgymError("a map with cliff cells 'C' needs a start 'S' to send the agent back to.")
    return grid


class GridWorldEnv(DiscreteModelEnv):
    """A grid world from an ASCII map, with optional slip and wind.

    ## Description
    The agent moves between cells of a grid. Presets reproduce Sutton & Barto (2018): ``"4x4"``
    (Example 4.1), ``"windy"`` (Example 6.5) and ``"cliff"`` (Example 6.6).

    ## Action Space
    ``Discrete(4)``: 0 LEFT, 1 DOWN, 2 RIGHT, 3 UP (FrozenLake's order).

    ## Observation Space
    ``Discrete(rows * cols)``: the cell index ``row * cols + col``.

    ## Starting State
    The ``S`` cell, or uniform over free non-terminal cells when the map has none.

    ## Rewards
    Entering a cell gives ``rewards[char]`` if the map character has one, else
    ``step_reward``. Defaults: -1 per step, -100 for a cliff (Example 6.6).

    ## Episode End
    Terminates on entering ``G``, ``T`` or ``H``. Terminal cells are absorbing in ``P``
    (self-loops with ``terminated=True`` and reward 0). The registered ids truncate after
    ``max_episode_steps``.

    ## Arguments
    ``map_name`` (a key of ``MAPS``) or ``desc`` (list of rows); ``slip``: probability that the
    move goes to one of the two perpendicular directions instead (half each); ``wind``: upward
    push per column, applied from the column the agent leaves (Example 6.5); ``step_reward``;
    ``rewards``: map character -> entry reward; ``render_mode``: ``"ansi"`` or ``"rgb_array"``.

    ## Version History
    * v0: initial version.
    """

    def __init__(self, map_name: str | None = "4x4", desc: Sequence[str] | None = None, *,
                 slip: float = 0.0, wind: Sequence[int] | None = None, step_reward: float = -1.0,
                 rewards: Mapping[str, float] | None = None, render_mode: str | None = None):
        if desc is None:
            if map_name not in MAPS:
                raise MpgymError(f"unknown map_name {map_name!r}; accepted: {', '.join(MAPS)}, "
                                 "or pass desc=[rows].")
            desc = MAPS[map_name]
            wind = WINDS.get(map_name) if wind is None else wind
        self.desc = parse_map(desc)
        self.nrow, self.ncol = self.desc.shape
        if not 0.0 <= slip < 1.0:
            raise MpgymError(f"slip must be in [0, 1), got {slip}.")
        self.wind = np.zeros(self.ncol, dtype=int) if wind is None else np.asarray(wind, dtype=int)
        if self.wind.shape != (self.ncol,):
            raise MpgymError(f"wind needs one value per column ({self.ncol}), "
                             f"got {len(self.wind)}.")
        self.slip = float(slip)
        self.step_reward = float(step_reward)
        self.rewards = {"C": -100.0, **(rewards or {})}
        P = {s: {a: self._transitions(s, a) for a in MOVES} for s in range(self.desc.size)}
        flat = self.desc.ravel()
        if (flat == "S").any():
            isd = (flat == "S").astype(float)
        else:
            isd = np.isin(flat, list(WALL + TERMINAL_CELLS), invert=True).astype(float)
        super().__init__(P, isd / isd.sum(), render_mode)

    def _move(self, row: int, col: int, action: int) -> tuple[int, int]:
        """Cell reached from (row, col) by ``action``, then pushed up by the wind."""
        dr, dc = MOVES[action]
        r, c = row + dr, col + dc
        if not (0 <= r < self.nrow and 0 <= c < self.ncol) or self.desc[r, c] == WALL:
            r, c = row, col
        for _ in range(int(self.wind[col])):  # wind of the column left, one cell at a time
            if r - 1 < 0 or self.desc[r - 1, c] == WALL:
                break
            r -= 1
        return r, c

    def _outcome(self, row: int, col: int, action: int) -> tuple[int, float, bool]:
        r, c = self._move(row, col, action)
        char = self.desc[r, c]
        reward = float(self.rewards.get(char, self.step_reward))
        if char == "C":
            r, c = map(int, np.argwhere(self.desc == "S")[0])
        return r * self.ncol + c, reward, bool(char in TERMINAL_CELLS)

    def _transitions(self, s: int, a: int) -> list[tuple[float, int, float, bool]]:
        row, col = divmod(s, self.ncol)
        if self.desc[row, col] in TERMINAL_CELLS + WALL:
            return [(1.0, s, 0.0, True)]
        if self.slip == 0.0:
            return [(1.0, *self._outcome(row, col, a))]
        perpendicular = [(a - 1) % 4, (a + 1) % 4]
        half = self.slip / 2
        probs = {a: 1.0 - self.slip, perpendicular[0]: half, perpendicular[1]: half}
        merged: dict[tuple[int, float, bool], float] = {}
        for act, p in probs.items():
            key = self._outcome(row, col, act)
            merged[key] = merged.get(key, 0.0) + p
        return [(p, *key) for key, p in merged.items()]

    def _render_text(self) -> str:
        """``ansi``: the last action and the map with the agent as ``@``."""
        grid = self.desc.copy()
        row, col = divmod(self.s, self.ncol)
        grid[row, col] = "@"
        out = StringIO()
        if self.lastaction is not None:
            out.write(f"  ({['Left', 'Down', 'Right', 'Up'][self.lastaction]})\n")
        out.write("\n".join("".join(r) for r in grid) + "\n")
        return out.getvalue()

    def _render_rgb(self) -> np.ndarray:
        """``rgb_array``: :meth:`render_rgb` with its defaults."""
        return self.render_rgb()

    def render_rgb(self, cell: int = 32, path: Sequence[int] = ()) -> np.ndarray:
        """Draw the grid (uint8 ``(rows*cell, cols*cell, 3)``), the agent, and an optional path."""
        img = np.zeros((self.nrow * cell, self.ncol * cell, 3), dtype=np.uint8)
        for (r, c), ch in np.ndenumerate(self.desc):
            img[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = COLORS.get(ch, (220, 220, 180))
        img[::cell, :] = img[:, ::cell] = 150  # grid lines
        q = cell // 4
        for s in path:
            r, c = divmod(int(s), self.ncol)
            img[r * cell + q + q // 2:(r + 1) * cell - q - q // 2,
                c * cell + q + q // 2:(c + 1) * cell - q - q // 2] = (240, 160, 30)
        r, c = divmod(self.s, self.ncol)
        img[r * cell + q:(r + 1) * cell - q, c * cell + q:(c + 1) * cell - q] = (200, 30, 30)
        return img
