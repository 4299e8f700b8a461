import pytest
import torch

from generative.gans import (
    GAN,
    GANConfig,
    d_loss_minimax,
    g_loss_minimax,
    g_loss_nonsaturating,
    gradient_penalty,
)


def test_losses_match_their_formulas():
    r, f = torch.tensor([0.5, -1.0]), torch.tensor([0.2, 2.0])
    D = torch.sigmoid
    assert float(d_loss_minimax(r, f)) == pytest.approx(
        float(-(D(r).log().mean() + (1 - D(f)).log().mean())), rel=1e-6
    )
    assert float(g_loss_minimax(f)) == pytest.approx(float((1 - D(f)).log().mean()), rel=1e-6)
    assert float(g_loss_nonsaturating(f)) == pytest.approx(float(-D(f).log().mean()), rel=1e-6)


def test_nonsaturating_loss_keeps_gradient_when_discriminator_wins():
    f = torch.tensor([-8.0], requires_grad=True)  # D(G(z)) ~ 0
    (gm,) = torch.autograd.grad(g_loss_minimax(f), f)
    (gn,) = torch.autograd.grad(g_loss_nonsaturating(f), f)
    assert abs(float(gm)) < 1e-3 < abs(float(gn))


def test_gradient_penalty_of_a_linear_critic_is_closed_form():
    w = torch.tensor([3.0, 4.0])  # ||w|| = 5 -> penalty (5 - 1)^2 = 16
    critic = lambda x, cond=None: x @ w  # noqa: E731
    real, fake = torch.randn(7, 2), torch.randn(7, 2)
    assert float(gradient_penalty(critic, real, fake, torch.rand(7))) == pytest.approx(
        16.0, rel=1e-6
    )


@pytest.mark.parametrize("loss,k", [("nonsaturating", 1), ("wgan-gp", 3), ("minimax", 2)])
def test_k_discriminator_steps_per_generator_step(loss, k):
    torch.manual_seed(0)
    gan = GAN(GANConfig(arch="mlp", loss=loss, d_steps=k, hidden=8))
    opts = gan.make_optimizers(1e-3)
    out = gan.train_step(torch.randint(0, 17, (16, 64)), None, opts)
    steps = [int(next(iter(o.state.values()))["step"]) for o in opts]
    assert steps == [1, k] and set(out) == {"loss", "g_loss"}


def test_conditional_dcgan_samples_digits():
    torch.manual_seed(0)
    gan = GAN(GANConfig(arch="dcgan", hidden=8, num_classes=10))
    opts = gan.make_optimizers(1e-3)
    gan.train_step(torch.randint(0, 17, (8, 64)), torch.arange(8) % 10, opts)
    s = gan.sample(5, y=torch.arange(5), generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 64) and s.dtype == torch.long and int(s.max()) <= 16


@pytest.mark.slow
def test_point_gan_learns_a_shifted_gaussian():
    torch.manual_seed(0)
    gan = GAN(GANConfig(arch="mlp", dim=2, hidden=16, latent=4))
    opts = gan.make_optimizers(2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(600):
        gan.train_step(
            torch.randn(128, 2, generator=g) * 0.3 + torch.tensor([2.0, -1.0]), None, opts
        )
    s = gan.sample(2000, generator=g)
    assert torch.allclose(s.mean(0), torch.tensor([2.0, -1.0]), atol=0.3)
