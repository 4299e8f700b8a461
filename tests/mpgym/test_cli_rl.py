"""``mpgym train`` / ``mpgym eval``: validation before work, staged runs, help, quiet output."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpgym.cli import main
from mpgym.cli.rl import parse_train_args

MPGYM = Path(sys.executable).with_name("mpgym")


def _quiet_env() -> dict[str, str]:
    """The environment of a fresh terminal without a display or sound settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SDL_") and k not in ("XDG_RUNTIME_DIR", "DISPLAY")}
    return dict(env, MPLBACKEND="Agg", OMP_NUM_THREADS="1")


@pytest.mark.parametrize("argv, message", [
    (["train", "dqn", "--env", "CartPole-v1", "--total-timesteps", "-5"],
     "--total-timesteps must be a whole number >= 1; got -5"),
    (["train", "ppo", "--total-timesteps", "0"], "--total-timesteps must be a whole number"),
    (["train", "sarsa", "--episodes", "0"], "--episodes must be a whole number >= 1; got 0"),
    (["train", "ppo", "--n-envs", "0"], "--n-envs must be a whole number >= 1"),
    (["train", "dqn", "--batch-size", "0"], "--batch-size must be"),
    (["train", "dqn", "--hidden", "64", "0"], "--hidden (each width) must be"),
    (["train", "q-learning", "--eval-episodes", "0"], "--eval-episodes must be"),
    (["train", "value-iteration", "--max-sweeps", "0"], "--max-sweeps must be"),
    (["eval", "runs/rl/x", "--episodes", "0"], "--episodes must be a whole number >= 1"),
    (["eval", "runs/rl/x", "--episodes", "-3"], "--episodes must be a whole number >= 1"),
    (["eval", "runs/rl/x", "--seed", "-1"], "--seed must be >= 0"),
])
def test_non_positive_budgets_are_refused_before_any_work(argv, message, tmp_path, monkeypatch,
                                                          capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no run directory, no config.json


@pytest.mark.parametrize("argv, message", [
    (["train", "sarsa", "--env", "CartPole-v1"], "needs Discrete"),
    (["train", "dqn", "--env", "NoSuchEnv-v0"], "Run 'mpgym envs' for the accepted ids"),
    (["train", "dqn", "--env", "Pendulum-v1"], "Discrete"),
])
def test_env_and_spaces_are_checked_before_anything_is_written(argv, message, tmp_path, capsys):
    out = tmp_path / "deep" / "nested" / "run"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def test_a_run_of_another_kind_is_kept_unless_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "dqn", "--env", "CartPole-v1", "--total-timesteps", "200",
                 "--eval-episodes", "2", "--out", str(run)]) == 0
    config = _config(run)
    assert config["kind"] == "dqn" and config["algo"] == "dqn"
    checkpoint = (run / "checkpoint.safetensors").read_bytes()
    for name in ("config.json", "checkpoint.safetensors", "eval.json", "metrics.csv"):
        text = (run / name).read_bytes()
        assert b".partial-" not in text, name  # nothing persisted points at the staging dir
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    capsys.readouterr()

    assert main(["train", "ppo", "--env", "CartPole-v1", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "already holds a 'dqn' run" in err and "--overwrite" in err
    assert (run / "checkpoint.safetensors").read_bytes() == checkpoint

    assert main(["train", "q-learning", "--env", "FrozenLake-v1", "--episodes", "20",
                 "--eval-episodes", "2", "--out", str(run), "--overwrite"]) == 0
    assert _config(run)["kind"] == "q-learning"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    # The same algorithm again replaces its own run without --overwrite.
    assert main(["train", "q-learning", "--env", "FrozenLake-v1", "--episodes", "10",
                 "--eval-episodes", "2", "--out", str(run)]) == 0
    assert _config(run)["episodes"] == 10


def test_a_run_written_before_kind_existed_counts_as_its_algo(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"algo": "q-learning",
                                                 "env_id": "FrozenLake-v1"}))
    (run / "metrics.csv").write_text("episode,return\n1,0\n")
    assert main(["train", "q-learning", "--env", "FrozenLake-v1", "--episodes", "5",
                 "--eval-episodes", "1", "--out", str(run)]) == 0
    assert _config(run)["kind"] == "q-learning"


def test_train_help_describes_the_commands_own_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "sarsa", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in ("--preset", "Start from a named config", "frozenlake, cliff, windy",
                 "--out DIR", "Run directory", "--overwrite", "Replace whatever --out holds",
                 "--env STR, --env-id STR", "'mpgym envs' lists", "--eval-episodes"):
        assert text in out, text
    assert main(["train", "--help"]) == 0
    assert "[--overwrite]" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--trust-pickle" in out and "runs any code they hold" in out


@pytest.mark.parametrize("flag", [["--env", "Acrobot-v1"], ["--env=Acrobot-v1"],
                                  ["--env-id", "Acrobot-v1"]])
def test_env_and_env_id_are_the_same_flag(flag):
    req = parse_train_args(["dqn", *flag, "--total-timesteps", "7", "--out", "x"])
    assert req.config.env_id == "Acrobot-v1" and req.config.total_timesteps == 7
    assert req.out == Path("x") and req.overwrite is False and req.eval_episodes == 20


def test_preset_then_flags():
    req = parse_train_args(["sarsa", "--preset", "cliff", "--episodes", "3"])
    assert req.config.env_id == "CliffWalking-v1" and req.config.episodes == 3
    assert req.config.gamma == 1.0


def test_value_iteration_trains_through_the_cli(tmp_path, capsys):
    run = tmp_path / "vi"
    assert main(["train", "value-iteration", "--env", "FrozenLake-v1", "--out", str(run)]) == 0
    summary = json.loads((run / "eval.json").read_text())
    # The optimal policy of slippery FrozenLake reaches the goal ~74% of the time.
    assert 0.5 <= summary["success_rate"] <= 1.0
    assert summary["success_rule"] == "terminated with reward > 0 (the goal)"
    assert _config(run)["kind"] == "value-iteration"
    out = capsys.readouterr().out
    assert "success rate" in out and "(terminated with reward > 0 (the goal))" in out


def test_eval_refuses_other_files_and_gif_paths(tmp_path, capsys):
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04junk")
    assert main(["eval", str(tmp_path / "model.pkl")]) == 2
    assert "neither a run directory" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--gif", str(tmp_path / "a.png")]) == 2
    assert "--gif must name a .gif file" in capsys.readouterr().err


def test_readme_eval_lines_as_written_with_a_quiet_gif(tmp_path, monkeypatch, capsys):
    """README: ``mpgym eval runs/rl/dqn-CartPole-v1-s0 --episodes 20 --gif cartpole.gif`` and
    ``mpgym eval model.zip --sb3-algo dqn --env CartPole-v1``; the GIF line prints no
    "error: XDG_RUNTIME_DIR ..." (pygame looking for a display) nor ALSA lines."""
    import torch
    from stable_baselines3 import DQN

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "dqn", "--env", "CartPole-v1", "--total-timesteps", "300",
                 "--eval-episodes", "2"]) == 0
    assert (tmp_path / "runs/rl/dqn-CartPole-v1-s0/checkpoint.safetensors").exists()
    line = "eval runs/rl/dqn-CartPole-v1-s0 --episodes 20 --gif cartpole.gif".split()
    out = subprocess.run([str(MPGYM), *line], capture_output=True, text=True, cwd=tmp_path,
                         env=_quiet_env(), timeout=300)
    assert out.returncode == 0, out.stderr
    noisy = [ln for ln in out.stderr.splitlines() if "error" in ln.lower() or "ALSA" in ln]
    assert noisy == []
    assert "success rate 0.00 (return >= reward_threshold (475.0))" in out.stdout
    assert (tmp_path / "cartpole.gif").stat().st_size > 0

    DQN("MlpPolicy", "CartPole-v1", seed=0, device="cpu", buffer_size=100).save("model.zip")
    capsys.readouterr()
    assert main("eval model.zip --sb3-algo dqn --env CartPole-v1".split()) == 0
    assert "sb3 dqn on CartPole-v1: return" in capsys.readouterr().out


def test_human_rendering_during_evaluation_prints_no_alsa_lines(tmp_path):
    """An env whose human renderer calls ``pygame.init()`` (older Gymnasium, many third-party
    envs) opens an audio device: on a machine without a sound card ALSA prints a dozen lines."""
    code = ("import gymnasium as gym, pygame\n"
            "from agents.common import evaluate_policy\n"
            "class Human(gym.Env):\n"
            "    observation_space = gym.spaces.Discrete(1)\n"
            "    action_space = gym.spaces.Discrete(1)\n"
            "    metadata = {'render_modes': ['human']}\n"
            "    render_mode = 'human'\n"
            "    def reset(self, *, seed=None, options=None):\n"
            "        pygame.init(); pygame.display.set_mode((8, 8))\n"
            "        return 0, {}\n"
            "    def step(self, action):\n"
            "        return 0, 1.0, True, False, {}\n"
            "print(evaluate_policy(lambda o: 0, Human(), 2).returns)\n")
    env = dict(_quiet_env(), SDL_VIDEODRIVER="dummy")  # stands in for a display
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "[1. 1.]" in out.stdout
    assert [ln for ln in out.stderr.splitlines() if "ALSA" in ln or "error" in ln.lower()] == []
