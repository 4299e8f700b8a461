"""NeRF training loop: random ray batches, photometric MSE, Adam, occupancy-grid upkeep.

``NerfTrainer(config, train, test).train()`` returns a :class:`TrainResult`; with a
:class:`mpgym.RunDir` it also writes ``config.json``, ``metrics.csv`` (step, seconds, loss,
PSNR checks), ``checkpoint.safetensors`` and test-view pictures. Training time excludes the
periodic evaluations, so ``seconds`` in the history is optimisation time only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mpgym import RunDir, get_device, progress, save_checkpoint, seed_everything
from mpgym.devices import set_threads
from mpgym.errors import MpgymError
from neural3d.cameras import Intrinsics
from neural3d.data.multiview import MultiviewData, check_scene_visible
from neural3d.image_metrics import mse_to_psnr, psnr, ssim
from neural3d.nerf.presets import NerfConfig, build_field, check_config
from neural3d.nerf.renderer import occupancy_step_size, render_image, render_rays
from neural3d.render.volume import OccupancyGrid

log = logging.getLogger(__name__)

LR_MILESTONES = (0.5, 0.75, 0.9)
"""Fractions of the budget (steps or seconds, whichever is further) where lr drops x0.33
(nerfacc's Instant-NGP example)."""

SSIM_WINDOW = 11
"""SSIM's Gaussian window (:func:`neural3d.image_metrics.ssim`): test images need this size."""


@dataclass
class TrainResult:
    """What :meth:`NerfTrainer.train` returns."""

    psnr: float
    """Mean test PSNR (dB) over the final test views."""
    ssim: float
    """Mean test SSIM over the final test views."""
    steps: int
    """Optimisation steps taken."""
    seconds: float
    """Training seconds (evaluation excluded)."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Periodic checks: ``{"step", "seconds", "psnr"}`` on the evaluation views."""
    images: dict[str, np.ndarray] = field(default_factory=dict)
    """``pred``, ``target``, ``depth`` of the first test view, ``(H, W, 3)`` in [0, 1]."""


def _to_rays(data: MultiviewData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    o, d = data.rays()  # [N, H, W, 3] each, per-view intrinsics where the views have their own
    rgba = torch.as_tensor(data.images, dtype=torch.float32)
    return o.reshape(-1, 3), d.reshape(-1, 3), rgba.reshape(-1, 4)


class NerfTrainer:
    """Optimise a radiance field on a multi-view dataset.

    Args:
        config: the run's :class:`NerfConfig`.
        train: training views.
        test: test views (PSNR/SSIM, pictures).
        run: optional run directory for config, metrics, checkpoint and pictures.
        run_info: extra keys for ``config.json`` (e.g. ``data``: the dataset folder).
    """

    def __init__(self, config: NerfConfig, train: MultiviewData, test: MultiviewData, *,
                 run: RunDir | None = None, run_info: dict[str, Any] | None = None):
        self.config, self.train_data, self.test_data, self.run = config, train, test, run
        self.run_info = run_info or {}
        check_config(config)
        if min(test.intrinsics.width, test.intrinsics.height) < SSIM_WINDOW:
            raise MpgymError(f"test images are {test.intrinsics.width}x{test.intrinsics.height} "
                             f"pixels; SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} window needs at least "
                             f"{SSIM_WINDOW} on each side (use a smaller --downscale).")
        if config.threads > 0:
            set_threads(config.threads)  # torch, numba kernels, BLAS
        gens = seed_everything(config.seed)
        self.gen = gens.torch
        self.device = get_device(config.device)
        s = config.aabb_scale
        aabb = np.array([-s, -s, -s, s, s, s], dtype=np.float32)
        check_scene_visible(train, aabb, "the scene box [-aabb_scale, aabb_scale]^3")
        self.field = build_field(config, generator=self.gen).to(self.device)
        self.grid: OccupancyGrid | None = None
        if config.sampler == "occupancy":
            self.grid = OccupancyGrid(torch.as_tensor(aabb), config.grid_resolution,
                                      decay=config.grid_decay,
                                      threshold=config.grid_threshold).to(self.device)
        self.optimizer = self._make_optimizer()
        self.rays_o, self.rays_d, self.rays_rgba = _to_rays(train)
        self.step_count, self.train_seconds = 0, 0.0

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        enc, mlp = [], []
        for name, p in self.field.named_parameters():
            (enc if name.startswith("encoding.") else mlp).append(p)
        groups = [{"params": mlp, "weight_decay": c.weight_decay_mlp}]
        if enc:
            groups.append({"params": enc, "weight_decay": 0.0})
        try:  # fused Adam is several times faster on CPU for the 16M-entry hash table
            return torch.optim.Adam(groups, lr=c.lr, betas=c.betas, eps=c.eps, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.Adam(groups, lr=c.lr, betas=c.betas, eps=c.eps)

    def _render_kwargs(self) -> dict[str, Any]:
        c = self.config
        return {"sampler": c.sampler, "grid": self.grid, "num_samples": c.num_samples,
                "num_fine": c.num_fine}

    def _update_grid(self) -> None:
        c = self.config
        if self.grid is None or self.step_count % c.grid_update_every != 0:
            return
        self.field.eval()
        self.grid.update(self.field.density, occupancy_step_size(self.grid.aabb, c.num_samples),
                         warmup=self.step_count < c.grid_warmup, generator=self.gen)
        self.field.train()

    def _set_lr(self) -> None:
        c = self.config
        frac = max(self.step_count / c.steps, self.train_seconds / c.max_seconds)
        factor = 0.33 ** sum(frac >= m for m in LR_MILESTONES)
        for g in self.optimizer.param_groups:
            g["lr"] = c.lr * factor

    def step(self) -> float:
        """One optimisation step on a random batch of rays; returns the MSE loss."""
        c = self.config
        idx = torch.randint(0, len(self.rays_o), (c.batch_rays,), generator=self.gen)
        o, d = self.rays_o[idx].to(self.device), self.rays_d[idx].to(self.device)
        rgba = self.rays_rgba[idx].to(self.device)
        if c.background == "random":
            bg = torch.rand(c.batch_rays, 3, generator=self.gen).to(self.device)
        else:
            bg = torch.full((1, 3), 1.0 if c.background == "white" else 0.0, device=self.device)
        target = rgba[:, :3] * rgba[:, 3:] + bg * (1 - rgba[:, 3:])
        out = render_rays(self.field, o, d, perturb=True, generator=self.gen, background=bg,
                          **self._render_kwargs())
        loss = torch.mean((out.rgb - target) ** 2)
        if loss.requires_grad:  # False when the grid left no sample to evaluate in this batch
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.step_count += 1
        self._update_grid()
        return float(loss.detach())

    @torch.no_grad()
    def render_view(self, c2w: np.ndarray, intrinsics: Intrinsics | None = None
                    ) -> dict[str, torch.Tensor]:
        """Render one camera (default: the test intrinsics): rgb ``[H, W, 3]``, depth, opacity."""
        self.field.eval()
        intr = self.test_data.intrinsics if intrinsics is None else intrinsics
        out = render_image(self.field, torch.as_tensor(c2w), intr,
                           chunk=self.config.chunk, **self._render_kwargs())
        self.field.train()
        return {k: v.cpu() for k, v in out.items()}

    def evaluate(self, num_views: int = 0) -> tuple[float, float, dict[str, np.ndarray]]:
        """Mean PSNR and SSIM over the first ``num_views`` test views (0: all), white background.

        Returns:
            ``psnr, ssim, images`` where images holds the first view's ``pred``, ``target``,
            ``depth``.
        """
        from neural3d.nerf.renderer import depth_to_image

        n = len(self.test_data) if num_views <= 0 else min(num_views, len(self.test_data))
        targets = torch.as_tensor(self.test_data.rgb("white")[:n])
        ps, ss, images = [], [], {}
        for i in range(n):
            out = self.render_view(self.test_data.c2w[i], self.test_data.camera(i))
            pred = out["rgb"].clamp(0, 1)
            ps.append(psnr(pred, targets[i]))
            ss.append(ssim(pred, targets[i]))
            if i == 0:
                images = {"pred": pred.numpy(), "target": targets[i].numpy(),
                          "depth": depth_to_image(out["depth"], out["opacity"]).numpy()}
        return float(np.mean(ps)), float(np.mean(ss)), images

    def _check(self, history: list[dict[str, float]], loss: float) -> tuple:
        out = self.evaluate(self.config.eval_views)
        p = out[0]
        row = {"step": self.step_count, "seconds": round(self.train_seconds, 3), "loss": loss,
               "train_psnr": float(mse_to_psnr(max(loss, 1e-10))), "psnr": p}
        history.append(row)
        if self.run is not None:
            self.run.metrics.log(**row)
        log.info("nerf: step %d, %.0f s, eval PSNR %.2f dB", self.step_count, self.train_seconds, p)
        return out

    def train(self, *, progress_bar: bool = True,
              callback: Callable[[NerfTrainer], None] | None = None) -> TrainResult:
        """Train for ``steps`` or ``max_seconds`` of optimisation, then evaluate on test views.

        Args:
            progress_bar: show a progress bar.
            callback: called with the trainer after every optimisation step, off the training
                clock (e.g. to snapshot :meth:`state_dict` at given ``train_seconds``).
        """
        c = self.config
        if self.run is not None:
            self.run.write_config(c, kind="nerf", **self.run_info)
        history: list[dict[str, float]] = []
        next_check = c.eval_every_seconds
        bar = progress(total=c.steps, desc=f"nerf {c.field}", enable=progress_bar, unit="step")
        loss = float("nan")
        if self.step_count == 0:
            t0 = time.perf_counter()
            self._update_grid()  # prune before the first step (the grid starts all occupied)
            self.train_seconds += time.perf_counter() - t0
        while self.step_count < c.steps and self.train_seconds < c.max_seconds:
            self._set_lr()
            t0 = time.perf_counter()
            loss = self.step()
            self.train_seconds += time.perf_counter() - t0
            if not np.isfinite(loss):
                raise MpgymError(f"the loss became {loss} at step {self.step_count}; lower --lr.")
            if callback is not None:
                callback(self)
            bar.update(1)
            if self.step_count % 10 == 0:
                bar.set_postfix(loss=f"{loss:.4f}", s=f"{self.train_seconds:.0f}")
            if self.train_seconds >= next_check and self.train_seconds < c.max_seconds:
                self._check(history, loss)
                next_check += c.eval_every_seconds
        bar.close()
        last = self._check(history, loss)
        same = c.final_test_views == c.eval_views or (
            c.final_test_views <= 0 and c.eval_views >= len(self.test_data))
        p, s, images = last if same else self.evaluate(c.final_test_views)
        if self.run is not None:
            self.save(self.run.file("checkpoint.safetensors"), meta={"psnr": p, "ssim": s})
            self.run.write_json("results.json", {"psnr": p, "ssim": s, "steps": self.step_count,
                                                 "seconds": self.train_seconds})
        return TrainResult(p, s, self.step_count, self.train_seconds, history, images)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Field weights plus the occupancy grid (``grid.*``)."""
        sd = {f"field.{k}": v for k, v in self.field.state_dict().items()}
        if self.grid is not None:
            sd.update({f"grid.{k}": v for k, v in self.grid.state_dict().items()})
        return sd

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore field weights and occupancy grid from :meth:`state_dict` (strict keys)."""
        self.field.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("field.")})
        if self.grid is not None:
            self.grid.load_state_dict({k[5:]: v for k, v in state.items()
                                       if k.startswith("grid.")})

    def save(self, path, meta: dict[str, Any] | None = None):
        """Write a ``{config, state_dict}`` checkpoint (kind ``"nerf"``)."""
        return save_checkpoint(path, self.state_dict(), kind="nerf", config=self.config,
                               meta={"steps": self.step_count, "seconds": self.train_seconds,
                                     **(meta or {})})
