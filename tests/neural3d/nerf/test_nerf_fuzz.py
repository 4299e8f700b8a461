"""Mutation fuzzing of the multi-view dataset loader and the NeRF run loader (subprocesses)."""

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from mpgym import save_checkpoint
from mpgym.fuzz import fuzz_cases, fuzz_loader
from neural3d.cameras import look_at
from neural3d.nerf.presets import build_field, preset
from neural3d.render.volume import OccupancyGrid


def _png(value: int) -> bytes:
    img = np.zeros((8, 8, 4), np.uint8)
    img[..., 0], img[..., 1], img[..., 3] = value, np.arange(8)[:, None] * 30, 255
    buf = io.BytesIO()
    Image.fromarray(img, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


def _dataset_seed() -> dict[str, bytes]:
    """Three 8x8 frames in one transforms.json using every key the loader reads."""
    frames = []
    for k in range(3):
        eye = np.array([4 * math.cos(2.0 * k), 4 * math.sin(2.0 * k), 1.0])
        frames.append({"file_path": f"images/f{k}.png",
                       "transform_matrix": np.round(look_at(eye), 4).tolist()})
    frames[1].update(fl_x=9.5, cy=4.5)
    meta = {"camera_model": "OPENCV", "fl_x": 9.0, "fl_y": 9.0, "cx": 4.0, "cy": 4.0, "w": 8,
            "h": 8, "k1": 0.0, "aabb_scale": 4, "scale": 0.5, "offset": [0.5, 0.5, 0.5],
            "applied_transform": [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 0]], "frames": frames}
    seeds = {"transforms.json": json.dumps(meta).encode()}
    seeds.update({f"images/f{k}.png": _png(40 * k) for k in range(3)})
    return seeds


def test_seed_dataset_loads(tmp_path):
    from neural3d.data.multiview import _fuzz_load

    for name, data in _dataset_seed().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    _fuzz_load(str(tmp_path))


def test_fuzz_transforms_json_and_images():
    report = fuzz_loader("neural3d.data.multiview:_fuzz_load", _dataset_seed(),
                         cases=fuzz_cases(300), entry=".")
    report.assert_ok()
    assert report.refused > 0 and report.ok > 0


def _run_seed(field: str) -> dict[str, bytes]:
    """A saved tiny NeRF run directory as `nerf train` writes it (untrained weights)."""
    cfg = preset("tiny" if field == "hash" else "vanilla", num_levels=2, log2_table_size=6,
                 base_resolution=4, max_resolution=8, hidden=8, grid_resolution=4, width=8,
                 depth=3, pos_freqs=2, dir_freqs=1, num_samples=8, num_fine=4)
    f = build_field(cfg, generator=torch.Generator().manual_seed(0))
    sd = {f"field.{k}": v for k, v in f.state_dict().items()}
    if cfg.sampler == "occupancy":
        sd.update({f"grid.{k}": v for k, v in OccupancyGrid(f.aabb, 4).state_dict().items()})
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        ck = save_checkpoint(Path(tmp) / "checkpoint.safetensors", sd, kind="nerf", config=cfg,
                             meta={"psnr": 10.0})
        data = ck.read_bytes()
    config = json.dumps({**json.loads(json.dumps(cfg.__dict__, default=list)), "kind": "nerf"})
    return {"checkpoint.safetensors": data, "config.json": config.encode(),
            "results.json": b'{"psnr": 10.0, "ssim": 0.5, "steps": 0, "seconds": 0.0}'}


@pytest.mark.parametrize("field, cases", [("hash", 250), ("vanilla", 100)])
def test_fuzz_nerf_run(field, cases):
    report = fuzz_loader("neural3d.nerf.io:_fuzz_load", _run_seed(field), cases=fuzz_cases(cases),
                         entry=".", mutable=("checkpoint.safetensors",))
    report.assert_ok()
    assert report.refused > 0 and report.ok > 0
