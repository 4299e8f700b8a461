"""Generating human motion: motion diffusion and a motion VAE against generative motion matching.

All three models see the same data: the training windows (first 80% of each of the 15 DeepMimic
clips at 30 fps, 12-frame windows, mirrored copies added) and are scored on the held-out windows
(last 20%, near-copies of training windows or their mirrors dropped) by
:func:`bodies.motion.evaluate.evaluate_generator`: Fréchet distance in the embedding of a motion
classifier trained on the training windows, over the floor FD(training windows, held-out) with
the same labels and count; recognition accuracy by that classifier; diversity; foot skating,
penetration and floating next to the data's; joint-limit violations; novelty (median distance
to the nearest training window over the held-out windows' own). GenMM (no training) is the
anchor. Each model trains with its ``default`` preset (``PRESETS`` / ``TRAIN_PRESETS`` of its
module: settings chosen on the fit/val splits with seed 0), once per report seed
(:data:`SEEDS`), on 2 threads, under the machine-wide timing lock. Each (model, seed) writes one
JSON part, so an interrupted run resumes; ``--merge`` aggregates the parts (mean and spread
over seeds).

Also per part: the seconds to generate 10 s of motion (one sample, 2 threads, median of 3), and
60 s of motion per label: the root height against the training data's range and the classifier's
accuracy on the windows of the first and the last 10 s (``mvae_60s_stable``: every frame's root
height within the data's range widened by 10 cm, and the last 10 s recognised at least 0.8 times
as often as the first 10 s).

    python benchmarks/motion.py                          # every model x seed, parts written
    python benchmarks/motion.py --models mdm --seeds 1
    python benchmarks/motion.py --merge --json benchmarks/results/motion.json
    python benchmarks/motion.py --quick --merge          # smoke test (parts under --out)
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# this folder holds bodies.py (the body benchmark), which would shadow the bodies package: keep
# it off the import path and load the NeRF benchmark's timing helpers by file
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import importlib.util  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bodies.motion import generator_api  # noqa: E402
from mpgym.bench import Goal, bench_parser, machine_info, report  # noqa: E402
from mpgym.checkpoint import atomic_write_text, to_jsonable  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "nerf_bench", Path(__file__).resolve().parent / "nerf.py"
)
nerf_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nerf_bench)

log = logging.getLogger("bench.motion")

MODELS = ("genmm", "mdm", "mvae")
SEEDS = (1, 2)
"""Report seeds (settings were chosen with seed 0 on the fit/val splits)."""
RESULTS = Path(__file__).resolve().parent / "results"
PARTS = RESULTS / "motion-parts"
THREADS = 2
STABLE_MARGIN_M = 0.10
"""Root heights within the data's range widened by this count as in range."""
STABLE_RECOGNITION = 0.8
"""The last 10 s must be recognised at least this fraction as often as the first 10 s."""


def _budget(name: str, quick: bool):
    """``(config, train config or None)`` of the ``default`` preset (``tiny`` when quick)."""
    api = generator_api(name)
    preset = "tiny" if quick else "default"
    train = api.train_presets[preset] if api.train_presets is not None else None
    return api, api.presets[preset], train


def sample_seconds(model: Any, *, seconds: float = 10.0, repeats: int = 3) -> float:
    """Median wall time of generating ``seconds`` of motion (one sample, label walk)."""
    times = []
    for r in range(repeats):
        g = torch.Generator().manual_seed(100 + r)
        t0 = time.perf_counter()
        model.generate(1, seconds, labels=["walk"], generator=g)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def stability(model: Any, data: Any, *, seconds: float = 60.0, seed: int = 0) -> dict[str, Any]:
    """Long motion per label: root height in the data's range, recognition at start and end."""
    from bodies.motion.dataset import WINDOW
    from bodies.motion.features import FPS, ROOT_HEIGHT

    labels = list(model.label_names)
    g = torch.Generator().manual_seed(seed)
    feats = np.asarray(model.generate(len(labels), seconds, labels=labels, generator=g))
    h = feats[..., ROOT_HEIGHT][..., 0]  # [n, T]
    data_h = data.train.x[..., ROOT_HEIGHT].ravel()
    lo, hi = float(data_h.min()) - STABLE_MARGIN_M, float(data_h.max()) + STABLE_MARGIN_M
    in_range = float(((h >= lo) & (h <= hi)).mean())
    ten = int(10 * FPS)

    def acc(block: np.ndarray) -> float:
        starts = range(0, block.shape[1] - WINDOW + 1, WINDOW)
        wins = np.concatenate([block[:, s : s + WINDOW] for s in starts])
        labs = [lab for _ in starts for lab in labels]
        return float(np.mean(data.classifier.predict(wins) == data.classifier.label_ids(labs)))

    first, last = acc(feats[:, :ten]), acc(feats[:, -ten:])
    stable = in_range == 1.0 and last >= STABLE_RECOGNITION * first
    return {
        "seconds": seconds,
        "root_height_in_range": in_range,
        "root_height_min": float(h.min()),
        "root_height_max": float(h.max()),
        "data_root_height_range": [lo + STABLE_MARGIN_M, hi - STABLE_MARGIN_M],
        "recognition_first_10s": first,
        "recognition_last_10s": last,
        "stable": int(stable),
    }


def run_part(name: str, seed: int, *, quick: bool, out: Path, lock: str | None) -> dict:
    """Fit one model with one seed, score it, time its sampling; write its JSON part."""
    from bodies.motion.evaluate import eval_data, evaluate_generator
    from mpgym.cli.motion import write_gif

    torch.set_num_threads(THREADS)
    api, config, train = _budget(name, quick)
    data = eval_data()  # the classifier, trained (or read) before the timed part
    with nerf_bench.timing_lock(lock) as waited:
        before = nerf_bench.machine_load()
        t0 = time.perf_counter()
        model = api.fit(config, train=train, seed=seed)
        fit_seconds = time.perf_counter() - t0
        ten = sample_seconds(model, repeats=1 if quick else 3)
        after = nerf_bench.machine_load()
    scores = evaluate_generator(model, per_label=8 if quick else 32, seed=seed)
    stab = stability(model, data, seconds=20.0 if quick else 60.0, seed=seed)
    gif = out / f"motion-{name}-s{seed}-walk.gif"
    feats = model.generate(1, 4.0, labels=["walk"], generator=torch.Generator().manual_seed(seed))
    write_gif(gif, np.asarray(feats)[0], "walk", compare=True)
    part = {
        "model": name,
        "seed": seed,
        "quick": quick,
        "config": to_jsonable(config),
        "train": to_jsonable(train),
        "fit_seconds": fit_seconds,
        "sample_10s_seconds": ten,
        "scores": scores,
        "stability_60s": stab,
        "gif": gif.name,
        "load_before": before,
        "load_after": after,
        "lock_wait_s": waited,
        "machine": machine_info(),
    }
    path = out / f"{name}-s{seed}.json"
    atomic_write_text(path, json.dumps(to_jsonable(part), indent=1))
    log.info("wrote %s", path)
    return part


def _mean_spread(values: list[float]) -> tuple[float, float]:
    if len(values) == 1:
        return values[0], 0.0
    return statistics.fmean(values), statistics.stdev(values)


ROW_KEYS = (
    ("fd_over_floor", "FD/floor"),
    ("fd", "FD"),
    ("recognition_accuracy", "recog (held-out labels)"),
    ("recognition_all_labels", "recog (all labels)"),
    ("diversity", "diversity"),
    ("foot_skating", "skating"),
    ("penetration_mm", "penetration mm"),
    ("floating_mm", "floating mm"),
    ("joint_limit_violations", "limit violations"),
    ("novelty", "novelty"),
)


def merge(parts: list[dict]) -> tuple[list[dict], list[Goal], dict]:
    """Rows (mean ± spread over seeds per model), the goals, and extras."""
    by_model: dict[str, list[dict]] = {}
    for p in parts:
        by_model.setdefault(p["model"], []).append(p)
    rows, summary = [], {}
    for name in MODELS:
        ps = sorted(by_model.get(name, []), key=lambda p: p["seed"])
        if not ps:
            continue
        row: dict[str, Any] = {"model": name, "seeds": ",".join(str(p["seed"]) for p in ps)}
        s: dict[str, float] = {}
        for key, col in ROW_KEYS:
            m, sd = _mean_spread([float(p["scores"][key]) for p in ps])
            row[col] = f"{m:.3g} ± {sd:.2g}"
            s[key] = m
        for key in ("fit_seconds", "sample_10s_seconds"):
            m, _ = _mean_spread([float(p[key]) for p in ps])
            row[key] = round(m, 2)
            s[key] = m
        s["stable_60s"] = min(p["stability_60s"]["stable"] for p in ps)
        row["60s stable"] = s["stable_60s"]
        s["data_foot_skating"] = statistics.fmean(p["scores"]["data_foot_skating"] for p in ps)
        s["data_diversity"] = statistics.fmean(p["scores"]["data_diversity"] for p in ps)
        rows.append(row)
        summary[name] = s
    if summary:
        any_part = parts[0]["scores"]
        div = statistics.fmean(s["data_diversity"] for s in summary.values())
        skate = statistics.fmean(s["data_foot_skating"] for s in summary.values())
        rows.append(
            {
                "model": "data (train windows)",
                "FD/floor": "1",
                "recog (held-out labels)": f"{any_part['classifier_heldout_accuracy']:.3g}",
                "diversity": f"{div:.3g}",
                "skating": f"{skate:.3g}",
                "penetration mm": f"{any_part['data_penetration_mm']:.3g}",
                "floating mm": f"{any_part['data_floating_mm']:.3g}",
                "limit violations": f"{any_part['data_joint_limit_violations']:.3g}",
                "novelty": "1",
            }
        )
    goals = []
    mdm, genmm, mvae = summary.get("mdm"), summary.get("genmm"), summary.get("mvae")
    if mdm:
        goals += [
            Goal("mdm_fd_over_floor", mdm["fd_over_floor"], 2.0, "<="),
            Goal("mdm_recognition_acc", mdm["recognition_accuracy"], 0.9, ">="),
            Goal("mdm_foot_skate_minus_data",
                 mdm["foot_skating"] - mdm["data_foot_skating"], 0.02, "<="),
            Goal("mdm_novelty_vs_heldout", mdm["novelty"], 0.5, ">="),
            Goal("sample_10s_seconds", mdm["sample_10s_seconds"], 2.0, "<="),
        ]
        if genmm:  # the condition: beat the anchor at equal or higher diversity
            ratio = mdm["fd"] / genmm["fd"] if genmm["fd"] > 0 else math.inf
            goals.append(Goal("mdm_fd_vs_genmm", ratio, 1.0, "<="))
            goals.append(Goal("mdm_diversity_vs_genmm", mdm["diversity"] / genmm["diversity"],
                              1.0, ">="))
    if mvae:
        goals.append(Goal("mvae_60s_stable", float(mvae["stable_60s"]), 1.0, ">="))
    for name, s in summary.items():  # GenMM has nothing to train: no goal it could not miss
        if generator_api(name).train_presets is not None:
            goals.append(Goal(f"{name}_train_minutes", s["fit_seconds"] / 60, 20.0, "<="))
    return rows, goals, {"summary": summary}


def load_parts(folder: Path, quick: bool) -> list[dict]:
    """Every part JSON in ``folder`` of the wanted kind (full or quick)."""
    out = []
    for p in sorted(folder.glob("*-s*.json")):
        doc = json.loads(p.read_text())
        if isinstance(doc, dict) and doc.get("model") in MODELS and doc.get("quick") == quick:
            out.append(doc)
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the requested parts, then merge when asked (or when everything was run)."""
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--merge", action="store_true", help="only merge the parts already written")
    p.add_argument("--out", type=Path, default=None,
                   help=f"folder of the parts (default {PARTS}; quick runs: runs/bench/motion)")
    p.add_argument("--timing-lock", default=nerf_bench.TIMING_LOCK,
                   help="file locked while training and timing ('' for none)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out or (Path("runs/bench/motion") if args.quick else PARTS)
    out.mkdir(parents=True, exist_ok=True)
    if not args.merge:
        for name in args.models:
            for seed in args.seeds:
                path = out / f"{name}-s{seed}.json"
                if path.exists() and json.loads(path.read_text()).get("quick") == args.quick:
                    log.info("%s exists; skipping (delete it to rerun)", path)
                    continue
                run_part(name, seed, quick=args.quick, out=out, lock=args.timing_lock or None)
    parts = load_parts(out, args.quick)
    rows, goals, extra = merge(parts)
    report("motion", rows, goals, args.json, extra=extra)


if __name__ == "__main__":
    main()
