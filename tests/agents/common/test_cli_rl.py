"""``mpgym envs / train / eval`` through the real dispatcher (mpgym.cli.main)."""

import json

import pytest

from mpgym.cli import main
from mpgym.cli.rl import run_name


def test_envs_lists_mpgym_and_toy_text(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    for env_id in ("mpgym/GridWorld-v0", "mpgym/GamblersProblem-v0", "FrozenLake-v1", "Taxi-v4"):
        assert env_id in out
    assert "CartPole-v1" not in out


def test_train_then_eval_a_tabular_run(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code = main(["train", "q-learning", "--env", "mpgym/CliffWalking-v0", "--episodes", "200",
                 "--gamma", "1", "--alpha.start", "0.5", "--alpha.kind", "constant",
                 "--epsilon.start", "0.1", "--epsilon.kind", "constant", "--out", str(out_dir)])
    assert code == 0
    for name in ("config.json", "metrics.csv", "learning_curve.png", "checkpoint.safetensors",
                 "eval.json"):
        assert (out_dir / name).exists(), name
    config = json.loads((out_dir / "config.json").read_text())
    assert config["algo"] == "q-learning" and config["env_id"] == "mpgym/CliffWalking-v0"
    assert config["alpha"]["start"] == 0.5
    assert json.loads((out_dir / "eval.json").read_text())["mean_return"] == -13.0
    capsys.readouterr()
    assert main(["eval", str(out_dir), "--episodes", "3", "--gif", str(tmp_path / "a.gif")]) == 0
    out = capsys.readouterr().out
    assert "return -13.000 +- 0.000" in out and (tmp_path / "a.gif").exists()


def test_train_with_preset_default_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "td0", "--preset", "random-walk", "--episodes", "5"]) == 0
    run = tmp_path / "runs" / "rl" / run_name("td0", "mpgym/RandomWalk-v0", 0)
    assert run.name == "td0-mpgym-RandomWalk-v0-s0" and (run / "checkpoint.safetensors").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "q-learn"], "unknown algorithm 'q-learn'; accepted:"),
    (["train", "sarsa", "--preset", "nope"], "unknown preset 'nope' for sarsa; accepted: "),
    (["train", "sarsa", "--env", "CartPole-v1", "--episodes", "1"], "needs Discrete"),
    (["train", "sarsa", "--env", "NoSuchEnv-v0"], "unknown environment id"),
    (["eval", "/no/such/run"], "no run directory at /no/such/run"),
    (["eval", "model.zip"], "needs --sb3-algo ALGO and --env ENV_ID"),
    (["eval", "model.zip", "--sb3-algo", "xyz", "--env", "CartPole-v1"], "unknown --sb3-algo"),
])
def test_bad_input_gives_one_clear_message(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_eval_rejects_directory_without_algo_and_corrupt_checkpoint(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"env_id": "FrozenLake-v1"}))
    assert main(["eval", str(tmp_path)]) == 2
    assert "has no 'algo'" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"env_id": "FrozenLake-v1",
                                                      "algo": "sarsa"}))
    (tmp_path / "checkpoint.safetensors").write_bytes(b"\x00garbage")
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a readable safetensors checkpoint" in capsys.readouterr().err


def test_eval_of_a_stable_baselines3_zip_matches_evaluate_policy(tmp_path, capsys):
    import gymnasium as gym
    from stable_baselines3 import DQN

    from agents.common import evaluate_policy

    model = DQN("MlpPolicy", "CartPole-v1", seed=0, device="cpu", buffer_size=1000)
    model.save(tmp_path / "dqn.zip")
    expected = evaluate_policy(model, "CartPole-v1", 3, seed=5)
    same = evaluate_policy(model, gym.make("CartPole-v1"), 3, seed=5)  # id or env: same episodes
    assert expected.returns.tolist() == same.returns.tolist()
    assert expected.returns.sum() == expected.lengths.sum()  # +1 per step
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "dqn.zip"), "--sb3-algo", "dqn", "--env", "CartPole-v1",
                 "--episodes", "3", "--seed", "5"]) == 0
    assert f"return {expected.mean_return:.3f}" in capsys.readouterr().out
