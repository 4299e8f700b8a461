"""Motion VAE: schedule, expert blending, one-step decoder, training, files, bad input."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from bodies.motion.features import FPS, D
from bodies.motion.mvae import (
    MVAE,
    PRESETS,
    TRAIN_PRESETS,
    MotionData,
    MVAEConfig,
    build_mvae,
    check_config,
    fit_mvae,
    mixture_linear,
    sampling_probability,
    start_bank,
)
from mpgym.errors import MpgymError

LABELS = ("circle", "wave", "still")
WINDOW = 12


def _synthetic(windows_per_label: int = 40, seed: int = 0) -> MotionData:
    """Three labels, each a smooth periodic motion of its own frequency in every dimension."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label in range(len(LABELS)):
        freq = rng.uniform(0.2, 1.0, size=D) * (label + 1)
        phase = rng.uniform(0, 2 * np.pi, size=D)
        t = np.arange(windows_per_label + WINDOW)[:, None] / FPS
        seq = np.sin(2 * np.pi * freq * t + phase) + label
        xs.append(np.stack([seq[i : i + WINDOW] for i in range(windows_per_label)]))
        ys.append(np.full(windows_per_label, label))
    x = torch.tensor(np.concatenate(xs), dtype=torch.float32)
    y = torch.tensor(np.concatenate(ys), dtype=torch.int64)
    return MotionData(x, y, x[::5], y[::5], LABELS)


TINY = PRESETS["tiny"]
TINY_TRAIN = dataclasses.replace(TRAIN_PRESETS["tiny"], steps=40, progress=False)


@functools.lru_cache(maxsize=1)
def _trained() -> MVAE:
    torch.set_num_threads(1)
    return fit_mvae(TINY, train=TINY_TRAIN, split="fit", seed=0, data=_synthetic())


def _untrained(config: MVAEConfig = TINY, seed: int = 0) -> MVAE:
    return build_mvae(config, _synthetic(), total_steps=100, seed=seed)


# ---------------------------------------------------------------------------- pure functions
@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.0), (19, 0.0), (20, 0.0), (25, 0.25), (30, 0.5), (39, 0.95), (40, 1.0), (1000, 1.0)],
)
def test_sampling_probability_phases(step: int, expected: float) -> None:
    assert sampling_probability(step, teacher_steps=20, ramp_steps=20) == pytest.approx(expected)


def test_sampling_probability_without_ramp_jumps_to_one() -> None:
    assert sampling_probability(9, teacher_steps=10, ramp_steps=0) == 0.0
    assert sampling_probability(10, teacher_steps=10, ramp_steps=0) == 1.0


def test_model_phase_follows_its_step_counter() -> None:
    """Paper fractions 20/140 and 20/140 of 140 steps: teacher until 20, ramp until 40."""
    model = build_mvae(TINY, _synthetic(), total_steps=140, seed=0)
    for steps, expected in [(0, 0.0), (20, 0.0), (30, 0.5), (40, 1.0)]:
        model.steps_taken.fill_(steps)
        assert model.phase_probability() == pytest.approx(expected)


def test_training_loss_counts_steps_eval_loss_does_not() -> None:
    model = _untrained()
    data = _synthetic()
    model.train()
    for _ in range(3):
        model.loss(data.x_train[:8], data.y_train[:8]).backward()
    model.eval()
    with torch.no_grad():
        a = model.loss(data.x_val, data.y_val)
        b = model.loss(data.x_val, data.y_val)
    assert int(model.steps_taken) == 3
    assert float(a) == float(b)  # eval: z = mu, whole window, always fed back


def test_mixture_linear_one_expert_example() -> None:
    out = mixture_linear(
        torch.tensor([[3.0]]), torch.tensor([[1.0]]), torch.tensor([[[2.0]]]), torch.tensor([[1.0]])
    )
    assert out.tolist() == [[7.0]]


def test_mixture_linear_equals_blending_the_parameters() -> None:
    """Brute force: per sample, blend the expert matrices and biases, then apply them."""
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(5, 7, generator=g), torch.randn(3, 7, 4, generator=g), torch.randn(3, 4)
    c = torch.softmax(torch.randn(5, 3, generator=g), -1)
    ref = torch.stack([x[i] @ torch.einsum("e,eio->io", c[i], w) + c[i] @ b for i in range(len(x))])
    torch.testing.assert_close(mixture_linear(x, c, w, b), ref)


def test_gate_weights_are_a_convex_blend() -> None:
    model = _untrained(PRESETS["default"])
    g = torch.Generator().manual_seed(1)
    history = torch.randn(9, 1, D, generator=g)
    z = torch.randn(9, model.config.latent, generator=g)
    w = model.gate_weights(history, z, torch.arange(9) % 3)
    assert w.shape == (9, 6)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(9))


def test_start_bank_takes_real_first_frames_per_label() -> None:
    x = np.arange(6 * 4 * 2, dtype=np.float32).reshape(6, 4, 2)
    y = np.array([0, 0, 0, 1, 1, 2])
    frames, labels = start_bank(x, y, frames=2, per_label=2, rng=np.random.default_rng(0))
    assert frames.shape == (5, 2, 2) and labels.tolist() == [0, 0, 1, 1, 2]
    for f, label in zip(frames, labels, strict=True):
        assert any(np.array_equal(f, x[i, :2]) for i in np.flatnonzero(y == label))


# ---------------------------------------------------------------------------- training
def test_fixed_step_training_lowers_the_loss() -> None:
    data = _synthetic()
    before = build_mvae(TINY, data, total_steps=TINY_TRAIN.steps, seed=0)
    after = _trained()
    with torch.no_grad():
        start = float(before.eval().loss(data.x_train, data.y_train))
        end = float(after.loss(data.x_train, data.y_train))
    assert end < 0.5 * start
    assert int(after.steps_taken) == TINY_TRAIN.steps


def test_seeded_training_is_deterministic() -> None:
    a = fit_mvae(TINY, train=dataclasses.replace(TINY_TRAIN, steps=5), seed=3, data=_synthetic())
    b = fit_mvae(TINY, train=dataclasses.replace(TINY_TRAIN, steps=5), seed=3, data=_synthetic())
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(ta, tb, msg=name)


# ---------------------------------------------------------------------------- sampling
def test_step_shapes_and_determinism() -> None:
    model = _trained()
    g = torch.Generator().manual_seed(0)
    prev = _synthetic().x_train[:4, 0]
    z = torch.randn(4, model.config.latent, generator=g)
    a = model.step(prev, z, ["wave"])
    b = model.step(prev, z, torch.tensor([1, 1, 1, 1]))
    assert a.shape == (4, D) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, model.step(prev, z, ["still"]))  # the label matters


def test_step_rejects_wrong_shapes() -> None:
    model = _trained()
    with pytest.raises(MpgymError, match="prev must be"):
        model.step(torch.zeros(2, D - 1), torch.zeros(2, model.config.latent), ["wave"])
    with pytest.raises(MpgymError, match="z must be"):
        model.step(torch.zeros(2, D), torch.zeros(3, model.config.latent), ["wave"])


def test_generate_shapes_labels_and_generator() -> None:
    model = _trained()
    threads = torch.get_num_threads()
    x = model.generate(4, 0.5, generator=torch.Generator().manual_seed(0))
    assert torch.get_num_threads() == threads  # rollout runs on one thread, then restores
    y = model.generate(4, 0.5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, round(0.5 * FPS), D) and x.dtype == np.float32
    np.testing.assert_array_equal(x, y)
    w = model.generate_windows(["wave", "still"], generator=torch.Generator().manual_seed(0))
    assert w.shape == (2, WINDOW, D)


def test_generate_windows_are_the_tail_after_the_burn_in() -> None:
    model = _trained()
    burn = model.config.window_burn_in
    w = model.generate_windows(["still", "wave"], generator=torch.Generator().manual_seed(2))
    full = model.generate(
        2,
        (burn + WINDOW) / FPS,
        labels=["still", "wave"],
        generator=torch.Generator().manual_seed(2),
    )
    np.testing.assert_array_equal(w, full[:, burn:])


def test_rollout_starts_from_a_bank_frame_of_the_label() -> None:
    model = _trained()
    y = torch.tensor([2, 2, 0])
    start = model.start_for(y, torch.Generator().manual_seed(0))
    for s, label in zip(start, y.tolist(), strict=True):
        rows = model.start_frames[model.start_labels == label]
        assert any(torch.equal(s, r) for r in rows)


# ---------------------------------------------------------------------------- files
def test_save_load_round_trip(tmp_path) -> None:
    model = _trained()
    path = model.save(tmp_path / "mvae.safetensors")
    back = MVAE.load(path)
    assert back.config == model.config and back.label_names == model.label_names
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    np.testing.assert_array_equal(
        back.generate(2, 1.0, labels=["wave"], generator=torch.Generator().manual_seed(5)),
        model.generate(2, 1.0, labels=["wave"], generator=torch.Generator().manual_seed(5)),
    )


def test_fit_with_a_run_dir_leaves_a_loadable_checkpoint(tmp_path) -> None:
    from mpgym import RunDir

    run = RunDir(tmp_path / "run")
    train = dataclasses.replace(TINY_TRAIN, steps=4, eval_every=2)
    model = fit_mvae(TINY, train=train, seed=1, run=run, data=_synthetic())
    back = MVAE.load(run.file("checkpoint.safetensors"))
    assert back.label_names == LABELS and int(back.steps_taken) == 4
    torch.testing.assert_close(back.state_dict()["decoder.weights.0"], model.decoder.weights[0])
    assert run.file("metrics.csv").is_file()


def test_load_refuses_mismatched_tensors(tmp_path) -> None:
    from mpgym import save_checkpoint

    model = _trained()
    state = dict(model.state_dict())
    state["encoder.fc1.weight"] = state["encoder.fc1.weight"][:, :-1]
    path = save_checkpoint(
        tmp_path / "bad.safetensors",
        state,
        kind="mvae",
        config=model.config,
        meta={"label_names": list(LABELS)},
    )
    with pytest.raises(MpgymError, match="encoder.fc1.weight"):
        MVAE.load(path)


def test_load_refuses_other_kinds_and_missing_labels(tmp_path) -> None:
    from mpgym import save_checkpoint

    model = _trained()
    other = save_checkpoint(tmp_path / "o.safetensors", model.state_dict(), kind="mdm")
    with pytest.raises(MpgymError, match="mvae"):
        MVAE.load(other)
    bare = save_checkpoint(
        tmp_path / "b.safetensors", model.state_dict(), kind="mvae", config=model.config
    )
    with pytest.raises(MpgymError, match="label_names"):
        MVAE.load(bare)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.generate(2, 1.0, labels=["dance"]),
        lambda m: m.generate_windows(["wave", "jump"]),
        lambda m: m.step(torch.zeros(1, D), torch.zeros(1, m.config.latent), ["nope"]),
        lambda m: m.step(torch.zeros(1, D), torch.zeros(1, m.config.latent), torch.tensor([3])),
    ],
)
def test_unknown_labels_raise(call) -> None:
    with pytest.raises(MpgymError, match="circle"):
        call(_trained())


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.generate(0, 1.0),
        lambda m: m.generate(2, 0.0),
        lambda m: m.generate(2, float("nan")),
        lambda m: m.generate(3, 1.0, labels=["wave", "still"]),
    ],
)
def test_bad_generate_arguments_raise(call) -> None:
    with pytest.raises(MpgymError):
        call(_trained())


@pytest.mark.parametrize(
    "change",
    [{"latent": 0}, {"beta": -1.0}, {"teacher_fraction": 0.8, "ramp_fraction": 0.5}, {"dim": 3}],
)
def test_bad_configs_raise(change) -> None:
    with pytest.raises(MpgymError):
        check_config(dataclasses.replace(MVAEConfig(), **change))


def test_rollout_longer_than_the_window_raises() -> None:
    with pytest.raises(MpgymError, match="window"):
        check_config(MVAEConfig(condition_frames=4, rollout=9), window=WINDOW)
