"""env_kwargs in configs: presets and checkpoints rebuild the env they were made with."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.deep.dqn import DQN
from agents.deep.ppo import PPO
from agents.tabular.q_learning import QLearning, QLearningConfig
from agents.tabular.td_prediction import TD0Prediction
from mpgym import MpgymError


def test_random_walk_19_preset_has_19_states():
    agent = TD0Prediction("mpgym/RandomWalk-v0", TD0Prediction.PRESETS["random-walk-19"])
    assert agent.n_states == 21  # 19 chain states and the two terminal ends
    assert agent.env.unwrapped.spec.kwargs["n_states"] == 19


def test_frozenlake_not_slippery_round_trips(tmp_path):
    cfg = QLearningConfig(env_kwargs={"is_slippery": False}, episodes=300)
    agent = QLearning("FrozenLake-v1", cfg).learn(progress_bar=False)
    agent.save(tmp_path)
    loaded = QLearning.load(tmp_path)
    assert loaded.config.env_kwargs == {"is_slippery": False}
    assert loaded.env.unwrapped.spec.kwargs["is_slippery"] is False
    # a deterministic map: the action moves where it says (slippery would move sideways)
    env = loaded.env.unwrapped
    assert all(len(env.P[s][a]) == 1 for s in range(16) for a in range(4))


def test_env_made_by_gym_make_is_recorded_and_rebuilt(tmp_path):
    env = gym.make("FrozenLake-v1", map_name="8x8", is_slippery=False)
    agent = QLearning(env, QLearningConfig(episodes=5))
    assert agent.config.env_kwargs == {"map_name": "8x8", "is_slippery": False}
    agent.learn(progress_bar=False).save(tmp_path)
    assert QLearning.load(tmp_path).n_states == 64


def test_unrebuildable_env_needs_env_at_load(tmp_path):
    from envs.random_walk import RandomWalkEnv

    env = RandomWalkEnv(n_states=7)  # built by hand: no id and kwargs rebuild it
    agent = QLearning(env, QLearningConfig(episodes=5)).learn(progress_bar=False)
    assert agent.config.env_id == "RandomWalkEnv" and not agent.env_rebuildable
    agent.save(tmp_path)
    with pytest.raises(MpgymError, match="pass that env to load"):
        QLearning.load(tmp_path)
    loaded = QLearning.load(tmp_path, env=RandomWalkEnv(n_states=7))
    np.testing.assert_array_equal(loaded.q, agent.q)


def test_deep_agents_pass_env_kwargs_to_vector_and_single_envs(tmp_path):
    torch.set_num_threads(1)
    cfg = dataclasses.replace(PPO.Config(), env_id="CartPole-v1", n_envs=2, n_steps=8,
                              hidden=(8,), env_kwargs={"sutton_barto_reward": True})
    agent = PPO("CartPole-v1", cfg).learn(16, progress_bar=False)
    assert agent.vec_env.unwrapped._sutton_barto_reward is True
    dqn = DQN("CartPole-v1", dataclasses.replace(DQN.Config(), hidden=(8,),
                                                 env_kwargs={"sutton_barto_reward": True}))
    assert dqn.env.unwrapped._sutton_barto_reward is True
    dqn.save(tmp_path)
    assert DQN.load(tmp_path).env.unwrapped._sutton_barto_reward is True


@pytest.mark.parametrize("bad, message", [
    ({"env_kwargs": "[1, 2]"}, "QLearningConfig.env_kwargs must be an object"),
    ({"env_kwargs": {"x": float("nan")}}, "must hold JSON values"),
    ({"gamma": "0.9"}, "QLearningConfig.gamma must be a finite number"),
    ({"episodes": 1.5}, "QLearningConfig.episodes must be a whole number"),
])
def test_bad_config_values_get_one_clear_error(bad, message):
    with pytest.raises(MpgymError, match=message):
        QLearning("FrozenLake-v1", dataclasses.replace(QLearningConfig(), **bad))


def test_tabular_error_recommends_ids_that_exist():
    with pytest.raises(MpgymError) as err:
        QLearning("CartPole-v1")
    msg = str(err.value)
    named = [w.strip("(),.") for w in msg.split() if "-v" in w and w[0].isupper()]
    assert named and "Taxi-v3" not in msg
    for env_id in named:
        if env_id != "CartPole-v1":
            assert env_id in gym.registry, env_id
