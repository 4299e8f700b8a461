"""Action masks (``action_masks=True``, sb3-contrib's MaskablePPO): never a masked action, the
restricted Categorical in the update, masks through predict, evaluation and checkpoints."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.common import evaluate_policy
from agents.deep.a2c import A2C, A2CConfig
from agents.deep.common import mask_logits
from agents.deep.networks import ActorCritic
from agents.deep.numpy_policy import sample_categorical
from agents.deep.ppo import PPO, PPOConfig
from mpgym.errors import MpgymError


class MaskedChoice(gym.Env):
    """Pick one of 5 actions; each step allows a random non-empty subset (shown in the
    observation and in ``info["action_mask"]``) and a masked action raises. Reward 1 for the
    highest allowed action, else 0; 8 steps an episode."""

    observation_space = gym.spaces.Box(0.0, 1.0, (5,), np.float32)
    action_space = gym.spaces.Discrete(5)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.mask = np.ones(5, np.int8)
        self.t = 0

    def _draw(self):
        self.mask = (self.np_random.random(5) < 0.5).astype(np.int8)
        self.mask[self.np_random.integers(5)] = 1
        return self.mask.astype(np.float32), {"action_mask": self.mask.copy()}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw()

    def step(self, action):
        a = int(action)
        if not self.mask[a]:
            raise ValueError(f"masked action {a} taken (mask {self.mask.tolist()})")
        reward = float(a == int(np.flatnonzero(self.mask).max()))
        self.t += 1
        obs, info = self._draw()
        return obs, reward, False, self.t >= 8, info


ENV_ID = "MaskedChoiceTest-v0"
if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=MaskedChoice)


def _ppo(**kw):
    cfg = PPOConfig(env_id=ENV_ID, n_envs=2, n_steps=32, batch_size=32, n_epochs=2,
                    hidden=(16,), seed=0, action_masks=True, **kw)
    return PPO(ENV_ID, cfg)


def test_masked_logits_give_the_renormalised_categorical_and_no_gradient_to_masked_ones():
    logits = torch.tensor([[0.3, -1.0, 2.0, 0.5]], requires_grad=True)
    masks = torch.tensor([[True, False, True, False]])
    logp = torch.log_softmax(mask_logits(logits, masks), -1)
    allowed = torch.log_softmax(logits[:, [0, 2]], -1)
    torch.testing.assert_close(logp[:, [0, 2]], allowed)
    assert logp.exp()[0, 1] == 0.0 and logp.exp()[0, 3] == 0.0
    (logp[0, 0] + logp[0, 2]).backward()
    assert logits.grad[0, 1] == 0.0 and logits.grad[0, 3] == 0.0


def test_policy_samples_only_allowed_actions_and_evaluates_the_restricted_distribution():
    torch.manual_seed(0)
    policy = ActorCritic(3, 4, discrete=True, hidden=(8,))
    obs = torch.randn(500, 3)
    masks = torch.rand(500, 4) < 0.5
    masks[torch.arange(500), torch.randint(0, 4, (500,))] = True
    gen = torch.Generator().manual_seed(1)
    actions, log_probs = policy.act(obs, gen, masks=masks)
    assert masks[torch.arange(500), actions].all()
    greedy, _ = policy.act(obs, gen, deterministic=True, masks=masks)
    assert masks[torch.arange(500), greedy].all()
    log_prob, entropy = policy.evaluate(obs, actions, masks)
    torch.testing.assert_close(log_prob, log_probs)
    logits, _ = policy.dist_params(obs)
    p = torch.softmax(logits.masked_fill(~masks, -math.inf), -1)
    expected = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)
    torch.testing.assert_close(entropy, expected, rtol=1e-5, atol=1e-6)


def test_numpy_sampler_with_masked_logits_never_draws_a_masked_action():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1000, 6)).astype(np.float32)
    masks = rng.random((1000, 6)) < 0.4
    masks[np.arange(1000), rng.integers(0, 6, 1000)] = True
    actions, logp = sample_categorical(np.where(masks, logits, np.float32(-1e8)), rng)
    assert masks[np.arange(1000), actions].all()
    ref = torch.log_softmax(mask_logits(torch.from_numpy(logits), torch.from_numpy(masks)), -1)
    np.testing.assert_allclose(logp, ref[np.arange(1000), actions].numpy(), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_training_with_masks_never_takes_a_masked_action_and_learns(algo):
    if algo == "ppo":
        agent = _ppo()
    else:
        agent = A2C(ENV_ID, A2CConfig(env_id=ENV_ID, n_envs=2, n_steps=8, hidden=(16,),
                                      seed=0, action_masks=True))
    before = evaluate_policy(agent, MaskedChoice(), 20, seed=100).mean_return
    agent.learn(6000, progress_bar=False)  # the env raises on a masked action
    after = evaluate_policy(agent, MaskedChoice(), 20, seed=100).mean_return
    assert after > before + 2.0 and after >= 7.0  # of 8: the highest allowed action


def test_without_masks_the_same_env_fails_so_the_test_above_can_fail():
    cfg = PPOConfig(env_id=ENV_ID, n_envs=2, n_steps=32, batch_size=32, hidden=(16,), seed=0)
    with pytest.raises(ValueError, match="masked action"):
        PPO(ENV_ID, cfg).learn(2000, progress_bar=False)


def test_predict_takes_masks_and_refuses_bad_ones():
    agent = _ppo()
    obs, info = MaskedChoice().reset(seed=3)
    for _ in range(20):
        a = int(agent.predict(obs, deterministic=False, action_masks=info["action_mask"])[0])
        assert info["action_mask"][a]
    masks = np.stack([info["action_mask"]] * 2)
    batch = agent.predict(np.stack([obs, obs]), action_masks=masks)
    assert batch[0].shape == (2,)
    for bad in (np.ones(4), np.full(5, 0.5), np.array(list("abcde"))):
        with pytest.raises(MpgymError, match="5 booleans"):
            agent.predict(obs, action_masks=bad)
    with pytest.raises(MpgymError, match="allows no action"):
        agent.predict(obs, action_masks=np.zeros(5))


def test_masks_are_refused_where_they_cannot_apply():
    with pytest.raises(MpgymError, match="Discrete action"):
        PPO("Pendulum-v1", PPOConfig(env_id="Pendulum-v1", action_masks=True))
    with pytest.raises(MpgymError, match=r"no info\['action_mask'\]"):
        PPO("CartPole-v1", PPOConfig(env_id="CartPole-v1", n_envs=1, n_steps=8, batch_size=8,
                                     action_masks=True)).learn(8, progress_bar=False)
    from agents.deep.dqn import DQN

    dqn = DQN("CartPole-v1")
    with pytest.raises(MpgymError, match="does not take action masks"):
        dqn.predict(np.zeros(4, np.float32), action_masks=np.ones(2))


def test_a_checkpoint_keeps_the_masks_of_the_pending_observation(tmp_path):
    agent = _ppo()
    agent.learn(64, progress_bar=False)
    agent.save(tmp_path / "run")
    loaded = PPO.load(tmp_path / "run")
    np.testing.assert_array_equal(loaded._masks, agent._masks)
    loaded.learn(64, progress_bar=False, reset_num_timesteps=False)  # raises on a masked action
