"""The optimisation loop and the field of one code, shared by IGR, OccNet and DeepSDF.

Each method's file builds its network, data and one step's loss; :func:`optimize` runs the
steps (one optimiser, an optional learning-rate scheduler), refuses a non-finite loss, writes a
``metrics.csv`` row every ``log_every`` steps and saves on Ctrl-C. :func:`code_field` turns a
conditioned decoder and one shape's code into the ``x -> value`` callable that meshing and IoU
take.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from mpgym import MpgymError, RunDir, save_on_interrupt
from mpgym.progress import progress

StepLoss = Callable[[int], tuple[Tensor, dict[str, float]]]
"""``step -> (loss, terms)``: one step's scalar loss and the floats to log beside it."""


@dataclass
class LoopRecord:
    """What :func:`optimize` measured."""

    losses: list[float] = field(default_factory=list)
    """The loss of every step taken."""
    seconds: float = 0.0
    """Wall-clock time of the loop."""
    cpu_seconds: float = 0.0
    """CPU time of the process during the loop (all threads)."""


def optimize(step_loss: StepLoss, opt: torch.optim.Optimizer, iterations: int, *, name: str,
             run: RunDir | None, log_every: int, save: Callable[[], None], progress_bar: bool,
             scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
             save_every: int = 0, record: LoopRecord | None = None) -> LoopRecord:
    """Take ``iterations`` optimiser steps on ``step_loss``.

    Each step: ``loss, terms = step_loss(step)``; a non-finite loss stops the loop with one
    error; else ``zero_grad``, ``backward``, ``opt.step()`` and ``scheduler.step()``. Every
    ``log_every`` steps and at the last one a row ``step, loss, [lr,] seconds, cpu_seconds,
    **terms`` goes to ``run.metrics`` (``lr`` when there is a scheduler); on those logged steps
    that are multiples of ``save_every``, ``save()`` writes a checkpoint. Ctrl-C also calls
    ``save()`` before the interrupt propagates.

    Args:
        step_loss: one step's loss and extra terms.
        opt: the optimiser.
        iterations: number of steps.
        name: the method, for the progress bar and messages (``"igr"``...).
        run: run directory for metrics, or None.
        log_every: steps between metrics rows.
        save: writes the checkpoint (a no-op without a run).
        progress_bar: show a progress bar on a terminal.
        scheduler: stepped after each optimiser step.
        save_every: checkpoint on logged steps that are multiples of this (0: never mid-run).
        record: where losses go while the loop runs (``save`` may read them); a new one if None.

    Returns:
        The :class:`LoopRecord` (``record`` itself when given).

    Raises:
        MpgymError: the loss became NaN or infinite.
    """
    record = record if record is not None else LoopRecord()
    t0, c0 = time.perf_counter(), time.process_time()
    with save_on_interrupt(save, f"the {name} run"):
        for step in progress(range(iterations), desc=name, enable=progress_bar):
            loss, terms = step_loss(step)
            if not torch.isfinite(loss):
                kept = " The run directory keeps the metrics and last checkpoint." \
                    if run is not None and save_every else ""
                raise MpgymError(f"{name} diverged at step {step} (loss {float(loss)}); lower "
                                 f"--lr.{kept}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
            record.losses.append(loss.item())
            if run is not None and (step % log_every == 0 or step + 1 == iterations):
                lr = {"lr": scheduler.get_last_lr()[0]} if scheduler is not None else {}
                run.metrics.log(step=step, loss=loss.item(), **lr,
                                seconds=time.perf_counter() - t0,
                                cpu_seconds=time.process_time() - c0, **terms)
                if save_every and step % save_every == 0:
                    save()
    record.seconds = time.perf_counter() - t0
    record.cpu_seconds = time.process_time() - c0
    return record


def code_field(decoder: nn.Module, code: Tensor, *, negate: bool = False
               ) -> Callable[[np.ndarray | Tensor], np.ndarray | Tensor]:
    """The field of one shape: ``x (N, 3) -> decoder(x, code) (N,)``, numpy or tensor.

    For meshing and IoU (:func:`neural3d.mesh.extract_mesh`,
    :func:`neural3d.implicit.data.iou_of_field`): numpy in gives numpy out, a tensor gives a
    tensor; no gradients. ``negate=True`` returns ``-decoder(x, code)``, which turns occupancy
    logits (positive inside) into the SDF sign convention (negative inside, level 0).

    Args:
        decoder: ``(x [B, N, 3], z [B, C]) -> [B, N]``.
        code: ``[C]`` the shape's code.
        negate: flip the sign of the values.
    """
    z = code.detach()[None]

    def fn(x):
        as_np = not isinstance(x, torch.Tensor)
        xt = torch.as_tensor(np.asarray(x, np.float32)) if as_np else x
        with torch.no_grad():
            y = decoder(xt[None], z)[0]
            y = -y if negate else y
        return y.numpy() if as_np else y

    return fn
