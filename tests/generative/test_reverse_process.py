"""DDPM: sampling and the variational bound describe ONE reverse process (config.variance)."""

import math
from dataclasses import replace

import pytest
import torch

from generative import build_model
from generative.diffusion import (
    DDPM,
    DDPMConfig,
    Schedule,
    eps_to_mean,
    gaussian_kl,
    posterior_mean,
    q_sample,
    reverse_variance,
)
from mpgym.errors import MpgymError


def test_reverse_variance_is_beta_or_the_posterior_variance():
    sched = Schedule.from_betas(torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))
    assert torch.equal(reverse_variance(sched, "beta"), sched.betas)
    post = reverse_variance(sched, "posterior")
    # beta_tilde_2 = (1 - 0.9) / (1 - 0.9 * 0.8) * 0.2; step 1 reuses it (beta_tilde_1 = 0)
    assert float(post[1]) == pytest.approx(0.1 / 0.28 * 0.2, rel=1e-12)
    assert float(post[0]) == float(post[1])
    assert torch.equal(post[1:], sched.posterior_var[1:])
    with pytest.raises(MpgymError, match="'beta' or 'posterior'"):
        reverse_variance(sched, "large")


def test_gaussian_kl_closed_form():
    assert float(gaussian_kl(*map(torch.tensor, (0.0, 1.0, 1.0, 2.0)))) == pytest.approx(
        0.5 * (math.log(2.0) + 2.0 / 2.0 - 1.0)
    )
    q = torch.distributions.Normal(torch.tensor([0.3, -1.0]), torch.tensor([0.2, 1.5]))
    p = torch.distributions.Normal(torch.tensor([0.1, 0.5]), torch.tensor([0.4, 0.7]))
    ours = gaussian_kl(q.mean, q.variance, p.mean, p.variance)
    assert torch.allclose(ours, torch.distributions.kl_divergence(q, p), atol=1e-6)


def zero_eps_ddpm(variance, T=10, dim=1):
    """A 1-D point DDPM whose network predicts eps = 0 (its last layer zeroed)."""
    cfg = DDPMConfig(
        T=T, net="mlp", dim=dim, channels=8, discrete=False, dropout=0.0, variance=variance
    )
    model = DDPM(cfg).eval()
    with torch.no_grad():
        last = model.net.net[-1]
        last.weight.zero_()
        last.bias.zero_()
    return model


@pytest.mark.parametrize("variance", ["beta", "posterior"])
def test_sampler_steps_with_the_configured_variance(variance):
    # eps = 0: x_{t-1} = x_t / sqrt(alpha_t) + sigma_t z, so Var x_0 follows a closed recursion
    model = zero_eps_ddpm(variance, dim=16)
    sched, sigma2 = model.sched, model.reverse_var
    v = 1.0
    for t in range(model.config.T, 0, -1):
        v = v / float(sched.alphas[t - 1]) + (float(sigma2[t - 1]) if t > 1 else 0.0)
    x = model.sample(40_000, generator=torch.Generator().manual_seed(0))
    assert float(x.var()) == pytest.approx(v, rel=0.006)  # 640,000 values: ~0.2% noise
    other = zero_eps_ddpm("posterior" if variance == "beta" else "beta")
    w = 1.0
    for t in range(model.config.T, 0, -1):
        w = w / float(sched.alphas[t - 1]) + (float(other.reverse_var[t - 1]) if t > 1 else 0.0)
    assert abs(w - v) > 0.02 * v  # the two choices are told apart at this size (2.7%)


@pytest.mark.parametrize("variance", ["beta", "posterior"])
def test_bound_terms_use_the_samplers_variance(variance):
    torch.manual_seed(0)
    model = DDPM(DDPMConfig(T=20, channels=8, blocks=1, dropout=0.0, variance=variance)).eval()
    x = torch.randint(0, 17, (3, 64), generator=torch.Generator().manual_seed(1))
    t = torch.tensor([2, 7, 20])
    got = model.bound_terms(x, t, generator=torch.Generator().manual_seed(5))
    # the same noise, then the KL of two Gaussians written out per pixel
    x0 = 2 * x.float() / 16 - 1
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5))
    xt = q_sample(x0, t, noise, model.sched)
    with torch.no_grad():
        mu_p = eps_to_mean(xt, model.net(xt, t), t, model.sched)
    mu_q = posterior_mean(x0, xt, t, model.sched)
    var_q = model.sched.posterior_var[t - 1].float()[:, None]
    var_p = model.reverse_var[t - 1].float()[:, None]
    expected = 0.5 * (var_q / var_p - 1 + (mu_q - mu_p) ** 2 / var_p + torch.log(var_p / var_q))
    assert torch.allclose(got, expected.sum(-1), rtol=1e-4)
    if variance == "beta":  # the variance mismatch alone costs something at every step
        assert bool((got > ((mu_q - mu_p) ** 2 / (2 * var_p)).sum(-1)).all())


def test_one_variance_drives_sampling_and_the_bound():
    for variance in ("beta", "posterior"):
        model = build_model("ddpm", {"T": 5, "channels": 8, "blocks": 1, "variance": variance})
        assert torch.equal(model.reverse_var, reverse_variance(model.sched, variance))
    assert DDPMConfig().variance == "beta"  # Ho et al.'s Algorithm 2, as sampled before
    # the decoder L_0 uses sigma_1^2 of the same process
    model = DDPM(DDPMConfig(T=20, channels=8, blocks=1, dropout=0.0, variance="posterior"))
    twin = DDPM(replace(model.config, variance="beta"))
    twin.load_state_dict(model.state_dict())
    x, one = torch.randint(0, 17, (2, 64)), torch.ones(2, dtype=torch.long)
    a = model.eval().bound_terms(x, one, generator=torch.Generator().manual_seed(0))
    b = twin.eval().bound_terms(x, one, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(a, b)
