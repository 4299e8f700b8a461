"""TensorBoard event files beside metrics.csv: per-update losses, per-episode returns, opt-in."""

import importlib.util

import numpy as np
import pytest
import torch

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from agents.common import EvalCallback  # noqa: E402
from agents.deep.dqn import DQN  # noqa: E402
from agents.deep.ppo import PPO  # noqa: E402
from agents.deep.sac import SAC  # noqa: E402
from agents.registry import get_algorithm  # noqa: E402
from mpgym.cli.rl import parse_train_args, train  # noqa: E402
from mpgym.errors import MpgymError  # noqa: E402
from mpgym.runs import RunDir  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def events(path):
    acc = EventAccumulator(str(path))
    acc.Reload()
    return acc


def scalars(acc, tag):
    """``(steps, values)`` of one scalar tag."""
    rows = acc.Scalars(tag)
    return [r.step for r in rows], [r.value for r in rows]


def episode_rows(agent):
    return [h for h in agent.history if "return" in h]


def check_episodes(acc, agent):
    steps, returns = scalars(acc, "episode/return")
    rows = episode_rows(agent)
    assert steps == [r["timestep"] for r in rows] and len(rows) == agent.num_episodes
    np.testing.assert_allclose(returns, [r["return"] for r in rows], rtol=1e-6)
    assert scalars(acc, "episode/length")[1] == [r["length"] for r in rows]


def test_ppo_writes_a_row_per_update_and_per_episode(tmp_path):
    run = RunDir(tmp_path / "run", tensorboard=True)
    cfg = PPO.Config(n_envs=2, n_steps=16, batch_size=16, n_epochs=1, hidden=(16,))
    update_steps = []
    orig = PPO._update

    class Spy(PPO):
        def _update(self, batch, remaining):
            out = orig(self, batch, remaining)
            update_steps.append(self.num_timesteps)
            return out

    agent = Spy("CartPole-v1", cfg, run_dir=run).learn(256, progress_bar=False)
    assert (run.path / "metrics.csv").exists()
    assert list(run.path.glob("events.out.tfevents.*"))  # beside metrics.csv
    acc = events(run.path)
    tags = set(acc.Tags()["scalars"])
    assert {"train/policy_loss", "train/value_loss", "train/entropy", "train/approx_kl",
            "train/clip_range", "episode/return", "episode/length"} <= tags
    steps, _ = scalars(acc, "train/policy_loss")
    assert len(steps) == agent.num_updates == len(update_steps) and steps == update_steps
    check_episodes(acc, agent)


def test_dqn_and_sac_log_their_losses_per_training_round(tmp_path):
    cfg = DQN.Config(hidden=(16,), learning_starts=50, train_freq=16, gradient_steps=2,
                     batch_size=16)
    dqn = DQN("CartPole-v1", cfg, run_dir=RunDir(tmp_path / "dqn", tensorboard=True)).learn(
        200, progress_bar=False)
    acc = events(tmp_path / "dqn")
    steps, _ = scalars(acc, "train/loss")
    assert steps == list(range(64, 201, 16))  # rounds after learning_starts, every 16 steps
    assert len(scalars(acc, "train/learning_rate")[0]) == len(steps)
    check_episodes(acc, dqn)

    sac = SAC("Pendulum-v1", SAC.Config(hidden=(16,), batch_size=16, learning_starts=20),
              run_dir=RunDir(tmp_path / "sac", tensorboard=True)).learn(60, progress_bar=False)
    acc = events(tmp_path / "sac")
    assert {"train/critic_loss", "train/actor_loss", "train/alpha"} <= set(acc.Tags()["scalars"])
    assert len(scalars(acc, "train/critic_loss")[0]) == 60 - 20
    assert sac.num_episodes == 0 and "episode/return" not in acc.Tags()["scalars"]


def test_tabular_agent_logs_episodes_only(tmp_path):
    cls = get_algorithm("q-learning")
    agent = cls("FrozenLake-v1", run_dir=RunDir(tmp_path, tensorboard=True)).learn(
        30, progress_bar=False)
    acc = events(tmp_path)
    assert not any(t.startswith("train/") for t in acc.Tags()["scalars"])
    check_episodes(acc, agent)


def test_eval_callback_adds_its_scores(tmp_path):
    run = RunDir(tmp_path, tensorboard=True)
    cb = EvalCallback("CartPole-v1", eval_freq=32, n_eval_episodes=2, verbose=0)
    cfg = PPO.Config(n_envs=2, n_steps=16, batch_size=16, n_epochs=1, hidden=(16,))
    PPO("CartPole-v1", cfg, run_dir=run).learn(128, callback=cb, progress_bar=False)
    steps, values = scalars(events(tmp_path), "eval/mean_return")
    assert steps == cb.evaluations_timesteps
    np.testing.assert_allclose(values, [r.mean() for r in cb.evaluations_results], rtol=1e-6)


def test_off_by_default_no_event_files(tmp_path):
    run = RunDir(tmp_path)
    assert run.tensorboard is False
    DQN("CartPole-v1", DQN.Config(hidden=(16,), learning_starts=20, train_freq=8),
        run_dir=run).learn(60, progress_bar=False)
    assert (tmp_path / "metrics.csv").exists() and not list(tmp_path.glob("events.*"))


def test_cli_flag_writes_event_files_in_the_run(tmp_path):
    req = parse_train_args(["ppo", "--tensorboard", "--total-timesteps", "64", "--n-envs", "2",
                            "--n-steps", "16", "--batch-size", "16", "--hidden", "16"])
    assert req.tensorboard is True
    assert parse_train_args(["ppo"]).tensorboard is False
    agent, run, _ = train(req.cls, req.config, tmp_path / "run", eval_episodes=1,
                          progress_bar=False, tensorboard=req.tensorboard)
    assert list(run.path.glob("events.out.tfevents.*"))
    steps, _ = scalars(events(run.path), "train/policy_loss")
    assert len(steps) == agent.num_updates >= 2
    assert not list(tmp_path.glob(".run.partial-*"))  # the staging directory is gone


def test_missing_tensorboard_is_a_clear_error(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(MpgymError, match="pip install tensorboard"):
        RunDir(tmp_path / "a", tensorboard=True)
    assert not (tmp_path / "a").exists()
    req = parse_train_args(["dqn", "--tensorboard"])
    with pytest.raises(MpgymError, match="pip install tensorboard"):
        train(req.cls, req.config, tmp_path / "b", progress_bar=False, tensorboard=True)
    assert not (tmp_path / "b").exists()
    RunDir(tmp_path / "c")  # without the flag nothing needs it
