"""The shared training loop for every generative model.

Minibatches, EMA of weights, validation model selection, ``metrics.csv``, atomic checkpoints,
a progress bar, and a clean stop on a NaN loss.

A model trains here when it has ``loss(x) -> scalar`` (or ``loss(x, y)`` when it has
``num_classes > 0``). Models with several optimisers (GANs) instead define
``make_optimizers(lr) -> list[Optimizer]`` and ``train_step(x, y, optimizers) -> dict``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from mpgym import RunDir, progress, save_checkpoint
from mpgym.errors import MpgymError, check_positive

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Options of :func:`train` (model hyper-parameters live in each model's config)."""

    steps: int = 4000
    """Optimiser steps."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    schedule: Literal["constant", "cosine"] = "cosine"
    """Learning-rate schedule (cosine decays to 0 over ``steps``)."""
    grad_clip: float = 5.0
    """Gradient-norm clip (0 disables)."""
    ema: float = 0.0
    """EMA decay of the weights used for validation and the checkpoint (0 disables; DDPM: 0.999)."""
    eval_every: int = 250
    """Steps between validations (and checkpoints when validation improves)."""
    select_best: bool = True
    """Keep the weights with the best validation score (early stopping against overfitting)."""
    seed: int = 0
    """Seed of the minibatch order and the model's initialisation."""
    max_seconds: float = 0.0
    """Stop after this much wall-clock time (0: no limit); the benchmark's 10-minute cap."""
    progress: bool = True
    """Show a progress bar (only on a terminal)."""


def check_train_config(config: TrainConfig) -> None:
    """Refuse budgets and rates that cannot train, before any work (CLI flags ``--train.*``).

    Raises:
        MpgymError: a non-positive step count, batch size, validation interval or learning
            rate; a negative time cap, weight decay or clip; an EMA decay outside ``[0, 1)``.
    """
    check_positive("--train.steps", config.steps)
    check_positive("--train.batch-size", config.batch_size)
    check_positive("--train.eval-every", config.eval_every)
    check_positive("--train.lr", config.lr, integer=False)
    for flag, value in (
        ("--train.max-seconds", config.max_seconds),
        ("--train.weight-decay", config.weight_decay),
        ("--train.grad-clip", config.grad_clip),
    ):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise MpgymError(f"{flag} must be a finite number >= 0; got {value!r}.")
    if not (isinstance(config.ema, (int, float)) and 0 <= config.ema < 1):
        raise MpgymError(f"--train.ema must be in [0, 1) (0 disables); got {config.ema!r}.")


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    steps: int
    seconds: float
    best_val: float
    best_step: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: str = "done"
    """``done``, ``time`` (max_seconds) or ``nan`` (diverged; the last good weights are kept)."""


class EMA:
    """Exponential moving average of a module's parameters (buffers are copied as they are).

    Buffers are state, not weights: averaging them would blend, e.g., MADE's current 0/1
    connectivity mask with the previous ones.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.params = {k for k, _ in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``shadow = decay * shadow + (1 - decay) * current`` for parameters; buffers copied."""
        for k, v in model.state_dict().items():
            if k in self.params and v.dtype.is_floating_point:
                self.shadow[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
            else:
                self.shadow[k].copy_(v)


def _default_val(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> float:
    with torch.no_grad():
        total = 0.0
        for i in range(0, len(x), 256):
            xb = x[i : i + 256]
            yb = None if y is None else y[i : i + 256]
            total += float(_loss(model, xb, yb)) * len(xb)
    return total / len(x)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return model.loss(x, y) if getattr(model, "num_classes", 0) else model.loss(x)


@dataclass
class _Validator:
    """Validation model selection: scores, metrics rows and checkpoints of the best weights."""

    val_fn: Callable[[nn.Module], float]
    ema: EMA | None
    select_best: bool
    run: RunDir | None
    kind: str
    model_config: Any
    meta: dict[str, Any]
    best_state: dict[str, torch.Tensor]
    best_val: float = math.inf
    best_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def validate(self, model: nn.Module, step: int, train_loss: float, t0: float) -> float:
        """Score the EMA (or current) weights; log a row; keep and checkpoint the best.

        With ``select_best=False`` every validated step is kept (the last one wins). The
        model leaves with its own (training) weights.

        Args:
            model: the model being trained.
            step: the step just taken.
            train_loss: the running training loss.
            t0: ``time.perf_counter()`` when training started (the row's time is taken after
                scoring).

        Returns:
            The validation score.
        """
        with _evaluation_weights(model, self.ema):
            val = float(self.val_fn(model))
            row = {
                "step": step,
                "train_loss": train_loss,
                "val": val,
                "seconds": time.perf_counter() - t0,
            }
            self.history.append(row)
            if self.run is not None:
                self.run.metrics.log(**row)
            if val < self.best_val or not self.select_best:
                self.best_val, self.best_step = val, step
                self.best_state = copy.deepcopy(model.state_dict())
                if self.run is not None:
                    save_checkpoint(
                        self.run.file("checkpoint.safetensors"),
                        self.best_state,
                        kind=self.kind,
                        config=self.model_config,
                        meta={**self.meta, "step": step, "val": val},
                    )
        return val


def _optimizers(
    model: nn.Module, config: TrainConfig
) -> tuple[list[torch.optim.Optimizer], list[torch.optim.lr_scheduler.LambdaLR]]:
    """The model's own optimisers (``make_optimizers``) or one AdamW, each with its schedule."""
    opts = (
        model.make_optimizers(config.lr)
        if hasattr(model, "train_step")
        else [torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)]
    )
    scheds = [
        torch.optim.lr_scheduler.LambdaLR(
            o,
            (lambda s: 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps)))
            if config.schedule == "cosine"
            else (lambda s: 1.0),
        )
        for o in opts
    ]
    return opts, scheds


def _take_step(
    model: nn.Module,
    xb: torch.Tensor,
    yb: torch.Tensor | None,
    opts: list[torch.optim.Optimizer],
    grad_clip: float,
) -> float:
    """One training step on a minibatch; returns its loss.

    A single-optimiser model whose loss is not finite is left unchanged (no step taken).
    """
    if hasattr(model, "train_step"):
        return float(model.train_step(xb, yb, opts)["loss"])
    loss = _loss(model, xb, yb)
    loss_value = float(loss.detach())
    if math.isfinite(loss_value):
        opts[0].zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opts[0].step()
    return loss_value


@contextlib.contextmanager
def _evaluation_weights(model: nn.Module, ema: EMA | None) -> Iterator[None]:
    """Inside: ``model`` in eval mode with the EMA weights (if any); after: its own weights."""
    current = copy.deepcopy(model.state_dict())
    if ema is not None:
        model.load_state_dict(ema.shadow)
    model.eval()
    try:
        yield
    finally:
        model.load_state_dict(current)


def train(
    model: nn.Module,
    x_train: torch.Tensor,
    x_val: torch.Tensor,
    config: TrainConfig = TrainConfig(),
    *,
    y_train: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    run: RunDir | None = None,
    kind: str = "model",
    model_config: Any = None,
    val_fn: Callable[[nn.Module], float] | None = None,
) -> TrainResult:
    """Train ``model`` on ``x_train``; validate on ``x_val``; checkpoint into ``run``.

    Each step: a minibatch (seeded by ``config.seed``), one optimiser step, the schedules and
    the EMA; every ``eval_every`` steps (and at the last one or the time cap): validation with
    the EMA weights, a metrics row and, when it is the best so far, a checkpoint.

    Args:
        model: a module with ``loss`` (or ``make_optimizers`` + ``train_step``).
        x_train: ``[n, ...]`` training data (digits: ``[n, 64]`` long).
        x_val: validation data, same layout.
        config: loop options.
        y_train: ``[n]`` labels for conditional models.
        y_val: validation labels.
        run: run directory for ``metrics.csv`` and ``checkpoint.safetensors``.
        kind: checkpoint kind (the model's registry name).
        model_config: the model's dataclass config, stored in the checkpoint.
        val_fn: validation score (lower is better); default: mean ``loss`` over ``x_val``.

    Returns:
        A :class:`TrainResult`. The model ends with the selected (best or EMA) weights.
    """
    check_train_config(config)
    opts, scheds = _optimizers(model, config)
    ema = EMA(model, config.ema) if config.ema > 0 else None
    checks = _Validator(
        val_fn or (lambda m: _default_val(m, x_val, y_val)),
        ema,
        config.select_best,
        run,
        kind,
        model_config,
        {"train": config},
        copy.deepcopy(model.state_dict()),
    )
    result = TrainResult(steps=0, seconds=0.0, best_val=math.inf, best_step=0)
    result.history = checks.history
    t0 = time.perf_counter()
    _run_steps(model, x_train, y_train, config, opts, scheds, checks, result, t0)
    model.load_state_dict(checks.best_state)
    if not math.isfinite(checks.best_val) and result.stopped == "nan":
        raise MpgymError(
            f"{kind}: training diverged (NaN loss) before the first validation; "
            "lower the learning rate (--train.lr) or enable gradient clipping."
        )
    model.eval()
    result.seconds = time.perf_counter() - t0
    result.best_val, result.best_step = checks.best_val, checks.best_step
    return result


def _run_steps(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor | None,
    config: TrainConfig,
    opts: list[torch.optim.Optimizer],
    scheds: list[torch.optim.lr_scheduler.LambdaLR],
    checks: _Validator,
    result: TrainResult,
    t0: float,
) -> None:
    """The loop of :func:`train`: minibatch, step, schedules, EMA, validation when due.

    Stops early on a non-finite loss (``result.stopped = "nan"``) or the time cap
    (``"time"``); ``result.steps`` counts the steps taken.
    """
    gen = torch.Generator().manual_seed(config.seed)
    bar = progress(total=config.steps, desc=checks.kind, enable=config.progress, unit="step")
    running = 0.0
    try:
        for step in range(1, config.steps + 1):
            model.train()
            idx = torch.randint(0, len(x_train), (config.batch_size,), generator=gen)
            yb = None if y_train is None else y_train[idx]
            loss_value = _take_step(model, x_train[idx], yb, opts, config.grad_clip)
            if not math.isfinite(loss_value):
                _log_divergence(checks.kind, loss_value, step, checks.best_step)
                result.stopped = "nan"
                return
            for s in scheds:
                s.step()
            if checks.ema is not None:
                checks.ema.update(model)
            running = loss_value if step == 1 else 0.98 * running + 0.02 * loss_value
            bar.update(1)
            result.steps = step
            timed_out = config.max_seconds > 0 and time.perf_counter() - t0 > config.max_seconds
            if step % config.eval_every == 0 or step == config.steps or timed_out:
                val = checks.validate(model, step, running, t0)
                bar.set_postfix(loss=f"{running:.2f}", val=f"{val:.2f}")
            if timed_out:
                result.stopped = "time"
                return
    finally:
        bar.close()


def _log_divergence(kind: str, loss_value: float, step: int, best_step: int) -> None:
    log.error(
        "%s: loss became %s at step %d; stopping and keeping the last good checkpoint "
        "(step %d). Try a lower --train.lr.",
        kind,
        loss_value,
        step,
        best_step,
    )
