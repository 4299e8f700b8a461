"""Mutation fuzzing of file loaders, each case run in a subprocess that may crash safely.

A loader a user can point at a file must, on any input, either return or raise
:class:`~mpgym.errors.MpgymError` with a message: never crash the interpreter (a signal), hang,
raise another exception type, or leave a file behind. :func:`fuzz_loader` checks exactly that.
It starts one worker process per loader; the worker builds ``cases`` inputs by mutating valid
seed files (bit flips, interesting bytes, truncation, appended junk, deleted or repeated chunks,
numbers in text replaced by huge, negative or non-finite ones, binary integers overwritten with
huge values), writes each into a fresh directory, calls the loader on it and reports the outcome
on stdout. The parent watches: a worker that dies by a signal or stops answering is a failure,
and the offending input is kept on disk to reproduce it.

Example:
    >>> report = fuzz_loader("bodies.io:load", {"m.pkl": data}, cases=300)  # doctest: +SKIP
    >>> report.assert_ok()  # doctest: +SKIP

The case count scales with the ``MPGYM_FUZZ_SCALE`` environment variable (``make test-all``
sets 10), see :func:`fuzz_cases`.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Replacements for numbers found in text formats (PLY/OBJ headers, JSON, OFF counts).
_TEXT_NUMBERS = (b"0", b"-1", b"-100000", b"2147483648", b"99999999999999999999", b"1e308",
                 b"nan", b"inf", b"-inf", b"NaN", b"", b"3.5", b"1e-320")
# Replacements for binary integers (header lengths, counts, offsets).
_INT_VALUES = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
               2**62, 2**63 - 1, 2**64 - 1)


def fuzz_cases(default: int) -> int:
    """``default`` times ``MPGYM_FUZZ_SCALE`` (1 in ``make test``, 10 in ``make test-all``)."""
    try:
        scale = float(os.environ.get("MPGYM_FUZZ_SCALE", "1"))
    except ValueError:
        scale = 1.0
    return max(1, int(default * scale))


def mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One random mutation of ``data``: ``(description, mutated bytes)``."""
    n = len(data)
    op = rng.integers(9) if n else 4
    buf = bytearray(data)
    if op == 0:  # flip 1-8 random bits
        k = int(rng.integers(1, 9))
        for pos in rng.integers(0, n, size=k):
            buf[int(pos)] ^= 1 << int(rng.integers(8))
        return f"flip {k} bits", bytes(buf)
    if op == 1:  # set bytes to interesting values
        pos = int(rng.integers(n))
        val = int(rng.choice([0, 0xFF, 0x7F, 0x80, 0x20, 0x0A]))
        span = int(rng.integers(1, 9))
        buf[pos:pos + span] = bytes([val]) * len(buf[pos:pos + span])
        return f"set {span} bytes at {pos} to {val:#x}", bytes(buf)
    if op == 2:  # truncate
        cut = int(rng.integers(0, n))
        return f"truncate to {cut} of {n} bytes", bytes(buf[:cut])
    if op == 3:  # append junk
        extra = rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        return f"append {len(extra)} random bytes", bytes(buf) + extra
    if op == 4:  # empty file or pure junk
        if rng.random() < 0.5:
            return "empty file", b""
        junk = rng.integers(0, 256, size=int(rng.integers(1, 512)), dtype=np.uint8).tobytes()
        return f"{len(junk)} random bytes", junk
    if op == 5:  # delete or repeat a chunk
        a = int(rng.integers(n))
        b = min(n, a + int(rng.integers(1, max(2, n // 4))))
        if rng.random() < 0.5:
            return f"delete bytes {a}:{b}", bytes(buf[:a] + buf[b:])
        return f"repeat bytes {a}:{b}", bytes(buf[:b] + buf[a:b] + buf[b:])
    if op == 6:  # overwrite a little-endian integer with a huge or boundary value
        width = int(rng.choice([1, 2, 4, 8]))
        pos = int(rng.integers(0, max(1, n - width + 1)))
        value = int(rng.choice(_INT_VALUES)) & ((1 << (8 * width)) - 1)
        buf[pos:pos + width] = value.to_bytes(width, "little")[: len(buf[pos:pos + width])]
        return f"int{8 * width} at {pos} := {value}", bytes(buf)
    # op 7, 8: replace a number in text with a hostile one (falls back to a bit flip)
    spans = _digit_runs(data)
    if not spans:
        pos = int(rng.integers(n))
        buf[pos] ^= 1 << int(rng.integers(8))
        return f"flip a bit at {pos}", bytes(buf)
    a, b = spans[int(rng.integers(len(spans)))]
    new = _TEXT_NUMBERS[int(rng.integers(len(_TEXT_NUMBERS)))]
    return f"number {data[a:b]!r} at {a} := {new!r}", bytes(buf[:a]) + new + bytes(buf[b:])


def _digit_runs(data: bytes, limit: int = 4096) -> list[tuple[int, int]]:
    """Spans of ASCII numbers (digits with an optional sign and point) in the first bytes."""
    spans, i, head = [], 0, data[:limit]
    while i < len(head):
        if 48 <= head[i] <= 57:
            j = i
            while j < len(head) and (48 <= head[j] <= 57 or head[j] in b".eE"):
                j += 1
            start = i - 1 if i > 0 and head[i - 1] == 45 else i  # a leading '-'
            spans.append((start, j))
            i = j
        else:
            i += 1
    return spans


def generate_cases(seeds: Mapping[str, bytes], cases: int, seed: int = 0,
                   *, mutable: tuple[str, ...] | None = None
                   ) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Inputs for fuzzing: each case mutates one (sometimes two) files of the seed tree.

    Args:
        seeds: relative path -> bytes of a valid input (one file, or a run directory's files).
        cases: how many cases to produce.
        seed: RNG seed; the same seed gives the same cases.
        mutable: the files that may be mutated (default: all).

    Yields:
        ``(description, files)`` with ``files`` the whole tree for that case.
    """
    rng = np.random.default_rng(seed)
    names = list(mutable or seeds)
    for _ in range(cases):
        files = dict(seeds)
        parts = []
        for _ in range(1 if rng.random() < 0.85 else 2):
            name = names[int(rng.integers(len(names)))]
            desc, files[name] = mutate(files[name], rng)
            parts.append(f"{name}: {desc}")
        yield "; ".join(parts), files


@dataclass
class FuzzReport:
    """What :func:`fuzz_loader` found."""

    target: str
    cases: int = 0
    ok: int = 0
    refused: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def assert_ok(self) -> None:
        """Raise ``AssertionError`` listing the failures, if any."""
        if self.failures:
            shown = "\n".join(self.failures[:10])
            more = f"\n... and {len(self.failures) - 10} more" if len(self.failures) > 10 else ""
            raise AssertionError(
                f"fuzzing {self.target}: {len(self.failures)} of {self.cases} cases failed:\n"
                f"{shown}{more}")


def fuzz_loader(target: str, seeds: Mapping[str, bytes], *, cases: int, args: tuple = (),
                entry: str | None = None,
                mutable: tuple[str, ...] | None = None, seed: int = 0,
                case_timeout: float = 30.0, memory_limit_gb: float = 6.0,
                keep_dir: str | Path | None = None) -> FuzzReport:
    """Fuzz ``target`` (``"module:function"``, called as ``function(*args, path)``) in a subprocess.

    Args:
        target: the loader, importable in a fresh interpreter.
        args: JSON-serialisable arguments passed before the path, as
            ``function(*args, path)`` (``args=("dqn",)``: one entry point for several kinds).
        seeds: relative path -> bytes of valid input files (the tree each case starts from).
        cases: number of mutated inputs.
        entry: the path passed to the loader, relative to the case directory (default: the
            only seed file; ``"."`` passes the directory itself).
        mutable: the seed files that may be mutated (default: all).
        seed: RNG seed for the mutations.
        case_timeout: seconds one case may take before it counts as a hang.
        memory_limit_gb: address-space limit of the worker, so a hostile size turns into a
            ``MemoryError`` (which the loader must turn into ``MpgymError``) instead of
            exhausting the machine.
        keep_dir: where a crashing or hanging input is written for reproduction (default: a
            temporary directory that is kept).

    Returns:
        A :class:`FuzzReport`; call ``.assert_ok()`` in a test.
    """
    if entry is None:
        if len(seeds) != 1:
            raise ValueError("entry= is needed when the seed tree has several files")
        entry = next(iter(seeds))
    report = FuzzReport(target=target)
    start = time.perf_counter()
    spec = {"target": target, "args": list(args),
            "seeds": {k: base64.b64encode(v).decode() for k, v in seeds.items()},
            "cases": cases, "entry": entry, "mutable": list(mutable) if mutable else None,
            "seed": seed, "memory_limit_gb": memory_limit_gb}
    first = 0
    while first < cases:  # restart after a crash so one bad case does not hide the others
        spec["first"] = first
        first = _run_worker(spec, report, case_timeout, keep_dir)
    report.seconds = time.perf_counter() - start
    return report


def _run_worker(spec: dict, report: FuzzReport, case_timeout: float,
                keep_dir: str | Path | None) -> int:
    """Run cases from ``spec["first"]``; return the index to continue from (``cases`` = done)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
        spec_path = f.name
    env = dict(os.environ, PYTHONFAULTHANDLER="0", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "mpgym.fuzz", spec_path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    current, deadline, desc = spec["first"], None, ""
    try:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        startup_deadline = time.monotonic() + 120.0
        while True:
            limit = deadline if deadline is not None else startup_deadline
            if not sel.select(timeout=max(0.0, limit - time.monotonic())):
                proc.kill()
                proc.wait()
                where = _keep(spec, current, keep_dir)
                report.cases += 1
                report.failures.append(f"case {current} ({desc}): hang over {case_timeout:.0f} s"
                                       f"; input kept in {where}")
                return current + 1
            line = proc.stdout.readline()
            if not line:  # worker exited
                rc = proc.wait()
                if rc == 0:
                    return spec["cases"]
                err = proc.stderr.read()[-2000:]
                if deadline is None:  # died before any case: a setup failure, not a finding
                    raise RuntimeError(f"fuzz worker for {spec['target']} failed to start "
                                       f"(exit {rc}):\n{err}")
                where = _keep(spec, current, keep_dir)
                report.cases += 1
                what = f"killed by signal {-rc}" if rc < 0 else f"exited with {rc}"
                report.failures.append(f"case {current} ({desc}): {what}; input kept in {where}"
                                       f"\n{err}")
                return current + 1
            msg = json.loads(line)
            if msg["event"] == "start":
                current, desc = msg["case"], msg["desc"]
                deadline = time.monotonic() + case_timeout
            else:
                report.cases += 1
                deadline = time.monotonic() + case_timeout
                if msg["event"] == "ok":
                    report.ok += 1
                elif msg["event"] == "refused":
                    report.refused += 1
                else:
                    report.failures.append(f"case {current} ({desc}): {msg['detail']}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.unlink(spec_path)


def _keep(spec: dict, case: int, keep_dir: str | Path | None) -> Path:
    """Write the input of ``case`` to disk for reproduction; return its directory."""
    seeds = {k: base64.b64decode(v) for k, v in spec["seeds"].items()}
    for i, (_, files) in enumerate(generate_cases(seeds, case + 1, spec["seed"],
                                                  mutable=spec["mutable"])):
        if i == case:
            root = Path(keep_dir or tempfile.mkdtemp(prefix="mpgym-fuzz-"))
            out = root / f"case-{case}"
            out.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                (out / name).write_bytes(data)
            return out
    return Path("?")


def _worker(spec_path: str) -> None:
    """The subprocess: run the cases of a spec file, one JSON line per event on stdout."""
    import resource
    import traceback
    import warnings

    from mpgym.errors import MpgymError

    warnings.simplefilter("ignore")
    spec = json.loads(Path(spec_path).read_text())
    limit = int(spec["memory_limit_gb"] * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    module, func = spec["target"].split(":")
    loader = getattr(importlib.import_module(module), func)
    seeds = {k: base64.b64decode(v) for k, v in spec["seeds"].items()}
    out = sys.stdout

    def emit(**msg: object) -> None:
        out.write(json.dumps(msg) + "\n")
        out.flush()

    cases = generate_cases(seeds, spec["cases"], spec["seed"], mutable=spec["mutable"])
    with tempfile.TemporaryDirectory(prefix="mpgym-fuzz-") as tmp:
        for i, (desc, files) in enumerate(cases):
            if i < spec["first"]:
                continue
            case_dir = Path(tmp) / f"case{i}"
            for name, data in files.items():
                (case_dir / name).parent.mkdir(parents=True, exist_ok=True)
                (case_dir / name).write_bytes(data)
            before = sorted(p.relative_to(case_dir) for p in case_dir.rglob("*"))
            emit(event="start", case=i, desc=desc)
            try:
                loader(*spec["args"], str(case_dir / spec["entry"]))
                event, detail = "ok", ""
            except MpgymError as exc:
                event, detail = "refused", ""
                if not str(exc).strip():
                    event, detail = "error", "MpgymError with an empty message"
            except BaseException as exc:  # noqa: BLE001 -- any other type is the finding
                tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
                event, detail = "error", f"{type(exc).__name__}: {exc}\n" + "".join(tb[-4:])
            after = sorted(p.relative_to(case_dir) for p in case_dir.rglob("*"))
            if after != before and event != "error":
                new = sorted(set(map(str, after)) - set(map(str, before)))
                event, detail = "error", f"left files behind: {new[:5]}"
            emit(event=event, detail=detail[-3000:])
            shutil.rmtree(case_dir, ignore_errors=True)


if __name__ == "__main__":
    _worker(sys.argv[1])
