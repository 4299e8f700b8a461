"""Reward normalisation with one env stays finite; the NaN check sees statistics and weights."""

import dataclasses

import numpy as np
import pytest
import torch

from agents.deep.a2c import A2C
from agents.deep.dqn import DQN
from agents.deep.ppo import PPO
from mpgym import MpgymError


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("cls", [PPO, A2C], ids=lambda c: c.name)
def test_reward_normalisation_with_one_env_stays_finite(cls):
    # CartPole's own vector env resets a finished episode on the next step (next-step
    # autoreset); with one env that step has no transition at all.
    cfg = dataclasses.replace(cls.Config(), env_id="CartPole-v1", n_envs=1, n_steps=64,
                              hidden=(16,), normalize_reward=True, normalize_obs=True)
    agent = cls("CartPole-v1", cfg).learn(640, progress_bar=False)
    assert agent.num_episodes >= 5  # several reset-only steps happened
    assert np.isfinite(agent.ret_rms.var) and np.isfinite(agent.ret_rms.mean)
    assert np.isfinite(agent.obs_rms.var).all()
    for p in agent.policy.parameters():
        assert torch.isfinite(p).all()


def test_nan_statistics_are_named():
    cfg = dataclasses.replace(PPO.Config(), n_envs=2, n_steps=16, batch_size=16, n_epochs=1,
                              hidden=(8,), normalize_reward=True)
    agent = PPO("CartPole-v1", cfg)
    agent.ret_rms.var = np.float64("nan")
    with pytest.raises(MpgymError, match=r"reward normalisation statistics \(ret_rms\) became "
                                         "non-finite"):
        agent.learn(32, progress_bar=False)


@pytest.mark.parametrize("cls", [PPO, DQN], ids=lambda c: c.name)
def test_nan_parameters_are_named(cls):
    kw = dict(hidden=(8,))
    if cls is DQN:
        kw.update(learning_starts=10, train_freq=8, gradient_steps=1, batch_size=8)
    else:
        kw.update(n_envs=2, n_steps=16, batch_size=16, n_epochs=1)
    agent = cls("CartPole-v1", dataclasses.replace(cls.Config(), **kw))
    module = agent.q if cls is DQN else agent.policy
    with torch.no_grad():
        next(module.parameters())[0, 0] = float("inf")
    with pytest.raises(MpgymError, match=r"network parameter .* became non-finite"):
        agent.learn(64, progress_bar=False)


@pytest.mark.parametrize("bad", [float("nan"), float("-inf")])
def test_nan_check_names_the_tensor_that_holds_it(bad):
    agent = DQN("CartPole-v1", dataclasses.replace(DQN.Config(), hidden=(8, 8)))
    agent.check_finite_state("now")  # all finite: silent
    with torch.no_grad():
        agent.q_target.plain_mlp[2].bias[3] = bad  # a later tensor of the second module
    with pytest.raises(MpgymError, match=r"network parameter q_target\.\S*bias became "
                                         "non-finite .* now"):
        agent.check_finite_state("now")


def test_nan_check_passes_finite_weights_whose_norm_overflows():
    # the fast path's per-tensor norm overflows float32 here; every value is still finite
    agent = DQN("CartPole-v1", dataclasses.replace(DQN.Config(), hidden=(8,)))
    with torch.no_grad():
        weight = next(agent.q.parameters())
        weight[0, :2] = 3e38
    assert not torch.isfinite(torch.linalg.vector_norm(weight))
    agent.check_finite_state("now")


def test_nan_check_sees_a_target_sync_after_skipping_the_unchanged_target():
    # each check skips a tensor not written in place since it last passed (the target
    # between syncs); a sync that copies a non-finite online weight into it is still seen
    agent = DQN("CartPole-v1", dataclasses.replace(DQN.Config(), hidden=(8,)))
    agent.check_finite_state("now")
    target = next(agent.q_target.parameters())
    version = target._version
    with torch.no_grad():
        next(agent.q.parameters())[0, 0] = float("nan")
    with pytest.raises(MpgymError, match=r"network parameter q\.\S* became non-finite"):
        agent.check_finite_state("now")
    with torch.no_grad():
        next(agent.q.parameters())[0, 0] = 0.0
    agent.check_finite_state("now")
    with torch.no_grad():
        next(agent.q.parameters())[0, 1] = float("inf")
    agent.update_target()
    assert target._version != version
    with torch.no_grad():
        next(agent.q.parameters())[0, 1] = 0.0
    with pytest.raises(MpgymError, match=r"network parameter q_target\.\S* became non-finite"):
        agent.check_finite_state("now")
