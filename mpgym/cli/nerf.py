"""``mpgym render-dataset`` and ``mpgym nerf train|render`` (flags from the library's configs).

Examples::

    mpgym render-dataset tabletop --views 100 --resolution 128 --out data/tabletop
    mpgym nerf train data/tabletop --preset hash --max-seconds 600
    mpgym nerf train data/my-capture/transforms.json --preset hash   # nerfstudio / Instant-NGP
    mpgym nerf render runs/nerf/tabletop-hash --path turntable -o turntable.gif
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from mpgym.errors import MpgymError
from neural3d.nerf.presets import NerfConfig

log = logging.getLogger("mpgym.nerf")


def _positional(argv: list[str], flag: str) -> list[str]:
    """Let the first bare word stand for ``flag`` (``mpgym nerf train DIR`` -> ``--data DIR``)."""
    if argv and not argv[0].startswith("-"):
        return [flag, argv[0], *argv[1:]]
    return argv


def render_dataset_main(argv: list[str]) -> int:
    """``mpgym render-dataset MESH_OR_BUILTIN --views N --resolution R --out DIR``."""
    from neural3d.data.multiview import RenderDatasetConfig, check_render_config, render_dataset

    cfg = tyro.cli(RenderDatasetConfig, args=_positional(argv, "--source"),
                   prog="mpgym render-dataset")
    check_render_config(cfg)
    out = render_dataset(cfg)
    print(f"wrote {out} (transforms_train/val/test.json + PNGs)")
    return 0


@dataclass
class TrainArgs:
    """Train a NeRF on a multi-view dataset (NeRF-synthetic, nerfstudio or Instant-NGP layout)."""

    data: Path = Path("data/tabletop")
    """Dataset: a folder with transforms_train.json and transforms_test.json, or with one
    transforms.json (every 8th frame is held out for testing), or such a JSON file."""
    preset: str = "hash"
    """Named preset the other flags override: hash, vanilla, tiny."""
    name: str | None = None
    """Run name (default: <data folder>-<preset>); the run goes to runs/nerf/<name>."""
    downscale: int = 1
    """Shrink images by this factor (4 turns 800-pixel NeRF-synthetic into 200)."""
    overwrite: bool = False
    """Replace whatever runs/nerf/<name> holds (a run of another kind, other files); a NeRF run
    there is replaced without it."""
    config: NerfConfig = field(default_factory=NerfConfig)
    """Training options."""


def _given(argv: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def _run_path(args: TrainArgs) -> Path:
    """``runs/nerf/<name>``, refusing names that would leave that folder."""
    data = Path(args.data)
    default = f"{(data.parent if data.suffix.lower() == '.json' else data).resolve().name}-" \
        f"{args.preset}"
    name = args.name or default
    if name in (".", "..") or Path(name).name != name:
        raise MpgymError(f"--name {name!r} must be a plain folder name (no '/' or '..').")
    return Path("runs") / "nerf" / name


@dataclass(frozen=True)
class NerfTrainRequest:
    """What ``mpgym nerf train DATA ...`` asked for, checked (the argument of :func:`train_run`).

    Attributes:
        args: the parsed options (preset, then flags).
        path: the run directory (``runs/nerf/<name>`` unless the caller chose one).
        aabb_given: ``--aabb-scale`` was on the command line (else a dataset's scene box wins).
    """

    args: TrainArgs
    path: Path
    aabb_given: bool = False


def parse_train_args(argv: list[str], *, path: Path | None = None) -> NerfTrainRequest:
    """The checked request of ``DATA [flags]`` (``argv`` as after ``mpgym nerf train``).

    Everything the user can get wrong is refused here, before anything is read or written.

    Args:
        argv: the arguments.
        path: the run directory instead of ``runs/nerf/<name>`` (a sweep's trials).

    Raises:
        MpgymError: an unknown preset, bad options or device, or a run directory holding
            something else (without ``--overwrite``).
    """
    from mpgym.devices import get_device
    from mpgym.errors import check_positive
    from mpgym.runs import check_run_target
    from neural3d.nerf.presets import check_config, preset

    argv = _positional(argv, "--data")
    name = "hash"
    for i, a in enumerate(argv):
        if a == "--preset" and i + 1 < len(argv):
            name = argv[i + 1]
        elif a.startswith("--preset="):
            name = a.split("=", 1)[1]
    default = TrainArgs(preset=name, config=preset(name))
    args = tyro.cli(TrainArgs, args=argv, default=default, prog="mpgym nerf train",
                    config=(tyro.conf.OmitArgPrefixes,))
    check_positive("--downscale", args.downscale)
    check_config(args.config)
    get_device(args.config.device)
    target = check_run_target(path if path is not None else _run_path(args), kind="nerf",
                              overwrite=args.overwrite)
    return NerfTrainRequest(args, target, _given(argv, "--aabb-scale"))


def train_run(req: NerfTrainRequest, *, progress_bar: bool = True):
    """Train the NeRF of a request into its run directory; return the trainer's result.

    The run is built in a hidden sibling directory and moved into place at the end (also on
    Ctrl-C, with the checkpoint saved).
    """
    from dataclasses import replace

    from mpgym import save_on_interrupt
    from mpgym.runs import staged_run
    from neural3d.data.multiview import load_split
    from neural3d.nerf.trainer import NerfTrainer

    args, path = req.args, req.path
    train = load_split(args.data, "train", downscale=args.downscale)
    test = load_split(args.data, "test", downscale=args.downscale)
    config = args.config
    if train.scene_box is not None and not req.aabb_given:
        config = replace(config, aabb_scale=train.scene_box)
        log.info("nerf: scene box [-%g, %g]^3 from the dataset's aabb_scale", train.scene_box,
                 train.scene_box)
    log.info("nerf: %d train / %d test views at %dx%d -> %s", len(train), len(test),
             train.intrinsics.width, train.intrinsics.height, path)
    with staged_run(path, kind="nerf", overwrite=args.overwrite) as run:
        trainer = NerfTrainer(config, train, test, run=run,
                              run_info={"data": str(Path(args.data).resolve())})
        with save_on_interrupt(lambda: trainer.save(run.file("checkpoint.safetensors")),
                               "nerf run"):
            result = trainer.train(progress_bar=progress_bar)
        _save_pictures(run.path, result.images)
    return result


def train_main(argv: list[str]) -> int:
    """``mpgym nerf train DATA_DIR --preset hash [options]``."""
    req = parse_train_args(argv)
    result = train_run(req)
    print(f"test PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.3f} after {result.steps} steps "
          f"({result.seconds:.0f} s); run: {req.path}")
    return 0


def _save_pictures(folder: Path, images: dict, third: str = "depth") -> None:
    """``test_view.png``: the target, the prediction and ``images[third]`` side by side."""
    import numpy as np

    from mpgym.plots import save_image_grid

    if images:
        save_image_grid(folder / "test_view.png",
                        np.stack([images["target"], images["pred"], images[third]]), scale=2)


@dataclass
class RenderArgs:
    """Render a trained NeRF along a camera path."""

    run_dir: Path = Path("runs/nerf/tabletop-hash")
    """The training run (config.json + checkpoint.safetensors)."""
    path: Literal["turntable", "test"] = "turntable"
    """Camera path: a circle around the scene, or the test cameras."""
    output: Annotated[Path | None, tyro.conf.arg(aliases=("-o",))] = None
    """GIF to write (default: <run_dir>/<path>.gif); a depth GIF goes beside it."""
    frames: int = 36
    """Frames of the turntable."""
    elevation: float = 30.0
    """Turntable elevation in degrees."""
    radius: float = 4.0
    """Turntable camera distance."""
    resolution: int = 128
    """Turntable image size in pixels."""
    fps: int = 12
    """GIF frame rate."""


def _check_render_args(args: RenderArgs) -> Path:
    """Refuse bad options before loading anything; return the GIF path."""
    from mpgym.errors import check_positive

    check_positive("--frames", args.frames)
    check_positive("--resolution", args.resolution)
    check_positive("--fps", args.fps)
    check_positive("--radius", args.radius, integer=False)
    if not math.isfinite(args.elevation):
        raise MpgymError(f"--elevation must be a finite number of degrees; got {args.elevation}.")
    gif = args.output or args.run_dir / f"{args.path}.gif"
    if gif.suffix.lower() != ".gif":
        raise MpgymError(f"-o {gif}: only .gif output is written; give a path ending in .gif.")
    return gif


def render_main(argv: list[str]) -> int:
    """``mpgym nerf render RUN_DIR --path turntable -o turntable.gif``."""
    import numpy as np
    import torch

    from mpgym.plots import save_gif
    from neural3d.cameras import Intrinsics, turntable_poses
    from neural3d.data.multiview import NERF_SYNTHETIC_ANGLE
    from neural3d.nerf.io import load_nerf
    from neural3d.nerf.renderer import depth_to_image, render_image

    args = tyro.cli(RenderArgs, args=_positional(argv, "--run-dir"), prog="mpgym nerf render")
    gif = _check_render_args(args)
    field_, cfg, grid = load_nerf(args.run_dir)
    if args.path == "turntable":
        poses = turntable_poses(args.frames, args.radius, math.radians(args.elevation))
        cams = [Intrinsics.from_fov(NERF_SYNTHETIC_ANGLE, args.resolution)] * len(poses)
    else:
        data_dir = json_data_dir(args.run_dir)
        from neural3d.data.multiview import load_split

        test = load_split(data_dir, "test")
        poses, cams = test.c2w, [test.camera(i) for i in range(len(test))]
    rgb, depth = [], []
    kw = {"sampler": cfg.sampler, "grid": grid, "num_samples": cfg.num_samples,
          "num_fine": cfg.num_fine}
    for pose, intr in zip(poses, cams, strict=True):
        out = render_image(field_, torch.as_tensor(pose, dtype=torch.float32), intr, **kw)
        rgb.append(out["rgb"].clamp(0, 1).numpy())
        depth.append(depth_to_image(out["depth"], out["opacity"]).numpy())
    save_gif(gif, [np.asarray(f) for f in rgb], fps=args.fps)
    dgif = gif.with_name(gif.stem + "_depth.gif")
    save_gif(dgif, depth, fps=args.fps)
    print(f"wrote {gif} and {dgif} ({len(rgb)} frames)")
    return 0


def json_data_dir(run_dir: Path) -> Path:
    """The dataset a run was trained on (``data`` in its ``config.json``)."""
    import json

    p = Path(run_dir) / "config.json"
    try:
        meta = json.loads(p.read_bytes()) if p.is_file() else {}
    except (OSError, ValueError, RecursionError) as exc:
        raise MpgymError(f"{p} is not valid JSON ({exc}).") from None
    data = meta.get("data") if isinstance(meta, dict) else None
    if not data or not isinstance(data, str):
        raise MpgymError(f"{run_dir}/config.json does not name its dataset; use --path turntable.")
    return Path(data)


def main(argv: list[str]) -> int:
    """``mpgym nerf {train,render} ...``."""
    commands = {"train": train_main, "render": render_main}
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mpgym nerf {train,render} ...\n\n  train   train a NeRF on a dataset folder"
              " or transforms.json\n  render  render a trained NeRF (turntable GIF, depth)",
              file=sys.stdout)
        return 0
    if argv[0] not in commands:
        raise MpgymError(f"unknown nerf command {argv[0]!r}; accepted: train, render.")
    return commands[argv[0]](argv[1:])
