"""Benchmark plumbing shared by ``benchmarks/*.py``: machine info, goals, table, JSON.

JSON layout (DESIGN.md): ``{"benchmark": name, "machine": {...}, "rows": [{...}],
"goals": [{"name", "value", "target", "direction", "met"}]}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from mpgym.checkpoint import atomic_write_text, to_jsonable


@dataclass
class Goal:
    """A stated goal: ``value`` compared with ``target`` in ``direction``."""

    name: str
    value: float
    target: float
    direction: Literal["<=", ">="]

    @property
    def met(self) -> bool:
        """Whether the measured value meets the target (NaN never does)."""
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return False
        return self.value <= self.target if self.direction == "<=" else self.value >= self.target

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with ``met``."""
        return {**asdict(self), "met": self.met}


def machine_info() -> dict[str, Any]:
    """Where the figures were taken: CPU, cores, threads, library versions, load average."""
    import numpy as np
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        info["loadavg_1m"] = os.getloadavg()[0]
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def bench_parser(description: str) -> argparse.ArgumentParser:
    """The common flags: ``--json PATH`` and ``--quick``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON to PATH")
    p.add_argument("--quick", action="store_true", help="a reduced run for smoke tests")
    return p


def parse_overrides(items: list[str], config_cls: type, *, fixed: tuple[str, ...] = (
        "seed", "env_id"), what: str = "PPO") -> dict[str, Any]:
    """``KEY=VALUE`` settings of a config dataclass for tuning runs.

    Values are read as JSON, else as text; JSON lists become tuples. Keys that are not fields
    of ``config_cls``, or are in ``fixed``, are refused with one
    :class:`~mpgym.errors.MpgymError` listing the accepted ones.
    """
    import dataclasses

    from mpgym.errors import MpgymError

    names = {f.name for f in dataclasses.fields(config_cls)} - set(fixed)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in names:
            raise MpgymError(
                f"--set {item!r}: expected KEY=VALUE with KEY a {what} setting other than "
                f"{' and '.join(fixed)}; accepted: {', '.join(sorted(names))}."
            )
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
        if isinstance(out[key], list):
            out[key] = tuple(out[key])
    return out


def format_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Rows as a Markdown table (floats to 4 significant digits)."""
    if not rows:
        return "(no rows)"
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def report(
    name: str,
    rows: list[dict[str, Any]],
    goals: list[Goal],
    json_path: Path | None,
    columns: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Print the table and goals; write the JSON when ``json_path`` is given."""
    print(format_table(rows, columns))
    if goals:
        print()
        print(
            format_table(
                [
                    {
                        "goal": g.name,
                        "value": g.value,
                        "target": f"{g.direction} {g.target}",
                        "met": "yes" if g.met else "NO",
                    }
                    for g in goals
                ]
            )
        )
    result = {
        "benchmark": name,
        "machine": machine_info(),
        "rows": to_jsonable(rows),
        "goals": [g.to_dict() for g in goals],
        **(extra or {}),
    }
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(result, indent=2))
        print(f"\nwrote {json_path}")
    return result


SNAPSHOT_FILES = ("config.json", "checkpoint.safetensors", "replay_buffer.safetensors",
                  "metrics.csv", "progress.json", "best/checkpoint.safetensors")
"""The files of a resumable training run that :func:`snapshot_run` keeps (``best/``: the
policy a run keeps for its best validation check, where it keeps one)."""
SNAPSHOT_MAX_BYTES = 1 << 30
"""Most bytes :func:`restore_run` unpacks from a snapshot (all files together)."""


def snapshot_run(run: Path, dest: Path) -> Path:
    """Pack a resumable run's :data:`SNAPSHOT_FILES` into one xz-compressed tar, atomically.

    A benchmark whose training outlasts one sitting keeps its runs in an ignored folder; this
    copy, committed beside the results, is what lets a fresh clone continue them
    (:func:`restore_run`). Files the run does not have are left out.
    """
    import tarfile

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        with tarfile.open(tmp, "w:xz", preset=6) as tar:
            for name in SNAPSHOT_FILES:
                if (run / name).is_file():
                    tar.add(run / name, arcname=name, recursive=False)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def restore_run(snapshot: Path, run: Path) -> bool:
    """Unpack ``snapshot`` (:func:`snapshot_run`) into ``run`` when ``run`` has no checkpoint.

    Returns whether it did. Every member is checked before anything is written: regular files
    named in :data:`SNAPSHOT_FILES`, each once, at most :data:`SNAPSHOT_MAX_BYTES` in all.

    Raises:
        MpgymError: the snapshot is not such a tar (corrupt, other members, too large).
    """
    import lzma
    import shutil
    import tarfile
    import tempfile

    from mpgym.errors import MpgymError

    if not snapshot.is_file() or (run / "checkpoint.safetensors").exists():
        return False
    try:
        with tarfile.open(snapshot, "r:xz") as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            bad = [m.name for m in members if not m.isfile() or m.name not in SNAPSHOT_FILES]
            total = sum(m.size for m in members)
            if bad or len(set(names)) != len(names) or total > SNAPSHOT_MAX_BYTES:
                raise MpgymError(
                    f"{snapshot}: a run snapshot holds only the regular files "
                    f"{', '.join(SNAPSHOT_FILES)}, each once, {SNAPSHOT_MAX_BYTES} bytes in "
                    f"all; found {names[:8]} ({total} bytes).")
            run.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=run) as tmp:
                tar.extractall(tmp, members=members, filter="data")
                # the checkpoint last: a run that has one was restored whole
                for name in sorted(names, key=lambda n: n == "checkpoint.safetensors"):
                    (run / name).parent.mkdir(exist_ok=True)
                    shutil.move(Path(tmp) / name, run / name)
    except (tarfile.TarError, lzma.LZMAError, EOFError, OSError) as e:
        raise MpgymError(f"{snapshot}: not a readable run snapshot (an xz-compressed tar): "
                         f"{e}") from None
    return True


def _fuzz_restore(path: str) -> None:
    """Fuzzer entry: :func:`restore_run` of ``path`` into a temporary run folder."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        restore_run(Path(path), Path(tmp) / "run")
