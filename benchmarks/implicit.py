"""neural3d implicit shapes: extraction (MISE vs dense), IGR per shape, OccNet and DeepSDF.

Sections (``--only``):

- ``extraction``: an analytic SDF (torus) and a trained MLP at 128/256/512 cells, dense grid
  (the peer: what scikit-image users do) vs hierarchical MISE; field queries, seconds, and the
  Chamfer-L1 between the two meshes' vertices. Dense 512^3 on the network is 134M queries
  (chunked; about a minute of one core for this 64-wide MLP).
- ``igr``: IGR from 20k noise-free surface points with normals of every built-in shape and
  of pyvista's bundled ``ant.ply`` (a real mesh nobody here made); Chamfer-L1, F-score@0.01,
  normal consistency against 100k exact surface points, plus the sampling floor (the same
  metrics between two independent 100k samples of the ground truth). Time is reported as
  wall seconds and process CPU seconds; the "5 minutes on 2 cores" budget is read as
  <= 600 CPU-seconds, which does not depend on what else runs on the machine.
  ``--igr-eikonal off_surface|with_surface`` and ``--igr-seed`` compare the points of the
  eikonal term (see ``neural3d.implicit.igr``); ant.ply varies by ~0.001 Chamfer-L1 by seed.
  The preset's ``eikonal_points`` was chosen on ant.ply with seeds 0-2, so the reported run
  uses seed 100 (:data:`REPORT_SEED`), never used to choose a setting.
- ``multi``: one occupancy network (PointNet-conditioned) on the built-in shapes, IoU on 100k
  uniform points per training shape (a row, not a goal: it measures how well the auto-decoder
  memorises its training shapes; held-out occupancy needs a shape collection); DeepSDF on a
  family of tori, IoU on training shapes and completion of a held-out torus from the half of
  its point cloud with x > 0 (Chamfer-L1 of the completed mesh vs the partial cloud's own
  Chamfer as the reference).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mpgym.bench import Goal, bench_parser, report

PYVISTA_MESHES = ("ant",)
REPORT_SEED = 100
"""IGR's seed in the reported run (settings were chosen on seeds 0-2)."""


def _load_pyvista_mesh(name: str):
    import pyvista

    from neural3d.data.meshes import load_mesh

    return load_mesh(Path(pyvista.__file__).parent / "examples" / f"{name}.ply")


def trained_mlp(steps: int = 400):
    """A small MLP regressed onto the torus SDF (a 'trained network' field)."""
    from neural3d.shapes import get_shape

    torch.manual_seed(0)
    shape = get_shape("torus")
    net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.Softplus(100),
                              torch.nn.Linear(64, 64), torch.nn.Softplus(100),
                              torch.nn.Linear(64, 64), torch.nn.Softplus(100),
                              torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = (torch.rand(4096, 3, generator=gen) - 0.5) * 1.1
        loss = (net(x).squeeze(-1) - shape.sdf(x)).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return lambda x: net(x).squeeze(-1)


def bench_extraction(quick: bool) -> tuple[list[dict], list[Goal]]:
    from neural3d.mesh import extract_mesh
    from neural3d.metrics import chamfer_l1
    from neural3d.shapes import get_shape

    fields = {"torus (analytic)": get_shape("torus"), "MLP (trained)": trained_mlp()}
    resolutions = (128, 256) if quick else (128, 256, 512)
    rows, reduction, gap = [], [], []
    for fname, fn in fields.items():
        for res in resolutions:
            meshes = {}
            for method in ("dense", "mise"):
                t0 = time.perf_counter()
                m = extract_mesh(fn, 0.55, res, hierarchical=method == "mise", normals="mesh")
                dt = time.perf_counter() - t0
                info = m.metadata["extraction"]
                meshes[method] = m
                rows.append({"section": "extraction", "field": fname, "resolution": res,
                             "method": method, "queries": info["queries"],
                             "eval_s": info["eval_seconds"], "mc_s": info["mc_seconds"],
                             "total_s": dt, "faces": len(m.faces)})
            if "dense" in meshes:
                q = rows[-2]["queries"] / rows[-1]["queries"]
                cd = chamfer_l1(meshes["dense"].vertices, meshes["mise"].vertices)
                rows[-1].update({"query_reduction": q, "chamfer_vs_dense": cd})
                if res == 256:
                    reduction.append(q)
                    gap.append(cd)
    goals = [Goal("mise_query_reduction_256", min(reduction), 8.0, ">="),
             Goal("mise_chamfer_vs_dense", max(gap), 0.001, "<=")]
    return rows, goals


def igr_inputs(name: str, rng: np.random.Generator):
    """(20k points, normals, ground truth (100k points, normals), second GT sample)."""
    from neural3d.data.sampling import sample_surface
    from neural3d.implicit.data import shape_surface
    from neural3d.shapes import get_shape

    if name in PYVISTA_MESHES:
        mesh = _load_pyvista_mesh(name)
        s, g1, g2 = (sample_surface(mesh, n, rng) for n in (20_000, 100_000, 100_000))
        return s.points, s.normals, (g1.points, g1.normals), (g2.points, g2.normals)
    shape = get_shape(name)
    p, n = shape_surface(shape, 20_000, rng)
    return p, n, shape_surface(shape, 100_000, rng), shape_surface(shape, 100_000, rng)


def bench_igr(quick: bool, shapes: list[str], iterations: int | None, preset: str,
              eikonal: str | None = None, seed: int = 0) -> tuple[list[dict], list[Goal]]:
    from neural3d.implicit.igr import PRESETS, fit_igr
    from neural3d.mesh import extract_mesh
    from neural3d.metrics import mesh_metrics, surface_metrics

    cfg = PRESETS["quick" if quick else preset]
    if iterations:
        cfg = replace(cfg, iterations=iterations)
    cfg = replace(cfg, seed=seed, **({"eikonal_points": eikonal} if eikonal else {}))
    rows = []
    for name in shapes:
        rng = np.random.default_rng(0)
        pts, nrm, gt, gt2 = igr_inputs(name, rng)
        load0 = os.getloadavg()[0]
        res = fit_igr(pts, nrm, cfg, progress_bar=False)
        mesh = extract_mesh(res.model, cfg.bounds, 256)
        m = mesh_metrics(mesh, gt, rng=np.random.default_rng(1))
        floor = surface_metrics(gt2[0], gt2[1], gt[0], gt[1])
        rows.append({"section": "igr", "shape": name, "iterations": res.iterations,
                     "eikonal_points": cfg.eikonal_points, "seed": cfg.seed,
                     "train_s": res.seconds, "cpu_s": res.cpu_seconds, "loadavg": load0,
                     "chamfer_l1": m.chamfer_l1, "fscore@0.01": m.fscore,
                     "normal_consistency": m.normal_consistency,
                     "floor_chamfer_l1": floor.chamfer_l1, "floor_fscore": floor.fscore})
        print(rows[-1], flush=True)
    goals = [Goal("igr_chamfer_l1_max", max(r["chamfer_l1"] for r in rows), 0.005, "<="),
             Goal("igr_fscore_min", min(r["fscore@0.01"] for r in rows), 0.95, ">=")]
    return rows, goals


def torus_family(n: int) -> list[tuple[str, object]]:
    """``n`` tori with major radius 0.2..0.35 and tube radius 0.06..0.14 (a 4 x k grid)."""
    from neural3d.shapes import Torus

    majors = np.linspace(0.2, 0.35, 4)
    minors = np.linspace(0.06, 0.14, max(1, n // 4))
    return [(f"torus_R{R:.3f}_r{r:.3f}", Torus(float(R), float(r))) for R in majors
            for r in minors][:n]


def bench_multi(quick: bool) -> tuple[list[dict], list[Goal]]:
    from neural3d.data.sampling import SamplingConfig
    from neural3d.implicit.data import samples_from_shape, shape_surface
    from neural3d.implicit.deepsdf import PRESETS as DS
    from neural3d.implicit.deepsdf import (
        deepsdf_field,
        infer_code,
        observations_from_points,
        train_deepsdf,
    )
    from neural3d.implicit.occnet import PRESETS as OC
    from neural3d.implicit.occnet import train_occnet
    from neural3d.mesh import extract_mesh
    from neural3d.metrics import chamfer_l1
    from neural3d.shapes import SHAPES, Torus

    rng = np.random.default_rng(0)
    sc = SamplingConfig(n_points=20_000)
    rows: list[dict] = []
    names = list(SHAPES)[:3] if quick else list(SHAPES)
    data = [samples_from_shape(n, SHAPES[n](), sc, rng, n_surface=5000) for n in names]
    occ = train_occnet(data, OC["quick" if quick else "cpu"], progress_bar=False)
    for n in names:
        rows.append({"section": "occnet", "shape": n, "iou": occ.iou[n], "train_s": occ.seconds})
    fam = torus_family(4 if quick else 12)
    data = [samples_from_shape(n, s, sc, rng, n_surface=5000) for n, s in fam]
    cfg = DS["quick" if quick else "cpu"]
    ds = train_deepsdf(data, cfg, progress_bar=False)
    held = Torus(0.27, 0.1)
    pts, nrm = shape_surface(held, 20_000, rng)
    half = pts[:, 0] > 0
    x, s = observations_from_points(pts[half], nrm[half])
    z = infer_code(ds.decoder, x, s, cfg)
    gt, _ = shape_surface(held, 100_000, rng)
    mesh = extract_mesh(deepsdf_field(ds.decoder, z), 0.55, 128)
    rows.append({"section": "deepsdf", "shape": "train (min IoU)", "iou": min(ds.iou.values()),
                 "train_s": ds.seconds})
    rows.append({"section": "deepsdf", "shape": "held-out torus R0.27 r0.10, half cloud",
                 "completion_chamfer_l1": chamfer_l1(mesh.sample(100_000), gt),
                 "partial_cloud_chamfer_l1": chamfer_l1(pts[half], gt)})
    rows.append({"section": "occnet", "shape": "train (min IoU, memorisation)",
                 "iou": min(occ.iou.values()), "train_s": occ.seconds})
    return rows, []


def merge(paths: list[Path]) -> tuple[list[dict], list[Goal]]:
    """Rows of several JSON results; goals recomputed over all of them (worst case)."""
    import json

    rows, by_name = [], {}
    for path in paths:
        data = json.loads(path.read_text())
        rows += data["rows"]
        for g in data["goals"]:
            old = by_name.get(g["name"])
            worse = old is None or (g["value"] > old.value if g["direction"] == "<="
                                    else g["value"] < old.value)
            if worse:
                by_name[g["name"]] = Goal(g["name"], g["value"], g["target"], g["direction"])
    return rows, list(by_name.values())


def main() -> None:
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", default=["extraction", "igr", "multi"],
                   choices=["extraction", "igr", "multi"])
    p.add_argument("--shapes", nargs="+", default=None, help="IGR shapes (default: all + ant)")
    p.add_argument("--igr-iterations", type=int, default=None)
    p.add_argument("--igr-preset", default="cpu")
    p.add_argument("--igr-eikonal", choices=["off_surface", "with_surface"], default=None,
                   help="points of IGR's eikonal term (default: the preset's)")
    p.add_argument("--igr-seed", type=int, default=REPORT_SEED,
                   help="seed of IGR's init and sampling (settings were chosen on 0-2)")
    p.add_argument("--merge", nargs="+", type=Path, default=None,
                   help="combine the rows of earlier --json files (split runs) into one report")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: small networks gain little from more)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from neural3d.shapes import SHAPES

    shapes = args.shapes or (["sphere", "torus"] if args.quick else [*SHAPES, *PYVISTA_MESHES])
    rows, goals = [], []
    if args.merge:
        rows, goals = merge(args.merge)
        report("implicit", rows, goals, args.json)
        return
    if "extraction" in args.only:
        r, g = bench_extraction(args.quick)
        rows += r
        goals += g
    if "igr" in args.only:
        r, g = bench_igr(args.quick, shapes, args.igr_iterations, args.igr_preset,
                         args.igr_eikonal, args.igr_seed)
        rows += r
        goals += g
    if "multi" in args.only:
        r, g = bench_multi(args.quick)
        rows += r
        goals += g
    report("implicit", rows, goals, args.json)


if __name__ == "__main__":
    main()
