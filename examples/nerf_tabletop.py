"""Render the built-in tabletop scene, train a hash-grid NeRF on it, export a turntable and a mesh.

    python examples/nerf_tabletop.py            # ~3 minutes of training on a CPU
    python examples/nerf_tabletop.py --seconds 600

Writes runs/nerf/example-tabletop/: metrics.csv, checkpoint, test_view.png, turntable.gif and
tabletop.ply (marching cubes on the density field).
"""

import argparse
import logging
import math
from pathlib import Path

import numpy as np
import torch

from mpgym import RunDir
from mpgym.plots import save_gif, save_image_grid
from neural3d.cameras import Intrinsics, turntable_poses
from neural3d.data.multiview import RenderDatasetConfig, load_split, render_dataset
from neural3d.nerf.io import load_density_field
from neural3d.nerf.presets import preset
from neural3d.nerf.renderer import render_image
from neural3d.nerf.trainer import NerfTrainer

p = argparse.ArgumentParser()
p.add_argument("--seconds", type=float, default=180.0)
p.add_argument("--threads", type=int, default=1)
args = p.parse_args()
logging.basicConfig(level=logging.INFO, format="%(message)s")

data = Path("runs/data/tabletop")
if not (data / "transforms_test.json").exists():
    render_dataset(RenderDatasetConfig(out=data, views=100, test_views=8, resolution=128))
train, test = load_split(data, "train"), load_split(data, "test")

run = RunDir.create("nerf", "example-tabletop")
cfg = preset("hash", max_seconds=args.seconds, eval_every_seconds=args.seconds / 6,
             threads=args.threads)
trainer = NerfTrainer(cfg, train, test, run=run, run_info={"data": str(data.resolve())})
result = trainer.train()
print(f"test PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.3f}, {result.steps} steps")
save_image_grid(run.file("test_view.png"),
                np.stack([result.images["target"], result.images["pred"], result.images["depth"]]),
                scale=2)

intr = Intrinsics.from_fov(test.intrinsics.camera_angle_x, 128)
frames = [render_image(trainer.field, torch.as_tensor(c, dtype=torch.float32), intr,
                       sampler="occupancy", grid=trainer.grid, num_samples=cfg.num_samples)["rgb"]
          .clamp(0, 1).numpy() for c in turntable_poses(24, 4.0, math.radians(30))]
save_gif(run.file("turntable.gif"), frames, fps=8)

from neural3d.mesh import extract_mesh  # noqa: E402

fn, bounds, level = load_density_field(run.path)
mesh = extract_mesh(fn, bounds, 128, level, inside="above")
mesh.export(run.file("tabletop.ply"))
print(f"wrote {run.path}: turntable.gif, tabletop.ply ({len(mesh.faces)} faces)")
