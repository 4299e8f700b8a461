"""GenMM: the pure steps against brute force and hand cases, synthesis, the model's protocol."""

import dataclasses
import functools

import numpy as np
import pytest
import torch

from bodies.motion import features
from bodies.motion import genmm as gm
from bodies.motion.dataset import WINDOW
from bodies.motion.genmm import (
    PRESETS,
    GenMM,
    GenMMConfig,
    PatchBank,
    blend,
    feature_weights,
    fit_genmm,
    initial_guess,
    nearest_patches,
    patch_sq_distances,
    plan_levels,
    pyramid_lengths,
    synthesize,
)
from mpgym.checkpoint import load_checkpoint, save_checkpoint
from mpgym.errors import MpgymError

torch.set_num_threads(1)


def sinusoids(length: int, dims: int, seed: int = 0) -> torch.Tensor:
    """``(length, dims)`` float64: per dimension a sum of two sinusoids of random frequency."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float64)[:, None]
    f = 0.05 + 0.3 * torch.rand(dims, generator=g, dtype=torch.float64)
    ph = 6.28 * torch.rand(dims, generator=g, dtype=torch.float64)
    return torch.sin(f * t + ph) + 0.5 * torch.sin(2.3 * f * t + 2 * ph)


def brute_patch_distances(x: torch.Tensor, seqs: list[torch.Tensor], p: int) -> torch.Tensor:
    """``(B, Nx, N)`` mean squared patch differences by explicit loops over patches."""
    ys = [s[j : j + p] for s in seqs for j in range(s.shape[0] - p + 1)]
    out = torch.empty(x.shape[0], x.shape[1] - p + 1, len(ys), dtype=x.dtype)
    for b in range(x.shape[0]):
        for i in range(x.shape[1] - p + 1):
            for j, y in enumerate(ys):
                out[b, i, j] = ((x[b, i : i + p] - y) ** 2).mean()
    return out


def coverage(x: torch.Tensor, bank: PatchBank, alpha: float) -> float:
    """Fraction of the bank's patches that some patch of ``x[0]`` is matched to."""
    return len(torch.unique(nearest_patches(x, bank, alpha)[0])) / len(bank.starts)


# ------------------------------------------------------------------------------ pure functions
@pytest.mark.parametrize(
    ("final", "ratio", "factor", "expected"),
    [
        (100, 0.5, 0.75, [50, 67, 89, 100]),  # 50 / 0.75 = 66.7 -> 67, 89.3 -> 89, 118.7 -> 100
        (4, 0.25, 0.9, [1, 2, 3, 4]),  # rounding stalls: each stalled stage grows by one frame
        (30, 1.8, 0.75, [30]),  # coarse ratio >= 1: a single stage
        (300, 55 / 106, 0.75, [156, 208, 277, 300]),  # 10 s from the longest clip (spin)
    ],
)
def test_pyramid_lengths_known_cases(final, ratio, factor, expected):
    assert pyramid_lengths(final, ratio, factor) == expected


def test_plan_levels_shares_scales_and_drops_stages_shorter_than_a_patch():
    cfg = GenMMConfig()  # patch 11, coarse ratio 5 patches: 55 / 100 = 0.55
    ex, out = plan_levels([100, 40], 200, cfg)
    assert [e[0] for e in ex] == [55, 73, 97, 100]
    assert [e[1] for e in ex] == [22, 29, 39, 40]
    assert out == [110, 147, 196, 200]
    # a 12-frame output has stages of 7, 9 and 12 frames: only the finest holds a patch
    assert plan_levels([100], 12, cfg) == ([[100]], [12])
    # short examples: one stage at full resolution, as in the authors' code
    assert plan_levels([19, 19], 300, cfg) == ([[19, 19]], [300])


def test_patch_distances_match_brute_force():
    p = 5
    seqs = [sinusoids(12, 3, seed=1), sinusoids(4, 3, seed=2), sinusoids(9, 3, seed=3)]
    x = torch.stack([sinusoids(10, 3, seed=4), sinusoids(10, 3, seed=5)])
    bank = PatchBank.build(seqs, p)  # the 4-frame sequence gives no patch
    assert len(bank.starts) == 8 + 0 + 5
    got = patch_sq_distances(x, bank)
    torch.testing.assert_close(got, brute_patch_distances(x, seqs, p), rtol=1e-10, atol=1e-12)
    # the docstring's example: a patch of zeros against a patch of ones
    ones = PatchBank.build([torch.ones(3, 2)], 3)
    assert patch_sq_distances(torch.zeros(1, 3, 2), ones).tolist() == [[[1.0]]]


def test_nearest_patches_is_the_normalised_argmin(monkeypatch):
    """``argmin_j d(i, j) / (alpha + min_i' d(i', j))``, per sample, in chunks of samples."""
    p, alpha = 5, 0.05
    seqs = [sinusoids(30, 4, seed=1), sinusoids(20, 4, seed=2)]
    x = torch.stack([sinusoids(25, 4, seed=s) for s in range(3, 8)])
    d = brute_patch_distances(x, seqs, p)
    expected = (d / (alpha + d.amin(dim=1, keepdim=True))).argmin(-1)
    bank = PatchBank.build(seqs, p)
    assert torch.equal(nearest_patches(x, bank, alpha), expected)
    monkeypatch.setattr(gm, "_CHUNK_NUMBERS", 1)  # one sample per chunk
    assert torch.equal(nearest_patches(x, bank, alpha), expected)
    # a huge alpha is the plain nearest neighbour
    assert torch.equal(nearest_patches(x, bank, 1e12), d.argmin(-1))


def test_blend_averages_the_overlapping_votes():
    a = torch.tensor([[1.0], [2.0], [3.0]])
    b = torch.tensor([[10.0], [20.0], [30.0]])
    bank = PatchBank.build([a, b], 3)  # patch 0 = a, patch 1 = b
    out = blend(bank, torch.tensor([[0, 1]]), 4)  # the docstring's example
    assert out[0, :, 0].tolist() == [1.0, (2 + 10) / 2, (3 + 20) / 2, 30.0]


def test_blend_of_consecutive_patches_rebuilds_the_example():
    ex = sinusoids(20, 3)
    bank = PatchBank.build([ex], 7)
    out = blend(bank, torch.arange(14)[None], 20)
    torch.testing.assert_close(out[0], ex, rtol=0, atol=1e-12)


def test_initial_guess_without_noise_is_the_stretched_examples():
    a, b = sinusoids(10, 2, seed=1), sinusoids(6, 2, seed=2)
    x = initial_guess([a, b], 2, 16, 0.0, torch.Generator())
    torch.testing.assert_close(x[1], torch.cat([a, b]))  # 16 frames: nothing to stretch
    noisy = initial_guess([a, b], 2, 30, 10.0, torch.Generator().manual_seed(0))
    assert noisy.shape == (2, 30, 2) and noisy.abs().max() < 1  # fmod(., 1)
    assert not torch.equal(noisy[0], noisy[1])


def test_one_example_without_noise_reproduces_its_patches():
    ex = sinusoids(60, 4)
    cfg = GenMMConfig(patch_size=5, noise_sigma=0.0)
    x = synthesize([ex], 2, 60, cfg, torch.Generator().manual_seed(0))
    d = patch_sq_distances(x, PatchBank.build([ex], 5)).amin(-1)
    assert d.max() < 1e-12  # every output patch is a patch of the example


def test_completeness_term_spreads_matches_over_all_example_patches():
    """Output as long as the example: small alpha uses almost every example patch (all but
    3-6 of 56 on this toy), the plain nearest neighbour (huge alpha) a half to two thirds."""
    ex = sinusoids(60, 4)
    bank = PatchBank.build([ex], 5)
    cov = {}
    for alpha in (1e-3, 1e6):
        cfg = GenMMConfig(patch_size=5, alpha=alpha)
        runs = [synthesize([ex], 1, 60, cfg, torch.Generator().manual_seed(s)) for s in range(5)]
        cov[alpha] = np.mean([coverage(x, bank, alpha) for x in runs])
    assert cov[1e-3] >= 0.88
    assert cov[1e6] <= 0.75
    # one match of the noisy initial guess: the completeness term alone makes the difference
    x = initial_guess([ex], 1, 60, 10.0, torch.Generator().manual_seed(0))
    assert coverage(x, bank, 1e-3) > coverage(x, bank, 1e6) + 0.1


def test_feature_weights_give_each_group_its_share():
    w = feature_weights((1.0, 1.0, 1.0, 0.0))
    assert w.shape == (features.D,) and w.sum() == pytest.approx(features.D)
    np.testing.assert_allclose(w[:4], 224 / 3 / 4)  # 18.67
    np.testing.assert_allclose(w[features.ROT6D], 224 / 3 / 144)  # 0.52
    np.testing.assert_allclose(w[features.POSITIONS], 224 / 3 / 72)  # 1.04
    assert (w[features.CONTACTS] == 0).all()


# ------------------------------------------------------------------------------ the model
@functools.lru_cache(maxsize=1)
def model() -> GenMM:
    return fit_genmm(PRESETS["default"], split="train")


def test_output_length_contacts_and_labels():
    m = model()
    x = m.generate(3, 2.5, labels=["walk", "run", "walk"], generator=torch.Generator())
    assert x.shape == (3, 75, features.D) and x.dtype == np.float32
    assert np.isfinite(x).all()
    assert set(np.unique(x[..., features.CONTACTS])) <= {0.0, 1.0}
    assert m.generate(2, 10.0, generator=torch.Generator()).shape == (2, 300, features.D)
    w = m.generate_windows(["spin", "kick"], generator=torch.Generator())
    assert w.shape == (2, WINDOW, features.D)


def test_a_label_is_synthesised_from_its_own_examples():
    """Almost every patch of a 'walk' sample is nearest to a walk patch among all labels'."""
    m = model()
    x = m.generate(2, 5.0, labels=["walk"], generator=torch.Generator().manual_seed(1))
    z = torch.as_tensor(m.normalizer.normalize(x)) * m._weights
    seqs = m._group(None)
    owner = torch.cat(
        [
            torch.full((len(s) - 10,), lab == "walk")
            for lab in m.label_names
            for s in m.examples[lab]
        ]
    )
    nearest = patch_sq_distances(z, PatchBank.build(seqs, 11)).argmin(-1)
    assert owner[nearest].float().mean() > 0.95


def test_a_seed_fixes_the_samples():
    m = model()
    a = m.generate(2, 3.0, labels=["spin"], generator=torch.Generator().manual_seed(7))
    b = m.generate(2, 3.0, labels=["spin"], generator=torch.Generator().manual_seed(7))
    c = m.generate(2, 3.0, labels=["spin"], generator=torch.Generator().manual_seed(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a, c)


def test_save_load_round_trip(tmp_path):
    m = model()
    path = m.save(tmp_path / "genmm.safetensors")
    back = GenMM.load(path)
    assert back.config == m.config and back.label_names == m.label_names
    for lab in m.label_names:
        for s, t in zip(m.examples[lab], back.examples[lab], strict=True):
            np.testing.assert_array_equal(s, t)
    a = m.generate(2, 2.0, labels=["jump"], generator=torch.Generator().manual_seed(3))
    b = back.generate(2, 2.0, labels=["jump"], generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(a, b)


def test_load_refuses_mismatched_checkpoints(tmp_path):
    m = model()
    state = m.state_dict()
    meta = {"label_names": list(m.label_names)}

    def write(name, state=state, config=m.config, meta=meta, kind="genmm"):
        return save_checkpoint(tmp_path / name, state, kind=kind, config=config, meta=meta)

    cases = {
        "kind": (write("a", kind="mdm"), "expected 'genmm'"),
        "shape": (write("b", {**state, "examples": state["examples"][:, :100]}), "float32"),
        "extra": (write("c", {**state, "bias": torch.zeros(3)}), "expected tensors"),
        "lengths": (
            write("d", {**state, "example_lengths": state["example_lengths"] + 1}),
            "add up",
        ),
        "labels": (write("e", meta={"label_names": ["walk"]}), "index the 1 label"),
        "normalizer": (write("h", {**state, "normalizer.std": torch.ones(7)}), "normalizer.std"),
        "config": (write("f", config={"patch_size": 10}), "odd"),
        "key": (write("g", config={"patchsize": 11}), "unknown keys"),
    }
    for name, (path, message) in cases.items():
        with pytest.raises(MpgymError, match=message):
            GenMM.load(path)
        assert name  # keeps the case name in the traceback


def test_fit_writes_a_loadable_run(tmp_path):
    from mpgym import RunDir

    run = RunDir(tmp_path / "run")
    cfg = PRESETS["tiny"]
    fitted = fit_genmm(cfg, split="fit", run=run)
    ck = load_checkpoint(run.file("checkpoint.safetensors"), expected_kind="genmm")
    assert ck.meta["label_names"] == list(fitted.label_names)
    assert GenMM.load(run.path).config == cfg
    assert (run.path / "config.json").exists()


def test_bad_input_is_one_clear_error():
    m = model()
    with pytest.raises(MpgymError, match="unknown label.*'moonwalk'.*accepted: backflip"):
        m.generate(1, 1.0, labels=["moonwalk"])
    with pytest.raises(MpgymError, match="2 labels for 3 samples"):
        m.generate(3, 1.0, labels=["walk", "run"])
    with pytest.raises(MpgymError, match="at least one patch"):
        m.generate(1, 0.2)  # 6 frames
    with pytest.raises(MpgymError, match="unknown label"):
        m.generate_windows(["walk", "fly"])
    short = {"walk": [np.zeros((10, features.D), np.float32)]}
    with pytest.raises(MpgymError, match="10 frames, fewer than the patch size 11"):
        GenMM(GenMMConfig(), short, m.normalizer)
    with pytest.raises(MpgymError, match="NaN"):
        GenMM(GenMMConfig(), {"walk": [np.full((20, features.D), np.nan)]}, m.normalizer)
    with pytest.raises(MpgymError, match="expected"):
        GenMM(GenMMConfig(), {"walk": [np.zeros((20, 7))]}, m.normalizer)
    with pytest.raises(MpgymError, match="no example"):
        GenMM(GenMMConfig(), {"walk": []}, m.normalizer)
    for bad in (
        dict(patch_size=10),
        dict(alpha=0.0),
        dict(pyr_factor=1.0),
        dict(group_weights=(0.0, 0.0, 0.0, 0.0)),
        dict(window_context=5),
    ):
        with pytest.raises(MpgymError):
            GenMM(dataclasses.replace(GenMMConfig(), **bad), m.examples, m.normalizer)
