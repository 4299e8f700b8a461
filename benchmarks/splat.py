"""Gaussian splatting benchmark: splat vs hash NeRF over training time; the CPU rasterizer's speed.

Part ``train`` -- the built-in ``tabletop`` scene at 128x128 with the NeRF benchmark's split
(100 train / 16 test views, ``benchmarks/nerf.py``'s dataset folder): the splat ``cpu`` preset
and the hash NeRF preset, each unchanged, each trained for 600 s of optimisation time (30 s with
``--quick``), one after the other in this run under the machine-wide timing lock
(``/tmp/mpgym-timing.lock``) with ``uptime`` read before and after each. Both are snapshotted at
the first step past each time of the NeRF benchmark's fine grid (every 2 s to 10 s, 5 s to 30 s,
10 s to 120 s, 30 s to 300 s, 60 s to 600 s) off the clock, and every snapshot is rendered on all
16 test views (PSNR, SSIM, white background), the JSON rewritten after each snapshot so that
``--stage eval`` resumes. The splat curve also records the number of Gaussians; a turntable GIF
of the final splats is written beside the JSON (``<json stem>-turntable.gif``).

Goals: ``splat_minus_hash_psnr_600s`` >= +1.0 dB (16-view PSNR at 600 s); and
``splat_time_to_hash_psnr_ratio`` <= 0.3: the training time of the first splat snapshot whose
16-view PSNR reaches the hash NeRF's 600-s PSNR, over 600 s (read off the grid, an upper bound
within one grid step; the interpolation between the bracketing snapshots is reported beside it).

Part ``speed`` -- 100,000 Gaussians from the 3DGS random initialisation (uniform in a box of
half side 1, isotropic scales from the 3 nearest neighbours, opacity 0.1, SH degree 3 with
random coefficients), seen from 4 m with NeRF-synthetic's field of view at 256x256, 2 threads:
``splat_render_fps_256_100k`` >= 30 (forward render: projection, SH colours, binning and
sorting, rasterization; best of 10 after a warm-up); per-stage times of the forward and the
backward; ``splat_step_ms_per_mpixel_vs_forward`` (a training step -- render, L1 + SSIM loss,
backward -- over the forward render, both per megapixel) reported without a goal. The same is
timed on the PyTorch reference path at a smaller size as a row.

    python benchmarks/splat.py --json runs/bench/splat.json [--quick]      # every part
    python benchmarks/splat.py --part speed --json benchmarks/results/splat-speed.json
    python benchmarks/splat.py --part train --json benchmarks/results/splat-train.json
    python benchmarks/splat.py --part train --stage eval --json (same file)  # resume evaluation
    python benchmarks/splat.py --merge benchmarks/results/splat-speed.json
        benchmarks/results/splat-train.json --json benchmarks/results/splat.json

Part ``tune`` (never part of the report, so never in the default ``--part``) -- a tuning run of
the ``cpu`` preset with ``--set KEY=VALUE`` changes (repeatable) on the same dataset: trained on
the train split with ``--tune-seed`` (default 1; the benchmark's seed, the preset's 0, is
refused) for ``--seconds`` of optimisation time, snapshotted at 10/25/50/75/100% of it and scored
on the *validation* views only (mean PSNR, white background); the test views are not rendered.
The first :data:`TUNE_TRAIN_VIEWS` training views are scored too (``train_psnr``): how far a
setting fits what it trains on, against how far it carries to new views.
Each run is added, with its whole config, under its name (the changes, sorted; a name the
study holds for another config, as ``preset s1`` of an earlier preset, is refused before
training) to ``--json`` (default
``benchmarks/results/splat-cpu-tuning-val.json``), one JSON per tuning study, so that runs made
two at a time on the two cores, in separate processes and sittings, merge:

    python benchmarks/splat.py --part tune --set sh_degree=1 &
    python benchmarks/splat.py --part tune --set opacity_lr=0.025

Part ``error`` (never part of the report either) -- where the final splats of a train part's
JSON (``--from``, default ``benchmarks/results/splat-train.json``; its snapshot files must still
be on disk) miss: the per-pixel squared error on the first :data:`ERROR_VIEWS` training and
validation views (never the test views) split into the object's silhouette band (pixels of
partial ground-truth alpha and their 8-neighbours), its interior, the 10% of interior pixels of
the strongest ground-truth gradient (texture) and the background; shares of the error against
shares of the pixels, and the Gaussians no training view can give a gradient (peak alpha under
the 1/255 cut everywhere), written to ``--json`` (default ``benchmarks/results/splat-error.json``)
with a PNG of the error maps:

    python benchmarks/splat.py --part error

Threads: ``--threads 1`` for the training part by default (torch, numba, BLAS), as the NeRF
benchmark; the speed part uses 2 (``--speed-threads``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)  # the NeRF benchmark's grid, snapshots and evaluation are reused

import nerf as nerf_bench  # noqa: E402

from mpgym.bench import Goal, bench_parser, machine_info, parse_overrides, report  # noqa: E402
from mpgym.checkpoint import atomic_write_text, to_jsonable  # noqa: E402
from mpgym.errors import MpgymError, check_positive  # noqa: E402

log = logging.getLogger("splat-bench")

PARTS = ("speed", "train", "tune", "error")
REPORT_PARTS = ("speed", "train")
TUNE_JSON = Path("benchmarks/results/splat-cpu-tuning-val.json")
TUNE_LOCK = "/tmp/mpgym-splat-tune.lock"
"""Held while a tuning run is written into its study (outside the repository, like the timing
lock)."""
TUNE_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)
"""Snapshot times of a tuning run, as fractions of its ``--seconds``."""
TUNE_TRAIN_VIEWS = 4
"""Training views a tuning run's snapshots are also scored on (as many as the tabletop's val)."""
ERROR_JSON = Path("benchmarks/results/splat-error.json")
ERROR_VIEWS = 4
"""Training and validation views the error part looks at (as many as the tabletop's val)."""
ERROR_EDGE_ALPHA = (0.02, 0.98)
"""Ground-truth alpha strictly between these is the object's edge (the band adds its
8-neighbours); at or above the upper one the interior, at or below the lower the background."""
TRAIN_PRESETS = ("splat", "hash")
SPEED_N, SPEED_SIZE = 100_000, 256


# ----------------------------------------------------------------------------------- speed


def speed_scene(n: int, size: int, seed: int = 0):
    """``n`` Gaussians of the 3DGS random init and a camera 4 m away looking at them."""
    from neural3d.cameras import Intrinsics, look_at
    from neural3d.data.multiview import NERF_SYNTHETIC_ANGLE
    from neural3d.splat.model import GaussianModel

    model = GaussianModel.random(n, 1.0, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # view-dependent colour, so the SH evaluation costs what it does
        model.params["sh_rest"].copy_(0.1 * torch.randn(model.params["sh_rest"].shape,
                                                        generator=gen))
    model.sh_degree = model.max_sh_degree
    eye = np.array([1.0, -1.0, 0.8])
    c2w = torch.as_tensor(look_at(4.0 * eye / np.linalg.norm(eye)), dtype=torch.float32)
    intr = Intrinsics.from_fov(NERF_SYNTHETIC_ANGLE, size, size)
    return model, c2w, intr


def _best(fn, repeats: int) -> tuple[float, float]:
    """Best wall and best process-CPU seconds of ``repeats`` calls after one warm-up call."""
    fn()
    best, best_cpu = math.inf, math.inf
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu,
                                                                   time.process_time() - c0)
    return best, best_cpu


def speed_rows(backend: str, n: int, size: int, repeats: int) -> dict:
    """Forward render and training-step times of one backend (one row)."""
    from neural3d.image_metrics import ssim_tensor
    from neural3d.splat.render import render

    model, c2w, intr = speed_scene(n, size)
    bg = torch.ones(3)
    target = torch.rand(size, size, 3, generator=torch.Generator().manual_seed(1))

    def forward():
        with torch.no_grad():
            return render(model, c2w, intr, background=bg, backend=backend)

    def train_step():
        model.zero_grad(set_to_none=True)
        out = render(model, c2w, intr, background=bg, backend=backend)
        loss = 0.8 * (out.image - target).abs().mean() + 0.2 * (
            1 - ssim_tensor(out.image, target, padding="same"))
        loss.backward()

    fwd, fwd_cpu = _best(forward, repeats)
    step, step_cpu = _best(train_step, max(1, repeats // 2))
    out = forward()
    mpix = size * size / 1e6
    return {
        "part": "speed", "backend": backend, "gaussians": n, "size": size,
        "visible": int(out.visible.sum()), "threads": torch.get_num_threads(),
        "forward ms": 1e3 * fwd, "forward CPU ms": 1e3 * fwd_cpu, "fps": 1.0 / fwd,
        "step ms": 1e3 * step, "step CPU ms": 1e3 * step_cpu,
        "forward ms/Mpix": 1e3 * fwd / mpix, "step ms/Mpix": 1e3 * step / mpix,
        "step / forward": step / fwd,
    }


def stage_times(n: int, size: int, repeats: int) -> dict:
    """Per-stage forward times of the compiled path, and the torch projection it replaces.

    ``project + colours ms``: the compiled pass :func:`neural3d.splat.render.render` takes
    without gradients (projection, activations, SH colours); ``torch project ms`` and ``torch
    colours ms``: the differentiable torch functions training uses; ``binning ms``: packing,
    depth sort and the per-tile lists; ``blend ms``: the compositing kernel alone.
    """
    import numba

    from neural3d.splat import rasterize as R
    from neural3d.splat.project import project_gaussians
    from neural3d.splat.render import _fused_projection

    model, c2w, intr = speed_scene(n, size)
    k = R._numba_kernels()
    with torch.no_grad():
        t_fused = _best(lambda: _fused_projection(model, c2w, intr, "numba"), repeats)[0]
        t_proj = _best(lambda: project_gaussians(model.params["means"], model.scales(),
                                                 model.rotations(), c2w, intr), repeats)[0]
        t_col = _best(lambda: model.colors(c2w[:3, 3]), repeats)[0]
        proj, colors, opac = _fused_projection(model, c2w, intr, "numba")
    arrays = [R._np32(t) for t in (proj.means2d, proj.conics, colors, opac, proj.depths)]
    m, con, col, op, dep = arrays
    rad = proj.radii.numpy()
    t_bin = _best(lambda: R._bin_numba(k, m, con, col, op, dep, rad, size, size, 16), repeats)[0]
    bins = R._bin_numba(k, m, con, col, op, dep, rad, size, size, 16)
    image = np.empty((size, size, 3), np.float32)
    trans, last = np.empty((size, size), np.float32), np.empty((size, size), np.int32)
    old = numba.set_parallel_chunksize(1)  # as the rasterizer hands out tiles
    try:
        t_blend = _best(lambda: k.forward(bins.ranges, bins.ent_gauss, bins.gparams, bins.colors,
                                          size, size, 16, image, trans, last), repeats)[0]
    finally:
        numba.set_parallel_chunksize(old)
    return {"part": "speed stages", "backend": "numba", "gaussians": n, "size": size,
            "project + colours ms": 1e3 * t_fused, "torch project ms": 1e3 * t_proj,
            "torch colours ms": 1e3 * t_col, "binning ms": 1e3 * t_bin,
            "blend ms": 1e3 * t_blend, "entries": int(bins.ranges[-1])}


def speed_part(threads: int, quick: bool, lock: str | None) -> dict:
    """Rows and goals of the speed part, timed under the lock at ``threads`` threads."""
    from mpgym.devices import set_threads

    set_threads(threads)
    n, size, repeats = (20_000, 128, 3) if quick else (SPEED_N, SPEED_SIZE, 10)
    with nerf_bench.timing_lock(lock) as waited:
        before = nerf_bench.machine_load()
        rows = [speed_rows("numba", n, size, repeats), stage_times(n, size, repeats)]
        small = (5_000, 64) if quick else (20_000, 128)
        rows.append(speed_rows("torch", *small, 2))
        after = nerf_bench.machine_load()
    main = rows[0]
    # the goal is stated at 256x256 and 100k Gaussians: --quick's smaller scene cannot meet it
    goals = [] if quick else [Goal("splat_render_fps_256_100k", main["fps"], 30.0, ">=")]
    return {"rows": rows, "goals": [g.to_dict() for g in goals], "lock_wait_s": waited,
            "load_before": before, "load_after": after, "threads": threads,
            "splat_step_ms_per_mpixel_vs_forward": main["step / forward"]}


# ----------------------------------------------------------------------------------- train


class SplatSnapshots(nerf_bench.Snapshots):
    """The NeRF benchmark's snapshot callback, keeping the Gaussians and counting them."""

    def _take(self, trainer, targets: list[float]) -> None:
        model = trainer.snapshot()
        state = {k: v.detach().clone() for k, v in model.params.items()}
        for t in targets:
            self.taken.append({"target_s": t, "seconds": trainer.train_seconds,
                               "step": trainer.step_count, "cpu_s": time.process_time() - self.cpu0,
                               "state": state, "num_gaussians": model.num_gaussians,
                               "sh_degree": model.sh_degree})


def splat_train_part(data: Path, *, seconds: float, threads: int, grid: list[float],
                     test_views: int, lock: str | None, snapshot_dir: Path) -> dict:
    """Train the splat ``cpu`` preset under the lock, snapshotting at the ``grid`` times."""
    from safetensors.torch import save_file

    from neural3d.data.multiview import load_split
    from neural3d.splat.presets import preset
    from neural3d.splat.trainer import SplatTrainer

    train, test = load_split(data, "train"), load_split(data, "test")
    cfg = preset("cpu", max_seconds=seconds, threads=threads, eval_every=0)
    SplatTrainer(cfg, train).step()  # warm-up off the clock: numba's cached kernels load
    trainer = SplatTrainer(cfg, train)
    snaps = SplatSnapshots(grid)
    with nerf_bench.timing_lock(lock) as waited:
        before = nerf_bench.machine_load()
        t0, snaps.cpu0 = time.perf_counter(), time.process_time()
        try:
            trainer.train(progress_bar=False, callback=snaps)  # the last snapshot ends it
        except nerf_bench._BudgetReached:
            pass
        wall = time.perf_counter() - t0
        after = nerf_bench.machine_load()
    snaps.finish(trainer)
    log.info("splat: %d steps in %.1f s of training (%.1f s wall), %d Gaussians; load %s -> %s",
             trainer.step_count, trainer.train_seconds, wall, trainer.model.num_gaussians,
             before["loadavg"][0], after["loadavg"][0])
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    records = nerf_bench.write_snapshots(
        snaps.taken, snapshot_dir, "splat", ".safetensors",
        lambda state, path: save_file({k: v.contiguous() for k, v in state.items()}, str(path)),
        keys=("num_gaussians", "sh_degree"))
    return {
        "preset": "splat", "config": asdict(cfg), "threads": threads,
        "steps": trainer.step_count, "train_seconds": trainer.train_seconds,
        "train_wall_s": wall, "train_cpu_s": time.process_time() - snaps.cpu0,
        "test_views": len(test) if test_views <= 0 else min(test_views, len(test)),
        "data": str(data), "lock": lock, "lock_wait_s": waited, "load_before": before,
        "load_after": after, "grid_s": grid, "snapshots": records, "evals": {},
    }


def score_views(model, data, targets, *, ssim_too: bool = True,
                rasterize_mode: str = "classic") -> tuple[list, list]:
    """PSNR (and SSIM) of ``model`` on the first ``len(targets)`` views of ``data``, white
    background, rendered in the mode it was trained in."""
    from neural3d.image_metrics import psnr, ssim
    from neural3d.splat.render import render

    psnrs, ssims = [], []
    with torch.no_grad():
        for i in range(len(targets)):
            pred = render(model, torch.as_tensor(data.c2w[i]), data.camera(i),
                          background=torch.ones(3),
                          rasterize_mode=rasterize_mode).image.clamp(0, 1)
            psnrs.append(float(psnr(pred, targets[i])))
            if ssim_too:
                ssims.append(float(ssim(pred, targets[i])))
    return psnrs, ssims


def _mode(part: dict) -> str:
    """The rasterize mode a train part's splats were trained in (classic before the option)."""
    return part.get("config", {}).get("rasterize_mode", "classic")


def evaluate_splat(part: dict, save) -> dict:
    """Render every splat snapshot on the test views (resumable, ``save(part)`` per snapshot)."""
    from neural3d.data.multiview import load_split

    test = load_split(Path(part["data"]), "test")
    n = part["test_views"]
    targets = torch.as_tensor(test.rgb("white")[:n])
    for snap in nerf_bench.eval_order(part, None):
        ev = part["evals"].setdefault(snap["file"],
                                      {"psnr_views": [], "ssim_views": [], "eval_s": 0.0})
        if len(ev["psnr_views"]) >= n:
            continue
        model = load_snapshot(snap)
        t0 = time.perf_counter()
        ev["psnr_views"], ev["ssim_views"] = score_views(model, test, targets,
                                                         rasterize_mode=_mode(part))
        ev["eval_s"] = time.perf_counter() - t0
        save(part)
        log.info("splat: %.1f s (step %d, %d Gaussians): PSNR %.2f dB on %d views",
                 snap["seconds"], snap["step"], snap["num_gaussians"],
                 float(np.mean(ev["psnr_views"])), n)
    return part


# ----------------------------------------------------------------------------------- error


def error_regions(pred: np.ndarray, target: np.ndarray, alpha: np.ndarray) -> dict:
    """Where one view's squared error sits: ``pred``/``target`` ``[H, W, 3]`` in [0, 1] (over the
    same background), ``alpha`` ``[H, W]`` the ground truth's coverage. Each region's share of
    the pixels and of the summed squared error (band, interior and background partition the
    image; the textured pixels are part of the interior), and the view's PSNR."""
    from scipy import ndimage

    se = ((pred.astype(np.float64) - target) ** 2).mean(-1)
    lo, hi = ERROR_EDGE_ALPHA
    band = ndimage.binary_dilation((alpha > lo) & (alpha < hi), structure=np.ones((3, 3), bool))
    interior = (alpha >= hi) & ~band
    background = ~band & ~interior
    gy, gx = np.gradient(target.mean(-1))
    grad = np.hypot(gx, gy)
    textured = (interior & (grad > np.quantile(grad[interior], 0.9)) if interior.any()
                else interior)
    total = float(se.sum())
    out = {"psnr": float(-10 * np.log10(max(se.mean(), 1e-20)))}
    for name, mask in (("band", band), ("interior", interior), ("textured", textured),
                       ("background", background)):
        out[f"{name}_pixel_share"] = float(mask.mean())
        out[f"{name}_error_share"] = float(se[mask].sum() / total) if total > 0 else 0.0
    return out


def load_snapshot(snap: dict):
    """The Gaussians of a splat snapshot record (its file must be on disk), at its SH degree."""
    from safetensors.torch import load_file

    from neural3d.splat.model import GaussianModel

    model = GaussianModel.from_tensors(load_file(snap["file"]))
    model.sh_degree = snap["sh_degree"]
    return model


def final_splats(part: dict):
    """The Gaussians of a splat train part's last snapshot and the snapshot's record."""
    snap = max(part["snapshots"], key=lambda s: s["step"])
    return load_snapshot(snap), snap


def invisible_gaussians(model, data, rasterize_mode: str) -> dict:
    """Gaussians whose peak alpha (opacity, times the antialiased mode's factor) stays under the
    rasterizer's 1/255 cut on every view of ``data`` (out of frame counting as 0): no view
    gives them a gradient. Also how many sit at or below the opacity reset's 0.01."""
    from neural3d.splat.project import project_gaussians
    from neural3d.splat.rasterize import MIN_ALPHA
    from neural3d.splat.strategy import RESET_OPACITY

    with torch.no_grad():
        opacity = model.opacities()
        peak = torch.zeros_like(opacity)
        for i in range(len(data)):
            proj = project_gaussians(model.params["means"], model.scales(), model.rotations(),
                                     torch.as_tensor(data.c2w[i], dtype=torch.float32),
                                     data.camera(i),
                                     antialiased=rasterize_mode == "antialiased")
            alpha = opacity if proj.compensation is None else opacity * proj.compensation
            peak = torch.maximum(peak, torch.where(proj.radii > 0, alpha, 0.0))
    return {"views": len(data), "gaussians": len(opacity),
            "under_cut_on_every_view": int((peak < MIN_ALPHA).sum()),
            "opacity_at_most_reset_value": int((opacity <= RESET_OPACITY + 1e-6).sum())}


def write_turntable(part: dict, path: Path) -> Path:
    """A turntable GIF of the final splats, drawn as ``mpgym splat render`` draws one by default
    (its camera path, white background), in the run's rasterize mode."""
    from mpgym.cli.splat import RenderArgs, _cameras
    from mpgym.plots import save_gif
    from neural3d.splat.render import render

    model, _ = final_splats(part)
    args = RenderArgs()
    frames = []
    with torch.no_grad():
        for pose, intr in zip(*_cameras(args, 1), strict=True):
            out = render(model, torch.as_tensor(pose, dtype=torch.float32), intr,
                         background=torch.ones(3), rasterize_mode=_mode(part))
            frames.append(out.image.clamp(0, 1).numpy())
    save_gif(path, frames, fps=args.fps)
    return path


def error_part(train_json: Path, views: int = ERROR_VIEWS) -> tuple[dict, dict]:
    """The error regions of the final splat snapshot of ``train_json`` on the first ``views``
    training and validation views; the record and the maps (for the PNG)."""
    from neural3d.data.multiview import load_split
    from neural3d.splat.render import render

    try:
        part = json.loads(Path(train_json).read_text())["train_parts"]["splat"]
        model, snap = final_splats(part)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MpgymError(f"--from {train_json}: no splat train part with its final snapshot on "
                         f"disk ({e!r}); run --part train first.") from e
    record: dict = {"from": str(train_json), "snapshot": snap, "data": part["data"],
                    "rasterize_mode": _mode(part), "edge_alpha": list(ERROR_EDGE_ALPHA),
                    "splits": {}}
    record["invisible_on_train_views"] = invisible_gaussians(
        model, load_split(Path(part["data"]), "train"), _mode(part))
    maps: dict = {}
    for split in ("train", "val"):
        data = load_split(Path(part["data"]), split)
        n = min(views, len(data))
        rgb, alpha = data.rgb("white")[:n], data.images[:n, ..., 3]
        rows, maps[split] = [], []
        with torch.no_grad():
            for i in range(n):
                pred = render(model, torch.as_tensor(data.c2w[i]), data.camera(i),
                              background=torch.ones(3),
                              rasterize_mode=_mode(part)).image.clamp(0, 1).numpy()
                rows.append(error_regions(pred, rgb[i], alpha[i]))
                maps[split].append((pred, rgb[i], ((pred - rgb[i]) ** 2).mean(-1)))
        record["splits"][split] = {
            "views": rows,
            "mean": {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}}
    return record, maps


def plot_error_maps(path: Path, maps: dict) -> Path:
    """Per view: the render, the ground truth and the squared error (one colour scale)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from mpgym.plots import save_figure

    views = [(split, i, m) for split, ms in maps.items() for i, m in enumerate(ms)]
    vmax = max(float(np.quantile(m[2], 0.999)) for _, _, m in views) or 1.0
    fig, axes = plt.subplots(3, len(views), figsize=(1.6 * len(views), 5.2), squeeze=False)
    for col, (split, i, (pred, target, se)) in enumerate(views):
        for row, (img, kw) in enumerate(((pred, {}), (target, {}),
                                         (se, {"cmap": "inferno", "vmin": 0, "vmax": vmax}))):
            axes[row, col].imshow(img, **kw)
            axes[row, col].set_axis_off()
        axes[0, col].set_title(f"{split} {i}", fontsize=8)
    for row, label in enumerate(("splats", "ground truth", "squared error")):
        axes[row, 0].text(-0.08, 0.5, label, transform=axes[row, 0].transAxes, rotation=90,
                          ha="right", va="center", fontsize=8)
    fig.suptitle("final splats of the train part: where the error sits", fontsize=9)
    return save_figure(fig, path)


def run_error(args) -> None:
    """The error part: regions of the final splats' error, JSON, table and PNG."""
    from mpgym.devices import set_threads

    set_threads(args.threads)
    record, maps = error_part(args.train_from)
    path = args.json or ERROR_JSON
    doc = {"benchmark": "splat-error", "machine": machine_info(), **record}
    atomic_write_text(path, json.dumps(to_jsonable(doc), indent=2))
    cols = ("psnr", "band_pixel_share", "band_error_share", "interior_error_share",
            "textured_error_share", "background_error_share")
    print("| split | view | " + " | ".join(cols) + " |\n|" + "---|" * (len(cols) + 2))
    for split, rec in record["splits"].items():
        for i, row in [*enumerate(rec["views"]), ("mean", rec["mean"])]:
            print(f"| {split} | {i} | " + " | ".join(f"{row[c]:.3g}" for c in cols) + " |")
    inv = record["invisible_on_train_views"]
    print(f"{inv['under_cut_on_every_view']} of {inv['gaussians']} Gaussians under the 1/255 "
          f"alpha cut on all {inv['views']} training views; {inv['opacity_at_most_reset_value']} "
          "at opacity <= 0.01")
    print(f"wrote {path} and {plot_error_maps(path.with_suffix('.png'), maps)}")


# ------------------------------------------------------------------------------------ tune


def tune_run_name(overrides: dict, seed: int) -> str:
    """A tuning run's key in the study's JSON: its changes, sorted, and its seed."""
    changes = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(overrides.items()))
    return f"{changes or 'preset'} s{seed}"


def tune_config(overrides: dict, seed: int, seconds: float, threads: int):
    """The checked config of a tuning run: the ``cpu`` preset with ``overrides`` and ``seed``."""
    from neural3d.splat.presets import check_config, preset

    cfg = preset("cpu", **{**overrides, "max_seconds": seconds, "threads": threads,
                           "eval_every": 0, "seed": seed})
    check_config(cfg)
    return cfg


def splat_tune_part(data: Path, *, overrides: dict, seed: int, seconds: float,
                    threads: int) -> dict:
    """Train the ``cpu`` preset with ``overrides`` and ``seed``; its validation-view curve."""
    from neural3d.data.multiview import load_split
    from neural3d.splat.model import GaussianModel
    from neural3d.splat.trainer import SplatTrainer

    cfg = tune_config(overrides, seed, seconds, threads)
    train, val = load_split(data, "train"), load_split(data, "val")
    SplatTrainer(cfg, train).step()  # warm-up off the clock: numba's cached kernels load
    trainer = SplatTrainer(cfg, train)
    snaps = SplatSnapshots([seconds * f for f in TUNE_FRACTIONS])
    before = nerf_bench.machine_load()
    snaps.cpu0 = time.process_time()
    try:
        trainer.train(progress_bar=False, callback=snaps)  # the last snapshot ends it
    except nerf_bench._BudgetReached:
        pass
    after = nerf_bench.machine_load()
    snaps.finish(trainer)
    targets = torch.as_tensor(val.rgb("white"))
    train_targets = torch.as_tensor(train.rgb("white")[:TUNE_TRAIN_VIEWS])
    curve = []
    for snap in snaps.taken:
        model = GaussianModel.from_tensors(snap["state"])
        model.sh_degree = snap["sh_degree"]
        views, _ = score_views(model, val, targets, ssim_too=False,
                               rasterize_mode=cfg.rasterize_mode)
        seen, _ = score_views(model, train, train_targets, ssim_too=False,
                              rasterize_mode=cfg.rasterize_mode)
        curve.append({"s": snap["target_s"], "step": snap["step"],
                      "val_psnr": float(np.mean(views)), "train_psnr": float(np.mean(seen)),
                      "gaussians": snap["num_gaussians"]})
        log.info("tune %s: %.0f s, step %d, %d Gaussians: val PSNR %.2f dB (train views %.2f)",
                 tune_run_name(overrides, seed), snap["target_s"], snap["step"],
                 snap["num_gaussians"], curve[-1]["val_psnr"], curve[-1]["train_psnr"])
    return {"overrides": overrides, "seed": seed, "threads": threads, "seconds": seconds,
            "config": asdict(cfg), "val_views": len(val), "data": str(data),
            "load_before": before["loadavg"], "load_after": after["loadavg"],
            "machine": machine_info(), "curve": curve,  # model: the last snapshot's Gaussians
            "invisible_on_train_views": invisible_gaussians(model, train, cfg.rasterize_mode)}


def check_tune_name(path: Path, name: str, config: dict) -> None:
    """Refuse, before training, a run whose name the study holds for another config.

    A name is the changes to the ``cpu`` preset, so it means another setting once the preset
    changes (``preset s1`` of an earlier preset): an earlier figure is never replaced by a
    different setting's; a run of the same config (recorded with it) may be measured again.
    """
    try:
        runs = json.loads(path.read_text()).get("runs", {}) if path.is_file() else {}
    except (OSError, ValueError, AttributeError):
        return  # write_tune_run says what is wrong with the file
    if name in runs and runs[name].get("config") != json.loads(json.dumps(to_jsonable(config))):
        raise MpgymError(f"{path} already holds run {name!r}, measured with another config "
                         "(an earlier preset, or recorded without its config); name the change "
                         "explicitly with --set KEY=VALUE, or give another --json.")


def write_tune_run(path: Path, name: str, run: dict) -> None:
    """Add (or replace) run ``name`` in the tuning study ``path``: read, change and written under
    an exclusive lock (:data:`TUNE_LOCK`), so two runs finishing at once both land."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with nerf_bench.timing_lock(TUNE_LOCK):
        _write_tune_run(path, name, run)


def _write_tune_run(path: Path, name: str, run: dict) -> None:
    doc = {"what": "validation-view tuning runs of the splat 'cpu' preset "
                   "(benchmarks/splat.py --part tune): trained on the train split, scored on "
                   "the validation views only; the test views are never rendered.",
           "runs": {}}
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
            if not isinstance(doc.get("runs"), dict):
                raise ValueError("no 'runs' object")
        except ValueError as e:
            raise MpgymError(f"{path} is not a tuning study of this benchmark ({e}); give "
                             "another --json.") from e
    doc["runs"][name] = run
    atomic_write_text(path, json.dumps(to_jsonable(doc), indent=1))


def train_goals(parts: dict[str, dict]) -> tuple[list[Goal], dict]:
    """``splat_minus_hash_psnr_600s`` and ``splat_time_to_hash_psnr_ratio`` off the grids."""
    splat, hash_part = parts.get("splat"), parts.get("hash")
    if splat is None or hash_part is None:
        return [], {}
    budget = hash_part["snapshots"][-1]["target_s"]
    s_final, h_final = nerf_bench.psnr_at(splat, budget), nerf_bench.psnr_at(hash_part, budget)
    diff = None if s_final is None or h_final is None else s_final - h_final
    grid_s, interp_s = (None, None) if h_final is None else nerf_bench.time_to_reach(
        nerf_bench.curve_of(splat), h_final)
    ratio = None if grid_s is None else grid_s / budget
    goals = [Goal("splat_minus_hash_psnr_600s", diff, 1.0, ">="),
             Goal("splat_time_to_hash_psnr_ratio", ratio, 0.3, "<=")]
    info = {"budget_s": budget, "splat_final_psnr": s_final, "hash_final_psnr": h_final,
            "splat_seconds_to_hash_final_psnr": grid_s,
            "splat_seconds_to_hash_final_psnr_interpolated": interp_s,
            "time_ratio_interpolated": None if interp_s is None else interp_s / budget,
            "time_ratio_method": "first splat snapshot whose 16-view PSNR reaches the hash "
            "NeRF's 16-view PSNR at the budget, over the budget (an upper bound within one grid "
            "step); the interpolated value is linear in PSNR between it and the snapshot before"}
    return goals, info


def train_rows(parts: dict[str, dict]) -> list[dict]:
    rows = []
    for name, part in parts.items():
        curve = nerf_bench.curve_of(part, complete=False)
        counts = {s["file"]: s.get("num_gaussians") for s in part["snapshots"]}
        rows.append({"part": "train", "method": name, "steps": part["steps"],
                     "train s": part["train_seconds"], "train CPU s": part["train_cpu_s"],
                     **{f"PSNR {t}s": nerf_bench.psnr_at(part, t)
                        for t in nerf_bench.CURVE_POINTS},
                     "load before": part["load_before"]["loadavg"][0],
                     "load after": part["load_after"]["loadavg"][0]})
        for p, snap in zip(curve, [s for s in part["snapshots"] if s["file"] in part["evals"]],
                           strict=False):
            rows.append({"part": "curve", "method": name, "grid s": p["target_s"],
                         "train s": p["seconds"], "steps": p["step"], "test PSNR": p["psnr"],
                         "test SSIM": p["ssim"], "test views": p["views"],
                         "gaussians": counts.get(snap["file"])})
    return rows


def plot_curves(path: Path, parts: dict[str, dict], info: dict) -> Path:
    """PSNR (and the number of Gaussians) against training seconds, as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from mpgym.plots import save_figure

    fig, (ax, ax_n) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
    for name, part in parts.items():
        curve = nerf_bench.curve_of(part)
        load = f"{part['load_before']['loadavg'][0]:.1f}-{part['load_after']['loadavg'][0]:.1f}"
        ax.plot([p["seconds"] for p in curve], [p["psnr"] for p in curve], marker="o", ms=3,
                label=f"{name} ({part['steps']} steps, load {load})")
        if name == "splat":
            snaps = [s for s in part["snapshots"] if s["file"] in part["evals"]]
            ax_n.plot([s["seconds"] for s in snaps], [s["num_gaussians"] for s in snaps],
                      marker="o", ms=3)
    if info.get("hash_final_psnr") is not None:
        ax.axhline(info["hash_final_psnr"], ls="--", lw=1, color="gray")
    for a in (ax, ax_n):
        a.set_xscale("log")
        a.set_xlabel("training seconds (evaluation excluded)")
        a.grid(alpha=0.3, which="both")
    ax.set_ylabel("test PSNR (dB, 16 views)")
    ax_n.set_ylabel("Gaussians")
    ax.legend(fontsize=8)
    fig.suptitle("tabletop 128x128, 1 thread: splatting vs hash NeRF; dashed: hash NeRF at "
                 "the budget", fontsize=10)
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------- cli


def parse_args(argv: list[str] | None = None):
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--part", dest="parts", nargs="+", choices=PARTS, default=list(REPORT_PARTS),
                   help="parts to run (default: speed train; tune and error only when "
                   "named, alone)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="tune: a change to the cpu preset (repeatable)")
    p.add_argument("--tune-seed", type=int, default=1,
                   help="tune: training seed (default 1; 0, the benchmark's, is refused)")
    p.add_argument("--stage", choices=["all", "train", "eval"], default="all",
                   help="train part: train (snapshots), eval (continue evaluating), or both")
    p.add_argument("--threads", type=int, default=1, help="threads of the train part")
    p.add_argument("--speed-threads", type=int, default=2, help="threads of the speed part")
    p.add_argument("--seconds", type=float, default=None,
                   help="training seconds per method (default 600; 30 with --quick)")
    p.add_argument("--data", type=Path, default=Path("runs/bench/nerf_tabletop"))
    p.add_argument("--snapshots", type=Path, default=Path("runs/bench/splat-snapshots"))
    p.add_argument("--timing-lock", default=nerf_bench.TIMING_LOCK)
    p.add_argument("--merge", nargs="+", type=Path, default=None,
                   help="combine --json files of single parts into one report")
    p.add_argument("--from", dest="train_from", type=Path,
                   default=Path("benchmarks/results/splat-train.json"),
                   help="error: the train part's JSON whose final splats are looked at")
    p.add_argument("--hash-from", type=Path, default=None,
                   help="take the hash NeRF part from a benchmarks/nerf.py --part hash JSON (same "
                   "dataset, grid and threads) instead of training it again; the report says so")
    args = p.parse_args(argv)
    try:
        check_positive("--threads", args.threads)
        check_positive("--speed-threads", args.speed_threads)
        if args.seconds is not None:
            check_positive("--seconds", args.seconds, integer=False)
        for path in args.merge or []:
            if not path.is_file():
                raise MpgymError(f"--merge: {path} does not exist; give part JSON files.")
        if args.stage == "eval" and (args.json is None or not args.json.is_file()):
            raise MpgymError("--stage eval continues an existing --json file of the train part; "
                             f"got {args.json}.")
        if args.stage != "all" and args.parts != ["train"]:
            raise MpgymError("--stage train|eval goes with --part train.")
        if "error" in args.parts and (args.parts != ["error"] or args.merge):
            raise MpgymError("--part error runs alone (not with speed, train, tune or --merge).")
        if "tune" in args.parts:
            from neural3d.splat.presets import SplatConfig

            if args.parts != ["tune"] or args.merge:
                raise MpgymError("--part tune runs alone (not with speed, train or --merge).")
            if args.tune_seed < 1:
                raise MpgymError(f"--tune-seed must be a whole number >= 1 (0 is the "
                                 f"benchmark's own seed); got {args.tune_seed}.")
            args.overrides = parse_overrides(
                args.overrides, SplatConfig, what="splat",
                fixed=("seed", "max_seconds", "threads", "eval_every"))
        elif args.overrides:
            raise MpgymError("--set goes with --part tune.")
    except MpgymError as e:
        p.error(str(e))
    return args


def load_docs(paths: list[Path]) -> dict:
    """Speed rows/goals and train parts of earlier ``--json`` files, merged."""
    doc: dict = {"rows": [], "goals": [], "train_parts": {}}
    for path in paths:
        try:
            d = json.loads(Path(path).read_text())
            doc["rows"] += [r for r in d["rows"] if str(r.get("part", "")).startswith("speed")]
            doc["goals"] += [g for g in d["goals"] if g["name"] == "splat_render_fps_256_100k"]
            for k in ("speed", "splat_step_ms_per_mpixel_vs_forward"):
                if k in d:
                    doc[k] = d[k]
            for name, part in d.get("train_parts", {}).items():
                if name in doc["train_parts"]:
                    raise MpgymError(f"--merge: two files hold the {name} part; give one.")
                doc["train_parts"][name] = part
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MpgymError(f"{path} is not a JSON file of this benchmark ({e!r}).") from e
    return doc


def write(args, doc: dict, *, quiet: bool = False) -> None:
    """Goals and table of everything in ``doc``; the PNG once both methods are trained."""
    parts = doc["train_parts"]
    goals, info = train_goals(parts)
    rows = [*doc["rows"], *train_rows(parts)]
    all_goals = [Goal(g["name"], g["value"], g["target"], g["direction"]) for g in doc["goals"]]
    all_goals += goals
    extra = {k: v for k, v in doc.items() if k not in ("rows", "goals")} | info
    if quiet:
        if args.json is not None:
            atomic_write_text(args.json, json.dumps(to_jsonable(
                {"benchmark": "splat", "machine": machine_info(), "rows": rows,
                 "goals": [g.to_dict() for g in all_goals], **extra}), indent=2))
        return
    report("splat", rows, all_goals, args.json, extra=extra)
    if args.json is not None and set(TRAIN_PRESETS) <= set(parts):
        print(f"wrote {plot_curves(args.json.with_suffix('.png'), parts, info)}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.merge:
        doc = load_docs(args.merge)
        doc["merged_from"] = [str(p) for p in args.merge]
        return write(args, doc)
    doc = load_docs([args.json]) if args.stage == "eval" else {"rows": [], "goals": [],
                                                                "train_parts": {}}
    if args.parts == ["tune"]:
        return run_tune(args)
    if args.parts == ["error"]:
        return run_error(args)
    lock = args.timing_lock or None
    if "speed" in args.parts:
        speed = speed_part(args.speed_threads, args.quick, lock)
        doc["rows"] += speed.pop("rows")
        doc["goals"] += speed.pop("goals")
        doc["splat_step_ms_per_mpixel_vs_forward"] = speed["splat_step_ms_per_mpixel_vs_forward"]
        doc["speed"] = speed
    if "train" in args.parts:
        run_train(args, doc, lock)
    write(args, doc)


def run_tune(args) -> None:
    """One tuning run, added to the study's JSON."""
    from mpgym.devices import set_threads

    set_threads(args.threads)
    seconds = args.seconds or (30.0 if args.quick else 600.0)
    path = args.json or (Path("runs/bench/splat-tune-quick.json") if args.quick else TUNE_JSON)
    name = tune_run_name(args.overrides, args.tune_seed)
    check_tune_name(path, name,
                    asdict(tune_config(args.overrides, args.tune_seed, seconds, args.threads)))
    data = nerf_bench.ensure_dataset(args.data, args.quick)
    run = splat_tune_part(data, overrides=args.overrides, seed=args.tune_seed, seconds=seconds,
                          threads=args.threads)
    write_tune_run(path, name, run)
    print(f"{name}: " + ", ".join(f"{c['s']:.0f} s {c['val_psnr']:.2f} dB" for c in run["curve"])
          + f"; wrote {path}")


def run_train(args, doc: dict, lock: str | None) -> None:
    """Train both methods (unless evaluating only), then evaluate every snapshot."""
    from mpgym.devices import set_threads

    set_threads(args.threads)
    seconds = args.seconds or (30.0 if args.quick else 600.0)
    views = 2 if args.quick else 0
    parts = doc["train_parts"]
    if args.stage != "eval":
        data = nerf_bench.ensure_dataset(args.data, args.quick)
        grid = nerf_bench.grid_within(nerf_bench.HASH_GRID, seconds)
        parts["splat"] = splat_train_part(data, seconds=seconds, threads=args.threads, grid=grid,
                                          test_views=views, lock=lock,
                                          snapshot_dir=args.snapshots)
        write(args, doc, quiet=True)
        if args.hash_from is not None:
            parts["hash"] = nerf_bench.load_parts([args.hash_from])[2]["hash"]
            doc["hash_from"] = str(args.hash_from)
        else:
            parts["hash"] = nerf_bench.train_part("hash", data, seconds=seconds,
                                                  threads=args.threads, grid=grid,
                                                  test_views=views, lock=lock,
                                                  snapshot_dir=args.snapshots)
        doc["train_seconds"] = seconds
        write(args, doc, quiet=True)
    if args.stage != "train":
        evaluate_splat(parts["splat"], save=lambda _: write(args, doc, quiet=True))
        nerf_bench.evaluate_part(parts["hash"], points=None,  # (nothing left when reused)
                                 save=lambda _: write(args, doc, quiet=True))
        if args.json is not None:
            gif = write_turntable(parts["splat"], args.json.with_name(f"{args.json.stem}-"
                                                                      "turntable.gif"))
            print(f"wrote {gif}")


if __name__ == "__main__":
    main()
