"""``mpgym nerf train|render`` and ``mpgym render-dataset``: refusals before any work, runs."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from mpgym import save_checkpoint
from mpgym.cli import main
from neural3d.cameras import look_at
from neural3d.nerf.presets import build_field, preset
from neural3d.render.volume import OccupancyGrid

TRAIN = ["--preset", "tiny", "--steps", "2", "--max-seconds", "5", "--eval-views", "1",
         "--threads", "1"]  # later flags override these


@pytest.fixture
def capture(tmp_path, monkeypatch):
    """A nerfstudio-style capture: one transforms.json, nine 16x16 frames; cwd is tmp_path."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "capture"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    frames = []
    for k in range(9):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
            root / "images" / f"frame_{k:05d}.png")
        eye = np.array([4 * math.cos(0.7 * k), 4 * math.sin(0.7 * k), 1.0])
        frames.append({"file_path": f"images/frame_{k:05d}.png",
                       "transform_matrix": look_at(eye).tolist()})
    (root / "transforms.json").write_text(json.dumps({
        "fl_x": 22.0, "fl_y": 22.0, "cx": 8.0, "cy": 8.0, "w": 16, "h": 16, "frames": frames}))
    return root


@pytest.fixture
def blender(capture):
    """The same frames as NeRF-synthetic split files (the layout main always read)."""
    meta = json.loads((capture / "transforms.json").read_text())
    for split, frames in (("train", meta["frames"][1:]), ("test", meta["frames"][:1])):
        (capture / f"transforms_{split}.json").write_text(json.dumps({**meta, "frames": frames}))
    (capture / "transforms.json").unlink()
    return capture


def _refused(capsys, argv, *, mentions=""):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert mentions in err, err
    return err


def _tiny_run(path):
    """A saved (untrained) tiny hash run with config.json, as `nerf render` reads it."""
    cfg = preset("tiny", num_levels=2, log2_table_size=6, base_resolution=4, max_resolution=8,
                 hidden=8, grid_resolution=4)
    field = build_field(cfg, generator=torch.Generator().manual_seed(0))
    sd = {f"field.{k}": v for k, v in field.state_dict().items()}
    sd.update({f"grid.{k}": v for k, v in OccupancyGrid(field.aabb, 4).state_dict().items()})
    path.mkdir(parents=True)
    save_checkpoint(path / "checkpoint.safetensors", sd, kind="nerf", config=cfg)
    (path / "config.json").write_text(json.dumps({"kind": "nerf", "data": "nowhere"}))
    return path


def test_train_on_single_transforms_json_and_render(capture, tmp_path, capsys):
    # a run of another kind where the NeRF run would go is refused without --overwrite
    other = tmp_path / "runs" / "nerf" / "capture-tiny"
    other.mkdir(parents=True)
    (other / "config.json").write_text(json.dumps({"kind": "dqn"}))
    _refused(capsys, ["nerf", "train", str(capture), *TRAIN], mentions="--overwrite")
    assert json.loads((other / "config.json").read_text())["kind"] == "dqn"
    assert main(["nerf", "train", str(capture), *TRAIN, "--overwrite"]) == 0
    assert "test PSNR" in capsys.readouterr().out
    config = json.loads((other / "config.json").read_text())
    assert config["kind"] == "nerf" and config["data"] == str(capture.resolve())
    assert (other / "checkpoint.safetensors").is_file() and (other / "test_view.png").is_file()
    assert [p.name for p in other.parent.iterdir()] == ["capture-tiny"]  # no staging left
    # the test path renders the held-out frames 0 and 8 with their intrinsics
    assert main(["nerf", "render", str(other), "--path", "test", "-o", "t.gif"]) == 0
    assert "(2 frames)" in capsys.readouterr().out and (tmp_path / "t.gif").is_file()


@pytest.mark.parametrize("flags, mentions", [
    (["--steps", "-5"], "--steps"),
    (["--steps", "0"], "--steps"),
    (["--batch-rays", "0"], "--batch-rays"),
    (["--grid-resolution", "-1"], "--grid-resolution"),
    (["--num-samples", "0"], "--num-samples"),
    (["--max-seconds", "0"], "--max-seconds"),
    (["--lr", "-1"], "--lr"),
    (["--log2-table-size", "40"], "--log2-table-size"),
    (["--downscale", "0"], "--downscale"),
    (["--name", "../escape"], "--name"),
])
def test_train_refuses_bad_options_before_any_work(blender, tmp_path, capsys, flags, mentions):
    _refused(capsys, ["nerf", "train", str(blender), *TRAIN, *flags], mentions=mentions)
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_on_cuda_without_cuda_leaves_nothing(blender, tmp_path, capsys):
    _refused(capsys, ["nerf", "train", str(blender), *TRAIN, "--device", "cuda"], mentions="CUDA")
    assert not (tmp_path / "runs").exists()


def test_train_on_truncated_png_names_the_file(blender, tmp_path, capsys):
    png = blender / "images" / "frame_00003.png"
    png.write_bytes(png.read_bytes()[:60])
    _refused(capsys, ["nerf", "train", str(blender), *TRAIN], mentions="frame_00003.png")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flags, mentions", [
    (["--frames", "0"], "--frames"),
    (["--resolution", "-4"], "--resolution"),
    (["--fps", "0"], "--fps"),
    (["--radius", "0"], "--radius"),
    (["-o", "out.png"], ".gif"),
])
def test_render_refuses_bad_options(tmp_path, monkeypatch, capsys, flags, mentions):
    monkeypatch.chdir(tmp_path)
    run = _tiny_run(tmp_path / "run")
    _refused(capsys, ["nerf", "render", str(run), *flags], mentions=mentions)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.safetensors", "config.json"]


def test_render_missing_or_foreign_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _refused(capsys, ["nerf", "render", "nothing-here"], mentions="does not exist")
    assert not (tmp_path / "nothing-here").exists()  # the loader creates no directory
    run = _tiny_run(tmp_path / "run")
    assert main(["nerf", "render", str(run), "--frames", "2", "--resolution", "8"]) == 0
    assert (run / "turntable.gif").is_file() and (run / "turntable_depth.gif").is_file()
    _refused(capsys, ["nerf", "render", str(run), "--path", "test"], mentions="nowhere")


@pytest.mark.parametrize("flags, mentions", [
    (["--views", "0"], "--views"),
    (["--views", "-3"], "--views"),
    (["--resolution", "-4"], "--resolution"),
    (["--resolution", "0"], "--resolution"),
    (["--val-views", "-1"], "--val-views"),
    (["--radius", "0"], "--radius"),
])
def test_render_dataset_refuses_bad_counts(tmp_path, capsys, flags, mentions):
    out = tmp_path / "data"
    _refused(capsys, ["render-dataset", "ball", "--out", str(out), *flags], mentions=mentions)
    assert not out.exists()


def test_vanilla_checkpoint_with_the_old_skip_layout_is_refused(tmp_path):
    from mpgym.errors import MpgymError
    from neural3d.nerf.io import load_nerf

    cfg = preset("vanilla", width=8, depth=8, pos_freqs=2, dir_freqs=1)
    sd = {f"field.{k}": v for k, v in build_field(cfg).state_dict().items()}
    p = 3 * (1 + 2 * 2)
    sd["field.layers.4.weight"] = torch.zeros(8, 8 + p)  # before the fix, layer 5 took the skip
    sd["field.layers.5.weight"] = torch.zeros(8, 8)
    save_checkpoint(tmp_path / "checkpoint.safetensors", sd, kind="nerf", config=cfg)
    with pytest.raises(MpgymError, match="layers.4.weight.*another mpgym version"):
        load_nerf(tmp_path)
