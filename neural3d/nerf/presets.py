"""NeRF configuration: one frozen dataclass, two named presets (``vanilla``, ``hash``).

Defaults follow the papers where a CPU allows it and say where they do not:

- ``hash``: Instant-NGP's encoding and MLPs (L 16, F 2, N_min 16; 64-wide MLPs;
  Adam lr 1e-2, betas (0.9, 0.99), eps 1e-15) with nerfacc's occupancy grid (threshold 0.01,
  update every 16 steps, warm-up 256 steps; EMA 0.8 here so that empty space
  is pruned within a few hundred steps); ``N_max`` 1024 rather than
  2048 x scene size because 128-pixel views cannot resolve finer cells; T 2^18 (not 2^19),
  a 64^3 grid (not 128^3) and 1024 rays per batch (not 256k samples) to fit a 2-core CPU.
- ``vanilla``: NeRF's 8 x 256 MLP with positional encoding 10/4 and lr 5e-4, one network
  for coarse and fine passes (as mip-NeRF) with 32 + 64 samples (the paper: 64 + 128) and
  512 rays per batch (the paper: 4096): the paper's budget is 1-2 GPU-days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

from mpgym import configs
from mpgym.errors import MpgymError


@dataclass(frozen=True)
class NerfConfig:
    """Everything a NeRF run needs besides the data folder."""

    field: Literal["hash", "vanilla"] = "hash"
    """Field: Instant-NGP hash grid + tiny MLPs, or NeRF's positional-encoding MLP."""
    # hash field (Mueller et al. 2022, Table 1 / Sec. 5.4)
    num_levels: int = 16
    """Hash levels L."""
    features_per_level: int = 2
    """Features per level F."""
    log2_table_size: int = 18
    """log2 of the table size T (paper default 19; 18 halves Adam's cost on a CPU)."""
    base_resolution: int = 16
    """Coarsest resolution N_min."""
    max_resolution: int = 1024
    """Finest resolution N_max (the scene box spans it)."""
    hidden: int = 64
    """Width of the hash field's MLPs."""
    # vanilla field (Mildenhall et al. 2020)
    width: int = 256
    """Vanilla MLP width."""
    depth: int = 8
    """Vanilla MLP depth."""
    pos_freqs: int = 10
    """Positional-encoding octaves for positions."""
    dir_freqs: int = 4
    """Positional-encoding octaves for directions."""
    # sampling
    sampler: Literal["occupancy", "hierarchical"] = "occupancy"
    """Occupancy grid with uniform steps (Instant-NGP) or coarse-to-fine resampling (NeRF)."""
    num_samples: int = 256
    """Occupancy: steps across the box diagonal. Hierarchical: coarse samples per ray."""
    num_fine: int = 64
    """Hierarchical sampler: fine samples per ray."""
    grid_resolution: int = 64
    """Occupancy-grid cells per axis."""
    grid_update_every: int = 16
    """Steps between occupancy-grid updates."""
    grid_warmup: int = 256
    """Steps during which every cell is updated."""
    grid_threshold: float = 0.01
    """Opacity below which a cell counts as empty."""
    grid_decay: float = 0.8
    """EMA decay of the grid's cell values (nerfacc: 0.95 over 20k steps; faster here)."""
    aabb_scale: float = 1.5
    """Scene box is [-s, s]^3 (NeRF-synthetic objects fit in 1.5; `nerf train` takes a dataset's
    Instant-NGP aabb_scale / 2 unless this is given)."""
    # optimisation
    batch_rays: int = 1024
    """Rays per step."""
    lr: float = 1e-2
    """Adam learning rate."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas."""
    eps: float = 1e-15
    """Adam epsilon."""
    weight_decay_mlp: float = 1e-6
    """L2 on MLP weights (Instant-NGP: 1e-6)."""
    steps: int = 20_000
    """Step budget (training also stops at ``max_seconds``)."""
    max_seconds: float = 600.0
    """Wall-clock budget for training, excluding evaluation."""
    background: Literal["white", "black", "random"] = "random"
    """Training background behind transparent pixels; evaluation uses white."""
    eval_every_seconds: float = 60.0
    """Training seconds between PSNR checks on the evaluation views."""
    eval_views: int = 2
    """Test views used for the periodic checks (all test views at the end)."""
    final_test_views: int = 0
    """Test views for the final PSNR/SSIM (0: all)."""
    chunk: int = 8192
    """Rays per chunk when rendering whole images."""
    seed: int = 0
    """Seed for initialisation, ray batches and jitter."""
    device: str = "cpu"
    """'cpu', 'cuda' or 'auto'."""
    threads: int = 0
    """CPU threads for torch and numba (0: leave the defaults; 1 is fastest on a busy CPU)."""


PRESETS: dict[str, NerfConfig] = {
    "hash": NerfConfig(),
    "vanilla": NerfConfig(field="vanilla", sampler="hierarchical", num_samples=32, num_fine=64,
                          batch_rays=512, lr=5e-4, betas=(0.9, 0.999), eps=1e-7,
                          weight_decay_mlp=0.0, background="white", eval_every_seconds=120.0),
    "tiny": NerfConfig(num_levels=8, log2_table_size=15, max_resolution=128, hidden=32,
                       grid_resolution=32, num_samples=96, batch_rays=1024, grid_warmup=64,
                       eval_views=1),
}
"""Named presets; ``tiny`` is a small hash field for tests and the demo."""


_INT_RANGES: dict[str, tuple[int, int]] = {
    # name: (lowest, highest); 1 as the lowest means a budget/resolution (check_positive)
    "num_levels": (1, 64), "features_per_level": (1, 8), "log2_table_size": (4, 24),
    "base_resolution": (1, 1 << 16), "max_resolution": (1, 1 << 16), "hidden": (1, 4096),
    "width": (1, 4096), "depth": (1, 64), "pos_freqs": (0, 32), "dir_freqs": (0, 32),
    "num_samples": (1, 1 << 16), "num_fine": (0, 1 << 16), "grid_resolution": (1, 512),
    "grid_update_every": (1, 1 << 31), "grid_warmup": (0, 1 << 31), "batch_rays": (1, 1 << 24),
    "steps": (1, 1 << 40), "eval_views": (0, 1 << 31), "final_test_views": (0, 1 << 31),
    "chunk": (1, 1 << 24), "seed": (0, (1 << 63) - 1), "threads": (0, 4096),
}
_POSITIVE_FLOATS = ("aabb_scale", "lr", "eps", "max_seconds", "eval_every_seconds")
_UNIT_FLOATS = ("grid_threshold", "grid_decay", "weight_decay_mlp")
_CHOICES = {"field": ("hash", "vanilla"), "sampler": ("occupancy", "hierarchical"),
            "background": ("white", "black", "random")}


def check_config(config: NerfConfig) -> None:
    """Refuse, before any work, a config no run can use (budgets, sizes, choices, bounds).

    Budgets, resolutions and batch sizes must be positive (:func:`mpgym.errors.check_positive`);
    sizes that decide memory are bounded (e.g. ``log2_table_size`` <= 24, ``grid_resolution``
    <= 512), so a typo or a hostile checkpoint config cannot ask for terabytes.

    Raises:
        MpgymError: naming the option and what is accepted.
    """
    configs.check_ranges(config, ints=_INT_RANGES, positive=_POSITIVE_FLOATS, unit=_UNIT_FLOATS,
                         choices=_CHOICES)
    b = config.betas
    if not (isinstance(b, tuple) and len(b) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
            and 0 <= x < 1 for x in b)):
        raise MpgymError(f"--betas must be two numbers in [0, 1); got {b!r}.")
    if config.max_resolution < config.base_resolution:
        raise MpgymError(f"--max-resolution ({config.max_resolution}) must be at least "
                         f"--base-resolution ({config.base_resolution}).")
    if not isinstance(config.device, str):
        raise MpgymError(f"--device must be a string such as 'cpu'; got {config.device!r}.")


def config_from_dict(d: Any) -> NerfConfig:
    """A checked :class:`NerfConfig` from its JSON form (:func:`mpgym.configs.config_from_dict`).

    Raises:
        MpgymError: a key that is not a field, a value of the wrong type or out of range (see
            :func:`check_config`).
    """
    config = configs.config_from_dict(NerfConfig, d)
    check_config(config)
    return config


def preset(name: str, **overrides) -> NerfConfig:
    """A preset by name with fields replaced, e.g. ``preset("hash", max_seconds=60)``."""
    if name not in PRESETS:
        raise MpgymError(f"unknown NeRF preset {name!r}; accepted: {', '.join(PRESETS)}.")
    return replace(PRESETS[name], **overrides)


def build_field(config: NerfConfig, generator=None):
    """The field a config describes, on CPU (move it with ``.to(device)``)."""
    import torch

    from neural3d.nerf.fields import HashField, VanillaField

    s = config.aabb_scale
    aabb = torch.tensor([-s, -s, -s, s, s, s])
    if config.field == "hash":
        return HashField(aabb, num_levels=config.num_levels,
                         features_per_level=config.features_per_level,
                         log2_table_size=config.log2_table_size,
                         base_resolution=config.base_resolution,
                         max_resolution=config.max_resolution, hidden=config.hidden,
                         generator=generator)
    if config.field == "vanilla":
        return VanillaField(aabb, pos_freqs=config.pos_freqs, dir_freqs=config.dir_freqs,
                            width=config.width, depth=config.depth)
    raise MpgymError(f"unknown field {config.field!r}; accepted: 'hash', 'vanilla'.")
