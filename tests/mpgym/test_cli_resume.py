"""``mpgym train --save-every`` and ``--resume``: killed runs keep a checkpoint and continue."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.deep.dqn import DQN
from agents.deep.ppo import PPO
from mpgym.cli import main

MPGYM = Path(sys.executable).with_name("mpgym")


def _rows(run: Path) -> list[str]:
    return (run / "metrics.csv").read_text().splitlines()[1:]


def test_sigterm_keeps_the_checkpoint_and_resume_reaches_the_new_total(tmp_path, capsys):
    run = tmp_path / "ppo"
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.Popen(
        [str(MPGYM), "train", "ppo", "--env", "CartPole-v1", "--total-timesteps", "10000000",
         "--n-envs", "2", "--n-steps", "256", "--save-every", "1024", "--out", str(run)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = run / "checkpoint.safetensors"
    try:
        for _ in range(1200):  # the first periodic save; the poll only bounds a broken run
            if ckpt.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert ckpt.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint"
        assert json.loads((run / "config.json").read_text())["kind"] == "ppo"  # in place
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "Traceback" not in err
    saved = PPO.load(run)
    assert 1024 <= saved.num_timesteps < 10_000_000
    rows_before = len(_rows(run))

    target = saved.num_timesteps + 1024
    assert main(["train", "ppo", "--resume", "--out", str(run), "--total-timesteps", str(target),
                 "--eval-episodes", "2"]) == 0
    resumed = PPO.load(run)
    assert resumed.num_timesteps >= target and resumed.config.total_timesteps == target
    assert resumed.config.n_steps == 256  # the run's own config, not PPO's defaults
    assert len(_rows(run)) > rows_before  # the metrics go on in the same file
    assert (run / "eval.json").exists()
    capsys.readouterr()
    # trained to its total: nothing left to do
    assert main(["train", "ppo", "--resume", "--out", str(run)]) == 2
    assert "give a larger --total-timesteps" in capsys.readouterr().err


def test_dqn_save_every_keeps_the_replay_buffer_and_resume_continues_it(tmp_path):
    run = tmp_path / "dqn"
    assert main(["train", "dqn", "--env", "CartPole-v1", "--total-timesteps", "600",
                 "--learning-starts", "100", "--save-every", "200", "--eval-episodes", "1",
                 "--out", str(run)]) == 0
    assert (run / "replay_buffer.safetensors").exists()
    assert DQN.load(run).buffer.size == 600
    assert main(["train", "dqn", "--resume", "--out", str(run), "--total-timesteps", "800",
                 "--eval-episodes", "1"]) == 0
    agent = DQN.load(run)
    assert agent.num_timesteps == 800 and agent.buffer.size == 800


@pytest.mark.parametrize("argv, message", [
    (["train", "ppo", "--resume"], "give its directory with --out RUN"),
    (["train", "ppo", "--resume", "--out", "{tmp}/none"], "is not an mpgym run directory"),
    (["train", "ppo", "--resume", "--out", "{tmp}", "--learning-rate", "0.1"],
     "only --out, --total-timesteps, --save-every, --eval-episodes and --tensorboard"),
    (["train", "ppo", "--resume", "--out", "{tmp}", "--total-timesteps", "x"],
     "--total-timesteps must be a whole number >= 1; got 'x'"),
    (["train", "q-learning", "--resume", "--out", "{tmp}"], "q-learning trains in one go"),
    (["train", "sarsa", "--save-every", "10"], "sarsa trains in one go"),
    (["train", "ppo", "--save-every", "0"], "--save-every must be a whole number >= 1"),
])
def test_resume_and_save_every_refusals(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_save_every_refuses_a_non_empty_target_and_resume_another_algo(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "a2c", "--env", "CartPole-v1", "--total-timesteps", "100",
                 "--eval-episodes", "1", "--out", str(run)]) == 0
    before = (run / "checkpoint.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", "a2c", "--env", "CartPole-v1", "--save-every", "50",
                 "--out", str(run)]) == 2
    assert "--save-every writes the run in place" in capsys.readouterr().err
    assert main(["train", "ppo", "--resume", "--out", str(run)]) == 2
    assert "holds a 'a2c' run: resume it with 'mpgym train a2c --resume" in (
        capsys.readouterr().err)
    assert (run / "checkpoint.safetensors").read_bytes() == before
