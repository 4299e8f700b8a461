"""``mpgym motion train|sample|eval``: generate human motion on the SMPL body.

Examples::

    mpgym motion train mdm                      # motion diffusion, runs/motion/mdm-default
    mpgym motion train genmm                    # generative motion matching (no training)
    mpgym motion sample runs/motion/mdm-default --label walk -o walk.gif --npz walk.npz
    mpgym motion eval runs/motion/mdm-default   # scores against the held-out windows

Model flags come from each model's dataclass config (``mpgym motion train mdm --help``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro

from mpgym.cli import helped, pop_flag
from mpgym.errors import MpgymError, check_positive

log = logging.getLogger("mpgym.motion")

USAGE = """usage: mpgym motion {train,sample,eval} ...

  train MODEL [--preset default|tiny]   train a motion generator; MODEL: %s
  sample RUN_DIR --label walk --seconds 10 -o walk.gif [--npz walk.npz] [--bvh walk.bvh]
  eval RUN_DIR                          Fréchet distance, recognition, diversity, foot
                                        skating and novelty against the held-out windows
"""
MAX_SECONDS = 600.0
"""Longest motion one ``motion sample`` generates."""
MODEL_FILE = "model.safetensors"


def main(argv: list[str]) -> int:
    """Dispatch ``mpgym motion SUBCOMMAND``."""
    from bodies.motion import GENERATORS

    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE % ", ".join(GENERATORS))
        return 0
    sub, rest = argv[0], argv[1:]
    commands = {"train": train_main, "sample": sample_main, "eval": eval_main}
    if sub not in commands:
        raise MpgymError(f"unknown motion command {sub!r}; accepted: {', '.join(commands)}.")
    return commands[sub](rest)


# ---------------------------------------------------------------------------- train
def train_main(argv: list[str]) -> int:
    """``mpgym motion train MODEL [--preset NAME] [flags]``."""
    from bodies.motion import GENERATORS, generator_api

    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE % ", ".join(GENERATORS))
        return 0
    name, argv = argv[0], argv[1:]
    api = generator_api(name)
    argv, preset = pop_flag(argv, "--preset")
    preset = preset or "default"
    if preset not in api.presets:
        raise MpgymError(f"unknown {name} preset {preset!r}; accepted: {', '.join(api.presets)}.")

    fields: list[tuple[str, Any, Any]] = [
        ("model", api.config_cls, dataclasses.field(default=api.presets[preset])),
    ]
    if api.train_presets is not None:
        from generative.trainer import TrainConfig

        fields.append(("train", TrainConfig, dataclasses.field(default=api.train_presets[preset])))
    fields += [
        ("seed", helped(int, "Seed of the initialisation, minibatches and sampling."), 0),
        ("out", helped(Path, "Folder that holds the run directory."), Path("runs/motion")),
        ("name", helped(str, "Run directory name inside --out (default: MODEL-PRESET)."), ""),
        (
            "overwrite",
            helped(bool, "Replace a run directory that holds another kind of run or files."),
            False,
        ),
    ]
    args_cls = dataclasses.make_dataclass(
        "MotionTrainArgs",
        [
            (n, t, d if isinstance(d, dataclasses.Field) else dataclasses.field(default=d))
            for n, t, d in fields
        ],
    )
    args = tyro.cli(
        args_cls,
        args=argv,
        prog=f"mpgym motion train {name}",
        description=f"Train {name} ({api.title}) on the motion clips (preset {preset}).",
    )
    run_dir = train_run(
        name,
        args.model,
        getattr(args, "train", None),
        seed=args.seed,
        preset=preset,
        out=args.out,
        run_name=args.name,
        overwrite=args.overwrite,
    )
    print(f"run: {run_dir}")
    return 0


def train_run(
    name: str,
    config: Any,
    train: Any = None,
    *,
    seed: int = 0,
    preset: str = "default",
    out: Path = Path("runs/motion"),
    run_name: str = "",
    overwrite: bool = False,
) -> Path:
    """Fit one generator and write its run directory: config, metrics, model, a sample GIF.

    The run is built in a hidden sibling directory and moved into place when it completes
    (:func:`mpgym.runs.staged_run`), so a failed run leaves nothing behind.
    """
    from bodies.motion import generator_api
    from mpgym.runs import staged_run

    api = generator_api(name)
    if train is not None:
        from generative.trainer import check_train_config

        check_train_config(train)
    if run_name and (run_name in (".", "..") or Path(run_name).name != run_name):
        raise MpgymError(f"--name {run_name!r} must be a plain folder name (no '/' or '..').")
    target = Path(out) / (run_name or f"{name}-{preset}")
    kind = f"motion-{name}"
    with staged_run(target, kind=kind, overwrite=overwrite) as run:
        cfg: dict[str, Any] = {"model": config}
        if train is not None:
            cfg["train"] = train
        model = api.fit(config, train=train, run=run, seed=seed)
        model.save(run.file(MODEL_FILE))
        # after the fit, which records its own config: this one names the generator to load
        run.write_config(cfg, kind=kind, generator=name, preset=preset, seed=seed)
        _preview(model, run.path / "sample-walk.gif", seed)
    return target


def _preview(model: Any, path: Path, seed: int) -> None:
    """A 4-s walk, if the model knows the label, next to the real clip."""
    import torch

    labels = list(getattr(model, "label_names", ()))
    if "walk" not in labels:
        return
    feats = model.generate(1, 4.0, labels=["walk"], generator=torch.Generator().manual_seed(seed))
    write_gif(path, feats[0], "walk", compare=True)


# ---------------------------------------------------------------------------- loading
def load_run_model(path: Path) -> tuple[str, Any]:
    """``(generator name, model)`` from a run directory (or its ``model.safetensors``)."""
    from bodies.motion import generator_api
    from mpgym.runs import read_run_config

    path = Path(path)
    run_dir = path.parent if path.suffix == ".safetensors" else path
    cfg = read_run_config(run_dir)
    name = cfg.get("generator")
    if not isinstance(name, str) or not str(cfg.get("kind", "")).startswith("motion-"):
        raise MpgymError(f"{run_dir} is not a motion run (its config.json names no generator).")
    file = run_dir / MODEL_FILE
    if not file.is_file():
        raise MpgymError(f"{run_dir} has no {MODEL_FILE}; was its training interrupted?")
    return name, generator_api(name).model_cls.load(file)


# ---------------------------------------------------------------------------- sample
@dataclass
class SampleArgs:
    """Options of ``mpgym motion sample``."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory written by ``mpgym motion train``."""
    label: str = "walk"
    """Motion label (one of the clips the model was trained on: walk, run, jump, ...)."""
    seconds: float = 10.0
    """Length of the motion."""
    output: Annotated[Path | None, tyro.conf.arg(aliases=["-o"])] = None
    """GIF of the body performing the motion (next to the real clip with --compare)."""
    npz: Path | None = None
    """AMASS-style .npz to write (poses, trans, mocap_framerate)."""
    bvh: Path | None = None
    """BVH file to write (opens in Blender and other animation tools)."""
    seed: int = 0
    """Seed of the sampler."""
    compare: bool = True
    """Draw the real clip of the label beside the generated motion."""


def sample_main(argv: list[str]) -> int:
    """``mpgym motion sample RUN --label walk --seconds 10 -o walk.gif --npz walk.npz``."""
    import torch

    args = tyro.cli(SampleArgs, args=argv, prog="mpgym motion sample")
    if not (isinstance(args.seconds, (int, float)) and math.isfinite(args.seconds)):
        raise MpgymError(f"--seconds must be a finite number; got {args.seconds!r}.")
    if not 0 < args.seconds <= MAX_SECONDS:
        raise MpgymError(f"--seconds must be in (0, {MAX_SECONDS:g}]; got {args.seconds:g}.")
    if args.output is None and args.npz is None and args.bvh is None:
        raise MpgymError("nothing to write: give -o motion.gif, --npz motion.npz or --bvh file.")
    for flag, p, suffix in (
        ("-o", args.output, ".gif"),
        ("--npz", args.npz, ".npz"),
        ("--bvh", args.bvh, ".bvh"),
    ):
        if p is not None and p.suffix.lower() != suffix:
            raise MpgymError(f"{flag} writes a {suffix} file; got {p.name!r}.")
    _, model = load_run_model(args.run_dir)
    labels = tuple(model.label_names)
    if args.label not in labels:
        raise MpgymError(f"unknown label {args.label!r}; this model knows: {', '.join(labels)}.")
    feats = model.generate(
        1, args.seconds, labels=[args.label], generator=torch.Generator().manual_seed(args.seed)
    )[0]
    written = write_outputs(
        feats, args.label, gif=args.output, npz=args.npz, bvh=args.bvh, compare=args.compare
    )
    for p in written:
        print(f"wrote {p}")
    return 0


def write_outputs(
    feats,
    label: str,
    *,
    gif: Path | None,
    npz: Path | None,
    bvh: Path | None,
    compare: bool = True,
) -> list[Path]:
    """Write generated features ``(T, D)`` as GIF / AMASS ``.npz`` / BVH; return the paths."""
    from bodies.motion.features import features_to_motion

    motion = features_to_motion(feats, label=label)
    out = []
    if npz is not None:
        from bodies.motion.dataset import save_amass

        out.append(save_amass(npz, motion))
    if bvh is not None:
        from bodies.motion.bvh import save_bvh

        out.append(save_bvh(bvh, motion))
    if gif is not None:
        out.append(write_gif(gif, feats, label, compare=compare))
    return [Path(p) for p in out]


def write_gif(path: Path, feats, label: str, *, compare: bool = True) -> Path:
    """The body performing generated features ``(T, D)``, with the real clip beside it."""
    from bodies.motion.dataset import deepmimic_motion
    from bodies.motion.features import features_to_motion
    from bodies.motion.render import save_motion_gif

    motions, titles = [features_to_motion(feats, label=label)], [f"generated {label}"]
    if compare:
        from bodies.motion.clips import CLIP_NAMES

        if label in CLIP_NAMES:
            motions.append(deepmimic_motion(label))
            titles.append(f"mocap {label}")
    return save_motion_gif(path, motions, titles=titles)


# ---------------------------------------------------------------------------- eval
@dataclass
class EvalArgs:
    """Options of ``mpgym motion eval``."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory written by ``mpgym motion train``."""
    per_label: int = 32
    """Generated windows per label."""
    seed: int = 0
    """Seed of the sampler and the metric subsamples."""
    json: Path | None = None
    """Also write the scores as JSON here."""


def eval_main(argv: list[str]) -> int:
    """``mpgym motion eval RUN``: the motion metrics against the held-out windows."""
    from bodies.motion.evaluate import evaluate_generator, format_scores

    args = tyro.cli(EvalArgs, args=argv, prog="mpgym motion eval")
    check_positive("--per-label", args.per_label)
    if args.per_label > 1000:
        raise MpgymError(f"--per-label must be at most 1000; got {args.per_label}.")
    name, model = load_run_model(args.run_dir)
    scores = evaluate_generator(model, per_label=args.per_label, seed=args.seed)
    print(format_scores(name, scores))
    if args.json is not None:
        from mpgym.checkpoint import atomic_write_text

        atomic_write_text(args.json, json.dumps(scores, indent=1))
        print(f"wrote {args.json}")
    return 0
