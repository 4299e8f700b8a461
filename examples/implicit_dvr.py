"""Differentiable Volumetric Rendering: fit occupancy + colour to 16 renders of a shape.

The views are ray-cast with Open3D (the project's render-dataset code) from a built-in shape's
mesh; DVR learns the shape from RGB + silhouettes only. Reports silhouette IoU on 4 held-out
views and the Chamfer-L1 of the extracted mesh. Writes runs/examples/implicit_dvr/.
"""

import math
from pathlib import Path

import numpy as np
import torch

from mpgym.plots import plot_curves, save_image_grid
from neural3d.cameras import Intrinsics, sphere_poses, turntable_poses
from neural3d.data.multiview import render_views
from neural3d.data.scenes import scene_from_mesh
from neural3d.mesh import extract_mesh
from neural3d.metrics import chamfer_l1, volumetric_iou
from neural3d.render.dvr import DVRConfig, find_surface, fit_dvr
from neural3d.shapes import get_shape

OUT = Path("runs/examples/implicit_dvr")
torch.set_num_threads(1)
shape = get_shape("capsule")
gt_mesh = extract_mesh(shape, 0.55, 128, normals="mesh")
intr = Intrinsics.from_fov(math.radians(40), 48, 48)
train_c2w = sphere_poses(16, 1.6, rng=np.random.default_rng(0), upper=False)
test_c2w = turntable_poses(4, 1.6, math.radians(20))
scene = scene_from_mesh(gt_mesh)
train = torch.from_numpy(render_views(scene, train_c2w, intr))
test = render_views(scene, test_c2w, intr)

cfg = DVRConfig(iterations=600, rays=512)
fields, losses = fit_dvr(train, torch.from_numpy(train_c2w), intr, cfg)

# silhouettes of the held-out views
from neural3d.cameras import pixel_rays  # noqa: E402

ious, pred_imgs = [], []
for c2w, img in zip(test_c2w, test, strict=True):
    o, d = pixel_rays(torch.from_numpy(c2w).float(), intr)
    hit = find_surface(fields.occupancy, o.reshape(-1, 3), d.reshape(-1, 3), near=cfg.near,
                       far=cfg.far, n_steps=96)
    ious.append(volumetric_iou(hit.hit.numpy(), img[..., 3].reshape(-1) > 0.5))
    p = o.reshape(-1, 3) + hit.depth[:, None] * d.reshape(-1, 3)
    with torch.no_grad():
        col = torch.where(hit.hit[:, None], fields.color(p), torch.ones_like(p))
    pred_imgs.append(col.reshape(intr.height, intr.width, 3).numpy())
with torch.no_grad():
    mesh = extract_mesh(fields.occupancy, 0.55, 128, inside="above", normals="mesh")
cd = chamfer_l1(mesh.sample(50_000), gt_mesh.sample(50_000))
OUT.mkdir(parents=True, exist_ok=True)
gt_rgb = test[..., :3] * test[..., 3:] + (1 - test[..., 3:])
save_image_grid(OUT / "views_gt_vs_dvr.png", np.concatenate([gt_rgb, np.stack(pred_imgs)]),
                nrow=4, scale=3)
plot_curves(OUT / "loss.png", {"DVR loss": (list(range(len(losses))), losses)}, smooth=20,
            ylabel="loss")
mesh.export(OUT / "mesh.ply")
print(f"silhouette IoU (held-out views) {np.mean(ious):.3f}, Chamfer-L1 {cd:.4f} -> {OUT}")
