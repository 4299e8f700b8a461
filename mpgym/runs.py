"""Run directories: ``runs/<kind>/<name>/`` with ``config.json`` and ``metrics.csv``.

Every training loop writes its config once, appends metrics as it goes, and leaves its
pictures, meshes and checkpoint beside them, so a run can be inspected, resumed or loaded.
With ``tensorboard`` on, TensorBoard event files (``events.out.tfevents.*``) lie beside
``metrics.csv`` too (:meth:`RunDir.scalars`; the ``tensorboard`` package is imported only then).
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import logging
import math
import numbers
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mpgym.checkpoint import atomic_write_text, to_jsonable

log = logging.getLogger(__name__)


class MetricsLogger:
    """Append rows to a CSV file; new columns extend the header (the file is rewritten once)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.fields: list[str] = []
        self.rows: list[dict[str, Any]] = []
        if self.path.exists() and self.path.stat().st_size > 0:  # resume: keep what is there
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or [])
                self.rows = list(reader)

    def log(self, **metrics: Any) -> None:
        """Append one row; values are written as given (numbers, strings)."""
        metrics = {k: to_jsonable(v) for k, v in metrics.items()}
        self.rows.append(metrics)
        new = [k for k in metrics if k not in self.fields]
        if new:
            self.fields.extend(new)
            self._rewrite()
        else:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.fields).writerow(metrics)

    def _rewrite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields)
            w.writeheader()
            w.writerows(self.rows)

    def column(self, name: str) -> list[float]:
        """All logged values of one column, as floats (missing entries skipped)."""
        return [float(r[name]) for r in self.rows if r.get(name) not in (None, "")]


class RunDir:
    """A run's directory: ``<root>/<kind>/<name>/``.

    ``RunDir(path, tensorboard=True)`` also writes TensorBoard scalars (:meth:`scalars`);
    it raises :class:`~mpgym.errors.MpgymError` when the ``tensorboard`` package is missing.

    Example:
        >>> run = RunDir.create("tabular", "q-learning-FrozenLake-v1")  # doctest: +SKIP
        >>> run.write_config(cfg); run.metrics.log(episode=1, ret=0.0)  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, tensorboard: bool = False):
        if tensorboard:
            require_tensorboard()  # before anything is made
        self.path = Path(path)
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self._metrics: MetricsLogger | None = None
        self._writer: Any = None
        self.tensorboard = tensorboard

    @property
    def tensorboard(self) -> bool:
        """Also write TensorBoard event files into the run directory (:meth:`scalars`)."""
        return self._tensorboard

    @tensorboard.setter
    def tensorboard(self, on: bool) -> None:
        if on:
            require_tensorboard()
        self._tensorboard = bool(on)

    @classmethod
    def create(cls, kind: str, name: str | None = None, root: str | Path = "runs") -> RunDir:
        """Make ``root/kind/name`` (``name`` defaults to a timestamp)."""
        name = name or time.strftime("%Y%m%d-%H%M%S")
        return cls(Path(root) / kind / name)

    def file(self, name: str) -> Path:
        """Path of a file inside the run directory."""
        return self.path / name

    @property
    def metrics(self) -> MetricsLogger:
        """The run's ``metrics.csv`` logger."""
        if self._metrics is None:
            self._metrics = MetricsLogger(self.path / "metrics.csv")
        return self._metrics

    def write_config(self, config: Any, **extra: Any) -> Path:
        """Write ``config.json`` (a dataclass or dict, plus ``extra`` keys such as ``kind``)."""
        data = to_jsonable(config)
        if not isinstance(data, dict):
            data = {"config": data}
        data.update(to_jsonable(extra))
        return atomic_write_text(
            self.path / "config.json", json.dumps(data, indent=2, sort_keys=True)
        )

    def read_config(self) -> dict[str, Any]:
        """Read ``config.json``; a clear error when the directory is not a run."""
        try:
            return read_run_config(self.path)
        except Exception:
            if self._created and not any(self.path.iterdir()):
                self.path.rmdir()  # do not leave behind the directory a mistyped path made
            raise

    def scalars(self, prefix: str, step: int, values: dict[str, Any]) -> None:
        """Write ``values`` as TensorBoard scalars ``<prefix>/<name>`` at ``step``.

        Does nothing unless :attr:`tensorboard` is on. Values that are not finite numbers
        (None, strings, NaN) are left out. The event files (``events.out.tfevents.*``) lie
        beside ``metrics.csv``; ``tensorboard --logdir runs`` shows every run.
        """
        if not self._tensorboard:
            return
        writer = self._writer or self._open_writer()
        if writer is None:
            return
        for name, value in values.items():
            if isinstance(value, numbers.Real) and math.isfinite(value):
                writer.add_scalar(f"{prefix}/{name}", float(value), step)

    def _open_writer(self) -> Any:
        """The ``SummaryWriter`` of the run (None once the directory is gone: never remade)."""
        if not self.path.is_dir():
            return None
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(self.path))
        return self._writer

    def flush(self) -> None:
        """Write pending TensorBoard events to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the TensorBoard writer (a later scalar opens a new event file)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_json(self, name: str, data: Any) -> Path:
        """Write any JSON file (``results.json``...) into the run, atomically."""
        return atomic_write_text(self.path / name, json.dumps(to_jsonable(data), indent=2))

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


def require_tensorboard() -> None:
    """Raise :class:`MpgymError` unless the ``tensorboard`` package can be imported."""
    if importlib.util.find_spec("tensorboard") is None:
        from mpgym.errors import MpgymError

        raise MpgymError("TensorBoard logging (tensorboard=True, --tensorboard) needs the "
                         "tensorboard package; install it with: pip install tensorboard")


MAX_CONFIG_BYTES = 16 * 2**20


def read_run_config(path: str | Path) -> dict[str, Any]:
    """Read a run directory's ``config.json`` (or the file itself) as a JSON object.

    Raises:
        MpgymError: no such file, too large, not UTF-8 JSON, or not a JSON object.
    """
    from mpgym.errors import MpgymError

    path = Path(path)
    p = path / "config.json" if path.is_dir() or not path.suffix else path
    if not p.is_file():
        raise MpgymError(f"{p.parent} is not an mpgym run directory (no config.json).")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise MpgymError(f"{p} is {p.stat().st_size} bytes; a run's config.json is at most "
                         f"{MAX_CONFIG_BYTES} bytes.")
    try:
        data = json.loads(p.read_bytes())
    except (ValueError, RecursionError) as exc:  # JSON and UTF-8 errors are ValueErrors
        raise MpgymError(f"{p} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise MpgymError(f"{p} holds a JSON {type(data).__name__}; expected an object.")
    return data


def run_kind(path: str | Path) -> str | None:
    """The ``kind`` recorded in a run directory's ``config.json`` (``None`` if unreadable)."""
    try:
        data = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("kind")
    return kind if isinstance(kind, str) else None


def check_run_target(path: str | Path, *, kind: str, overwrite: bool = False) -> Path:
    """Refuse, before any work, a run directory that would destroy something else.

    A missing or empty directory is fine, and so is an earlier run of the same ``kind`` (it is
    replaced when the new run completes). A run of another kind, or a non-empty directory that
    is not a run at all, is refused unless ``overwrite`` is set.

    Raises:
        MpgymError: the target is a file, or holds something that ``overwrite`` would replace.
    """
    from mpgym.errors import MpgymError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MpgymError(f"run directory {path} is an existing file; choose a directory path.")
    if not path.is_dir() or not any(path.iterdir()) or overwrite:
        return path
    found = run_kind(path)
    if found == kind:
        return path
    what = f"a {found!r} run" if found else "a directory that is not an mpgym run"
    raise MpgymError(f"{path} already holds {what}; choose another output directory or pass "
                     f"--overwrite to replace it with this {kind!r} run.")


@contextlib.contextmanager
def staged_run(path: str | Path, *, kind: str, overwrite: bool = False,
               tensorboard: bool = False) -> Iterator[RunDir]:
    """Build a run in a hidden sibling directory and move it into place when it completes.

    The target is checked first (:func:`check_run_target`). The block writes into a temporary
    ``.<name>.partial-*`` directory beside ``path``. On success, and on Ctrl-C (so an interrupted
    run's checkpoint is kept), it replaces ``path``; on any other error it is deleted, so a
    refused or failed run leaves nothing behind. ``tensorboard`` is the yielded
    :class:`RunDir`'s; its writer is closed before the move.

    Example:
        >>> with staged_run("runs/rl/dqn-CartPole-v1-s0", kind="dqn") as run:  # doctest: +SKIP
        ...     run.write_config(cfg, kind="dqn")
    """
    path = check_run_target(path, kind=kind, overwrite=overwrite)
    if tensorboard:
        require_tensorboard()
    made = [p for p in reversed(path.parents) if not p.exists()]  # outermost first
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    run = RunDir(tmp, tensorboard=tensorboard)
    try:
        try:
            yield run
        finally:
            run.close()
    except KeyboardInterrupt:
        _move_into_place(tmp, path)
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in reversed(made):  # innermost first; only the ones this run made
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
    _move_into_place(tmp, path)


def _move_into_place(tmp: Path, path: Path) -> None:
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        os.replace(path, old / path.name)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM raises KeyboardInterrupt, so it saves and stops as Ctrl-C does.

    A job scheduler or a closing terminal ends a process with SIGTERM, which by default kills
    it without running any ``except``/``finally``; with this, :func:`save_on_interrupt` and
    :func:`staged_run` keep the run. Only in the main thread (elsewhere a no-op); the previous
    handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def save_on_interrupt(save: Callable[[], Any], what: str = "run") -> Iterator[None]:
    """On Ctrl-C inside the block, call ``save()`` and re-raise, so the run stays loadable.

    Example:
        >>> with save_on_interrupt(lambda: agent.save(path)):  # doctest: +SKIP
        ...     agent.learn(100_000)
    """
    try:
        yield
    except KeyboardInterrupt:
        log.info("saving %s before exiting", what)  # the CLI itself prints "interrupted."
        save()
        raise
