import pytest
import torch

from generative.flows import (
    ActNorm,
    AffineCoupling,
    FlowSequence,
    Glow,
    GlowConfig,
    InvConv1x1,
    RealNVP2D,
    RealNVP2DConfig,
    checkerboard_mask,
    conv_net,
    logit_transform,
    mlp_net,
    squeeze2d,
    unsqueeze2d,
)


def randomize(module, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.data.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def layers_under_test():
    torch.manual_seed(0)
    channel_mask = torch.zeros(1, 4, 1, 1)
    channel_mask[:, :2] = 1
    return {
        "actnorm": ActNorm(4),
        "invconv": InvConv1x1(4, torch.Generator().manual_seed(1)),
        "coupling-checkerboard": AffineCoupling(
            checkerboard_mask(2, 2).expand(1, 4, 2, 2).clone(), conv_net(4, 8, 8)
        ),
        "coupling-channel": AffineCoupling(channel_mask, conv_net(4, 8, 8)),
        "glow-steps": FlowSequence(
            [
                ActNorm(4),
                InvConv1x1(4),
                AffineCoupling(channel_mask, conv_net(4, 8, 8)),
                ActNorm(4),
                InvConv1x1(4),
                AffineCoupling(1 - channel_mask, conv_net(4, 8, 8)),
            ]
        ),
    }


@pytest.mark.parametrize("name", list(layers_under_test()))
def test_layers_invert_and_logdet_equals_autograd_jacobian(name):
    layer = layers_under_test()[name].double()
    x = torch.randn(3, 4, 2, 2, dtype=torch.float64)
    layer(x)  # ActNorm's data-dependent init
    randomize(layer)
    y, logdet = layer(x)
    assert torch.allclose(layer.inverse(y), x, atol=1e-5)
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(
            lambda v: layer(v.view(1, 4, 2, 2))[0].flatten(), x[i].flatten()
        )
        assert float(logdet[i]) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-6)


def test_actnorm_data_dependent_init_standardises_channels():
    x = 3 + 2 * torch.randn(256, 4, 2, 2)
    y, _ = ActNorm(4)(x)
    assert torch.allclose(y.mean((0, 2, 3)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(y.std((0, 2, 3)), torch.ones(4), atol=1e-3)


def test_invconv_lu_logdet_is_log_abs_det_of_w():
    layer = randomize(InvConv1x1(5).double())
    assert float(layer.log_s.sum()) == pytest.approx(
        float(torch.linalg.slogdet(layer.weight())[1]), abs=1e-10
    )


def test_squeeze_is_a_permutation_and_inverts():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    s = squeeze2d(x)
    assert s.shape == (2, 4, 2, 2)
    assert torch.equal(unsqueeze2d(s), x)
    assert torch.equal(s.flatten().sort().values, x.flatten().sort().values)
    assert s[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]  # one 2x2 block becomes four channels


def test_logit_transform_logdet():
    y = torch.rand(2, 5, dtype=torch.float64)
    z, ld = logit_transform(y, 0.05)
    for i in range(2):
        jac = torch.autograd.functional.jacobian(
            lambda v: logit_transform(v[None], 0.05)[0][0], y[i]
        )
        assert float(ld[i]) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-9)


def test_glow_inverts_and_its_logdet_matches_autograd():
    torch.manual_seed(0)
    flow = Glow(GlowConfig(steps_per_level=2, hidden=8)).double()
    v = (torch.randint(0, 17, (4, 64)).double() + torch.rand(4, 64, dtype=torch.float64)) / 17
    flow.log_prob_continuous(v)  # init ActNorm
    randomize(flow, 0.05)

    # the full map v -> (z_out, z2) is a bijection of R^64; compare its log-det with autograd
    def full(vv):
        from generative.flows import logit_transform as lt

        n = vv.shape[0]
        z, _ = lt(vv.view(n, 1, 8, 8), flow.config.alpha)
        z, _ = flow.level1(squeeze2d(z))
        keep, out = z.chunk(2, 1)
        z2, _ = flow.level2(squeeze2d(keep))
        return torch.cat([out.flatten(1), z2.flatten(1)], 1)

    jac = torch.autograd.functional.jacobian(lambda u: full(u[None])[0], v[0])
    n = 1
    z, ld0 = logit_transform(v[:1].view(n, 1, 8, 8), flow.config.alpha)
    z1, ld1 = flow.level1(squeeze2d(z))
    z2, ld2 = flow.level2(squeeze2d(z1.chunk(2, 1)[0]))
    assert float(ld0 + ld1 + ld2) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-6)
    keep = z1.chunk(2, 1)[0]
    back = flow.level1.inverse(
        torch.cat([unsqueeze2d(flow.level2.inverse(z2)), z1.chunk(2, 1)[1]], 1)
    )
    assert torch.allclose(back, squeeze2d(z), atol=1e-5) and keep.shape == (1, 2, 4, 4)


def test_glow_sample_and_discrete_bound_units():
    flow = Glow(GlowConfig(steps_per_level=1, hidden=8))
    x = torch.randint(0, 17, (5, 64))
    lp = flow.log_prob(x, generator=torch.Generator().manual_seed(0))
    assert lp.shape == (5,) and bool(torch.isfinite(lp).all())
    s = flow.sample(6, generator=torch.Generator().manual_seed(0))
    assert s.shape == (6, 64) and int(s.min()) >= 0 and int(s.max()) <= 16


def test_conditional_coupling_inverts_for_every_label():
    mask = torch.tensor([[1.0, 0.0]])
    layer = randomize(AffineCoupling(mask, mlp_net(2 + 3, 4, 16)))
    x = torch.randn(6, 2)
    for label in range(3):
        cond = torch.nn.functional.one_hot(torch.full((6,), label), 3).float()
        y, _ = layer(x, cond)
        assert torch.allclose(layer.inverse(y, cond), x, atol=1e-5)
    c0 = torch.nn.functional.one_hot(torch.zeros(6, dtype=torch.long), 3).float()
    c1 = torch.nn.functional.one_hot(torch.ones(6, dtype=torch.long), 3).float()
    assert not torch.allclose(layer(x, c0)[0], layer(x, c1)[0])


def test_realnvp2d_density_integrates_to_one():
    torch.manual_seed(0)
    flow = RealNVP2D(RealNVP2DConfig(couplings=4, hidden=16))
    flow.log_prob(torch.randn(512, 2))  # ActNorm init
    randomize(flow, 0.1)
    lin = torch.linspace(-8, 8, 401)
    gx, gy = torch.meshgrid(lin, lin, indexing="xy")
    with torch.no_grad():
        p = flow.log_prob(torch.stack([gx.flatten(), gy.flatten()], 1)).exp()
    cell = float(lin[1] - lin[0]) ** 2
    assert float(p.sum()) * cell == pytest.approx(1.0, abs=0.02)
    z = torch.randn(10, 2)
    with torch.no_grad():
        assert torch.allclose(flow.flow(flow.flow.inverse(z))[0], z, atol=1e-5)
