"""The agent API (learn / predict / save / load) and bad input, for every tabular agent."""

import json

import gymnasium as gym
import numpy as np
import pytest

from agents.registry import ALGORITHMS, get_algorithm
from agents.tabular import ALGORITHMS as TABULAR
from mpgym import CheckpointError, MpgymError, RunDir

ENV = {"td0": "mpgym/RandomWalk-v0", "mc-prediction": "mpgym/RandomWalk-v0"}
PLANNING = {"value-iteration", "policy-iteration"}  # no episodes: test_planning_agents.py


@pytest.mark.parametrize("name", sorted(set(TABULAR) - PLANNING))
def test_learn_save_load_predict_roundtrip(name, tmp_path):
    cls = get_algorithm(name)
    assert ALGORITHMS[name] == TABULAR[name] and cls.name == name
    env_id = ENV.get(name, "FrozenLake-v1")
    run = RunDir(tmp_path / "run")
    agent = cls(env_id, cls.Config(env_id=env_id, seed=3), run_dir=run)
    assert agent.learn(20, progress_bar=False) is agent
    assert agent.num_episodes == 20
    assert agent.num_timesteps == sum(h["length"] for h in agent.history)
    rows = run.metrics.rows
    assert len(rows) == 20 and {"episode", "timestep", "return", "length"} <= set(rows[0])
    assert (tmp_path / "run" / "learning_curve.png").exists()
    path = agent.save(tmp_path / "run")
    assert path.name == "checkpoint.safetensors"
    loaded = cls.load(path)
    assert loaded.config == agent.config and loaded.num_episodes == 20
    for key, value in agent.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value)
    obs = np.arange(agent.n_states)
    np.testing.assert_array_equal(loaded.predict(obs)[0], agent.predict(obs)[0])
    action, state = agent.predict(0)
    assert state is None and 0 <= int(action) < agent.n_actions


def test_learning_is_reproducible_given_seed():
    cls = get_algorithm("q-learning")
    a = cls("FrozenLake-v1", cls.Config(seed=5)).learn(200, progress_bar=False)
    b = cls("FrozenLake-v1", cls.Config(seed=5)).learn(200, progress_bar=False)
    np.testing.assert_array_equal(a.q, b.q)
    c = cls("FrozenLake-v1", cls.Config(seed=6)).learn(200, progress_bar=False)
    assert not np.array_equal(a.q, c.q)


def test_callback_returning_false_stops_learning():
    cls = get_algorithm("sarsa")
    seen = []

    def callback(loc):
        seen.append(loc["self"].num_episodes)
        return len(seen) < 7

    agent = cls("FrozenLake-v1").learn(100, callback=callback, progress_bar=False)
    assert agent.num_episodes == 7 and seen == list(range(1, 8))


def test_env_object_and_id_set_config_env_id():
    cls = get_algorithm("q-learning")
    agent = cls(gym.make("Taxi-v4"))
    assert agent.config.env_id == "Taxi-v4" and agent.q.shape == (500, 6)
    agent = cls("mpgym/CliffWalking-v0", cls.Config())
    assert agent.config.env_id == "mpgym/CliffWalking-v0" and agent.q.shape == (48, 4)


def test_load_rejects_other_algorithm_missing_and_corrupt_files(tmp_path):
    q = get_algorithm("q-learning")("FrozenLake-v1")
    path = q.save(tmp_path / "q.safetensors")
    with pytest.raises(CheckpointError, match="is a 'q-learning' checkpoint; expected 'sarsa'"):
        get_algorithm("sarsa").load(path)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        get_algorithm("q-learning").load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        get_algorithm("q-learning").load(bad)
    with pytest.raises(MpgymError, match=r"table has shape \(16, 4\).*\(64, 4\)"):
        get_algorithm("q-learning").load(path, env="FrozenLake8x8-v1")


def test_continuous_spaces_and_unknown_names_are_rejected():
    with pytest.raises(MpgymError, match="needs Discrete observation and action spaces.*"
                                         "CartPole-v1.*deep agent"):
        get_algorithm("q-learning")("CartPole-v1")
    with pytest.raises(MpgymError, match="unknown environment id 'FrozenLak-v1'.*FrozenLake-v1"):
        get_algorithm("q-learning")("FrozenLak-v1")
    with pytest.raises(MpgymError, match="unknown algorithm 'q-learn'; accepted: .*q-learning"):
        get_algorithm("q-learn")
    with pytest.raises(MpgymError, match="takes a QLearningConfig"):
        get_algorithm("q-learning")("FrozenLake-v1", get_algorithm("sarsa").Config())
    with pytest.raises(MpgymError, match="outside 0..15"):
        get_algorithm("q-learning")("FrozenLake-v1").predict(16)


def test_exploring_starts_needs_a_settable_model_env():
    class NoModel(gym.Env):
        observation_space = gym.spaces.Discrete(3)
        action_space = gym.spaces.Discrete(2)

    with pytest.raises(MpgymError, match="exploring starts need"):
        get_algorithm("mc-es")(NoModel())


def test_config_json_roundtrip_keeps_schedules(tmp_path):
    cls = get_algorithm("sarsa")
    config = cls.PRESETS["cliff"]
    agent = cls(config.env_id, config)
    path = agent.save(tmp_path / "ck.safetensors")
    from mpgym import load_checkpoint

    stored = load_checkpoint(path).config
    assert stored["epsilon"] == {"start": 0.1, "end": None, "duration": 1, "kind": "constant"}
    assert cls.load(path).config == config
    json.dumps(stored)


def test_prediction_agents_follow_the_given_policy():
    cls = get_algorithm("td0")
    right = np.tile([0.0, 1.0], (7, 1))
    agent = cls("mpgym/RandomWalk-v0", policy=right).learn(50, progress_bar=False)
    assert all(h["return"] == 1.0 and h["length"] == 3 for h in agent.history)
    np.testing.assert_allclose(agent.predict(np.arange(1, 6))[0], 1)
    with pytest.raises(MpgymError, match=r"\(7, 2\) action probabilities"):
        cls("mpgym/RandomWalk-v0", policy=np.ones((3, 2)))
