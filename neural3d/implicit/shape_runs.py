"""Train, sample and score the collection's shape models as run directories.

What ``mpgym shapes train|sample|eval`` and ``benchmarks/shapes.py`` share. Four models, each
a run directory ``runs/shapes/<model>-<preset>/`` whose ``config.json`` has
``kind = "shapes-<model>"``:

- ``occnet``: the conditional occupancy network, OccNet's or ConvONet's encoder
  (:mod:`neural3d.implicit.collection`); held-out metric: IoU from 300 noisy points.
- ``deepsdf``: DeepSDF's auto-decoder; held-out metric: Chamfer after latent optimisation
  (DeepSDF's convention: sum of both directions' mean squared distances).
- ``prior``: latent diffusion over a DeepSDF run's codes (:mod:`neural3d.implicit.shape_prior`;
  the run records which DeepSDF run decodes its codes).
- ``gan``: the 3D voxel GAN (:mod:`neural3d.implicit.voxel_gan`).

Generators (prior, gan) are scored with the PointFlow protocol (:mod:`neural3d.shape_metrics`):
as many generated shapes as the reference split holds, 2,048 points each, every cloud scaled
to its own bounding box (``normalize="box"``), MMD / COV / 1-NNA under Chamfer against the
test split's cached surface points. :func:`reference_metrics` scores training shapes the same
way: what a generator that copies its training set would get.

Resuming: ``occnet`` and ``deepsdf`` continue from their checkpoint and ``trainer.pt``
(optimiser, scheduler, sampling generator, step). ``prior`` and ``gan`` train through
:func:`generative.trainer.train`, which keeps no optimiser state, so they restart.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generative.trainer import TrainConfig
from mpgym import MpgymError, RunDir
from neural3d.data.collections import DEFAULT_CACHE, CollectionConfig, ShapeCollection
from neural3d.implicit import collection as C
from neural3d.implicit.shape_prior import DEFAULT_TRAIN, ShapePriorConfig
from neural3d.implicit.voxel_gan import PRESETS as GAN_PRESETS
from neural3d.implicit.voxel_gan import VoxelGANConfig

log = logging.getLogger(__name__)

MODELS = ("occnet", "deepsdf", "prior", "gan")
"""The shape models a run can hold."""
POINTS = 2048
"""Points per cloud in the PointFlow protocol."""


@dataclass(frozen=True)
class PriorRunConfig:
    """Latent diffusion over a DeepSDF run's training codes."""

    prior: ShapePriorConfig = ShapePriorConfig()
    """The diffusion model (its ``latent_dim`` is set from the codes)."""
    train: TrainConfig = DEFAULT_TRAIN
    """The training loop."""
    mesh_resolution: int = 64
    """Marching-cubes cells per axis when decoding samples (MISE)."""


@dataclass(frozen=True)
class GANRunConfig:
    """The 3D voxel GAN on the training split's 32^3 grids."""

    gan: VoxelGANConfig = GAN_PRESETS["cpu"]
    """Networks and optimiser (Wu et al. 2016; ``cpu``: 1/8 of the channels, D at 1e-3)."""
    steps: int = 2500
    """Training steps (the val-split choice, ~10 minutes on 2 threads)."""
    max_minutes: float = 25.0
    """Stop after this many minutes (0: no limit)."""
    seed: int = 0
    """Seed of the initialisation and the noise."""


PRESETS: dict[str, dict[str, Any]] = {
    "occnet": C.OCCNET_PRESETS,
    "deepsdf": C.DEEPSDF_PRESETS,
    "prior": {
        # chosen on the val split over the cpu DeepSDF codes (see C.DEEPSDF_PRESETS): the
        # module defaults (256 wide, 6,000 steps, 0.4 min) gave 1-NNA 0.679 / COV 0.404 with 8
        # of 99 samples empty; 20,000 steps 0.652 / 0.465; 512 wide and 20,000 steps (4.5 min)
        # 0.626 / 0.495, no empty sample. Then, means over sampling seeds 0-2: that model
        # 0.599 / 0.481; predicting v instead of eps 0.564 / 0.488 (kept); eps with a 4-block
        # residual denoiser (20 min) 0.603 / 0.485; DDIM eta, 250 steps or the ancestral
        # sampler within the seeds' spread (+-0.04)
        "cpu": PriorRunConfig(prior=ShapePriorConfig(hidden=512, prediction="v"),
                              train=replace(DEFAULT_TRAIN, steps=20_000)),
        "paper": PriorRunConfig(prior=ShapePriorConfig(latent_dim=256, hidden=512)),
        "tiny": PriorRunConfig(
            prior=ShapePriorConfig(T=100, hidden=32, sample_steps=10),
            train=replace(DEFAULT_TRAIN, steps=40, batch_size=8, eval_every=20, progress=False),
            mesh_resolution=32,
        ),
    },
    "gan": {
        "cpu": GANRunConfig(),
        "paper": GANRunConfig(gan=GAN_PRESETS["paper"], max_minutes=0.0),
        "tiny": GANRunConfig(gan=replace(GAN_PRESETS["cpu"], width=1 / 32, batch_size=4),
                             steps=4, max_minutes=0.0),
    },
}
"""Named configs per model; ``cpu`` is the default and the benchmark's (at most ~30 minutes on
2 cores), ``tiny`` is for tests. The occnet presets include ConvONet's (``planes-cpu``...)."""


def kind_of(model: str) -> str:
    """The ``config.json`` kind of a model's run directory."""
    return f"shapes-{model}"


def check_model(model: str) -> None:
    """Raises: MpgymError: an unknown model name."""
    if model not in MODELS:
        raise MpgymError(f"unknown shape model {model!r}; accepted: {', '.join(MODELS)}.")


def preset(model: str, name: str) -> Any:
    """The named config of a model.

    Raises:
        MpgymError: an unknown model or preset.
    """
    check_model(model)
    if name not in PRESETS[model]:
        raise MpgymError(
            f"unknown {model} preset {name!r}; accepted: {', '.join(PRESETS[model])}."
        )
    return PRESETS[model][name]


# ---------------------------------------------------------------------------- the collection
def open_collection(which: str | Path = "pybullet", *, cache: str | Path = DEFAULT_CACHE
                    ) -> ShapeCollection:
    """A collection that ``mpgym shapes prepare`` made, without preparing anything.

    Args:
        which: a prepared cache folder (holding ``index.json``), or a source name
            (``pybullet``, ``procedural``, a folder's name) looked up under ``cache``; where
            several settings were prepared, the default settings' cache is taken.
        cache: parent folder of the caches.

    Raises:
        MpgymError: no prepared collection (the message says how to make one), or several
            with none of the default settings.
    """
    from mpgym.configs import config_from_dict
    from neural3d.data.collections import prepare_collection

    folder = Path(which)
    if not (folder / "index.json").is_file():
        found = sorted(p.parent for p in Path(cache).glob(f"{which}-*/index.json"))
        if not found:
            raise MpgymError(
                f"no prepared {which} collection under {cache}; run 'mpgym shapes prepare "
                f"--source {which}' first, or give the prepared folder."
            )
        folder = found[0]
        if len(found) > 1:
            default = _jsonable(CollectionConfig())
            defaults = [p for p in found if _index(p).get("config") == default]
            if not defaults:
                raise MpgymError(
                    f"several prepared {which} collections under {cache} "
                    f"({', '.join(p.name for p in found)}); give the folder of one."
                )
            folder = defaults[0]
    index = _index(folder)
    entries = index.get("entries")
    if not isinstance(entries, dict) or not entries or not isinstance(index.get("source"), str):
        raise MpgymError(f"{folder}/index.json describes no prepared collection; prepare it again.")
    config = config_from_dict(CollectionConfig, index.get("config") or {})
    coll = prepare_collection(index["source"], config, limit=len(entries),
                              cache_dir=folder.parent, progress_bar=False)
    if coll.root.resolve() != folder.resolve():
        raise MpgymError(f"{folder} does not match its source's current files; prepare it again.")
    return coll


def _index(folder: Path) -> dict:
    try:
        data = json.loads((folder / "index.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise MpgymError(f"{folder}/index.json cannot be read ({exc}); prepare it again.") from None
    return data if isinstance(data, dict) else {}


def _jsonable(config: Any) -> Any:
    from mpgym.checkpoint import to_jsonable

    return json.loads(json.dumps(to_jsonable(config)))


def surface_clouds(collection: ShapeCollection, split: str, *, n: int = POINTS, seed: int = 0,
                   limit: int | None = None, names: list[str] | None = None
                   ) -> tuple[list[str], np.ndarray]:
    """``n`` of each shape's cached surface points (uniform by area), ``(names, (S, n, 3))``.

    The split's first ``limit`` shapes, or those of it named in ``names``.
    """
    rng = np.random.default_rng(seed)
    records = collection.split(split)[:limit]  # type: ignore[arg-type]
    if names is not None:
        wanted = set(names)
        records = [r for r in records if r.name in wanted]
    clouds = np.empty((len(records), n, 3), np.float32)
    for i, rec in enumerate(records):
        pts = collection.load(rec).surface_points
        clouds[i] = pts[rng.choice(len(pts), n, replace=len(pts) < n)]
    return [r.name for r in records], clouds


def shape_mesh(collection: ShapeCollection, name: str, resolution: int = 48):
    """A picture mesh of a collection shape (the cache keeps samples, not meshes).

    Its cached occupancy and SDF samples label a voxel grid (nearest sample,
    :func:`~neural3d.implicit.voxel_gan.voxelize_points`); a Gaussian blur of one voxel
    smooths the labels' noise before marching cubes at 0.5.
    """
    from scipy.ndimage import gaussian_filter

    from neural3d.implicit.voxel_gan import voxelize_points, voxels_to_mesh

    rec = next(r for r in collection.shapes if r.name == name)
    s = collection.load(rec)
    pts = np.concatenate([s.occ_points, s.sdf_points])
    grid = voxelize_points(pts, np.concatenate([s.occupancy, s.sdf < 0]), resolution)
    return voxels_to_mesh(gaussian_filter(grid.astype(np.float32), 1.0))


# ---------------------------------------------------------------------------- training
@dataclass
class TrainOutcome:
    """What :func:`train_model` did."""

    model: str
    seconds: float
    steps: int
    stopped: str = "steps"
    """``steps`` (the budget of steps was done) or ``time`` (the time cap came first)."""
    extra: dict[str, Any] = field(default_factory=dict)


def train_model(model: str, config: Any, collection: ShapeCollection, run: RunDir, *,
                limit: int | None = None, resume: bool = False, codes_from: Path | None = None,
                progress_bar: bool = True) -> TrainOutcome:
    """Train one model on the collection's train split into ``run``.

    Args:
        model: one of :data:`MODELS`.
        config: its config (:data:`PRESETS`).
        collection: a prepared collection.
        run: the run directory (``config.json`` is written by the caller).
        limit: only the first training shapes.
        resume: continue occnet / deepsdf from the run's checkpoint.
        codes_from: the DeepSDF run whose codes the prior models.
        progress_bar: show a progress bar on a terminal.

    Raises:
        MpgymError: resuming a prior or GAN, a prior without a DeepSDF run.
    """
    check_model(model)
    if resume and model in ("prior", "gan"):
        raise MpgymError(
            f"{model} training cannot be resumed (its trainer keeps no optimiser state); "
            "train it afresh."
        )
    if model == "occnet":
        r = C.train_occnet_collection(collection, config, limit=limit, run=run, resume=resume,
                                      progress_bar=progress_bar)
        return TrainOutcome(model, r.seconds, r.steps,
                            "time" if r.steps < config.iterations else "steps")
    if model == "deepsdf":
        res = C.train_deepsdf_collection(collection, config, limit=limit, run=run,
                                         resume=resume, progress_bar=progress_bar)
        return TrainOutcome(model, res.seconds, res.steps)
    if model == "prior":
        return _train_prior(config, codes_from, run, progress_bar)
    return _train_gan(config, collection, run, limit, progress_bar)


def _train_prior(config: PriorRunConfig, codes_from: Path | None, run: RunDir,
                 progress_bar: bool) -> TrainOutcome:
    from neural3d.implicit.shape_prior import train_prior

    if codes_from is None:
        raise MpgymError("the prior models a DeepSDF run's codes; give --codes-from RUN.")
    _, codes, _, _ = load_deepsdf_run(codes_from)
    prior_cfg = replace(config.prior, latent_dim=codes.shape[1])
    tc = replace(config.train, progress=config.train.progress and progress_bar)
    t0 = time.perf_counter()
    _, res = train_prior(codes, prior_cfg, tc, run=run)
    return TrainOutcome("prior", time.perf_counter() - t0, res.steps,
                        "time" if res.stopped == "time" else "steps",
                        {"codes": len(codes), "latent_dim": codes.shape[1]})


def _train_gan(config: GANRunConfig, collection: ShapeCollection, run: RunDir,
               limit: int | None, progress_bar: bool) -> TrainOutcome:
    from neural3d.implicit.voxel_gan import train_voxel_gan, voxelize_collection

    vox = voxelize_collection(collection, "train", progress_bar=progress_bar)[:limit]
    val = voxelize_collection(collection, "val", progress_bar=progress_bar)
    t0 = time.perf_counter()
    _, res = train_voxel_gan(vox, config.gan, steps=config.steps, val_voxels=val,
                             max_seconds=60.0 * config.max_minutes, seed=config.seed,
                             eval_every=max(1, min(250, config.steps)), run=run,
                             progress=progress_bar)
    return TrainOutcome("gan", time.perf_counter() - t0, res.steps,
                        "time" if res.stopped == "time" else "steps")


# ---------------------------------------------------------------------------- loading runs
def run_model(path: str | Path) -> tuple[str, dict]:
    """``(model, config.json)`` of a shape-model run directory.

    Raises:
        MpgymError: not a run directory, or a run of another kind.
    """
    from mpgym.runs import read_run_config

    cfg = read_run_config(path)
    kind = cfg.get("kind")
    models = {kind_of(m): m for m in MODELS}
    if kind not in models:
        raise MpgymError(
            f"{path} holds a {kind!r} run, not a shape model; accepted kinds: "
            f"{', '.join(models)} (made by 'mpgym shapes train')."
        )
    if not (Path(path) / "checkpoint.safetensors").is_file():
        raise MpgymError(f"{path} has no checkpoint.safetensors; was its training interrupted?")
    return models[kind], cfg


def load_deepsdf_run(path: str | Path):
    """``(decoder, codes, config, meta)`` of a deepsdf run (or a shapes-deepsdf checkpoint)."""
    path = Path(path)
    if path.is_dir():
        model, _ = run_model(path)
        if model != "deepsdf":
            raise MpgymError(f"{path} is a {model} run; a deepsdf run is needed here.")
        path = path / "checkpoint.safetensors"
    return C.load_deepsdf_collection(path)


def load_prior_run(path: Path):
    """``(prior, decoder, deepsdf config, run config)`` of a prior run."""
    from mpgym.configs import config_from_dict
    from neural3d.implicit.shape_prior import load_prior

    _, cfg = run_model(path)
    prior = load_prior(path / "checkpoint.safetensors")
    decoder, _, ds_cfg, _ = load_deepsdf_run(cfg.get("codes_from", ""))
    run_cfg = config_from_dict(PriorRunConfig, cfg.get("config", {}))
    return prior, decoder, ds_cfg, run_cfg


# ---------------------------------------------------------------------------- sampling
def generate_meshes(model: str, path: Path, n: int, *, seed: int = 0) -> list[Any]:
    """``n`` generated meshes of a prior or GAN run (None where a sample is empty)."""
    from neural3d.implicit.shape_prior import decode_shapes
    from neural3d.implicit.training import code_field
    from neural3d.implicit.voxel_gan import load_gan

    gen = torch.Generator().manual_seed(seed)
    if model == "gan":
        return load_gan(path / "checkpoint.safetensors").sample_meshes(n, gen)
    prior, decoder, _, run_cfg = load_prior_run(path)
    codes = prior.sample_codes(n, gen)
    return decode_shapes(lambda z: code_field(decoder, z), codes,
                         resolution=run_cfg.mesh_resolution)


def trained_on(model: str, run_config: dict, collection: ShapeCollection) -> list[str]:
    """The training shapes a prior or GAN run learnt from (the prior: its DeepSDF run's)."""
    if model == "prior":
        _, _, _, meta = load_deepsdf_run(run_config.get("codes_from", ""))
        if isinstance(meta.get("names"), list):
            return [str(n) for n in meta["names"]]
    limit = run_config.get("limit")
    return [r.name for r in collection.split("train")[: limit if isinstance(limit, int) else None]]


def nearest_training(meshes: list[Any], collection: ShapeCollection, *, seed: int = 0,
                     names: list[str] | None = None) -> list[tuple[str, float] | None]:
    """Each mesh's nearest training shape by Chamfer (collection frame): ``(name, CD)``.

    Among ``names`` (default: the whole training split).
    """
    from neural3d.shape_metrics import pairwise_chamfer, sample_point_clouds

    names, train = surface_clouds(collection, "train", seed=seed, names=names)
    keep = [i for i, m in enumerate(meshes) if m is not None and len(m.faces)]
    out: list[tuple[str, float] | None] = [None] * len(meshes)
    if keep:
        clouds = sample_point_clouds([meshes[i] for i in keep], np.random.default_rng(seed))
        d = pairwise_chamfer(clouds, train)
        for row, i in enumerate(keep):
            j = int(d[row].argmin())
            out[i] = (names[j], float(d[row, j]))
    return out


def reconstruct_meshes(model: str, path: Path, collection: ShapeCollection, n: int, *,
                       seed: int = 0) -> tuple[list[str], list[Any]]:
    """Meshes of the first ``n`` test shapes as an occnet or deepsdf run reconstructs them.

    occnet: from 300 (the run's ``input_points``) noisy surface points; deepsdf: latent
    optimisation on the cached SDF samples.
    """
    from neural3d.mesh import extract_mesh

    bank = C.load_bank(collection, "test", fields=("surface", "sdf"), limit=n)
    gen = torch.Generator().manual_seed(seed)
    if model == "occnet":
        net, cfg, _ = C.load_occnet_collection(path / "checkpoint.safetensors")
        clouds = C.noisy_inputs(bank.surface, cfg.input_points, cfg.input_noise, gen)
        level = math.log(cfg.threshold / (1 - cfg.threshold))  # the IoU's threshold, as a logit

        def occnet_mesh(cloud: torch.Tensor):
            with torch.no_grad():
                feats = net.encoder(cloud[None])
                return extract_mesh(lambda x: net.decoder(x[None], feats)[0], 0.55, 64, level,
                                    inside="above", normals="mesh", coarse_resolution=16)

        return bank.names, [_mesh_or_none(occnet_mesh, c) for c in clouds]
    decoder, _, cfg, _ = C.load_deepsdf_collection(path / "checkpoint.safetensors")
    codes = C.infer_codes(decoder, bank.sdf_points, bank.sdf, cfg, gen=gen)
    return bank.names, [_mesh_or_none(C.mesh_of_code, decoder, z, resolution=cfg.mesh_resolution)
                        for z in codes]


def _mesh_or_none(make, *args, **kwargs):
    """``make(*args, **kwargs)``, or None where the field has no surface in the box."""
    try:
        return make(*args, **kwargs)
    except MpgymError:
        return None


# ---------------------------------------------------------------------------- scores
def set_scores(clouds: np.ndarray, ref: np.ndarray, *, with_emd: bool = False,
               seed: int = 0, empty_samples: int = 0) -> dict[str, float]:
    """PointFlow's MMD / COV / 1-NNA (CD; EMD when asked) of clouds against a reference set.

    ``empty_samples``: generated shapes without a surface, beyond ``clouds`` (see
    :func:`neural3d.shape_metrics.with_empty_samples`).
    """
    from neural3d.shape_metrics import shape_set_metrics

    m = shape_set_metrics(clouds, ref, empty_samples=empty_samples, normalize="box",
                          with_emd=with_emd, rng=np.random.default_rng(seed))
    out = {"mmd_cd": m.mmd_cd, "cov_cd": m.cov_cd, "1nna_cd": m.nna_cd,
           "n_sample": m.n_sample, "n_ref": m.n_ref}
    if with_emd:
        out |= {"mmd_emd": m.mmd_emd, "cov_emd": m.cov_emd, "1nna_emd": m.nna_emd}
    return out  # type: ignore[return-value]


def reference_metrics(collection: ShapeCollection, *, split: str = "test", seed: int = 0,
                      limit: int | None = None, with_emd: bool = False) -> dict[str, float]:
    """The set scores of training shapes "as the generator" (as many as the reference split)."""
    _, ref = surface_clouds(collection, split, seed=seed, limit=limit)
    _, train = surface_clouds(collection, "train", seed=seed + 1)
    pick = np.random.default_rng(seed).choice(len(train), min(len(ref), len(train)),
                                              replace=False)
    return set_scores(train[pick], ref, with_emd=with_emd, seed=seed)


def evaluate_run(path: str | Path, collection: ShapeCollection, *, split: str = "test",
                 limit: int | None = None, seed: int = 0, input_points: int | None = None,
                 with_emd: bool = False) -> dict[str, Any]:
    """The held-out metric of a run: IoU (occnet), Chamfer (deepsdf), MMD/COV/1-NNA (generators).

    Args:
        path: the run directory.
        collection: the collection it was trained on.
        split: the held-out split (``test`` reports, ``val`` selects).
        limit: only the first shapes of the split.
        seed: seed of input clouds, samples and point draws.
        input_points: occnet: input points per shape (default: the run's; the goal's 300).
        with_emd: generators: also the EMD columns (slower).
    """
    path = Path(path)
    model, _ = run_model(path)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"model": model, "split": split}
    if model == "occnet":
        net, cfg, _ = C.load_occnet_collection(path / "checkpoint.safetensors")
        if input_points is not None:
            cfg = replace(cfg, input_points=input_points)
        held = C.eval_occnet_heldout(net, collection, cfg, split=split, limit=limit, seed=seed)
        out |= {"iou": held.mean, "input_points": cfg.input_points, "shapes": len(held.ious)}
    elif model == "deepsdf":
        decoder, _, cfg, _ = C.load_deepsdf_collection(path / "checkpoint.safetensors")
        rec = C.reconstruct_heldout(decoder, collection, cfg, split=split, limit=limit, seed=seed)
        out |= {"chamfer_mean": rec.mean, "chamfer_median": rec.median, "failed": rec.failed,
                "shapes": len(rec.chamfer)}
    else:
        from neural3d.shape_metrics import sample_point_clouds

        _, ref = surface_clouds(collection, split, seed=seed, limit=limit)
        meshes = generate_meshes(model, path, len(ref), seed=seed)
        ok = [m for m in meshes if m is not None and len(m.faces)]
        if not ok or len(ok) + len(ref) < 3:
            raise MpgymError(
                f"{path}: set metrics need 3 clouds or more in all; {len(ok)} of {len(meshes)} "
                f"samples have a surface and the {split} split holds {len(ref)} shape(s)."
            )
        clouds = sample_point_clouds(ok, np.random.default_rng(seed))
        empty = len(meshes) - len(ok)
        out |= set_scores(clouds, ref, with_emd=with_emd, seed=seed, empty_samples=empty)
        out["empty_samples"] = empty
    out["seconds"] = time.perf_counter() - t0
    return out
