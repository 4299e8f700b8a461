"""MDM: losses, DDIM with guidance and inpainting, long-motion chaining, files, training."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from bodies.motion.features import CONTACTS, FOOT_JOINTS, POSITIONS, ROOT_VELOCITY, D
from bodies.motion.mdm import (
    MDM,
    PRESETS,
    MDMConfig,
    balanced_indices,
    chain_windows,
    config_from_dict,
    joint_displacements,
    joint_positions,
    mdm_losses,
    validation_loss,
)
from generative.diffusion import ddim_sample, ddim_timesteps, x0_to_eps
from generative.trainer import TrainConfig, train
from mpgym.errors import MpgymError

LABELS = ("walk", "run", "jump")
W = PRESETS["tiny"].window


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread (as under ``pytest -n 2``): two threads on a busy 2-core machine contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@functools.lru_cache(maxsize=1)
def tiny_model() -> MDM:
    """An untrained tiny conditional MDM with a non-trivial normaliser (fixed init)."""
    torch.manual_seed(0)
    mean = torch.linspace(-1, 1, D)
    std = torch.linspace(0.5, 2, D)
    return MDM(dataclasses.replace(PRESETS["tiny"], labels=LABELS), mean, std).eval()


def synthetic_windows(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, W, D)`` windows of three smooth label-dependent patterns plus noise, and labels."""
    g = gen(seed)
    y = torch.randint(0, len(LABELS), (n,), generator=g)
    phase = torch.rand(n, 1, 1, generator=g) * 6.28
    f = torch.arange(W, dtype=torch.float32)[None, :, None]
    d = torch.arange(D, dtype=torch.float32)[None, None, :]
    x = torch.sin(0.3 * (y[:, None, None] + 1) * f + phase + 0.05 * d)
    return x + 0.05 * torch.randn(x.shape, generator=g), y


# ---------------------------------------------------------------------------- pure functions
def test_losses_hand_computed():
    """One foot moving 0.1 m in x between frames 0 and 1, in contact at frame 0."""
    target = torch.zeros(1, 3, D)
    target[0, 0, CONTACTS.start] = 1.0  # FOOT_JOINTS[0] in contact at frame 0
    pred = target.clone()
    j = FOOT_JOINTS[0]
    pred[0, 1:, POSITIONS.start + 3 * j] = 0.1  # joint j at x = 0.1 from frame 1 on
    out = mdm_losses(pred, target, pred, target, lambda_pos=2.0, lambda_vel=3.0, lambda_foot=4.0)
    simple = 2 * 0.01 / (3 * D)
    pos = 2 * 0.01 / (3 * 24 * 3)
    vel = 0.01 / (2 * 24 * 3)  # one of the 2 frame pairs moves
    foot = 0.01 / (2 * 4 * 3)  # ...and it starts in contact (means over the 4 foot joints)
    torch.testing.assert_close(out.simple, torch.tensor(simple))
    torch.testing.assert_close(out.pos, torch.tensor(pos))
    torch.testing.assert_close(out.vel, torch.tensor(vel))
    torch.testing.assert_close(out.foot, torch.tensor(foot))
    torch.testing.assert_close(out.total, torch.tensor(simple + 2 * pos + 3 * vel + 4 * foot))
    assert joint_positions(pred).shape == (1, 3, 24, 3)


def test_foot_loss_ignores_feet_not_in_contact():
    target = torch.zeros(2, 4, D)
    pred = target.clone()
    pred[:, :, POSITIONS] = torch.randn(2, 4, 72, generator=gen())
    assert float(mdm_losses(pred, target, pred, target).foot) == 0.0


def test_joint_displacements_are_world_motion():
    """Against ``features.world_joints`` on a real clip: rotated into frame i's heading frame."""
    from bodies.motion.dataset import deepmimic_motion
    from bodies.motion.features import integrate_root, motion_to_features, rot_y, world_joints

    feats = motion_to_features(deepmimic_motion("walk"))[:20]  # turning slightly, moving
    world = world_joints(feats)  # [T, 24, 3]
    heading, _ = integrate_root(feats)
    ref = np.einsum("tij,tkj->tki", rot_y(-heading[:-1]), world[1:] - world[:-1])
    got = joint_displacements(torch.as_tensor(feats)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-9)
    assert np.abs(ref).max() > 0.01  # the clip does move


def test_a_planted_foot_of_a_walking_body_has_no_foot_loss():
    """Root moving forward at 1.5 m/s; the foot keeps its world place, so it moves backwards in
    the heading frame: root-relative differences would call that skating, world ones do not."""
    raw = torch.zeros(1, 4, D)
    raw[..., ROOT_VELOCITY.start + 1] = 1.5  # +z (forward), m/s
    j = FOOT_JOINTS[0]
    raw[0, :, POSITIONS.start + 3 * j + 2] = -1.5 / 30 * torch.arange(4.0)
    raw[..., CONTACTS.start] = 1.0
    d = joint_displacements(raw)
    torch.testing.assert_close(d[0, :, j], torch.zeros(3, 3))
    assert float(mdm_losses(raw, raw, raw, raw).foot) < 1e-15


def test_balanced_indices():
    np.testing.assert_array_equal(balanced_indices(np.array([0, 0, 0, 1])), [0, 1, 2, 3, 3, 3])
    labels = np.array([2, 0, 2, 2, 0, 5])
    idx = balanced_indices(labels)
    assert sorted(np.bincount(labels[idx]).tolist()) == [0, 0, 0, 3, 3, 3]
    assert set(idx.tolist()) == set(range(6))


@pytest.mark.parametrize(
    ("total", "expected"), [(1, 1), (12, 1), (13, 2), (20, 2), (21, 3), (300, 37)]
)
def test_chain_windows(total, expected):
    assert chain_windows(total, 12, 4) == expected
    assert 12 + (expected - 1) * 8 >= total


# ---------------------------------------------------------------------------- sampling
def test_ddim_one_step_returns_the_x0_prediction():
    m = tiny_model()
    y = torch.tensor([0, 2])
    out = m.sample_normalized(2, y=y, steps=1, guidance=1.5, generator=gen(3))
    noise = torch.randn(2, W, D, generator=gen(3))
    t = torch.full((2,), m.config.T)
    with torch.no_grad():
        c, u = m.net(noise, t, y), m.net(noise, t, None)
    torch.testing.assert_close(out, c + 1.5 * (c - u))


def test_guidance_zero_is_the_conditional_model():
    m = tiny_model()
    y = torch.tensor([1, 0, 2])
    out = m.sample_normalized(3, y=y, steps=4, guidance=0.0, generator=gen(1))

    def predict(xt, t, a_t):
        x0 = m.net(xt, t, y)
        return x0, x0_to_eps(xt, x0, a_t)

    with torch.no_grad():
        ref = ddim_sample(
            predict, torch.randn(3, W, D, generator=gen(1)), m.sched, ddim_timesteps(m.config.T, 4)
        )
    torch.testing.assert_close(out, ref)


def test_batched_guidance_matches_two_passes():
    m = tiny_model()
    x, y, t = (
        torch.randn(3, W, D, generator=gen(2)),
        torch.tensor([0, 1, 2]),
        torch.tensor([5, 500, 1000]),
    )
    with torch.no_grad():
        got = m.predict_x0(x, t, y, 2.5)
        c = m.net(x, t, y)
        u = m.net(x, t, y, keep=torch.zeros(3))
        assert torch.allclose(u, m.net(x, t, None), atol=1e-6)  # a dropped label = no label
    torch.testing.assert_close(got, 3.5 * c - 2.5 * u, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mask_kind", ["frames", "entries"])
def test_inpainting_keeps_the_known_frames_exactly(mask_kind):
    m = tiny_model()
    known = torch.randn(2, W, D, generator=gen(4))
    if mask_kind == "frames":
        mask = torch.zeros(2, W, dtype=torch.bool)
        mask[:, :4] = True
        mask[1, -3:] = True  # in-betweening
        full = mask[..., None].expand(2, W, D)
    else:
        mask = full = torch.rand(2, W, D, generator=gen(5)) < 0.3
    y = torch.tensor([0, 1])
    out = m.sample_normalized(2, y=y, known=known, mask=mask, generator=gen(6))
    assert torch.equal(out[full], known[full])
    assert not torch.allclose(out[~full], known[~full])

    raw = known.numpy() * 3.0 + 1.0
    got = m.inpaint(raw, mask.numpy(), labels=["run"], generator=gen(7))
    assert got.dtype == np.float32 and got.shape == (2, W, D)
    assert np.array_equal(got[full.numpy()], raw[full.numpy()])


def test_generate_chains_windows_through_their_prefix():
    m = tiny_model()
    k = m.config.prefix
    one = m.generate(2, W / 30, labels=["walk", "jump"], generator=gen(8))
    windows = m.generate_windows(["walk", "jump"], generator=gen(8))
    np.testing.assert_array_equal(one, windows)  # one window: the chain's first sample
    long = m.generate(2, (2 * W - k) / 30, labels=["walk", "jump"], generator=gen(8))
    assert long.shape == (2, 2 * W - k, D)
    # foot locking (config.foot_lock) sees the step after a window's last frame only in the
    # chain, so that frame's root velocity may differ; everything else is the chain's start
    np.testing.assert_array_equal(long[:, : W - 1], windows[:, : W - 1])
    keep = np.ones(D, bool)
    keep[ROOT_VELOCITY] = False
    np.testing.assert_array_equal(long[:, W - 1, keep], windows[:, W - 1, keep])


@pytest.mark.parametrize(("n", "seconds", "frames"), [(1, 10.0, 300), (3, 0.1, 3), (2, 1.0, 30)])
def test_generate_shapes(n, seconds, frames):
    out = tiny_model().generate(n, seconds, labels=["run"], generator=gen())
    assert out.shape == (n, frames, D) and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_unconditional_generation_and_per_motion_labels():
    m = tiny_model()
    assert m.generate(2, 0.5, generator=gen()).shape == (2, 15, D)
    assert m.generate(2, 0.5, labels=["run", "walk"], generator=gen()).shape == (2, 15, D)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.generate(1, 1.0, labels=["moonwalk"]),
        lambda m: m.generate_windows(["walk", "fly"]),
        lambda m: m.inpaint(np.zeros((1, W, D)), np.zeros((1, W), bool), labels=["swim"]),
    ],
)
def test_unknown_labels_are_refused(call):
    with pytest.raises(MpgymError, match="accepted: walk, run, jump"):
        call(tiny_model())


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 1.0), "n must be"),
        ((1, 0.0), "at least one frame"),
        ((1, float("nan")), "at least one frame"),
    ],
)
def test_generate_refuses_bad_sizes(args, match):
    with pytest.raises(MpgymError, match=match):
        tiny_model().generate(*args)


def test_label_count_must_be_one_or_n():
    with pytest.raises(MpgymError, match="give 1 or n = 3 labels"):
        tiny_model().generate(3, 1.0, labels=["walk", "run"])


def test_bad_inpaint_shapes_are_refused():
    with pytest.raises(MpgymError, match="inpaint takes"):
        tiny_model().inpaint(np.zeros((1, W, D)), np.zeros((1, W - 1), bool))


@pytest.mark.parametrize(
    "change", [{"prefix": 12}, {"prefix": 0}, {"latent": 30, "heads": 4}, {"ddim_steps": 2000}]
)
def test_bad_configs_are_refused(change):
    with pytest.raises(MpgymError):
        MDM(dataclasses.replace(PRESETS["tiny"], **change))


# ---------------------------------------------------------------------------- files
def test_save_load_round_trip_gives_identical_samples(tmp_path):
    m = tiny_model()
    path = tmp_path / "mdm.safetensors"
    m.save(path)
    back = MDM.load(path)
    assert back.config == m.config and back.label_names == LABELS
    a = m.generate(2, 0.7, labels=["jump"], generator=gen(9))
    b = back.generate(2, 0.7, labels=["jump"], generator=gen(9))
    np.testing.assert_array_equal(a, b)


def test_load_refuses_a_checkpoint_that_does_not_match_its_config(tmp_path):
    from mpgym.checkpoint import save_checkpoint

    m = tiny_model()
    state = dict(m.state_dict())
    wrong = dataclasses.replace(m.config, layers=3)
    save_checkpoint(tmp_path / "a.safetensors", state, kind="mdm", config=wrong)
    with pytest.raises(MpgymError, match="missing"):
        MDM.load(tmp_path / "a.safetensors")
    state["net.out.weight"] = state["net.out.weight"].double()
    save_checkpoint(tmp_path / "b.safetensors", state, kind="mdm", config=m.config)
    with pytest.raises(MpgymError, match="net.out.weight"):
        MDM.load(tmp_path / "b.safetensors")
    save_checkpoint(tmp_path / "c.safetensors", m.state_dict(), kind="mvae", config=m.config)
    with pytest.raises(MpgymError, match="expected 'mdm'"):
        MDM.load(tmp_path / "c.safetensors")


def test_config_from_dict_refuses_unknown_and_missing_keys():
    data = dataclasses.asdict(MDMConfig())
    data["labels"] = list(data["labels"])
    assert config_from_dict(dict(data)) == MDMConfig()
    with pytest.raises(MpgymError, match="unknown"):
        config_from_dict({**data, "width": 3})
    del data["T"]
    with pytest.raises(MpgymError, match="missing"):
        config_from_dict(data)


# ---------------------------------------------------------------------------- training
def test_fixed_step_training_lowers_the_loss():
    x, y = synthetic_windows(256, seed=0)
    xv, yv = synthetic_windows(64, seed=1)
    torch.manual_seed(0)
    m = MDM(dataclasses.replace(PRESETS["tiny"], labels=LABELS))
    before = validation_loss(m.eval(), xv, yv)
    result = train(
        m,
        x,
        xv,
        TrainConfig(steps=120, batch_size=32, lr=1e-3, eval_every=60, progress=False),
        y_train=y,
        y_val=yv,
        val_fn=lambda model: validation_loss(model, xv, yv),
    )
    after = validation_loss(m, xv, yv)
    assert result.steps == 120
    assert after < 0.5 * before, (before, after)
    assert validation_loss(m, xv, yv) == after  # fixed steps and noise: a deterministic score


@pytest.mark.parametrize("split", ["fit", "train"])
def test_fit_mdm_on_the_clips(tmp_path, split):
    from bodies.motion.clips import CLIP_NAMES
    from bodies.motion.mdm import TRAIN_PRESETS, fit_mdm
    from mpgym import RunDir

    run = RunDir(tmp_path / "run")
    budget = dataclasses.replace(TRAIN_PRESETS["tiny"], steps=20, eval_every=10, progress=False)
    model = fit_mdm(PRESETS["tiny"], train=budget, split=split, run=run, seed=1)
    assert model.label_names == tuple(CLIP_NAMES)
    assert len(run.metrics.rows) == 2
    back = MDM.load(run.path)
    out = back.generate(1, 0.5, labels=["walk"], generator=gen())
    np.testing.assert_array_equal(out, model.generate(1, 0.5, labels=["walk"], generator=gen()))
    assert out.shape == (1, 15, D) and np.isfinite(out).all()


def test_fit_mdm_refuses_the_test_split():
    from bodies.motion.mdm import fit_mdm

    with pytest.raises(MpgymError, match="'train' or 'fit'"):
        fit_mdm(PRESETS["tiny"], split="test")


def test_normalizer_matches_the_datasets():
    m = tiny_model()
    raw = torch.randn(2, W, D, generator=gen(10)) * 3
    torch.testing.assert_close(m.normalizer.normalize(raw), m.normalize(raw))
    torch.testing.assert_close(m.denormalize(m.normalize(raw)), raw, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("labels", [None, [], "walk"])
def test_generate_windows_needs_a_list_of_labels(labels):
    with pytest.raises(MpgymError, match="non-empty list of labels"):
        tiny_model().generate_windows(labels)
