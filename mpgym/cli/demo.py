"""``mpgym demo``: a tour of a few minutes through what exists, on built-in defaults.

Each stop lives in ``mpgym/cli/demo_stops/<name>.py`` and exposes ``run(out: Path) ->
Section | list[Section]``; it writes its pictures under ``out`` (``runs/demo/<name>/``). The
tour collects the sections into ``runs/demo/report.html``. A stop that fails is reported in
the page and in the exit code, and the tour goes on.
"""

from __future__ import annotations

import importlib
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import tyro

from mpgym.report import Section, write_report

log = logging.getLogger("mpgym.demo")

STOPS: tuple[str, ...] = ("tabular", "deep_rl", "implicit", "nerf", "splat", "bodies",
                          "motion", "generative")


@dataclass
class DemoConfig:
    """Options of the tour."""

    out: Path = Path("runs/demo")
    """Directory for the report and each stop's pictures."""
    only: list[str] = field(default_factory=list)
    """Run only these stops (default: all of them)."""


def run(config: DemoConfig) -> tuple[Path, bool]:
    """Run the tour; return the report path and whether every stop succeeded."""
    unknown = [s for s in config.only if s not in STOPS]
    if unknown:
        from mpgym.errors import MpgymError

        raise MpgymError(f"unknown demo stop(s) {unknown}; accepted: {', '.join(STOPS)}.")
    sections: list[Section] = []
    ok = True
    for name in config.only or STOPS:
        try:
            module = importlib.import_module(f"mpgym.cli.demo_stops.{name}")
        except ModuleNotFoundError:
            log.info("demo: stop %r is not part of this installation yet", name)
            continue
        out = config.out / name
        out.mkdir(parents=True, exist_ok=True)
        log.info("demo: %s ...", name)
        t0 = time.perf_counter()
        try:
            result = module.run(out)
            new = result if isinstance(result, list) else [result]
        except Exception as exc:  # a failed stop must not hide the others
            ok = False
            log.error("demo: stop %r failed: %s", name, exc)
            new = [Section(title=name, error=f"{exc}\n\n{traceback.format_exc(limit=4)}")]
        dt = time.perf_counter() - t0
        for s in new:
            s.seconds = s.seconds if s.seconds is not None else dt / len(new)
        sections.extend(new)
        log.info("demo: %s done in %.1f s", name, dt)
        write_report(config.out / "report.html", "mpgym demo", sections)  # keep what exists so far
    path = write_report(config.out / "report.html", "mpgym demo", sections)
    return path, ok


def main(argv: list[str]) -> int:
    """Entry point of ``mpgym demo``."""
    config = tyro.cli(DemoConfig, args=argv, prog="mpgym demo")
    path, ok = run(config)
    print(f"report: {path}")
    return 0 if ok else 1
