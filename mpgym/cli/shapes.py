"""``mpgym mesh RUN_DIR``, ``mpgym fit-shape INPUT --method igr|occnet|deepsdf``, ``mpgym shapes``.

``mpgym mesh`` loads a run's field with :func:`neural3d.implicit.fields.load_field` (igr,
occnet, deepsdf or nerf, by the run's ``kind``) and extracts its surface with
:func:`neural3d.mesh.extract_mesh`. ``mpgym fit-shape`` fits one method to a mesh or a
point cloud (``.obj .ply .stl .off .glb`` or ``.npy`` of ``(N, 3)`` points or ``(N, 6)``
points + normals) and writes ``mesh.ply``, ``metrics.csv``, ``results.json``, ``mesh.png``.
``mpgym shapes prepare [--source pybullet|procedural|PATH] [--limit N]`` normalises, splits,
samples and caches a shape collection (:func:`neural3d.data.collections.prepare_collection`).
``mpgym shapes train|sample|eval`` train the collection's shape models (occnet, deepsdf, prior,
gan) into run directories, draw meshes from them and score them on the held-out split
(:mod:`neural3d.implicit.shape_runs`)::

    mpgym shapes train occnet --preset planes-cpu      # runs/shapes/occnet-planes-cpu
    mpgym shapes train deepsdf                          # runs/shapes/deepsdf-cpu
    mpgym shapes train prior --codes-from runs/shapes/deepsdf-cpu
    mpgym shapes train occnet --out runs/shapes/occnet-planes-cpu --resume
    mpgym shapes sample runs/shapes/prior-cpu -n 16
    mpgym shapes eval runs/shapes/occnet-planes-cpu
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from mpgym.errors import MpgymError
from neural3d.data.collections import CollectionConfig  # light: numpy only, for the flags

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


def mesh_main(argv: list[str]) -> int:
    """Entry point of ``mpgym mesh``."""
    from mpgym.errors import check_finite, check_positive
    from neural3d.mesh import check_mesh_output, check_resolution, extract_mesh, write_mesh

    args = tyro.cli(MeshArgs, args=argv, prog="mpgym mesh")
    check_positive("--resolution", args.resolution)
    check_resolution(args.resolution, hierarchical=args.hierarchical)
    if args.simplify is not None:
        check_positive("--simplify", args.simplify)
    if args.level is not None:
        check_finite("--level", args.level)
    if args.shape < 0:
        raise MpgymError(f"--shape must be a whole number >= 0; got {args.shape}.")
    if not args.run.exists():
        raise MpgymError(f"{args.run} does not exist; give a run directory or a checkpoint.")
    run_dir = args.run.parent if args.run.is_file() else args.run
    out = args.output or run_dir / "mesh.ply"
    check_mesh_output(out)
    from neural3d.implicit.fields import load_field

    field = load_field(args.run, args.shape)
    level = field.level if args.level is None else args.level
    mesh = extract_mesh(field.fn, field.bounds, args.resolution, level,
                        hierarchical=args.hierarchical, inside=field.inside,
                        simplify=args.simplify)
    write_mesh(mesh, out)
    info = mesh.metadata["extraction"]
    print(f"{field.kind}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, "
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
    overwrite: bool = False
    """Replace --out even if it holds a run of another kind or other files."""


def read_input(path: Path, n_points: int, repair: str, rng: np.random.Generator, *,
               require_watertight: bool = False):
    """``(points (N, 3), normals (N, 3) or None, mesh or None)``, normalised to the unit cube.

    Raises:
        MpgymError: a missing or unreadable file, or a mesh that is not watertight when
            ``require_watertight``.
    """
    from neural3d.data.meshes import MESH_SUFFIXES, POINT_SUFFIXES, load_mesh, load_points
    from neural3d.data.sampling import sample_surface

    if not path.is_file():
        raise MpgymError(f"no input file at {path}.")
    suffix = path.suffix.lower()
    if suffix in POINT_SUFFIXES:
        pts, nrm = load_points(path)
        return pts, nrm, None
    if suffix not in MESH_SUFFIXES:
        raise MpgymError(f"{path}: unknown input format {suffix or 'without a suffix'!r}; "
                         f"accepted: a mesh ({' '.join(MESH_SUFFIXES)}) or points (.npy of "
                         "(N, 3) points or (N, 6) points + normals).")
    mesh = load_mesh(path, repair=repair, require_watertight=require_watertight)  # type: ignore[arg-type]
    s = sample_surface(mesh, n_points, rng)
    return s.points, s.normals, mesh


def _check_fit_args(args: FitShapeArgs) -> None:
    """Every refusal that needs no input file, before anything is read or written."""
    from mpgym.errors import check_positive
    from neural3d.data.meshes import MAX_POINTS
    from neural3d.mesh import check_resolution

    check_positive("--points", args.points)
    if args.points > MAX_POINTS:
        raise MpgymError(f"--points must be at most {MAX_POINTS}; got {args.points}.")
    if args.iterations is not None:
        check_positive("--iterations", args.iterations)
    check_positive("--resolution", args.resolution)
    check_resolution(args.resolution, hierarchical=True)
    check_positive("--views", args.views)
    _preset(_presets(args.method), args.preset)


def fit_shape_main(argv: list[str]) -> int:
    """Entry point of ``mpgym fit-shape``."""
    from mpgym.runs import check_run_target, staged_run

    args = tyro.cli(FitShapeArgs, args=argv, prog="mpgym fit-shape")
    _check_fit_args(args)
    out = args.out or Path("runs") / "shapes" / f"{args.method}-{args.input.stem}"
    check_run_target(out, kind=args.method, overwrite=args.overwrite)
    if args.method != "igr" and args.input.suffix.lower() == ".npy":
        raise MpgymError(f"--method {args.method} needs a watertight mesh for occupancy and "
                         "distances; point clouds work with --method igr.")
    rng = np.random.default_rng(args.seed)
    points, normals, mesh = read_input(args.input, args.points, args.repair, rng,
                                       require_watertight=args.method != "igr")
    failure: MpgymError | None = None
    with staged_run(out, kind=args.method, overwrite=args.overwrite) as run:
        try:
            if args.method == "igr":
                fn, cfg = _fit_igr(args, points, normals, run)
            else:
                fn, cfg = _fit_multi(args, mesh, run, rng)
            _finish(args, run, fn, cfg, points, normals, mesh, out)
        except MpgymError as exc:  # training diverged or gave no surface: keep what it wrote
            failure = exc
    if failure is not None:
        raise MpgymError(f"{failure} (the run is kept in {out})")
    return 0


def _presets(method: str) -> dict:
    if method == "igr":
        from neural3d.implicit.igr import PRESETS
    elif method == "occnet":
        from neural3d.implicit.occnet import PRESETS
    else:
        from neural3d.implicit.deepsdf import PRESETS
    return PRESETS


def _fit_igr(args: FitShapeArgs, points, normals, run):
    from neural3d.implicit.igr import PRESETS, fit_igr

    cfg = _preset(PRESETS, args.preset)
    extra = {"iterations": args.iterations} if args.iterations is not None else {}
    cfg = replace(cfg, seed=args.seed, **extra)
    run.write_config(cfg, kind="igr", input=str(args.input))
    result = fit_igr(points, normals, cfg, run=run)
    return result.model, cfg


def _fit_multi(args: FitShapeArgs, mesh, run, rng):
    from neural3d.data.sampling import SamplingConfig
    from neural3d.implicit.data import samples_from_mesh

    samples = [samples_from_mesh(args.input.stem, mesh, SamplingConfig(), rng)]
    extra = {"iterations": args.iterations} if args.iterations is not None else {}
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


def _finish(args: FitShapeArgs, run, fn, cfg, points, normals, mesh, out: Path) -> None:
    """Extract, evaluate, write mesh.ply, results.json and mesh.png."""
    from mpgym.plots import save_image_grid
    from neural3d.data.sampling import sample_surface
    from neural3d.mesh import extract_mesh, render_mesh_views, write_mesh
    from neural3d.metrics import mesh_metrics, surface_metrics

    pred = extract_mesh(fn, 0.55, args.resolution, 0.0)
    write_mesh(pred, run.file("mesh.ply"))
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
          f"{m.fscore:.4f}, normal consistency {m.normal_consistency:.4f} -> {out}")


# -- mpgym shapes prepare ---------------------------------------------------------------------
@dataclass(frozen=True)
class PrepareArgs:
    """Normalise, split (train/val/test), sample and cache a shape collection."""

    source: str = "pybullet"
    """pybullet (the wheel's 1,000 objects), procedural (neural3d.shapes families) or a folder."""
    limit: int | None = None
    """Keep this many shapes, taken from every split in proportion (>= 3)."""
    cache: Path = Path("runs/cache/shapes")
    """Parent folder of the caches (one subfolder per source and settings)."""
    config: Annotated[CollectionConfig, tyro.conf.arg(name="")] = field(
        default_factory=CollectionConfig)
    """What is sampled per shape."""


SHAPES_USAGE = """usage: mpgym shapes {prepare,train,sample,eval} ...

subcommands:
  prepare   normalise, split and cache a shape collection (mpgym shapes prepare --help)
  train     train a shape model on it: mpgym shapes train occnet|deepsdf|prior|gan
            [--preset cpu] [--out RUN] [--resume]
  sample    meshes and a picture from a run: mpgym shapes sample RUN -n 16
  eval      the held-out metric of a run: mpgym shapes eval RUN"""


def prepare_main(argv: list[str]) -> int:
    """Entry point of ``mpgym shapes prepare``."""
    from neural3d.data.collections import check_config, prepare_collection

    args = tyro.cli(PrepareArgs, args=argv, prog="mpgym shapes prepare",
                    config=(tyro.conf.OmitArgPrefixes,))
    check_config(args.config)
    if args.limit is not None and args.limit < 3:
        raise MpgymError(f"--limit must be a whole number >= 3 (one shape per split); got "
                         f"{args.limit}.")
    if args.source not in ("pybullet", "procedural") and not Path(args.source).is_dir():
        raise MpgymError(f"--source {args.source!r} is neither pybullet, procedural nor a "
                         "folder of meshes.")
    coll = prepare_collection(args.source, args.config, limit=args.limit, cache_dir=args.cache)
    print(coll.summary())
    if coll.skipped:
        reasons: dict[str, int] = {}
        for _, why in coll.skipped:
            reasons[why.split(";")[0][:80]] = reasons.get(why.split(";")[0][:80], 0) + 1
        for why, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
            print(f"  skipped {n}: {why}")
    return 0


def shapes_main(argv: list[str]) -> int:
    """Entry point of ``mpgym shapes``."""
    commands = {"prepare": prepare_main, "train": train_main, "sample": sample_main,
                "eval": eval_main}
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(SHAPES_USAGE)
        return 0
    if argv[0] not in commands:
        raise MpgymError(f"unknown subcommand {argv[0]!r}; accepted: {', '.join(commands)}.")
    return commands[argv[0]](argv[1:])


# -- mpgym shapes train -----------------------------------------------------------------------
TRAIN_USAGE = """usage: mpgym shapes train MODEL [--preset NAME] [--out RUN] [--resume] [flags]

MODEL: occnet (held-out IoU), deepsdf (held-out Chamfer), prior (latent diffusion over a
deepsdf run's codes: --codes-from RUN), gan (3D voxel GAN). 'mpgym shapes train MODEL --help'
lists the model's flags and presets."""


def train_main(argv: list[str]) -> int:
    """``mpgym shapes train MODEL [--preset NAME] [--out RUN] [--resume] [flags]``."""
    from mpgym.cli import helped, pop_flag
    from neural3d.implicit import shape_runs as R

    if not argv or argv[0] in ("-h", "--help"):
        print(TRAIN_USAGE)
        return 0
    model, argv = argv[0], argv[1:]
    R.check_model(model)
    argv, preset_name = pop_flag(argv, "--preset")
    resume = "--resume" in argv
    argv = [a for a in argv if a != "--resume"]
    argv, out_flag = pop_flag(argv, "--out")
    out = Path(out_flag) if out_flag else None
    saved = _resumed_run(model, out) if resume else None
    preset_name = preset_name or (saved or {}).get("preset") or "cpu"
    default = R.preset(model, preset_name)
    if saved is not None:
        from mpgym.configs import config_from_dict

        default = config_from_dict(type(default), saved.get("config", {}))
    fields = [
        ("model", type(default), field(default=default)),
        ("collection", helped(str, "A prepared collection: pybullet, procedural or its cache "
                              "folder ('mpgym shapes prepare' makes it)."),
         field(default=(saved or {}).get("collection", "pybullet"))),
        ("cache", helped(Path, "Parent folder of the prepared collections."),
         field(default=Path("runs/cache/shapes"))),
        ("limit", helped(int | None, "Train on the first N training shapes only."),
         field(default=(saved or {}).get("limit"))),
        ("codes_from", helped(Path | None, "prior: the deepsdf run whose codes it models."),
         field(default=(saved or {}).get("codes_from"))),
        ("overwrite", helped(bool, "Replace --out even if it holds another kind of run."),
         field(default=False)),
    ]
    import dataclasses

    args_cls = dataclasses.make_dataclass("ShapesTrainArgs", fields, frozen=True)
    args = tyro.cli(args_cls, args=argv, prog=f"mpgym shapes train {model}",
                    description=f"Train {model} on a prepared shape collection (preset "
                                f"{preset_name}). Also: --preset "
                                f"{'|'.join(R.PRESETS[model])}; --out RUN (default "
                                f"runs/shapes/{model}-PRESET); --resume continues --out RUN "
                                "(occnet, deepsdf).")
    _check_model_config(model, args.model)
    if args.limit is not None and args.limit < 1:
        raise MpgymError(f"--limit must be a whole number >= 1; got {args.limit}.")
    out = out or Path("runs") / "shapes" / f"{model}-{preset_name}"
    codes_from = None
    if model == "prior":
        if args.codes_from is None:
            raise MpgymError("the prior models a deepsdf run's codes; give --codes-from RUN.")
        codes_from = Path(args.codes_from).resolve()
        R.load_deepsdf_run(codes_from)  # a deepsdf run, readable, before any work
    if not resume:
        from mpgym.runs import check_run_target

        check_run_target(out, kind=R.kind_of(model), overwrite=args.overwrite)
    coll = R.open_collection(args.collection, cache=args.cache)
    outcome = _train_into(model, args.model, coll, out, preset=preset_name, limit=args.limit,
                          codes_from=codes_from, resume=resume, overwrite=args.overwrite)
    print(f"{model}: {outcome.steps} steps in {outcome.seconds / 60:.1f} min -> {out}")
    return 0


def _resumed_run(model: str, out: Path | None) -> dict:
    """The config.json of the run ``--resume`` continues; refusals before any work."""
    from neural3d.implicit import shape_runs as R

    if model in ("prior", "gan"):
        raise MpgymError(f"{model} training cannot be resumed (its trainer keeps no optimiser "
                         "state); train it afresh without --resume.")
    if out is None:
        raise MpgymError("--resume continues a run; give its directory with --out RUN.")
    found, cfg = R.run_model(out)
    if found != model:
        raise MpgymError(f"{out} holds a {found} run; resume it with 'mpgym shapes train "
                         f"{found} --out {out} --resume'.")
    return cfg


def _check_model_config(model: str, config) -> None:
    """The model's own range checks, before any work."""
    if model in ("occnet", "deepsdf"):
        from neural3d.implicit.collection import _check

        _check(config)
    elif model == "prior":
        from generative.trainer import check_train_config

        check_train_config(config.train)
    else:
        from mpgym.errors import check_positive
        from neural3d.implicit.voxel_gan import check_gan_config

        check_gan_config(config.gan)
        check_positive("--model.steps", config.steps)


def _train_into(model: str, config, coll, out: Path, *, preset: str, limit: int | None,
                codes_from: Path | None, resume: bool, overwrite: bool):
    """Train into ``out``: staged (whole or nothing), or in place when resuming."""
    from mpgym import RunDir
    from mpgym.runs import staged_run
    from neural3d.implicit import shape_runs as R

    def write(run) -> None:
        extra = {"codes_from": str(codes_from)} if codes_from is not None else {}
        run.write_config({"config": config}, kind=R.kind_of(model), model=model, preset=preset,
                         collection=str(coll.root.resolve()), limit=limit, **extra)

    if resume:
        run = RunDir(out)
        write(run)
        return R.train_model(model, config, coll, run, limit=limit, resume=True)
    with staged_run(out, kind=R.kind_of(model), overwrite=overwrite) as run:
        write(run)
        return R.train_model(model, config, coll, run, limit=limit, codes_from=codes_from)


# -- mpgym shapes sample / eval ---------------------------------------------------------------
@dataclass(frozen=True)
class SampleArgs:
    """Meshes and a picture from a trained shape model.

    Generators (prior, gan): new shapes, each beside its nearest training shape by Chamfer
    among those the run learnt from (so copying shows); the prior also draws interpolation
    strips between training codes. occnet, deepsdf: reconstructions of test shapes beside the
    shapes themselves.
    """

    run: tyro.conf.Positional[Path]
    """Run directory made by 'mpgym shapes train'."""
    n: Annotated[int, tyro.conf.arg(aliases=("-n",))] = 16
    """Shapes to draw."""
    seed: int = 0
    """Seed of the samples (and of input clouds / point draws)."""
    out_dir: Path | None = None
    """Where meshes and pictures go (default RUN/samples)."""
    collection: str | None = None
    """The prepared collection (default: the one the run was trained on)."""
    strips: int = 4
    """prior: interpolation strips of 8 codes each."""


MAX_DRAW = 256
"""Most shapes one ``shapes sample`` draws."""


def sample_main(argv: list[str]) -> int:
    """``mpgym shapes sample RUN -n 16``."""
    from mpgym.errors import check_positive
    from neural3d.implicit import shape_runs as R

    args = tyro.cli(SampleArgs, args=argv, prog="mpgym shapes sample")
    check_positive("-n", args.n)
    if args.n > MAX_DRAW:
        raise MpgymError(f"-n must be at most {MAX_DRAW}; got {args.n}.")
    if args.strips < 0:
        raise MpgymError(f"--strips must be >= 0; got {args.strips}.")
    model, cfg = R.run_model(args.run)
    coll = R.open_collection(args.collection or cfg.get("collection", "pybullet"))
    out = args.out_dir or args.run / "samples"
    out.mkdir(parents=True, exist_ok=True)
    if model in ("prior", "gan"):
        written = _sample_generator(model, args, coll, out)
    else:
        written = _sample_reconstructions(model, args, coll, out)
    for path in written:
        print(f"wrote {path}")
    return 0


def _sample_generator(model: str, args: SampleArgs, coll, out: Path) -> list[Path]:
    from neural3d.implicit import shape_runs as R
    from neural3d.implicit.shape_prior import save_mesh_grid
    from neural3d.mesh import write_mesh

    meshes = R.generate_meshes(model, args.run, args.n, seed=args.seed)
    seen = R.trained_on(model, R.run_model(args.run)[1], coll)
    nearest = R.nearest_training(meshes, coll, seed=args.seed, names=seen)
    tiles, report = [], []
    for i, (mesh, near) in enumerate(zip(meshes, nearest, strict=True)):
        if mesh is not None:
            write_mesh(mesh, out / f"sample-{i:03d}.ply")
        tiles += [mesh, None if near is None else R.shape_mesh(coll, near[0])]
        report.append({"sample": i, "empty": mesh is None,
                       "nearest_training": None if near is None else near[0],
                       "chamfer": None if near is None else near[1]})
    written = [save_mesh_grid(out / "samples.png", tiles, nrow=8)]
    written.append(_write_json(out / "samples.json", {"model": model, "samples": report}))
    if model == "prior" and args.strips:
        written.append(_interpolation_strips(args, out))
    return written


def _interpolation_strips(args: SampleArgs, out: Path) -> Path:
    """Strips of 8 slerp steps between pairs of training codes (the deepsdf run's)."""
    from neural3d.implicit import shape_runs as R
    from neural3d.implicit.shape_prior import decode_shapes, interpolate_codes, save_mesh_grid
    from neural3d.implicit.training import code_field

    _, decoder, _, run_cfg = R.load_prior_run(args.run)
    _, codes, _, _ = R.load_deepsdf_run(R.run_model(args.run)[1].get("codes_from", ""))
    pick = np.random.default_rng(args.seed).choice(len(codes), 2 * args.strips,
                                                   replace=len(codes) < 2 * args.strips)
    strips = [interpolate_codes(codes[a], codes[b], 8) for a, b in pick.reshape(-1, 2)]
    import torch

    meshes = decode_shapes(lambda z: code_field(decoder, z), torch.cat(strips),
                           resolution=run_cfg.mesh_resolution)
    return save_mesh_grid(out / "interpolation.png", meshes, nrow=8)


def _sample_reconstructions(model: str, args: SampleArgs, coll, out: Path) -> list[Path]:
    from neural3d.implicit import shape_runs as R
    from neural3d.implicit.shape_prior import save_mesh_grid
    from neural3d.mesh import write_mesh

    names, meshes = R.reconstruct_meshes(model, args.run, coll, args.n, seed=args.seed)
    tiles = []
    for name, mesh in zip(names, meshes, strict=True):
        if mesh is not None:
            write_mesh(mesh, out / f"{name}.ply")
        tiles += [mesh, R.shape_mesh(coll, name)]
    png = save_mesh_grid(out / "samples.png", tiles, nrow=8)
    return [png, _write_json(out / "samples.json", {"model": model, "test_shapes": names,
                                                   "empty": [m is None for m in meshes]})]


def _write_json(path: Path, data) -> Path:
    import json

    from mpgym.checkpoint import atomic_write_text, to_jsonable

    atomic_write_text(path, json.dumps(to_jsonable(data), indent=1))
    return path


@dataclass(frozen=True)
class EvalArgs:
    """The held-out metric of a trained shape model (written to RUN/eval-SPLIT.json).

    occnet: IoU from noisy surface points; deepsdf: Chamfer after latent optimisation (DeepSDF's
    convention); prior, gan: PointFlow MMD / COV / 1-NNA (Chamfer) against the split.
    """

    run: tyro.conf.Positional[Path]
    """Run directory made by 'mpgym shapes train'."""
    split: Literal["test", "val"] = "test"
    """Held-out split (test reports, val selects)."""
    limit: int | None = None
    """Only the first N shapes of the split."""
    seed: int = 0
    """Seed of input clouds, samples and point draws."""
    points: int | None = None
    """occnet: input points per shape (default: the run's input_points; the goal's is 300)."""
    emd: bool = False
    """prior, gan: also the EMD columns (slower)."""
    collection: str | None = None
    """The prepared collection (default: the one the run was trained on)."""


def eval_main(argv: list[str]) -> int:
    """``mpgym shapes eval RUN [--split test]``."""
    from mpgym.errors import check_positive
    from neural3d.implicit import shape_runs as R

    args = tyro.cli(EvalArgs, args=argv, prog="mpgym shapes eval")
    for flag, v in (("--limit", args.limit), ("--points", args.points)):
        if v is not None:
            check_positive(flag, v)
    _, cfg = R.run_model(args.run)
    coll = R.open_collection(args.collection or cfg.get("collection", "pybullet"))
    scores = R.evaluate_run(args.run, coll, split=args.split, limit=args.limit, seed=args.seed,
                            input_points=args.points, with_emd=args.emd)
    path = _write_json(args.run / f"eval-{args.split}.json", scores)
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in scores.items())
    print(f"{shown} -> {path}")
    return 0
