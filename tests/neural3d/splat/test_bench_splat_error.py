"""``benchmarks/splat.py --part error``: the error regions, on known images and end to end."""

import json

import numpy as np
import pytest
from safetensors.torch import save_file

from mpgym import MpgymError
from neural3d.cameras import Intrinsics, sphere_poses
from neural3d.data.multiview import NERF_SYNTHETIC_ANGLE, write_split
from neural3d.splat.model import GaussianModel


@pytest.fixture
def bench(load_benchmark):
    return load_benchmark("splat")


def _square(size=24, lo=6, hi=18):
    """A white image with a hard-edged square of alpha 1 and a soft (alpha 0.5) rim around it."""
    alpha = np.zeros((size, size))
    alpha[lo - 1:hi + 1, lo - 1:hi + 1] = 0.5
    alpha[lo:hi, lo:hi] = 1.0
    target = np.ones((size, size, 3)) - 0.6 * alpha[..., None]
    return target, alpha


def test_the_regions_partition_the_image_and_locate_the_error(bench):
    target, alpha = _square()
    rim = (alpha > 0.02) & (alpha < 0.98)
    pred = target.copy()
    pred[rim] += 0.1  # error on the soft rim only
    r = bench.error_regions(pred, target, alpha)
    # the rim (rows/columns 5 and 18) and its 8-neighbours: rows/columns 4..19 less 7..16
    assert r["band_pixel_share"] == pytest.approx((16 ** 2 - 10 ** 2) / 24 ** 2)
    assert (r["band_pixel_share"] + r["interior_pixel_share"] + r["background_pixel_share"]
            == pytest.approx(1.0))
    assert r["band_error_share"] == pytest.approx(1.0)
    assert r["interior_error_share"] == r["background_error_share"] == 0.0
    se = rim.sum() * 0.01 / 24 ** 2
    assert r["psnr"] == pytest.approx(-10 * np.log10(se))


def test_textured_pixels_are_the_interior_pixels_of_strongest_gradient(bench):
    target, alpha = _square(size=40, lo=5, hi=35)
    rng = np.random.default_rng(0)
    target[14:26, 14:26] = rng.uniform(size=(12, 12, 1))  # a noise texture inside
    pred = target.copy()
    pred[14:26, 14:26] = 0.5  # the texture blurred away; everything else exact
    r = bench.error_regions(pred, target, alpha)
    assert r["interior_error_share"] == pytest.approx(1.0)
    assert r["band_error_share"] == r["background_error_share"] == 0.0
    # 10% of the interior is called textured, and it sits on the texture's strong gradients
    assert r["textured_pixel_share"] == pytest.approx(0.1 * r["interior_pixel_share"], rel=0.05)
    assert 0.1 < r["textured_error_share"] < 1.0


@pytest.fixture
def train_json(tmp_path, disc_rgba):
    """A train part's JSON with one splat snapshot on disk, on a 16x16 disc dataset."""
    root = tmp_path / "disc"
    intr = Intrinsics.from_fov(NERF_SYNTHETIC_ANGLE, 16)
    poses = sphere_poses(6, 4.0, rng=np.random.default_rng(0))
    write_split(root, "train", np.repeat(disc_rgba[None], 4, 0), poses[:4], intr)
    write_split(root, "val", np.repeat(disc_rgba[None], 2, 0), poses[4:], intr)
    model = GaussianModel.random(300, 0.5, seed=0)
    snap_file = tmp_path / "splat-step000010.safetensors"
    save_file({k: v.detach().contiguous() for k, v in model.params.items()}, str(snap_file))
    snaps = [{"step": 5, "sh_degree": 0, "file": str(tmp_path / "gone.safetensors")},
             {"step": 10, "sh_degree": model.max_sh_degree, "file": str(snap_file)}]
    path = tmp_path / "splat-train.json"
    path.write_text(json.dumps({"train_parts": {"splat": {"data": str(root),
                                                           "snapshots": snaps}}}))
    return path


def test_the_error_part_looks_at_the_final_snapshot_on_train_and_val_views(bench, train_json):
    record, maps = bench.error_part(train_json, views=3)
    assert record["snapshot"]["step"] == 10  # the final one; the earlier file is gone
    assert [len(record["splits"][s]["views"]) for s in ("train", "val")] == [3, 2]
    assert [len(maps[s]) for s in ("train", "val")] == [3, 2]
    for split in record["splits"].values():
        for row in split["views"]:
            assert sum(row[f"{k}_error_share"] for k in ("band", "interior", "background")) \
                == pytest.approx(1.0)
        assert split["mean"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in split["views"]]))


def test_the_error_part_refuses_a_json_without_its_snapshot(bench, train_json, tmp_path):
    doc = json.loads(train_json.read_text())
    doc["train_parts"]["splat"]["snapshots"].pop()
    train_json.write_text(json.dumps(doc))
    with pytest.raises(MpgymError, match="run --part train first"):
        bench.error_part(train_json)
    with pytest.raises(MpgymError, match="no splat train part"):
        bench.error_part(tmp_path / "missing.json")


def test_the_error_part_runs_alone(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--part", "error", "speed"])
    assert "--part error runs alone" in capsys.readouterr().err
    assert "error" not in bench.parse_args([]).parts


def test_the_train_part_turntable_draws_the_final_splats_in_the_runs_mode(bench, train_json,
                                                                          tmp_path):
    from PIL import Image

    from mpgym.cli.splat import RenderArgs

    part = json.loads(train_json.read_text())["train_parts"]["splat"]
    gifs = {}
    for mode in ("classic", "antialiased"):
        path = bench.write_turntable({**part, "config": {"rasterize_mode": mode}},
                                     tmp_path / f"{mode}.gif")
        with Image.open(path) as im:
            assert (im.n_frames, im.size) == (RenderArgs().frames, (128, 128))
            gifs[mode] = np.asarray(im.convert("RGB"))
    assert not np.array_equal(gifs["classic"], gifs["antialiased"])  # the mode is used


def test_a_thin_gaussian_reset_to_0_01_is_invisible_only_when_antialiased(bench, train_json):
    """Peak alpha 0.01 x the filter's factor: under 1/255 for a sub-pixel-thin Gaussian in the
    antialiased mode (so no gradient ever reaches it), 0.01 >= 1/255 in the classic mode."""
    import torch

    from neural3d.data.multiview import load_split

    data = load_split(json.loads(train_json.read_text())["train_parts"]["splat"]["data"], "train")
    model = GaussianModel.random(3, 0.1, seed=0)
    with torch.no_grad():
        model.params["means"].zero_()
        model.params["log_scales"].copy_(torch.log(torch.tensor(
            [[1e-4, 1e-4, 1e-4], [0.3, 0.3, 0.3], [0.3, 0.3, 0.3]])))
        model.params["opacity_logits"].copy_(torch.logit(torch.tensor([0.01, 0.01, 0.001])))
    aa = bench.invisible_gaussians(model, data, "antialiased")
    classic = bench.invisible_gaussians(model, data, "classic")
    assert aa["views"] == len(data) and aa["gaussians"] == 3
    assert aa["under_cut_on_every_view"] == 2  # the thin one, and the 0.001 one
    assert classic["under_cut_on_every_view"] == 1  # only opacity 0.001 < 1/255
    assert aa["opacity_at_most_reset_value"] == classic["opacity_at_most_reset_value"] == 3
