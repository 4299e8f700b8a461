"""SAC and TD3: the squashed log-density, bounds, Polyak averaging, target smoothing, delayed
updates, entropy tuning, exact continuation, bad input, and (slow) learning on Pendulum-v1."""

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.common import evaluate_policy
from agents.deep.offpolicy import (
    BUFFER_FILE,
    TwinQ,
    clipped_double_q_target,
    polyak_update,
    scale_action,
    unscale_action,
)
from agents.deep.sac import SAC, SACConfig, squashed_log_prob
from agents.deep.td3 import TD3, TD3Config, smoothed_target_actions
from agents.registry import get_algorithm
from mpgym import CheckpointError, MpgymError

ALGOS = [SAC, TD3]


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def tiny(cls, env_id="Pendulum-v1", **kw):
    """Small networks and batches: a few hundred updates take a second."""
    base = dict(
        env_id=env_id, hidden=(32, 32), batch_size=32, learning_starts=100, buffer_size=5_000
    )
    return cls.Config(**{**base, **kw})


class BoxEnv(gym.Env):
    """Observation: the step count; action: a Box with asymmetric bounds; records actions."""

    def __init__(self, low=(0.0, -1.0), high=(5.0, 3.0), horizon=50):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(np.array(low, np.float32), np.array(high, np.float32))
        self.horizon, self.t, self.actions = horizon, 0, []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.actions.append(np.array(action))
        self.t += 1
        obs = np.array([self.t / self.horizon, 1.0], np.float32)
        return obs, -float(np.sum(np.square(action))), self.t >= self.horizon, False, {}


# --------------------------------------------------------------------------- the math


def test_squashed_log_prob_is_the_density_of_tanh_samples():
    """Change of variables: exp(log pi) integrates to 1 on (-1, 1) and matches a histogram."""
    mean, log_std = torch.tensor([0.7]), torch.tensor([math.log(1.3)])
    # the density on a fine grid of a = tanh(u), integrated over a
    a = torch.linspace(-1 + 1e-6, 1 - 1e-6, 200_001, dtype=torch.float64)
    u = torch.atanh(a).unsqueeze(-1)
    dens = squashed_log_prob(u, mean.double(), log_std.double()).exp()
    assert float(torch.trapezoid(dens, a)) == pytest.approx(1.0, abs=1e-3)
    # Monte Carlo: a histogram of tanh(u), u ~ N(mean, sigma^2)
    gen = torch.Generator().manual_seed(0)
    samples = torch.tanh(mean + log_std.exp() * torch.randn(400_000, generator=gen))
    hist, edges = np.histogram(samples.numpy(), bins=40, range=(-0.95, 0.95))
    width = edges[1] - edges[0]
    centers = torch.from_numpy((edges[:-1] + edges[1:]) / 2).float()
    expected = squashed_log_prob(torch.atanh(centers).unsqueeze(-1), mean, log_std).exp()
    np.testing.assert_allclose(hist / (len(samples) * width), expected.numpy(), rtol=0.05)


def test_squashed_log_prob_matches_torch_distributions_and_stays_finite():
    gen = torch.Generator().manual_seed(1)
    mean, log_std = torch.randn(64, 3, generator=gen), 0.3 * torch.randn(64, 3, generator=gen)
    u = mean + log_std.exp() * torch.randn(64, 3, generator=gen)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform()]
    )
    ref = dist.log_prob(torch.tanh(u).clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1)
    inside = torch.tanh(u).abs().amax(-1) < 0.999  # where the reference itself is exact
    torch.testing.assert_close(
        squashed_log_prob(u, mean, log_std)[inside], ref[inside], rtol=1e-4, atol=1e-4
    )
    # far in the tails tanh(u) rounds to +-1 in float32; the stable form stays finite
    big = torch.tensor([[30.0, -40.0]])
    assert torch.isfinite(squashed_log_prob(big, torch.zeros(1, 2), torch.zeros(1, 2))).all()


def test_polyak_update_closed_form():
    """After k updates towards a fixed source: ``s + (1 - tau)^k (t0 - s)``."""
    t0, s = torch.tensor([4.0, -2.0]), torch.tensor([1.0, 1.0])
    target, tau = [t0.clone()], 0.1
    for _ in range(7):
        polyak_update(target, [s], tau)
    torch.testing.assert_close(target[0], s + (1 - tau) ** 7 * (t0 - s))
    polyak_update(target, [s], 1.0)
    torch.testing.assert_close(target[0], s)


def test_target_smoothing_clips_noise_and_actions():
    mu = torch.tensor([[-0.9, 0.0, 0.8]]).expand(10_000, 3)
    noise = 10.0 * torch.randn(10_000, 3, generator=torch.Generator().manual_seed(0))
    a = smoothed_target_actions(mu, noise, 0.5)
    assert a.min() >= -1.0 and a.max() <= 1.0
    assert (a - mu).abs().max() <= 0.5 + 1e-6
    # unclipped where the noise is small and the sum stays inside
    small = torch.full((1, 3), 0.1)
    torch.testing.assert_close(smoothed_target_actions(mu[:1], small, 0.5), mu[:1] + small)


def test_clipped_double_q_target_and_action_scaling():
    y = clipped_double_q_target(
        torch.tensor([1.0, 1.0]),
        torch.tensor([0.0, 1.0]),
        torch.tensor([[3.0, 5.0], [2.0, 7.0]]),
        0.5,
    )
    torch.testing.assert_close(y, torch.tensor([2.0, 1.0]))
    low, high = np.array([0.0, -1.0]), np.array([5.0, 3.0])
    a = np.array([[-1.0, 1.0], [0.2, -0.4]])
    np.testing.assert_allclose(unscale_action(a, low, high), [[0.0, 3.0], [3.0, 0.2]])
    np.testing.assert_allclose(scale_action(unscale_action(a, low, high), low, high), a)


def test_twin_q_equals_two_separate_mlps():
    torch.manual_seed(0)
    q = TwinQ(3, 2, (8, 5))
    obs, act = torch.randn(7, 3), torch.randn(7, 2)
    out = q(obs, act)
    x = torch.cat([obs, act], -1)
    for i in range(2):
        h = x
        for j, (w, b) in enumerate(zip(q.weights, q.biases, strict=True)):
            h = h @ w[i] + b[i]
            h = torch.relu(h) if j < len(q.weights) - 1 else h
        torch.testing.assert_close(out[i], h.squeeze(-1))
    assert not torch.equal(q.weights[0][0], q.weights[0][1])  # independent initialisations


# --------------------------------------------------------------------------- the agents


@pytest.mark.parametrize("cls", ALGOS, ids=lambda c: c.name)
def test_actions_within_asymmetric_bounds(cls):
    env = BoxEnv()
    agent = cls(env, tiny(cls, learning_starts=60, train_freq=4, gradient_steps=2))
    agent.learn(300, progress_bar=False)
    taken = np.array(env.actions)
    assert taken.shape == (300, 2)
    assert (taken >= env.action_space.low - 1e-6).all()
    assert (taken <= env.action_space.high + 1e-6).all()
    assert taken[:, 0].max() - taken[:, 0].min() > 1.0  # the whole range is explored
    obs = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    for deterministic in (True, False):
        a, state = agent.predict(obs, deterministic=deterministic)
        assert state is None and a.shape == (64, 2)
        assert (a >= env.action_space.low).all() and (a <= env.action_space.high).all()
    assert agent.buffer.actions[: agent.buffer.size].max() <= 1.0  # stored scaled


def test_sac_target_critics_move_by_polyak_each_step():
    agent = SAC("Pendulum-v1", tiny(SAC, gradient_steps=1))
    agent.learn(101, progress_bar=False)  # one update at step 101
    before = [p.detach().clone() for p in agent.critic_target.parameters()]
    agent.train_round(1)
    tau = agent.config.tau
    for old, new, online in zip(
        before, agent.critic_target.parameters(), agent.critic.parameters(), strict=True
    ):
        torch.testing.assert_close(new, (1 - tau) * old + tau * online)


def test_td3_delays_actor_and_target_updates():
    agent = TD3("Pendulum-v1", tiny(TD3, policy_delay=3))
    agent.learn(100, progress_bar=False)  # learning_starts: no update yet
    assert agent.num_updates == 0
    actor_t = [p.detach().clone() for p in agent.actor_target.parameters()]
    actor = [p.detach().clone() for p in agent.actor.parameters()]
    agent.train_round(2)  # 2 critic steps: no actor step, targets unchanged
    assert all(torch.equal(a, b) for a, b in zip(actor, agent.actor.parameters(), strict=True))
    assert all(
        torch.equal(a, b) for a, b in zip(actor_t, agent.actor_target.parameters(), strict=True)
    )
    agent.train_round(8)  # 10 critic steps in all: actor steps at 3, 6, 9
    assert agent.num_updates == 10
    steps = {int(s["step"]) for s in agent.actor_optimizer.state_dict()["state"].values()}
    assert steps == {3}
    steps = {int(s["step"]) for s in agent.critic_optimizer.state_dict()["state"].values()}
    assert steps == {10}
    assert not all(
        torch.equal(a, b) for a, b in zip(actor_t, agent.actor_target.parameters(), strict=True)
    )


def _linears(seq):
    return [m for m in seq if isinstance(m, torch.nn.Linear)]


def _close(got, want):
    torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)


def _twin_into_sb3(twin, critic):
    """Copy our batched twin critics into SB3's two ``q_networks`` Sequentials."""
    with torch.no_grad():
        for i, q in enumerate(critic.q_networks):
            for lin, w, b in zip(_linears(q), twin.weights, twin.biases, strict=True):
                lin.weight.copy_(w[i].T)
                lin.bias.copy_(b[i, 0])


def _assert_twin_is_sb3(twin, critic):
    for i, q in enumerate(critic.q_networks):
        for lin, w, b in zip(_linears(q), twin.weights, twin.biases, strict=True):
            _close(lin.weight, w[i].T)
            _close(lin.bias, b[i, 0])


def _sb3_replaying(model, batch):
    """``model`` (SB3) with its buffer's ``sample`` returning ``batch``'s minibatches in turn."""
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    model.set_logger(configure(None, []))
    samples = iter(ReplayBufferSamples(batch["obs"][k], batch["actions"][k],
                                       batch["next_obs"][k], batch["terminated"][k][:, None],
                                       batch["rewards"][k][:, None], None)
                   for k in range(len(batch["obs"])))
    model.replay_buffer.sample = lambda *args, **kwargs: next(samples)
    return model


def _pendulum_batch(steps, b):
    g = torch.Generator().manual_seed(0)
    return {
        "obs": torch.randn(steps, b, 3, generator=g),
        "actions": torch.rand(steps, b, 1, generator=g) * 2 - 1,
        "rewards": -torch.rand(steps, b, generator=g) * 10,
        "next_obs": torch.randn(steps, b, 3, generator=g),
        "terminated": (torch.rand(steps, b, generator=g) < 0.2).float(),
    }


def test_td3_updates_equal_stable_baselines3s_step_by_step():
    """Same weights, minibatches and smoothing noise: four gradient steps of our TD3 (two
    actor steps and target moves, the targets of a delay span from one batched forward) leave
    every network where SB3's ``TD3.train`` leaves it."""
    sb3 = pytest.importorskip("stable_baselines3")
    steps, b = 4, 16  # b * act_dim a multiple of 16: torch draws the same normals either way
    ours = TD3("Pendulum-v1", tiny(TD3, batch_size=b, seed=3))
    batch = _pendulum_batch(steps, b)
    theirs = _sb3_replaying(sb3.TD3(
        "MlpPolicy", "Pendulum-v1", learning_rate=1e-3, batch_size=b, tau=0.005, gamma=0.99,
        policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5,
        policy_kwargs={"net_arch": [32, 32]}, seed=5, device="cpu"), batch)
    pol = theirs.policy
    with torch.no_grad():
        for a, c in ((ours.actor, pol.actor.mu), (ours.actor_target, pol.actor_target.mu)):
            for x, y in zip(_linears(a.net), _linears(c), strict=True):
                y.weight.copy_(x.weight)
                y.bias.copy_(x.bias)
    _twin_into_sb3(ours.critic, pol.critic)
    _twin_into_sb3(ours.critic_target, pol.critic_target)
    ours.torch_gen.manual_seed(11)
    torch.manual_seed(11)  # SB3 draws its smoothing noise from the global generator
    ours._gradient_steps(batch)
    theirs.train(gradient_steps=steps, batch_size=b)
    assert ours.num_updates == theirs._n_updates == steps
    for a, c in ((ours.actor, pol.actor.mu), (ours.actor_target, pol.actor_target.mu)):
        for x, y in zip(_linears(a.net), _linears(c), strict=True):
            _close(y.weight, x.weight)
            _close(y.bias, x.bias)
    _assert_twin_is_sb3(ours.critic, pol.critic)
    _assert_twin_is_sb3(ours.critic_target, pol.critic_target)
    moved = _linears(ours.actor.net)[0].weight.detach() - _linears(ours.actor_target.net)[0].weight
    assert moved.abs().max() > 1e-4  # the actor did move: the comparison can fail


def test_sac_updates_equal_stable_baselines3s_step_by_step():
    """Same weights, minibatches and Gaussian draws: four gradient steps of our SAC (the
    temperature, the critics, the actor through the updated critics, the targets) leave every
    network and the temperature where SB3's ``SAC.train`` leaves them."""
    sb3 = pytest.importorskip("stable_baselines3")
    steps, b = 4, 16
    ours = SAC("Pendulum-v1", tiny(SAC, batch_size=b, seed=3, learning_rate=3e-3))
    batch = _pendulum_batch(steps, b)
    theirs = _sb3_replaying(sb3.SAC(
        "MlpPolicy", "Pendulum-v1", learning_rate=3e-3, batch_size=b, tau=0.005, gamma=0.99,
        ent_coef="auto", policy_kwargs={"net_arch": [32, 32]}, seed=5, device="cpu"), batch)
    actor = theirs.policy.actor
    actor.action_dist.epsilon = 0.0  # SB3's log(1 - tanh(u)^2 + 1e-6): ours has no 1e-6

    def heads(w):  # our last layer is [mean; log_std]
        return w.chunk(2)

    with torch.no_grad():
        *torso, last = _linears(ours.actor.net)
        for x, y in zip(torso, _linears(actor.latent_pi), strict=True):
            y.weight.copy_(x.weight)
            y.bias.copy_(x.bias)
        for head, w, bias in zip((actor.mu, actor.log_std), heads(last.weight),
                                 heads(last.bias), strict=True):
            head.weight.copy_(w)
            head.bias.copy_(bias)
    _twin_into_sb3(ours.critic, theirs.critic)
    _twin_into_sb3(ours.critic_target, theirs.critic_target)
    ours.torch_gen.manual_seed(11)
    torch.manual_seed(11)  # SB3 samples its actions from the global generator
    before = ours.alpha
    ours._gradient_steps(batch)
    theirs.train(gradient_steps=steps, batch_size=b)
    *torso, last = _linears(ours.actor.net)
    for x, y in zip(torso, _linears(actor.latent_pi), strict=True):
        _close(y.weight, x.weight)
        _close(y.bias, x.bias)
    for head, w, bias in zip((actor.mu, actor.log_std), heads(last.weight), heads(last.bias),
                             strict=True):
        _close(head.weight, w)
        _close(head.bias, bias)
    _assert_twin_is_sb3(ours.critic, theirs.critic)
    _assert_twin_is_sb3(ours.critic_target, theirs.critic_target)
    assert ours.alpha == pytest.approx(float(theirs.log_ent_coef.detach().exp()), rel=1e-6)
    assert ours.alpha != pytest.approx(before, rel=1e-3)  # the temperature did move


@pytest.mark.parametrize(("target_entropy", "direction"), [(-50.0, -1), (50.0, 1)])
def test_entropy_tuning_moves_alpha_towards_the_target(target_entropy, direction):
    """Entropy above the target lowers alpha; below it raises alpha."""
    agent = SAC("Pendulum-v1", tiny(SAC, target_entropy=target_entropy, learning_rate=1e-2))
    agent.learn(100, progress_bar=False)
    alpha0 = agent.alpha
    assert alpha0 == pytest.approx(1.0)
    agent.train_round(5)
    assert np.sign(agent.alpha - alpha0) == direction
    fixed = SAC("Pendulum-v1", tiny(SAC, ent_coef="fixed", ent_coef_init=0.2))
    fixed.learn(200, progress_bar=False)
    assert fixed.alpha == pytest.approx(0.2) and fixed.alpha_optimizer is None


def params(agent):
    return {k: torch.as_tensor(v).clone() for k, v in agent.state_dict().items()}


@pytest.mark.parametrize("cls", ALGOS, ids=lambda c: c.name)
def test_two_halves_with_save_load_equal_one_call(cls, tmp_path):
    # train_freq 3 with 2 gradient steps: a half that ended mid-cycle would show; the split at
    # 450 lies inside an episode (Pendulum: 200 steps), so the env state must come back too.
    cfg = tiny(cls, train_freq=3, gradient_steps=2)
    whole = cls("Pendulum-v1", cfg).learn(900, progress_bar=False)
    half = cls("Pendulum-v1", cfg).learn(450, progress_bar=False)
    half.save(tmp_path, include_buffer=True)
    assert (tmp_path / BUFFER_FILE).exists()
    resumed = cls.load(tmp_path)
    assert resumed.num_timesteps == 450 and len(resumed.buffer) == 450
    resumed.learn(450, progress_bar=False, reset_num_timesteps=False)
    assert resumed.num_updates == whole.num_updates > 0
    a, b = params(whole), params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    assert resumed.episode_returns == whole.episode_returns[len(half.episode_returns) :]
    for name, opt in whole._optimizers().items():
        other = resumed._optimizers()[name].state_dict()["state"]
        for i, st in opt.state_dict()["state"].items():
            for key, value in st.items():
                torch.testing.assert_close(other[i][key], value, msg=f"{name} {key}")
    # the same next actions, greedy and sampled (the generators continue too)
    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_array_equal(whole.predict(obs)[0], resumed.predict(obs)[0])
    np.testing.assert_array_equal(whole._explore(obs[0]), resumed._explore(obs[0]))
    np.testing.assert_array_equal(
        whole.predict(obs, deterministic=False)[0], resumed.predict(obs, deterministic=False)[0]
    )


@pytest.mark.parametrize("cls", ALGOS, ids=lambda c: c.name)
def test_save_load_without_buffer_acts_the_same(cls, tmp_path):
    agent = cls("Pendulum-v1", tiny(cls)).learn(150, progress_bar=False)
    path = agent.save(tmp_path / "agent.safetensors", resume=False)
    loaded = cls.load(path)
    assert len(loaded.buffer) == 0 and loaded.config == agent.config
    obs = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    np.testing.assert_array_equal(agent.predict(obs)[0], loaded.predict(obs)[0])
    if cls is SAC:
        assert loaded.alpha == agent.alpha != 1.0


def test_loading_another_algorithms_checkpoint_or_buffer_is_refused(tmp_path):
    sac = SAC("Pendulum-v1", tiny(SAC)).learn(120, progress_bar=False)
    path = sac.save(tmp_path / "sac.safetensors", include_buffer=True)
    with pytest.raises(CheckpointError, match="expected 'td3'"):
        TD3.load(path)
    td3 = TD3("Pendulum-v1", tiny(TD3))
    with pytest.raises(CheckpointError, match="td3-replay-buffer"):
        td3.load_replay_buffer(tmp_path / BUFFER_FILE)


@pytest.mark.parametrize("cls", ALGOS, ids=lambda c: c.name)
def test_discrete_and_unbounded_action_spaces_are_refused(cls):
    with pytest.raises(MpgymError, match=r"needs a 1-D Box .* CartPole-v1 has Discrete\(2\)"):
        cls("CartPole-v1", cls.Config(env_id="CartPole-v1"))
    env = BoxEnv(low=(-np.inf, 0.0), high=(np.inf, 1.0))
    with pytest.raises(MpgymError, match="finite bounds"):
        cls(env)


@pytest.mark.parametrize("cls", ALGOS, ids=lambda c: c.name)
def test_bad_hyperparameters_are_refused(cls):
    for field, value, msg in [
        ("tau", 0.0, "--tau must be a number in"),
        ("learning_rate", -1.0, "learning-rate"),
        ("batch_size", 0, "batch_size must be >= 1"),
    ]:
        with pytest.raises(MpgymError, match=msg):
            cls("Pendulum-v1", dataclasses.replace(tiny(cls), **{field: value}))
    if cls is TD3:
        with pytest.raises(MpgymError, match="--target-noise-clip must be a finite number"):
            TD3("Pendulum-v1", tiny(TD3, target_noise_clip=-0.1))


def test_registered_and_on_the_command_line():
    from mpgym.cli.rl import parse_train_args

    assert get_algorithm("sac") is SAC and get_algorithm("TD3") is TD3
    req = parse_train_args(
        ["sac", "--env", "Pendulum-v1", "--preset", "Pendulum-v1", "--total-timesteps", "500"]
    )
    assert req.cls is SAC and req.config.learning_rate == 1e-3
    assert req.config.total_timesteps == 500
    assert SACConfig().learning_rate == 3e-4 and TD3Config().learning_rate == 1e-3
    assert TD3.PRESETS["Hopper-v5"].learning_starts == 10_000


# --------------------------------------------------------------------------- learning


@pytest.mark.slow
def test_sac_learns_pendulum():
    """The zoo's Pendulum-v1 preset, seed 0, 2e4 steps: -130.2 over 20 evaluation episodes,
    measured here (264 s on one loaded core); random torques score about -1200."""
    cfg = dataclasses.replace(SAC.PRESETS["Pendulum-v1"], seed=0)
    agent = SAC("Pendulum-v1", cfg).learn(progress_bar=False)
    score = evaluate_policy(agent, "Pendulum-v1", 20, seed=12345).mean_return
    assert score > -300


def test_ctrl_c_checkpoint_holds_the_buffer_and_continues(tmp_path):
    from mpgym.runs import RunDir

    cfg = tiny(SAC, train_freq=2, gradient_steps=1)
    whole = SAC("Pendulum-v1", cfg).learn(600, progress_bar=False)
    agent = SAC("Pendulum-v1", cfg, run_dir=RunDir(tmp_path))

    def interrupt(loc):
        if agent.num_timesteps == 300:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        agent.learn(600, progress_bar=False, callback=interrupt)
    assert (tmp_path / BUFFER_FILE).exists()
    agent.save(tmp_path)  # what the CLI's own Ctrl-C handler does next: keeps the buffer
    resumed = SAC.load(tmp_path)
    assert resumed.num_timesteps == 300 and len(resumed.buffer) == 300
    resumed.learn(300, progress_bar=False, reset_num_timesteps=False)
    for k, v in params(whole).items():
        torch.testing.assert_close(params(resumed)[k], v, rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.slow
def test_td3_learns_pendulum():
    """The zoo's Pendulum-v1 preset, seed 0, 2e4 steps: -135.7 over 20 evaluation episodes,
    measured here (190 s on one loaded core)."""
    cfg = dataclasses.replace(TD3.PRESETS["Pendulum-v1"], seed=0)
    agent = TD3("Pendulum-v1", cfg).learn(progress_bar=False)
    score = evaluate_policy(agent, "Pendulum-v1", 20, seed=12345).mean_return
    assert score > -300
