"""Seed-and-grid sweeps, independent of the engine that runs them: trials in, a table out.

A sweep is ``seeds x grid``: every combination of the grid's values (config field name ->
values, in the order given), each trained with every seed. :func:`expand_trials` lists the
trials, the engine (``mpgym sweep`` runs them on Ray Tune) trains them, and :func:`aggregate`
turns their results into one row per grid point -- mean, spread and solved seeds of the final
evaluation return -- and :func:`mean_band` their learning curves into a mean with a band.

Grid values stay the text the user wrote (``"3e-4"``): the command line parses them exactly as
``mpgym train`` parses its flags, so a sweep accepts what a single run accepts.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpgym.errors import MpgymError
from mpgym.plots import moving_average

Point = tuple[tuple[str, str], ...]
"""A grid point: ``((key, value text), ...)`` in the grid's key order."""

KEY_ALIASES = {"lr": "learning_rate"}
"""Short grid keys accepted for a config field of another name (``lr=3e-4``)."""

FIXED_KEYS = ("env_id", "seed", "env_kwargs")
"""Config fields a grid may not vary: ``--env`` and ``--seeds`` set the first two, and
``env_kwargs`` (JSON) cannot be written as a comma-separated list."""


@dataclass(frozen=True)
class Trial:
    """One training run of a sweep: a grid point and a seed."""

    point: Point
    seed: int

    @property
    def label(self) -> str:
        """The grid point as ``key=value`` pairs (``"lr=3e-4 gamma=0.9"``), or ``"default"``."""
        return point_label(self.point)


@dataclass(frozen=True)
class TrialResult:
    """What one trial reported.

    Attributes:
        trial: the trial.
        final_return: its final metric: the mean return of its evaluation episodes for RL,
            the sweep's metric otherwise (validation loss, test PSNR); NaN when it failed.
        curve: ``(x, values)``: its training episodes' returns (x: env steps or episodes),
            or its periodic validation scores (x: steps).
        error: why the trial failed, or None.
    """

    trial: Trial
    final_return: float
    curve: tuple[Sequence[float], Sequence[float]] = ((), ())
    error: str | None = None


def point_label(point: Point) -> str:
    """``"lr=3e-4 gamma=0.9"`` for a point; ``"default"`` for the empty one."""
    return " ".join(f"{k}={v}" for k, v in point) or "default"


def point_slug(point: Point) -> str:
    """A path-safe name of a point (``"lr=3e-4_gamma=0.9"``; ``"default"`` when empty)."""
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", "_".join(f"{k}={v}" for k, v in point)) or "default"


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"0-9"``, ``"0,3,7"`` or both (``"0-4,10"``), in order, without repeats.

    Example:
        >>> parse_seeds("0-2,7")
        [0, 1, 2, 7]

    Raises:
        MpgymError: anything but whole numbers >= 0 and ascending ranges, or repeats.
    """
    seeds: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if m is None:
            raise MpgymError(f"--seeds {text!r}: {part.strip()!r} is not a seed; accepted: whole "
                             "numbers >= 0 and ranges, e.g. '0-9' or '0,3,7' or '0-4,10'.")
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if hi < lo:
            raise MpgymError(f"--seeds {text!r}: the range {lo}-{hi} is empty; write it as "
                             f"{hi}-{lo}.")
        seeds += range(lo, hi + 1)
    if len(set(seeds)) != len(seeds):
        raise MpgymError(f"--seeds {text!r} names a seed twice; each seed runs once per point.")
    return seeds


def config_keys(config_cls: type) -> list[str]:
    """Grid keys of a dataclass config: its fields, nested ones dotted (``alpha.start``).

    :data:`FIXED_KEYS` are left out.
    """
    keys: list[str] = []
    for f in dataclasses.fields(config_cls):
        if not f.init or f.name in FIXED_KEYS:
            continue
        default = (f.default if f.default is not dataclasses.MISSING
                   else f.default_factory() if f.default_factory is not dataclasses.MISSING
                   else None)
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            keys += [f"{f.name}.{k}" for k in config_keys(type(default))]
        else:
            keys.append(f.name)
    return keys


def prefixed_keys(configs: Mapping[str, type]) -> tuple[list[str], dict[str, str]]:
    """Grid keys of configs nested under prefixes, and the bare names that stand for them.

    A command whose flags are ``--train.lr`` and ``--model.hidden`` takes the keys
    ``train.lr`` and ``model.hidden``; a field name that only one config has may be written
    bare (``lr`` for ``train.lr``).

    Example:
        >>> @dataclass
        ... class A:
        ...     lr: float = 1.0
        ...     seed: int = 0
        >>> prefixed_keys({"train": A})
        (['train.lr'], {'lr': 'train.lr'})
    """
    keys = [f"{prefix}.{k}" for prefix, cls in configs.items() for k in config_keys(cls)]
    bare: dict[str, list[str]] = {}
    for key in keys:
        bare.setdefault(key.split(".", 1)[1], []).append(key)
    return keys, {name: full[0] for name, full in bare.items() if len(full) == 1}


def parse_grid(items: Sequence[str], accepted: Sequence[str],
               aliases: Mapping[str, str] = KEY_ALIASES) -> dict[str, list[str]]:
    """``{key: [value text, ...]}`` from ``["lr=3e-4,1e-3", "gamma=0.9,0.99"]``.

    Keys may use hyphens for underscores (``learning-rate``) and ``aliases`` (default
    :data:`KEY_ALIASES`) when the config has the field they stand for.

    Raises:
        MpgymError: an item without ``=`` or values, a key given twice, or a key not in
            ``accepted`` (listing the accepted ones).
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        written, sep, values = item.partition("=")
        key = written.strip().replace("-", "_")
        if key not in accepted and aliases.get(key) in accepted:
            key = aliases[key]
        texts = [v.strip() for v in values.split(",")]
        if not sep or not key or not all(texts):
            raise MpgymError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. lr=3e-4,1e-3) with "
                             "no empty values.")
        if key not in accepted:
            fixed = [k for k in FIXED_KEYS if k == key]
            why = (f"{key} is set by --env/--seeds or the train flags, not by a grid" if fixed
                   else f"unknown key {key!r}")
            raise MpgymError(f"--grid {item!r}: {why}; accepted keys: {', '.join(accepted)}.")
        if key in grid:
            raise MpgymError(f"--grid names {key!r} twice; give all its values in one --grid.")
        if len(set(texts)) != len(texts):
            raise MpgymError(f"--grid {item!r} repeats a value.")
        grid[key] = texts
    return grid


def expand_trials(seeds: Sequence[int], grid: Mapping[str, Sequence[str]]) -> list[Trial]:
    """Every grid point (product of the values, first key slowest) with every seed.

    Example:
        >>> [t.label + f" s{t.seed}" for t in expand_trials([0, 1], {"lr": ["1", "2"]})]
        ['lr=1 s0', 'lr=1 s1', 'lr=2 s0', 'lr=2 s1']
    """
    keys = list(grid)
    points = [tuple(zip(keys, values, strict=True))
              for values in itertools.product(*(grid[k] for k in keys))]
    return [Trial(point, seed) for point in points for seed in seeds]


@dataclass
class PointSummary:
    """The final evaluation returns of one grid point over its seeds.

    Attributes:
        point: the grid point.
        returns: final return per finished seed, in seed order.
        seeds: those seeds.
        failed: seeds whose trial failed.
        solved: seeds whose return reached the threshold, or None without a threshold.
    """

    point: Point
    returns: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    solved: int | None = None

    def row(self) -> dict[str, Any]:
        """A table row: point, seeds, failed, mean, std (NumPy's), min, max, solved.

        The statistics are over the finished seeds (None when none finished).
        """
        r = np.asarray(self.returns, dtype=float)
        stat = (lambda f: float(f(r))) if r.size else (lambda f: None)
        n = len(self.returns)
        return {"point": point_label(self.point), "seeds": n, "failed": len(self.failed),
                "mean": stat(np.mean), "std": stat(np.std), "min": stat(np.min),
                "max": stat(np.max),
                "solved": "n/a" if self.solved is None else f"{self.solved}/{n}"}


def aggregate(results: Sequence[TrialResult], threshold: float | None) -> list[PointSummary]:
    """One summary per grid point (in order of first appearance) of the trials' results.

    Args:
        results: every trial's result.
        threshold: the return that counts as solved (Gymnasium's ``spec.reward_threshold``),
            or None when the env has none (``solved`` is then None: "n/a").
    """
    by_point: dict[Point, PointSummary] = {}
    for res in sorted(results, key=lambda r: r.trial.seed):
        s = by_point.setdefault(res.trial.point, PointSummary(res.trial.point))
        if res.error is not None or not math.isfinite(res.final_return):
            s.failed.append(res.trial.seed)
            continue
        s.returns.append(float(res.final_return))
        s.seeds.append(res.trial.seed)
    order = list(dict.fromkeys(r.trial.point for r in results))
    out = [by_point[p] for p in order]
    for s in out:
        s.solved = None if threshold is None else sum(r >= threshold for r in s.returns)
    return out


def mean_band(curves: Sequence[tuple[Sequence[float], Sequence[float]]], *,
              n_points: int = 200, smooth: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Mean and mean +- std (over curves) of learning curves on a common x grid.

    Each curve ``(x, y)`` is smoothed (trailing moving average; ``smooth=None``: about 1/50 of
    its points) and interpolated onto ``n_points`` x values spanning the range every curve
    covers (all of them together when the ranges do not overlap).

    Returns:
        ``(x, mean, mean - std, mean + std)``, each ``(n_points,)``, or None without curves.
    """
    arrays = [(np.asarray(x, float), np.asarray(y, float)) for x, y in curves if len(x)]
    if not arrays:
        return None
    lo, hi = max(x[0] for x, _ in arrays), min(x[-1] for x, _ in arrays)
    if hi <= lo:
        lo, hi = min(x[0] for x, _ in arrays), max(x[-1] for x, _ in arrays)
    grid = np.linspace(lo, hi, n_points)
    ys = np.stack([np.interp(grid, x, moving_average(y, smooth or max(1, len(y) // 50)))
                   for x, y in arrays])
    mean, std = ys.mean(axis=0), ys.std(axis=0)
    return grid, mean, mean - std, mean + std


def downsample(x: Sequence[float], y: Sequence[float], max_points: int = 2000
               ) -> tuple[list[float], list[float]]:
    """At most ``max_points`` of a curve (evenly strided, last point kept), as lists."""
    n = len(x)
    if n == 0:
        return [], []
    idx = np.unique(np.r_[np.arange(0, n, max(1, math.ceil(n / max_points))), n - 1])
    return [float(x[i]) for i in idx], [float(y[i]) for i in idx]


__all__ = ["FIXED_KEYS", "KEY_ALIASES", "Point", "PointSummary", "Trial", "TrialResult",
           "aggregate", "config_keys", "downsample", "expand_trials", "mean_band",
           "parse_grid", "parse_seeds", "point_label", "point_slug", "prefixed_keys"]
