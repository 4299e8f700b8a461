"""Load trained NeRF runs: the field, its occupancy grid, and a density function for meshing.

A checkpoint is untrusted input: its config is type- and range-checked
(:func:`neural3d.nerf.presets.config_from_dict`), the field it describes is built on PyTorch's
``meta`` device (no memory) and every tensor's name, shape, dtype and finiteness is compared
with it before the checkpoint's own tensors are put in place -- so nothing is allocated beyond
what the file holds, and a mismatch is one :class:`~mpgym.errors.MpgymError`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from mpgym import load_checkpoint
from mpgym.devices import get_device
from mpgym.errors import MpgymError
from neural3d.nerf.presets import NerfConfig, build_field, config_from_dict
from neural3d.render.volume import OccupancyGrid

__all__ = ["DENSITY_LEVEL", "config_from_dict", "load_density_field", "load_nerf"]

DENSITY_LEVEL = 10.0
"""Density (per world unit) taken as the surface for mesh export: a ray crossing 0.1 units
of it reaches opacity 1 - e^-1 (Instant-NGP's 2.5 in its unit-cube units is about 7.5 here)."""


def _restore(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str,
             path: Path) -> None:
    """Check ``state`` against ``module``'s (meta) state dict, then assign its tensors."""
    expected = module.state_dict()
    missing, unexpected = expected.keys() - state.keys(), state.keys() - expected.keys()
    if missing or unexpected:
        raise MpgymError(f"{path}: the {what} tensors do not match its config (missing "
                         f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}); the "
                         "checkpoint is damaged or was written by another mpgym version.")
    for name, ref in expected.items():
        t = state[name]
        if t.shape != ref.shape or t.dtype != ref.dtype:
            raise MpgymError(f"{path}: {what} tensor {name!r} is {t.dtype} {tuple(t.shape)}; its "
                             f"config implies {ref.dtype} {tuple(ref.shape)} (damaged checkpoint, "
                             "or written by another mpgym version).")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise MpgymError(f"{path}: {what} tensor {name!r} contains NaN or infinity.")
    module.load_state_dict(state, assign=True)
    aabb = getattr(module, "aabb", None)
    if aabb is not None and not bool((aabb[3:] > aabb[:3]).all()):
        raise MpgymError(f"{path}: the {what}'s scene box {aabb.tolist()} is empty; expected "
                         "min < max on every axis.")


def load_nerf(run_dir: str | Path, device: str = "cpu"
              ) -> tuple[torch.nn.Module, NerfConfig, OccupancyGrid | None]:
    """The trained field (eval mode), its config and occupancy grid from a run directory.

    Args:
        run_dir: a ``mpgym nerf train`` run directory, or its ``checkpoint.safetensors``.
        device: where to put the field and grid (``"cpu"``, ``"cuda"``, ``"auto"``).

    Raises:
        MpgymError: not a run directory, no checkpoint, a checkpoint of another kind, or one
            whose config or tensors are invalid or do not fit together.
    """
    path = Path(run_dir)
    if not path.exists():
        raise MpgymError(f"{path} does not exist; expected a NeRF run directory "
                         "(runs/nerf/<name>) or its checkpoint.safetensors.")
    dev = get_device(device)
    ck = load_checkpoint(path, expected_kind="nerf")
    where = ck.path or path
    config = config_from_dict(ck.config)
    sd = ck.state_dict
    with torch.device("meta"):
        field = build_field(config)
    _restore(field, {k[6:]: v for k, v in sd.items() if k.startswith("field.")}, "field", where)
    grid = None
    if any(k.startswith("grid.") for k in sd):
        with torch.device("meta"):
            grid = OccupancyGrid(torch.zeros(6), config.grid_resolution)
        _restore(grid, {k[5:]: v for k, v in sd.items() if k.startswith("grid.")}, "grid", where)
        grid = grid.to(dev)
    return field.to(dev).eval(), config, grid


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
    return fn, (tuple(a[:3]), tuple(a[3:])), DENSITY_LEVEL


def _fuzz_load(path: str) -> None:
    """Fuzzing entry (tests): load a run as ``mpgym nerf render`` does and render 4x4 pixels."""
    import math

    from neural3d.cameras import Intrinsics, turntable_poses
    from neural3d.nerf.renderer import render_image

    field, config, grid = load_nerf(path)
    pose = torch.as_tensor(turntable_poses(1, 4.0, math.radians(30))[0], dtype=torch.float32)
    render_image(field, pose, Intrinsics.from_fov(0.7, 4), sampler=config.sampler, grid=grid,
                 num_samples=min(config.num_samples, 32), num_fine=min(config.num_fine, 16))
