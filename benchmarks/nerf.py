"""NeRF benchmark: hash-grid throughput vs a memory-bound floor; hash vs vanilla PSNR over time.

Part ``hashgrid`` -- hash encoding (L 16, F 2, T 2^19, N_min 16, N_max 2048) forward + backward on
N random points, three implementations side by side: the naive PyTorch reference (autograd through
per-level gathers, ``neural3d.nerf._reference``), the batched PyTorch custom-autograd path, and
the numba kernel. The floor is the bytes forward + backward must move (per point and level:
read 8 corners x F floats, write F outputs, read F output grads, read-modify-write 8 x F table
grads; plus the point itself) divided by the bandwidth of a large ``torch`` copy measured in the
same run. The floor counts 8 bytes per corner row (``F = 2`` floats), not the 64-byte cache line a
random row read pulls in; at 65,536 points that is no easier than counting lines: a hashed level
has ``T * F * 4`` = 4 MB = 65,536 lines, each point reads 4-8 of them (x-neighbours often share
one), so nearly every line is touched, and streaming each level's table in and its gradient out
once (8 MB per level) is less traffic than the 208 bytes x N = 13.6 MB per level the floor
charges. It is a floor for a kernel that keeps one level's table cache-resident (which the numba
kernel does by running level by level), not for one that misses on every corner (up to 8 x 3 x
64 bytes per point and level: read, and read-modify-write of the gradient). Nor does it charge
the zeroing of the whole 49 MB gradient that a dense table gradient needs. The goal uses
wall time; the table also gives the process CPU time (all threads), which a loaded machine
inflates much less than wall time.

Parts ``hash`` and ``vanilla`` -- the built-in ``tabletop`` scene at 128x128 (100 train / 16 test
views): each preset, unchanged, trains for 600 s of optimisation time (30 s with ``--quick``).
Evaluation and snapshots are off the clock; one step of a throwaway trainer first loads the
compiled kernels; the trainer's own final one-view check is skipped. While a preset trains, its
weights and occupancy grid are copied at the first step that ends at or after each time of a
grid (``HASH_GRID``: every 2 s to 10 s, 5 s to 30 s, 10 s to 120 s, 30 s to 300 s, 60 s to
600 s; ``VANILLA_GRID``: 60, 120, 300, 600 s) and written to ``--snapshots`` after training;
each snapshot is then rendered on all 16 test views (PSNR and SSIM, white background), the
curve points (600, 120, 60, 300 s) first, the JSON rewritten after every view so that
``--stage eval`` resumes an interrupted evaluation. The curve is that of one 600 s run, so its
120 s point has the learning rate of a 600 s schedule (the drops come at 300, 450 and 540 s).
Each snapshot also records the process CPU seconds since training began, a figure a loaded
machine inflates much less than wall time. Training holds the machine-wide lock
``--timing-lock`` (the same lock as ``flock /tmp/mpgym-timing.lock ...``) with ``uptime`` read
before and after; evaluation runs after the lock is released. Cost of the evaluation on one
thread: vanilla's 8x256 MLP with 32 + 64 samples per ray takes about 30 s per 128x128 view on an
idle core (about 4 minutes at load 9 on 2 cores), so each vanilla grid point costs 8 minutes
(idle) to an hour (loaded) for 16 views; a trained hash snapshot a few seconds per view.

Goals: ``hash_psnr_120s`` >= 30 and ``hash_psnr_600s`` >= 32 dB on all 16 test views;
``hash_vs_vanilla_time_ratio`` <= 0.2: the training time of the first hash snapshot whose
16-view PSNR reaches vanilla's final (600 s) 16-view PSNR, over vanilla's training time -- read
off the grid, so an upper bound within one grid step (the linear interpolation between the
bracketing snapshots is reported beside it). A snapshot not yet evaluated on all 16 views
counts for no goal.

    python benchmarks/nerf.py --json runs/bench/nerf.json [--quick]     # every part, one process
    python benchmarks/nerf.py --parts hashgrid --threads 2 --json ...  # the kernel (~1 minute)
    python benchmarks/nerf.py --part hash --json benchmarks/results/nerf-hash.json
    python benchmarks/nerf.py --part vanilla --stage train --json runs/bench/nerf-vanilla.json
    python benchmarks/nerf.py --part vanilla --stage eval --eval-points 600 --json (same file)
    python benchmarks/nerf.py --merge benchmarks/results/nerf-hash.json
        benchmarks/results/nerf-vanilla.json --json benchmarks/results/nerf-train.json
        (one command: goals and table, and the curves as nerf-train.png beside the JSON)

Threads: ``--threads 1`` by default (torch, numba and BLAS), for every part.
"""


from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import subprocess
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from mpgym.bench import Goal, bench_parser, machine_info, report
from mpgym.checkpoint import atomic_write_text, to_jsonable
from mpgym.errors import MpgymError, check_positive

log = logging.getLogger("nerf-bench")


def _time(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after a warm-up call."""
    return _time_cpu(fn, repeats)[0]


def _time_cpu(fn, repeats: int) -> tuple[float, float]:
    """Best wall time and best process CPU time (all threads) of ``repeats`` calls."""
    fn()  # warm-up (compilation, allocation)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu


def bandwidth_gbs() -> float:
    """Copy bandwidth in GB/s (read + write bytes) of a 256 MB float32 copy."""
    a, b = torch.empty(2**26), torch.empty(2**26)
    a.fill_(1.0)
    t = _time(lambda: b.copy_(a), 3)
    return 2 * a.numel() * 4 / t / 1e9


def floor_bytes_per_point(levels: int, features: int) -> int:
    """Bytes forward + backward must move per point (float32)."""
    per_level = 8 * features * 4 + features * 4 + features * 4 + 2 * 8 * features * 4
    return 3 * 4 + levels * per_level


def hashgrid_rows(n_points: int, quick: bool) -> tuple[list[dict], float]:
    from neural3d.encodings import HashEncoding
    from neural3d.nerf._reference import hash_encode_reference
    from neural3d.nerf.hashgrid import hash_encode

    gen = torch.Generator().manual_seed(0)
    enc = HashEncoding(16, 2, 19, 16, 2048, generator=gen)
    x = torch.rand(n_points, 3, generator=gen)
    g = torch.randn(n_points, 32, generator=gen)
    bw = bandwidth_gbs()
    floor_s = n_points * floor_bytes_per_point(16, 2) / (bw * 1e9)
    impls = {
        "naive torch (autograd gather)": lambda t: hash_encode_reference(x, t, enc.layout),
        "torch custom autograd": lambda t: hash_encode(x, t, enc.layout, backend="torch"),
        "numba kernel": lambda t: hash_encode(x, t, enc.layout, backend="numba"),
    }
    rows, best = [], float("inf")
    for name, f in impls.items():
        table = enc.table

        def run(f=f, table=table):
            table.grad = None
            f(table).backward(g)

        def fwd_only(f=f, table=table):
            with torch.no_grad():
                f(table)

        repeats = 1 if quick or name.startswith("naive") else 5
        t, t_cpu = _time_cpu(run, repeats)
        t_fwd = _time(fwd_only, repeats)
        best = min(best, t)
        rows.append(
            {
                "part": "hashgrid",
                "impl": name,
                "points": n_points,
                "fwd s": t_fwd,
                "fwd+bwd s": t,
                "fwd+bwd CPU s": t_cpu,
                "Mpoints/s": n_points / t / 1e6,
                "x floor": t / floor_s,
            }
        )
    rows.append(
        {
            "part": "hashgrid",
            "impl": f"memory floor ({bw:.1f} GB/s copy)",
            "points": n_points,
            "fwd+bwd s": floor_s,
            "Mpoints/s": n_points / floor_s / 1e6,
            "x floor": 1.0,
        }
    )
    return rows, best / floor_s


HASH_GRID = (2, 4, 6, 8, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120,
             150, 180, 210, 240, 270, 300, 360, 420, 480, 540, 600)
"""Training seconds at which the hash preset is snapshotted (fine early: it learns fast)."""
VANILLA_GRID = (60, 120, 300, 600)
"""Training seconds at which the vanilla preset is snapshotted (each costs ~8 min to evaluate)."""
CURVE_POINTS = (60, 120, 300, 600)
"""Training seconds whose PSNR is reported for both presets."""
TIMING_LOCK = "/tmp/mpgym-timing.lock"
"""Machine-wide lock held while training (timed runs on one machine never overlap)."""
GRIDS = {"hash": HASH_GRID, "vanilla": VANILLA_GRID}
TRAIN_PARTS = ("hash", "vanilla")


def ensure_dataset(folder: Path, quick: bool) -> Path:
    from neural3d.data.multiview import RenderDatasetConfig, render_dataset

    if not (folder / "transforms_test.json").exists():
        render_dataset(
            RenderDatasetConfig(out=folder, views=100, val_views=4, test_views=16, resolution=128)
        )
    return folder


def grid_within(grid: tuple[float, ...], seconds: float) -> list[float]:
    """The grid's times below the budget, then the budget itself (sorted, unique)."""
    return sorted({float(t) for t in grid if 0 < t < seconds} | {float(seconds)})


def machine_load() -> dict:
    """``uptime``'s line and the 1/5/15-minute load averages, now."""
    try:
        line = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    except OSError:
        line = ""
    return {"uptime": line.strip(), "loadavg": list(os.getloadavg())}


@contextmanager
def timing_lock(path: str | None):
    """Hold an exclusive ``flock`` on ``path`` (what ``flock PATH cmd`` takes); yields the wait."""
    if not path:
        yield 0.0
        return
    with open(path, "a") as f:
        t0 = time.perf_counter()
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield time.perf_counter() - t0
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _BudgetReached(Exception):
    """Raised by :class:`Snapshots` after the budget's snapshot: skips the trainer's own final
    one-view check (about 4 minutes for vanilla on a loaded machine) while the lock is held."""


class Snapshots:
    """Training callback: copy the state when ``train_seconds`` first reaches each grid time.

    The copy is taken after the first step that ends at or after a grid time, so a snapshot's
    actual ``seconds`` exceed its ``target_s`` by at most one step (both are recorded). The last
    grid time is the budget; once it is taken, training ends (:class:`_BudgetReached`).
    """

    def __init__(self, times: list[float]):
        self.times, self.taken, self.budget = list(times), [], max(times)
        self.cpu0 = time.process_time()  # reset when training starts

    def __call__(self, trainer) -> None:
        targets = []
        while self.times and trainer.train_seconds >= self.times[0]:
            targets.append(self.times.pop(0))
        if targets:
            self._take(trainer, targets)
        if trainer.train_seconds >= self.budget:
            raise _BudgetReached

    def _take(self, trainer, targets: list[float]) -> None:
        state = {k: v.detach().clone() for k, v in trainer.state_dict().items()}
        for t in targets:
            self.taken.append(
                {"target_s": t, "seconds": trainer.train_seconds, "step": trainer.step_count,
                 "cpu_s": time.process_time() - self.cpu0, "state": state}
            )

    def finish(self, trainer) -> None:
        """Training stopped before the last grid time (its step budget): the rest get the end."""
        if self.times:
            self._take(trainer, self.times)
            self.times = []


def write_snapshots(taken: list[dict], folder: Path, stem: str, suffix: str, save,
                    keys: tuple[str, ...] = ()) -> list[dict]:
    """Write each distinct snapshot state once (``save(state, path)``) as
    ``<stem>-step<step><suffix>``; one record per grid time: ``target_s``, ``seconds``,
    ``step``, ``cpu_s``, the extra ``keys`` and ``file`` (grid times that share a step share a
    file)."""
    records, files = [], {}
    for snap in taken:
        key = id(snap["state"])
        if key not in files:
            files[key] = folder / f"{stem}-step{snap['step']:06d}{suffix}"
            save(snap["state"], files[key])
        records.append({k: snap[k] for k in ("target_s", "seconds", "step", "cpu_s", *keys)}
                       | {"file": str(files[key])})
    return records


def train_part(
    name: str, data: Path, *, seconds: float, threads: int, grid: list[float], test_views: int,
    lock: str | None, snapshot_dir: Path,
) -> dict:
    """Train preset ``name`` under the lock, copying its state at the ``grid`` times to disk.

    Returns the part's record: config, steps, training time, the load before and after
    training, ``snapshots`` (``target_s``, ``seconds``, ``step``, ``file``) and an empty
    ``evals`` that :func:`evaluate_part` fills.
    """
    from neural3d.data.multiview import load_split
    from neural3d.nerf.presets import preset
    from neural3d.nerf.trainer import NerfTrainer

    train, test = load_split(data, "train"), load_split(data, "test")
    cfg = preset(name, max_seconds=seconds, threads=threads, eval_every_seconds=seconds,
                 eval_views=1, final_test_views=1)
    # warm-up off the clock: one step of a throwaway trainer loads numba's cached kernels and
    # torch's first-call paths; the measured trainer reseeds, so its run is unchanged by this
    NerfTrainer(cfg, train, test).step()
    trainer = NerfTrainer(cfg, train, test)
    snaps = Snapshots(grid)
    with timing_lock(lock) as waited:
        before = machine_load()
        t0, snaps.cpu0 = time.perf_counter(), time.process_time()
        try:
            trainer.train(progress_bar=False, callback=snaps)
        except _BudgetReached:
            pass
        wall = time.perf_counter() - t0
        after = machine_load()
    snaps.finish(trainer)
    log.info("%s: %d steps in %.1f s of training (%.1f s wall); load %s -> %s", name,
             trainer.step_count, trainer.train_seconds, wall, before["loadavg"][0],
             after["loadavg"][0])
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    records = write_snapshots(snaps.taken, snapshot_dir, name, ".pt", torch.save)
    return {
        "preset": name, "config": asdict(cfg), "threads": threads, "steps": trainer.step_count,
        "train_seconds": trainer.train_seconds, "train_wall_s": wall,
        "train_cpu_s": time.process_time() - snaps.cpu0,
        "test_views": len(test) if test_views <= 0 else min(test_views, len(test)),
        "data": str(data), "lock": lock or None, "lock_wait_s": waited, "load_before": before,
        "load_after": after, "grid_s": grid, "snapshots": records, "evals": {},
    }


def eval_order(part: dict, points: list[float] | None) -> list[dict]:
    """Snapshots to evaluate: the curve points first (600, 120, 60, 300 s), then the rest."""
    snaps = [s for s in part["snapshots"] if points is None or s["target_s"] in points]
    first = {t: i for i, t in enumerate((600.0, 120.0, 60.0, 300.0, part["train_seconds"]))}
    return sorted(snaps, key=lambda s: (first.get(s["target_s"], len(first)), s["target_s"]))


def evaluate_part(part: dict, *, points: list[float] | None, save) -> dict:
    """Render snapshots on the test views, one view at a time; ``save(part)`` after each view.

    ``part["evals"][file]`` holds ``psnr_views`` and ``ssim_views`` (test-view order) and
    ``eval_s``; a rerun continues where the last one stopped.
    """
    from neural3d.data.multiview import load_split
    from neural3d.image_metrics import psnr, ssim
    from neural3d.nerf.presets import config_from_dict
    from neural3d.nerf.trainer import NerfTrainer

    data = Path(part["data"])
    train, test = load_split(data, "train"), load_split(data, "test")
    trainer = NerfTrainer(config_from_dict(part["config"]), train, test)
    n = part["test_views"]
    targets = torch.as_tensor(test.rgb("white")[:n])
    for snap in eval_order(part, points):
        ev = part["evals"].setdefault(snap["file"],
                                      {"psnr_views": [], "ssim_views": [], "eval_s": 0.0})
        if len(ev["psnr_views"]) >= n:
            continue
        trainer.load_state_dict(torch.load(snap["file"], weights_only=True))
        for i in range(len(ev["psnr_views"]), n):
            t0 = time.perf_counter()
            pred = trainer.render_view(test.c2w[i], test.camera(i))["rgb"].clamp(0, 1)
            ev["psnr_views"].append(float(psnr(pred, targets[i])))
            ev["ssim_views"].append(float(ssim(pred, targets[i])))
            ev["eval_s"] += time.perf_counter() - t0
            save(part)
        log.info("%s: %.1f s (step %d): PSNR %.2f dB on %d views (%.0f s)", part["preset"],
                 snap["seconds"], snap["step"], float(np.mean(ev["psnr_views"])), n,
                 ev["eval_s"])
    return part


def curve_of(part: dict, *, complete: bool = True) -> list[dict]:
    """Evaluated snapshots in time order: ``target_s``, ``seconds``, ``step``, ``psnr``,
    ``ssim`` (means over the views done), ``views``, ``eval_s``, ``cpu_s`` (process CPU seconds
    since training began, snapshots' copies included); only those evaluated on every
    test view unless ``complete`` is False."""
    out = []
    for snap in part["snapshots"]:
        ev = part["evals"].get(snap["file"])
        if not ev or not ev["psnr_views"]:
            continue
        full = len(ev["psnr_views"]) >= part["test_views"]
        if full or not complete:
            out.append({**{k: snap[k] for k in ("target_s", "seconds", "step", "cpu_s")},
                        "psnr": float(np.mean(ev["psnr_views"])),
                        "ssim": float(np.mean(ev["ssim_views"])),
                        "views": len(ev["psnr_views"]), "eval_s": ev["eval_s"]})
    return out


def psnr_at(part: dict | None, t: float) -> float | None:
    """16-view PSNR of the snapshot for grid time ``t`` (None: not on the grid or not evaluated
    on every test view)."""
    for point in curve_of(part) if part else []:
        if point["target_s"] == t:
            return point["psnr"]
    return None


def time_to_reach(curve: list[dict], target: float) -> tuple[float | None, float | None]:
    """Training seconds at which ``curve`` first reaches ``target`` PSNR.

    Returns:
        ``(grid, interpolated)``: the first snapshot at or above ``target`` (None if none is),
        and the linear interpolation between it and the snapshot before it (None when the first
        snapshot already reaches it, or none does).
    """
    for i, point in enumerate(curve):
        if point["psnr"] >= target:
            if i == 0:
                return point["seconds"], None
            a = curve[i - 1]
            frac = (target - a["psnr"]) / (point["psnr"] - a["psnr"])
            return point["seconds"], a["seconds"] + frac * (point["seconds"] - a["seconds"])
    return None, None


def part_rows(part: dict) -> list[dict]:
    """A summary row (PSNR at the curve points, final PSNR/SSIM, load) and one row per
    evaluated snapshot (partly evaluated ones show their view count)."""
    curve, last = curve_of(part, complete=False), part["snapshots"][-1]
    final = next((p for p in curve_of(part) if p["target_s"] == last["target_s"]), {})
    rows = [{
        "part": "train", "impl": part["preset"], "threads": part["threads"],
        "steps": part["steps"], "train s": part["train_seconds"],
        "train CPU s": part["train_cpu_s"],
        **{f"PSNR {t}s": psnr_at(part, t) for t in CURVE_POINTS},
        "test PSNR": final.get("psnr"), "test SSIM": final.get("ssim"),
        "test views": part["test_views"], "load before": part["load_before"]["loadavg"][0],
        "load after": part["load_after"]["loadavg"][0],
        "eval s": sum(p["eval_s"] for p in curve),
    }]
    rows += [{"part": "curve", "impl": part["preset"], "grid s": p["target_s"],
              "train s": p["seconds"], "train CPU s": p["cpu_s"], "steps": p["step"],
              "test PSNR": p["psnr"],
              "test SSIM": p["ssim"], "test views": p["views"], "eval s": p["eval_s"]}
             for p in curve]
    return rows


def train_goals(parts: dict[str, dict]) -> tuple[list[Goal], dict]:
    """Goals over the hash and vanilla parts present, and how the time ratio was read."""
    hash_part, vanilla = parts.get("hash"), parts.get("vanilla")
    goals, info = [], {}
    if hash_part is not None:
        goals += [Goal("hash_psnr_120s", psnr_at(hash_part, 120.0), 30.0, ">="),
                  Goal("hash_psnr_600s", psnr_at(hash_part, 600.0), 32.0, ">=")]
    if hash_part is not None and vanilla is not None:
        last = vanilla["snapshots"][-1]["target_s"]
        target = psnr_at(vanilla, last)
        grid_s, interp_s = (None, None) if target is None else time_to_reach(
            curve_of(hash_part), target)
        ratio = None if grid_s is None else grid_s / vanilla["train_seconds"]
        goals.append(Goal("hash_vs_vanilla_time_ratio", ratio, 0.2, "<="))
        hit = next((p for p in curve_of(hash_part) if p["seconds"] == grid_s), None)
        info = {
            "vanilla_final_psnr": target,
            "cpu_ratio_at_grid_crossing": None if hit is None
            else hit["cpu_s"] / vanilla["train_cpu_s"],
            "hash_seconds_to_vanilla_final_psnr": grid_s,
            "hash_seconds_to_vanilla_final_psnr_interpolated": interp_s,
            "time_ratio_interpolated": None if interp_s is None
            else interp_s / vanilla["train_seconds"],
            "time_ratio_method": "first hash snapshot whose 16-view PSNR reaches vanilla's final "
            "16-view PSNR, over vanilla's training seconds (an upper bound within one grid step); "
            "the interpolated value is linear in PSNR between that snapshot and the one before",
        }
    return goals, info


def plot_train_curves(path: Path, parts: dict[str, dict], info: dict) -> Path:
    """PSNR against training seconds and against process CPU seconds (log axes), as a PNG.

    Grid points are marked; the dashed line is vanilla's final PSNR, the dotted one the hash
    snapshot that first reaches it.
    """
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110, sharey=True)
    views = sorted({p["test_views"] for p in parts.values()})
    threads = sorted({p["threads"] for p in parts.values()})
    for ax, key, xlabel in ((axes[0], "seconds", "training seconds (wall, evaluation excluded)"),
                            (axes[1], "cpu_s", "training process CPU seconds")):
        for name, part in parts.items():
            curve = curve_of(part)
            load = f"{part['load_before']['loadavg'][0]:.1f}-{part['load_after']['loadavg'][0]:.1f}"
            ax.plot([p[key] for p in curve], [p["psnr"] for p in curve], marker="o", ms=3.5,
                    lw=1.5, label=f"{name} ({part['steps']} steps, load {load})")
        if info.get("vanilla_final_psnr") is not None:
            ax.axhline(info["vanilla_final_psnr"], ls="--", lw=1, color="gray")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks([t for t in (1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
                       if any(p[key] >= t / 2 for part in parts.values()
                              for p in curve_of(part))])
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, which="both")
    crossing = info.get("hash_seconds_to_vanilla_final_psnr")
    if crossing is not None:
        axes[0].axvline(crossing, ls=":", lw=1, color="gray")
    for t in CURVE_POINTS:
        axes[0].axvline(t, lw=0.5, color="lightgray", zorder=0)
    axes[0].set_ylabel(f"test PSNR (dB, mean of {'/'.join(map(str, views))} views)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"tabletop 128x128, {'/'.join(map(str, threads))} thread(s): test PSNR over "
                 "training; dashed: vanilla's final PSNR", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def load_parts(paths: list[Path]) -> tuple[list[dict], list[Goal], dict[str, dict], dict]:
    """Hashgrid rows/goals, train parts and run facts from earlier ``--json`` files."""
    rows, goals, parts, extra = [], [], {}, {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
            rows += [r for r in data["rows"] if r.get("part") == "hashgrid"]
            goals += [Goal(g["name"], g["value"], g["target"], g["direction"])
                      for g in data["goals"] if g["name"] == "hashgrid_time_vs_floor"]
            extra.update({k: data[k] for k in ("threads", "train_seconds", "hashgrid_load")
                          if k in data})
            for name, part in data.get("train_parts", {}).items():
                if name in parts:
                    raise MpgymError(f"--merge: two files hold the {name} part; give one.")
                part["snapshots"][-1]  # noqa: B018 -- a part without snapshots is refused here
                parts[name] = part
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise MpgymError(f"{path} is not a JSON file of this benchmark ({e!r}); give files "
                             "written by its --json.") from e
    return rows, goals, parts, extra


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked (one clear error before any work)."""
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch/numba/BLAS threads (default 1)")
    p.add_argument("--seconds", type=float, default=None,
                   help="training seconds per preset (default 600; 30 with --quick)")
    p.add_argument("--data", type=Path, default=Path("runs/bench/nerf_tabletop"))
    p.add_argument("--parts", nargs="+", choices=["hashgrid", "train", *TRAIN_PARTS],
                   default=["hashgrid", "train"],
                   help="parts to run (default: all; train = hash vanilla); --part works too")
    p.add_argument("--stage", choices=["all", "train", "eval"], default="all",
                   help="hash/vanilla: train (snapshots to --snapshots, JSON to --json), eval "
                   "(continue evaluating the snapshots of an existing --json, saved view by view)"
                   ", or both (default)")
    p.add_argument("--eval-points", nargs="+", type=float, default=None,
                   help="grid times (s) to evaluate in this call (default: all, curve points "
                   "first)")
    p.add_argument("--snapshots", type=Path, default=Path("runs/bench/nerf-snapshots"),
                   help="folder for the training snapshots")
    p.add_argument("--test-views", type=int, default=None,
                   help="test views per snapshot (default 0: all 16; 2 with --quick)")
    p.add_argument("--timing-lock", default=TIMING_LOCK,
                   help=f"file locked while timing (default {TIMING_LOCK}; '' for none)")
    p.add_argument("--merge", nargs="+", type=Path, default=None,
                   help="combine earlier --json files of single parts into one report")
    args = p.parse_args(argv)
    try:
        check_positive("--threads", args.threads)
        if args.seconds is not None:
            check_positive("--seconds", args.seconds, integer=False)
        if args.test_views is not None and (args.test_views < 0):
            raise MpgymError(f"--test-views must be 0 (all) or more; got {args.test_views}.")
        for path in args.merge or []:
            if not path.is_file():
                raise MpgymError(f"--merge: {path} does not exist; give part JSON files.")
        if args.stage == "eval" and (args.json is None or not args.json.is_file()):
            raise MpgymError("--stage eval continues an existing --json file of a train stage; "
                             f"got {args.json}.")
        if args.stage != "all" and (args.merge or "hashgrid" in args.parts
                                    or args.parts == ["hashgrid", "train"]):
            raise MpgymError("--stage train|eval goes with --part hash or --part vanilla.")
    except MpgymError as e:
        p.error(str(e))
    return args


def report_results(args, rows: list[dict], goals: list[Goal], parts: dict[str, dict],
                   extra: dict, *, quiet: bool = False) -> None:
    """Goals over the train parts, the table, the JSON and (with both presets) the PNG.

    ``quiet``: only rewrite the JSON (after each evaluated view).
    """
    train_goal_list, info = train_goals(parts)
    rows = [*rows, *(r for part in parts.values() for r in part_rows(part))]
    goals = [*train_goal_list, *goals]
    extra = {**extra, **info, "train_parts": parts}
    if quiet:
        if args.json is not None:
            doc = {"benchmark": "nerf", "machine": machine_info(), "rows": to_jsonable(rows),
                   "goals": [g.to_dict() for g in goals], **extra}
            atomic_write_text(args.json, json.dumps(doc, indent=2))
        return
    report("nerf", rows, goals, args.json, columns=COLUMNS, extra=extra)
    if args.json is not None and {"hash", "vanilla"} <= set(parts):
        print(f"wrote {plot_train_curves(args.json.with_suffix('.png'), parts, info)}")


COLUMNS = ["part", "impl", "points", "fwd s", "fwd+bwd s", "fwd+bwd CPU s", "Mpoints/s",
           "x floor", "threads", "grid s", "steps", "train s", "train CPU s",
           *[f"PSNR {t}s" for t in CURVE_POINTS], "test PSNR", "test SSIM", "test views",
           "load before", "load after", "eval s"]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.merge:
        rows, goals, parts, extra = load_parts(args.merge)
        extra["merged_from"] = [str(p) for p in args.merge]
        report_results(args, rows, goals, parts, extra)
        return
    from mpgym.devices import set_threads

    set_threads(args.threads)
    wanted = set(args.parts) | (set(TRAIN_PARTS) if "train" in args.parts else set())
    rows, goals, parts = [], [], {}
    extra: dict = {"threads": args.threads}
    if args.stage == "eval":
        rows, goals, parts, extra = load_parts([args.json])
    if "hashgrid" in wanted:
        with timing_lock(args.timing_lock):
            before = machine_load()
            hrows, ratio_floor = hashgrid_rows(16384 if args.quick else 65536, args.quick)
            extra["hashgrid_load"] = {"before": before, "after": machine_load()}
        rows += hrows
        goals.append(Goal("hashgrid_time_vs_floor", ratio_floor, 10.0, "<="))
    seconds = args.seconds or (30.0 if args.quick else 600.0)
    test_views = args.test_views if args.test_views is not None else (2 if args.quick else 0)
    for name in TRAIN_PARTS:
        if name in wanted and args.stage != "eval":
            parts[name] = train_part(
                name, ensure_dataset(args.data, args.quick), seconds=seconds,
                threads=args.threads, grid=grid_within(GRIDS[name], seconds),
                test_views=test_views, lock=args.timing_lock or None,
                snapshot_dir=args.snapshots)
            extra["train_seconds"] = seconds
            report_results(args, rows, goals, parts, extra, quiet=True)
    for name in TRAIN_PARTS:
        if name in wanted and args.stage != "train":
            if name not in parts:
                raise SystemExit(f"{args.json} holds no {name} part; run its train stage first.")
            evaluate_part(parts[name], points=args.eval_points,
                          save=lambda _: report_results(args, rows, goals, parts, extra,
                                                        quiet=True))
    report_results(args, rows, goals, parts, extra)


if __name__ == "__main__":
    main()
