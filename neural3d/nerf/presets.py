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

from dataclasses import dataclass, replace
from typing import Literal

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
    """Scene box is [-s, s]^3 (NeRF-synthetic objects fit in 1.5)."""
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
