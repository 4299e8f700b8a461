"""A seed gives the same network whatever torch's thread count (orthogonal init)."""

import torch

from agents.deep.networks import ActorCritic
from mpgym.nn import mlp


def _params_with_threads(threads: int, make) -> list[torch.Tensor]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        return [p.detach().clone() for p in make().parameters()]
    finally:
        torch.set_num_threads(before)


def test_orthogonal_init_does_not_depend_on_threads():
    # A multithreaded LAPACK QR rounds differently: with 2 threads PPO's Pendulum-v1 preset
    # got other 64x64 weights for the same seed (and ended at -227.6 instead of -176.3).
    for make in (lambda: mlp(3, (64, 64), 1, activation="tanh", out_gain=1.0),
                 lambda: ActorCritic(3, 1, discrete=False, std="sde")):
        one, two = _params_with_threads(1, make), _params_with_threads(2, make)
        assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))
    assert torch.get_num_threads() >= 1
