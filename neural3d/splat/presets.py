"""Gaussian-splatting configuration: one frozen dataclass and named presets.

:class:`SplatConfig`'s defaults are those of 3D Gaussian splatting (Kerbl, Kopanas, Leimkuehler,
Drettakis, SIGGRAPH 2023, https://doi.org/10.1145/3592433) as its reference code
(graphdeco-inria/gaussian-splatting, ``arguments/__init__.py`` and ``train.py``) sets them:
30k iterations; Adam (eps 1e-15) with position lr 1.6e-4 -> 1.6e-6 (log-linear over 30k steps,
times the scene extent), features 2.5e-3 (higher-order SH at 1/20 of it), opacity 0.05,
scaling 5e-3, rotation 1e-3; loss ``0.8 L1 + 0.2 (1 - SSIM)``; SH degree 3, raised one degree
every 1000 steps; densification every 100 steps from 500 to 15k (gradient threshold 2e-4,
``percent_dense`` 0.01), pruning below opacity 0.005 and of oversized Gaussians, opacity reset
every 3000 steps; 100k random points in ``[-1.3, 1.3]^3`` for synthetic scenes.

The opacity lr is the paper-era 0.05 of the 2023 release; the reference's 2024 revision lowered it
to 0.025. Its ``position_lr_delay_mult`` (0.01) is kept but has no effect there (no delay steps
are passed), nor here unless ``position_lr_delay_steps`` is set.

Presets (:data:`PRESETS`): ``paper`` (the defaults), ``cpu`` (the built-in tabletop at 128x128 on
a two-core CPU, tuned on its *validation* views only -- never on the test views the benchmark
reports), ``tiny`` (tests and the demo).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from mpgym import configs
from mpgym.errors import MpgymError

__all__ = ["PRESETS", "OpacityReset", "RasterizeMode", "SplatConfig", "check_config",
           "config_from_dict", "preset"]

Init = Literal["random", "points", "mesh", "nerf"]
ViewOrder = Literal["shuffle", "uniform"]
RasterizeMode = Literal["classic", "antialiased"]
OpacityReset = Literal["raw", "effective"]
Backend = Literal["auto", "numba", "torch", "gsplat"]


@dataclass(frozen=True)
class SplatConfig:
    """Everything a Gaussian-splatting run needs besides its images and cameras."""

    # budget
    iterations: int = 30_000
    """Optimisation steps (one training view each)."""
    max_seconds: float = 0.0
    """Wall-clock budget for optimisation, evaluation excluded (0: no limit)."""
    # learning rates (Adam, one parameter group per tensor)
    position_lr_init: float = 1.6e-4
    """Initial lr of the means, times the scene extent."""
    position_lr_final: float = 1.6e-6
    """Final lr of the means (log-linear decay), times the scene extent."""
    position_lr_delay_mult: float = 0.01
    """Warm-up factor of the means' lr (used only when position_lr_delay_steps > 0)."""
    position_lr_delay_steps: int = 0
    """Steps of the means' lr warm-up (3DGS: 0, i.e. none)."""
    position_lr_max_steps: int = 30_000
    """Step at which the means' lr reaches position_lr_final."""
    feature_lr: float = 2.5e-3
    """lr of the SH DC coefficients (the higher orders take 1/20 of it)."""
    opacity_lr: float = 0.05
    """lr of the opacity logits (3DGS 2023; its 2024 revision uses 0.025)."""
    scaling_lr: float = 5e-3
    """lr of the log-scales."""
    rotation_lr: float = 1e-3
    """lr of the quaternions."""
    adam_eps: float = 1e-15
    """Adam epsilon."""
    lambda_dssim: float = 0.2
    """Weight of (1 - SSIM) in the loss; L1 takes the rest."""
    # appearance
    sh_degree: int = 3
    """Highest spherical-harmonics degree of the colours."""
    sh_degree_every: int = 1000
    """Steps between raising the active SH degree by one."""
    view_order: ViewOrder = "shuffle"
    """Training view of each step: every view once per epoch in a random order (``shuffle``,
    3DGS's ``viewpoint_stack``) or an independent uniform draw each step (``uniform``)."""
    background: Literal["white", "black", "random"] = "white"
    """Colour behind transparent pixels in training; evaluation uses black only if this is black,
    else white."""
    # adaptive density control
    densify_from: int = 500
    """Densify only after this step."""
    densify_until: int = 15_000
    """Densify, prune and reset opacities only before this step."""
    densify_every: int = 100
    """Steps between densifications."""
    densify_grad_threshold: float = 2e-4
    """Mean view-space (NDC) positional gradient norm above which a Gaussian is cloned or split."""
    percent_dense: float = 0.01
    """Largest scale (fraction of the scene extent) of a Gaussian that is cloned, not split."""
    prune_opacity: float = 0.005
    """Gaussians less opaque than this are pruned."""
    prune_screen_px: float = 20.0
    """After the first opacity reset, Gaussians whose 2D radius exceeded this many pixels are
    pruned (0: never)."""
    prune_world_fraction: float = 0.1
    """After the first opacity reset, Gaussians larger than this fraction of the scene extent are
    pruned."""
    opacity_reset_every: int = 3000
    """Steps between opacity resets (to at most 0.01)."""
    opacity_reset: OpacityReset = "raw"
    """``raw``: opacities to at most 0.01 (3DGS). ``effective``: each Gaussian's *peak alpha* to
    at most 0.01 -- its opacity to at most 0.01 / f, where f is the largest antialiasing factor
    it had in a training view since the last reset. The same as raw in the classic mode; in the
    antialiased mode it keeps sub-pixel-thin Gaussians (f << 1) above the rasterizer's 1/255
    cut, where a raw reset leaves them with no gradient from any view."""
    max_gaussians: int = 0
    """Cap on the number of Gaussians: densification keeps the largest gradients (0: no cap)."""
    # initialisation
    init: Init = "random"
    """Initial Gaussians: random points in the init box, the dataset's point cloud (COLMAP
    points3D), samples of a mesh (init_path), or of a trained NeRF run's density (init_path)."""
    init_points: int = 100_000
    """Gaussians to start from (random, mesh and NeRF initialisation)."""
    init_box: float = 1.3
    """Half side of the random-init box [-s, s]^3 (3DGS's for NeRF-synthetic)."""
    init_opacity: float = 0.1
    """Initial opacity of every Gaussian."""
    init_path: str = ""
    """Mesh file (init mesh) or NeRF run directory (init nerf)."""
    # speed and bookkeeping
    downscale: int = 1
    """Shrink the images by this factor when `mpgym splat train` reads them."""
    backend: Backend = "auto"
    """Rasterizer: numba (CPU kernel), torch (reference), gsplat (CUDA) or auto."""
    rasterize_mode: RasterizeMode = "classic"
    """``classic`` (3DGS's 0.3-px dilation) or ``antialiased`` (the dilation keeps each
    footprint's mass: Mip-Splatting's 2D filter, gsplat's mode of that name). Renders of the run
    use it too; viewers of the exported .ply render classic."""
    log_every: int = 100
    """Steps between rows of metrics.csv."""
    eval_every: int = 0
    """Steps between PSNR checks on the evaluation views (0: only at the end)."""
    eval_views: int = 2
    """Evaluation views used for the periodic checks (all of them at the end)."""
    checkpoint_every: int = 1000
    """Steps between checkpoints (0: only at the end and on Ctrl-C)."""
    seed: int = 0
    """Seed for initialisation, view order, backgrounds and splits."""
    device: str = "cpu"
    """'cpu', 'cuda' or 'auto'."""
    threads: int = 0
    """CPU threads for torch and numba (0: leave the defaults)."""


PRESETS: dict[str, SplatConfig] = {
    "paper": SplatConfig(),
    # Tuned on the tabletop's 4 validation views at 128x128 (never its test views), one thread.
    # Views in 3DGS's per-epoch shuffle: 32.58 against 32.44 dB for independent uniform draws on
    # the val views at 600 s (31.96 against 31.49 at 150 s), seed 2 — within seed noise, and the
    # reference's order, so it is kept.
    # ~8k steps fit 600 s, so 3DGS's schedule is compressed ~3x (densify to 5k, resets at 2k and
    # 4k, SH every 500). Validation PSNR 31.5 dB at 150 s, 32.0 at 300 s, 32.6 at 600 s (55k
    # Gaussians). Tried at 150 s and not kept: 10k initial points with densification to 4k and
    # resets every 1.5k (31.6 dB, within timing noise), densifying every 50 steps (31.3 dB:
    # more Gaussians, slower steps), a single reset at 3k (30.1 dB just before it).
    # Antialiased rasterization (Mip-Splatting's 2D filter): 32.93 and 33.09 dB at 600 s on the
    # val views, seeds 1 and 2, against 32.66 and 32.58 classic (+0.39 dB), with ~30% fewer
    # Gaussians (seeds 3 and 4 later: 33.08, 33.08); it recovers more slowly from an opacity
    # reset (25.3 dB 100 steps after the 4k one, seed 2). On the benchmark's own seed a thin
    # part of the scene was lost at the 4k reset and never regained (its Gaussians' alpha, 0.01
    # times the filter's factor, under the 1/255 cut on every view: no gradient), so the resets
    # now cap each Gaussian's peak alpha rather than its opacity (opacity_reset="effective"):
    # 33.14 and 33.19 dB at 600 s on the val views, seeds 1 and 2, against 32.93 and 33.09 with
    # raw resets -- chosen on those seeds before the benchmark's run (seeds 3 and 4, run after
    # it: 33.19 and 33.22 against 33.08 and 33.08).
    "cpu": SplatConfig(iterations=10_000, position_lr_max_steps=10_000, init_points=20_000,
                       densify_from=300, densify_until=5_000, densify_every=100,
                       opacity_reset_every=2_000, sh_degree_every=500, max_gaussians=100_000,
                       rasterize_mode="antialiased", opacity_reset="effective",
                       checkpoint_every=2_000),
    "tiny": SplatConfig(iterations=300, position_lr_max_steps=300, init_points=2_000,
                        densify_from=100, densify_until=250, densify_every=50,
                        opacity_reset_every=1_000, sh_degree_every=100, max_gaussians=10_000,
                        checkpoint_every=0, log_every=50, eval_views=1),
}
"""Named presets: ``paper`` (3DGS), ``cpu`` (128x128 on a CPU), ``tiny`` (tests, demo)."""


_INT_RANGES: dict[str, tuple[int, int]] = {
    # name: (lowest, highest); 1 as the lowest means a budget or size (check_positive)
    "iterations": (1, 1 << 40), "position_lr_delay_steps": (0, 1 << 40),
    "position_lr_max_steps": (1, 1 << 40), "sh_degree": (0, 3), "sh_degree_every": (1, 1 << 40),
    "densify_from": (0, 1 << 40), "densify_until": (0, 1 << 40), "densify_every": (1, 1 << 40),
    "opacity_reset_every": (1, 1 << 40), "max_gaussians": (0, 1 << 28),
    "init_points": (1, 1 << 26), "downscale": (1, 1 << 12), "log_every": (1, 1 << 40),
    "eval_every": (0, 1 << 40), "eval_views": (0, 1 << 31), "checkpoint_every": (0, 1 << 40),
    "seed": (0, (1 << 63) - 1), "threads": (0, 4096),
}
_POSITIVE_FLOATS = ("position_lr_init", "position_lr_final", "feature_lr", "opacity_lr",
                    "scaling_lr", "rotation_lr", "adam_eps", "densify_grad_threshold",
                    "percent_dense", "prune_world_fraction", "init_box")
_UNIT_FLOATS = ("position_lr_delay_mult", "lambda_dssim", "prune_opacity")
_CHOICES: dict[str, tuple[str, ...]] = {
    "background": ("white", "black", "random"), "init": ("random", "points", "mesh", "nerf"),
    "backend": ("auto", "numba", "torch", "gsplat"), "view_order": ("shuffle", "uniform"),
    "rasterize_mode": get_args(RasterizeMode), "opacity_reset": get_args(OpacityReset),
}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_config(config: SplatConfig) -> None:
    """Refuse, before any work, a config no run can use (budgets, sizes, choices, bounds).

    Sizes that decide memory are bounded (``init_points`` <= 2^26, ``max_gaussians`` <= 2^28), so a
    typo or a hostile checkpoint config cannot ask for terabytes.

    Raises:
        MpgymError: naming the option and what is accepted.
    """
    configs.check_ranges(config, ints=_INT_RANGES, positive=_POSITIVE_FLOATS, unit=_UNIT_FLOATS,
                         choices=_CHOICES)
    for name in ("max_seconds", "prune_screen_px"):
        v = getattr(config, name)
        if not _is_number(v) or v < 0:
            raise MpgymError(f"{configs.flag(name)} must be a finite number >= 0 (0: off); "
                             f"got {v!r}.")
    if not _is_number(config.init_opacity) or not 0 < config.init_opacity < 1:
        raise MpgymError(f"--init-opacity must be in (0, 1); got {config.init_opacity!r}.")
    if config.init in ("mesh", "nerf") and not config.init_path:
        what = "a mesh file" if config.init == "mesh" else "a NeRF run directory"
        raise MpgymError(f"--init {config.init} needs --init-path: {what}.")
    if not isinstance(config.device, str):
        raise MpgymError(f"--device must be a string such as 'cpu'; got {config.device!r}.")


def config_from_dict(d: Any) -> SplatConfig:
    """A checked :class:`SplatConfig` from its JSON form (:func:`mpgym.configs.config_from_dict`).

    Raises:
        MpgymError: a key that is not a field, a value of the wrong type or out of range (see
            :func:`check_config`).
    """
    if isinstance(d, dict) and "view_order" not in d:
        # written before the option existed, when every step drew its view uniformly: a resumed
        # run keeps the order it was trained with
        d = {**d, "view_order": "uniform"}
    config = configs.config_from_dict(SplatConfig, d)
    check_config(config)
    return config


def preset(name: str, **overrides: Any) -> SplatConfig:
    """A preset by name with fields replaced, e.g. ``preset("cpu", max_seconds=600)``.

    Raises:
        MpgymError: an unknown preset name.
    """
    if name not in PRESETS:
        raise MpgymError(f"unknown splat preset {name!r}; accepted: {', '.join(PRESETS)}.")
    return replace(PRESETS[name], **overrides)
