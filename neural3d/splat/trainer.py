"""Gaussian-splatting training loop: one random view per step, L1 + D-SSIM, Adam, density control.

``SplatTrainer(config, train, val, run_dir=...).train()`` returns a :class:`TrainResult`. With a
run directory it writes ``config.json``, ``metrics.csv`` (step, seconds, loss, Gaussians, learning
rate, evaluation PSNR/SSIM) and ``checkpoint.safetensors``: the Gaussians, Adam's moments and step
counts, the density statistics and the random generator's state, so that
:meth:`SplatTrainer.resume` continues bit for bit where the run stopped. A checkpoint is written
every ``checkpoint_every`` steps, at the end, and on Ctrl-C (after the step in flight); a NaN loss
or NaN parameters stop training with one :class:`~mpgym.errors.MpgymError`, and the last good
checkpoint is left as it was. Training seconds exclude evaluation and checkpointing.

The schedule is 3DGS's (``train.py``): step ``k`` counts from 1; the means' lr is log-linear from
``position_lr_init`` to ``position_lr_final`` (x scene extent) over ``position_lr_max_steps``;
the active SH degree rises every ``sh_degree_every`` steps; each epoch visits every training view
once in a new random order (the reference's ``viewpoint_stack``; ``view_order="uniform"`` draws
each step's view independently); the loss is
``(1 - lambda) L1 + lambda (1 - SSIM)`` with SSIM's 11x11 Gaussian window zero-padded to the image
size (the reference's loss; evaluation uses :func:`neural3d.image_metrics.ssim`, valid region).
Density control (:class:`~neural3d.splat.strategy.DensityControl`) runs after Adam's step (the
reference runs it just before, so that step's update is skipped on densification steps).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from mpgym import RunDir, get_device, load_checkpoint, progress, save_checkpoint
from mpgym.devices import set_threads
from mpgym.errors import MpgymError
from neural3d.cameras import Intrinsics
from neural3d.data.multiview import MultiviewData
from neural3d.image_metrics import psnr, ssim, ssim_tensor
from neural3d.splat.model import PARAM_NAMES, GaussianModel
from neural3d.splat.presets import SplatConfig, check_config, config_from_dict
from neural3d.splat.render import render
from neural3d.splat.strategy import DensityControl, camera_extent

log = logging.getLogger(__name__)

__all__ = ["EvalResult", "SplatTrainer", "TrainResult", "expon_lr", "load_splat"]

KIND = "splat"
"""``kind`` of the run directory and checkpoint."""
CHECKPOINT = "checkpoint.safetensors"
SH_REST_LR_DIVISOR = 20.0
"""The higher-order SH coefficients learn at ``feature_lr / 20`` (3DGS)."""


@dataclass
class EvalResult:
    """Per-view image quality of :meth:`SplatTrainer.evaluate`."""

    psnr: list[float]
    """PSNR (dB) of each view."""
    ssim: list[float]
    """SSIM of each view."""
    images: dict[str, np.ndarray] = field(default_factory=dict)
    """``pred``, ``target``, ``alpha`` of the first view, ``(H, W, 3)`` in [0, 1]."""

    @property
    def mean_psnr(self) -> float:
        """Mean PSNR over the views (NaN without views)."""
        return float(np.mean(self.psnr)) if self.psnr else math.nan

    @property
    def mean_ssim(self) -> float:
        """Mean SSIM over the views (NaN without views)."""
        return float(np.mean(self.ssim)) if self.ssim else math.nan


def warm_up_kernels(model: GaussianModel, config: SplatConfig, device: torch.device) -> None:
    """Render and back-propagate four fixed Gaussians the way training will, touching nothing.

    The compiled kernels (numba) build on their first call -- tens of seconds on a fresh
    install, loading from numba's cache after that -- and a training step's clock would count
    it: on a fresh clone a 30-s budget ran 4 steps. This call makes that happen before the
    clock starts. Same dtypes, SH size, backend and rasterize mode as ``model`` and ``config``;
    no randomness is drawn.
    """
    n, k = 4, (model.max_sh_degree + 1) ** 2
    offsets = torch.tensor([[0.0, 0, 0], [0.3, 0, 0], [0, 0.3, 0], [0, 0, 0.3]])
    tiny = GaussianModel({
        "means": offsets, "log_scales": torch.full((n, 3), -2.0),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        "opacity_logits": torch.zeros(n), "sh_dc": torch.full((n, 1, 3), 0.5),
        "sh_rest": torch.full((n, k - 1, 3), 0.01)}, max_sh_degree=model.max_sh_degree,
        sh_degree=model.max_sh_degree)
    dtype = model.params["means"].dtype
    tiny = tiny.to(device=device, dtype=dtype)
    c2w = torch.eye(4, dtype=dtype, device=device)
    c2w[2, 3] = 3.0  # OpenGL: looking down -z at the Gaussians
    out = render(tiny, c2w, Intrinsics.from_fov(math.radians(50), 32),
                 background=torch.ones(3, dtype=dtype, device=device), backend=config.backend,
                 rasterize_mode=config.rasterize_mode)
    (out.image.sum() + out.alpha.sum()).backward()


@dataclass
class TrainResult:
    """What :meth:`SplatTrainer.train` returns."""

    psnr: float
    """Mean PSNR (dB) over all evaluation views at the end (NaN without them)."""
    ssim: float
    """Mean SSIM over all evaluation views at the end."""
    steps: int
    """Optimisation steps taken (in total, over resumes)."""
    seconds: float
    """Training seconds (evaluation and checkpoints excluded)."""
    num_gaussians: int
    """Gaussians at the end."""
    history: list[dict[str, float]] = field(default_factory=list)
    """The rows written to ``metrics.csv``."""
    images: dict[str, np.ndarray] = field(default_factory=dict)
    """The first evaluation view's ``pred``, ``target`` and ``alpha``."""


# --- pure pieces of the loop --------------------------------------------------------------------


def expon_lr(step: int, lr_init: float, lr_final: float, max_steps: int, *,
             delay_steps: int = 0, delay_mult: float = 1.0) -> float:
    """3DGS's learning-rate schedule: log-linear from ``lr_init`` to ``lr_final``.

    ``lr(t) = exp((1 - t) log lr_init + t log lr_final)``, ``t = clip(step / max_steps, 0, 1)``,
    times ``delay_mult + (1 - delay_mult) sin(pi/2 clip(step / delay_steps, 0, 1))`` when
    ``delay_steps > 0``.

    Example: ``expon_lr(15_000, 1.6e-4, 1.6e-6, 30_000)`` is ``1.6e-5`` (the geometric mean).
    """
    delay = 1.0
    if delay_steps > 0:
        delay = delay_mult + (1 - delay_mult) * math.sin(
            0.5 * math.pi * min(max(step / delay_steps, 0.0), 1.0))
    t = min(max(step / max_steps, 0.0), 1.0)
    return delay * math.exp((1 - t) * math.log(lr_init) + t * math.log(lr_final))


def composite(rgba: Tensor, background: Tensor) -> Tensor:
    """``[H, W, 4]`` RGBA over a ``[3]`` background colour: ``[H, W, 3]``."""
    a = rgba[..., 3:]
    return rgba[..., :3] * a + background * (1 - a)


def first_nonfinite(model: GaussianModel) -> str | None:
    """The name of the first parameter holding NaN or infinity, or None when all are finite."""
    for name, p in model.params.items():
        if not bool(torch.isfinite(p).all()):
            return name
    return None


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[dict[str, bool]]:
    """Turn the first Ctrl-C into a flag the loop checks between steps (a second one raises).

    A step interrupted half-way (between Adam and density control) could not be resumed bit for
    bit; outside the main thread (no signal handlers there) Ctrl-C is left alone.
    """
    flag = {"set": False}

    def handler(signum, frame):
        if flag["set"]:
            raise KeyboardInterrupt
        flag["set"] = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


# --- the trainer --------------------------------------------------------------------------------


class SplatTrainer:
    """Optimise Gaussians on a multi-view dataset.

    Args:
        config: the run's :class:`SplatConfig`.
        train_data: training views (RGBA images, cameras).
        val_data: evaluation views (PSNR/SSIM checks and the final numbers), or None.
        run_dir: run directory for config, metrics and checkpoints (a :class:`~mpgym.RunDir` or a
            path), or None to write nothing.
        model: Gaussians to start from (default: built from ``config.init``).
        run_info: extra keys for ``config.json`` (e.g. ``data``: the dataset folder).

    Raises:
        MpgymError: a bad config, no training views, or an initialisation that cannot be built.
    """

    def __init__(self, config: SplatConfig, train_data: MultiviewData,
                 val_data: MultiviewData | None = None, *,
                 run_dir: RunDir | str | Path | None = None, model: GaussianModel | None = None,
                 run_info: dict[str, Any] | None = None):
        check_config(config)
        if len(train_data) == 0:
            raise MpgymError("the training split has no views; splatting needs at least one.")
        self.config, self.train_data, self.val_data = config, train_data, val_data
        self.run = None if run_dir is None else (
            run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir))
        self.run_info = run_info or {}
        if config.threads > 0:
            set_threads(config.threads)
        self.device = get_device(config.device)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.scene_extent = camera_extent(train_data.c2w)
        self.model = (model if model is not None else self._initial_model()).to(self.device)
        self.model.sh_degree = min(self.model.sh_degree, self.model.max_sh_degree)
        self.optimizer = self._make_optimizer()
        self.strategy = DensityControl(config, self.scene_extent, generator=self.gen)
        self.images = torch.as_tensor(train_data.images, dtype=torch.float32)  # [V, H, W, 4]
        self.c2w = torch.as_tensor(train_data.c2w, dtype=torch.float32)
        self.step_count, self.train_seconds = 0, 0.0
        self._view_perm = torch.empty(0, dtype=torch.int64)  # this epoch's views (shuffle)
        self._view_next = 0  # position in it of the next step's view
        self.saved_step: int | None = None
        self.history: list[dict[str, float]] = []

    # -- set-up ------------------------------------------------------------------------------

    def _initial_model(self) -> GaussianModel:
        """The Gaussians ``config.init`` describes (seeded by ``config.seed``)."""
        c = self.config
        if c.init == "random":
            model = GaussianModel.random(c.init_points, c.init_box, seed=c.seed,
                                         sh_degree=c.sh_degree)
            logit = math.log(c.init_opacity / (1 - c.init_opacity))
            with torch.no_grad():
                model.params["opacity_logits"].fill_(logit)
            return model
        if c.init == "points":
            xyz, rgb = dataset_points(self.train_data)
            return GaussianModel.from_points(xyz, rgb, sh_degree=c.sh_degree,
                                             opacity=c.init_opacity)
        if c.init == "mesh":
            from neural3d.data.meshes import load_mesh

            return GaussianModel.from_mesh(load_mesh(c.init_path), c.init_points, seed=c.seed,
                                           sh_degree=c.sh_degree, opacity=c.init_opacity)
        from neural3d.nerf.io import load_nerf

        nerf, _, grid = load_nerf(c.init_path)
        return GaussianModel.from_nerf(nerf, c.init_points, seed=c.seed, grid=grid,
                                       sh_degree=c.sh_degree, opacity=c.init_opacity)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """Adam with one param group per tensor, named by its ``model.params`` key (3DGS's)."""
        groups = [{"params": [self.model.params[k]], "name": k, "lr": 0.0} for k in PARAM_NAMES]
        self._set_lrs(groups, 0)
        try:  # fused Adam is several times faster on CPU
            return torch.optim.Adam(groups, lr=0.0, eps=self.config.adam_eps, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.Adam(groups, lr=0.0, eps=self.config.adam_eps)

    def _set_lrs(self, groups: list[dict], step: int) -> None:
        c = self.config
        lrs = {"means": self.position_lr(step), "log_scales": c.scaling_lr,
               "quats": c.rotation_lr, "opacity_logits": c.opacity_lr, "sh_dc": c.feature_lr,
               "sh_rest": c.feature_lr / SH_REST_LR_DIVISOR}
        for g in groups:
            g["lr"] = lrs[g["name"]]

    def position_lr(self, step: int) -> float:
        """The means' learning rate at ``step`` (times the scene extent)."""
        c = self.config
        return self.scene_extent * expon_lr(step, c.position_lr_init, c.position_lr_final,
                                            c.position_lr_max_steps,
                                            delay_steps=c.position_lr_delay_steps,
                                            delay_mult=c.position_lr_delay_mult)

    # -- one step ----------------------------------------------------------------------------

    def _background(self) -> Tensor:
        c = self.config
        if c.background == "random":
            return torch.rand(3, generator=self.gen)
        return torch.full((3,), 1.0 if c.background == "white" else 0.0)

    def _next_view(self) -> int:
        """The training view of the next step (:attr:`SplatConfig.view_order`)."""
        if self.config.view_order == "uniform":
            return int(torch.randint(len(self.images), (1,), generator=self.gen))
        if self._view_next >= len(self._view_perm):  # a new epoch
            self._view_perm = torch.randperm(len(self.images), generator=self.gen)
            self._view_next = 0
        self._view_next += 1
        return int(self._view_perm[self._view_next - 1])

    def step(self) -> dict[str, float]:
        """One optimisation step on a random training view.

        Returns:
            ``loss``, ``l1`` and the report of density control (``cloned``, ``split``,
            ``pruned``) of this step.
        """
        c, k = self.config, self.step_count + 1
        self._set_lrs(self.optimizer.param_groups, k)
        if k % c.sh_degree_every == 0:
            self.model.sh_degree = min(self.model.sh_degree + 1, self.model.max_sh_degree)
        i = self._next_view()
        bg = self._background()
        target = composite(self.images[i], bg).to(self.device)
        out = render(self.model, self.c2w[i].to(self.device), self.train_data.camera(i),
                     background=bg.to(self.device), backend=c.backend,
                     rasterize_mode=c.rasterize_mode)
        self.strategy.step_pre_backward(out)
        l1 = (out.image - target).abs().mean()
        dssim = 1 - ssim_tensor(out.image, target, padding="same")  # 3DGS: zero-padded window
        loss = (1 - c.lambda_dssim) * l1 + c.lambda_dssim * dssim
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        report = self.strategy.step_post_backward(k, self.model, self.optimizer, out)
        self.step_count = k
        return {"loss": float(loss.detach()), "l1": float(l1.detach()), "cloned": report.cloned,
                "split": report.split, "pruned": report.pruned}

    # -- evaluation --------------------------------------------------------------------------

    def eval_background(self) -> Literal["white", "black"]:
        """Background of evaluation: black for runs trained on black, else white."""
        return "black" if self.config.background == "black" else "white"

    @torch.no_grad()
    def render_view(self, c2w: Any, intrinsics: Intrinsics, *, depth: bool = False,
                    background: Literal["white", "black"] | None = None):
        """Render one camera ``c2w [4, 4]`` (a :class:`~neural3d.splat.render.RenderOutput`)."""
        bg = 1.0 if (background or self.eval_background()) == "white" else 0.0
        return render(self.model, torch.as_tensor(c2w, dtype=torch.float32).to(self.device),
                      intrinsics, background=torch.full((3,), bg, device=self.device),
                      depth=depth, backend=self.config.backend,
                      rasterize_mode=self.config.rasterize_mode)

    def evaluate(self, data: MultiviewData | None = None, num_views: int = 0) -> EvalResult:
        """PSNR and SSIM of each view of ``data`` (default: the evaluation views).

        Args:
            data: views to render and compare (composited over :meth:`eval_background`).
            num_views: only the first ``num_views`` (0: all).
        """
        data = self.val_data if data is None else data
        if data is None or len(data) == 0:
            return EvalResult([], [])
        bg = self.eval_background()
        n = len(data) if num_views <= 0 else min(num_views, len(data))
        targets = torch.as_tensor(data.rgb(bg)[:n])
        result = EvalResult([], [])
        for i in range(n):
            out = self.render_view(data.c2w[i], data.camera(i), background=bg)
            pred = out.image.clamp(0, 1).cpu()
            result.psnr.append(psnr(pred, targets[i]))
            result.ssim.append(ssim(pred, targets[i]) if min(pred.shape[:2]) >= 11 else math.nan)
            if i == 0:
                result.images = {"pred": pred.numpy(), "target": targets[i].numpy(),
                                 "alpha": out.alpha.clamp(0, 1).cpu()[..., None]
                                 .expand(-1, -1, 3).numpy()}
        return result

    def snapshot(self) -> GaussianModel:
        """A detached copy of the current Gaussians (for benchmarks that evaluate over time)."""
        model = copy.deepcopy(self.model)
        model.requires_grad_(False)
        return model

    # -- the loop ----------------------------------------------------------------------------

    def _log(self, row: dict[str, float]) -> None:
        self.history.append(row)
        if self.run is not None:
            self.run.metrics.log(**row)

    def _row(self, info: dict[str, float]) -> dict[str, float]:
        return {"step": self.step_count, "seconds": round(self.train_seconds, 3),
                "loss": info["loss"], "l1": info["l1"],
                "num_gaussians": self.model.num_gaussians, "sh_degree": self.model.sh_degree,
                "position_lr": self.position_lr(self.step_count)}

    def _eval_row(self, num_views: int) -> EvalResult:
        result = self.evaluate(num_views=num_views)
        if result.psnr:
            self._log({"step": self.step_count, "seconds": round(self.train_seconds, 3),
                       "num_gaussians": self.model.num_gaussians, "val_psnr": result.mean_psnr,
                       "val_ssim": result.mean_ssim})
            log.info("splat: step %d, %.0f s, %d Gaussians, eval PSNR %.2f dB", self.step_count,
                     self.train_seconds, self.model.num_gaussians, result.mean_psnr)
        return result

    def _diverged(self, what: str, step: int | None = None) -> MpgymError:
        if self.run is not None and self.saved_step is not None:
            kept = (f"the last good checkpoint (step {self.saved_step}) is kept in "
                    f"{self.run.file(CHECKPOINT)}")
        else:
            kept = "no checkpoint was written"
        step = self.step_count if step is None else step
        return MpgymError(f"training diverged at step {step}: {what}; {kept}. Lower "
                          "the learning rates (e.g. --position-lr-init, --opacity-lr).")

    def _check_finite(self, info: dict[str, float]) -> None:
        if not math.isfinite(info["loss"]):
            raise self._diverged(f"the loss became {info['loss']}")
        bad = first_nonfinite(self.model) if self.step_count % self.config.log_every == 0 else None
        if bad is not None:
            raise self._diverged(f"parameter {bad!r} holds NaN or infinity")

    def _guarded_step(self) -> dict[str, float]:
        """:meth:`step`, with NaN parameters reported as divergence whatever stage refused them."""
        try:
            return self.step()
        except MpgymError:  # e.g. the rasterizer refusing non-finite inputs
            bad = first_nonfinite(self.model)
            if bad is not None:
                raise self._diverged(f"parameter {bad!r} holds NaN or infinity",
                                     self.step_count + 1) from None
            raise

    def _done(self) -> bool:
        c = self.config
        return self.step_count >= c.iterations or (
            c.max_seconds > 0 and self.train_seconds >= c.max_seconds)

    def train(self, *, progress_bar: bool = True,
              callback: Callable[[SplatTrainer], None] | None = None) -> TrainResult:
        """Train until ``iterations`` steps or ``max_seconds``, then evaluate every view.

        Args:
            progress_bar: show a progress bar.
            callback: called with the trainer after every step, off the training clock (e.g. to
                keep :meth:`snapshot` copies at chosen ``train_seconds``).

        Raises:
            MpgymError: the loss or a parameter became NaN (the last good checkpoint is kept).
            KeyboardInterrupt: after saving a checkpoint of the last completed step.
        """
        c = self.config
        if self.run is not None:
            self.run.write_config(c, kind=KIND, **self.run_info)
        if not self._done():  # off the clock: a fresh install compiles its kernels here
            warm_up_kernels(self.model, c, self.device)
        bar = progress(total=c.iterations, desc="splat", enable=progress_bar, unit="step")
        bar.update(self.step_count)
        with _deferred_interrupt() as interrupted:
            while not self._done():
                t0 = time.perf_counter()
                info = self._guarded_step()
                self.train_seconds += time.perf_counter() - t0
                self._check_finite(info)
                self._after_step(info, bar)
                if callback is not None:
                    callback(self)
                if interrupted["set"]:
                    bar.close()
                    if self.run is not None:
                        self.save()
                    raise KeyboardInterrupt
        bar.close()
        final = self._eval_row(0)
        if self.run is not None:
            self.save()
            self.run.write_json("results.json", {
                "psnr": final.mean_psnr, "ssim": final.mean_ssim, "steps": self.step_count,
                "seconds": self.train_seconds, "num_gaussians": self.model.num_gaussians})
        return TrainResult(final.mean_psnr, final.mean_ssim, self.step_count, self.train_seconds,
                           self.model.num_gaussians, self.history, final.images)

    def _after_step(self, info: dict[str, float], bar) -> None:
        """Progress bar, metrics row, periodic evaluation and checkpoint (off the clock)."""
        c, k = self.config, self.step_count
        bar.update(1)
        if k % c.log_every == 0 or k == 1:
            self._log(self._row(info))
            bar.set_postfix(loss=f"{info['loss']:.4f}", n=self.model.num_gaussians)
        if c.eval_every and k % c.eval_every == 0 and not self._done():
            self._eval_row(c.eval_views)
        if self.run is not None and c.checkpoint_every and k % c.checkpoint_every == 0:
            self.save()

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Tensor]:
        """Everything a resumed run needs: Gaussians, Adam state, density statistics, RNG."""
        sd: dict[str, Tensor] = {f"model.{k}": v.detach() for k, v in self.model.params.items()}
        for g in self.optimizer.param_groups:
            state = self.optimizer.state.get(g["params"][0], {})
            for k, v in state.items():
                sd[f"adam.{g['name']}.{k}"] = torch.as_tensor(v)
        sd.update({f"density.{k}": v for k, v in self.strategy.state_dict().items()})
        sd["rng.torch"] = self.gen.get_state()
        sd["views.order"] = self._view_perm.clone()
        sd["views.next"] = torch.tensor([self._view_next], dtype=torch.int64)
        return sd

    def load_state_dict(self, sd: dict[str, Tensor], *, where: str = "state") -> None:
        """Restore :meth:`state_dict` (the Gaussians may differ in number from the current ones).

        Raises:
            MpgymError: missing tensors, inconsistent shapes or non-finite values.
        """
        self.model = model_from_state(sd, self.config.sh_degree, where).to(self.device)
        self.optimizer = self._make_optimizer()
        for g in self.optimizer.param_groups:
            p, name = g["params"][0], g["name"]
            state = _adam_state(sd, name, p, where)
            if state:
                self.optimizer.state[p] = {k: v.to(self.device) for k, v in state.items()}
        try:
            self.strategy.load_state_dict({k[8:]: v.to(self.device) for k, v in sd.items()
                                           if k.startswith("density.")}, self.model.num_gaussians)
        except MpgymError as exc:
            raise MpgymError(f"{where}: {exc}") from None
        if "rng.torch" in sd:
            rng = sd["rng.torch"]
            expected = tuple(self.gen.get_state().shape)
            if rng.dtype != torch.uint8 or tuple(rng.shape) != expected:
                raise MpgymError(f"{where}: rng.torch must be the {expected} uint8 state of a "
                                 f"torch generator; got {rng.dtype} {tuple(rng.shape)}.")
            try:
                self.gen.set_state(rng)
            except RuntimeError as exc:
                raise MpgymError(f"{where}: rng.torch is not a valid generator state.") from exc
        self._view_perm, self._view_next = self._view_state(sd, where)

    def _view_state(self, sd: dict[str, Tensor], where: str) -> tuple[Tensor, int]:
        """``views.order`` and ``views.next`` of a checkpoint, checked.

        A new epoch starts at the next step when there are none (checkpoints from before them),
        or when the run resumes on a training set of another size (the order was of its views).
        """
        empty = torch.empty(0, dtype=torch.int64), 0
        if "views.order" not in sd and "views.next" not in sd:
            return empty
        order, nxt = sd.get("views.order"), sd.get("views.next")
        if (order is None or nxt is None or order.dtype != torch.int64 or order.dim() != 1
                or nxt.dtype != torch.int64 or tuple(nxt.shape) != (1,)):
            raise MpgymError(f"{where}: views.order must be an int64 vector and views.next an "
                             "int64 [1], both present or both absent.")
        k, m = int(nxt[0]), len(order)
        if not 0 <= k <= m:
            raise MpgymError(f"{where}: views.next must be in [0, {m}]; got {k}.")
        if not torch.equal(order.sort().values, torch.arange(m)):
            raise MpgymError(f"{where}: views.order must be a permutation of 0..{m - 1}; got "
                             "repeated or out-of-range views.")
        n = len(self.images)
        if m and m != n:
            log.info("%s: trained on %d views, resumed on %d: a new epoch of views starts",
                     where, m, n)
            return empty
        return order.clone(), k

    def save(self, path: str | Path | None = None) -> Path:
        """Write a checkpoint (default: ``<run_dir>/checkpoint.safetensors``), atomically.

        Raises:
            MpgymError: a parameter holds NaN (nothing is written, the last checkpoint stays).
        """
        bad = first_nonfinite(self.model)
        if bad is not None:
            raise self._diverged(f"parameter {bad!r} holds NaN or infinity")
        if path is None:
            if self.run is None:
                raise MpgymError("no run directory to save into; pass a path.")
            path = self.run.file(CHECKPOINT)
        out = save_checkpoint(path, self.state_dict(), kind=KIND, config=self.config,
                              meta={"steps": self.step_count, "seconds": self.train_seconds,
                                    "sh_degree": self.model.sh_degree,
                                    "num_gaussians": self.model.num_gaussians,
                                    "scene_extent": self.scene_extent})
        if path == (self.run.file(CHECKPOINT) if self.run is not None else None):
            self.saved_step = self.step_count
        return out

    @classmethod
    def resume(cls, checkpoint: str | Path, train_data: MultiviewData,
               val_data: MultiviewData | None = None, *, run_dir: RunDir | str | Path | None = None,
               run_info: dict[str, Any] | None = None, **overrides: Any) -> SplatTrainer:
        """A trainer continuing a checkpoint (a run directory or its ``.safetensors`` file).

        ``overrides`` replace config fields (e.g. ``iterations`` to train further); the
        Gaussians, Adam state, density statistics and random state continue exactly.
        """
        ck = load_checkpoint(checkpoint, expected_kind=KIND)
        where = str(ck.path or checkpoint)
        config = replace(config_from_dict(ck.config), **overrides)
        check_config(config)
        model = model_from_state(ck.state_dict, config.sh_degree, where)
        trainer = cls(config, train_data, val_data, run_dir=run_dir, model=model,
                      run_info=run_info)
        trainer.load_state_dict(ck.state_dict, where=where)
        meta = ck.meta
        trainer.step_count = _meta_number(meta, "steps", 0, where, whole=True)
        trainer.train_seconds = _meta_number(meta, "seconds", 0.0, where)
        trainer.scene_extent = _meta_number(meta, "scene_extent", trainer.scene_extent, where)
        trainer.strategy.scene_extent = trainer.scene_extent
        trainer.model.sh_degree = min(_meta_number(meta, "sh_degree", 0, where, whole=True),
                                      trainer.model.max_sh_degree)
        trainer.saved_step = trainer.step_count if run_dir is not None else None
        return trainer


def _meta_number(meta: dict, key: str, default: float, where: str, *, whole: bool = False):
    """``meta[key]`` as a finite non-negative number (a whole one with ``whole``), else refused."""
    v = meta.get(key, default)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    if not ok or (whole and v != int(v)) or (whole and v >= 2**62):
        raise MpgymError(f"{where}: checkpoint meta {key!r} must be a "
                         f"{'whole ' if whole else ''}number >= 0; got {v!r}.")
    return int(v) if whole else float(v)


def _adam_state(sd: dict[str, Tensor], name: str, p: Tensor, where: str) -> dict[str, Tensor]:
    """The Adam moments and step of parameter group ``name`` from a checkpoint, checked.

    Returns:
        ``{}`` when the checkpoint holds none (a run saved before its first step).

    Raises:
        MpgymError: moments missing, of another shape or dtype than the parameter, not finite,
            or a step that is not one non-negative finite number.
    """
    state = {k: sd[f"adam.{name}.{k}"].clone() for k in ("step", "exp_avg", "exp_avg_sq")
             if f"adam.{name}.{k}" in sd}
    if not state:
        return state
    for k in ("exp_avg", "exp_avg_sq"):
        v = state.get(k)
        if (v is None or v.shape != p.shape or v.dtype != p.dtype
                or not bool(torch.isfinite(v).all())):
            raise MpgymError(f"{where}: Adam state {name}.{k} is missing or is not the finite "
                             f"{p.dtype} {tuple(p.shape)} moment of its parameter.")
    step = state.get("step")
    if step is None or step.numel() != 1 or not step.is_floating_point() or not (
            math.isfinite(float(step)) and float(step) >= 0):
        raise MpgymError(f"{where}: Adam state {name}.step must be one non-negative number.")
    return state


def model_from_state(sd: dict[str, Tensor], sh_degree: int, where: str) -> GaussianModel:
    """A :class:`GaussianModel` from the ``model.*`` tensors of a checkpoint, checked.

    Raises:
        MpgymError: a missing tensor, shapes that disagree in N or with ``sh_degree``, a
            non-float dtype, or NaN/infinity (:meth:`GaussianModel.from_tensors`'s checks).
    """
    tensors = {k[6:]: v for k, v in sd.items() if k.startswith("model.")}
    try:
        return GaussianModel.from_tensors(tensors, sh_degree)
    except MpgymError as exc:
        raise MpgymError(f"{where}: {exc} (damaged checkpoint, or written by another mpgym "
                         "version)") from None


def load_splat(run_dir: str | Path, device: str = "cpu") -> tuple[GaussianModel, SplatConfig]:
    """The trained Gaussians (at their trained SH degree) and config of a ``mpgym splat train`` run.

    Raises:
        MpgymError: not a run, no checkpoint, a checkpoint of another kind or a damaged one.
    """
    path = Path(run_dir)
    if not path.exists():
        raise MpgymError(f"{path} does not exist; expected a splat run directory "
                         "(runs/splat/<name>) or its checkpoint.safetensors.")
    ck = load_checkpoint(path, expected_kind=KIND)
    config = config_from_dict(ck.config)
    model = model_from_state(ck.state_dict, config.sh_degree, str(ck.path or path))
    degree = ck.meta.get("sh_degree", model.max_sh_degree)
    model.sh_degree = min(degree if isinstance(degree, int) and degree >= 0 else 0,
                          model.max_sh_degree)
    model.requires_grad_(False)
    return model.to(get_device(device)), config


def dataset_points(data: MultiviewData) -> tuple[np.ndarray, np.ndarray | None]:
    """The point cloud a dataset carries (COLMAP ``points3D``): ``xyz (M, 3)``, ``rgb (M, 3)``.

    Raises:
        MpgymError: the dataset has no points (``--init points`` needs a COLMAP capture).
    """
    xyz = getattr(data, "points", None)
    if xyz is None or len(xyz) < 2:
        raise MpgymError("--init points needs a dataset with a point cloud (a COLMAP capture's "
                         "points3D, at least 2 points); this one has none. Use --init random.")
    return np.asarray(xyz), getattr(data, "point_colors", None)


def _fuzz_load(path: str) -> None:
    """Fuzzing entry (tests): load, render, resume and step a splat run.

    Loads the run as ``mpgym splat render`` does and renders 4x4 pixels, then resumes it on a
    2-view 8x8 dataset and takes one step, as a continued training run does.
    """
    from neural3d.cameras import turntable_poses
    from neural3d.splat.render import render

    model, config = load_splat(path)
    pose = torch.as_tensor(turntable_poses(1, 4.0, math.radians(30))[0], dtype=torch.float32)
    with torch.no_grad():
        render(model, pose, Intrinsics.from_fov(0.7, 4), backend="torch")
    poses = turntable_poses(2, 3.0).astype(np.float32)
    data = MultiviewData(np.full((2, 8, 8, 4), 0.5, np.float32), poses,
                         Intrinsics.from_fov(0.7, 8))
    trainer = SplatTrainer.resume(path, data, backend="torch", threads=0)
    trainer.step()
