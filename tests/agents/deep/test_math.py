"""The pure math of the deep agents against hand-computed values."""

import numpy as np
import pytest
import torch

from agents.deep.buffers import ReplayBuffer, RolloutBuffer
from agents.deep.common import (
    categorical_entropy,
    categorical_log_prob,
    clip_grad_norm,
    dqn_targets,
    gae,
    gaussian_entropy,
    ppo_clip_loss,
    rollout_returns,
)
from mpgym.nn import diag_gaussian_log_prob


def test_rollout_returns_resets_at_episode_end_and_bootstraps():
    r = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    d = np.array([[0, 0], [1, 0], [0, 0]])
    g = rollout_returns(r, d, 0.5, last_value=np.array([2.0, 4.0]))
    # env 0: step 2 bootstraps 1 + 0.5*2 = 2; step 1 ends an episode: 1; step 0: 1 + 0.5 = 1.5
    # env 1: 1 + 0.5*4 = 3; 1 + 1.5 = 2.5; 0 + 1.25 = 1.25
    np.testing.assert_allclose(g, [[1.5, 1.25], [1.0, 2.5], [2.0, 3.0]])


def test_gae_hand_computed_example():
    # Three steps, one env, gamma 0.9, lambda 0.5, terminal at the last step.
    r = np.array([1.0, 0.0, 2.0])
    v = np.array([0.5, 1.0, 1.5])
    nv = np.array([1.0, 1.5, 9.9])  # V(s'_t); the last is terminal so 9.9 must be ignored
    term = np.array([0, 0, 1])
    done = np.array([0, 0, 1])
    # deltas: 1 + 0.9*1 - 0.5 = 1.4 ; 0 + 0.9*1.5 - 1 = 0.35 ; 2 - 1.5 = 0.5
    # A_2 = 0.5 ; A_1 = 0.35 + 0.45*0.5 = 0.575 ; A_0 = 1.4 + 0.45*0.575 = 1.65875
    np.testing.assert_allclose(
        gae(r, v, nv, term, done, 0.9, 0.5), [1.65875, 0.575, 0.5], rtol=1e-6
    )


def test_gae_truncation_bootstraps_but_cuts_the_trace():
    r = np.array([1.0, 1.0])
    v = np.array([0.0, 0.0])
    nv = np.array([10.0, 3.0])
    # Step 0 was truncated: bootstrap from V(final obs)=10 but do not chain into step 1.
    adv = gae(r, v, nv, np.array([0, 0]), np.array([1, 0]), 0.5, 1.0)
    np.testing.assert_allclose(adv, [1 + 0.5 * 10, 1 + 0.5 * 3])


def test_gae_lambda_one_equals_rollout_returns_minus_values():
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    dones = rng.random((6, 3)) < 0.3
    last = rng.normal(size=3)
    nv = np.concatenate([v[1:], last[None]])
    adv = gae(r, v, nv, dones, dones, 0.97, 1.0)
    ret = rollout_returns(r, dones, 0.97, last_value=last)
    np.testing.assert_allclose(adv + v, ret, rtol=1e-5, atol=1e-5)


def test_gae_lambda_zero_is_td_error():
    r, v, nv = np.array([1.0, 2.0]), np.array([0.3, 0.1]), np.array([0.2, 0.4])
    adv = gae(r, v, nv, np.zeros(2), np.zeros(2), 0.9, 0.0)
    np.testing.assert_allclose(adv, r + 0.9 * nv - v, rtol=1e-6)


def test_ppo_clip_values_and_gradients():
    ratio = torch.tensor([1.5, 0.5, 1.1, 0.7], requires_grad=True)
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    loss = ppo_clip_loss(ratio, adv, 0.2)
    # min(1.5, 1.2)=1.2 ; min(0.5, 0.8)=0.5 ; min(-1.1, -1.1)=-1.1 ; min(-0.7, -0.8)=-0.8
    assert loss.item() == pytest.approx(-(1.2 + 0.5 - 1.1 - 0.8) / 4)
    loss.backward()
    # clipped terms (1st and 4th) give no gradient; the others d/d rho = -A/4
    np.testing.assert_allclose(ratio.grad.numpy(), [0.0, -0.25, 0.25, 0.0])


def test_dqn_target_plain_uses_max_of_target_net():
    y = dqn_targets(
        torch.tensor([1.0, 1.0]),
        torch.tensor([0.0, 1.0]),
        torch.tensor([[2.0, 5.0], [7.0, 3.0]]),
        0.9,
    )
    np.testing.assert_allclose(y.numpy(), [1 + 0.9 * 5, 1.0])


def test_double_dqn_selects_with_online_and_evaluates_with_target():
    q_target = torch.tensor([[2.0, 5.0], [7.0, 3.0]])
    q_online = torch.tensor([[9.0, 0.0], [0.0, 9.0]])  # picks a'=0 then a'=1
    y = dqn_targets(torch.zeros(2), torch.zeros(2), q_target, 1.0, next_q_online=q_online)
    np.testing.assert_allclose(y.numpy(), [2.0, 3.0])
    assert not y.requires_grad


def test_dqn_targets_carry_no_gradient():
    qt = torch.ones(3, 2, requires_grad=True)
    y = dqn_targets(torch.zeros(3), torch.zeros(3), qt, 0.9, next_q_online=qt * 2)
    assert not y.requires_grad


def test_categorical_matches_torch_distributions():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    actions = torch.tensor([0, 1, 2, 1, 0])
    d = torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(categorical_log_prob(logits, actions), d.log_prob(actions))
    torch.testing.assert_close(categorical_entropy(logits), d.entropy())


def test_gaussian_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mean, log_std, a = (
        torch.randn(4, 2, generator=g),
        torch.randn(4, 2, generator=g),
        torch.randn(4, 2, generator=g),
    )
    d = torch.distributions.Normal(mean, log_std.exp())
    torch.testing.assert_close(diag_gaussian_log_prob(a, mean, log_std=log_std),
                               d.log_prob(a).sum(-1))
    torch.testing.assert_close(gaussian_entropy(log_std), d.entropy().sum(-1))


def test_replay_buffer_samples_only_written_slots():
    buf = ReplayBuffer(10, 2)
    rng = np.random.default_rng(0)
    for i in range(4):
        buf.add(np.full(2, i), i % 2, float(i), np.full(2, i + 1), False)
    idx = buf.sample_indices(1000, rng)
    assert idx.min() >= 0 and idx.max() < 4
    batch = buf.sample(64, rng)
    # each sampled transition is consistent: next_obs = obs + 1, reward = obs
    torch.testing.assert_close(batch.next_obs, batch.obs + 1)
    torch.testing.assert_close(batch.rewards, batch.obs[:, 0])


def test_replay_buffer_wraps_around_and_keeps_capacity():
    buf = ReplayBuffer(3, 1)
    for i in range(7):
        buf.add(np.array([i]), 0, float(i), np.array([i]), i == 6)
    assert len(buf) == 3
    assert sorted(buf.obs[:, 0].tolist()) == [4.0, 5.0, 6.0]
    idx = buf.sample_indices(500, np.random.default_rng(1))
    assert idx.max() < 3
    with pytest.raises(ValueError):
        ReplayBuffer(3, 1).sample_indices(1, np.random.default_rng(0))


def test_rollout_buffer_finish_flattens_time_major():
    buf = RolloutBuffer(2, 3, obs_dim=1, action_shape=(), discrete=True)
    buf.rewards[:] = 1.0
    batch = buf.finish(gamma=0.5, lam=1.0)
    assert batch.obs.shape == (6, 1)
    np.testing.assert_allclose(batch.returns.numpy(), [1.5] * 3 + [1.0] * 3)


@pytest.mark.parametrize("max_norm", [1e6, 20.0, 9.0, 2.0, 0.5, 1e-3, 1e-6])
@pytest.mark.parametrize("bad", [None, float("nan"), float("inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clip_grad_norm_equals_torch_bit_for_bit(max_norm, bad, dtype):
    # the 25 gradients' norm is ~5: 1e6 and 20 take the compiled no-op test, 9 (within a factor
    # of 2) and below torch's norm; float64 gradients always take torch's norm
    g = torch.Generator().manual_seed(0)
    shapes = [(7, 3), (3,), (1,)]
    ours = [torch.nn.Parameter(torch.zeros(s, dtype=dtype)) for s in shapes]
    ref = [torch.nn.Parameter(torch.zeros(s, dtype=dtype)) for s in shapes]
    for p, q in zip(ours, ref, strict=True):
        p.grad = torch.randn(p.shape, generator=g, dtype=dtype)
        q.grad = p.grad.clone()
    nan = bad is not None
    if nan:
        ours[0].grad[1, 1] = ref[0].grad[1, 1] = bad
    clip_grad_norm(ours, max_norm)
    torch.nn.utils.clip_grad_norm_(ref, max_norm, foreach=True)
    for p, q in zip(ours, ref, strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, equal_nan=True)
    total = torch.linalg.vector_norm(torch.cat([p.grad.ravel() for p in ours]))
    assert nan or float(total) <= max_norm * (1 + 1e-5)


def test_clip_grad_norm_skips_torchs_norm_only_far_below_the_bound(monkeypatch):
    from agents.deep import common

    if common._compiled_sum_of_squares() is None:
        pytest.skip("numba is not installed")
    params = [torch.nn.Parameter(torch.zeros(300)), torch.nn.Parameter(torch.zeros(2, 5))]
    for p in params:
        p.grad = torch.full(p.shape, 0.1)
    sq = common._grads_sum_of_squares([p.grad for p in params])
    assert sq == pytest.approx(310 * np.float32(0.1) ** 2, rel=1e-12)
    calls = []
    real = torch.nn.utils.get_total_norm
    monkeypatch.setattr(torch.nn.utils, "get_total_norm",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    clip_grad_norm(params, 2 * np.sqrt(sq) * 1.001)  # norm just under half the bound
    assert calls == []
    clip_grad_norm(params, 2 * np.sqrt(sq) * 0.999)
    assert calls == [1]
    params[1].grad[0, 0] = float("nan")
    assert np.isnan(common._grads_sum_of_squares([p.grad for p in params]))
    clip_grad_norm(params, 1e6)
    assert calls == [1, 1]
