"""Generative models on scikit-learn's digits: test NLL, Fréchet distance and sample novelty.

Every model trains for a fixed number of steps (its ``TrainConfig.steps``; wall time is reported,
never used to stop) on the 1,000-image train split, with model selection on the 350 validation
images, once per report seed (:data:`SEEDS`, never used for tuning: the settings were chosen
with seed 0). Each (model, seed) writes one JSON part, so an interrupted run resumes where it
stopped; ``--merge`` aggregates the parts into one report with the mean and spread over seeds.

On the 447 test images each part reports: NLL in nats per image in the model's measure (exact,
dequantised bound, IWAE bound, diffusion bound, VQ bound), bits per dimension; the Fréchet
distance of 1,000 samples to the test set in the features of a digit classifier trained here,
over the floor given by 1,000 train images; and the novelty ratio: the median distance of a
sample to its nearest training image over that of a test image (``generative.novelty``), so a
low FD reached by replaying the training set shows as a ratio near 0. Reference rows: uniform
(181.33 nats) and independent per-pixel categorical (106.47 nats). Glow's figure is a
dequantisation bound and is not one of the exact likelihoods. The ``vqprior`` row trains a
VQ-VAE, then a PixelCNN prior over its 4x4 token grid; its NLL is the bound
``-log p(x | z_q(x)) - log p(z_q(x))``.

    python benchmarks/generative.py                      # every model x seed, parts written
    python benchmarks/generative.py --json PATH          # the same, then the merged report
    python benchmarks/generative.py --models ddpm --seeds 1
    python benchmarks/generative.py --merge --json benchmarks/results/generative.json
    python benchmarks/generative.py --quick --merge      # smoke test (parts under --out)
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

# this file is named like the package it measures: keep its own folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from generative import build_model  # noqa: E402
from generative.autoencoders import VAEConfig  # noqa: E402
from generative.autoregressive import MADEConfig, NADEConfig, PixelCNNConfig, TransformerConfig  # noqa: E402
from generative.data import DIM, LEVELS, categorical_baseline_nll, load_digits_split  # noqa: E402
from generative.diffusion import DDPM, DDPMConfig  # noqa: E402
from generative.evaluation import (  # noqa: E402
    DigitClassifier,
    evaluate,
    feature_fd,
    nats_to_bits_per_dim,
    train_classifier,
)
from generative.flows import GlowConfig  # noqa: E402
from generative.gans import GANConfig  # noqa: E402
from generative.novelty import novelty_ratio  # noqa: E402
from generative.token_prior import TokenPrior, TokenPriorConfig  # noqa: E402
from generative.trainer import TrainConfig, train  # noqa: E402
from generative.visuals import save_digit_grid, save_run_pictures  # noqa: E402
from mpgym.bench import Goal, bench_parser, machine_info, report  # noqa: E402
from mpgym.checkpoint import atomic_write_text, to_jsonable  # noqa: E402
from mpgym.errors import MpgymError, check_positive  # noqa: E402
from mpgym.runs import staged_run  # noqa: E402

# name -> (model config, train config). Each model trains for exactly its TrainConfig.steps (no
# wall-clock cap); the settings were chosen on the validation split with TrainConfig's seed 0
SETUPS = {
    # lr 1e-3 for 1,500 steps: validation 97.3 (test 93.2); lr 3e-3 overfits after 400 steps
    # (validation 98.3, test 94.0), 256 hidden units or weight decay did not help
    "nade": (NADEConfig(hidden=128), TrainConfig(steps=1500, lr=1e-3, eval_every=100)),
    # 16 random orders, trained in turn, evaluated as their exact mixture: 92.1 test nats against
    # 94.2 for one raster-order MADE (3,000 steps), 2.1x the CPU time of 3,000 plain steps
    "made": (
        MADEConfig(num_masks=16, order="random"),
        TrainConfig(steps=6000, lr=1e-3, eval_every=500),
    ),
    # the 4 layers after the first get kernel 5 (PixelCNNConfig.block_kernel), so every pixel
    # sees all earlier ones; with kernel 3 (84.6 test nats) 126 of 2,016 pairs were unseen
    "pixelcnn": (
        PixelCNNConfig(channels=32, layers=5),
        TrainConfig(steps=2000, lr=2e-3, eval_every=200),
    ),
    "transformer": (
        TransformerConfig(d_model=64, layers=2),
        TrainConfig(steps=2000, lr=2e-3, eval_every=200),
    ),
    "glow": (
        GlowConfig(steps_per_level=4, hidden=32),
        TrainConfig(steps=2000, lr=1e-3, eval_every=200),
    ),
    "vae": (VAEConfig(dropout=0.2), TrainConfig(steps=3000, lr=1e-3, eval_every=200)),
    # WGAN-GP (5 critic steps per generator step): FD 3.48x the floor after 2,000 steps (228 s
    # of CPU), 5.66x after 1,000; the non-saturating DCGAN collapsed (30x at lr 2e-4, 31x at
    # lr 1e-4 with EMA, 23x for the MLP pair)
    "gan": (
        GANConfig(hidden=32, loss="wgan-gp", d_steps=5),
        TrainConfig(steps=2000, lr=1e-4, eval_every=500, select_best=False),
    ),
    # measured: bound 101.6 nats, FD 1.82x the floor (the prior's best validation at step 600)
    "vqprior": (
        TokenPriorConfig(prior="pixelcnn", channels=64, layers=4),
        TrainConfig(steps=2000, lr=1e-3, eval_every=200),
    ),
    # 64 channels: 155 ms of CPU per step of 128 images (32 channels: 58 ms). FD over the floor
    # (ancestral samples): 32 channels after 3,000 steps 2.57x; 64 channels 2.17x after only
    # 1,628 steps (cap hit at load 6).
    # Sampling and the bound both use sigma_t^2 = beta_t (DDPMConfig.variance); the same
    # weights under beta_tilde_t are reported as a second row (its FD with --ddpm-other-fd).
    # Bound after 3,000 steps: 137.2 nats under beta_t, 146.6 under beta_tilde_t
    "ddpm": (
        DDPMConfig(channels=64, blocks=2),
        TrainConfig(
            steps=3000, lr=1e-3, batch_size=128, eval_every=1000, select_best=False, ema=0.995
        ),
    ),
}
# the VQ-VAE's own training before its token prior (the "vqprior" row trains the prior on top)
VQVAE_TRAIN = TrainConfig(steps=3000, lr=1e-3, eval_every=250)
SEEDS = (1, 2, 3)
"""Report seeds (training and sampling); the settings above were tuned with seed 0 only."""
RUN_ORDER = ("vae", "ddpm", "nade", "made", "pixelcnn", "transformer", "glow", "gan", "vqprior")
"""Default models, in the order they run within a round (one round per seed)."""
GOAL_MODELS = ("vae", "ddpm", "nade", "made", "pixelcnn", "transformer")
"""Models some goal depends on: every seed of these runs before the other models' seeds."""
EXACT = ("fvsbn", "nade", "made", "pixelcnn", "wavenet", "transformer")
"""Models whose NLL is exact (Glow's dequantised figure is a bound, so it is not here)."""
FD_GOAL_MODELS = ("ddpm",)
"""Models with an FD goal; their samples must also pass the novelty goal."""
BOUND_LABELS = {"dequantised": "dequantised bound (not exact)"}
DDIM_STEPS = 0
"""DDPM's FD samples: DDIM on this many steps, or 0 for ancestral sampling over all T steps."""
VARIANCE_NAMES = {"beta": "beta_t", "posterior": "beta_tilde_t"}
PARTS = Path(__file__).resolve().parent / "results" / "generative-parts"
"""Where full runs write their per-(model, seed) parts (``--quick`` parts go under ``--out``)."""


def load_now() -> dict[str, Any]:
    """The 1/5/15-minute load averages and the time, as ``uptime`` reports them."""
    one, five, fifteen = os.getloadavg()
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "loadavg": [one, five, fifteen]}


def budgets(name: str, seed: int, quick: bool) -> tuple[TrainConfig, TrainConfig | None]:
    """The model's train config (and the VQ-VAE's for ``vqprior``) for one seed: steps, no cap."""
    train_cfg = SETUPS[name][1]
    vq_cfg = VQVAE_TRAIN if name == "vqprior" else None
    out = []
    for cfg in (train_cfg, vq_cfg):
        if cfg is None:
            out.append(None)
            continue
        if quick:
            cfg = replace(
                cfg, steps=max(100, cfg.steps // 10), eval_every=max(50, cfg.eval_every // 10)
            )
        out.append(replace(cfg, seed=seed, max_seconds=0.0, progress=False))
    return out[0], out[1]


def train_model(name: str, seed: int, quick: bool, run) -> tuple[torch.nn.Module, dict]:
    """Train one model for its step budget into ``run``; returns it and its training figures."""
    split = load_digits_split()
    model_cfg = SETUPS[name][0]
    train_cfg, vq_cfg = budgets(name, seed, quick)
    torch.manual_seed(seed)
    vq_seconds, vq_steps = 0.0, 0
    if name == "vqprior":  # two stages: the VQ-VAE, then the prior on its frozen codes
        vq = build_model("vqvae", model_cfg.vqvae)
        vq_run = run.__class__(os.path.join(run.path, "vqvae"))
        vq_res = train(
            vq, split.x_train, split.x_val, vq_cfg, run=vq_run, kind="vqvae", model_config=vq.config
        )
        vq_seconds, vq_steps = vq_res.seconds, vq_res.steps
        torch.manual_seed(seed)
        model = TokenPrior(model_cfg, vq)
    else:
        model = build_model(name, model_cfg)
    run.write_config({"model": model_cfg, "train": train_cfg, "vqvae_train": vq_cfg}, kind=name)
    res = train(
        model, split.x_train, split.x_val, train_cfg, run=run, kind=name, model_config=model_cfg
    )
    return model, {
        "train_s": res.seconds + vq_seconds,
        "steps": res.steps,
        "vqvae_steps": vq_steps if name == "vqprior" else None,
        "best_step": res.best_step,
        "params": sum(p.numel() for p in model.parameters()),
        "stopped": res.stopped,
        "config": {"model": model_cfg, "train": train_cfg, "vqvae_train": vq_cfg},
    }


def run_part(
    name: str,
    seed: int,
    *,
    quick: bool,
    out: Path,
    classifier: DigitClassifier,
    n_samples: int,
    ddim_steps: int = DDIM_STEPS,
    other_fd: bool = False,
) -> dict:
    """Train and evaluate one (model, seed); returns its part: row, load, config, machine."""
    split = load_digits_split()
    load_before = load_now()
    with staged_run(out / f"{name}-s{seed}", kind=name, overwrite=True) as run:
        model, trained = train_model(name, seed, quick, run)
        t0 = time.perf_counter()
        ev = evaluate(
            name,
            model,
            split,
            classifier=classifier if n_samples else None,
            n_samples=n_samples,
            quick=quick,
            seed=seed,
            ddim_steps=ddim_steps,
            diffusion_timesteps=50,
        )
        row = {
            "model": name,
            "seed": seed,
            "bound": BOUND_LABELS.get(ev.bound, ev.bound),
            "nll_nats": ev.nll_nats,
            "bits_per_dim": ev.bits_per_dim,
            **sample_figures(ev.samples, ev.fd, split, classifier),
            **{k: v for k, v in trained.items() if k != "config"},
            "eval_s": time.perf_counter() - t0,
        }
        if name == "ddpm":
            row["model"] = f"ddpm (sigma^2 = {VARIANCE_NAMES[model.config.variance]})"
        if len(ev.samples):
            save_run_pictures(run.path, name, model, ev.samples, split.x_test)
        other = []
        if name == "ddpm":  # the same weights under the other reverse-process variance
            other.append(other_variance_row(model, split, classifier, n_samples if other_fd else 0,
                                            quick, seed))
        run.write_json("results.json", {**row, "other_variance": other})
    logging.info("%s", row)
    return {
        "benchmark": "generative",
        "part": {"model": name, "seed": seed},
        "quick": quick,
        "row": row,
        "other_variance": other,
        "config": to_jsonable(trained["config"]),
        "n_samples": n_samples,
        "ddpm_fd_sampler": f"DDIM {ddim_steps} steps" if ddim_steps else "ancestral, all T",
        "load_before": load_before,
        "load_after": load_now(),
        "machine": machine_info(),
        "commit": git_commit(),
    }


def sample_figures(
    samples: torch.Tensor, fd: float, split, classifier: DigitClassifier
) -> dict[str, float]:
    """FD, FD over the train-set floor, and the novelty of ``samples`` (NaN without samples)."""
    if not len(samples):
        nan = float("nan")
        return {"fd": nan, "fd_over_floor": nan, "novelty_ratio": nan, "copy_fraction": nan}
    novelty = novelty_ratio(samples, split.x_train, split.x_test)
    return {
        "fd": fd,
        "fd_over_floor": fd / fd_floor(classifier, split, len(samples)),
        "novelty_ratio": novelty.ratio,
        "nn_dist_samples": novelty.sample_median,
        "nn_dist_test": novelty.heldout_median,
        "copy_fraction": novelty.copy_fraction,
    }


def fd_floor(classifier: DigitClassifier, split, n_samples: int) -> float:
    """FD of the first ``n_samples`` train images to the test set: what real data scores."""
    return feature_fd(classifier, split.x_train[:n_samples], split.x_test)


def other_variance_row(model, split, classifier, n_samples: int, quick: bool, seed: int) -> dict:
    """Bound (and FD samples when ``n_samples``) of a DDPM's weights under the other variance.

    Sampling and the bound of each row use one reverse process (``DDPMConfig.variance``).
    """
    other = "posterior" if model.config.variance == "beta" else "beta"
    twin = DDPM(replace(model.config, variance=other))
    twin.load_state_dict(model.state_dict())
    t0 = time.perf_counter()
    ev = evaluate(
        "ddpm",
        twin.eval(),
        split,
        classifier=classifier if n_samples else None,
        n_samples=n_samples,
        quick=quick,
        seed=seed,
        diffusion_timesteps=50,
    )
    return {
        "model": f"ddpm (sigma^2 = {VARIANCE_NAMES[other]}, same weights)",
        "seed": seed,
        "bound": ev.bound,
        "nll_nats": ev.nll_nats,
        "bits_per_dim": ev.bits_per_dim,
        **sample_figures(ev.samples, ev.fd, split, classifier),
        "eval_s": time.perf_counter() - t0,
    }


def git_commit() -> str | None:
    """The checked-out commit (with ``+dirty`` when tracked files differ), or None."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "generative", "benchmarks/generative.py"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + ("+dirty" if dirty else "")


# ---------------------------------------------------------------------------- merge
def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (NaN for one value), min and max of finite ``values``."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if not len(v):
        nan = float("nan")
        return {"mean": nan, "std": nan, "min": nan, "max": nan}
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def aggregate_rows(rows: list[dict]) -> dict[str, Any]:
    """One table row from the per-seed rows of one model: mean, std and range of each figure."""
    out: dict[str, Any] = {
        "model": rows[0]["model"],
        "bound": rows[0]["bound"],
        "seeds": sorted(r["seed"] for r in rows),
    }
    for key in ("nll_nats", "fd_over_floor", "novelty_ratio"):
        s = spread([r.get(key, math.nan) for r in rows])
        out[key] = s["mean"]
        out[f"{key}_std"], out[f"{key}_min"], out[f"{key}_max"] = s["std"], s["min"], s["max"]
    out["bits_per_dim"] = nats_to_bits_per_dim(out["nll_nats"])
    out["fd"] = spread([r.get("fd", math.nan) for r in rows])["mean"]
    out["copy_fraction_max"] = spread([r.get("copy_fraction", math.nan) for r in rows])["max"]
    for key in ("train_s", "eval_s"):
        if any(key in r for r in rows):
            out[key] = spread([r.get(key, math.nan) for r in rows])["mean"]
    if "steps" in rows[0]:
        out["steps"] = rows[0]["steps"]
        out["best_steps"] = [r["best_step"] for r in sorted(rows, key=lambda r: r["seed"])]
        out["params"] = rows[0]["params"]
    return out


def read_parts(folder: Path) -> list[dict]:
    """Every part JSON under ``folder``; refuses a mix of quick and full parts."""
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise MpgymError(
            f"no parts to merge in {folder}; run the benchmark first (without --merge)."
        )
    parts = [json.loads(p.read_text()) for p in paths]
    if len({p["quick"] for p in parts}) > 1:
        raise MpgymError(f"{folder} mixes --quick and full parts; merge one kind at a time.")
    return parts


def merge(parts: list[dict], expected: list[tuple[str, int]]) -> tuple[list[dict], list[Goal],
                                                                        dict[str, Any]]:
    """Aggregate parts into rows (mean and spread over seeds per model) and the goals."""
    split = load_digits_split()
    uniform = DIM * math.log(LEVELS)
    indep = categorical_baseline_nll(split.x_train, split.x_test)
    floors = sorted({round(p["row"].get("fd", math.nan) / p["row"]["fd_over_floor"], 9)
                     for p in parts if math.isfinite(p["row"].get("fd_over_floor", math.nan))})
    rows = [
        {"model": "uniform (reference)", "bound": "exact", "nll_nats": uniform,
         "bits_per_dim": nats_to_bits_per_dim(uniform)},
        {"model": "independent categorical (reference)", "bound": "exact", "nll_nats": indep,
         "bits_per_dim": nats_to_bits_per_dim(indep)},
        {"model": "train set (FD floor)", "fd": floors[0] if floors else math.nan,
         "fd_over_floor": 1.0, "novelty_ratio": 1.0},
    ]
    by_model: dict[str, list[dict]] = {}
    for p in sorted(parts, key=lambda p: (RUN_ORDER.index(p["part"]["model"]), p["part"]["seed"])):
        row = {**p["row"], "load_1m": [p["load_before"]["loadavg"][0],
                                        p["load_after"]["loadavg"][0]]}
        by_model.setdefault(p["part"]["model"], []).append(row)
        for extra in p["other_variance"]:
            by_model.setdefault(p["part"]["model"] + "/other", []).append(extra)
    agg = {}
    for key, model_rows in by_model.items():
        agg[key] = aggregate_rows(model_rows)
        loads = [x for r in model_rows for x in r.get("load_1m", [])]
        if loads:
            agg[key]["load_1m_min"], agg[key]["load_1m_max"] = min(loads), max(loads)
        rows.append(agg[key])
    goals = goals_of(agg, parts)
    have = {(p["part"]["model"], p["part"]["seed"]) for p in parts}
    extra = {
        "seeds": sorted({s for _, s in expected}),
        "missing_parts": [f"{m} seed {s}" for m, s in expected if (m, s) not in have],
        "goal_seeds": {
            "worst_exact_nll_nats": {m: agg[m]["seeds"] for m in EXACT if m in agg},
            "best_nll_nats": {m: a["seeds"] for m, a in agg.items() if "/" not in m},
            "diffusion_fd_over_floor": {m: agg[m]["seeds"] for m in FD_GOAL_MODELS if m in agg},
            "worst_novelty_ratio": {m: agg[m]["seeds"] for m in FD_GOAL_MODELS if m in agg},
        },
        "fd_floor": floors[0] if floors else math.nan,
        "goals_on_all_seeds": {},
        "classifier": parts[0].get("classifier"),
        "n_samples": sorted({p["n_samples"] for p in parts}),
        "ddpm_fd_sampler": sorted({p["ddpm_fd_sampler"] for p in parts}),
        "quick": parts[0]["quick"],
        "commits": sorted({str(p.get("commit")) for p in parts}),
        "per_seed": [
            {**p["row"], "load_before": p["load_before"], "load_after": p["load_after"]}
            for p in parts
        ],
    }
    seeds = extra["seeds"]
    exact_expected = [m for m in EXACT if any(m == e for e, _ in expected)]
    for name, cover in extra["goal_seeds"].items():
        wanted = {"worst_exact_nll_nats": exact_expected, "best_nll_nats": list(dict.fromkeys(
            m for m, _ in expected))}.get(name, list(FD_GOAL_MODELS))
        extra["goals_on_all_seeds"][name] = all(cover.get(m) == seeds for m in wanted)
    extra["goals_on_all_seeds"]["vae_iwae_nll_nats"] = agg.get("vae", {}).get("seeds") == seeds
    return rows, goals, extra


def goals_of(agg: dict[str, dict], parts: list[dict]) -> list[Goal]:
    """The benchmark's goals on the seed means (NaN, so not met, where a model is missing)."""
    nan = float("nan")
    nll = {m: a["nll_nats"] for m, a in agg.items() if "/" not in m}
    nll = {m: v for m, v in nll.items() if math.isfinite(v)}
    exact = [nll[m] for m in EXACT if m in nll]
    fd_models = [agg[m] for m in FD_GOAL_MODELS if m in agg]
    accs = [p["classifier"]["test_acc"] for p in parts if p.get("classifier")]
    return [
        Goal("worst_exact_nll_nats", max(exact) if exact else nan, 94.0, "<="),
        Goal("vae_iwae_nll_nats", nll.get("vae", nan), 100.0, "<="),
        Goal("best_nll_nats", min(nll.values()) if nll else nan, 85.0, "<="),
        Goal("diffusion_fd_over_floor", agg["ddpm"]["fd_over_floor"] if "ddpm" in agg else nan,
             2.0, "<="),
        Goal("worst_novelty_ratio",
             min(a["novelty_ratio"] for a in fd_models) if fd_models else nan, 0.9, ">="),
        Goal("classifier_test_acc", min(accs) if accs else nan, 0.97, ">="),
    ]


COLUMNS = [
    "model", "bound", "seeds", "nll_nats", "nll_nats_std", "bits_per_dim", "fd", "fd_over_floor",
    "fd_over_floor_std", "novelty_ratio", "train_s", "steps", "load_1m_min", "load_1m_max",
]


def parse_args():
    """The command line, checked before any work."""
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(RUN_ORDER),
                   help=f"models to run, in this order (default: {' '.join(RUN_ORDER)})")
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS),
                   help="report seeds (default 1 2 3; seed 0 was used for tuning)")
    p.add_argument("--out", type=Path, default=Path("runs/bench-generative"),
                   help="root of the run directories")
    p.add_argument("--parts", type=Path, default=None,
                   help="folder of the per-(model, seed) JSON parts (default: "
                        "benchmarks/results/generative-parts, or OUT/parts with --quick)")
    p.add_argument("--redo", action="store_true", help="re-run parts that already exist")
    p.add_argument("--merge", action="store_true",
                   help="aggregate the parts into one report (--json PATH) instead of running")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--ddpm-fd-steps", type=int, default=DDIM_STEPS,
                   help="DDPM's FD samples: DDIM on this many steps (0: ancestral over all T)")
    p.add_argument("--ddpm-other-fd", action="store_true",
                   help="also draw FD samples for the DDPM's other-variance row")
    p.add_argument("--fd-samples", type=int, default=-1,
                   help="samples per model for the FD (default 1,000, 200 with --quick; 0: none)")
    args = p.parse_args()
    unknown = [m for m in args.models if m not in SETUPS]
    if unknown:
        raise MpgymError(
            f"unknown model(s) {', '.join(unknown)} in --models; accepted: {', '.join(SETUPS)}."
        )
    if any(s < 0 for s in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        raise MpgymError(f"--seeds must be distinct integers >= 0; got {args.seeds}.")
    check_positive("--threads", args.threads)
    if args.ddpm_fd_steps < 0:
        raise MpgymError(f"--ddpm-fd-steps must be >= 0 (0: ancestral); got {args.ddpm_fd_steps}.")
    args.parts = args.parts or (args.out / "parts" if args.quick else PARTS)
    return args


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    expected = [(m, s) for m in args.models for s in args.seeds]
    if not args.merge:
        run_parts(args, expected)
    if args.merge or args.json:  # a run with --json ends with the merged report
        rows, goals, extra = merge(read_parts(args.parts), expected)
        report("generative", rows, goals, args.json, columns=COLUMNS, extra=extra)
        if extra["missing_parts"]:
            print("missing parts: " + ", ".join(extra["missing_parts"]))
            partial = [g for g, done in extra["goals_on_all_seeds"].items() if not done]
            print("goals measured on fewer seeds or models than stated: " + ", ".join(partial))


def run_parts(args, expected: list[tuple[str, int]]) -> None:
    """Run every (model, seed) of ``expected`` whose part is not written yet (all with --redo)."""
    split = load_digits_split()
    n_samples = args.fd_samples if args.fd_samples >= 0 else 200 if args.quick else 1000
    # rounds: each seed of the goal models, then each seed of the others (partial runs cover goals)
    order = [(m, s) for s in args.seeds for m in args.models if m in GOAL_MODELS]
    order += [(m, s) for s in args.seeds for m in args.models if m not in GOAL_MODELS]
    todo = [(m, s) for m, s in order if args.redo or not (args.parts / f"{m}-s{s}.json").exists()]
    logging.info("parts to run: %s", ", ".join(f"{m}/s{s}" for m, s in todo) or "none")
    if not todo:
        return
    args.out.mkdir(parents=True, exist_ok=True)
    save_digit_grid(args.out / "real_digits.png", split.x_test[:64])
    clf = train_classifier(split, steps=300 if args.quick else 1500)
    classifier_info = {"val_acc": clf.val_acc, "test_acc": clf.test_acc, "seed": 0}
    for name, seed in todo:
        part = run_part(name, seed, quick=args.quick, out=args.out, classifier=clf.model,
                        n_samples=n_samples, ddim_steps=args.ddpm_fd_steps,
                        other_fd=args.ddpm_other_fd)
        part["classifier"] = classifier_info
        part["threads"] = args.threads
        args.parts.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.parts / f"{name}-s{seed}.json",
                          json.dumps(to_jsonable(part), indent=2))
        logging.info("wrote %s", args.parts / f"{name}-s{seed}.json")


if __name__ == "__main__":
    main()
