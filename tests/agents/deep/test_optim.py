"""FusedRMSprop against torch.optim.RMSprop: same updates, same state, interchangeable."""

from __future__ import annotations

import copy

import pytest
import torch

from agents.deep import optim
from agents.deep.optim import FusedRMSprop

pytest.importorskip("numba")


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(16, 4, 3, 3), (16,), (128, 1024), (128,), (6, 128), (6,)]
    return [torch.nn.Parameter(torch.randn(s, generator=g) * 0.1) for s in shapes]


def _grads(step: int, shapes: list[torch.Size]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    # mixed scales, exact zeros and tiny values, as real gradients have
    out = []
    for s in shapes:
        x = torch.randn(s, generator=g) * 10.0 ** torch.randint(-8, 1, s, generator=g)
        out.append(torch.where(torch.rand(s, generator=g) < 0.1, 0.0, x))
    return out


@pytest.mark.parametrize("kwargs", [
    {"lr": 2.0**-9, "alpha": 0.95, "eps": 0.01, "centered": True},  # MinAtar's DQN
    {"lr": 7e-4, "alpha": 0.99, "eps": 1e-5},  # A2C's
])
def test_fused_rmsprop_matches_torch_over_steps(kwargs):
    ref, fused = _params(0), _params(0)
    opt_ref = torch.optim.RMSprop(ref, foreach=True, **kwargs)
    opt_fused = FusedRMSprop(fused, **kwargs)
    for step in range(30):
        grads = _grads(step, [p.shape for p in ref])
        for p, q, g in zip(ref, fused, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        if step == 10:  # a schedule writes the step size into the group
            opt_ref.param_groups[0]["lr"] = opt_fused.param_groups[0]["lr"] = kwargs["lr"] / 3
        if step == 0:
            assert opt_fused._fusable()
        opt_ref.step()
        opt_fused.step()
    for p, q in zip(ref, fused, strict=True):
        torch.testing.assert_close(q, p, rtol=2e-6, atol=1e-8)
        sr, sf = opt_ref.state[p], opt_fused.state[q]
        assert sorted(sr) == sorted(sf)
        assert float(sf["step"]) == float(sr["step"]) == 30.0
        for key in sr:  # a few float32 ulps of the largest terms (gradients up to ~4)
            torch.testing.assert_close(sf[key], sr[key], rtol=2e-6, atol=1e-7)


def test_fused_rmsprop_state_dict_moves_between_the_classes():
    ref, fused = _params(1), _params(1)
    kwargs = {"lr": 1e-3, "alpha": 0.95, "eps": 0.01, "centered": True}
    a = torch.optim.RMSprop(ref, **kwargs)
    for step in range(3):
        for p, g in zip(ref, _grads(step, [p.shape for p in ref]), strict=True):
            p.grad = g
        a.step()
    b = FusedRMSprop(fused, **kwargs)
    b.load_state_dict(copy.deepcopy(a.state_dict()))  # a copy: the state tensors are not shared
    with torch.no_grad():
        for p, q in zip(ref, fused, strict=True):
            q.copy_(p)
    grads = _grads(3, [p.shape for p in ref])
    for p, q, g in zip(ref, fused, grads, strict=True):
        p.grad, q.grad = g.clone(), g.clone()
    a.step()
    b.step()
    for p, q in zip(ref, fused, strict=True):
        torch.testing.assert_close(q, p, rtol=2e-6, atol=1e-8)
    assert set(b.state_dict()["state"][0]) == {"step", "square_avg", "grad_avg"}


@pytest.mark.parametrize("kwargs", [{"momentum": 0.9}, {"weight_decay": 1e-2},
                                    {"maximize": True}])
def test_fused_rmsprop_falls_back_to_torch_for_what_the_loop_lacks(kwargs, monkeypatch):
    ref, fused = _params(2), _params(2)
    opt_ref = torch.optim.RMSprop(ref, lr=1e-3, **kwargs)
    opt_fused = FusedRMSprop(fused, lr=1e-3, **kwargs)
    def loop(*args):
        raise AssertionError("the compiled loop ran")

    monkeypatch.setattr(optim, "_compiled_loop", lambda: loop)
    for p, q, g in zip(ref, fused, _grads(0, [p.shape for p in ref]), strict=True):
        p.grad, q.grad = g.clone(), g.clone()
    assert not opt_fused._fusable()
    opt_ref.step()
    opt_fused.step()
    for p, q in zip(ref, fused, strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=0)


def test_fused_rmsprop_falls_back_for_float64_parameters():
    p = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    opt = FusedRMSprop([p], lr=0.1)
    p.grad = torch.ones(5, dtype=torch.float64)
    assert not opt._fusable()
    opt.step()
    assert p.dtype == torch.float64 and torch.all(p < 1.0)


def test_fused_rmsprop_follows_replaced_parameter_data_and_state():
    p = torch.nn.Parameter(torch.ones(4))
    opt = FusedRMSprop([p], lr=0.1, centered=True)
    p.grad = torch.ones(4)
    opt.step()
    p.data = torch.full((4,), 5.0)  # new storage: the kept views must not write to the old one
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # new state tensors
    ref = torch.nn.Parameter(torch.full((4,), 5.0))
    opt_ref = torch.optim.RMSprop([ref], lr=0.1, centered=True)
    opt_ref.load_state_dict(copy.deepcopy(opt.state_dict()))
    p.grad, ref.grad = torch.ones(4), torch.ones(4)
    opt.step()
    opt_ref.step()
    torch.testing.assert_close(p, ref)
    assert float(p.detach()[0]) < 5.0
