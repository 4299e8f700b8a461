"""benchmarks/imitation.py: a run is continued only with the settings it was trained with;
tuning runs are evaluated on their own starts."""

import dataclasses

import pytest

from agents.deep.ppo import PPO_PRESETS


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("imitation")


def test_config_changes_name_each_differing_field(bench):
    preset = PPO_PRESETS["imitate-walk"]
    assert bench.config_changes(preset, preset) == []
    earlier = dataclasses.replace(preset, desired_kl=None, seed=1)
    assert bench.config_changes(earlier, dataclasses.replace(preset, seed=1)) == [
        "desired_kl: None -> 0.02"]
    assert len(bench.config_changes(earlier, preset)) == 2  # the seed too


def test_only_report_seeds_with_the_preset_see_the_held_out_starts(bench):
    assert bench.evaluation_starts(1, {}) == bench.EVAL_SEED
    for seed, overrides in ((0, {}), (1, {"desired_kl": 0.01}), (7, {})):
        assert bench.evaluation_starts(seed, overrides) == bench.TUNE_EVAL_SEED
    held_out = set(range(bench.EVAL_SEED, bench.EVAL_SEED + bench.EVAL_EPISODES))
    tuning = set(range(bench.TUNE_EVAL_SEED, bench.TUNE_EVAL_SEED + bench.EVAL_EPISODES))
    assert not held_out & tuning


def test_a_motion_is_checked_before_training_and_names_its_run(bench, tmp_path):
    from mpgym.errors import MpgymError

    bench.check_motion("run")
    assert bench.motion_label("run") == "run"
    assert bench.motion_label("out/gen walk.v2.npz") == "gen_walk_v2"
    with pytest.raises(MpgymError, match="clip name"):
        bench.check_motion("moonwalk")
    with pytest.raises(MpgymError, match="no motion file"):
        bench.check_motion(str(tmp_path / "missing.npz"))
    with pytest.raises(SystemExit):
        bench.parse_args(["--part", "train", "--motion", "moonwalk"])


def test_another_motion_trains_evaluates_and_reports_beside_the_walk(bench, tmp_path,
                                                                     monkeypatch):
    import json

    from agents.deep.ppo import PPO

    monkeypatch.setattr(bench, "TRAIN_RUNS", tmp_path / "runs")
    monkeypatch.setattr(bench, "POLICIES", tmp_path / "policies")
    monkeypatch.setattr(bench, "_plot_curves", lambda quick: None)
    monkeypatch.setattr(bench, "_walk_gif", lambda seed, quick: None)
    row = bench.train_part(1, 1.0, None, True, motion="run")
    assert (row["run"], row["motion"], row["eval_seed"]) == ("run-s1", "run", bench.EVAL_SEED)
    out = tmp_path / "policies" / "run-s1-quick"
    assert PPO.load(out).env_kwargs["motion"] == "run"
    assert json.loads((out / "eval.json").read_text())["mpjpe_mm"] == row["mpjpe_mm"]
    rep = bench.report_part(True)
    assert rep["goals"] == [] and rep["missing_seeds"] == [1, 2, 3]
    assert [r["run"] for r in rep["rows"]] == ["run-s1"]
