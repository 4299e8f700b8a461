"""IGR: learn a signed distance function from the point cloud of a real mesh, mesh it, score it.

Uses pyvista's bundled ``ant.ply`` (no download), 20k surface points with normals, the
default CPU config, hierarchical marching cubes at 256^3. Writes runs/examples/implicit_igr/.
Same thing from the command line: ``mpgym fit-shape ant.ply --method igr``.
"""

from pathlib import Path

import numpy as np
import torch

try:  # pyvista (with VTK, ~600 MB) is in the [bench] extra, not the default install
    import pyvista
except ImportError:
    raise SystemExit("this example fits pyvista's bundled ant.ply: install it with "
                     "`.venv/bin/pip install -e .[bench]` (or run `make bench` once)") from None

from mpgym import RunDir
from mpgym.plots import save_image_grid
from neural3d.data.meshes import load_mesh
from neural3d.data.sampling import sample_surface
from neural3d.implicit.igr import IGRConfig, fit_igr
from neural3d.mesh import extract_mesh, render_mesh_views
from neural3d.metrics import mesh_metrics

torch.set_num_threads(1)  # a 256-wide MLP on 512-point batches gains little from more threads
gt = load_mesh(Path(pyvista.__file__).parent / "examples" / "ant.ply")  # into [-0.5, 0.5]^3
cloud = sample_surface(gt, 20_000, np.random.default_rng(0))
run = RunDir.create("examples", "implicit_igr")
cfg = IGRConfig()
run.write_config(cfg, kind="igr", input="pyvista ant.ply")
result = fit_igr(cloud.points, cloud.normals, cfg, run=run)
mesh = extract_mesh(result.model, cfg.bounds, 256)
mesh.export(run.file("mesh.ply"))
m = mesh_metrics(mesh, gt)
save_image_grid(run.file("mesh.png"), render_mesh_views(mesh), nrow=4)
print(f"Chamfer-L1 {m.chamfer_l1:.4f}  F-score@0.01 {m.fscore:.3f}  "
      f"normal consistency {m.normal_consistency:.3f}  ({result.cpu_seconds:.0f} CPU-s) -> {run}")
