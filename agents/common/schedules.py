"""Epsilon and step-size schedules: pure functions of a counter, plus a config-friendly dataclass.

A schedule maps a counter ``t`` (environment steps for deep agents, episodes for tabular ones)
to a value. ``linear`` follows CleanRL's ``linear_schedule``: it moves from ``start`` to ``end``
over ``duration`` and then stays at ``end``; ``exponential`` multiplies by a constant factor so
that it reaches ``end`` after ``duration`` and then stays there. Sample-average step sizes
(``1 / N(s, a)``) are :func:`visit_step_size`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from mpgym.errors import MpgymError

ScheduleKind = Literal["constant", "linear", "exponential"]


def linear_schedule(start: float, end: float, duration: int, t: int | float) -> float:
    """Linear interpolation from ``start`` to ``end`` over ``duration``, then ``end``.

    Example:
        >>> linear_schedule(1.0, 0.1, 10, 5)
        0.55
    """
    if duration <= 0:
        return float(end)
    frac = min(max(float(t) / duration, 0.0), 1.0)
    return float(start + frac * (end - start))


def exponential_schedule(start: float, end: float, duration: int, t: int | float) -> float:
    """Geometric decay ``start * (end / start) ** (t / duration)``, clipped at ``end``.

    Example:
        >>> round(exponential_schedule(1.0, 0.01, 10, 5), 6)
        0.1
    """
    if duration <= 0 or start == end:
        return float(end)
    if start <= 0 or end <= 0:
        raise MpgymError(
            f"an exponential schedule needs positive start and end, got {start} and {end}; "
            "use kind='linear' to reach 0."
        )
    frac = min(max(float(t) / duration, 0.0), 1.0)
    return float(start * (end / start) ** frac)


def visit_step_size(counts: np.ndarray | int, power: float = 1.0) -> np.ndarray | float:
    """Step size ``1 / n ** power`` from visit counts (``power=1``: sample average).

    Robbins-Monro conditions hold for ``0.5 < power <= 1`` (Sutton & Barto, eq. 2.7).

    Example:
        >>> visit_step_size(4, 0.5)
        0.5
    """
    n = np.maximum(np.asarray(counts, dtype=float), 1.0)
    out = n ** (-float(power))
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class Schedule:
    """A value that changes with a counter: ``Schedule(1.0, 0.05, 5000, "linear")(t)``."""

    start: float
    """Value at t = 0."""
    end: float | None = None
    """Value reached at t = duration (None: constant at ``start``)."""
    duration: int = 1
    """Counter value at which ``end`` is reached (steps or episodes, as the agent counts)."""
    kind: ScheduleKind = "constant"
    """How to move from start to end: 'constant', 'linear' or 'exponential'."""

    def __call__(self, t: int | float) -> float:
        """The value at counter ``t``."""
        if self.kind == "constant" or self.end is None:
            return float(self.start)
        if self.kind == "linear":
            return linear_schedule(self.start, self.end, self.duration, t)
        if self.kind == "exponential":
            return exponential_schedule(self.start, self.end, self.duration, t)
        raise MpgymError(
            f"unknown schedule kind {self.kind!r}; accepted: 'constant', 'linear', 'exponential'."
        )


def constant(value: float) -> Schedule:
    """A schedule that always returns ``value``."""
    return Schedule(start=value)
