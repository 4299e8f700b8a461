"""Shape models on the pybullet collection: held-out reconstruction and generation, CPU budgets.

Every model trains on the prepared pybullet collection's training split (792 shapes; ``mpgym
shapes prepare`` makes it) with its ``cpu`` preset on 2 threads, under the machine-wide timing
lock (``/tmp/mpgym-timing.lock``), and is scored on the test split (100 shapes) by
:func:`neural3d.implicit.shape_runs.evaluate_run`:

- ``occnet`` (OccNet's ResNet-PointNet + CBN decoder), ``convonet-planes`` and
  ``convonet-grid`` (Convolutional Occupancy Networks' encoders): IoU at OccNet's 0.2 threshold
  from 300 noisy input points (std 0.005) per test shape, the goal
  ``occnet_heldout_iou_300pts`` >= 0.85 taken by the best of the three;
- ``deepsdf``: Chamfer after latent optimisation on the test shapes' SDF samples, DeepSDF's
  convention (sum of the two directions' mean squared distances, unit-cube frame; reported as
  ``deepsdf_heldout_chamfer``, no target);
- ``prior`` (latent diffusion over the ``deepsdf`` part's codes) and ``gan`` (3D voxel GAN):
  100 samples against the 100 test shapes, PointFlow's MMD / COV / 1-NNA under Chamfer on 2,048
  points per shape, each cloud scaled to its bounding box; goals
  ``latent_diffusion_1nna_cd`` <= 0.60 and ``latent_diffusion_cov_cd`` >= 0.45; the GAN is a row;
- ``reference``: 100 training shapes "as the generator", scored the same way -- what copying
  the training set gets.

Each trained model whose preset has no time cap also has the goal ``<part>_train_minutes`` <= 30
(training wall time). Presets capped at 25 minutes (``max_minutes``: the ConvONet and GAN ones)
could not miss it, so for them the minutes are a column, not a goal; the ``stopped by`` column
says whether the steps or the clock ended a run.
Each part writes ``results/shapes-parts/<part>.json`` and keeps its run under
``runs/shapes-bench/<part>``; a part whose JSON exists is skipped, so an interrupted benchmark
resumes part by part (an interrupted part starts again). ``--merge`` only merges.

    python benchmarks/shapes.py                                   # every part, then the table
    python benchmarks/shapes.py --parts deepsdf prior             # the prior needs deepsdf's run
    python benchmarks/shapes.py --merge --json benchmarks/results/shapes.json
    python benchmarks/shapes.py --quick                           # smoke test (tiny budgets)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

# this folder holds bodies.py (the body benchmark), which would shadow the bodies package: keep
# it off the import path and load the NeRF benchmark's timing helpers by file
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import importlib.util  # noqa: E402

import torch  # noqa: E402

from mpgym import RunDir  # noqa: E402
from mpgym.bench import Goal, bench_parser, machine_info, report  # noqa: E402
from mpgym.checkpoint import atomic_write_text, to_jsonable  # noqa: E402
from neural3d.implicit import shape_runs as R  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "nerf_bench", Path(__file__).resolve().parent / "nerf.py"
)
nerf_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nerf_bench)

log = logging.getLogger("bench.shapes")

RESULTS = Path(__file__).resolve().parent / "results"
PARTS_DIR = RESULTS / "shapes-parts"
THREADS = 2
TRAIN_MINUTES_GOAL = 30.0
PARTS: dict[str, tuple[str, str, str]] = {
    # part -> (model, preset, quick preset)
    "occnet": ("occnet", "cpu", "tiny"),
    "convonet-planes": ("occnet", "planes-cpu", "planes-tiny"),
    "convonet-grid": ("occnet", "grid-cpu", "grid-tiny"),
    "deepsdf": ("deepsdf", "cpu", "tiny"),
    "prior": ("prior", "cpu", "tiny"),
    "gan": ("gan", "cpu", "tiny"),
    "reference": ("", "", ""),
}
QUICK = {"train_limit": 16, "eval_limit": 6}
"""--quick: train on the first 16 training shapes, score on the first 6 test shapes."""


def run_part(part: str, *, quick: bool, out: Path, runs: Path, collection: str,
             lock: str | None) -> dict[str, Any]:
    """Train (timed, under the lock) and score one part; write its JSON."""
    torch.set_num_threads(THREADS)
    coll = R.open_collection(collection)
    limit = QUICK["eval_limit"] if quick else None
    doc: dict[str, Any] = {"part": part, "quick": quick, "collection": str(coll.root)}
    if part == "reference":
        doc["scores"] = R.reference_metrics(coll, limit=limit)
    else:
        model, full, tiny = PARTS[part]
        preset = tiny if quick else full
        config = R.preset(model, preset)
        run_dir = runs / part
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)  # an interrupted part starts again
        run = RunDir(run_dir)
        codes_from = runs / "deepsdf" if model == "prior" else None
        if codes_from is not None and not (codes_from / "checkpoint.safetensors").is_file():
            raise SystemExit("the prior part needs the deepsdf part's run; run --parts deepsdf")
        train_limit = QUICK["train_limit"] if quick else None
        run.write_config({"config": config}, kind=R.kind_of(model), model=model, preset=preset,
                         collection=str(coll.root), limit=train_limit,
                         **({"codes_from": str(codes_from.resolve())} if codes_from else {}))
        with nerf_bench.timing_lock(lock) as waited:
            before = nerf_bench.machine_load()
            outcome = R.train_model(model, config, coll, run, codes_from=codes_from,
                                    limit=train_limit, progress_bar=False)
            after = nerf_bench.machine_load()
        doc |= {"model": model, "preset": preset,
                "config": to_jsonable(config), "train_seconds": outcome.seconds,
                "train_steps": outcome.steps, "train_stopped": outcome.stopped,
                "train_extra": outcome.extra,
                "load_before": before, "load_after": after, "lock_wait_s": waited}
        doc["scores"] = R.evaluate_run(run_dir, coll, limit=limit,
                                       input_points=300 if model == "occnet" else None)
    doc["machine"] = machine_info()
    path = out / f"{part}.json"
    atomic_write_text(path, json.dumps(to_jsonable(doc), indent=1))
    log.info("wrote %s", path)
    return doc


def merge(parts: dict[str, dict]) -> tuple[list[dict], list[Goal], dict]:
    """Rows per part, the goals, and the reported figures."""
    rows, goals, reported = [], [], {}
    for part in PARTS:
        p = parts.get(part)
        if p is None:
            continue
        s = p["scores"]
        row: dict[str, Any] = {"part": part, "preset": p.get("preset", "")}
        if "iou" in s:
            row["IoU (300 pts)"] = s["iou"]
        if "chamfer_mean" in s:
            row["Chamfer mean"], row["Chamfer median"] = s["chamfer_mean"], s["chamfer_median"]
        for key, col in (("mmd_cd", "MMD-CD"), ("cov_cd", "COV-CD"), ("1nna_cd", "1-NNA-CD")):
            if key in s:
                row[col] = s[key]
        if "train_seconds" in p:
            row["train min"] = p["train_seconds"] / 60
            row["steps"] = p["train_steps"]
            row["stopped by"] = p.get("train_stopped", "steps")
            capped = float((p.get("config") or {}).get("max_minutes") or 0.0) > 0.0
            if not capped:  # a capped run cannot miss the goal: its minutes stay a column
                goals.append(Goal(f"{part.replace('-', '_')}_train_minutes",
                                  p["train_seconds"] / 60, TRAIN_MINUTES_GOAL, "<="))
        rows.append(row)
    occ = {k: parts[k]["scores"]["iou"] for k in ("occnet", "convonet-planes", "convonet-grid")
           if k in parts}
    if occ:
        best = max(occ, key=occ.get)
        goals.insert(0, Goal("occnet_heldout_iou_300pts", occ[best], 0.85, ">="))
        reported["occnet_heldout_iou_300pts_from"] = best
    if "deepsdf" in parts:
        reported["deepsdf_heldout_chamfer"] = parts["deepsdf"]["scores"]["chamfer_mean"]
    if "prior" in parts:
        s = parts["prior"]["scores"]
        goals.insert(1, Goal("latent_diffusion_1nna_cd", s["1nna_cd"], 0.60, "<="))
        goals.insert(2, Goal("latent_diffusion_cov_cd", s["cov_cd"], 0.45, ">="))
    return rows, goals, {"reported": reported}


def load_parts(folder: Path, quick: bool) -> dict[str, dict]:
    """Every part JSON in ``folder`` of the wanted kind (full or quick)."""
    out = {}
    for part in PARTS:
        path = folder / f"{part}.json"
        if path.is_file():
            doc = json.loads(path.read_text())
            if isinstance(doc, dict) and doc.get("quick") == quick:
                out[part] = doc
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the requested parts (skipping finished ones), then merge."""
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    p.add_argument("--merge", action="store_true", help="only merge the parts already written")
    p.add_argument("--out", type=Path, default=None,
                   help=f"folder of the parts (default {PARTS_DIR}; quick: runs/bench/shapes)")
    p.add_argument("--runs", type=Path, default=None,
                   help="folder of the parts' runs (default runs/shapes-bench; quick: "
                        "runs/bench/shapes-runs)")
    p.add_argument("--collection", default="pybullet",
                   help="prepared collection: a source name or its cache folder")
    p.add_argument("--timing-lock", default=None,
                   help=f"file locked while training (default {nerf_bench.TIMING_LOCK}; none "
                        "with --quick, whose times mean nothing; '' for none)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out or (Path("runs/bench/shapes") if args.quick else PARTS_DIR)
    runs = args.runs or Path("runs/bench/shapes-runs" if args.quick else "runs/shapes-bench")
    out.mkdir(parents=True, exist_ok=True)
    if not args.merge:
        for part in args.parts:
            path = out / f"{part}.json"
            if path.exists() and json.loads(path.read_text()).get("quick") == args.quick:
                log.info("%s exists; skipping (delete it to rerun)", path)
                continue
            t0 = time.perf_counter()
            lock = args.timing_lock
            if lock is None:
                lock = "" if args.quick else nerf_bench.TIMING_LOCK
            run_part(part, quick=args.quick, out=out, runs=runs, collection=args.collection,
                     lock=lock or None)
            log.info("%s: %.1f min in all", part, (time.perf_counter() - t0) / 60)
    rows, goals, extra = merge(load_parts(out, args.quick))
    report("shapes", rows, goals, args.json, extra=extra)


if __name__ == "__main__":
    main()
