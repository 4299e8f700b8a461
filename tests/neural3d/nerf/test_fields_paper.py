"""The fields follow their papers' architecture and activations exactly."""

import math

import torch

from neural3d.nerf.fields import HashField, VanillaField, trunc_exp


def test_vanilla_skip_feeds_the_sixth_layer():
    # NeRF (official code, nerf-pytorch): skips=[4] concatenates the encoded input to the
    # output of layer index 4 (the 5th), so the 6th linear layer takes 256 + 63 inputs.
    f = VanillaField(torch.tensor([-1.0, -1, -1, 1, 1, 1]))
    p = 3 * (1 + 2 * 10)
    widths = [layer.in_features for layer in f.layers]
    assert widths == [p, 256, 256, 256, 256, 256 + p, 256, 256]
    assert [w for w in widths[1:] if w != 256] == [256 + p]  # only one layer gets the input


def test_vanilla_skip_layer_sees_the_encoded_input():
    # the 6th layer's input is [encoded x, h5] (input first, as torch.cat([input_pts, h]))
    torch.manual_seed(0)
    f = VanillaField(torch.tensor([-1.0, -1, -1, 1, 1, 1]), width=16, depth=8)
    seen = {}

    def hook(module, inp, out):
        seen["x"] = inp[0]

    f.layers[5].register_forward_hook(hook)
    x = torch.rand(4, 3)
    f.density(x)
    enc = f.pos_enc(x)
    torch.testing.assert_close(seen["x"][:, :enc.shape[1]], enc)
    shallow = VanillaField(torch.zeros(6), width=16, depth=4)  # no layer after index 4: no skip
    assert [layer.in_features for layer in shallow.layers] == [63, 16, 16, 16]
    assert shallow.density(x).shape == (4,)


def test_trunc_exp_forward_is_exp_and_gradient_is_clamped():
    x = torch.tensor([-20.0, 0.0, 3.0, 20.0], requires_grad=True)
    y = trunc_exp(x)
    torch.testing.assert_close(y, torch.exp(x.detach()))  # forward exp at 20 (old: exp(15))
    y.sum().backward()
    expected = torch.exp(torch.tensor([-15.0, 0.0, 3.0, 15.0]))
    torch.testing.assert_close(x.grad, expected)  # gradient at 20 is exp(15), not 0
    assert math.isfinite(trunc_exp(torch.tensor(1000.0)).item())  # no inf density


def test_trunc_exp_gradcheck_below_the_clamp():
    x = (torch.rand(12, dtype=torch.float64) * 20 - 10).requires_grad_()
    assert torch.autograd.gradcheck(trunc_exp, (x,))


def test_hash_field_gradient_flows_at_high_density():
    f = HashField(torch.tensor([-1.0, -1, -1, 1, 1, 1]), num_levels=2, log2_table_size=8,
                  base_resolution=2, max_resolution=4, hidden=8)
    with torch.no_grad():
        f.density_mlp[-1].bias[0] = 20.0  # log-density 20: above the gradient clamp
    sigma = f.density(torch.zeros(3, 3))
    assert (sigma > math.exp(18)).all()
    sigma.sum().backward()
    assert f.density_mlp[-1].bias.grad[0] > 0  # the old forward clamp gave exactly zero
