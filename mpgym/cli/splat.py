"""``mpgym splat train|render|export``: 3D Gaussian splatting (flags from :class:`SplatConfig`).

Examples::

    mpgym render-dataset tabletop --views 100 --resolution 128 --out data/tabletop
    mpgym splat train data/tabletop --preset cpu --max-seconds 600
    mpgym splat train data/my-capture --preset cpu        # COLMAP: images/ + sparse/0/
    mpgym splat render runs/splat/tabletop-cpu --path turntable -o turntable.gif
    mpgym splat export runs/splat/tabletop-cpu -o scene.ply   # opens in common splat viewers
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated

import tyro

from mpgym.cli import nerf as nerf_cli
from mpgym.cli.nerf import _given, _positional, json_data_dir
from mpgym.errors import MpgymError
from neural3d.splat.presets import SplatConfig

log = logging.getLogger("mpgym.splat")

DEFAULT_PRESET = "paper"


@dataclass
class TrainArgs:
    """Train mpgym's 3D Gaussian splats on a multi-view dataset (on a CPU: --preset cpu).

    Datasets: NeRF-synthetic, nerfstudio or Instant-NGP folders, or COLMAP captures.
    """

    data: Path = Path("data/tabletop")
    """Dataset: a folder with transforms_train.json and transforms_test.json, or one
    transforms.json, or a COLMAP capture (images/ and sparse/0/; its points3D seed the Gaussians
    unless --init is given)."""
    preset: str = DEFAULT_PRESET
    """Named preset the other flags override: paper (3DGS), cpu (128x128 on a CPU), tiny."""
    name: str | None = None
    """Run name (default: <data folder>-<preset>); the run goes to runs/splat/<name>."""
    overwrite: bool = False
    """Replace whatever runs/splat/<name> holds (a run of another kind, other files); a splat
    run there is replaced without it."""
    config: SplatConfig = field(default_factory=SplatConfig)
    """Training options."""


def _run_path(args: TrainArgs) -> Path:
    """``runs/splat/<name>``, refusing names that would leave that folder."""
    data = Path(args.data)
    base = (data.parent if data.suffix.lower() == ".json" else data).resolve().name
    name = args.name or f"{base}-{args.preset}"
    if name in (".", "..") or Path(name).name != name:
        raise MpgymError(f"--name {name!r} must be a plain folder name (no '/' or '..').")
    return Path("runs") / "splat" / name


def _preset_name(argv: list[str]) -> str:
    name = DEFAULT_PRESET
    for i, a in enumerate(argv):
        if a == "--preset" and i + 1 < len(argv):
            name = argv[i + 1]
        elif a.startswith("--preset="):
            name = a.split("=", 1)[1]
    return name


def train_main(argv: list[str]) -> int:
    """``mpgym splat train DATA --preset cpu [options]``."""
    from mpgym.devices import get_device
    from mpgym.runs import check_run_target, staged_run
    from neural3d.data.multiview import load_split
    from neural3d.splat.presets import check_config, preset
    from neural3d.splat.trainer import SplatTrainer

    argv = _positional(argv, "--data")
    name = _preset_name(argv)
    default = TrainArgs(preset=name, config=preset(name))
    args = tyro.cli(TrainArgs, args=argv, default=default, prog="mpgym splat train",
                    config=(tyro.conf.OmitArgPrefixes,))
    # everything the user can get wrong is refused here, before anything is read or written
    config = args.config
    check_config(config)
    get_device(config.device)
    path = check_run_target(_run_path(args), kind="splat", overwrite=args.overwrite)
    train = load_split(args.data, "train", downscale=config.downscale)
    test = load_split(args.data, "test", downscale=config.downscale)
    points = getattr(train, "points", None)
    if points is not None and not _given(argv, "--init"):
        config = replace(config, init="points")
        log.info("splat: starting from the dataset's %d sparse points", len(points))
    log.info("splat: %d train / %d test views at %dx%d -> %s", len(train), len(test),
             train.intrinsics.width, train.intrinsics.height, path)
    with staged_run(path, kind="splat", overwrite=args.overwrite) as run:
        trainer = SplatTrainer(config, train, test, run_dir=run,
                               run_info={"data": str(Path(args.data).resolve())})
        result = trainer.train(progress_bar=True)  # Ctrl-C: saves a checkpoint, then raises
        nerf_cli._save_pictures(run.path, result.images, third="alpha")
    print(f"test PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.3f} with {result.num_gaussians} "
          f"Gaussians after {result.steps} steps ({result.seconds:.0f} s); run: {path}")
    return 0


@dataclass
class RenderArgs(nerf_cli.RenderArgs):
    """Render a trained mpgym Gaussian-splat run along a camera path (GIF)."""

    run_dir: Path = Path("runs/splat/tabletop-cpu")
    """The training run (config.json + checkpoint.safetensors)."""


_check_render_args = nerf_cli._check_render_args  # the same options, refused the same way


def _cameras(args: RenderArgs, downscale: int) -> tuple[list, list]:
    """Poses ``[4, 4]`` and intrinsics of the chosen camera path."""
    from neural3d.cameras import Intrinsics, turntable_poses
    from neural3d.data.multiview import NERF_SYNTHETIC_ANGLE, load_split

    if args.path == "turntable":
        poses = turntable_poses(args.frames, args.radius, math.radians(args.elevation))
        return list(poses), [Intrinsics.from_fov(NERF_SYNTHETIC_ANGLE, args.resolution)] * len(
            poses)
    test = load_split(json_data_dir(args.run_dir), "test", downscale=downscale)
    return list(test.c2w), [test.camera(i) for i in range(len(test))]


def render_main(argv: list[str]) -> int:
    """``mpgym splat render RUN_DIR --path turntable -o turntable.gif``."""
    import torch

    from mpgym.plots import save_gif
    from neural3d.nerf.renderer import depth_to_image
    from neural3d.splat.render import render
    from neural3d.splat.trainer import load_splat

    args = tyro.cli(RenderArgs, args=_positional(argv, "--run-dir"), prog="mpgym splat render")
    gif = _check_render_args(args)
    model, cfg = load_splat(args.run_dir)
    poses, cams = _cameras(args, cfg.downscale)
    bg = torch.full((3,), 0.0 if cfg.background == "black" else 1.0)
    rgb, depth = [], []
    with torch.no_grad():
        for pose, intr in zip(poses, cams, strict=True):
            out = render(model, torch.as_tensor(pose, dtype=torch.float32), intr, background=bg,
                         depth=True, backend=cfg.backend, rasterize_mode=cfg.rasterize_mode)
            rgb.append(out.image.clamp(0, 1).numpy())
            assert out.depth is not None  # asked for with depth=True
            depth.append(depth_to_image(out.depth, out.alpha).numpy())
    save_gif(gif, rgb, fps=args.fps)
    dgif = gif.with_name(gif.stem + "_depth.gif")
    save_gif(dgif, depth, fps=args.fps)
    print(f"wrote {gif} and {dgif} ({len(rgb)} frames, {model.num_gaussians} Gaussians)")
    return 0


@dataclass
class ExportArgs:
    """Write a trained mpgym splat run as a standard 3DGS .ply (opens in common splat viewers)."""

    run_dir: Path = Path("runs/splat/tabletop-cpu")
    """The training run (config.json + checkpoint.safetensors)."""
    output: Annotated[Path | None, tyro.conf.arg(aliases=("-o",))] = None
    """The .ply to write (default: <run_dir>/point_cloud.ply)."""


def export_main(argv: list[str]) -> int:
    """``mpgym splat export RUN_DIR -o scene.ply``."""
    from neural3d.splat.ply import save_ply
    from neural3d.splat.trainer import load_splat

    args = tyro.cli(ExportArgs, args=_positional(argv, "--run-dir"), prog="mpgym splat export")
    out = args.output or args.run_dir / "point_cloud.ply"
    if out.suffix.lower() != ".ply":
        raise MpgymError(f"-o {out}: splats are exported as 3DGS .ply; give a path ending in .ply.")
    model, cfg = load_splat(args.run_dir)
    save_ply(model, out)
    print(f"wrote {out} ({model.num_gaussians} Gaussians, SH degree {model.max_sh_degree})")
    if cfg.rasterize_mode == "antialiased":
        # the .ply has no field for it: 3DGS viewers render every Gaussian at its full opacity
        print("note: this run was trained with --rasterize-mode antialiased; viewers of the "
              "standard .ply render it classic (small Gaussians more opaque than trained); "
              "`mpgym splat render` renders it as trained.")
    return 0


def main(argv: list[str]) -> int:
    """``mpgym splat {train,render,export} ...``."""
    commands = {"train": train_main, "render": render_main, "export": export_main}
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mpgym splat {train,render,export} ...\n\n"
              "  train   train 3D Gaussian splats on a dataset folder (NeRF-synthetic, COLMAP)\n"
              "  render  render a trained splat run (turntable or test-camera GIF, depth)\n"
              "  export  write a trained splat run as a standard 3DGS .ply", file=sys.stdout)
        return 0
    if argv[0] not in commands:
        raise MpgymError(f"unknown splat command {argv[0]!r}; accepted: train, render, export.")
    return commands[argv[0]](argv[1:])
