import math

import pytest
import torch

from generative.autoencoders import (
    VAE,
    VQVAE,
    AEConfig,
    Autoencoder,
    VAEConfig,
    VQVAEConfig,
    kl_gaussians,
    reparameterize,
    vector_quantize,
)
from generative.data import load_digits_split
from mpgym.nn import diag_gaussian_log_prob


def _log_normal(x, mu, logvar):
    return diag_gaussian_log_prob(x, mu, log_var=logvar)


def test_kl_closed_form_numeric_example():
    assert float(kl_gaussians(torch.tensor([1.0]), torch.tensor([0.0]))) == pytest.approx(0.5)


def test_closed_form_kl_equals_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu1, lv1 = torch.tensor([0.3, -1.0, 2.0]), torch.tensor([-0.5, 0.4, 0.1])
    mu2, lv2 = torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.2, -0.3, 0.0])
    z = reparameterize(mu1, lv1, torch.randn(400_000, 3, generator=g))
    mc = (_log_normal(z, mu1, lv1) - _log_normal(z, mu2, lv2)).mean()
    assert float(mc) == pytest.approx(float(kl_gaussians(mu1, lv1, mu2, lv2)), abs=0.01)
    z0 = reparameterize(mu1, lv1, torch.randn(400_000, 3, generator=g))
    mc0 = (_log_normal(z0, mu1, lv1) - _log_normal(z0, torch.zeros(3), torch.zeros(3))).mean()
    assert float(mc0) == pytest.approx(float(kl_gaussians(mu1, lv1)), abs=0.01)


def test_reparameterisation_passes_gradients_to_mean_and_variance():
    mu = torch.zeros(4, requires_grad=True)
    lv = torch.zeros(4, requires_grad=True)
    reparameterize(mu, lv, torch.ones(4)).sum().backward()
    assert torch.allclose(mu.grad, torch.ones(4)) and torch.allclose(lv.grad, 0.5 * torch.ones(4))


def test_linear_autoencoder_spans_the_pca_subspace():
    torch.manual_seed(0)
    x = load_digits_split().x_train[:300].float() / 16
    x = x - x.mean(0)
    k = 2
    ae = Autoencoder(AEConfig(latent=k))
    opt = torch.optim.LBFGS(ae.parameters(), max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ae.loss(x)
        loss.backward()
        return loss

    opt.step(closure)
    pca = torch.linalg.svd(x, full_matrices=False).Vh[:k].T  # [64, k]
    dec = torch.linalg.qr(ae.decoder[0].weight.detach())[0]  # [64, k] orthonormal basis
    cosines = torch.linalg.svdvals(pca.T @ dec)  # cosines of the principal angles
    assert float(cosines.min()) > 0.99


@pytest.mark.parametrize("decoder", ["categorical", "bernoulli", "gaussian"])
def test_iwae_bound_with_one_sample_is_the_elbo_and_tightens(decoder):
    torch.manual_seed(0)
    if decoder == "gaussian":
        cfg = VAEConfig(decoder=decoder, input_dim=2, latent=2, hidden=16)
        x = torch.randn(8, 2)
    else:
        levels = 17 if decoder == "categorical" else 2
        cfg = VAEConfig(decoder=decoder, latent=4, hidden=32)
        x = torch.randint(0, levels, (8, 64))
    vae = VAE(cfg).eval()
    reps = 2000
    xr = x.repeat(reps, 1)
    with torch.no_grad():
        elbo = vae.elbo(xr, generator=torch.Generator().manual_seed(1)).elbo.view(reps, -1).mean(0)
        k1 = (
            vae.iwae_bound(xr, k=1, generator=torch.Generator().manual_seed(2))
            .view(reps, -1)
            .mean(0)
        )
        iw = vae.iwae_bound(x, k=2000, chunk=2000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(k1, elbo, rtol=0.02, atol=0.5)  # IWAE with K = 1 is the ELBO
    assert bool((iw >= elbo - 0.05).all())  # more samples: a tighter (higher) bound


def test_categorical_decoder_is_normalised():
    vae = VAE(VAEConfig(latent=2, hidden=8, input_dim=64)).eval()
    logits = vae.decode_logits(torch.randn(3, 2))
    assert logits.shape == (3, 64, 17)
    assert torch.allclose(torch.log_softmax(logits, -1).exp().sum(-1), torch.ones(3, 64))


def test_conditional_vae_uses_the_label_and_needs_it():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(num_classes=10, latent=2, hidden=16)).eval()
    z = torch.randn(2, 2)
    a = vae.decode_logits(z, torch.tensor([0, 0]))
    b = vae.decode_logits(z, torch.tensor([1, 1]))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="labels"):
        vae.loss(torch.randint(0, 17, (2, 64)))


def test_beta_weights_the_kl():
    torch.manual_seed(0)
    x = torch.randint(0, 17, (4, 64))
    v1, v4 = VAE(VAEConfig(beta=1.0, hidden=16)), VAE(VAEConfig(beta=4.0, hidden=16))
    v4.load_state_dict(v1.state_dict())
    torch.manual_seed(1)
    out = v1.elbo(x)
    torch.manual_seed(1)
    l1 = v1.loss(x)
    torch.manual_seed(1)
    l4 = v4.loss(x)
    assert float((l4 - l1).detach()) == pytest.approx(3 * float(out.kl.mean().detach()), rel=1e-4)


def test_vector_quantize_and_straight_through():
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.0]])
    zq, idx = vector_quantize(torch.tensor([[0.9, 0.8], [-1.5, 0.1]]), codebook)
    assert idx.tolist() == [1, 2] and torch.equal(zq, codebook[[1, 2]])
    torch.manual_seed(0)
    vq = VQVAE(VQVAEConfig(codebook=8, dim=4, hidden=8))
    vq.loss(torch.randint(0, 17, (4, 64))).backward()
    assert (
        vq.encoder[0].weight.grad is not None and float(vq.encoder[0].weight.grad.abs().sum()) > 0
    )
    assert float(vq.codebook.grad.abs().sum()) > 0
    assert math.isfinite(float(vq.loss(torch.randint(0, 17, (4, 64)))))
