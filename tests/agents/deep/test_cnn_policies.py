"""Pixel policies: CNN extractors, image and Dict encoders, frame stacks, MinAtar presets."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import FrameStackObservation

from agents.deep.a2c import A2C
from agents.deep.dqn import DQN, DQN_PRESETS
from agents.deep.features import (
    CNNExtractor,
    DictEncoder,
    ImageEncoder,
    make_extractor,
    resolve_policy,
)
from agents.deep.networks import ActorCritic
from agents.deep.ppo import PPO, PPO_PRESETS
from mpgym import MpgymError

ALGOS = [DQN, A2C, PPO]
DOT_ID = "mpgym-test/DotSide-v0"


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


class DotSide(gym.Env):
    """One-step bandit on a 10x10 image with one lit pixel: action 0 when it is in the left
    half, 1 in the right half; reward 1 for the right side, 0 otherwise (optimum 1, random 0.5).

    ``layout``: 'hwc' (uint8, 255 lit), 'chw' (uint8) or 'bool' (MinAtar-like (10, 10, 1)
    bool); 'dict' adds a 2-vector that always reads (1, -1) beside the image.
    """

    def __init__(self, layout="hwc", render_mode=None):
        self.layout = layout
        dtype = bool if layout == "bool" else np.uint8
        high = 1 if layout == "bool" else 255
        shape = (1, 10, 10) if layout == "chw" else (10, 10, 1)
        image = gym.spaces.Box(0, high, shape, dtype)
        self.observation_space = (gym.spaces.Dict(
            {"image": image, "vec": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)})
            if layout == "dict" else image)
        self.action_space = gym.spaces.Discrete(2)
        self.high, self.side = high, 0

    def _obs(self):
        self.side = int(self.np_random.integers(2))
        img = np.zeros((10, 10, 1), np.uint8)
        img[self.np_random.integers(10), self.np_random.integers(5) + 5 * self.side, 0] = self.high
        if self.layout == "chw":
            return img.transpose(2, 0, 1)
        if self.layout == "bool":
            return img.astype(bool)
        if self.layout == "dict":
            return {"image": img, "vec": np.array([1.0, -1.0], np.float32)}
        return img

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action):
        reward = float(int(action) == self.side)
        return self._obs(), reward, True, False, {}


class EndlessDotSide(DotSide):
    """DotSide without termination: only the time limit of its registration ends episodes."""

    def step(self, action):
        obs, reward, _, truncated, info = super().step(action)
        return obs, reward, False, truncated, info


ENDLESS_ID = "mpgym-test/EndlessDotSide-v0"
if DOT_ID not in gym.registry:
    gym.register(DOT_ID, entry_point=DotSide)
    gym.register(ENDLESS_ID, entry_point=EndlessDotSide, max_episode_steps=3)


def dot_batch(layout="hwc", n=200, seed=1):
    """``n`` observations of DotSide and the right actions."""
    env = DotSide(layout)
    env.reset(seed=seed)
    obs, sides = [], []
    for _ in range(n):
        o = env._obs()
        obs.append(o)
        sides.append(env.side)
    if layout == "dict":
        return {k: np.stack([o[k] for o in obs]) for k in obs[0]}, np.array(sides)
    return np.stack(obs), np.array(sides)


def tiny(cls, layout="hwc", **kw):
    base = {"policy": "auto", "features": "minatar", "hidden": (), "seed": 0}
    if cls is DQN:
        base.update(learning_rate=1e-3, learning_starts=64, train_freq=4, gradient_steps=2,
                    batch_size=32, target_update_interval=16, exploration_fraction=0.3)
    else:
        base.update(n_envs=4, n_steps=8, learning_rate=3e-3, lr_schedule="constant")
    if cls is PPO:
        base.update(batch_size=32, n_epochs=4)
    return cls.Config(env_id=DOT_ID, env_kwargs={"layout": layout}, **{**base, **kw})


# -- extractors and encoders --------------------------------------------------------------------
SPACES = {
    "hwc-uint8": (gym.spaces.Box(0, 255, (40, 40, 3), np.uint8), (3, 40, 40)),
    "chw-uint8": (gym.spaces.Box(0, 255, (3, 40, 40), np.uint8), (3, 40, 40)),
    "gray-2d": (gym.spaces.Box(0, 255, (40, 40), np.uint8), (1, 40, 40)),
    "minatar-bool": (gym.spaces.Box(0.0, 1.0, (10, 10, 4), bool), (4, 10, 10)),
    "stacked-hwc": (gym.spaces.Box(0.0, 1.0, (3, 10, 10, 4), bool), (12, 10, 10)),
    "stacked-chw": (gym.spaces.Box(0, 255, (4, 1, 40, 40), np.uint8), (4, 40, 40)),
}


@pytest.mark.parametrize("name", SPACES)
@pytest.mark.parametrize("kind", ["nature", "minatar"])
def test_extractor_output_shapes(name, kind):
    space, chw = SPACES[name]
    enc = ImageEncoder(space, "test")
    assert enc.layout.chw == chw and enc.dim == np.prod(chw)
    space.seed(0)
    batch = np.stack([space.sample() for _ in range(3)])
    x = enc(batch)
    assert x.shape == (3, enc.dim) and x.dtype == np.float32
    assert enc.is_batch(batch) and not enc.is_batch(batch[0])
    assert enc(batch[0]).shape == (1, enc.dim)
    if kind == "nature" and min(chw[1:]) < 36:
        with pytest.raises(MpgymError, match=r"at least 36x36.*features='minatar'"):
            CNNExtractor(enc.layout, kind, "test")
        return
    ext = CNNExtractor(enc.layout, kind, "test")
    out = ext(torch.from_numpy(x))
    assert out.shape == (3, {"nature": 512, "minatar": 128}[kind])
    # the unflattened [B, C, H, W] images give the same features
    torch.testing.assert_close(ext(torch.from_numpy(x).reshape(3, *chw)), out)


def test_nature_cnn_layers_follow_mnih_2015():
    ext = CNNExtractor(ImageEncoder(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), "t").layout,
                       "nature", "t")
    convs = [m for m in ext.cnn if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (8, 8), (4, 4)), (64, (4, 4), (2, 2)), (64, (3, 3), (1, 1))]
    fc = [m for m in ext.cnn if isinstance(m, torch.nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fc] == [(64 * 7 * 7, 512)]


def test_minatar_cnn_layers_follow_young_tian_2019():
    ext = CNNExtractor(ImageEncoder(SPACES["minatar-bool"][0], "t").layout, "minatar", "t")
    convs = [m for m in ext.cnn if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(16, (3, 3), (1, 1))]
    fc = [m for m in ext.cnn if isinstance(m, torch.nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fc] == [(16 * 8 * 8, 128)]


def test_images_are_transposed_channel_first_and_scaled():
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    enc = ImageEncoder(SPACES["hwc-uint8"][0], "t")
    x = enc(hwc)
    np.testing.assert_array_equal(x.reshape(2, 3, 40, 40), hwc.transpose(0, 3, 1, 2))  # raw values
    ext = CNNExtractor(enc.layout, "nature", "t")
    assert ext.scale == pytest.approx(1 / 255)
    expected = ext.cnn(torch.from_numpy(hwc.transpose(0, 3, 1, 2).astype(np.float32) / 255))
    torch.testing.assert_close(ext(torch.from_numpy(x)), expected)
    # MinAtar's booleans: 0/1 floats, not scaled
    boolean = rng.random((2, 10, 10, 4)) < 0.3
    enc_b = ImageEncoder(SPACES["minatar-bool"][0], "t")
    np.testing.assert_array_equal(enc_b(boolean).reshape(2, 4, 10, 10),
                                  boolean.transpose(0, 3, 1, 2).astype(np.float32))
    assert CNNExtractor(enc_b.layout, "minatar", "t").scale == 1.0


def test_dict_encoder_and_multi_input_extractor():
    space = gym.spaces.Dict({"image": SPACES["minatar-bool"][0],
                             "vec": gym.spaces.Box(-1, 1, (3,), np.float32)})
    assert resolve_policy("auto", space) == "multi_input"
    enc = DictEncoder(space, "t")
    assert enc.dim == 400 + 3
    space.seed(0)
    obs = [space.sample() for _ in range(5)]
    batch = {k: np.stack([o[k] for o in obs]) for k in ("image", "vec")}
    x = enc(batch)
    assert enc.is_batch(batch) and not enc.is_batch(obs[0])
    np.testing.assert_array_equal(x[:, 400:], batch["vec"])
    np.testing.assert_array_equal(x[:, :400].reshape(5, 4, 10, 10),
                                  batch["image"].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(enc(obs[0]), x[:1])
    ext = make_extractor(enc, "minatar", "t")
    out = ext(torch.from_numpy(x))
    assert ext.out_dim == 128 + 3 and out.shape == (5, 131)
    torch.testing.assert_close(out[:, 128:], torch.from_numpy(batch["vec"]))  # vectors as is


def test_frame_stack_order_is_oldest_first():
    class Counter(gym.Env):  # frame t is an image filled with t
        observation_space = gym.spaces.Box(0, 255, (10, 10, 2), np.uint8)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            self.t = 0
            return np.full((10, 10, 2), self.t, np.uint8), {}

        def step(self, action):
            self.t += 1
            return np.full((10, 10, 2), self.t, np.uint8), 0.0, False, False, {}

    env = FrameStackObservation(Counter(), stack_size=3)
    env.reset()
    for _ in range(4):
        obs, *_ = env.step(0)
    assert obs.shape == (3, 10, 10, 2)
    enc = ImageEncoder(env.observation_space, "t")
    assert enc.layout.chw == (6, 10, 10)
    x = enc(obs).reshape(6, 10, 10)
    # channels [2k, 2k + 2) hold frame k of the stack, oldest first: frames 2, 3, 4
    np.testing.assert_array_equal(x[:, 0, 0], [2, 2, 3, 3, 4, 4])
    agent = DQN(env, DQN.Config(policy="auto", features="minatar", hidden=()))
    assert agent.q.features.cnn[0].in_channels == 6


# -- refusals -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("space", "kw", "match"), [
    (gym.spaces.Box(-1, 1, (4,), np.float32), {"policy": "cnn"},
     r"CNN policy, which takes images.*Box\(-1.0, 1.0, \(4,\)"),
    (gym.spaces.Box(-1, 1, (2, 2, 2, 2, 2), np.float32), {"policy": "auto"},
     r"observation_space is Box.*\(2, 2, 2, 2, 2\)"),
    (gym.spaces.Discrete(3), {"policy": "cnn"}, r"image observations \(a Box\).*Discrete\(3\)"),
    (gym.spaces.Box(0, 255, (10, 10, 3), np.uint8), {"policy": "cnn", "features": "nature"},
     r"'nature' CNN needs images of at least 36x36.*10x10.*features='minatar'"),
    (gym.spaces.Box(0, 1, (2, 2, 1), np.float32), {"policy": "cnn", "features": "minatar"},
     r"at least 3x3 pixels.*2x2"),
    (gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (10, 10, 3), np.uint8),
                      "pair": gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(2)))}),
     {"policy": "multi_input"}, r"MultiBinary and Discrete members; member 'pair' is Tuple"),
    (gym.spaces.Box(0, 255, (10, 10, 3), np.uint8), {"policy": "multi_input"},
     r"multi_input policy, which takes Dict.*Box"),
    (gym.spaces.Box(0, 255, (10, 10, 3), np.uint8), {"policy": "mlp"},
     r"MLP policy.*vector observations.*policy='cnn'"),
])
@pytest.mark.parametrize("cls", ALGOS, ids=lambda c: c.name)
def test_observation_spaces_a_policy_cannot_take_are_refused(cls, space, kw, match):
    class Env(gym.Env):
        observation_space = space
        action_space = gym.spaces.Discrete(2)

    cfg = cls.Config(hidden=(), **kw, **({} if cls is DQN else {"n_envs": 1}))
    with pytest.raises(MpgymError, match=match):
        cls(Env(), cfg)


def test_dict_members_multibinary_flattened_and_discrete_one_hot():
    from agents.deep.features import DictEncoder

    space = gym.spaces.Dict({"visited": gym.spaces.MultiBinary(5),
                             "id": gym.spaces.Discrete(4, start=1),
                             "vec": gym.spaces.Box(-1, 1, (3,), np.float32)})
    enc = DictEncoder(space, "PPO")
    assert enc.dim == 5 + 4 + 3
    one = {"visited": np.array([1, 0, 0, 1, 0], np.int8), "id": np.int64(3),
           "vec": np.array([0.1, 0.2, 0.3], np.float32)}
    expected = {"visited": [1, 0, 0, 1, 0], "id": [0, 0, 1, 0], "vec": [0.1, 0.2, 0.3]}
    want = np.concatenate([np.float32(expected[p.key]) for p in enc.parts])[None]
    np.testing.assert_array_equal(enc(one), want)
    assert not enc.is_batch(one)
    batch = {k: np.stack([v, v]) for k, v in one.items()}
    assert enc.is_batch(batch)
    np.testing.assert_array_equal(enc(batch), np.concatenate([want, want]))
    with pytest.raises(MpgymError, match=r"'id' holds \[0\]; its Discrete space takes 1..4"):
        enc({**one, "id": np.int64(0)})


# -- learning, saving, acting ----------------------------------------------------------------------
BUDGET = {DQN: 600, A2C: 1024, PPO: 1024}


@pytest.mark.parametrize("cls", ALGOS, ids=lambda c: c.name)
def test_cnn_policies_learn_which_side_the_dot_is_on_and_save_load(cls, tmp_path):
    agent = cls(DOT_ID, tiny(cls)).learn(BUDGET[cls], progress_bar=False)
    obs, sides = dot_batch()
    actions, _ = agent.predict(obs)
    assert (actions == sides).mean() >= 0.9  # random: 0.5
    path = agent.save(tmp_path / "agent.safetensors",
                      **({"include_buffer": True} if cls is DQN else {}))
    loaded = cls.load(path)
    np.testing.assert_array_equal(loaded.predict(obs)[0], actions)
    assert loaded.config == agent.config
    if cls is DQN:  # the replay buffer of flattened images (uint8 pixels) comes back too
        assert agent.buffer.obs.dtype == loaded.buffer.obs.dtype == np.uint8
        np.testing.assert_array_equal(loaded.buffer.obs[:loaded.buffer.size],
                                      agent.buffer.obs[:agent.buffer.size])
    # continuing from the checkpoint
    loaded.learn(64, progress_bar=False, reset_num_timesteps=False)
    assert loaded.num_timesteps == agent.num_timesteps + 64


@pytest.mark.parametrize("layout", ["chw", "bool", "dict"])
@pytest.mark.parametrize("cls", ALGOS, ids=lambda c: c.name)
def test_other_layouts_train_and_round_trip(cls, layout, tmp_path):
    agent = cls(DOT_ID, tiny(cls, layout)).learn(128, progress_bar=False)
    obs, _ = dot_batch(layout, n=16)
    path = agent.save(tmp_path / "agent.safetensors")
    loaded = cls.load(path)
    np.testing.assert_array_equal(loaded.predict(obs)[0], agent.predict(obs)[0])
    one = {k: v[0] for k, v in obs.items()} if layout == "dict" else obs[0]
    assert np.ndim(agent.predict(one)[0]) == 0
    if cls is DQN:  # boolean and uint8 images are stored as uint8, a Dict as float32
        stored = agent.buffer.obs.dtype
        assert stored == (np.float32 if layout == "dict" else np.uint8)
        rows = np.arange(agent.buffer.size)
        np.testing.assert_array_equal(agent.buffer.gather_obs(rows).numpy(),
                                      agent.buffer.obs[rows].astype(np.float32))
        assert agent.buffer.gather_obs(rows).dtype == torch.float32


@pytest.mark.parametrize("cls", [A2C, PPO], ids=lambda c: c.name)
def test_truncated_dict_episodes_bootstrap_from_their_final_observation(cls):
    cfg = dataclasses.replace(tiny(cls, "dict"), env_id=ENDLESS_ID)
    agent = cls(ENDLESS_ID, cfg).learn(64, progress_bar=False)
    assert agent.num_episodes == 4 * (16 // 3)  # 4 envs x 16 steps, every episode cut at 3


def test_dqn_cnn_acts_through_numpy_and_matches_the_network():
    agent = DQN(DOT_ID, tiny(DQN)).learn(200, progress_bar=False)
    assert agent._mlp_layers() is None  # autograd update, not the hand-written MLP backward
    greedy = agent.greedy_action_fn()
    assert greedy.__name__ == "numpy_greedy"  # the CNN runs in NumPy (numpy_features)
    obs, _ = dot_batch(n=32)
    x = agent.preprocess(obs)
    with torch.no_grad():
        expected = agent.q(torch.from_numpy(x)).argmax(1).numpy()
    np.testing.assert_array_equal([greedy(row) for row in x], expected)
    np.testing.assert_array_equal(agent.predict(obs)[0], expected)


@pytest.mark.parametrize("cls", [A2C, PPO], ids=lambda c: c.name)
def test_onpolicy_cnn_acts_through_numpy_and_torch_with_one_feature_pass(cls):
    agent = cls(DOT_ID, tiny(cls))
    x = torch.from_numpy(agent.preprocess(dot_batch(n=8)[0]))
    # the rollout's NumPy path: the policy's log-probabilities and values of its own actions
    a_np, logp_np, v_np = agent.numpy_rollout_policy()(x.numpy())
    lp_t, _, v_t = agent.policy.evaluate_value(x, torch.from_numpy(a_np))
    np.testing.assert_allclose(logp_np, lp_t.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(v_np, v_t.detach().numpy(), rtol=1e-4, atol=1e-5)
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    a, logp, v = agent.policy.act_value(x, gen)
    gen.set_state(state)
    a2, logp2 = agent.policy.act(x, gen)
    torch.testing.assert_close((a, logp, v), (a2, logp2, agent.policy.value(x)), rtol=0, atol=0)
    lp, ent, val = agent.policy.evaluate_value(x, a)
    lp2, ent2 = agent.policy.evaluate(x, a)
    torch.testing.assert_close((lp, ent, val), (lp2, ent2, agent.policy.value(x)), rtol=0, atol=0)


@pytest.mark.parametrize("discrete", [True, False])
def test_mlp_policy_gives_the_same_values_through_the_shared_paths(discrete):
    torch.manual_seed(0)
    policy = ActorCritic(4, 2, discrete=discrete)
    assert policy.features is None
    x = torch.randn(6, 4)
    gen = torch.Generator().manual_seed(1)
    a, logp, v = policy.act_value(x, gen)
    gen.manual_seed(1)
    a2, logp2 = policy.act(x, gen)
    torch.testing.assert_close((a, logp, v), (a2, logp2, policy.value(x)), rtol=0, atol=0)
    lp, ent, val = policy.evaluate_value(x, a)
    torch.testing.assert_close((lp, ent, val), (*policy.evaluate(x, a), policy.value(x)),
                               rtol=0, atol=0)


# -- MinAtar ---------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*is out of date")  # Gymnasium on the '-v0' ids
@pytest.mark.parametrize("name", ["minatar-breakout", "minatar-space-invaders"])
def test_minatar_presets(name, tmp_path):
    pytest.importorskip("minatar")
    for presets, cls in ((DQN_PRESETS, DQN), (PPO_PRESETS, PPO)):
        cfg = presets[name]
        assert (cfg.policy, cfg.features, cfg.hidden, cfg.total_timesteps) == (
            "cnn", "minatar", (), 5_000_000)
        small = ({"learning_starts": 32, "buffer_size": 1_000} if cls is DQN
                 else {"n_envs": 2, "n_steps": 16, "batch_size": 16})
        agent = cls(cfg.env_id, dataclasses.replace(cfg, **small)).learn(64, progress_bar=False)
        assert agent.env.observation_space.dtype == bool
        assert agent.env.action_space.n == 6  # the paper's full action set
        loaded = cls.load(agent.save(tmp_path / f"{cls.name}.safetensors"))
        obs, _ = agent.env.reset(seed=3)
        assert loaded.predict(obs)[0] == agent.predict(obs)[0]
        assert loaded.config == agent.config
    dqn = DQN_PRESETS[name]
    assert (dqn.buffer_size, dqn.batch_size, dqn.target_update_interval, dqn.learning_starts,
            dqn.exploration_final_eps, dqn.optimizer, dqn.double_dqn) == (
        100_000, 32, 1_000, 5_000, 0.1, "rmsprop", False)
