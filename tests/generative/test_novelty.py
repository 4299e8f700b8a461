"""Novelty of samples (generative.novelty) and the generative benchmark's merge of seed parts."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from generative.data import load_digits_split
from generative.novelty import nearest_neighbour_distances, novelty_ratio
from mpgym.errors import MpgymError

ROOT = Path(__file__).resolve().parents[2]


def test_nearest_neighbour_distances_docstring_example():
    d = nearest_neighbour_distances(torch.tensor([[0, 0], [3, 4]]), torch.tensor([[0, 0]]))
    assert d.tolist() == [0.0, 5.0]


def test_nearest_neighbour_distances_picks_the_nearest_and_batches_agree():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(37, 5, generator=g), torch.randn(11, 5, generator=g)
    brute = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1).sqrt().amin(1).double()
    torch.testing.assert_close(nearest_neighbour_distances(a, b), brute)
    torch.testing.assert_close(nearest_neighbour_distances(a, b, batch=4), brute)


def test_images_are_flattened():
    a = torch.zeros(2, 8, 8, dtype=torch.long)
    a[1, 0, 0] = 3
    d = nearest_neighbour_distances(a, torch.zeros(1, 64, dtype=torch.long))
    assert d.tolist() == [0.0, 3.0]


def test_copies_of_training_images_give_ratio_zero_and_test_images_ratio_one():
    split = load_digits_split()
    copies = novelty_ratio(split.x_train[:300], split.x_train, split.x_test)
    assert copies.ratio == 0.0 and copies.copy_fraction == 1.0
    heldout = novelty_ratio(split.x_test, split.x_train, split.x_test)
    assert heldout.ratio == pytest.approx(1.0) and heldout.copy_fraction == 0.0
    # the digits' held-out images lie a known distance from the training set (pixel units)
    assert 15 < heldout.heldout_median < 25


def test_noisy_copies_are_more_novel_than_copies_and_half_copies_split_the_fraction():
    split = load_digits_split()
    g = torch.Generator().manual_seed(0)
    noisy = (split.x_train[:200] + torch.randint(-4, 5, (200, 64), generator=g)).clamp(0, 16)
    assert novelty_ratio(noisy, split.x_train, split.x_test).ratio > 0.2
    half = torch.cat([split.x_train[:100], split.x_test[:100]])
    assert novelty_ratio(half, split.x_train, split.x_test).copy_fraction == 0.5


@pytest.mark.parametrize(
    ("samples", "reference", "match"),
    [
        (torch.zeros(0, 4), torch.zeros(3, 4), "samples must be a non-empty"),
        (torch.zeros(4), torch.zeros(3, 4), "samples must be a non-empty"),
        (torch.zeros(2, 4), torch.zeros(3, 5), "same values per image"),
        (torch.full((2, 4), math.nan), torch.zeros(3, 4), "samples must be finite"),
        ([[0, 0]], torch.zeros(3, 2), "samples must be a non-empty tensor"),
    ],
)
def test_bad_inputs_get_one_clear_error(samples, reference, match):
    with pytest.raises(MpgymError, match=match):
        nearest_neighbour_distances(samples, reference)


def test_heldout_images_on_the_training_set_are_refused():
    x = torch.arange(12.0).view(4, 3)
    with pytest.raises(MpgymError, match="held-out images must mostly differ"):
        novelty_ratio(x, x, x)


# ---------------------------------------------------------------------------- benchmark merge
def _benchmark():
    """benchmarks/generative.py, loaded by path (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location(
        "_generative_benchmark", ROOT / "benchmarks" / "generative.py"
    )
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def _part(model: str, seed: int, nll: float, fd_ratio: float = math.nan, novelty=math.nan):
    bound = {"glow": "dequantised bound (not exact)", "vae": "IWAE", "ddpm": "variational bound"}
    return {
        "part": {"model": model, "seed": seed},
        "quick": False,
        "row": {
            "model": model,
            "seed": seed,
            "bound": bound.get(model, "exact"),
            "nll_nats": nll,
            "fd": 8.0 * fd_ratio,
            "fd_over_floor": fd_ratio,
            "novelty_ratio": novelty,
            "copy_fraction": 0.0,
            "train_s": 10.0,
            "steps": 100,
            "best_step": 100,
            "params": 1,
        },
        "other_variance": [],
        "n_samples": 1000,
        "ddpm_fd_sampler": "ancestral, all T",
        "load_before": {"loadavg": [1.0, 1.0, 1.0]},
        "load_after": {"loadavg": [3.0, 1.0, 1.0]},
        "classifier": {"val_acc": 0.99, "test_acc": 0.98},
    }


def test_merge_takes_seed_means_keeps_glow_out_of_the_exact_set_and_lists_missing_parts():
    bench = _benchmark()
    parts = [
        _part("nade", 1, 93.0),
        _part("nade", 2, 95.0),  # mean 94.0 over two seeds: at the target
        _part("pixelcnn", 1, 84.0),
        _part("glow", 1, 120.0),  # a bound far above 94: must not count as exact
        _part("vae", 1, 99.0),
        _part("ddpm", 1, 140.0, fd_ratio=1.5, novelty=0.5),
        _part("ddpm", 2, 140.0, fd_ratio=2.5, novelty=1.5),
    ]
    expected = [(m, s) for m in ("nade", "pixelcnn", "glow", "vae", "ddpm") for s in (1, 2)]
    rows, goals, extra = bench.merge(parts, expected)
    goal = {g.name: g for g in goals}
    assert goal["worst_exact_nll_nats"].value == pytest.approx(94.0)
    assert goal["worst_exact_nll_nats"].met
    assert goal["best_nll_nats"].value == pytest.approx(84.0)
    assert goal["vae_iwae_nll_nats"].value == pytest.approx(99.0)
    assert goal["diffusion_fd_over_floor"].value == pytest.approx(2.0)
    assert goal["worst_novelty_ratio"].value == pytest.approx(1.0)
    assert goal["classifier_test_acc"].value == pytest.approx(0.98)
    nade = next(r for r in rows if r["model"] == "nade")
    assert nade["seeds"] == [1, 2]
    assert nade["nll_nats_std"] == pytest.approx(math.sqrt(2.0))
    assert (nade["nll_nats_min"], nade["nll_nats_max"]) == (93.0, 95.0)
    assert (nade["load_1m_min"], nade["load_1m_max"]) == (1.0, 3.0)
    glow = next(r for r in rows if r["model"] == "glow")
    assert "not exact" in glow["bound"]
    assert extra["missing_parts"] == ["pixelcnn seed 2", "glow seed 2", "vae seed 2"]
    assert extra["goal_seeds"]["worst_exact_nll_nats"] == {"nade": [1, 2], "pixelcnn": [1]}
    assert extra["goals_on_all_seeds"] == {
        "worst_exact_nll_nats": False,
        "best_nll_nats": False,
        "diffusion_fd_over_floor": True,
        "worst_novelty_ratio": True,
        "vae_iwae_nll_nats": False,
    }


def test_memorising_samples_fail_the_novelty_goal():
    bench = _benchmark()
    parts = [_part("ddpm", s, 140.0, fd_ratio=1.0, novelty=0.0) for s in (1, 2, 3)]
    _, goals, extra = bench.merge(parts, [("ddpm", s) for s in (1, 2, 3)])
    goal = {g.name: g for g in goals}
    assert goal["diffusion_fd_over_floor"].met and not goal["worst_novelty_ratio"].met
    assert extra["missing_parts"] == []
    assert extra["goals_on_all_seeds"]["worst_novelty_ratio"]


def test_merge_refuses_an_empty_folder_and_a_mix_of_quick_and_full_parts(tmp_path):
    bench = _benchmark()
    with pytest.raises(MpgymError, match="no parts to merge"):
        bench.read_parts(tmp_path)
    (tmp_path / "a.json").write_text('{"quick": true}')
    (tmp_path / "b.json").write_text('{"quick": false}')
    with pytest.raises(MpgymError, match="mixes --quick and full parts"):
        bench.read_parts(tmp_path)
