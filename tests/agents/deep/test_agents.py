"""The agent API of the deep agents: save/load, bad input, truncation handling, Ctrl-C."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.deep.a2c import A2C
from agents.deep.dqn import DQN
from agents.deep.ppo import PPO
from agents.deep.reinforce import REINFORCE
from mpgym import CheckpointError, MpgymError

ALGOS = [DQN, REINFORCE, A2C, PPO]


@pytest.fixture(autouse=True)
def one_thread():
    # Small networks: a second thread only contends (tens of times slower on a loaded machine).
    torch.set_num_threads(1)


def tiny(cls, env_id="CartPole-v1", **kw):
    cfg = cls.PRESETS.get(env_id, cls.Config(env_id=env_id))
    small = {"hidden": (16,)}
    if cls is DQN:
        small.update(learning_starts=50, train_freq=16, gradient_steps=2, batch_size=16)
    if cls in (A2C, PPO):
        small.update(n_envs=2, n_steps=16)
    if cls is PPO:
        small.update(batch_size=16, n_epochs=2)
    return dataclasses.replace(cfg, env_id=env_id, **{**small, **kw})


class ConstEnv(gym.Env):
    """Counter observation; ends after ``horizon`` steps (terminated) unless a TimeLimit cuts it."""

    def __init__(self, obs_space=None, reward=1.0, horizon=100, action_space=None):
        self.observation_space = obs_space or gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = action_space or gym.spaces.Discrete(2)
        self.reward, self.horizon, self.t = reward, horizon, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return np.full(self.observation_space.shape, self.t, dtype=self.observation_space.dtype)

    def step(self, action):
        self.t += 1
        return self._obs(), self.reward, self.t >= self.horizon, False, {}


@pytest.mark.parametrize("cls", ALGOS, ids=lambda c: c.name)
def test_save_load_gives_identical_actions(cls, tmp_path):
    agent = cls("CartPole-v1", tiny(cls)).learn(400, progress_bar=False)
    path = agent.save(tmp_path / "agent.safetensors")
    loaded = cls.load(path)
    obs = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    np.testing.assert_array_equal(agent.predict(obs)[0], loaded.predict(obs)[0])
    a, state = loaded.predict(obs[0])
    assert state is None and np.ndim(a) == 0
    assert loaded.config == agent.config and loaded.num_timesteps == agent.num_timesteps


@pytest.mark.parametrize("cls", ALGOS, ids=lambda c: c.name)
def test_loading_another_algorithms_checkpoint_is_refused(cls, tmp_path):
    other = PPO if cls is not PPO else DQN
    path = other("CartPole-v1", tiny(other)).save(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match=f"expected '{cls.name}'"):
        cls.load(path)


@pytest.mark.parametrize("cls", [REINFORCE, A2C, PPO], ids=lambda c: c.name)
def test_box_actions_give_gaussian_actions_within_bounds(cls):
    agent = cls("Pendulum-v1", tiny(cls, "Pendulum-v1")).learn(200, progress_bar=False)
    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    act, _ = agent.predict(obs, deterministic=False)
    assert act.shape == (8, 1) and np.all(np.abs(act) <= 2.0)


def test_dqn_refuses_box_actions():
    with pytest.raises(MpgymError, match="Discrete action space.*Box"):
        DQN("Pendulum-v1")


@pytest.mark.parametrize("cls", ALGOS, ids=lambda c: c.name)
def test_image_observations_are_refused_with_a_clear_message(cls):
    env = ConstEnv(obs_space=gym.spaces.Box(0, 255, (8, 8, 3), np.uint8))
    with pytest.raises(MpgymError, match="vector observations.*FlattenObservation"):
        cls(env, tiny(cls, n_envs=1) if cls in (A2C, PPO) else tiny(cls))


@pytest.mark.parametrize("cls", ALGOS, ids=lambda c: c.name)
def test_nan_rewards_are_reported(cls):
    env = ConstEnv(reward=float("nan"))
    cfg = tiny(cls, n_envs=1) if cls in (A2C, PPO) else tiny(cls)
    with pytest.raises(MpgymError, match="non-finite reward"):
        cls(env, cfg).learn(50, progress_bar=False)


def test_nan_observations_are_reported():
    class NanObs(ConstEnv):
        def _obs(self):
            return np.full((1,), np.nan, np.float32)

    with pytest.raises(MpgymError, match="NaN"):
        DQN(NanObs(), tiny(DQN)).learn(10, progress_bar=False)


def test_discrete_observations_are_one_hot_encoded():
    agent = DQN("FrozenLake-v1", tiny(DQN, "FrozenLake-v1")).learn(200, progress_bar=False)
    assert agent.encoder.dim == 16
    np.testing.assert_array_equal(agent.preprocess(3)[0], np.eye(16, dtype=np.float32)[3])
    assert agent.predict(np.array([0, 5]))[0].shape == (2,)


def test_dqn_stores_truncation_as_non_terminal_with_final_obs():
    env = gym.wrappers.TimeLimit(ConstEnv(horizon=5), max_episode_steps=3)
    agent = DQN(env, tiny(DQN, learning_starts=10_000)).learn(7, progress_bar=False)
    buf = agent.buffer
    # steps 1..3 of the first episode, truncated at the 3rd: next_obs 3, not the reset obs 0
    np.testing.assert_array_equal(buf.next_obs[:4, 0], [1, 2, 3, 1])
    np.testing.assert_array_equal(buf.terminated[:7], 0)
    env2 = ConstEnv(horizon=2)
    agent2 = DQN(env2, tiny(DQN, learning_starts=10_000)).learn(4, progress_bar=False)
    np.testing.assert_array_equal(agent2.buffer.terminated[:4], [0, 1, 0, 1])


def test_onpolicy_rollout_bootstraps_truncation_from_the_final_observation():
    env = gym.wrappers.TimeLimit(ConstEnv(horizon=100), max_episode_steps=3)
    agent = PPO(env, tiny(PPO, n_envs=1, n_steps=8, env_id="x"))
    from agents.deep.base import EpisodeTracker
    from agents.deep.buffers import RolloutBuffer

    agent.vec_env = agent.make_vec_env()
    raw, _ = agent.vec_env.reset(seed=0)
    agent._obs = agent._encode_step(raw)
    buf = RolloutBuffer(8, 1, 1, (), True)
    agent.collect_rollout(buf, EpisodeTracker(1), {}, None)
    with torch.no_grad():
        v = lambda x: agent.policy.value(torch.tensor([[float(x)]])).item()  # noqa: E731
    np.testing.assert_array_equal(buf.obs[:, 0, 0], [0, 1, 2, 0, 1, 2, 0, 1])
    np.testing.assert_array_equal(buf.dones[:, 0], [0, 0, 1, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(buf.terminated[:, 0], 0)
    assert buf.next_values[2, 0] == pytest.approx(v(3), abs=1e-6)  # final obs 3, not reset obs 0
    assert buf.next_values[1, 0] == pytest.approx(v(2), abs=1e-6)


def test_run_dir_gets_config_metrics_curve_and_checkpoint(tmp_run):
    agent = PPO("CartPole-v1", tiny(PPO), run_dir=tmp_run).learn(2000, progress_bar=False)
    agent.save(tmp_run.path)
    for name in ("config.json", "metrics.csv", "learning_curve.png", "checkpoint.safetensors"):
        assert (tmp_run.path / name).exists(), name
    assert tmp_run.read_config()["kind"] == "ppo"
    assert agent.history[0]["return"] > 0


def test_ctrl_c_leaves_a_loadable_checkpoint(tmp_run):
    def interrupt(local):
        if local["self"].num_timesteps >= 100:
            raise KeyboardInterrupt

    agent = DQN("CartPole-v1", tiny(DQN), run_dir=tmp_run)
    with pytest.raises(KeyboardInterrupt):
        agent.learn(1000, callback=interrupt, progress_bar=False)
    loaded = DQN.load(tmp_run.path)
    assert loaded.num_timesteps == 100
    obs = np.zeros((3, 4), np.float32)
    np.testing.assert_array_equal(loaded.predict(obs)[0], agent.predict(obs)[0])


def test_callback_returning_false_stops_learning():
    agent = DQN("CartPole-v1", tiny(DQN))
    agent.learn(1000, callback=lambda local: local["self"].num_timesteps < 30, progress_bar=False)
    assert agent.num_timesteps == 30


def test_same_seed_same_result():
    a = PPO("CartPole-v1", tiny(PPO)).learn(300, progress_bar=False)
    b = PPO("CartPole-v1", tiny(PPO)).learn(300, progress_bar=False)
    sa, sb = a.policy.state_dict(), b.policy.state_dict()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], msg=k)


def test_dueling_head_and_polyak_update():
    agent = DQN("CartPole-v1", tiny(DQN, dueling=True, tau=0.5, hidden=(8, 8)))
    q = agent.q(torch.zeros(2, 4))
    assert q.shape == (2, 2)
    with torch.no_grad():
        for p in agent.q.parameters():
            p.add_(1.0)
    before = [p.clone() for p in agent.q_target.parameters()]
    agent.update_target()
    for b, t, s in zip(before, agent.q_target.parameters(), agent.q.parameters(), strict=False):
        torch.testing.assert_close(t, 0.5 * b + 0.5 * s)


def test_registry_names():
    from agents.registry import get_algorithm

    assert get_algorithm("dqn") is DQN and get_algorithm("ppo") is PPO
    assert get_algorithm("a2c") is A2C and get_algorithm("reinforce") is REINFORCE
    for cls in ALGOS:
        assert cls.PRESETS["CartPole-v1"] == cls.Config()
        assert {"Acrobot-v1", "MountainCar-v0", "Pendulum-v1"} <= set(cls.PRESETS) or cls is DQN


def test_dqn_numpy_greedy_action_matches_the_q_network():
    agent = DQN("CartPole-v1", tiny(DQN, hidden=(32, 32)))
    greedy = agent.greedy_action_fn()
    obs = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    with torch.no_grad():
        for p in agent.q.parameters():  # in-place updates (as the optimiser makes) are seen
            p.mul_(2.0)
        expected = agent.q(torch.from_numpy(obs)).argmax(1).numpy()
    np.testing.assert_array_equal([greedy(o) for o in obs], expected)
    dueling = DQN("CartPole-v1", tiny(DQN, dueling=True))
    with torch.no_grad():
        expected = dueling.q(torch.from_numpy(obs)).argmax(1).numpy()
    np.testing.assert_array_equal([dueling.greedy_action_fn()(o) for o in obs], expected)


@pytest.mark.parametrize(
    ("hidden", "loss", "double"),
    [((16,), "huber", True), ((16, 16), "huber", True), ((), "mse", False), ((8, 8), "mse", True)],
)
def test_dqn_train_round_matches_step_by_step_autograd_reference(hidden, loss, double):
    """Hand-written backward pass and batched target values == autograd, step by step."""
    import torch.nn.functional as F

    from agents.deep.common import dqn_targets

    cfg = tiny(
        DQN, batch_size=8, target_update_interval=3, hidden=hidden, loss=loss, double_dqn=double
    )
    a, b = DQN("CartPole-v1", cfg), DQN("CartPole-v1", cfg)
    b.q.load_state_dict(a.q.state_dict())
    b.q_target.load_state_dict(a.q_target.state_dict())
    rng = np.random.default_rng(0)
    for _ in range(100):
        o, n, act = rng.normal(size=4), rng.normal(size=4), int(rng.integers(2))
        a.buffer.add(o, act, 1.0, n, False)
        b.buffer.add(o, act, 1.0, n, False)
    a.num_updates = b.num_updates = 1  # a target update falls inside the round
    assert a._mlp_layers() is not None  # the hand-written backward pass is the one tested
    a.train_round(7)
    idx = b.buffer.sample_indices(7 * 8, b.rng).reshape(7, -1)
    for g in range(7):
        i = idx[g]
        obs, nxt = torch.from_numpy(b.buffer.obs[i]), torch.from_numpy(b.buffer.next_obs[i])
        with torch.no_grad():
            y = dqn_targets(
                torch.from_numpy(b.buffer.rewards[i]),
                torch.from_numpy(b.buffer.terminated[i]),
                b.q_target(nxt),
                b.config.gamma,
                b.q(nxt) if double else None,
            )
        q_sa = b.q(obs).gather(1, torch.from_numpy(b.buffer.actions[i])[:, None]).squeeze(1)
        td = F.smooth_l1_loss(q_sa, y) if loss == "huber" else F.mse_loss(q_sa, y)
        b.optimizer.zero_grad()
        td.backward()
        torch.nn.utils.clip_grad_norm_(b.q.parameters(), b.config.max_grad_norm)
        b.optimizer.step()
        b.num_updates += 1
        if b.num_updates % 3 == 0:
            b.update_target()
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_categorical_evaluate_matches_the_reference_formulas():
    from agents.deep.common import categorical_entropy, categorical_log_prob
    from agents.deep.networks import ActorCritic

    torch.manual_seed(0)
    pi = ActorCritic(4, 3, discrete=True, hidden=(8,))
    obs, actions = torch.randn(16, 4) * 50, torch.randint(0, 3, (16,))
    lp, ent = pi.evaluate(obs, actions)
    logits = pi.actor(obs)
    torch.testing.assert_close(lp, categorical_log_prob(logits, actions))
    torch.testing.assert_close(ent, categorical_entropy(logits))
