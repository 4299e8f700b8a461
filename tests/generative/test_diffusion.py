import math

import pytest
import torch

from generative.diffusion import (
    DDPM,
    DDPMConfig,
    LatentDiffusion,
    Schedule,
    cosine_betas,
    discretized_gaussian_log_prob,
    eps_to_mean,
    eps_to_x0,
    linear_betas,
    posterior_mean,
    q_sample,
    q_step,
)
from generative.evaluation import diffusion_nll


def test_schedules_match_their_definitions():
    b = linear_betas(1000)
    assert float(b[0]) == pytest.approx(1e-4) and float(b[-1]) == pytest.approx(0.02)
    c = Schedule.from_betas(cosine_betas(1000))
    t = torch.tensor([1, 500, 999], dtype=torch.float64)
    f = lambda u: math.cos((u / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for ti in t.tolist():
        assert float(c.abar[int(ti) - 1]) == pytest.approx(f(ti) / f(0), rel=1e-6)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_closed_form_marginal_equals_iterating_the_one_step_kernel(schedule):
    sched = Schedule.from_betas(linear_betas(200) if schedule == "linear" else cosine_betas(200))
    # moments of iterating q(x_t | x_{t-1}) exactly: m_t = sqrt(1 - b) m, v_t = (1 - b) v + b
    m, v = torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    for t in range(1, 201):
        m, v = (
            (1 - sched.betas[t - 1]).sqrt() * m,
            (1 - sched.betas[t - 1]) * v + sched.betas[t - 1],
        )
        assert float(m) == pytest.approx(0.7 * float(sched.abar[t - 1].sqrt()), rel=1e-9)
        assert float(v) == pytest.approx(float(1 - sched.abar[t - 1]), rel=1e-9)
    # and by sampling: 50 kernel steps vs the closed form at t = 50
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000, 1), 0.7)
    x = x0.clone()
    for t in range(1, 51):
        x = q_step(x, torch.full((len(x),), t), torch.randn(x.shape, generator=g), sched)
    direct = q_sample(x0, torch.full((len(x0),), 50), torch.randn(x0.shape, generator=g), sched)
    assert float(x.mean()) == pytest.approx(float(direct.mean()), abs=0.01)
    assert float(x.var()) == pytest.approx(float(direct.var()), abs=0.01)


def test_posterior_mean_is_gaussian_conditioning():
    sched = Schedule.from_betas(linear_betas(100))
    t = 40
    x0, xt = torch.tensor([[0.3]]), torch.tensor([[-0.2]])
    # joint of (x_{t-1}, x_t) given x0, then condition on x_t
    abp, a = float(sched.abar_prev[t - 1]), float(sched.alphas[t - 1])
    var_prev = 1 - abp
    cov = math.sqrt(a) * var_prev
    var_t = a * var_prev + (1 - a)
    mean = math.sqrt(abp) * 0.3 + cov / var_t * (-0.2 - math.sqrt(a * abp) * 0.3)
    assert float(posterior_mean(x0, xt, torch.tensor([t]), sched)) == pytest.approx(mean, rel=1e-5)
    assert float(sched.posterior_var[t - 1]) == pytest.approx(var_prev - cov**2 / var_t, rel=1e-6)


def test_discretised_decoder_sums_to_one_over_the_17_levels():
    grid = 2 * torch.arange(17, dtype=torch.float64) / 16 - 1
    for mean, log_std in [(0.1, -3.0), (-0.95, -1.0), (0.5, 0.5)]:
        lp = discretized_gaussian_log_prob(
            grid, torch.full_like(grid, mean), torch.full_like(grid, log_std)
        )
        assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-9)


def tiny_ddpm(**kw):
    torch.manual_seed(0)
    return DDPM(DDPMConfig(T=20, channels=8, blocks=1, dropout=0.0, **kw)).eval()


class FakeTerms(torch.nn.Module):
    """Bound terms that depend on t only, to check the estimator itself: L_{t-1} = t^2 / 10."""

    config = DDPMConfig(T=50)

    def bound_terms(self, x, t, y=None, generator=None):
        return t.double() ** 2 / 10

    def prior_term(self, x):
        return torch.zeros(len(x))


def test_stratified_bound_estimate_is_unbiased_and_exact_with_all_steps():
    fake, x = FakeTerms(), torch.zeros(3, 64, dtype=torch.long)
    exact = sum(t * t / 10 for t in range(1, 51))
    assert diffusion_nll(fake, x, timesteps=0) == pytest.approx(exact)
    est = [
        diffusion_nll(fake, x, timesteps=7, generator=torch.Generator().manual_seed(s))
        for s in range(400)
    ]
    assert sum(est) / len(est) == pytest.approx(exact, rel=0.005)
    model = tiny_ddpm()  # and on a real model the terms are finite and positive
    assert 0 < diffusion_nll(model, torch.randint(0, 17, (2, 64)), timesteps=5) < float("inf")


def test_samplers_return_digits_and_guidance_zero_is_conditional():
    model = tiny_ddpm(num_classes=10)
    s = model.sample(3, generator=torch.Generator().manual_seed(0), y=torch.tensor([1, 2, 3]))
    d = model.sample_ddim(3, steps=5, generator=torch.Generator().manual_seed(0))
    assert s.shape == d.shape == (3, 64) and int(s.min()) >= 0 and int(s.max()) <= 16
    xt, t, y = torch.randn(2, 64), torch.tensor([5, 9]), torch.tensor([3, 4])
    assert torch.allclose(model.eps(xt, t, y, guidance=0.0), model.net(xt, t, y))
    w = 2.0
    e = model.eps(xt, t, y, guidance=w)
    assert torch.allclose(
        e, 3 * model.net(xt, t, y) - 2 * model.net(xt, t, torch.full_like(y, 10)), atol=1e-6
    )


def test_posterior_mean_of_the_predicted_x0_equals_the_eps_mean():
    # the clipped sampler steps with mu~(x0_hat, x_t); unclipped it is Algorithm 2's mean
    # (float32: x0_hat is ~1e2 at t = T, so the two forms agree to ~1e-4)
    sched = Schedule.from_betas(linear_betas(1000))
    g = torch.Generator().manual_seed(0)
    xt, eps = torch.randn(6, 64, generator=g), torch.randn(6, 64, generator=g)
    t = torch.tensor([1, 2, 10, 200, 700, 1000])
    ab = sched.abar[t - 1].float()[:, None]
    x0 = (xt - (1 - ab).sqrt() * eps) / ab.sqrt()
    assert torch.allclose(
        posterior_mean(x0, xt, t, sched), eps_to_mean(xt, eps, t, sched), atol=1e-3
    )
    model = tiny_ddpm()
    s = model.sample(2, generator=torch.Generator().manual_seed(0), clip=True)
    assert s.shape == (2, 64) and int(s.min()) >= 0 and int(s.max()) <= 16


def test_ddim_with_eta_zero_is_deterministic():
    model = tiny_ddpm()
    a = model.sample_ddim(2, steps=10, generator=torch.Generator().manual_seed(0))
    b = model.sample_ddim(2, steps=10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_latent_diffusion_trains_on_vae_latents():
    from generative.autoencoders import VAE, VAEConfig

    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent=4, hidden=16))
    ld = LatentDiffusion(
        vae, DDPMConfig(T=10, net="mlp", dim=4, channels=16, discrete=False, dropout=0.0)
    )
    x = torch.randint(0, 17, (8, 64))
    loss = ld.loss(x)
    loss.backward()
    assert all(p.grad is None for p in ld.vae.parameters())
    assert ld.sample(3, steps=5).shape == (3, 64)


class _Fixed(torch.nn.Module):
    """A stand-in denoiser that returns a given tensor."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x, t, y=None):
        return self.out


def test_v_prediction_gives_the_noise_and_the_clean_data_back():
    cfg = DDPMConfig(T=1000, net="mlp", dim=6, channels=8, discrete=False, prediction="v")
    model = DDPM(cfg)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    t = torch.tensor([1, 10, 300, 800, 1000])
    ab = model.sched.abar[t - 1].float()[:, None]
    model.net = _Fixed(ab.sqrt() * noise - (1 - ab).sqrt() * x0)  # the true v
    xt = q_sample(x0, t, noise, model.sched)
    eps = model.eps(xt, t)
    torch.testing.assert_close(eps, noise, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eps_to_x0(xt, eps, ab), x0, atol=2e-3, rtol=1e-3)


def test_v_loss_is_the_eps_loss_weighted_by_one_over_abar():
    cfg = DDPMConfig(T=50, net="mlp", dim=3, channels=8, discrete=False, prediction="v")
    model = DDPM(cfg)
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    model.net = _Fixed(torch.randn(64, 3, generator=torch.Generator().manual_seed(2)))
    torch.manual_seed(3)
    loss = model.loss(x0)
    torch.manual_seed(3)  # the same t and noise as inside loss
    t = torch.randint(1, cfg.T + 1, (64,))
    noise = torch.randn_like(x0)
    xt = q_sample(x0, t, noise, model.sched)
    ab = model.sched.abar[t - 1].float()
    weighted = ((model.eps(xt, t) - noise).pow(2).sum(-1) / ab).mean()
    torch.testing.assert_close(loss, weighted, rtol=1e-4, atol=1e-6)
