"""Full causal coverage by gradients: output i depends on EVERY earlier pixel and on no other.

The leak test in test_autoregressive.py only checks that nothing later is seen; a receptive
field that is too small (the classic PixelCNN failure) passes it. Here every autoregressive
configuration the benchmark trains is checked both ways, as built (default initialisation,
eval mode), on the 8x8 digits (or the 4x4 token grid of the VQ-VAE prior).
"""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from generative import build_model
from generative.autoregressive import (
    MADE,
    CausalConvConfig,
    FVSBNConfig,
    PixelCNN,
    PixelCNNConfig,
)
from generative.token_prior import build_prior
from mpgym.errors import MpgymError

ROOT = Path(__file__).resolve().parents[2]


def _benchmark_setups() -> dict:
    """``SETUPS`` of benchmarks/generative.py (loaded by path: it is a script, not a package)."""
    path = ROOT / "benchmarks" / "generative.py"
    spec = importlib.util.spec_from_file_location("_generative_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module.SETUPS


SETUPS = _benchmark_setups()
AUTOREGRESSIVE = ("fvsbn", "nade", "made", "pixelcnn", "wavenet", "transformer")


def coverage(
    model: torch.nn.Module,
    dim: int,
    levels: int,
    order: torch.Tensor | None = None,
    *,
    images: int = 8,
) -> tuple[int, int]:
    """``(missed, leaked)`` (pixel, earlier pixel) pairs of ``model``'s current connectivity.

    ``dep[i, j]``: some gradient ``d logits_i / d onehot(x_j)`` is non-zero over ``images`` random
    images (so a ReLU that happens to be off for one image does not hide a dependency), with
    random weights on the logits (their plain sum is the one direction a softmax ignores).
    """
    torch.manual_seed(0)
    with torch.no_grad():  # no exactly-zero weights (zero-initialised tokens, biases) to hide paths
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.eval()
    x = torch.randint(0, levels, (images, dim))
    h = F.one_hot(x, levels).float().requires_grad_(True)
    out = model(h)  # [n, D, L]
    weights = torch.randn(out.shape)
    dep = torch.zeros(dim, dim, dtype=torch.bool)
    for i in range(dim):
        (g,) = torch.autograd.grad((out[:, i] * weights[:, i]).sum(), h, retain_graph=True)
        dep[i] = g.abs().sum((0, 2)) > 0
    order = torch.arange(dim) if order is None else order
    pos = torch.empty(dim, dtype=torch.long)
    pos[order] = torch.arange(dim)
    allowed = pos[None, :] < pos[:, None]  # input j strictly before output i in the order
    return int((allowed & ~dep).sum()), int((dep & ~allowed).sum())


def _benchmarked_models():
    for name, (model_cfg, _) in SETUPS.items():
        if name in AUTOREGRESSIVE:
            yield pytest.param(name, model_cfg, id=name)
        elif name == "vqprior":  # the token prior: an autoregressive model over 16 tokens
            yield pytest.param(name, model_cfg, id="vqprior-prior")


def test_the_benchmark_trains_autoregressive_models():
    assert {"pixelcnn", "made", "nade", "transformer"} <= set(SETUPS)


@pytest.mark.parametrize("name, model_cfg", list(_benchmarked_models()))
def test_every_benchmarked_autoregressive_model_sees_all_earlier_pixels_and_no_others(
    name, model_cfg
):
    torch.manual_seed(0)
    model = build_prior(model_cfg) if name == "vqprior" else build_model(name, model_cfg)
    dim, levels = model.dim, model.levels
    if isinstance(model, MADE):
        # a pair (d, d + 1) in the order passes only through the few hidden units of degree d;
        # switch every ReLU on (positive weights, large biases) so the gradients show the
        # connectivity the masks allow, not which units a handful of images happen to turn on
        with torch.no_grad():
            for layer in model.layers[:-1]:
                layer.weight.abs_()
                layer.bias.fill_(100.0)
        for k in range(model.config.num_masks):
            model.set_mask(k)
            assert coverage(model, dim, levels, model.orders[k]) == (0, 0), f"mask {k}"
    else:
        assert coverage(model, dim, levels) == (0, 0)


@pytest.mark.parametrize(
    "name, cfg",
    [
        ("fvsbn", FVSBNConfig()),
        ("wavenet", CausalConvConfig(channels=8)),  # the default dilations, narrower
        ("pixelcnn", PixelCNNConfig(channels=8)),
        ("pixelcnn", PixelCNNConfig(channels=8, layers=2)),
        ("pixelcnn", PixelCNNConfig(channels=8, layers=3, kernel=3)),
        ("pixelcnn", PixelCNNConfig(channels=8, layers=1, kernel=15)),
    ],
    ids=["fvsbn", "wavenet", "pixelcnn-default", "pixelcnn-2", "pixelcnn-3k3", "pixelcnn-1k15"],
)
def test_default_and_shallow_models_see_all_earlier_pixels(name, cfg):
    torch.manual_seed(0)
    model = build_model(name, cfg)
    assert coverage(model, model.dim, model.levels) == (0, 0)


def test_pixelcnn_benchmark_setting_widens_later_kernels_to_cover_the_image():
    # 5 layers, first kernel 5: with kernel 3 later the reach is 2 + 4 = 6 < 7 rows/columns,
    # which left 126 of the 2,016 earlier pixels unseen, e.g. pixel (1, 0) never saw (0, 7)
    cfg = PixelCNNConfig(channels=32, layers=5)
    assert cfg.block_kernel == 5 and cfg.reach == 10
    assert PixelCNNConfig().block_kernel == 3  # 6 layers reach 2 + 5 = 7 already
    model = PixelCNN(cfg)
    assert model.blocks[0].k == 5


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"layers": 1}, "kernel >= 15"),
        ({"kernel": 4}, "odd whole number >= 3"),
        ({"kernel": 1}, "odd whole number >= 3"),
        ({"layers": 0}, "PixelCNN layers"),
        ({"channels": -2}, "PixelCNN channels"),
    ],
)
def test_pixelcnn_refuses_configs_that_cannot_cover_the_image(kw, words):
    with pytest.raises(MpgymError, match=words):
        PixelCNN(PixelCNNConfig(**kw))
