"""Trained fields as ``mpgym mesh`` loads them: a run directory or checkpoint -> a callable.

:func:`load_field` reads the ``kind`` in a run's ``config.json`` (or, without one, in the
checkpoint's metadata) and returns the field with what extraction needs: ``igr`` and
``deepsdf`` are SDFs (level 0), ``occnet`` logits (level 0, flipped to SDF sign), ``nerf``
densities via ``neural3d.nerf.io.load_density_field``. Every file is read without pickles and
checked (see :func:`neural3d.implicit.data.model_from_state`), so a corrupt or hostile run is
refused with one :class:`~mpgym.errors.MpgymError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from mpgym.checkpoint import load_checkpoint
from mpgym.errors import MpgymError, check_finite
from mpgym.runs import run_kind
from neural3d.implicit.deepsdf import deepsdf_field, load_deepsdf
from neural3d.implicit.igr import load_igr
from neural3d.implicit.occnet import load_occnet, occnet_field

KINDS = ("igr", "occnet", "deepsdf", "nerf")


@dataclass
class LoadedField:
    """A trained field ready for :func:`neural3d.mesh.extract_mesh`."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    """Points ``[N, 3]`` -> values ``[N]``."""
    bounds: float | tuple
    """Extraction box: ``b`` for ``[-b, b]^3`` or ``(lo, hi)``."""
    level: float
    """Iso-level of the surface."""
    inside: Literal["below", "above"]
    """Which side of ``level`` is the solid."""
    kind: str
    """The run's kind (one of :data:`KINDS`)."""


def load_field(run: str | Path, shape: int = 0) -> LoadedField:
    """The field of a trained run (directory or checkpoint file), dispatched on its kind.

    Args:
        run: a run directory or its ``checkpoint.safetensors``.
        shape: which training shape of a multi-shape run (occnet, deepsdf).

    Raises:
        MpgymError: not a run of a kind in :data:`KINDS`, a shape index out of range, or a
            corrupt run.
    """
    run = Path(run)
    run_dir = run.parent if run.is_file() else run
    kind = run_kind(run_dir) if (run_dir / "config.json").is_file() else None
    if kind is None:  # no readable config.json: the checkpoint's own metadata says
        kind = load_checkpoint(run).kind
    if kind == "nerf":
        from neural3d.nerf.io import load_density_field

        fn, bounds, level = load_density_field(run_dir)
        return LoadedField(fn, bounds, level, "above", kind)
    if kind == "igr":
        model, cfg = load_igr(run)
        return LoadedField(model, cfg.bounds, 0.0, "below", kind)
    if kind == "occnet":
        return LoadedField(_occnet_field(run, run_dir, shape), 0.55, 0.0, "below", kind)
    if kind == "deepsdf":
        decoder, codes, _, _ = load_deepsdf(run)
        _check_index(shape, len(codes))
        return LoadedField(deepsdf_field(decoder, codes[shape]), 0.55, 0.0, "below", kind)
    raise MpgymError(f"{run} is a {str(kind)[:40]!r} run; mpgym mesh accepts "
                     f"{', '.join(KINDS[:-1])} and {KINDS[-1]} runs.")


def _check_index(i: int, n: int) -> None:
    if not 0 <= i < n:
        raise MpgymError(f"--shape {i} is out of range; this run has shapes 0..{n - 1}.")


def _occnet_field(run: Path, run_dir: Path, shape: int):
    model, cfg, meta = load_occnet(run)
    n = int(meta["num_shapes"])
    _check_index(shape, n)
    if cfg.condition != "pointnet":
        return occnet_field(model, torch.tensor(shape))
    path = run_dir / "conditions.npy"
    what = (f"accepted: the run's conditions.npy, a float array [{n}, T, 3] (T >= 1) of "
            "finite points")
    if not path.is_file():
        raise MpgymError(f"{path} is missing; {what}.")
    try:
        cond = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as exc:  # numpy's header parser raises several types
        raise MpgymError(f"{path} could not be read ({type(exc).__name__}: "
                         f"{str(exc)[:200]}); {what}.") from None
    if (cond.dtype.kind != "f" or cond.dtype.fields is not None or cond.ndim != 3
            or cond.shape[0] != n or cond.shape[1] < 1 or cond.shape[2] != 3):
        raise MpgymError(f"{path} holds {cond.dtype} {cond.shape}; {what}.")
    points = np.array(cond[shape], dtype=np.float32)
    check_finite(str(path), points)
    return occnet_field(model, torch.from_numpy(points))


def _fuzz_load_run(path: str) -> None:
    """Fuzzing entry: load a run as ``mpgym mesh`` does and query its field at a few points."""
    f = load_field(path)
    x = torch.linspace(-0.5, 0.5, 24).reshape(8, 3)
    with torch.no_grad():
        y = f.fn(x)
    if tuple(y.shape) != (8,):
        raise AssertionError(f"the field returned shape {tuple(y.shape)} for 8 points")
    check_finite("the field's values", y)
