"""RMSprop with one compiled pass per parameter on CPU.

PyTorch's ``RMSprop`` (``foreach`` or not) runs five or six whole-tensor kernels per parameter
per step (``mul_``, ``addcmul_``, ``lerp_``, ``addcmul``, ``sqrt_``, ``add_``, ``addcdiv_``),
and its ``sqrt_`` is not vectorised on this CPU build: on MinAtar's DQN network (147k
parameters, batch 32) the optimiser step took ~1 ms of the ~3.3 ms a frame costs, more than
the backward pass. :class:`FusedRMSprop` does the same update in one numba loop per parameter
(~0.1 ms there), reading each element once. It keeps torch's state (``step``,
``square_avg``, ``grad_avg``), ``state_dict`` and arithmetic order, so checkpoints move
between the two classes and the results agree to float32 rounding (a test runs both side by
side). PyTorch has a ``fused=True`` Adam on CPU but no fused RMSprop, hence this file.

Anything the loop does not cover falls back to ``torch.optim.RMSprop.step`` as it is: momentum,
weight decay, ``maximize``, ``differentiable``, ``capturable``, a tensor step size, a closure,
parameters that are not contiguous float32 CPU tensors, or numba not installed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def _rmsprop_loop(p, g, sq, ga, lr, alpha, one_minus_alpha, eps, centered):  # noqa: ANN001
    """One RMSprop step over contiguous float32 arrays, in torch's order of operations.

    ``sq <- sq * alpha + (1 - alpha) * g * g``; centered: ``ga <- ga + (1 - alpha) * (g - ga)``
    and ``avg = sqrt(sq - ga * ga) + eps``, else ``avg = sqrt(sq) + eps``;
    ``p <- p + (-lr) * (g / avg)``.
    """
    p, g, sq, ga = p.reshape(p.size), g.reshape(g.size), sq.reshape(sq.size), ga.reshape(ga.size)
    neg_lr = -lr
    for i in range(p.size):
        gi = g[i]
        s = sq[i] * alpha + one_minus_alpha * gi * gi
        sq[i] = s
        if centered:
            a = ga[i] + one_minus_alpha * (gi - ga[i])
            ga[i] = a
            avg = np.sqrt(s + np.float32(-1.0) * a * a) + eps
        else:
            avg = np.sqrt(s) + eps
        p[i] = p[i] + neg_lr * (gi / avg)


@functools.cache
def _compiled_loop() -> Callable[..., None] | None:
    """:func:`_rmsprop_loop` compiled by numba (cached on disk), or None without numba."""
    try:
        import numba
    except ImportError:
        return None
    # error_model="numpy": no zero-division check per element, so the loop vectorises
    return numba.njit(cache=True, nogil=True, error_model="numpy")(_rmsprop_loop)


class FusedRMSprop(torch.optim.RMSprop):
    """``torch.optim.RMSprop`` whose step runs one compiled loop per parameter (module docstring).

    Takes the same arguments; the state and ``state_dict`` are torch's.
    """

    def _fusable(self) -> bool:
        if _compiled_loop() is None:
            return False
        for group in self.param_groups:
            if (group["momentum"] != 0 or group["weight_decay"] != 0 or group["maximize"]
                    or group["differentiable"] or group["capturable"]
                    or isinstance(group["lr"], torch.Tensor)):
                return False
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if (p.dtype != torch.float32 or g.dtype != torch.float32 or p.is_sparse
                        or g.is_sparse or p.device.type != "cpu" or not p.is_contiguous()
                        or not g.is_contiguous()):
                    return False
        return True

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient (torch's RMSprop rule)."""
        if closure is not None or not self._fusable():
            return super().step(closure)
        loop = _compiled_loop()
        for group in self.param_groups:
            alpha = float(group["alpha"])
            args = (np.float32(group["lr"]), np.float32(alpha), np.float32(1.0 - alpha),
                    np.float32(group["eps"]), bool(group["centered"]))
            for p in group["params"]:
                if p.grad is not None:
                    loop(*self._arrays(p, group["centered"]), *args)
        return None

    def _arrays(self, p: torch.Tensor, centered: bool) -> tuple[np.ndarray, ...]:
        """NumPy views of ``p``, its gradient and its state; the state made as torch makes it.

        The views of the parameter and state are kept between steps (the gradient is a new
        tensor each step); a state replaced by ``load_state_dict``, or a parameter whose data
        was replaced (``p.data = ...``), gets new ones.
        """
        state = self.state[p]
        if len(state) == 0:  # as torch's _init_group
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if centered:
                state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        sq = state["square_avg"]
        ga = state["grad_avg"] if centered else sq
        views = self.__dict__.setdefault("_views", {})  # not in a pickled optimizer's state
        cached = views.get(p)
        if (cached is None or cached[0] is not sq or cached[1] is not ga
                or cached[2] != p.data_ptr()):
            for key in ("square_avg", "grad_avg"):
                if key in state and not state[key].is_contiguous():
                    state[key] = state[key].contiguous()
            sq = state["square_avg"]
            ga = state["grad_avg"] if centered else sq
            cached = (sq, ga, p.data_ptr(), p.detach().numpy(), sq.numpy(), ga.numpy())
            views[p] = cached
        return cached[3], p.grad.numpy(), cached[4], cached[5]
