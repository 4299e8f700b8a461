"""``mpgym mesh RUN_DIR`` and ``mpgym fit-shape INPUT --method igr|occnet|deepsdf``.

``mpgym mesh`` reads the ``kind`` in a run's ``config.json`` (or a checkpoint's metadata) and
extracts the field's surface with :func:`neural3d.mesh.extract_mesh`: ``igr`` and ``deepsdf``
are SDFs (level 0), ``occnet`` logits (level 0, flipped to SDF sign), ``nerf`` densities via
``neural3d.nerf.io.load_density_field``. ``mpgym fit-shape`` fits one method to a mesh or a
point cloud (``.obj .ply .stl .off .glb`` or ``.npy`` of ``(N, 3)`` points or ``(N, 6)``
points + normals) and writes ``mesh.ply``, ``metrics.csv``, ``results.json``, ``mesh.png``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from mpgym.errors import MpgymError

log = logging.getLogger("mpgym.shapes")


# -- mpgym mesh -------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeshArgs:
    """Extract a mesh from a trained field (igr, occnet, deepsdf or nerf run)."""

    run: tyro.conf.Positional[Path]
    """Run directory (or its checkpoint.safetensors)."""
    output: Annotated[Path | None, tyro.conf.arg(aliases=("-o",))] = None
    """Mesh file to write (.ply, .obj, .stl, .off, .glb); default RUN/mesh.ply."""
    resolution: int = 256
    """Cells per axis of the extraction grid (32 * 2^k for hierarchical)."""
    level: float | None = None
    """Iso-level (default: 0 for SDFs and logits, the run's own for NeRF)."""
    hierarchical: bool = True
    """Multiresolution extraction (MISE); --no-hierarchical evaluates the dense grid."""
    shape: int = 0
    """Which training shape of a multi-shape run (occnet, deepsdf)."""
    simplify: int | None = None
    """Target face count for quadric decimation."""


def load_field(run: Path, shape: int = 0):
    """``(fn, bounds, level, inside, kind)`` of a trained run, dispatched on its kind."""
    from mpgym import RunDir
    from mpgym.checkpoint import load_checkpoint

    run_dir = run.parent if run.is_file() else run
    if (run_dir / "config.json").exists():
        kind = RunDir(run_dir).read_config().get("kind")
    else:
        kind = load_checkpoint(run).kind
    if kind == "nerf":
        from neural3d.nerf.io import load_density_field

        fn, bounds, level = load_density_field(run_dir)
        return fn, bounds, level, "above", kind
    if kind == "igr":
        from neural3d.implicit.igr import load_igr

        model, cfg = load_igr(run_dir)
        return model, cfg.bounds, 0.0, "below", kind
    if kind == "occnet":
        from neural3d.implicit.occnet import load_occnet, occnet_field

        model, cfg, meta = load_occnet(run_dir)
        _check_index(shape, int(meta.get("num_shapes", 1)))
        cond = np.load(run_dir / "conditions.npy") if cfg.condition == "pointnet" else None
        import torch

        c = torch.from_numpy(cond[shape]) if cond is not None else torch.tensor(shape)
        return occnet_field(model, c), 0.55, 0.0, "below", kind
    if kind == "deepsdf":
        from neural3d.implicit.deepsdf import deepsdf_field, load_deepsdf

        decoder, codes, _, _ = load_deepsdf(run_dir)
        _check_index(shape, len(codes))
        return deepsdf_field(decoder, codes[shape]), 0.55, 0.0, "below", kind
    raise MpgymError(f"{run} is a {kind!r} run; mpgym mesh accepts igr, occnet, deepsdf and "
                     "nerf runs.")


def _check_index(i: int, n: int) -> None:
    if not 0 <= i < n:
        raise MpgymError(f"--shape {i} is out of range; this run has shapes 0..{n - 1}.")


def mesh_main(argv: list[str]) -> int:
    """Entry point of ``mpgym mesh``."""
    from neural3d.mesh import extract_mesh

    args = tyro.cli(MeshArgs, args=argv, prog="mpgym mesh")
    if not args.run.exists():
        raise MpgymError(f"{args.run} does not exist; give a run directory or a checkpoint.")
    fn, bounds, level, inside, kind = load_field(args.run, args.shape)
    level = level if args.level is None else args.level
    mesh = extract_mesh(fn, bounds, args.resolution, level, hierarchical=args.hierarchical,
                        inside=inside, simplify=args.simplify)  # type: ignore[arg-type]
    run_dir = args.run.parent if args.run.is_file() else args.run
    out = args.output or run_dir / "mesh.ply"
    out.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(out)
    info = mesh.metadata["extraction"]
    print(f"{kind}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, "
          f"{info['queries']} field queries -> {out}")
    return 0


# -- mpgym fit-shape --------------------------------------------------------------------------
@dataclass(frozen=True)
class FitShapeArgs:
    """Fit an implicit shape to a mesh or point cloud, extract and evaluate its surface."""

    input: tyro.conf.Positional[Path]
    """A mesh (.obj .ply .stl .off .glb) or points (.npy (N,3) or (N,6) with normals)."""
    method: Literal["igr", "occnet", "deepsdf"] = "igr"
    """igr works from points alone; occnet and deepsdf need a watertight mesh."""
    out: Path | None = None
    """Run directory (default runs/shapes/<method>-<input name>)."""
    points: int = 20_000
    """Surface points sampled from a mesh input."""
    iterations: int | None = None
    """Training steps (default: the method's config)."""
    preset: str = "cpu"
    """Named config of the method (cpu, quick, paper ...)."""
    resolution: int = 256
    """Extraction grid (cells per axis)."""
    repair: Literal["none", "trimesh", "manifold"] = "none"
    """Try to make a non-watertight mesh watertight first."""
    seed: int = 0
    """Seed of sampling and training."""
    views: int = 4
    """Pictures of the result in mesh.png."""


def read_input(path: Path, n_points: int, repair: str, rng: np.random.Generator):
    """``(points (N, 3), normals (N, 3) or None, mesh or None)``, normalised to the unit cube."""
    from neural3d.data.meshes import load_mesh, normalize_mesh
    from neural3d.data.sampling import sample_surface

    if not path.is_file():
        raise MpgymError(f"no input file at {path}.")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise MpgymError(f"{path} is not a numeric .npy array ({exc}).") from None
        if arr.ndim != 2 or arr.shape[1] not in (3, 6) or len(arr) < 10:
            raise MpgymError(f"{path} holds an array of shape {arr.shape}; expected (N, 3) points "
                             "or (N, 6) points + normals with N >= 10.")
        import trimesh

        pc = trimesh.PointCloud(arr[:, :3])
        pc = normalize_mesh(pc)
        pts = np.asarray(pc.vertices, np.float32)
        nrm = arr[:, 3:6].astype(np.float32) if arr.shape[1] == 6 else None
        return pts, nrm, None
    mesh = load_mesh(path, repair=repair)  # type: ignore[arg-type]
    s = sample_surface(mesh, n_points, rng)
    return s.points, s.normals, mesh


def fit_shape_main(argv: list[str]) -> int:
    """Entry point of ``mpgym fit-shape``."""
    from mpgym import RunDir

    args = tyro.cli(FitShapeArgs, args=argv, prog="mpgym fit-shape")
    rng = np.random.default_rng(args.seed)
    points, normals, mesh = read_input(args.input, args.points, args.repair, rng)
    name = f"{args.method}-{args.input.stem}"
    run = RunDir(args.out) if args.out else RunDir.create("shapes", name)
    if args.method == "igr":
        fn, cfg = _fit_igr(args, points, normals, run)
    else:
        if mesh is None:
            raise MpgymError(f"--method {args.method} needs a watertight mesh for occupancy and "
                             "distances; point clouds work with --method igr.")
        fn, cfg = _fit_multi(args, mesh, run, rng)
    _finish(args, run, fn, cfg, points, normals, mesh)
    return 0


def _fit_igr(args: FitShapeArgs, points, normals, run):
    from neural3d.implicit.igr import PRESETS, fit_igr

    cfg = _preset(PRESETS, args.preset)
    extra = {"iterations": args.iterations} if args.iterations else {}
    cfg = replace(cfg, seed=args.seed, **extra)
    run.write_config(cfg, kind="igr", input=str(args.input))
    result = fit_igr(points, normals, cfg, run=run)
    return result.model, cfg


def _fit_multi(args: FitShapeArgs, mesh, run, rng):
    from neural3d.data.sampling import SamplingConfig
    from neural3d.implicit.data import samples_from_mesh

    samples = [samples_from_mesh(args.input.stem, mesh, SamplingConfig(), rng)]
    extra = {"iterations": args.iterations} if args.iterations else {}
    if args.method == "occnet":
        from neural3d.implicit.occnet import PRESETS, _condition, occnet_field, train_occnet

        cfg = replace(_preset(PRESETS, args.preset), seed=args.seed, **extra)
        run.write_config(cfg, kind="occnet", input=str(args.input))
        res = train_occnet(samples, cfg, run=run)
        cond = _condition(samples, cfg, None)
        np.save(run.file("conditions.npy"), cond.numpy())
        return occnet_field(res.model, cond[0]), cfg
    from neural3d.implicit.deepsdf import PRESETS as DS_PRESETS
    from neural3d.implicit.deepsdf import deepsdf_field, train_deepsdf

    cfg = replace(_preset(DS_PRESETS, args.preset), seed=args.seed, **extra)
    run.write_config(cfg, kind="deepsdf", input=str(args.input))
    res = train_deepsdf(samples, cfg, run=run)
    return deepsdf_field(res.decoder, res.codes[0]), cfg


def _preset(presets: dict, name: str):
    if name not in presets:
        raise MpgymError(f"unknown preset {name!r}; accepted: {', '.join(presets)}.")
    return presets[name]


def _finish(args: FitShapeArgs, run, fn, cfg, points, normals, mesh) -> None:
    """Extract, evaluate, write mesh.ply, results.json and mesh.png."""
    from mpgym.plots import save_image_grid
    from neural3d.data.sampling import sample_surface
    from neural3d.mesh import extract_mesh, render_mesh_views
    from neural3d.metrics import mesh_metrics, surface_metrics

    pred = extract_mesh(fn, 0.55, args.resolution, 0.0)
    pred.export(run.file("mesh.ply"))
    if mesh is not None:
        m = mesh_metrics(pred, mesh)
    else:
        s = sample_surface(pred, len(points), np.random.default_rng(args.seed))
        gt_n = normals if normals is not None else np.zeros_like(points)
        m = surface_metrics(s.points, s.normals, points, gt_n)
    run.write_json("results.json", {"method": args.method, "input": str(args.input),
                                    "metrics": m, "faces": len(pred.faces)})
    save_image_grid(run.file("mesh.png"), render_mesh_views(pred, views=args.views),
                    nrow=args.views)
    print(f"{args.method}: Chamfer-L1 {m.chamfer_l1:.5f}, F-score@{m.threshold} "
          f"{m.fscore:.4f}, normal consistency {m.normal_consistency:.4f} -> {run.path}")
