"""SB3-style callbacks: when they run, what they see, and that False stops every agent at once."""

import dataclasses

import numpy as np
import pytest
import torch

from agents.common import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    ResumableCheckpointCallback,
    StopTrainingOnRewardThreshold,
    convert_callback,
    evaluate_policy,
)
from agents.common.callbacks import LearnHooks, per_env_infos
from agents.deep.a2c import A2C
from agents.deep.dqn import DQN
from agents.deep.ppo import PPO
from agents.deep.reinforce import REINFORCE
from agents.deep.sac import SAC
from agents.deep.td3 import TD3
from agents.registry import get_algorithm
from mpgym.errors import MpgymError


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


_OFF_POLICY = {"env_id": "Pendulum-v1", "batch_size": 16, "learning_starts": 4,
               "buffer_size": 1000}
SMALL = {  # tiny networks and batches: every test trains in well under a second
    DQN: {"learning_starts": 50, "train_freq": 16, "gradient_steps": 2, "batch_size": 16},
    PPO: {"n_envs": 2, "n_steps": 16, "batch_size": 16, "n_epochs": 2},
    A2C: {"n_envs": 2, "n_steps": 16},
    REINFORCE: {},
    SAC: _OFF_POLICY,
    TD3: _OFF_POLICY,
}


def tiny(cls, **kw):
    return cls.Config(**{"env_id": "CartPole-v1", "hidden": (16,), **SMALL[cls], **kw})


class Recorder(BaseCallback):
    """Records every hook; stops at call ``stop_at`` (None: never)."""

    def __init__(self, stop_at=None):
        super().__init__()
        self.stop_at, self.events, self.steps = stop_at, [], []

    def _on_training_start(self):
        self.events.append("start")

    def _on_step(self):
        self.steps.append((self.n_calls, self.num_timesteps, self.locals))
        return self.stop_at is None or self.n_calls < self.stop_at

    def _on_rollout_end(self):
        self.events.append("rollout_end")

    def _on_training_end(self):
        self.events.append("end")


# -- stopping ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [DQN, REINFORCE, SAC, TD3], ids=lambda c: c.name)
def test_false_stops_single_env_agents_at_that_step(cls):
    rec = Recorder(stop_at=7)
    agent = cls(tiny(cls).env_id, tiny(cls)).learn(500, callback=rec, progress_bar=False)
    assert rec.n_calls == 7 and agent.num_timesteps == 7
    assert [s[1] for s in rec.steps] == list(range(1, 8))
    assert rec.events[0] == "start" and rec.events[-1] == "end"


@pytest.mark.parametrize("cls", [PPO, A2C], ids=lambda c: c.name)
def test_false_mid_rollout_stops_within_the_same_vector_step(cls):
    cfg = tiny(cls)  # rollouts of 16 vector steps
    rec = Recorder(stop_at=21)  # the 5th vector step of the second rollout
    agent = cls("CartPole-v1", cfg).learn(10_000, callback=rec, progress_bar=False)
    assert rec.n_calls == 21  # no on_step after the one that said stop
    assert agent.num_updates == 1  # the incomplete rollout is not used for an update
    assert rec.events == ["start", "rollout_end", "end"]
    assert agent.num_timesteps == rec.steps[-1][1]
    assert rec.steps[-1][2].dones.shape == (cfg.n_envs,) and len(rec.steps[-1][2].infos) == 2


def test_old_style_function_mid_rollout_stops_ppo_too():
    calls = []

    def stop_at_5(loc):
        calls.append(loc["t"])  # the loop's own locals, as before
        return len(calls) < 5

    agent = PPO("CartPole-v1", tiny(PPO)).learn(10_000, callback=stop_at_5, progress_bar=False)
    assert calls == [0, 1, 2, 3, 4] and agent.num_updates == 0


def test_old_style_callback_still_gets_the_loop_locals():
    seen = []
    agent = DQN("CartPole-v1", tiny(DQN)).learn(
        40, callback=lambda loc: seen.append((loc["self"].num_timesteps, loc["eps"])),
        progress_bar=False)
    assert agent.num_timesteps == 40 and [s[0] for s in seen] == list(range(1, 41))
    assert seen[0][1] == pytest.approx(1.0)  # epsilon starts at 1


def test_no_callback_builds_nothing_per_step(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("LearnHooks.step called without a callback")

    monkeypatch.setattr(LearnHooks, "step", boom)
    PPO("CartPole-v1", tiny(PPO)).learn(64, progress_bar=False)
    DQN("CartPole-v1", tiny(DQN)).learn(64, progress_bar=False)
    get_algorithm("q-learning")("FrozenLake-v1").learn(5, progress_bar=False)


# -- CheckpointCallback ---------------------------------------------------------------------------
def test_checkpoint_callback_saves_at_each_multiple_and_the_files_load(tmp_path):
    cb = CheckpointCallback(save_freq=100, save_path=tmp_path / "ckpt", name_prefix="dqn")
    agent = DQN("CartPole-v1", tiny(DQN)).learn(350, callback=cb, progress_bar=False)
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["dqn_100_steps.safetensors", "dqn_200_steps.safetensors",
                     "dqn_300_steps.safetensors"]
    assert cb.saved == [tmp_path / "ckpt" / f for f in files]
    for steps, path in zip((100, 200, 300), cb.saved, strict=True):
        loaded = DQN.load(path)
        assert loaded.num_timesteps == steps
    obs = np.zeros((3, 4), np.float32)  # the last file holds the weights at step 300
    assert agent.num_timesteps == 350 and DQN.load(cb.saved[-1]).predict(obs)[0].shape == (3,)


def test_resumable_checkpoint_keeps_one_file_with_the_buffer_beside_it(tmp_path):
    cb = ResumableCheckpointCallback(every=120, path=tmp_path / "ckpt.safetensors")
    agent = DQN("CartPole-v1", tiny(DQN)).learn(300, callback=cb, progress_bar=False)
    assert cb.saves == 2  # at 120 and 240 timesteps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors",
                                                          "replay_buffer.safetensors"]
    loaded = DQN.load(tmp_path / "ckpt.safetensors")
    assert loaded.num_timesteps == 240 and loaded.buffer.size == 240
    np.testing.assert_array_equal(loaded.buffer.obs[:240], agent.buffer.obs[:240])
    with pytest.raises(MpgymError, match="every must be a whole number >= 1"):
        ResumableCheckpointCallback(every=0)
    with pytest.raises(Exception, match="needs an agent that saves resumable checkpoints"):
        DQN("CartPole-v1", tiny(DQN)).learn(10, callback=ResumableCheckpointCallback(5),
                                            progress_bar=False)  # no path, no run directory


# -- EvalCallback ---------------------------------------------------------------------------------
def test_eval_callback_evaluates_at_the_right_timesteps_and_keeps_the_best(tmp_path):
    timesteps = []
    cb = EvalCallback("CartPole-v1", eval_freq=40, n_eval_episodes=2,
                      best_model_save_path=tmp_path / "best", log_path=tmp_path / "logs",
                      verbose=0)
    # a list: a BaseCallback and an old-style function, converted to a CallbackList
    agent = PPO("CartPole-v1", tiny(PPO)).learn(
        320, callback=[cb, lambda loc: timesteps.append(loc["self"].num_timesteps)],
        progress_bar=False)
    expected = timesteps[39::40]
    assert len(expected) >= 3 and cb.evaluations_timesteps == expected
    data = np.load(tmp_path / "logs" / "evaluations.npz")
    np.testing.assert_array_equal(data["timesteps"], expected)
    assert data["results"].shape == data["ep_lengths"].shape == (len(expected), 2)
    np.testing.assert_array_equal(data["results"], np.stack(cb.evaluations_results))
    assert data["successes"].dtype == bool  # CartPole's success: return >= 475
    means = data["results"].mean(1)
    assert cb.best_mean_reward == means.max() and cb.last_mean_reward == means[-1]
    best = PPO.load(tmp_path / "best" / "best_model.safetensors")
    assert best.num_timesteps == expected[int(np.argmax(means))]
    assert evaluate_policy(best, "CartPole-v1", 2, seed=0).mean_return == means.max()
    assert agent.num_timesteps >= 320


def _learning_dqn():
    """A DQN that improves on CartPole within 2000 steps (the preset, smaller and sooner)."""
    return dataclasses.replace(DQN.PRESETS["CartPole-v1"], learning_starts=200, train_freq=64,
                               gradient_steps=32, hidden=(64, 64), target_update_interval=64,
                               exploration_fraction=0.5)


@pytest.mark.parametrize(("cls", "eval_freq", "budget"), [(PPO, 10, 600), (DQN, 200, 2000)],
                         ids=["ppo", "dqn"])
def test_stop_on_reward_threshold_stops_at_the_first_evaluation_that_reaches_it(
        cls, eval_freq, budget):
    config = tiny(PPO) if cls is PPO else _learning_dqn()

    def run(stop):
        cb = EvalCallback("CartPole-v1", eval_freq=eval_freq, n_eval_episodes=2, verbose=0,
                          callback_on_new_best=stop)
        agent = cls("CartPole-v1", config).learn(budget, callback=cb, progress_bar=False)
        return agent, cb

    # Evaluations do not touch the training generators, so a second run retraces the first
    # up to the stop.
    _, free = run(None)
    means = np.stack(free.evaluations_results).mean(1)
    threshold = float(means[:-1].max())  # reached before the last evaluation
    first = int(np.argmax(means >= threshold))
    assert first > 0 and means[0] < threshold  # learning, not the first evaluation, gets there
    agent, cb = run(StopTrainingOnRewardThreshold(threshold))
    assert cb.evaluations_timesteps == free.evaluations_timesteps[:first + 1]
    assert agent.num_timesteps == free.evaluations_timesteps[first] < budget
    assert cb.n_calls == eval_freq * (first + 1) and cb.best_mean_reward >= threshold
    assert cb.callback_on_new_best.parent is cb


# -- tabular --------------------------------------------------------------------------------------
def test_tabular_agent_on_frozenlake_honours_callbacks(tmp_path):
    cls = get_algorithm("q-learning")
    rec = Recorder()
    ckpt = CheckpointCallback(10, tmp_path / "ckpt", name_prefix="q")
    ev = EvalCallback("FrozenLake-v1", eval_freq=25, n_eval_episodes=3, verbose=0,
                      log_path=tmp_path)
    agent = cls("FrozenLake-v1").learn(
        500, callback=[rec, ckpt, ev, lambda loc: loc["self"].num_episodes < 60],
        progress_bar=False)
    assert agent.num_episodes == 60 and rec.n_calls == 60  # one call per episode
    assert [cls.load(p).num_episodes for p in ckpt.saved] == [10, 20, 30, 40, 50, 60]
    assert len(ev.evaluations_timesteps) == 2 and ev.evaluations_results[0].shape == (3,)
    step = rec.steps[-1][2]
    assert step.dones.tolist() == [True] and step.infos == [{}]
    assert step.episode_lengths == (agent.history[-1]["length"],)
    assert step.episode_returns == (agent.history[-1]["return"],)
    assert rec.events == ["start", "end"]


def test_planning_agent_calls_back_once():
    rec = Recorder()
    get_algorithm("value-iteration")("FrozenLake-v1").learn(callback=rec, progress_bar=False)
    assert rec.n_calls == 1 and rec.events == ["start", "end"]


# -- what callbacks see ---------------------------------------------------------------------------
def test_step_locals_report_finished_episodes_with_their_returns():
    rec = Recorder()
    agent = DQN("CartPole-v1", tiny(DQN)).learn(200, callback=rec, progress_bar=False)
    ended = [(s[2].episode_returns, s[2].episode_lengths) for s in rec.steps if s[2].dones[0]]
    assert [r for r, _ in ended] == [(float(h["return"]),) for h in agent.history]
    assert [n for _, n in ended] == [(h["length"],) for h in agent.history]
    assert all(s[2].episode_returns == () for s in rec.steps if not s[2].dones[0])
    assert rec.model is agent and rec.training_env is agent.env


def test_per_env_infos_splits_gymnasiums_vector_info():
    info = {"x": np.array([1, 2, 3]), "_x": np.array([True, False, True]),
            "final_info": {"r": np.array([0.0, 5.0, 0.0]), "_r": np.array([False, True, False])}}
    assert per_env_infos(info, 3) == [{"x": 1, "final_info": {}},
                                      {"final_info": {"r": 5.0}},
                                      {"x": 3, "final_info": {}}]
    assert per_env_infos(None, 2) == [{}, {}] and per_env_infos([{"a": 1}], 1) == [{"a": 1}]


# -- bad input ------------------------------------------------------------------------------------
def test_bad_callbacks_are_refused_clearly():
    with pytest.raises(MpgymError, match="callback must be a function"):
        convert_callback(42)
    with pytest.raises(MpgymError, match="callback must be a function"):
        DQN("CartPole-v1", tiny(DQN)).learn(10, callback="stop", progress_bar=False)
    with pytest.raises(MpgymError, match="eval_freq must be a whole number >= 1"):
        EvalCallback("CartPole-v1", eval_freq=0)
    with pytest.raises(MpgymError, match="n_eval_episodes"):
        EvalCallback("CartPole-v1", n_eval_episodes=-2)
    with pytest.raises(MpgymError, match="save_freq"):
        CheckpointCallback(save_freq=1.5, save_path="x")
    with pytest.raises(MpgymError, match="callback_on_new_best must be a BaseCallback"):
        EvalCallback("CartPole-v1", callback_on_new_best=lambda loc: False)
    with pytest.raises(MpgymError, match="CallbackList takes a list"):
        CallbackList(Recorder())
    with pytest.raises(MpgymError, match="callback_on_new_best"):
        DQN("CartPole-v1", tiny(DQN)).learn(
            10, callback=StopTrainingOnRewardThreshold(100), progress_bar=False)


def test_callback_list_calls_all_and_stops_when_any_says_so():
    a, b = Recorder(stop_at=3), Recorder()
    agent = DQN("CartPole-v1", tiny(DQN)).learn(50, callback=CallbackList([a, b]),
                                               progress_bar=False)
    assert agent.num_timesteps == 3 and a.n_calls == b.n_calls == 3


def test_counters_continue_over_learn_calls_as_in_sb3():
    rec = Recorder()
    agent = DQN("CartPole-v1", dataclasses.replace(tiny(DQN)))
    agent.learn(20, callback=rec, progress_bar=False)
    agent.learn(10, callback=rec, progress_bar=False, reset_num_timesteps=False)
    assert rec.n_calls == 30 and rec.num_timesteps == 30
    assert rec.events == ["start", "end", "start", "end"]


@pytest.mark.parametrize("cls", [PPO, DQN, SAC])
def test_a_raising_callback_saves_the_run_and_says_so(cls, tmp_path):
    def flaky_metric(local):
        if local["self"].num_timesteps >= 40:
            raise ValueError("metric server down")

    agent = cls(tiny(cls).env_id, tiny(cls), run_dir=tmp_path / "run")
    with pytest.raises(MpgymError, match=r"flaky_metric raised ValueError: metric server down "
                       r"\(in on_step, at \d+ timesteps\); the agent was saved to ") as info:
        agent.learn(400, callback=flaky_metric, progress_bar=False)
    assert isinstance(info.value.__cause__, ValueError)
    assert cls.load(tmp_path / "run").num_timesteps == agent.num_timesteps >= 40


def test_a_raising_hook_without_a_run_directory_leaves_the_agent_usable():
    class BadStart(BaseCallback):
        def _on_training_start(self):
            raise RuntimeError("no eval env")

    agent = PPO("CartPole-v1", tiny(PPO))
    with pytest.raises(MpgymError, match="BadStart raised RuntimeError: no eval env "
                       r"\(in on_training_start, at 0 timesteps\); the agent has no run"):
        agent.learn(64, callback=BadStart(), progress_bar=False)
    agent.learn(64, progress_bar=False)  # still usable
    assert agent.num_timesteps >= 64
