"""``mpgym sweep gen train MODEL ...`` and ``mpgym sweep nerf train DATA ...``: seeds x grid.

::

    mpgym sweep gen train made --data digits --seeds 0-2 --grid lr=1e-3,3e-4
        [--train.steps 2000] [any flag of 'mpgym gen train made'] [the sweep flags]
    mpgym sweep nerf train data/tabletop --preset tiny --seeds 0-1 --grid lr=1e-2,3e-3
        [--max-seconds 60] [any flag of 'mpgym nerf train'] [the sweep flags]

The sweep flags (``--seeds``, ``--grid``, ``--num-cpus``, ``--address``, ``--storage``,
``--out``) are those of ``mpgym sweep train`` (:mod:`mpgym.cli.sweep`), which runs the trials
on Ray Tune and writes the table. Every trial is exactly ``mpgym gen train`` (parsed by
:func:`mpgym.cli.gen.parse_train_args`, trained by :func:`mpgym.cli.gen.train_run`, seeded by
``--train.seed``) or ``mpgym nerf train`` (:func:`mpgym.cli.nerf.parse_train_args`,
:func:`mpgym.cli.nerf.train_run`, ``--seed``), its run directory under
``DIR/runs/<point>/``. Each reports the metric its trainer reports: the generative trainer's
best validation loss (its model selection score: the model's loss on the validation split, the
NLL in nats for likelihood models; lower is better) and NeRF's final test PSNR (dB, higher is
better). No threshold applies: "solved" is n/a.

Grid keys: for ``gen``, the fields of the model's config and of the training loop as their
flags name them (``model.hidden``, ``train.lr``), a name only one of them has also bare
(``lr``); for ``nerf``, the fields of :class:`neural3d.nerf.presets.NerfConfig` (``lr``,
``steps``). The seeds set the seed fields, so those are not grid keys.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

from agents.common.sweep import (
    Trial,
    config_keys,
    downsample,
    expand_trials,
    parse_grid,
    parse_seeds,
    point_slug,
    prefixed_keys,
)
from mpgym.cli.sweep import Metric, SweepPlan, grid_flags, sweep_flags
from mpgym.errors import MpgymError

VAL_LOSS = Metric("best validation loss", "val_loss", False)
"""The metric of generative sweeps (``best_val`` of :func:`generative.trainer.train`)."""
TEST_PSNR = Metric("test PSNR (dB)", "test_psnr", True)
"""The metric of NeRF sweeps (the final test-view PSNR of ``mpgym nerf train``)."""


# -- pure: grid keys and each trial's arguments --------------------------------------------------
def gen_grid_keys(config_cls: type) -> tuple[list[str], dict[str, str]]:
    """Grid keys of ``mpgym gen train`` for a model config: ``model.*`` and ``train.*``.

    Returns:
        ``(keys, aliases)``: ``aliases`` maps a field name only one of the two configs has to
        its key (``lr`` -> ``train.lr``).
    """
    from generative.trainer import TrainConfig

    return prefixed_keys({"model": config_cls, "train": TrainConfig})


def gen_trial_argv(model: str, rest: list[str], trial: Trial, out: Path) -> list[str]:
    """``mpgym gen train`` arguments of one trial: its seed, its point, its run directory.

    The run directory is ``out/runs/<point>/<model>-s<seed>``.

    Example:
        >>> gen_trial_argv("made", ["--data", "digits"], Trial((("train.lr", "1e-3"),), 2),
        ...                Path("/s"))  # doctest: +NORMALIZE_WHITESPACE
        ['made', '--data', 'digits', '--train.seed', '2', '--train.lr', '1e-3',
         '--out', '/s/runs/train.lr=1e-3', '--name', 'made-s2']
    """
    return [model, *rest, "--train.seed", str(trial.seed), *grid_flags(trial.point),
            "--out", str(out / "runs" / point_slug(trial.point)),
            "--name", f"{model}-s{trial.seed}"]


def nerf_trial_argv(data: str, rest: list[str], trial: Trial) -> list[str]:
    """``mpgym nerf train`` arguments of one trial (its run directory is chosen apart).

    Example:
        >>> nerf_trial_argv("data/t", ["--preset", "tiny"], Trial((("lr", "1e-2"),), 1))
        ['data/t', '--preset', 'tiny', '--seed', '1', '--lr', '1e-2']
    """
    return [data, *rest, "--seed", str(trial.seed), *grid_flags(trial.point)]


def nerf_run_dir(out: Path, trial: Trial) -> Path:
    """``out/runs/<point>/nerf-s<seed>``: a NeRF trial's run directory."""
    return out / "runs" / point_slug(trial.point) / f"nerf-s{trial.seed}"


def _parsed(parse: Any, argv: list[str], label: str, command: str) -> Any:
    """``parse(argv)``, a parser's exit turned into an MpgymError naming the grid point."""
    try:
        return parse(argv)
    except SystemExit:
        raise MpgymError(f"the flags of grid point {label} are not accepted by '{command}' "
                         f"(see the message above): {' '.join(argv)}") from None


# -- planning: everything checked before Ray starts -------------------------------------------
def plan_gen_sweep(argv: list[str]) -> tuple[SweepPlan, dict[str, Any]]:
    """Check a ``sweep gen train`` command line (MODEL first) and expand it; nothing is written.

    Raises:
        MpgymError: an unknown model, grid key or value, bad seeds, ``--train.seed`` (use
            ``--seeds``), budgets that cannot train, a model that does not fit the data, or a
            run directory holding something else.
    """
    from generative import MODELS, build_model, model_classes
    from generative.trainer import check_train_config
    from mpgym.cli.gen import TOY, _models_line, adapt_config, parse_train_args
    from mpgym.runs import check_run_target

    if not argv or argv[0].startswith("-"):
        raise MpgymError("name the model: mpgym sweep gen train MODEL ...")
    model = argv[0]
    if model not in MODELS:
        raise MpgymError(f"unknown model {model!r}; accepted: {_models_line()}.")
    sf = sweep_flags(argv[1:], seed_flags=("--train.seed", "--seed"))
    seeds = parse_seeds(sf.seeds)
    keys, aliases = gen_grid_keys(model_classes(model)[1])
    trials = expand_trials(seeds, parse_grid(sf.grid, keys, aliases))
    first = _parsed(parse_train_args, [model, *sf.rest], "default", f"mpgym gen train {model}")
    out = Path(sf.out or Path("runs") / "sweep" / f"gen-{model}-{first.data}").resolve()
    argvs = []
    for i, trial in enumerate(trials):
        args = gen_trial_argv(model, sf.rest, trial, out)
        req = _parsed(parse_train_args, args, trial.label, f"mpgym gen train {model}")
        check_train_config(req.train_cfg)
        cfg = adapt_config(model, req.model_cfg, req.data)
        if getattr(cfg, "num_classes", 0) > 0 and req.data in TOY:
            raise MpgymError("conditional models need labelled data; use --data digits.")
        if i == 0:
            build_model(model, cfg)  # a config that builds no model is refused here
        check_run_target(req.out / req.run_name, kind=model, overwrite=req.overwrite)
        argvs.append(args)
    plan = SweepPlan(algo=model, env_id=first.data, trials=trials, argvs=argvs, out=out,
                     threshold=None, x_label="step", kind="gen", metric=VAL_LOSS)
    return plan, sf.engine


def plan_nerf_sweep(argv: list[str]) -> tuple[SweepPlan, dict[str, Any]]:
    """Check a ``sweep nerf train`` command line (DATA first) and expand it; nothing is written.

    Raises:
        MpgymError: a missing dataset, an unknown preset, grid key or value, bad seeds,
            ``--seed`` (use ``--seeds``), bad options, or a run directory holding something
            else.
    """
    from mpgym.cli.nerf import parse_train_args
    from neural3d.nerf.presets import NerfConfig

    if not argv or argv[0].startswith("-"):
        raise MpgymError("name the dataset: mpgym sweep nerf train DATA ...")
    data = argv[0]
    sf = sweep_flags(argv[1:], seed_flags=("--seed",))
    seeds = parse_seeds(sf.seeds)
    trials = expand_trials(seeds, parse_grid(sf.grid, config_keys(NerfConfig)))
    if not Path(data).exists():
        raise MpgymError(f"no dataset at {data!r}: give a folder with transforms_train.json "
                         "(or transforms.json), or such a JSON file.")
    folder = (Path(data).parent if Path(data).suffix.lower() == ".json" else Path(data)).resolve()
    out = Path(sf.out or Path("runs") / "sweep" / f"nerf-{folder.name}").resolve()
    argvs = []
    for trial in trials:
        args = nerf_trial_argv(data, sf.rest, trial)
        run_dir = nerf_run_dir(out, trial)
        _parsed(lambda a, d=run_dir: parse_train_args(a, path=d), args, trial.label,
                "mpgym nerf train")
        argvs.append([*args, "--run-dir", str(run_dir)])
    plan = SweepPlan(algo="nerf", env_id=folder.name, trials=trials, argvs=argvs,
                     out=out, threshold=None, x_label="step", kind="nerf", metric=TEST_PSNR)
    return plan, sf.engine


# -- one trial ----------------------------------------------------------------------------------
def _val_curve(run_dir: Path) -> tuple[list[float], list[float]]:
    """``(steps, validation scores)`` from a generative run's ``metrics.csv``."""
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val") not in (None, "")]
    return [float(r["step"]) for r in rows], [float(r["val"]) for r in rows]


def run_gen_trial(argv: list[str]) -> dict[str, Any]:
    """Train one trial exactly as ``mpgym gen train`` does; return what it reports.

    Returns:
        ``val_loss`` (the best validation loss, or the last one with
        ``--train.no-select-best``: the score of the weights the run keeps), ``curve_x`` /
        ``curve_y`` (steps and validation scores), ``run_dir`` and ``train_s``.
    """
    from mpgym.cli.gen import parse_train_args, train_run

    req = parse_train_args(argv)
    t0 = time.perf_counter()
    run_dir = train_run(**vars(req))
    xs, ys = _val_curve(run_dir)
    finite = [y for y in ys if math.isfinite(y)]
    if req.train_cfg.select_best:
        val = min(finite) if finite else math.nan
    else:
        val = ys[-1] if ys else math.nan
    xs, ys = downsample(xs, ys)
    return {VAL_LOSS.key: val, "curve_x": xs, "curve_y": ys, "run_dir": str(run_dir),
            "train_s": time.perf_counter() - t0}


def run_nerf_trial(argv: list[str]) -> dict[str, Any]:
    """Train one trial exactly as ``mpgym nerf train`` does; return what it reports.

    ``argv`` ends with ``--run-dir PATH`` (the trial's run directory, set by the sweep).

    Returns:
        ``test_psnr``, ``test_ssim``, ``curve_x`` / ``curve_y`` (steps and the periodic PSNR
        checks), ``run_dir`` and ``train_s``.
    """
    from mpgym.cli.nerf import parse_train_args, train_run

    *args, flag, run_dir = argv
    if flag != "--run-dir":
        raise MpgymError("a NeRF sweep trial's arguments end with --run-dir PATH.")
    req = parse_train_args(args, path=Path(run_dir))
    t0 = time.perf_counter()
    result = train_run(req, progress_bar=False)
    xs, ys = downsample([float(r["step"]) for r in result.history],
                        [float(r["psnr"]) for r in result.history])
    return {TEST_PSNR.key: result.psnr, "test_ssim": result.ssim, "curve_x": xs,
            "curve_y": ys, "run_dir": str(req.path), "train_s": time.perf_counter() - t0}


__all__ = ["TEST_PSNR", "VAL_LOSS", "gen_grid_keys", "gen_trial_argv", "nerf_run_dir",
           "nerf_trial_argv", "plan_gen_sweep", "plan_nerf_sweep", "run_gen_trial",
           "run_nerf_trial"]
