"""The vectorised CartPole the actor-critics use, and next-step autoreset in their rollouts.

Gymnasium's ``CartPoleVectorEnv`` (the ``vector_entry_point`` of CartPole-v1) must be the same
MDP as ``gym.make("CartPole-v1")``: same dynamics, termination, reward and truncation at 500
steps. It autoresets on the *next* step, which the rollout must mask out.
"""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from agents.deep.a2c import A2C
from agents.deep.base import EpisodeTracker
from agents.deep.buffers import RolloutBuffer
from agents.deep.ppo import PPO
from mpgym.errors import MpgymError


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def balance(obs):
    """A controller that keeps the pole up for the whole 500 steps."""
    return int(obs[2] + 0.5 * obs[3] > 0)


@pytest.mark.parametrize("controller", ["random", "balance"])
def test_cartpole_vector_entry_point_is_the_single_env_mdp(controller):
    single = gym.make("CartPole-v1")
    vec = gym.make_vec("CartPole-v1", num_envs=1, vectorization_mode="vector_entry_point")
    assert type(vec).__name__ == "CartPoleVectorEnv"
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    rng = np.random.default_rng(0)
    obs, _ = single.reset(seed=0)
    vec.reset(seed=0)
    vec.unwrapped.state = np.array(single.unwrapped.state, dtype=np.float64).reshape(4, 1)
    steps = 0
    while True:
        a = int(rng.integers(2)) if controller == "random" else balance(obs)
        obs, r, term, trunc, _ = single.step(a)
        vobs, vr, vterm, vtrunc, _ = vec.step(np.array([a]))
        steps += 1
        np.testing.assert_allclose(vobs[0], obs, rtol=1e-6, atol=1e-7)
        assert (vr[0], vterm[0], vtrunc[0]) == (r, term, trunc)
        if term or trunc:
            break
    if controller == "balance":
        assert (steps, trunc, term) == (500, True, False)
    else:
        assert term and steps < 500
    # next step: a reset, not a transition (reward 0, no episode end, a fresh start state)
    vobs, vr, vterm, vtrunc, _ = vec.step(np.array([0]))
    assert (vr[0], vterm[0], vtrunc[0]) == (0.0, False, False)
    assert np.all(np.abs(vobs[0]) <= 0.05)


def cartpole_rollout(cls, vectorization, n_envs=4, n_steps=200):
    cfg = dataclasses.replace(
        cls.PRESETS["CartPole-v1"], seed=3, n_envs=n_envs, n_steps=n_steps, hidden=(8,)
    )
    cfg = dataclasses.replace(cfg, vectorization=vectorization)
    agent = cls("CartPole-v1", cfg)
    agent.vec_env = agent.make_vec_env()
    raw, _ = agent.vec_env.reset(seed=3)
    agent._obs = agent._encode_step(raw)
    buf, tracker = RolloutBuffer(n_steps, n_envs, 4, (), True), EpisodeTracker(n_envs)
    agent.collect_rollout(buf, tracker, {}, None)
    return agent, buf, tracker


def test_rollout_masks_the_reset_steps_of_next_step_autoreset():
    agent, buf, tracker = cartpole_rollout(PPO, "auto")
    assert type(agent.vec_env).__name__ == "CartPoleVectorEnv"
    ends = np.argwhere(buf.dones[:-1] * buf.valid[:-1])
    assert len(ends) > 10  # an untrained policy ends episodes quickly
    for t, i in ends:
        assert not buf.valid[t + 1, i]  # the step after an end only resets
        # V(s'_t) of the ending step is V(final observation), held at the reset step
        with torch.no_grad():
            v_final = agent.policy.value(torch.from_numpy(buf.obs[t + 1, i][None])).item()
        assert buf.next_values[t, i] == pytest.approx(v_final, abs=1e-6)
        assert buf.obs[t + 1, i, 0] != 0.0 and np.abs(buf.obs[t + 2, i]).max() <= 0.05
    assert (~buf.valid).sum() == len(ends)  # and no other step is masked
    # only transitions count: env steps, logged episode lengths, the batch
    assert agent.num_timesteps == buf.valid.sum()
    lengths = [row["length"] for row in agent.history]
    assert sum(lengths) + tracker.lengths.sum() == agent.num_timesteps
    assert all(row["return"] == row["length"] for row in agent.history)  # reward 1 per step
    batch = buf.finish(agent.config.gamma, agent.config.gae_lambda)
    assert batch.obs.shape[0] == buf.valid.sum()


def test_sync_vectorisation_keeps_every_step():
    agent, buf, _ = cartpole_rollout(PPO, "sync")
    assert isinstance(agent.vec_env, SyncVectorEnv)
    assert buf.valid.all() and agent.num_timesteps == buf.valid.size


@pytest.mark.parametrize("kind", ["async", "thread"])
def test_async_and_threaded_vectorisation_step_exactly_as_sync(kind):
    sync, sbuf, _ = cartpole_rollout(PPO, "sync", n_steps=100)
    asy, abuf, _ = cartpole_rollout(PPO, kind, n_steps=100)
    try:
        assert type(asy.vec_env).__name__ == {"async": "AsyncVectorEnv",
                                              "thread": "ThreadedVectorEnv"}[kind]
        np.testing.assert_array_equal(abuf.obs, sbuf.obs)
        np.testing.assert_array_equal(abuf.dones, sbuf.dones)
        np.testing.assert_array_equal(abuf.next_values, sbuf.next_values)  # finals bootstrapped
        # worker state cannot be checkpointed: continuing starts new episodes
        from agents.common.envs import snapshot_supported

        assert snapshot_supported(sync.vec_env)
        if kind == "async":
            assert not snapshot_supported(asy.vec_env) and asy._rollout_state() == ({}, {})
    finally:
        asy.close()
    assert asy.vec_env is None


@pytest.mark.parametrize("kind", ["async", "thread"])
def test_async_and_threaded_vectorisation_need_a_registered_id(kind):
    cfg = dataclasses.replace(PPO.PRESETS["CartPole-v1"], vectorization=kind, n_envs=2)
    agent = PPO(gym.make("CartPole-v1").unwrapped, cfg)
    with pytest.raises(MpgymError, match="registered id"):
        agent.make_vec_env()


@pytest.mark.parametrize("cls", [PPO, A2C])
def test_budget_counts_transitions_with_either_vectorisation(cls):
    small = {"n_envs": 4, "n_steps": 16, "hidden": (8,)} | ({"n_epochs": 1} if cls is PPO else {})
    for vectorization in ("auto", "sync"):
        cfg = dataclasses.replace(
            cls.PRESETS["CartPole-v1"], seed=0, vectorization=vectorization, **small
        )
        agent = cls("CartPole-v1", cfg).learn(1000, progress_bar=False)
        assert 1000 <= agent.num_timesteps < 1000 + 4 * 16
        assert agent.num_episodes > 20


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_numpy_rollout_policy_matches_the_torch_policy(activation):
    cfg = dataclasses.replace(PPO.PRESETS["CartPole-v1"], hidden=(16, 16), activation=activation)
    agent = PPO("CartPole-v1", cfg)
    with torch.no_grad():  # in-place changes (as the optimiser makes) are seen by the views
        for p in agent.policy.parameters():
            p.mul_(3.0)
    fast = agent.numpy_rollout_policy()
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    n = 20_000
    many = np.repeat(obs, n, axis=0)
    actions, log_probs, values = fast(many)
    with torch.no_grad():
        lp, _ = agent.policy.evaluate(torch.from_numpy(many), torch.from_numpy(actions))
        v = agent.policy.value(torch.from_numpy(obs)).numpy()
        probs = torch.softmax(agent.policy.actor(torch.from_numpy(obs)), -1).numpy()
    np.testing.assert_allclose(log_probs, lp.numpy(), atol=1e-5)
    np.testing.assert_allclose(values[::n], v, atol=1e-5)
    freq = (actions.reshape(6, n)[..., None] == np.arange(2)).mean(1)
    np.testing.assert_allclose(freq, probs, atol=4 * 0.5 / np.sqrt(n))
    assert agent.numpy_rollout_policy() is not None
    assert PPO("Pendulum-v1").numpy_rollout_policy() is None  # Gaussian: the torch path


@pytest.mark.parametrize("cls", [PPO, A2C])
@pytest.mark.parametrize("kind", ["sync", "thread"])
@pytest.mark.parametrize("process_threads", [1, 2])
def test_threaded_envs_roll_out_on_one_torch_thread_and_update_on_theirs(
        cls, kind, process_threads, monkeypatch):
    # the rollout and the update see their own torch thread counts; the process keeps its own
    seen = {"collect_rollout": [], "_update": []}

    def spying(name):
        orig = getattr(cls, name)

        def spy(self, *args, **kwargs):
            seen[name].append(torch.get_num_threads())
            return orig(self, *args, **kwargs)

        return spy

    for name in seen:
        monkeypatch.setattr(cls, name, spying(name))
    old = torch.get_num_threads()
    torch.set_num_threads(process_threads)
    try:
        cfg = dataclasses.replace(cls.PRESETS["CartPole-v1"], vectorization=kind, n_envs=4,
                                  n_steps=8)
        agent = cls("CartPole-v1", cfg).learn(64, progress_bar=False)
        threaded = kind == "thread" and agent.vec_env.n_threads > 1
        rollout = 1 if threaded else process_threads
        update = max(agent.vec_env.n_threads, process_threads) if threaded else process_threads
        assert len(seen["_update"]) >= 2 and len(seen["collect_rollout"]) >= 2
        assert set(seen["collect_rollout"]) == {rollout} and set(seen["_update"]) == {update}
        assert torch.get_num_threads() == process_threads
        agent.close()
    finally:
        torch.set_num_threads(old)
