"""Learning tests with fixed seeds and step budgets (slow: run by `make test-all`)."""

import dataclasses

import numpy as np
import pytest
import torch

from agents.common import evaluate_policy
from agents.deep.a2c import A2C
from agents.deep.dqn import DQN
from agents.deep.ppo import PPO
from agents.deep.reinforce import REINFORCE


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def score(agent, env_id, n=20):
    return evaluate_policy(agent, env_id, n, seed=12345).mean_return


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cls", "steps", "overrides"),
    [
        (DQN, 50_000, {}),
        (PPO, 50_000, {}),
        (A2C, 500_000, {}),
        (REINFORCE, 100_000, {}),
    ],
    ids=["dqn", "ppo", "a2c", "reinforce"],
)
def test_cartpole_reaches_195(cls, steps, overrides):
    config = dataclasses.replace(cls.Config(seed=1), total_timesteps=steps, **overrides)
    agent = cls("CartPole-v1", config).learn(progress_bar=False)
    assert score(agent, "CartPole-v1") >= 195


@pytest.mark.slow
def test_gaussian_policy_improves_pendulum_over_random():
    env_id = "Pendulum-v1"
    agent = PPO(env_id, dataclasses.replace(PPO.PRESETS[env_id], seed=0, total_timesteps=60_000))
    space = agent.env.action_space
    rng = np.random.default_rng(0)
    random_return = evaluate_policy(
        lambda obs: rng.uniform(space.low, space.high), env_id, 20, seed=12345
    ).mean_return
    agent.learn(progress_bar=False)
    trained = score(agent, env_id)
    assert random_return < -1000  # about -1200 for uniform random torques
    assert trained > random_return + 400
