"""Load trained NeRF runs: the field, its occupancy grid, and a density function for meshing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch

from mpgym import RunDir, load_checkpoint
from mpgym.errors import MpgymError
from neural3d.nerf.presets import NerfConfig, build_field
from neural3d.render.volume import OccupancyGrid

DENSITY_LEVEL = 10.0
"""Density (per world unit) taken as the surface for mesh export: a ray crossing 0.1 units
of it reaches opacity 1 - e^-1 (Instant-NGP's 2.5 in its unit-cube units is about 7.5 here)."""


def config_from_dict(d: dict) -> NerfConfig:
    """A :class:`NerfConfig` from its JSON form (unknown keys ignored, tuples restored)."""
    names = {f.name for f in dataclasses.fields(NerfConfig)}
    kw = {k: v for k, v in d.items() if k in names}
    if "betas" in kw:
        kw["betas"] = tuple(kw["betas"])
    return NerfConfig(**kw)


def load_nerf(run_dir: str | Path, device: str = "cpu"
              ) -> tuple[torch.nn.Module, NerfConfig, OccupancyGrid | None]:
    """The trained field (eval mode), its config and occupancy grid from a run directory.

    Raises:
        MpgymError: not a run directory, no checkpoint, or a checkpoint of another kind.
    """
    run = RunDir(Path(run_dir))
    ck = load_checkpoint(run.path, expected_kind="nerf")
    config = config_from_dict(ck.config)
    field = build_field(config)
    sd = ck.state_dict
    field.load_state_dict({k[6:]: v for k, v in sd.items() if k.startswith("field.")})
    grid = None
    if "grid.binary" in sd:
        grid = OccupancyGrid(sd["grid.aabb"], config.grid_resolution)
        grid.load_state_dict({k[5:]: v for k, v in sd.items() if k.startswith("grid.")})
        grid = grid.to(device)
    return field.to(device).eval(), config, grid


def load_density_field(run_dir: str | Path
                       ) -> tuple[Callable[[torch.Tensor], torch.Tensor], tuple, float]:
    """What ``mpgym mesh RUN_DIR`` needs: ``(fn, bounds, level)`` with densities inside above.

    ``fn`` maps world points ``(N, 3)`` (torch) to densities ``(N,)``; ``bounds`` is the scene
    box ``((xmin, ymin, zmin), (xmax, ymax, zmax))``; ``level`` is :data:`DENSITY_LEVEL`.
    """
    field, _, _ = load_nerf(run_dir)

    @torch.no_grad()
    def fn(points: torch.Tensor) -> torch.Tensor:
        return field.density(torch.as_tensor(points, dtype=torch.float32))

    a = field.aabb.tolist()
    if not a:
        raise MpgymError(f"{run_dir}: the checkpoint holds no scene box.")
    return fn, (tuple(a[:3]), tuple(a[3:])), DENSITY_LEVEL
