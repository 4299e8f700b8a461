"""``mpgym sweep``: trial expansion and aggregation (pure), refusals before Ray, a real sweep."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from agents.common.sweep import (
    Trial,
    TrialResult,
    aggregate,
    config_keys,
    downsample,
    expand_trials,
    mean_band,
    parse_grid,
    parse_seeds,
    point_slug,
)
from mpgym.errors import MpgymError


def test_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("5") == [5]
    assert parse_seeds("0-1, 7,9-10") == [0, 1, 7, 9, 10]
    for bad, why in (("3-1", "empty"), ("-1", "not a seed"), ("a", "not a seed"),
                     ("", "not a seed"), ("0-2,1", "twice"), ("1.5", "not a seed")):
        with pytest.raises(MpgymError, match=why):
            parse_seeds(bad)


def test_grid_keys_and_values():
    from agents.deep.ppo import PPOConfig
    from agents.tabular.q_learning import QLearning

    keys = config_keys(QLearning.Config)
    assert {"gamma", "episodes", "epsilon.end", "alpha.start"} <= set(keys)
    assert not {"env_id", "seed", "env_kwargs", "epsilon"} & set(keys)
    grid = parse_grid(["gamma=0.9, 0.99", "epsilon.end=0.1", "q-init=1"], keys)
    assert grid == {"gamma": ["0.9", "0.99"], "epsilon.end": ["0.1"], "q_init": ["1"]}
    assert parse_grid(["lr=3e-4,1e-3"], config_keys(PPOConfig)) == {
        "learning_rate": ["3e-4", "1e-3"]}
    for bad, why in ((["bogus=1"], "unknown key 'bogus'; accepted keys: episodes"),
                     (["gamma"], "expected KEY=V1"), (["gamma=0.9,"], "no empty values"),
                     (["gamma=1", "gamma=2"], "twice"), (["gamma=1,1"], "repeats"),
                     (["seed=1,2"], "--seeds"), (["lr=1"], "unknown key 'lr'")):
        with pytest.raises(MpgymError, match=why):
            parse_grid(bad, keys)


def test_expand_trials():
    trials = expand_trials([0, 1], {"lr": ["1e-3", "3e-4"], "gamma": ["0.9"]})
    assert [(t.label, t.seed) for t in trials] == [
        ("lr=1e-3 gamma=0.9", 0), ("lr=1e-3 gamma=0.9", 1),
        ("lr=3e-4 gamma=0.9", 0), ("lr=3e-4 gamma=0.9", 1)]
    assert expand_trials([3], {}) == [Trial((), 3)]
    assert point_slug((("hidden", "64 64"), ("lr", "1e-3"))) == "hidden=64_64_lr=1e-3"


def _result(lr: str, seed: int, ret: float, error: str | None = None) -> TrialResult:
    return TrialResult(Trial((("lr", lr),), seed), ret, ([1.0, 2.0], [ret, ret]), error)


def test_aggregate_exact_values():
    results = [_result("a", 1, 500.0), _result("a", 0, 300.0), _result("a", 2, 475.0),
               _result("b", 0, 10.0), _result("b", 1, math.nan, "boom")]
    rows = [s.row() for s in aggregate(results, threshold=475.0)]
    assert rows[0] == {"point": "lr=a", "seeds": 3, "failed": 0, "mean": 425.0,
                       "std": pytest.approx(np.std([300, 500, 475])), "min": 300.0,
                       "max": 500.0, "solved": "2/3"}
    assert rows[1]["seeds"] == 1 and rows[1]["failed"] == 1 and rows[1]["mean"] == 10.0
    assert rows[1]["std"] == 0.0 and rows[1]["solved"] == "0/1"
    summaries = aggregate(results, threshold=None)
    assert summaries[0].seeds == [0, 1, 2] and summaries[0].returns == [300.0, 500.0, 475.0]
    assert summaries[0].row()["solved"] == "n/a"
    only_failed = aggregate([_result("c", 0, math.nan, "x")], 1.0)[0].row()
    assert only_failed["seeds"] == 0 and only_failed["mean"] is None


def test_mean_band_and_downsample():
    x, mean, lo, hi = mean_band([([0, 10], [0, 10]), ([0, 5, 10], [2, 7, 12])], n_points=3,
                                smooth=1)
    np.testing.assert_allclose(x, [0, 5, 10])
    np.testing.assert_allclose(mean, [1, 6, 11])
    np.testing.assert_allclose(hi - mean, [1, 1, 1])
    np.testing.assert_allclose(mean - lo, [1, 1, 1])
    x, *_ = mean_band([([0, 4], [0, 0]), ([2, 8], [1, 1])], n_points=3, smooth=1)
    np.testing.assert_allclose(x, [2, 3, 4])  # the range both cover
    assert mean_band([((), ())]) is None
    xs, ys = downsample(list(range(10)), list(range(10)), max_points=4)
    assert xs == [0, 3, 6, 9] and ys == xs


def test_write_summary_from_hand_made_results(tmp_path):
    from mpgym.cli.sweep import SweepPlan, write_summary

    results = [_result("a", 0, 1.0), _result("a", 1, 0.0), _result("b", 0, math.nan, "boom")]
    plan = SweepPlan(algo="q-learning", env_id="FrozenLake-v1",
                     trials=[r.trial for r in results], argvs=[[]] * 3, out=tmp_path,
                     threshold=0.7, x_label="episode")
    data = write_summary(plan, results)
    assert data["rows"][0]["solved"] == "1/2" and data["rows"][1]["failed"] == 1
    assert json.loads((tmp_path / "sweep.json").read_text())["rows"] == data["rows"]
    text = (tmp_path / "sweep.md").read_text()
    assert "| lr=a | 2 | 0 | 0.5 |" in text and "lr=b seed 0: boom" in text
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_a_trial_trains_exactly_as_mpgym_train(tmp_path):
    from mpgym.cli.sweep import plan_sweep, run_trial

    plan, engine = plan_sweep(["q-learning", "--seeds", "3", "--grid", "epsilon.end=0.2",
                               "--grid", "gamma=0.5", "--episodes", "20", "--eval-episodes", "2",
                               "--num-cpus", "2", "--out", str(tmp_path)])
    assert engine == {"num_cpus": 2, "address": None, "storage": None}
    assert plan.threshold == 0.7 and plan.x_label == "episode"
    report = run_trial(plan.argvs[0])  # the body of the Ray trainable
    run = tmp_path / "runs" / "epsilon.end=0.2_gamma=0.5" / "q-learning-FrozenLake-v1-s3"
    assert report["run_dir"] == str(run)
    config = json.loads((run / "config.json").read_text())
    assert (config["seed"], config["gamma"], config["episodes"]) == (3, 0.5, 20)
    assert config["epsilon"]["end"] == 0.2 and config["algo"] == "q-learning"
    assert report["final_return"] == json.loads((run / "eval.json").read_text())["mean_return"]
    assert report["curve_x"] == list(range(1, 21)) and len(report["curve_y"]) == 20


@pytest.mark.parametrize("argv, why", [
    (["q-learning", "--grid", "bogus=1,2"], "unknown key 'bogus'"),
    (["q-learning", "--seeds", "4-2"], "empty"),
    (["q-learning", "--seed", "3"], "--seeds"),
    (["q-learning", "--num-cpus", "0"], "--num-cpus"),
    (["q-learning", "--episodes", "0"], "--episodes"),
    (["q-learning", "--env", "NoSuchEnv-v0"], "unknown environment"),
    (["q-learning", "--env", "CartPole-v1"], "Discrete"),
    (["nope"], "unknown algorithm"),
])
def test_bad_input_is_refused_before_ray_starts(argv, why, tmp_path, capsys, monkeypatch):
    import mpgym.cli.sweep as sweep_cli
    from mpgym.cli import main

    def no_ray(**_):  # pragma: no cover - reached only if the check came too late
        raise AssertionError("Ray started")

    monkeypatch.setattr(sweep_cli, "start_ray", no_ray)
    assert main(["sweep", "train", *argv, "--out", str(tmp_path / "s")]) == 2
    assert why in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_without_ray_one_error_says_how_to_install(monkeypatch, tmp_path):
    from mpgym.cli.sweep import sweep

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MpgymError, match=r"pip install 'mpgym\[scale\]'"):
        sweep(["q-learning", "--episodes", "5", "--out", str(tmp_path)])
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # starting Ray and its workers takes 30-40 s on a busy 2-core machine
def test_a_tiny_ray_sweep_writes_runs_and_the_table(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import ray

    from mpgym.cli.sweep import sweep

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    try:
        plan, data = sweep(["q-learning", "--env", "FrozenLake-v1", "--seeds", "0-1",
                            "--episodes", "30", "--eval-episodes", "3", "--num-cpus", "2",
                            "--out", str(tmp_path)], verbose=0)
    finally:
        ray.shutdown()
    assert [t["error"] for t in data["trials"]] == [None, None]
    assert data["rows"][0]["seeds"] == 2 and data["reward_threshold"] == 0.7
    for argv in plan.argvs:
        run = argv[argv.index("--out") + 1]
        assert json.loads((tmp_path / run / "config.json").read_text())["algo"] == "q-learning"
        assert (tmp_path / run / "eval.json").exists()
    assert (tmp_path / "sweep.md").exists() and (tmp_path / "curves.png").exists()


def test_an_address_nothing_listens_on_is_refused_at_once():
    import socket

    from mpgym.cli.sweep import check_reachable

    with socket.socket() as server:  # a port that answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        check_reachable(f"ray://127.0.0.1:{port}")
        check_reachable(f"127.0.0.1:{port}")
    with pytest.raises(MpgymError, match="no Ray cluster answers at 'ray://127.0.0.1:"):
        check_reachable(f"ray://127.0.0.1:{port}")  # closed now
    check_reachable("auto")  # left to Ray


# -- generative and NeRF sweeps ------------------------------------------------------------------
GEN_TINY = ["--data", "digits", "--train.steps", "6", "--train.eval-every", "3",
            "--train.batch-size", "16", "--model.hidden", "16"]
NERF_TINY = ["--preset", "tiny", "--steps", "2", "--max-seconds", "5", "--eval-views", "1",
             "--threads", "1"]


def test_gen_grid_keys_and_trial_expansion(tmp_path):
    from generative import model_classes
    from mpgym.cli.sweep_models import gen_grid_keys, gen_trial_argv

    keys, aliases = gen_grid_keys(model_classes("made")[1])
    assert {"model.hidden", "train.lr", "train.steps"} <= set(keys)
    assert not {"train.seed", "model.seed"} & set(keys)
    assert aliases["lr"] == "train.lr" and aliases["hidden"] == "model.hidden"
    grid = parse_grid(["lr=1e-3,3e-4", "model.hidden=32,64"], keys, aliases)
    assert grid == {"train.lr": ["1e-3", "3e-4"], "model.hidden": ["32", "64"]}
    trials = expand_trials([0, 1], grid)
    assert len(trials) == 8 and trials[1].label == "train.lr=1e-3 model.hidden=32"
    assert gen_trial_argv("made", ["--data", "digits"], trials[1], tmp_path) == [
        "made", "--data", "digits", "--train.seed", "1", "--train.lr", "1e-3",
        "--model.hidden", "32", "--out", str(tmp_path / "runs" / "train.lr=1e-3_model.hidden=32"),
        "--name", "made-s1"]


def test_nerf_grid_keys_and_trial_expansion(tmp_path):
    from mpgym.cli.sweep_models import nerf_run_dir, nerf_trial_argv
    from neural3d.nerf.presets import NerfConfig

    keys = config_keys(NerfConfig)
    assert {"lr", "steps", "batch_rays"} <= set(keys) and "seed" not in keys
    trials = expand_trials([0, 1], parse_grid(["lr=1e-2,3e-3"], keys))
    assert [(t.label, t.seed) for t in trials] == [("lr=1e-2", 0), ("lr=1e-2", 1),
                                                   ("lr=3e-3", 0), ("lr=3e-3", 1)]
    assert nerf_trial_argv("d", ["--preset", "tiny"], trials[3]) == [
        "d", "--preset", "tiny", "--seed", "1", "--lr", "3e-3"]
    assert nerf_run_dir(tmp_path, trials[3]) == tmp_path / "runs" / "lr=3e-3" / "nerf-s1"


@pytest.fixture
def capture(tmp_path):
    """A NeRF-synthetic dataset of the built-in ball: four 16x16 training views, one test."""
    from neural3d.data.multiview import RenderDatasetConfig, render_dataset

    return render_dataset(RenderDatasetConfig(source="ball", out=tmp_path / "capture", views=4,
                                              val_views=1, test_views=1, resolution=16))


@pytest.mark.parametrize("argv, why", [
    (["gen", "train", "made", "--grid", "bogus=1,2"],
     "unknown key 'bogus'; accepted keys: model.hidden"),
    (["gen", "train", "made", "--train.seed", "3"], "--seeds"),
    (["gen", "train", "made", "--train.steps", "0"], "--train.steps"),
    (["gen", "train", "made", "--grid", "lr=1e-3,-1"], "--train.lr"),
    (["gen", "train", "nope"], "unknown model 'nope'"),
    (["gen", "train", "realnvp2d", "--data", "digits"], "realnvp2d models 2D points"),
    (["gen", "sample", "made"], "accepted: train, gen train, nerf train"),
    (["nerf", "train", "CAPTURE", "--grid", "bogus=1"],
     "unknown key 'bogus'; accepted keys: field, num_levels"),
    (["nerf", "train", "CAPTURE", "--seed", "1"], "--seeds"),
    (["nerf", "train", "CAPTURE", "--grid", "steps=0"], "--steps"),
    (["nerf", "train", "nowhere"], "no dataset at 'nowhere'"),
])
def test_bad_gen_and_nerf_sweeps_are_refused_before_ray_starts(argv, why, tmp_path, capsys,
                                                               monkeypatch, request):
    import mpgym.cli.sweep as sweep_cli
    from mpgym.cli import main

    def no_ray(**_):  # pragma: no cover - reached only if the check came too late
        raise AssertionError("Ray started")

    monkeypatch.setattr(sweep_cli, "start_ray", no_ray)
    if "CAPTURE" in argv:
        data = str(request.getfixturevalue("capture"))
        argv = [data if a == "CAPTURE" else a for a in argv]
    assert main(["sweep", *argv, "--out", str(tmp_path / "s")]) == 2
    assert why in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_gen_trial_trains_exactly_as_mpgym_gen_train(tmp_path):
    from mpgym.cli.sweep import write_summary
    from mpgym.cli.sweep_models import VAL_LOSS, plan_gen_sweep, run_gen_trial

    plan, _ = plan_gen_sweep(["made", *GEN_TINY, "--seeds", "2", "--grid", "lr=1e-3",
                              "--out", str(tmp_path)])
    assert (plan.kind, plan.metric, plan.env_id, plan.threshold) == ("gen", VAL_LOSS, "digits",
                                                                     None)
    report = run_gen_trial(plan.argvs[0])  # the body of the Ray trainable
    run = tmp_path / "runs" / "train.lr=1e-3" / "made-s2"
    assert report["run_dir"] == str(run)
    config = json.loads((run / "config.json").read_text())
    assert (config["train"]["seed"], config["train"]["lr"], config["data"]) == (2, 1e-3, "digits")
    assert report["curve_x"] == [3.0, 6.0] and report["val_loss"] == min(report["curve_y"])
    data = write_summary(plan, [sweep_trial_result(plan, report)])
    assert data["metric"] == {"name": "best validation loss", "key": "val_loss",
                              "direction": "lower is better"}
    assert data["rows"][0]["solved"] == "n/a" and data["trials"][0]["val_loss"] > 0
    assert "Best validation loss over seeds (lower is better); solved: n/a." in (
        tmp_path / "sweep.md").read_text()


def sweep_trial_result(plan, report):
    from mpgym.cli.sweep import trial_result

    return trial_result(plan.trials[0], report, None, key=plan.metric.key)


def test_a_nerf_trial_trains_exactly_as_mpgym_nerf_train(tmp_path, capture):
    import torch

    from mpgym.cli.sweep_models import TEST_PSNR, plan_nerf_sweep, run_nerf_trial

    torch.set_num_threads(1)
    plan, _ = plan_nerf_sweep([str(capture), *NERF_TINY, "--seeds", "0", "--grid",
                               "lr=1e-2,3e-3", "--out", str(tmp_path / "s")])
    assert (plan.kind, plan.metric, plan.env_id, len(plan.trials)) == ("nerf", TEST_PSNR,
                                                                      "capture", 2)
    report = run_nerf_trial(plan.argvs[1])
    run = tmp_path / "s" / "runs" / "lr=3e-3" / "nerf-s0"
    assert report["run_dir"] == str(run)
    assert report["test_psnr"] == json.loads((run / "results.json").read_text())["psnr"]
    assert json.loads((run / "config.json").read_text())["lr"] == 3e-3


@pytest.mark.slow  # starting Ray and its workers takes 30-40 s on a busy 2-core machine
def test_a_tiny_ray_gen_sweep_writes_runs_and_the_table(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import ray

    from mpgym.cli.sweep import sweep

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    try:
        plan, data = sweep(["made", *GEN_TINY, "--seeds", "0-1", "--grid", "lr=1e-3,3e-4",
                            "--num-cpus", "2", "--out", str(tmp_path)], verbose=0, kind="gen")
    finally:
        ray.shutdown()
    assert [t["error"] for t in data["trials"]] == [None] * 4
    assert [r["point"] for r in data["rows"]] == ["train.lr=1e-3", "train.lr=3e-4"]
    assert all(r["seeds"] == 2 and r["solved"] == "n/a" for r in data["rows"])
    assert data["metric"]["direction"] == "lower is better"
    for argv in plan.argvs:
        run = tmp_path / "runs" / argv[argv.index("--out") + 1] / argv[argv.index("--name") + 1]
        assert json.loads((run / "config.json").read_text())["kind"] == "made"
    assert (tmp_path / "sweep.md").exists() and (tmp_path / "curves.png").exists()
