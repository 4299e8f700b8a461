"""Continuing training: ``learn(n, reset_num_timesteps=False)`` after save/load equals one call,
and the schedules run over the total budget as in stable-baselines3."""

import dataclasses

import numpy as np
import pytest
import torch

from agents.deep.a2c import A2C
from agents.deep.dqn import BUFFER_FILE, DQN
from agents.deep.ppo import PPO
from agents.deep.reinforce import REINFORCE
from mpgym import MpgymError


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def small(cls, **kw):
    """Tiny nets; schedules that do not depend on the call's budget, so 2k + 2k = 4k holds."""
    cfg = cls.Config(env_id="CartPole-v1", hidden=(16,))
    base = {}
    if cls is DQN:
        # learning_starts 700 and target updates every 8 gradient steps: a restarted
        # learning_starts or update count would change the parameters.
        base = dict(learning_starts=700, train_freq=16, gradient_steps=4, batch_size=16,
                    target_update_interval=8, lr_schedule="constant",
                    exploration_initial_eps=0.3, exploration_final_eps=0.3, buffer_size=10_000)
    elif cls in (A2C, PPO):
        base = dict(n_envs=2, n_steps=16, lr_schedule="constant")
        if cls is PPO:
            base.update(batch_size=16, n_epochs=2, clip_schedule="constant")
    return dataclasses.replace(cfg, **{**base, **kw})


def params(agent):
    return {k: torch.as_tensor(v).clone() for k, v in agent.state_dict().items()}


@pytest.mark.parametrize("cls, normalize", [(DQN, False), (PPO, True), (A2C, False)],
                         ids=["dqn", "ppo-normalised", "a2c"])
def test_two_halves_with_save_load_equal_one_call(cls, normalize, tmp_path):
    extra = dict(normalize_obs=True, normalize_reward=True) if normalize else {}
    cfg = small(cls, **extra)
    whole = cls("CartPole-v1", cfg).learn(2000, progress_bar=False)

    half = cls("CartPole-v1", cfg).learn(1000, progress_bar=False)
    if cls is DQN:
        half.save(tmp_path, include_buffer=True)
        assert (tmp_path / BUFFER_FILE).exists()
    else:
        half.save(tmp_path)
    resumed = cls.load(tmp_path)
    assert resumed.num_timesteps == half.num_timesteps
    # A rollout may end past a budget (next-step autoreset steps do not count): ask for the
    # rest of what the one call took, which ends on the same rollout boundary.
    resumed.learn(whole.num_timesteps - half.num_timesteps, progress_bar=False,
                  reset_num_timesteps=False)

    assert resumed.num_timesteps == whole.num_timesteps
    assert resumed.num_updates == whole.num_updates
    a, b = params(whole), params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    assert resumed.episode_returns == whole.episode_returns[len(half.episode_returns):]


def test_dqn_continues_schedules_as_sb3():
    cfg = dataclasses.replace(small(DQN), learning_starts=100, lr_schedule="linear",
                              exploration_initial_eps=1.0, exploration_final_eps=0.1,
                              exploration_fraction=0.5)
    agent = DQN("CartPole-v1", cfg).learn(1000, progress_bar=False)
    seen = []

    def record(loc):
        seen.append((agent.num_timesteps, loc["eps"], agent.optimizer.param_groups[0]["lr"]))

    agent.learn(1000, progress_bar=False, reset_num_timesteps=False, callback=record)
    # SB3: _total_timesteps = 1000 + 1000; epsilon at t = 1000 is half-way down the decay
    # that ends at 0.5 * 2000 = 1000 steps: the final value.
    t0, eps0, _ = seen[0]
    assert t0 == 1001 and eps0 == pytest.approx(0.1)
    # the learning rate is lr0 * (1 - t / 2000) at every training round (t: the step's index)
    t, _, lr = seen[-1]
    assert t == 2000 and lr == pytest.approx(cfg.learning_rate * (1 - 1999 / 2000))
    mid = [(t, lr) for t, _, lr in seen if t % cfg.train_freq == 0 and t <= 1500]
    t, lr = mid[-1]
    assert lr == pytest.approx(cfg.learning_rate * (1 - (t - 1) / 2000))
    # and with the default reset, epsilon starts again at 1
    seen.clear()
    agent.learn(100, progress_bar=False, callback=record)
    assert seen[0][1] == pytest.approx(1.0) and agent.num_timesteps == 100


@pytest.mark.parametrize("cls", [PPO, A2C], ids=lambda c: c.name)
def test_onpolicy_schedules_continue_as_sb3(cls):
    kw = dict(lr_schedule="linear")
    if cls is PPO:
        kw["clip_schedule"] = "linear"
    cfg = dataclasses.replace(small(cls), **kw)
    agent = cls("CartPole-v1", cfg).learn(640, progress_bar=False)
    lrs, starts = [], []
    orig_update, orig_collect = agent._update, agent.collect_rollout

    def spy_collect(*args):
        starts.append(agent.num_timesteps)
        return orig_collect(*args)

    def spy_update(batch, remaining):
        lrs.append((remaining, agent.optimizer.param_groups[0]["lr"]))
        return orig_update(batch, remaining)

    agent.collect_rollout, agent._update = spy_collect, spy_update
    start = agent.num_timesteps
    agent.learn(640, progress_bar=False, reset_num_timesteps=False)
    # SB3: progress_remaining = 1 - num_timesteps / (start + 640) (here at each rollout's start)
    assert starts[0] == start
    for t, (remaining, lr) in zip(starts, lrs, strict=True):
        assert remaining == pytest.approx(1 - t / (start + 640))
        assert lr == pytest.approx(cfg.learning_rate * remaining)
    assert lrs[0][0] == pytest.approx(0.5, abs=0.03) and lrs[-1][0] < 0.05


@pytest.mark.parametrize("cls", [DQN, PPO, A2C, REINFORCE], ids=lambda c: c.name)
def test_checkpoint_holds_optimizer_and_generators(cls, tmp_path):
    agent = cls("CartPole-v1", small(cls, **({"learning_starts": 100} if cls is DQN else {})))
    agent.learn(600, progress_bar=False)
    agent.save(tmp_path)
    loaded = cls.load(tmp_path)
    sa, sb = agent.optimizer.state_dict(), loaded.optimizer.state_dict()
    assert sa["state"].keys() == sb["state"].keys() and sa["state"]
    for i in sa["state"]:
        for k, v in sa["state"][i].items():
            torch.testing.assert_close(sb["state"][i][k], v)
    assert agent.rng.random() == loaded.rng.random()
    assert torch.equal(agent.torch_gen.get_state(), loaded.torch_gen.get_state())
    assert loaded.num_updates == agent.num_updates > 0


@pytest.mark.parametrize("cls", [DQN, PPO, REINFORCE], ids=lambda c: c.name)
def test_non_positive_budget_is_refused(cls):
    agent = cls("CartPole-v1", small(cls))
    for bad in (0, -5):
        with pytest.raises(MpgymError, match="total_timesteps must be a whole number >= 1"):
            agent.learn(bad, progress_bar=False)
    assert agent.num_timesteps == 0


def test_ctrl_c_checkpoint_continues(tmp_path):
    from mpgym.runs import RunDir

    cfg = small(DQN)
    whole = DQN("CartPole-v1", cfg).learn(2000, progress_bar=False)
    agent = DQN("CartPole-v1", cfg, run_dir=RunDir(tmp_path))

    def interrupt(loc):
        if agent.num_timesteps == 1000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        agent.learn(2000, progress_bar=False, callback=interrupt)
    assert (tmp_path / BUFFER_FILE).exists()
    agent.save(tmp_path)  # what the CLI's own Ctrl-C handler does next: keeps the buffer
    resumed = DQN.load(tmp_path)
    assert resumed.num_timesteps == 1000 and len(resumed.buffer) == 1000
    # schedules here are constant, so the rest of the budget reproduces the one-call run
    resumed.learn(1000, progress_bar=False, reset_num_timesteps=False)
    for k, v in params(whole).items():
        torch.testing.assert_close(params(resumed)[k], v, rtol=1e-5, atol=1e-6, msg=k)
    np.testing.assert_allclose(resumed.buffer.obs[:2000], whole.buffer.obs[:2000])
