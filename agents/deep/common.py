"""The math of deep RL as pure functions: returns, GAE, PPO clipping, DQN targets, distributions.

Layer (a) of the deep agents: no modules, no environments, no state. Arrays are laid out
time-major, ``[T, N]`` = (steps of a rollout, parallel environments); a single episode is
``[T]``. Each function carries its equation and a small numeric example that is also a test.

Episode ends come in two kinds (Gymnasium >= 0.26): ``terminated`` (the MDP reached a terminal
state, whose value is 0) and ``truncated`` (a time limit cut the episode; the next state still
has a value, so it is bootstrapped). Both cut the GAE trace; only ``terminated`` zeroes the
bootstrap value.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mpgym.nn import LOG_2PI

LOG_SQRT_2PI = 0.5 * LOG_2PI


# --------------------------------------------------------------------------- returns


def rollout_returns(
    rewards: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    last_value: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Discounted returns of a rollout that may hold several episodes per environment.

    ``G_t = r_t + gamma * (1 - done_t) * G_{t+1}`` with ``G_T = last_value`` (the bootstrap for
    an unfinished episode; 0 gives Monte Carlo returns). One complete episode without a
    bootstrap is :func:`agents.common.returns.reward_to_go`; :func:`gae` with ``lam = 1`` gives
    these returns minus ``V(s_t)`` where a time limit is bootstrapped.

    Args:
        rewards: ``[T]`` or ``[T, N]`` rewards.
        dones: same shape, true where an episode ended at that step.
        gamma: discount factor.
        last_value: ``[N]`` (or scalar) value of the state after the last step.

    Returns:
        Returns with the shape of ``rewards`` (float64).

    Example:
        >>> rollout_returns(np.array([1.0, 1.0, 1.0]), np.array([0, 1, 0]), 0.5)
        array([1.5, 1. , 1. ])
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    notdone = 1.0 - np.asarray(dones, dtype=np.float64)
    out = np.empty_like(rewards)
    running = np.broadcast_to(np.asarray(last_value, dtype=np.float64), rewards.shape[1:]).copy()
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * notdone[t] * running
        out[t] = running
    return out


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    lam: float,
) -> np.ndarray:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16), truncation-aware.

    ``delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)`` and
    ``A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}``, where ``s'_t`` is the true next
    state of step ``t`` (the final observation when the episode ended there). ``lam = 1`` gives
    the n-step returns of A2C (Mnih et al. 2016) minus ``V(s_t)``; ``lam = 0`` the TD error.

    Args:
        rewards: ``[T, N]`` (or ``[T]``) rewards.
        values: ``[T, N]`` ``V(s_t)``.
        next_values: ``[T, N]`` ``V(s'_t)``; only used where not ``terminated``.
        terminated: ``[T, N]`` true where ``s'_t`` is terminal (value 0).
        dones: ``[T, N]`` true where the episode ended (terminated or truncated).
        gamma: discount factor.
        lam: the GAE lambda in [0, 1].

    Returns:
        ``[T, N]`` float32 advantages; the value targets are ``advantages + values``.

    Example:
        Two steps, one env, V = 0 everywhere, rewards 1, gamma 0.5, lam 1:
        >>> gae(np.ones(2), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2), 0.5, 1.0)
        array([1.5, 1. ], dtype=float32)
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    nonterminal = 1.0 - np.asarray(terminated, dtype=np.float64)
    notdone = 1.0 - np.asarray(dones, dtype=np.float64)
    deltas = rewards + gamma * nonterminal * np.asarray(next_values, dtype=np.float64) - values
    adv = np.empty_like(deltas)
    running = np.zeros(deltas.shape[1:])
    for t in range(len(deltas) - 1, -1, -1):
        running = deltas[t] + gamma * lam * notdone[t] * running
        adv[t] = running
    return adv.astype(np.float32)


# --------------------------------------------------------------------------- losses


def ppo_clip_loss(ratio: Tensor, advantages: Tensor, clip: float) -> Tensor:
    """PPO's clipped surrogate loss (Schulman et al. 2017, eq. 7), to minimise.

    ``L = -mean(min(rho * A, clip(rho, 1 - eps, 1 + eps) * A))`` with ``rho = pi / pi_old``.
    The gradient is zero wherever clipping is active on the pessimistic side.

    Args:
        ratio: ``[B]`` probability ratios ``pi(a|s) / pi_old(a|s)``.
        advantages: ``[B]`` advantage estimates.
        clip: epsilon, e.g. 0.2.

    Returns:
        Scalar loss.

    Example:
        >>> ppo_clip_loss(torch.tensor([1.5, 0.5]), torch.tensor([1.0, 1.0]), 0.2)
        tensor(-0.8500)
    """
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip) * advantages
    return -torch.minimum(unclipped, clipped).mean()


def dqn_targets(
    rewards: Tensor,
    terminated: Tensor,
    next_q_target: Tensor,
    gamma: float,
    next_q_online: Tensor | None = None,
) -> Tensor:
    """TD targets of DQN (Mnih et al. 2015) or Double DQN (van Hasselt et al. 2016).

    DQN: ``y = r + gamma * (1 - terminated) * max_a' Q_target(s', a')``. Double DQN picks the
    action with the online network and evaluates it with the target network:
    ``y = r + gamma * (1 - terminated) * Q_target(s', argmax_a' Q_online(s', a'))``.
    Computed without gradient: targets are constants, as the method defines them.

    Args:
        rewards: ``[B]`` rewards.
        terminated: ``[B]`` 1.0 where ``s'`` is terminal (truncation is not termination).
        next_q_target: ``[B, A]`` target-network values of ``s'``.
        gamma: discount factor.
        next_q_online: ``[B, A]`` online-network values of ``s'`` for Double DQN, else None.

    Returns:
        ``[B]`` targets (detached).

    Example:
        >>> dqn_targets(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([[2.0, 3.0]]), 0.5,
        ...             next_q_online=torch.tensor([[5.0, 0.0]]))
        tensor([2.])
    """
    with torch.no_grad():
        if next_q_online is None:
            next_v = next_q_target.max(dim=1).values
        else:
            best = next_q_online.argmax(dim=1, keepdim=True)
            next_v = next_q_target.gather(1, best).squeeze(1)
        return rewards + gamma * (1.0 - terminated) * next_v


def standardize(advantages: Tensor) -> Tensor:
    """``(A - mean(A)) / (std(A) + 1e-8)``, the advantage normalisation of SB3 and CleanRL.

    ``std`` is the unbiased (n - 1) estimate, so callers skip batches of one.

    Example:
        >>> standardize(torch.tensor([1.0, 3.0]))
        tensor([-0.7071,  0.7071])
    """
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


MASKED_LOGIT = -1e8
"""The logit of a masked action: ``exp`` of it minus any real logit is exactly 0 in float32, so a
masked action is never sampled and adds 0 to the entropy (where ``-inf`` would give ``0 * inf``
= NaN); sb3-contrib's MaskablePPO uses the same value."""


def mask_logits(logits: Tensor, masks: Tensor) -> Tensor:
    """``logits [B, A]`` with the masked actions set to :data:`MASKED_LOGIT`.

    The Categorical restricted to the allowed actions (``masks [B, A]`` True), renormalised.

    Example:
        >>> torch.softmax(mask_logits(torch.zeros(1, 3), torch.tensor([[True, False, True]])), -1)
        tensor([[0.5000, 0.0000, 0.5000]])
    """
    return torch.where(masks, logits, torch.as_tensor(MASKED_LOGIT, dtype=logits.dtype))


def _sum_of_squares_loop(g):  # noqa: ANN001
    """``sum(g ** 2)`` of a float32 array, accumulated in float64 (NaN and inf propagate)."""
    g = g.reshape(g.size)
    s = 0.0
    for i in range(g.size):
        x = np.float64(g[i])
        s += x * x
    return s


@functools.cache
def _compiled_sum_of_squares() -> Callable[[np.ndarray], float] | None:
    """:func:`_sum_of_squares_loop` compiled by numba (cached on disk), or None without numba."""
    try:
        import numba
    except ImportError:
        return None
    # reassociation only (no "nnan"/"ninf"), so the sum vectorises and NaN or inf still shows
    return numba.njit(cache=True, nogil=True, error_model="numpy",
                      fastmath={"reassoc", "contract"})(_sum_of_squares_loop)


def _grads_sum_of_squares(grads: list[Tensor]) -> float | None:
    """The squared 2-norm of contiguous float32 CPU gradients in float64; None for others."""
    loop = _compiled_sum_of_squares()
    if loop is None:
        return None
    total = 0.0
    for g in grads:
        if g.dtype != torch.float32 or g.device.type != "cpu" or g.is_sparse or (
                not g.is_contiguous()) or g.requires_grad:
            return None
        total += loop(g.numpy())
    return total


def clip_grad_norm(params: list[Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)``, skipping its no-op.

    torch scales every gradient by ``min(1, max_norm / (norm + 1e-6))``, also when that is 1;
    here the multiplication by 1 is left out (~0.1 ms a step on MinAtar's DQN network, whose
    bound of 1e6 is never reached). The result is the same bit for bit, NaN norms included.
    Before torch's norm (~90 us there: a kernel per tensor, a stack, a norm, a sync), a compiled
    float64 sum of squares (~30 us) settles the common case: a norm below half the bound,
    where torch's float32 norm (off by far less than 1%) cannot reach ``max_norm - 1e-6``
    either, so nothing is scaled; anything else (NaN, inf, near or over the bound, tensors
    the loop does not take) goes through torch's norm as before.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    if max_norm >= 1e-5:  # 0.505 max_norm <= max_norm - 1e-6
        sq = _grads_sum_of_squares(grads)
        if sq is not None and sq < 0.25 * max_norm * max_norm:  # False for NaN and inf
            return
    total = torch.nn.utils.get_total_norm(grads, foreach=True)
    if not max_norm / (float(total) + 1e-6) >= 1.0:  # also when the norm is NaN
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total, foreach=True)


def explained_variance(pred: np.ndarray, target: np.ndarray) -> float:
    """``1 - Var[target - pred] / Var[target]``: 1 is a perfect value function, 0 a constant."""
    var = float(np.var(target))
    return float("nan") if var == 0 else 1.0 - float(np.var(target - pred)) / var


# --------------------------------------------------------------------------- distributions
# Written out instead of torch.distributions: the same formulas without per-call validation
# and object construction, which dominate the cost for the small batches of an env step.


def categorical_log_prob(logits: Tensor, actions: Tensor) -> Tensor:
    """``log pi(a|s)`` of a Categorical policy; logits ``[B, A]``, actions ``[B]`` -> ``[B]``."""
    return F.log_softmax(logits, dim=-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: Tensor) -> Tensor:
    """Entropy ``-sum_a pi log pi`` per row; logits ``[B, A]`` -> ``[B]``."""
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def gaussian_entropy(log_std: Tensor) -> Tensor:
    """Entropy ``sum_d (log sigma_d + 0.5 log(2 pi e))``; ``[..., D]`` -> ``[...]``."""
    return (log_std + 0.5 + LOG_SQRT_2PI).sum(-1)
