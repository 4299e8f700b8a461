import itertools

import pytest
import torch

from generative.autoencoders import VQVAE
from generative.data import load_digits_split
from generative.token_prior import GRID, TokenPrior, TokenPriorConfig
from generative.trainer import TrainConfig, train


def tiny(prior="pixelcnn", codebook=3):
    cfg = TokenPriorConfig(
        prior=prior, channels=8, layers=2, dropout=0.0, codebook=codebook, code_dim=4, hidden=8
    )
    torch.manual_seed(0)
    return TokenPrior(cfg).eval()


@pytest.mark.parametrize("prior", ["pixelcnn", "transformer"])
def test_prior_is_a_distribution_over_code_grids(prior):
    model = tiny(prior, codebook=2)
    everything = torch.tensor(list(itertools.product(range(2), repeat=GRID * GRID)))  # 65,536
    with torch.no_grad():
        total = sum(
            model.log_prob_codes(chunk).double().exp().sum() for chunk in everything.split(8192)
        )
    assert float(total) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("prior", ["pixelcnn", "transformer"])
def test_sampling_shapes_and_support(prior):
    model = tiny(prior, codebook=5)
    g = torch.Generator().manual_seed(0)
    z = model.sample_codes(7, generator=g)
    assert z.shape == (7, GRID * GRID) and z.dtype == torch.long
    assert int(z.min()) >= 0 and int(z.max()) < 5
    x = model.sample(7, generator=g)
    assert x.shape == (7, 64) and int(x.min()) >= 0 and int(x.max()) <= 16
    assert model.sample(3, generator=g, mean=True).shape == (3, 64)


def test_codes_are_the_nearest_codebook_entries_and_the_bound_adds_up():
    model = tiny(codebook=6)
    x = torch.randint(0, 17, (5, 64), generator=torch.Generator().manual_seed(1))
    z = model.codes(x)
    ze = model.vqvae.encode(x).reshape(5, GRID * GRID, -1)
    d2 = torch.cdist(ze, model.vqvae.codebook[None].expand(5, -1, -1))
    assert torch.equal(z, d2.argmin(-1))
    logits = model.vqvae.decode_indices(z.view(5, GRID, GRID))
    rec = torch.log_softmax(logits, -1).gather(-1, x[..., None]).squeeze(-1).sum(-1)
    expected = -(rec + model.log_prob_codes(z))
    assert torch.allclose(model.nll_bound(x), expected, atol=1e-5)


def test_training_fits_the_prior_and_leaves_the_vqvae_frozen():
    split = load_digits_split()
    torch.manual_seed(0)
    vq = TokenPrior(TokenPriorConfig(codebook=8, code_dim=4, hidden=16)).vqvae
    vq.requires_grad_(True)
    train(vq, split.x_train, split.x_val, TrainConfig(steps=150, lr=3e-3, progress=False))
    model = TokenPrior(
        TokenPriorConfig(channels=16, layers=2, dropout=0.0, codebook=8, code_dim=4, hidden=16),
        vq,
    )
    before_vq = {k: v.clone() for k, v in model.vqvae.state_dict().items()}
    x = split.x_val[:200]
    with torch.no_grad():
        before = float(model.eval().loss(x))
    train(model, split.x_train, split.x_val, TrainConfig(steps=150, lr=3e-3, progress=False))
    with torch.no_grad():
        after = float(model.eval().loss(x))
    # 16 tokens from 8 entries: uniform is 16 ln 8 = 33.3 nats; the fitted prior is well below
    assert after < before - 5.0
    for k, v in model.vqvae.state_dict().items():
        assert torch.equal(v, before_vq[k])


def test_a_vqvae_of_another_size_is_refused():
    with pytest.raises(ValueError, match="does not match"):
        TokenPrior(TokenPriorConfig(codebook=8), VQVAE(TokenPriorConfig(codebook=16).vqvae))
