"""Demo stop: a small hash-grid NeRF trained for about a minute on the built-in tabletop scene."""

from __future__ import annotations

from pathlib import Path

from mpgym.report import Section

TRAIN_SECONDS = 50.0
"""Optimisation budget of the stop (evaluation excluded)."""


def run(out: Path) -> Section:
    """Render a 64x64 dataset of the tabletop, train a tiny hash NeRF, compare a test view."""
    import numpy as np

    from mpgym.plots import plot_curves, save_image_grid
    from neural3d.data.multiview import RenderDatasetConfig, load_split, render_dataset
    from neural3d.nerf.presets import preset
    from neural3d.nerf.trainer import NerfTrainer

    data = out / "tabletop64"
    if not (data / "transforms_test.json").exists():
        render_dataset(RenderDatasetConfig(out=data, views=40, val_views=0, test_views=4,
                                           resolution=64))
    train, test = load_split(data, "train"), load_split(data, "test")
    cfg = preset("tiny", num_levels=12, log2_table_size=16, max_resolution=256, hidden=64,
                 num_samples=96, grid_resolution=48, max_seconds=TRAIN_SECONDS, steps=3000,
                 batch_rays=512, threads=1,
                 eval_every_seconds=TRAIN_SECONDS / 4, eval_views=1, final_test_views=0)
    result = NerfTrainer(cfg, train, test).train(progress_bar=False)
    im = result.images
    grid = save_image_grid(out / "nerf_test_view.png",
                           np.stack([im["target"], im["pred"], im["depth"]]), scale=4)
    hist = result.history
    curve = plot_curves(out / "nerf_psnr.png",
                        {"hash NeRF": ([h["seconds"] for h in hist], [h["psnr"] for h in hist])},
                        xlabel="training seconds", ylabel="test-view PSNR (dB)")
    return Section(
        title="NeRF with a multiresolution hash grid",
        text=("A tiny Instant-NGP-style radiance field (hash encoding + occupancy grid) trained "
              f"for {result.seconds:.0f} s on 40 ray-cast 64x64 views of the built-in tabletop "
              "scene; left to right: held-out test view, NeRF rendering, NeRF depth."),
        images=[grid, curve],
        metrics={"test PSNR (dB)": round(result.psnr, 2), "test SSIM": round(result.ssim, 3),
                 "steps": result.steps, "train seconds": round(result.seconds, 1),
                 "test views": len(test)},
    )
