"""Sweeps on Ray Tune against the same trials one after another: wall time and overheads.

The sweep is ``mpgym sweep train ppo --env CartPole-v1 --seeds 0-7 --grid lr=1e-3,3e-4
--total-timesteps 100000`` (16 trials; ``--quick``: 2,048 steps each): first the 16 trials one
after another in this one process (:func:`mpgym.cli.sweep.run_trial`, one torch thread, the same
code a Tune trial runs), then on a local Ray instance of ``--num-cpus`` CPUs (default 2), one
trial per CPU. Both hold the machine-wide timing lock (``/tmp/mpgym-timing.lock``, what
``flock /tmp/mpgym-timing.lock ...`` takes) and record the load average before and after.

Figures per row: ``wall_s`` (all 16 trials; for Ray from ``ray.init`` to the end of
``ray.shutdown``), ``train_s_mean`` (a trial's training and evaluation, as
:func:`~mpgym.cli.sweep.run_trial` times it), and for Ray ``ray_start_s`` (``ray.init``),
``ray_stop_s`` (``ray.shutdown``) and ``per_trial_overhead_s``: the CPU-seconds the Tune run
spent per trial beyond training it, ``(cpus * tune_s - sum of train_s) / trials`` with
``tune_s`` the wall time of ``Tuner.fit`` (workers starting and importing torch, scheduling,
reporting). Goal ``sweep_wall_ratio_vs_serial`` (Ray's ``wall_s`` / the serial one) <= 0.6.
The serial runs go to a temporary folder; the Ray run leaves its runs, ``sweep.md``,
``sweep.json`` and ``curves.png`` in ``--out`` (default ``runs/bench/sweep``). PPO's budget is
its CartPole default (1e5 steps), long enough that Ray's fixed costs (start, workers importing
torch) are a small part of the run.

    python benchmarks/sweep.py --json benchmarks/results/sweep.json
    python benchmarks/sweep.py --quick  # smoke test, under runs/bench/
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

_HERE = os.path.dirname(os.path.abspath(__file__))
# this folder holds bodies.py, a benchmark that would shadow the bodies package
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
# the NeRF benchmark's timing lock and load readings are reused
_spec = importlib.util.spec_from_file_location("nerf_bench", os.path.join(_HERE, "nerf.py"))
nerf_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nerf_bench)

from mpgym.bench import Goal, bench_parser, report  # noqa: E402
from mpgym.errors import MpgymError, check_positive  # noqa: E402

NAME = "sweep"
ALGO, ENV_ID = "ppo", "CartPole-v1"
SEEDS, GRID = "0-7", "lr=1e-3,3e-4"
STEPS, QUICK_STEPS = 100_000, 2_048
EVAL_EPISODES = 10


def sweep_argv(out: Path, steps: int) -> list[str]:
    """The arguments after ``mpgym sweep train`` of the benchmark's 16 trials."""
    return [ALGO, "--env", ENV_ID, "--seeds", SEEDS, "--grid", GRID, "--total-timesteps",
            str(steps), "--eval-episodes", str(EVAL_EPISODES), "--overwrite", "--out", str(out)]


def serial_part(out: Path, steps: int, lock: str | None) -> dict:
    """The 16 trials one after another in this process."""
    from mpgym.cli.sweep import plan_sweep, run_trial
    from mpgym.devices import set_threads

    set_threads(1)
    plan, _ = plan_sweep(sweep_argv(out, steps))
    before = nerf_bench.machine_load()
    with nerf_bench.timing_lock(lock) as waited:
        t0 = time.perf_counter()
        reports = [run_trial(argv) for argv in plan.argvs]
        wall = time.perf_counter() - t0
    return {"run": "serial", "trials": len(reports), "cpus": 1, "wall_s": wall,
            "train_s_mean": sum(r["train_s"] for r in reports) / len(reports),
            "final_return_mean": sum(r["final_return"] for r in reports) / len(reports),
            "lock_wait_s": waited, "load_before": before["loadavg"][0],
            "load_after": nerf_bench.machine_load()["loadavg"][0]}


def ray_part(out: Path, steps: int, cpus: int, lock: str | None) -> dict:
    """The 16 trials on a local Ray instance of ``cpus`` CPUs, Ray's start and stop included."""
    from mpgym.cli.sweep import plan_sweep, run_on_ray, start_ray, write_summary

    plan, _ = plan_sweep(sweep_argv(out, steps))
    before = nerf_bench.machine_load()
    with nerf_bench.timing_lock(lock) as waited:
        t0 = time.perf_counter()
        ray, _ = start_ray(num_cpus=cpus)
        t1 = time.perf_counter()
        try:
            results = run_on_ray(plan, verbose=0)
        finally:
            t2 = time.perf_counter()
            ray.shutdown()
        t3 = time.perf_counter()
    data = write_summary(plan, results)
    failed = [r for r in results if r.error is not None]
    if failed:
        raise MpgymError(f"{len(failed)} Ray trials failed, e.g.: {failed[0].error}")
    train_s = [float(t["train_s"]) for t in _tune_train_seconds(plan.out)]
    overhead = (cpus * (t2 - t1) - sum(train_s)) / len(results)
    return {"run": "ray", "trials": len(results), "cpus": cpus, "wall_s": t3 - t0,
            "ray_start_s": t1 - t0, "ray_stop_s": t3 - t2, "per_trial_overhead_s": overhead,
            "train_s_mean": sum(train_s) / max(len(train_s), 1),
            "final_return_mean": sum(r["mean"] * r["seeds"] for r in data["rows"]) / len(results),
            "lock_wait_s": waited, "load_before": before["loadavg"][0],
            "load_after": nerf_bench.machine_load()["loadavg"][0]}


def _tune_train_seconds(out: Path) -> list[dict]:
    """The last report (``result.json``'s last line) of every trial of the newest Tune run."""
    import json

    runs = sorted((out / "tune").glob("sweep-*"), key=lambda p: p.stat().st_mtime)
    found = []
    for f in sorted(runs[-1].glob("trial-*/result.json")):
        lines = f.read_text().strip().splitlines()
        if lines:
            found.append(json.loads(lines[-1]))
    return found


def parse_args(argv: list[str] | None = None):
    """The command line, checked before any work."""
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the Ray run (default 2)")
    p.add_argument("--out", type=Path, default=None,
                   help="sweep directory (default: runs/bench/sweep[-quick])")
    p.add_argument("--timing-lock", default=nerf_bench.TIMING_LOCK,
                   help=f"file locked while timing (default {nerf_bench.TIMING_LOCK}; '' for none)")
    args = p.parse_args(argv)
    check_positive("--num-cpus", args.num_cpus)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    steps = QUICK_STEPS if args.quick else STEPS
    out = (args.out or Path("runs/bench") / ("sweep-quick" if args.quick else "sweep")).resolve()
    lock = args.timing_lock or None
    with tempfile.TemporaryDirectory(prefix="mpgym-sweep-serial-") as tmp:
        serial = serial_part(Path(tmp), steps, lock)
    ray = ray_part(out, steps, args.num_cpus, lock)
    goals = [Goal("sweep_wall_ratio_vs_serial", ray["wall_s"] / serial["wall_s"], 0.6, "<=")]
    report(NAME, [serial, ray], goals, args.json,
           extra={"algo": ALGO, "env_id": ENV_ID, "seeds": SEEDS, "grid": GRID,
                  "total_timesteps": steps, "quick": args.quick})


if __name__ == "__main__":
    try:
        main()
    except MpgymError as exc:
        print(f"sweep benchmark: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
