"""Generalised state-dependent exploration (gSDE) of the Gaussian actor-critic policy."""

import torch

from agents.deep.networks import ActorCritic


def sde_policy():
    torch.manual_seed(0)
    return ActorCritic(3, 2, discrete=False, std="sde", log_std_init=-1.0, hidden=(16, 16))


def test_sde_noise_is_held_until_redrawn():
    pi, gen = sde_policy(), torch.Generator().manual_seed(0)
    obs = torch.randn(4, 3)
    pi.reset_noise(4, gen)
    a1, _ = pi.act(obs, gen)
    a2, _ = pi.act(obs, gen)
    torch.testing.assert_close(a1, a2)  # same matrices, same state: the same action
    pi.reset_noise(4, gen)
    a3, _ = pi.act(obs, gen)
    assert not torch.allclose(a1, a3)
    mean, _ = pi.act(obs, gen, deterministic=True)
    torch.testing.assert_close(mean, pi.dist_params(obs)[0])


def test_sde_actions_have_the_stated_gaussian_and_log_prob():
    pi, gen = sde_policy(), torch.Generator().manual_seed(1)
    obs = torch.randn(1, 3)
    with torch.no_grad():
        mean, log_std = pi.dist_params(obs)
    n = 40_000
    pi.reset_noise(n, gen)  # a fresh matrix per sample: the marginal over E given s
    a, logp = pi.act(obs.expand(n, 3), gen)
    tol = 4 * float(log_std.exp().max()) / n**0.5
    torch.testing.assert_close(a.mean(0), mean[0], atol=tol, rtol=0)
    torch.testing.assert_close(a.std(0), log_std.exp()[0], rtol=0.02, atol=0)
    # the variance is sum_j z_j^2 sigma_jd^2 with z the last hidden layer
    with torch.no_grad():
        z = pi.actor[:-1](obs)
        var = (z * z) @ torch.exp(2 * pi.log_std)
        lp, ent = pi.evaluate(obs.expand(n, 3), a)
    torch.testing.assert_close(2 * log_std, torch.log(var + 1e-6))
    torch.testing.assert_close(lp, logp)
    assert ent.shape == (n,)


def test_sde_log_std_gets_gradient_and_features_do_not_through_the_std():
    pi = sde_policy()
    obs, actions = torch.randn(8, 3), torch.randn(8, 2)
    lp, _ = pi.evaluate(obs, actions)
    lp.sum().backward()
    assert pi.log_std.grad is not None and pi.log_std.grad.abs().sum() > 0
    assert pi.actor[0].weight.grad.abs().sum() > 0  # through the mean
