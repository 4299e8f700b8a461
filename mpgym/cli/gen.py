"""``mpgym gen train|sample|eval``: train, sample and evaluate generative models.

    mpgym gen train MODEL --data digits|digits_binary|moons|gaussians8|checkerboard|spirals
    mpgym gen sample RUN_DIR -n 64 -o grid.png
    mpgym gen eval RUN_DIR

Model flags come from each model's dataclass config (``mpgym gen train made --help``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from mpgym.cli import helped
from mpgym.errors import MpgymError, check_positive

log = logging.getLogger("mpgym.gen")

DataName = Literal["digits", "digits_binary", "moons", "gaussians8", "checkerboard", "spirals"]
TOY = ("moons", "gaussians8", "checkerboard", "spirals")
# models that accept 2D points, and the config changes that make them do so
POINT_MODELS: dict[str, dict[str, Any]] = {
    "realnvp2d": {},
    "ddpm": {"net": "mlp", "dim": 2, "discrete": False, "channels": 128},
    "gan": {"arch": "mlp", "dim": 2},
    "vae": {"decoder": "gaussian", "input_dim": 2, "latent": 2},
}

USAGE = """usage: mpgym gen {train,sample,eval} ...

  train MODEL --data DATA   train a model; MODEL is one of: %s
  sample RUN_DIR -n 64 -o grid.png
  eval RUN_DIR              test NLL (nats, bits/dim) and Fréchet distance
"""
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf")
"""Picture formats ``gen sample -o`` writes (digit grids through Pillow, 2D plots matplotlib)."""
MAX_SAMPLES = 10_000
"""Most samples one ``gen sample`` draws into a picture."""


def _models_line() -> str:
    from generative import MODELS

    return ", ".join(MODELS)


def adapt_config(name: str, config: Any, data: str) -> Any:
    """Fit a model config to the data: 2 levels for binary digits, point versions for 2D data."""
    if data in TOY:
        if name not in POINT_MODELS:
            raise MpgymError(
                f"model {name!r} does not model 2D points; for --data {data} use one of "
                f"{', '.join(POINT_MODELS)}."
            )
        return dataclasses.replace(config, **POINT_MODELS[name])
    if name == "realnvp2d":
        raise MpgymError(
            "realnvp2d models 2D points; use --data moons|gaussians8|checkerboard|spirals, "
            "or glow for digits."
        )
    if data == "digits_binary" and hasattr(config, "levels"):
        return dataclasses.replace(config, levels=2)
    return config


def load_data(data: str, seed: int = 0):
    """``(x_train, x_val, x_test, y_train, y_val)`` for a dataset name."""
    import torch

    from generative.data import load_digits_split, sample_toy

    if data in TOY:
        g = torch.Generator().manual_seed(seed)
        return (
            sample_toy(data, 10000, generator=g),
            sample_toy(data, 2000, generator=g),
            sample_toy(data, 2000, generator=g),
            None,
            None,
        )
    s = load_digits_split(binary=data == "digits_binary")
    return s.x_train, s.x_val, s.x_test, s.y_train, s.y_val


def save_samples(path: Path, samples, data: str, model=None) -> Path:
    """Digits as an image grid; points as a density + scatter plot."""
    from generative.data import plot_density_2d
    from generative.visuals import save_digit_grid

    with _atomic_output(path) as tmp:
        if data in TOY:
            lp = (
                model.log_prob
                if model is not None and hasattr(model, "log_prob") and not hasattr(model, "encode")
                else None
            )
            plot_density_2d(tmp, lp, samples, title=data)
        else:
            save_digit_grid(tmp, samples, levels=2 if data == "digits_binary" else 17)
    return path


def check_picture_path(path: Path) -> None:
    """Refuse an output picture whose format is not written (before any work).

    Raises:
        MpgymError: the suffix is not one of :data:`PICTURE_SUFFIXES`, or the path is a directory.
    """
    if path.suffix.lower() not in PICTURE_SUFFIXES:
        raise MpgymError(
            f"cannot write a picture to {str(path)!r}: the name must end in "
            f"{', '.join(PICTURE_SUFFIXES)}."
        )
    if path.is_dir():
        raise MpgymError(f"{path} is a directory; give a file name ending in .png.")


@contextlib.contextmanager
def _atomic_output(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` (same suffix) that replaces ``path`` when done.

    An interrupted or failed write leaves neither a partial picture nor the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass(frozen=True)
class GenTrainRequest:
    """What ``mpgym gen train MODEL ...`` asked for: :func:`train_run`'s arguments, by name.

    Attributes:
        name: the model's registry name.
        model_cfg: its config (defaults, then ``--model.*`` flags).
        train_cfg: the loop's :class:`generative.trainer.TrainConfig` (``--train.*`` flags).
        data: the dataset name.
        out: the folder holding the run directory.
        run_name: the run directory's name inside ``out`` ("" for MODEL-DATA).
        overwrite: replace a run directory holding another model's run or other files.
    """

    name: str
    model_cfg: Any
    train_cfg: Any
    data: str = "digits"
    out: Path = Path("runs/gen")
    run_name: str = ""
    overwrite: bool = False


def parse_train_args(argv: list[str]) -> GenTrainRequest:
    """The request of ``MODEL [flags]`` (``argv`` as after ``mpgym gen train``).

    ``--help`` prints the flags and exits, as a parser does.

    Raises:
        MpgymError: an unknown model.
    """
    from generative import MODELS, model_classes

    name = argv[0]
    if name not in MODELS:
        raise MpgymError(f"unknown model {name!r}; accepted: {_models_line()}.")
    _, cfg_cls = model_classes(name)
    from generative.trainer import TrainConfig

    args_cls = dataclasses.make_dataclass(
        "GenTrainArgs",
        [
            (
                "data",
                helped(DataName, "Training data: 8x8 digits (17 or 2 levels) or a 2D density."),
                dataclasses.field(default="digits"),
            ),
            ("model", cfg_cls, dataclasses.field(default_factory=cfg_cls)),
            ("train", TrainConfig, dataclasses.field(default_factory=TrainConfig)),
            (
                "out",
                helped(Path, "Folder that holds the run directory."),
                dataclasses.field(default=Path("runs/gen")),
            ),
            (
                "name",
                helped(str, "Run directory name inside --out (default: MODEL-DATA)."),
                dataclasses.field(default=""),
            ),
            (
                "overwrite",
                helped(
                    bool, "Replace a run directory that holds another model's run or other files."
                ),
                dataclasses.field(default=False),
            ),
        ],
    )
    args = tyro.cli(
        args_cls,
        args=argv[1:],
        prog=f"mpgym gen train {name}",
        description=f"Train {name} ({MODELS[name][3]}).",
    )
    return GenTrainRequest(
        name,
        args.model,
        args.train,
        data=args.data,
        out=args.out,
        run_name=args.name,
        overwrite=args.overwrite,
    )


def train_main(argv: list[str]) -> int:
    """``mpgym gen train MODEL [flags]``."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE % _models_line())
        return 0
    run_dir = train_run(**vars(parse_train_args(argv)))
    print(f"run: {run_dir}")
    return 0


def train_run(
    name: str,
    model_cfg: Any,
    train_cfg: Any,
    *,
    data: str = "digits",
    out: Path = Path("runs/gen"),
    run_name: str = "",
    overwrite: bool = False,
) -> Path:
    """Train one model and write its run directory (config, metrics, checkpoint, samples).

    The run is built in a hidden sibling directory and moved into place when it completes
    (:func:`mpgym.runs.staged_run`); a failed run leaves nothing behind.

    Raises:
        MpgymError: bad budgets, a config that builds no model, a model that does not fit the
            data, or a target directory that holds another kind of run (without ``overwrite``);
            all before any training.
    """
    import torch

    from generative import build_model
    from generative.trainer import check_train_config, train
    from mpgym.runs import check_run_target, staged_run

    check_train_config(train_cfg)
    model_cfg = adapt_config(name, model_cfg, data)
    cond = getattr(model_cfg, "num_classes", 0) > 0
    if cond and data in TOY:
        raise MpgymError("conditional models need labelled data; use --data digits.")
    target = Path(out) / (run_name or f"{name}-{data}")
    check_run_target(target, kind=name, overwrite=overwrite)
    torch.manual_seed(train_cfg.seed)
    model = build_model(name, model_cfg)
    x_train, x_val, _, y_train, y_val = load_data(data, train_cfg.seed)
    with staged_run(target, kind=name, overwrite=overwrite) as run:
        if name == "vqprior":  # two stages: the VQ-VAE on the images, then the prior on its codes
            from generative.token_prior import TokenPrior

            vqvae = build_model("vqvae", model_cfg.vqvae)
            train(vqvae, x_train, x_val, train_cfg, kind="vqvae")
            model = TokenPrior(model_cfg, vqvae)
        run.write_config({"model": model_cfg, "train": train_cfg}, kind=name, data=data)
        res = train(
            model,
            x_train,
            x_val,
            train_cfg,
            y_train=y_train if cond else None,
            y_val=y_val if cond else None,
            run=run,
            kind=name,
            model_config=model_cfg,
        )
        _finish_run(name, model, res, run.path, data, cond)
    return target


def _finish_run(name: str, model: Any, res: Any, run_path: Path, data: str, cond: bool) -> None:
    """Log the training summary and save the samples picture into the run."""
    import torch

    log.info(
        "%s: %d steps in %.0f s, best validation %.3f at step %d (%s)",
        name,
        res.steps,
        res.seconds,
        res.best_val,
        res.best_step,
        res.stopped,
    )
    if name != "vqvae":
        y = torch.arange(64) % 10 if cond else None
        kwargs = {"y": y} if cond else {}
        samples = model.sample(
            64 if data not in TOY else 2000, generator=torch.Generator().manual_seed(0), **kwargs
        )
        save_samples(run_path / "samples.png", samples, data, model)


@dataclass
class SampleArgs:
    """Options of ``mpgym gen sample``."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory (or checkpoint file) written by ``mpgym gen train``."""
    n: Annotated[int, tyro.conf.arg(aliases=["-n"])] = 64
    """Number of samples."""
    output: Annotated[Path, tyro.conf.arg(aliases=["-o"])] = Path("grid.png")
    """Picture to write (.png, .jpg or .pdf)."""
    seed: int = 0
    """Seed of the sampler."""
    ddim_steps: int = 0
    """DDPM only: sample with DDIM on this many steps (0: ancestral over all T)."""


def sample_main(argv: list[str]) -> int:
    """``mpgym gen sample RUN_DIR -n 64 -o grid.png``."""
    import torch

    from generative import load_run

    args = tyro.cli(SampleArgs, args=argv, prog="mpgym gen sample")
    check_positive("-n", args.n)
    if args.n > MAX_SAMPLES:
        raise MpgymError(f"-n must be at most {MAX_SAMPLES:,} for one picture; got {args.n}.")
    if args.ddim_steps < 0:
        raise MpgymError(f"--ddim-steps must be 0 (ancestral) or more; got {args.ddim_steps}.")
    check_picture_path(args.output)
    loaded = load_run(args.run_dir)
    name, model, data = loaded.name, loaded.model, loaded.data
    if args.ddim_steps and name != "ddpm":
        raise MpgymError(
            f"--ddim-steps applies to diffusion models (ddpm) only; {args.run_dir} holds a "
            f"{name!r} model. Leave the flag out."
        )
    if name == "vqvae":
        raise MpgymError(
            "the VQ-VAE has no prior over its tokens; sample a model with one (vae, made, ddpm...)."
        )
    if name == "ddpm" and args.ddim_steps > model.config.T:
        raise MpgymError(
            f"--ddim-steps must be at most the model's T = {model.config.T}; got {args.ddim_steps}."
        )
    g = torch.Generator().manual_seed(args.seed)
    kwargs: dict[str, Any] = {}
    if getattr(model, "num_classes", 0):
        kwargs["y"] = torch.arange(args.n) % model.num_classes
    if name == "ddpm" and args.ddim_steps > 0:
        samples = model.sample_ddim(args.n, steps=args.ddim_steps, generator=g, **kwargs)
    else:
        samples = model.sample(args.n, generator=g, **kwargs)
    path = save_samples(args.output, samples, data, model)
    print(f"wrote {path}")
    return 0


@dataclass
class EvalArgs:
    """Options of ``mpgym gen eval``."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory written by ``mpgym gen train``."""
    samples: int = 1000
    """Samples for the Fréchet distance (digits)."""
    fd: bool = True
    """Compute the Fréchet distance (trains the feature classifier once, cached next to the run)."""
    quick: bool = False
    """Cheaper likelihood estimators."""


def _classifier(cache: Path):
    """Load the digit classifier from ``cache`` or train it (about a minute) and save it there."""
    from generative.data import load_digits_split
    from generative.evaluation import DigitClassifier, train_classifier
    from mpgym import load_checkpoint, save_checkpoint

    if cache.exists():
        clf = DigitClassifier()
        clf.load_state_dict(load_checkpoint(cache, expected_kind="digit-classifier").state_dict)
        return clf.eval()
    log.info("training the feature classifier (cached at %s)", cache)
    res = train_classifier(load_digits_split(), steps=1500)
    save_checkpoint(
        cache, res.model.state_dict(), kind="digit-classifier", meta={"test_acc": res.test_acc}
    )
    return res.model


def eval_main(argv: list[str]) -> int:
    """``mpgym gen eval RUN_DIR``: test NLL in nats and bits/dim, and FD for digits."""
    import torch

    from generative import load_run
    from generative.data import load_digits_split
    from generative.evaluation import evaluate
    from mpgym import RunDir

    args = tyro.cli(EvalArgs, args=argv, prog="mpgym gen eval")
    if args.fd:
        check_positive("--samples", args.samples)
        if args.samples > 100 * MAX_SAMPLES:
            raise MpgymError(
                f"--samples must be at most {100 * MAX_SAMPLES:,}; got {args.samples}."
            )
    loaded = load_run(args.run_dir)
    name, model, data = loaded.name, loaded.model, loaded.data
    run = RunDir(args.run_dir if args.run_dir.is_dir() else args.run_dir.parent)
    if data in TOY:
        _, _, x_test, _, _ = load_data(data, seed=1)
        if not hasattr(model, "log_prob"):
            raise MpgymError(f"{name} has no likelihood to evaluate on 2D points.")
        with torch.no_grad():
            nll = float(-model.log_prob(x_test).mean())
        result: dict[str, Any] = {"model": name, "data": data, "test_nll_nats": nll}
    else:
        if data == "digits_binary":
            raise MpgymError(
                "eval reports the 17-level digits benchmark; train with --data digits."
            )
        split = load_digits_split()
        clf = (
            _classifier(run.path.parent / "digit-classifier.safetensors")
            if args.fd and name != "vqvae"
            else None
        )
        ev = evaluate(
            name,
            model,
            split,
            classifier=clf,
            n_samples=args.samples if clf else 0,
            quick=args.quick,
        )
        result = {
            "model": name,
            "data": data,
            "bound": ev.bound,
            "test_nll_nats": ev.nll_nats,
            "bits_per_dim": ev.bits_per_dim,
            "fd": ev.fd,
        }
    run.write_json("eval.json", result)
    for k, v in result.items():
        print(f"{k:>14}: {v:.4f}" if isinstance(v, float) and math.isfinite(v) else f"{k:>14}: {v}")
    return 0


def main(argv: list[str]) -> int:
    """Entry point of ``mpgym gen``."""
    commands = {"train": train_main, "sample": sample_main, "eval": eval_main}
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE % _models_line())
        return 0
    if argv[0] not in commands:
        raise MpgymError(f"unknown subcommand {argv[0]!r}; accepted: train, sample, eval.")
    return commands[argv[0]](argv[1:])
