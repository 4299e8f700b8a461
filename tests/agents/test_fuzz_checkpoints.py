"""Mutation fuzzing of every agent checkpoint a user can load (and DQN's replay buffer).

Each loader gets hundreds of mutated copies of a valid file (``MPGYM_FUZZ_SCALE`` scales the
count) and must return or raise ``MpgymError`` with a message: no crash, hang, other exception
type, or file left behind. Byte mutations of a whole checkpoint mostly break its safetensors
header; the ``parts`` tests mutate the config, meta and tensors separately
(:func:`agents._fuzz.split_checkpoint`), so the agents' own checks are reached.
"""

import dataclasses

import numpy as np
import pytest
import torch

from agents._fuzz import BUFFER_AGENT, PACKED_BUFFER, split_checkpoint
from agents.deep.a2c import A2C
from agents.deep.buffers import ReplayBuffer, save_replay_buffer
from agents.deep.dqn import BUFFER_FILE, DQN
from agents.deep.ppo import PPO
from agents.tabular.planning import ValueIteration
from agents.tabular.q_learning import QLearning, QLearningConfig
from agents.tabular.td_prediction import TD0Prediction
from mpgym.fuzz import fuzz_cases, fuzz_loader


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def files(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def tabular_seed(cls, tmp_path):
    if cls is QLearning:
        agent = QLearning("FrozenLake-v1", QLearningConfig(env_kwargs={"is_slippery": False}))
        agent.learn(20, progress_bar=False)
    elif cls is TD0Prediction:
        agent = TD0Prediction("mpgym/RandomWalk-v0", TD0Prediction.PRESETS["random-walk-19"])
        agent.learn(5, progress_bar=False)
    else:
        agent = ValueIteration("FrozenLake-v1").learn(progress_bar=False)
    agent.save(tmp_path)
    return files(tmp_path)


@pytest.mark.parametrize("cls, algo", [
    (QLearning, "q-learning"),
    (TD0Prediction, "td0"),
    (ValueIteration, "value-iteration"),
], ids=["q-learning", "td0", "value-iteration"])
def test_fuzz_tabular_checkpoints(cls, algo, tmp_path):
    seeds = tabular_seed(cls, tmp_path)
    report = fuzz_loader("agents._fuzz:load", seeds, args=(algo,), cases=fuzz_cases(200))
    report.assert_ok()
    assert report.refused > 0  # the mutations do reach the checks


def deep_config(cls):
    kw = {"hidden": (8,)}
    if cls is DQN:
        kw.update(learning_starts=50, train_freq=16, gradient_steps=1, batch_size=8,
                  buffer_size=500)
    elif cls in (PPO, A2C):
        kw.update(n_envs=2, n_steps=8, normalize_obs=True, normalize_reward=True)
        if cls is PPO:
            kw.update(batch_size=8, n_epochs=1)
    return dataclasses.replace(cls.Config(), env_id="CartPole-v1", **kw)


# A2C and REINFORCE load through the same code as PPO (Agent.load, DeepAgent.load_state_dict):
# their byte-level runs add little; all four get the structure-aware runs below.
@pytest.mark.parametrize("cls, algo", [
    (DQN, "dqn"),
    (PPO, "ppo"),
], ids=["dqn", "ppo"])
def test_fuzz_deep_checkpoints(cls, algo, tmp_path):
    agent = cls("CartPole-v1", deep_config(cls)).learn(100, progress_bar=False)
    if cls is DQN:
        agent.save(tmp_path, include_buffer=True)
    else:
        agent.save(tmp_path)
    seeds = files(tmp_path)
    report = fuzz_loader("agents._fuzz:load", seeds, args=(algo,), cases=fuzz_cases(100),
                         entry=".")
    report.assert_ok()
    assert report.refused > 0


@pytest.mark.parametrize("algo", ["q-learning", "dqn", "ppo", "a2c", "reinforce"])
def test_fuzz_checkpoint_parts(algo, tmp_path):
    from agents.registry import get_algorithm

    cls = get_algorithm(algo)
    if algo == "q-learning":
        tabular_seed(cls, tmp_path)
    else:
        cls("CartPole-v1", deep_config(cls)).learn(100, progress_bar=False).save(tmp_path)
    seeds = split_checkpoint(str(tmp_path / "checkpoint.safetensors"))
    report = fuzz_loader("agents._fuzz:load_parts", seeds, args=(algo,), entry=".",
                         cases=fuzz_cases(200 if algo == "q-learning" else 150))
    report.assert_ok()
    assert report.ok > 0 and report.refused > 0


def test_fuzz_replay_buffer(tmp_path):
    cfg = dataclasses.replace(DQN.Config(), **BUFFER_AGENT)
    agent = DQN("CartPole-v1", cfg).learn(120, progress_bar=False)
    agent.save_replay_buffer(tmp_path / BUFFER_FILE)
    report = fuzz_loader("agents._fuzz:load_replay_buffer", files(tmp_path),
                         cases=fuzz_cases(200))
    report.assert_ok()
    assert report.refused > 0


def test_fuzz_bit_packed_replay_buffer(tmp_path):
    buf = ReplayBuffer(PACKED_BUFFER["capacity"], PACKED_BUFFER["obs_dim"], obs_dtype=np.uint8)
    rng = np.random.default_rng(0)
    for i in range(30):
        buf.add(rng.integers(0, 2, 13), i % 3, 1.0, rng.integers(0, 2, 13), i % 5 == 0)
    save_replay_buffer(buf, tmp_path / BUFFER_FILE, kind="dqn-replay-buffer")
    report = fuzz_loader("agents._fuzz:load_packed_replay_buffer", files(tmp_path),
                         cases=fuzz_cases(200))
    report.assert_ok()
    assert report.refused > 0
