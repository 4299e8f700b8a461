"""Damaged splat run directories: refused with one MpgymError, or loaded and resumed."""

from __future__ import annotations

import pytest
import torch

from mpgym.fuzz import fuzz_cases, fuzz_loader
from neural3d.splat.presets import preset
from neural3d.splat.trainer import SplatTrainer


def _run_seed(tmp_path) -> dict[str, bytes]:
    """A run trained for 12 steps (Adam moments, density statistics and RNG in its checkpoint)."""
    import numpy as np

    from neural3d.cameras import Intrinsics, turntable_poses
    from neural3d.data.multiview import MultiviewData

    poses = turntable_poses(3, 3.0).astype(np.float32)
    images = np.random.default_rng(0).random((3, 8, 8, 4)).astype(np.float32)
    data = MultiviewData(images, poses, Intrinsics.from_fov(0.7, 8))
    cfg = preset("tiny", iterations=12, init_points=30, densify_from=4, densify_until=10,
                 densify_every=4, backend="torch", checkpoint_every=0, log_every=4, threads=0)
    SplatTrainer(cfg, data, run_dir=tmp_path / "run").train(progress_bar=False)
    return {f: (tmp_path / "run" / f).read_bytes()
            for f in ("checkpoint.safetensors", "config.json")}


@pytest.mark.parametrize("key", ["density.count", "rng.torch", "adam.means.exp_avg",
                                 "views.order", "views.next"])
def test_damaged_resume_state_is_refused(tmp_path, key):
    from mpgym.checkpoint import load_checkpoint, save_checkpoint
    from mpgym.errors import MpgymError
    from neural3d.splat.trainer import _fuzz_load

    _run_seed(tmp_path)
    ck = load_checkpoint(tmp_path / "run")
    good = ck.state_dict[key]
    if key == "density.count":
        bad = torch.zeros(len(good) + 1)  # one Gaussian too many
    elif key == "rng.torch":
        bad = good[:5]  # a truncated generator state
    elif key == "views.order":
        bad = torch.tensor([0, 0, 2])  # not a permutation of the views
    elif key == "views.next":
        bad = good + 10  # past the end of the epoch's order
    else:
        bad = torch.full_like(good, float("nan"))
    save_checkpoint(ck.path, {**ck.state_dict, key: bad}, kind="splat", config=ck.config,
                    meta=ck.meta)
    with pytest.raises(MpgymError, match=key.split(".")[-1]):
        _fuzz_load(str(tmp_path / "run"))


def test_fuzz_splat_run(tmp_path):
    report = fuzz_loader("neural3d.splat.trainer:_fuzz_load", _run_seed(tmp_path),
                         cases=fuzz_cases(150), entry=".", mutable=("checkpoint.safetensors",))
    report.assert_ok()
    assert report.refused > 0 and report.ok > 0
