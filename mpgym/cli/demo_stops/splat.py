"""Demo stop: 3D Gaussian splats trained for about half a minute on the built-in tabletop scene."""

from __future__ import annotations

import math
from pathlib import Path

from mpgym.report import Section

TRAIN_SECONDS = 30.0
"""Optimisation budget of the stop (evaluation excluded)."""


def run(out: Path) -> Section:
    """Render a 64x64 tabletop dataset, fit splats, compare a test view, write a turntable GIF."""
    import numpy as np
    import torch

    from mpgym.plots import plot_curves, save_gif, save_image_grid
    from neural3d.cameras import Intrinsics, turntable_poses
    from neural3d.data.multiview import (
        NERF_SYNTHETIC_ANGLE,
        RenderDatasetConfig,
        load_split,
        render_dataset,
    )
    from neural3d.splat.presets import preset
    from neural3d.splat.trainer import SplatTrainer

    data = out / "tabletop64"
    if not (data / "transforms_test.json").exists():
        render_dataset(RenderDatasetConfig(out=data, views=40, val_views=0, test_views=4,
                                           resolution=64))
    train, test = load_split(data, "train"), load_split(data, "test")
    cfg = preset("tiny", iterations=1500, position_lr_max_steps=1500, init_points=5000,
                 densify_until=1000, max_gaussians=20_000, max_seconds=TRAIN_SECONDS,
                 eval_every=500, eval_views=1, threads=1)
    trainer = SplatTrainer(cfg, train, test)
    result = trainer.train(progress_bar=False)
    im = result.images
    grid = save_image_grid(out / "splat_test_view.png",
                           np.stack([im["target"], im["pred"], im["alpha"]]), scale=4)
    frames = []
    intr = Intrinsics.from_fov(NERF_SYNTHETIC_ANGLE, 96)
    for pose in turntable_poses(24, 4.0, math.radians(30)):
        frames.append(trainer.render_view(torch.as_tensor(pose), intr).image.clamp(0, 1).numpy())
    gif = save_gif(out / "splat_turntable.gif", frames, fps=12)
    hist = [h for h in result.history if "val_psnr" in h]
    curve = plot_curves(out / "splat_psnr.png",
                        {"3D Gaussian splatting": ([h["seconds"] for h in hist],
                                                   [h["val_psnr"] for h in hist])},
                        xlabel="training seconds", ylabel="test-view PSNR (dB)")
    return Section(
        title="3D Gaussian splatting",
        text=("Anisotropic 3D Gaussians rasterized by mpgym's CPU tile rasterizer, with adaptive "
              f"density control, fitted for {result.seconds:.0f} s to 40 ray-cast 64x64 views of "
              "the built-in tabletop scene; left to right: held-out test view, splat rendering, "
              "splat opacity; then a turntable of the fitted splats."),
        images=[grid, gif, curve],
        metrics={"test PSNR (dB)": round(result.psnr, 2), "test SSIM": round(result.ssim, 3),
                 "Gaussians": result.num_gaussians, "steps": result.steps,
                 "train seconds": round(result.seconds, 1), "test views": len(test)},
    )
