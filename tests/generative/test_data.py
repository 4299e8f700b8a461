import math

import pytest
import torch

from generative.data import (
    TOY_NAMES,
    categorical_baseline_nll,
    check_images,
    dequantize,
    label_condition,
    load_digits_split,
    quantize,
    sample_toy,
)
from generative.evaluation import nats_to_bits_per_dim
from mpgym.errors import MpgymError


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


def test_split_sizes_and_levels(split):
    assert (len(split.x_train), len(split.x_val), len(split.x_test)) == (1000, 350, 447)
    assert (
        split.x_train.shape[1] == 64
        and int(split.x_train.max()) == 16
        and int(split.x_train.min()) == 0
    )
    binary = load_digits_split(binary=True)
    assert binary.levels == 2 and set(binary.x_test.unique().tolist()) == {0, 1}


def test_reference_points_of_the_issue(split):
    # uniform over 17 levels: 64 ln 17 = 181.33 nats; independent categorical (add-one) 106.47 nats
    assert 64 * math.log(17) == pytest.approx(181.33, abs=0.005)
    nll = categorical_baseline_nll(split.x_train, split.x_test)
    assert nll == pytest.approx(106.47, abs=0.005)
    assert nats_to_bits_per_dim(nll) == pytest.approx(2.40, abs=0.005)


def test_dequantize_round_trip():
    x = torch.randint(0, 17, (50, 64))
    g = torch.Generator().manual_seed(0)
    v = dequantize(x, g)
    assert bool((v >= x / 17).all()) and bool((v < (x + 1) / 17).all())
    assert torch.equal(quantize(v), x)


@pytest.mark.parametrize(
    "bad, words",
    [
        (torch.full((2, 64), 17), "support is 0..16"),
        (torch.full((2, 64), -1), "support is 0..16"),
        (torch.full((2, 64), float("nan")), "NaN"),
        (torch.full((2, 63), 3), "shape"),
        (torch.full((2, 64), 2.5), "fractional"),
    ],
)
def test_bad_images_are_rejected_with_clear_messages(bad, words):
    with pytest.raises(MpgymError, match=words):
        check_images(bad)


def test_image_layouts_are_accepted():
    x = torch.randint(0, 17, (3, 1, 8, 8))
    assert check_images(x).shape == (3, 64)
    assert check_images(x.float()).dtype == torch.long


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_densities_are_reproducible_and_bounded(name):
    a = sample_toy(name, 500, generator=torch.Generator().manual_seed(1))
    b = sample_toy(name, 500, generator=torch.Generator().manual_seed(1))
    assert a.shape == (500, 2) and torch.equal(a, b)
    assert float(a.abs().max()) < 6


def test_unknown_toy_density():
    with pytest.raises(MpgymError, match="accepted"):
        sample_toy("swissroll", 10)


def test_label_condition_one_hot_or_none_and_a_clear_error():
    assert label_condition(None, 0, 3, model="VAE") is None
    y = torch.tensor([2, 0])
    assert torch.equal(label_condition(y, 3, 2, model="VAE"), torch.eye(3)[[2, 0]])
    with pytest.raises(ValueError, match="this flow is conditional: pass labels y in 0..2"):
        label_condition(None, 3, 2, model="flow")
