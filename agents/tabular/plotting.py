"""Pictures of tabular solutions: value heatmaps with greedy arrows, greedy paths on grids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mpgym.plots import _plt, save_figure

ARROWS = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}  # LEFT, DOWN, RIGHT, UP as (dx, dy)


def plot_grid_values(path: str | Path, V: np.ndarray, policy: np.ndarray | None,
                     desc: Sequence[str] | np.ndarray, *, title: str = "",
                     terminal: np.ndarray | None = None) -> Path:
    """Heatmap of ``V`` on a grid map with greedy-action arrows, saved as PNG.

    Args:
        path: output PNG.
        V: ``(rows * cols,)`` state values.
        policy: ``(rows * cols, 4)`` action probabilities (LEFT, DOWN, RIGHT, UP) or None.
        desc: the map, one string (or row of characters) per row; letters are drawn in cells.
        title: figure title.
        terminal: ``(rows * cols,)`` bool, cells where no arrow is drawn.
    """
    plt = _plt()
    grid = np.array([list(r) for r in desc]) if not isinstance(desc, np.ndarray) else desc
    rows, cols = grid.shape
    fig, ax = plt.subplots(figsize=(0.6 * cols + 1.5, 0.6 * rows + 0.8), dpi=100)
    im = ax.imshow(np.asarray(V).reshape(rows, cols), cmap="viridis")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="V")
    for (r, c), ch in np.ndenumerate(grid):
        s = r * cols + c
        if ch not in ".F":
            ax.text(c, r, ch.decode() if isinstance(ch, bytes) else ch, ha="center",
                    va="center", color="white", fontsize=9, fontweight="bold")
            continue
        if policy is None or (terminal is not None and terminal[s]):
            continue
        dx, dy = ARROWS[int(np.argmax(policy[s]))]
        ax.arrow(c - 0.25 * dx, r - 0.25 * dy, 0.35 * dx, 0.35 * dy, head_width=0.18,
                 head_length=0.12, color="white", length_includes_head=True)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def greedy_path(agent, env, *, seed: int = 0, max_steps: int = 200) -> tuple[list[int], float]:
    """States visited by ``agent.predict`` (greedy) from ``env.reset(seed)``, and the return."""
    s, _ = env.reset(seed=seed)
    states, total = [int(s)], 0.0
    for _ in range(max_steps):
        s, r, terminated, truncated, _ = env.step(int(agent.predict(s)[0]))
        states.append(int(s))
        total += float(r)
        if terminated or truncated:
            break
    return states, total
