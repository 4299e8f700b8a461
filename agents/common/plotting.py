"""Learning curves from ``metrics.csv`` or an agent's history, drawn by ``mpgym.plots``."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.common.base import METRIC_RETURN, METRIC_X
from mpgym.errors import MpgymError
from mpgym.plots import plot_curves
from mpgym.runs import RunDir


def read_metrics(source: str | Path | RunDir) -> list[dict[str, Any]]:
    """Rows of a run's ``metrics.csv`` (a run dir, a RunDir or the CSV path)."""
    path = Path(source)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.exists():
        raise MpgymError(f"no metrics at {path}; expected a run directory with metrics.csv.")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def curve(rows: Sequence[Mapping[str, Any]], y: str = METRIC_RETURN,
          x: str | None = None) -> tuple[list[float], list[float]]:
    """``(x, y)`` from metric rows; ``x`` defaults to the first of ``timestep``, ``episode``."""
    rows = [r for r in rows if r.get(y) not in (None, "")]
    if not rows:
        return [], []
    if x is None:
        x = next((c for c in METRIC_X if rows[0].get(c) not in (None, "")), None)
    xs = [float(r[x]) for r in rows] if x else [float(i) for i in range(1, len(rows) + 1)]
    return xs, [float(r[y]) for r in rows]


def plot_learning_curve(
    source: str | Path | RunDir | Sequence[Mapping[str, Any]],
    path: str | Path | None = None,
    *,
    y: str = METRIC_RETURN,
    x: str | None = None,
    label: str = "return",
    title: str = "",
    smooth: int = 0,
    hlines: Mapping[str, float] | None = None,
) -> Path:
    """Plot the learning curve of a run (or of metric rows) as a PNG.

    Args:
        source: run directory / metrics.csv path / list of metric rows (``agent.history``).
        path: output PNG (default: ``<run>/learning_curve.png``; required for rows).
        y: column to plot (default ``return``).
        x: x column (default ``timestep`` if logged, else ``episode``).
        label: legend entry.
        title: plot title.
        smooth: moving-average window (0: about 1/50 of the points).
        hlines: reference lines, name -> value (an optimum, a threshold).

    Returns:
        The path of the PNG.
    """
    if isinstance(source, (str, Path, RunDir)):
        rows = read_metrics(source)
        path = path or Path(source) / "learning_curve.png"
    else:
        rows = list(source)
        if path is None:
            raise MpgymError("plot_learning_curve needs `path` when given metric rows.")
    xs, ys = curve(rows, y=y, x=x)
    window = smooth or max(1, len(ys) // 50)
    xlabel = x or next((c for c in METRIC_X if rows and rows[0].get(c) not in (None, "")), "row")
    return plot_curves(path, {label: (xs, ys)}, xlabel=xlabel, ylabel=y, title=title,
                       smooth=window, hlines=hlines)
