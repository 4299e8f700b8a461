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
    monkeypatch.setattr(bench, "_episode_gif", lambda *args, **kwargs: None)
    row = bench.train_part(1, 1.0, None, True, motion="run")
    assert (row["run"], row["motion"], row["eval_seed"]) == ("run-s1", "run", bench.EVAL_SEED)
    out = tmp_path / "policies" / "run-s1-quick"
    assert PPO.load(out).env_kwargs["motion"] == "run"
    assert json.loads((out / "eval.json").read_text())["mpjpe_mm"] == row["mpjpe_mm"]
    rep = bench.report_part(True)
    assert rep["goals"] == [] and rep["missing_seeds"] == [1, 2, 3]
    assert [r["run"] for r in rep["rows"]] == ["run-s1"]


def test_a_motion_that_does_not_loop_is_evaluated_from_its_first_frame(bench, tmp_path,
                                                                       monkeypatch):
    """From a random phase, an episode of a non-looping motion starting near its end would count
    as surviving after a few steps; evaluations start at frame 0, and so does the exported
    policy's env, so that ``mpgym eval`` reproduces the figures."""
    import json

    import gymnasium as gym

    from agents.common import evaluate_policy
    from agents.deep.ppo import PPO

    walk = {"motion": "walk", "config": {"action_mode": "residual"}}
    assert bench.evaluation_setting(walk) == (walk, True)
    kick, loops = bench.evaluation_setting({**walk, "motion": "kick"})
    assert not loops
    assert kick["config"] == {"action_mode": "residual", "reference_state_init": False}

    monkeypatch.setattr(bench, "TRAIN_RUNS", tmp_path / "runs")
    monkeypatch.setattr(bench, "POLICIES", tmp_path / "policies")
    row = bench.train_part(1, 1.0, None, True, motion="kick")
    assert row["episodes"] == 1  # deterministic policy and physics: every start is the same
    out = tmp_path / "policies" / "kick-s1-quick"
    agent = PPO.load(out)
    assert agent.env_kwargs == kick
    env = gym.make(bench.ENV_ID, **agent.env_kwargs)
    assert {env.reset(seed=bench.EVAL_SEED + i)[1]["frame"] for i in range(5)} == {0}
    n_frames = env.unwrapped.ref.n_frames
    env.close()
    again = evaluate_policy(agent, bench.ENV_ID, 1, seed=bench.EVAL_SEED,
                            env_kwargs=agent.env_kwargs)
    assert 1000.0 * float(again.metrics["mpjpe"].mean()) == pytest.approx(row["mpjpe_mm"])
    assert row["mean_length"] <= n_frames - 1
    assert json.loads((out / "eval.json").read_text())["survival_10s"] == row["survival_10s"]
    # the training run's own checkpoint keeps its reference-state starts
    assert "reference_state_init" not in PPO.load(tmp_path / "runs" / "kick-s1-quick"
                                                  ).env_kwargs["config"]


def test_select_best_keeps_the_best_validation_check_and_exports_it(bench, tmp_path,
                                                                   monkeypatch):
    """``select="best"``: checks on the validation starts, the best kept in ``best/`` and
    exported; a run is continued only under the selection it started with."""
    import json

    from agents.deep.ppo import PPO
    from mpgym.errors import MpgymError

    monkeypatch.setattr(bench, "TRAIN_RUNS", tmp_path / "runs")
    monkeypatch.setattr(bench, "POLICIES", tmp_path / "policies")
    validation = set(range(bench.VAL_SEED, bench.VAL_SEED + bench.VAL_EPISODES))
    for other in (bench.EVAL_SEED, bench.TUNE_EVAL_SEED):
        assert not validation & set(range(other, other + bench.EVAL_EPISODES))
    row = bench.train_part(1, 1.0, None, True, select="best")
    run = tmp_path / "runs" / "walk-s1-quick"
    progress = json.loads((run / "progress.json").read_text())
    assert progress["select"] == "best"
    assert {c["eval_seed"] for c in progress["chunks"]} == {bench.VAL_SEED}
    best = max(progress["chunks"], key=lambda c: (c["survival_10s"], -c["mpjpe_mm"]))
    assert progress["best"]["timesteps"] == row["selected_timesteps"]
    assert (progress["best"]["survival_10s"], progress["best"]["mpjpe_mm"]) == (
        best["survival_10s"], best["mpjpe_mm"])
    assert row["select"] == "best" and row["eval_seed"] == bench.EVAL_SEED
    kept, exported = PPO.load(run / "best"), PPO.load(tmp_path / "policies" / "walk-s1-quick")
    for name, tensor in kept.policy.state_dict().items():
        assert (exported.policy.state_dict()[name] == tensor).all(), name
    assert (exported.obs_rms.mean == kept.obs_rms.mean).all()  # its normalisation with it
    with pytest.raises(MpgymError, match="--select best"):
        bench.train_part(1, 1.0, None, True, select="last")
    with pytest.raises(MpgymError, match="select must be one of"):
        bench.train_part(1, 1.0, None, True, select="first")


def test_better_check_is_higher_survival_then_lower_error(bench):
    assert bench._better({"survival_10s": 0.2, "mpjpe_mm": 300.0}, None)
    best = {"survival_10s": 0.5, "mpjpe_mm": 90.0}
    assert bench._better({"survival_10s": 0.6, "mpjpe_mm": 200.0}, best)
    assert bench._better({"survival_10s": 0.5, "mpjpe_mm": 80.0}, best)
    assert not bench._better({"survival_10s": 0.5, "mpjpe_mm": 90.0}, best)
    assert not bench._better({"survival_10s": 0.4, "mpjpe_mm": 10.0}, best)


def test_a_motions_gif_is_redrawn_only_when_its_policy_is_newer(bench, tmp_path):
    import os

    from mpgym.errors import MpgymError

    policy = tmp_path / "run-s1"
    policy.mkdir()
    (policy / "eval.json").write_text("{}")  # no policy to load: drawing would fail
    gif = tmp_path / "imitation-run-s1.gif"
    gif.write_bytes(b"GIF89a")
    os.utime(policy / "eval.json", (1_000, 1_000))
    bench._episode_gif(policy, gif, seconds=1, reuse=True)  # newer than the policy: kept
    assert gif.read_bytes() == b"GIF89a"
    os.utime(gif, (500, 500))
    with pytest.raises(MpgymError, match="no checkpoint"):  # older: drawn again (no policy here)
        bench._episode_gif(policy, gif, seconds=1, reuse=True)
    os.utime(gif, (2_000, 2_000))
    with pytest.raises(MpgymError, match="no checkpoint"):  # without reuse: always drawn
        bench._episode_gif(policy, gif, seconds=1)
