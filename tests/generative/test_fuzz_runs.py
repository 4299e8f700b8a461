"""Fuzz the run loader behind ``mpgym gen sample RUN`` and ``mpgym gen eval RUN``.

Seeds are real run directories (``config.json`` + ``checkpoint.safetensors``) of tiny models
trained for a few steps; every mutated run must load or be refused with an ``MpgymError``.
"""

import re

import pytest

from mpgym.cli import main
from mpgym.fuzz import fuzz_cases, fuzz_loader

RUNS = {
    # tuple, Literal, bool, int and float fields; mask buffers in the state dict
    "made": ["--model.hidden", "12", "12", "--model.num-masks", "2", "--model.order", "random"],
    # a schedule sized by T (no weight depends on it) and the reverse-process variance
    "ddpm": ["--model.T", "10", "--model.channels", "8", "--model.blocks", "1"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    seeds = {}
    for name, flags in RUNS.items():
        argv = ["gen", "train", name, *flags, "--train.steps", "3", "--train.eval-every", "3"]
        assert main([*argv, "--train.batch-size", "8", "--out", str(out)]) == 0
        run = out / f"{name}-digits"
        seeds[name] = {f: (run / f).read_bytes() for f in ("config.json", "checkpoint.safetensors")}
    return seeds


@pytest.mark.parametrize("name, cases", [("made", 200), ("ddpm", 100)])
def test_fuzzed_run_directories_load_or_are_refused_with_one_message(runs, name, cases):
    report = fuzz_loader("generative:load_run", runs[name], cases=fuzz_cases(cases), entry=".")
    report.assert_ok()
    assert report.cases == fuzz_cases(cases) and report.refused > 0


def test_the_seed_runs_load(runs, tmp_path):
    from generative import load_run

    for name, files in runs.items():
        run = tmp_path / name
        run.mkdir()
        for f, data in files.items():
            (run / f).write_bytes(data)
        loaded = load_run(run)
        assert loaded.name == name and loaded.data == "digits"
        assert not loaded.model.training


def _saved(tmp_path, name, config, state):
    from mpgym import save_checkpoint

    path = tmp_path / f"{name}.safetensors"
    save_checkpoint(path, state, kind=name, config=config)
    return path


@pytest.mark.parametrize(
    "change, words",
    [
        ({"hidden": [12.5, 12]}, "hidden must be a list of at most 64 values, each a whole number"),
        ({"hidden": "12"}, "hidden must be a list"),
        ({"num_masks": True}, "num_masks must be a whole number"),
        ({"order": "backwards"}, "order must be one of 'natural', 'random'"),
        ({"dropout": None}, "dropout must be a finite number"),
        ({"hidden": [2**40, 12]}, "magnitude <= 2^24"),
        ({"hidden": [-5, 12]}, "does not build a model"),
        ({"hidden": [13, 12]}, "the config describes"),  # weights of 12 units, config says 13
        ({"frobnicate": 1}, "unknown keys frobnicate"),
    ],
)
def test_checkpoint_configs_that_do_not_fit_are_refused(tmp_path, change, words):
    from dataclasses import asdict

    import generative
    from generative.autoregressive import MADEConfig
    from mpgym.errors import MpgymError

    cfg = MADEConfig(hidden=(12, 12), num_masks=2, dim=64)
    state = generative.build_model("made", cfg).state_dict()
    path = _saved(tmp_path, "made", {**asdict(cfg), **change}, state)
    with pytest.raises(MpgymError, match=re.escape(words)):
        generative.load_model(path)


@pytest.mark.parametrize("damage", ["nan", "dtype", "shape", "missing"])
def test_checkpoint_weights_that_do_not_fit_are_refused(tmp_path, damage):
    from dataclasses import asdict

    import torch

    import generative
    from generative.autoregressive import NADEConfig
    from mpgym.errors import MpgymError

    cfg = NADEConfig(hidden=8)
    state = dict(generative.build_model("nade", cfg).state_dict())
    if damage == "nan":
        state["c"] = torch.full_like(state["c"], float("nan"))
    elif damage == "dtype":
        state["c"] = state["c"].double()
    elif damage == "shape":
        state["c"] = torch.zeros(9)
    else:
        del state["b"]
    path = _saved(tmp_path, "nade", asdict(cfg), state)
    words = {"nan": "NaN", "dtype": "float64", "shape": "(9,)", "missing": "missing ['b']"}
    with pytest.raises(MpgymError, match=re.escape(words[damage])):
        generative.load_model(path)
