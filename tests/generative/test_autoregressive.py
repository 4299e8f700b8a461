import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from generative.autoregressive import (
    FVSBN,
    MADE,
    NADE,
    CausalConvAR,
    CausalConvConfig,
    CausalTransformer,
    FVSBNConfig,
    MADEConfig,
    NADEConfig,
    PixelCNN,
    PixelCNNConfig,
    TransformerConfig,
    causal_attention_mask,
    made_masks,
    sample_categorical,
    sinusoidal_positions,
)


def small_models(dim=4, levels=3):
    side = int(math.isqrt(dim))
    return {
        "fvsbn": FVSBN(FVSBNConfig(dim=dim, levels=levels)),
        "nade": NADE(NADEConfig(dim=dim, levels=levels, hidden=8)),
        "made": MADE(MADEConfig(dim=dim, levels=levels, hidden=(24, 24), num_masks=1, dropout=0.0)),
        "made-onehot-random": MADE(
            MADEConfig(
                dim=dim,
                levels=levels,
                hidden=(24,),
                inputs="onehot",
                order="random",
                num_masks=3,
                dropout=0.0,
                seed=3,
            )
        ),
        "pixelcnn": PixelCNN(
            PixelCNNConfig(side=side, levels=levels, channels=8, layers=3, kernel=3, dropout=0.0)
        ),
        "wavenet": CausalConvAR(
            CausalConvConfig(dim=dim, levels=levels, channels=8, dilations=(1, 2), dropout=0.0)
        ),
        "transformer": CausalTransformer(
            TransformerConfig(dim=dim, levels=levels, d_model=16, heads=2, layers=2, dropout=0.0)
        ),
    }


def dependency_matrix(model, dim, levels):
    """dep[i, j] = True when output i has a non-zero gradient w.r.t. input j."""
    torch.manual_seed(0)
    for p in model.parameters():  # make every weight non-zero so no dependency hides
        p.data.normal_(0, 0.3)
    model.eval()
    x = torch.randint(0, levels, (2, dim))
    h = F.one_hot(x, levels).float().requires_grad_(True)
    out = model(h)
    dep = torch.zeros(dim, dim, dtype=torch.bool)
    for i in range(dim):
        (g,) = torch.autograd.grad(out[:, i].sum(), h, retain_graph=True)
        dep[i] = g.abs().sum((0, 2)) > 0
    return dep


@pytest.mark.parametrize("name", list(small_models()))
def test_gradient_wrt_current_and_future_inputs_is_exactly_zero(name):
    dim, levels = 16, 3
    model = small_models(dim, levels)[name]
    masks = range(model.config.num_masks) if isinstance(model, MADE) else [None]
    for k in masks:
        if k is not None:
            model.set_mask(k)
        order = model.orders[k] if k is not None else torch.arange(dim)
        pos = torch.empty(dim, dtype=torch.long)
        pos[order] = torch.arange(dim)
        dep = dependency_matrix(model, dim, levels)
        allowed = pos[None, :] < pos[:, None]  # input j strictly before output i in the order
        assert not bool((dep & ~allowed).any())
        if name != "fvsbn":
            # and the model does use the past: the last pixel in the order sees something before it
            assert bool(dep[order[-1]].any())


@pytest.mark.parametrize("name", list(small_models()))
def test_discrete_likelihood_sums_to_one_on_a_tiny_domain(name):
    dim, levels = 4, 3
    model = small_models(dim, levels)[name].eval()
    everything = torch.tensor(list(itertools.product(range(levels), repeat=dim)))  # 81 images
    with torch.no_grad():
        total = model.log_prob(everything).double().exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", ["made", "made-onehot-random", "pixelcnn", "transformer"])
def test_sampling_matches_the_model_distribution(name):
    dim, levels = 4, 2
    torch.manual_seed(1)
    model = small_models(dim, levels)[name]
    for p in model.parameters():
        p.data.normal_(0, 0.5)
    model.eval()
    everything = torch.tensor(list(itertools.product(range(levels), repeat=dim)))
    with torch.no_grad():
        probs = model.log_prob(everything).exp()
        s = model.sample(4000, generator=torch.Generator().manual_seed(0))
    codes = (s * (levels ** torch.arange(dim - 1, -1, -1))).sum(1)
    freq = torch.bincount(codes, minlength=levels**dim).float() / len(s)
    assert float((freq - probs).abs().max()) < 0.03


def test_made_masks_connectivity_numbers():
    rng = __import__("numpy").random.default_rng(0)
    deg = __import__("numpy").arange(1, 4)
    masks = made_masks(deg, (5,), deg, rng)
    assert [m.shape for m in masks] == [(5, 3), (3, 5)]
    assert masks[1][0].sum() == 0  # output 1 depends on nothing


def test_attention_mask_and_positions():
    m = causal_attention_mask(3)
    assert m.tolist() == [[False, True, True], [False, False, True], [False, False, False]]
    pe = sinusoidal_positions(2, 2)
    assert torch.allclose(pe, torch.tensor([[0.0, 1.0], [math.sin(1.0), math.cos(1.0)]]))


def test_made_mixture_over_masks_is_normalised():
    model = MADE(
        MADEConfig(dim=3, levels=2, hidden=(8,), num_masks=4, order="random", dropout=0.0)
    ).eval()
    allx = torch.tensor(list(itertools.product(range(2), repeat=3)))
    assert float(model.log_prob(allx).detach().exp().sum()) == pytest.approx(1.0, abs=1e-5)


def test_made_mixture_is_the_log_mean_exp_over_masks_and_the_eval_loss_uses_it():
    model = MADE(
        MADEConfig(dim=5, levels=3, hidden=(16, 16), num_masks=3, order="random", dropout=0.0)
    ).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
    x = torch.randint(0, 3, (6, 5), generator=torch.Generator().manual_seed(0))
    per_mask = []
    for k in range(3):
        model.set_mask(k)
        h = F.one_hot(x, 3).float()
        per_mask.append(torch.log_softmax(model(h), -1).gather(-1, x[..., None]).sum((1, 2)))
    model.set_mask(1)
    expected = torch.logsumexp(torch.stack(per_mask), 0) - math.log(3)
    with torch.no_grad():
        assert torch.allclose(model.log_prob(x), expected, atol=1e-5)
        assert float(model.loss(x)) == pytest.approx(float(-expected.mean()), abs=1e-5)
    assert int(model.mask_index) == 1  # evaluation leaves the current mask alone
    model.train()
    model.loss(x)
    assert int(model.mask_index) == 2  # each training step moves to the next mask


def test_every_model_reads_its_sequence_length_from_the_config():
    assert PixelCNNConfig(side=3).dim == 9 and PixelCNNConfig().dim == 64
    for model in small_models(dim=9, levels=3).values():
        assert model.dim == 9 and model.levels == 3


def test_sample_categorical_shape_and_frequencies():
    logits = torch.log(torch.tensor([[0.2, 0.8, 0.0], [0.5, 0.25, 0.25]]))
    x = sample_categorical(logits.expand(20_000, 2, 3), torch.Generator().manual_seed(0))
    assert x.shape == (20_000, 2) and x.dtype == torch.long
    freq = F.one_hot(x, 3).float().mean(0)
    torch.testing.assert_close(freq, logits.exp(), atol=0.01, rtol=0)
    again = sample_categorical(logits.expand(20_000, 2, 3), torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
