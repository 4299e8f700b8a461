"""DeepSDF auto-decoder (Park et al., CVPR 2019): one code per shape, learned with the decoder.

Training minimises, over decoder weights ``theta`` and codes ``z_j`` jointly::

    sum_j sum_i |clamp(f(z_j, x_i), d) - clamp(s_i, d)|  +  (1 / sigma^2) ||z_j||^2

(clamp ``d = 0.1``, code regularisation ``1e-4`` in ``specs.json``). A new shape -- e.g. the
half of a point cloud a depth sensor sees -- is inferred by optimising a fresh code with the
decoder frozen (:func:`infer_code`), which completes the unseen half from the learned prior.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from mpgym import MpgymError, RunDir, load_checkpoint, save_checkpoint
from mpgym.configs import config_from_dict
from neural3d.implicit.data import (
    ShapeSamples,
    batch_of_shapes,
    ious_of_shapes,
    model_from_state,
)
from neural3d.implicit.losses import clamped_l1
from neural3d.implicit.networks import DeepSDFDecoder
from neural3d.implicit.training import LoopRecord, code_field, optimize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeepSDFConfig:
    """DeepSDF options (paper values in brackets; defaults sized for CPU)."""

    latent_dim: int = 64
    """Code length (paper: 256)."""
    width: int = 256
    """Hidden units (paper: 512)."""
    depth: int = 6
    """Hidden layers (paper: 8); the input is re-injected at depth // 2."""
    dropout: float = 0.0
    """Dropout (paper: 0.2; off for a handful of shapes)."""
    num_freqs: int = 0
    """Positional-encoding octaves on x (paper: 0)."""
    clamp: float = 0.1
    """Clamp distance delta of the L1 loss (paper: 0.1)."""
    code_reg: float = 1e-4
    """Weight of ``||z||^2`` (paper: 1e-4)."""
    code_init_std: float = 0.01
    """Initial code standard deviation."""
    points_per_shape: int = 2048
    """SDF samples per shape per step (paper: 16384)."""
    iterations: int = 2000
    """Training steps (all shapes each step)."""
    lr: float = 1e-3
    """Adam learning rate for the decoder (paper: 5e-4, codes 1e-3)."""
    code_lr: float = 1e-2
    """Adam learning rate for the codes."""
    infer_iterations: int = 500
    """Steps of code optimisation for a new shape (paper: 800)."""
    infer_lr: float = 5e-3
    """Learning rate of that optimisation (paper: 5e-3)."""
    seed: int = 0
    """Seed of init and sampling."""
    device: str = "cpu"
    """``cpu``, ``cuda`` or ``auto``."""
    log_every: int = 100
    """Write a metrics row every this many steps."""


PRESETS: dict[str, DeepSDFConfig] = {
    "cpu": DeepSDFConfig(latent_dim=32, width=128, depth=4, points_per_shape=1024,
                         iterations=1500),
    "paper": DeepSDFConfig(latent_dim=256, width=512, depth=8, dropout=0.2,
                           points_per_shape=16384, lr=5e-4, code_lr=1e-3),
    "quick": DeepSDFConfig(latent_dim=16, width=64, depth=4, iterations=300,
                           points_per_shape=1024, infer_iterations=100),
}
"""Named configs: ``cpu`` (the benchmark's, sized for a shared CPU), ``paper`` (DeepSDF's
``specs.json``), ``quick`` (smoke tests)."""


@dataclass
class DeepSDFResult:
    """What :func:`train_deepsdf` returns."""

    decoder: DeepSDFDecoder
    codes: Tensor
    config: DeepSDFConfig
    names: list[str]
    iou: dict[str, float] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def build_decoder(config: DeepSDFConfig) -> DeepSDFDecoder:
    """The decoder of ``config``."""
    return DeepSDFDecoder(config.latent_dim, config.width, config.depth, config.dropout,
                          config.num_freqs)


def deepsdf_field(decoder: DeepSDFDecoder, code: Tensor):
    """The SDF of one code for meshing/IoU: ``x (N, 3) -> (N,)`` (numpy or tensor in/out).

    See :func:`~neural3d.implicit.training.code_field`.
    """
    return code_field(decoder, code)


def train_deepsdf(shapes: list[ShapeSamples], config: DeepSDFConfig = DeepSDFConfig(), *,
                  run: RunDir | None = None, progress_bar: bool = True) -> DeepSDFResult:
    """Train the auto-decoder on a set of shapes; report IoU per training shape.

    Args:
        shapes: samples of each shape with signed distances.
        config: :class:`DeepSDFConfig`.
        run: optional run directory (metrics, checkpoint of kind ``"deepsdf"`` with codes).
        progress_bar: show a progress bar on a terminal.
    """
    from mpgym.devices import get_device

    if not shapes:
        raise MpgymError("train_deepsdf needs at least one shape.")
    device = get_device(config.device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    decoder = build_decoder(config).to(device)
    codes = torch.nn.Parameter(torch.randn(len(shapes), config.latent_dim, generator=gen,
                                           device=device) * config.code_init_std)
    opt = torch.optim.Adam([{"params": decoder.parameters(), "lr": config.lr},
                            {"params": [codes], "lr": config.code_lr}])
    pts = [torch.from_numpy(s.points) for s in shapes]
    sdf = [torch.from_numpy(s.sdf) for s in shapes]
    result = DeepSDFResult(decoder, codes, config, [s.name for s in shapes])

    def save() -> None:
        if run is not None:
            save_checkpoint(run.file("checkpoint.safetensors"),
                            {**decoder.state_dict(), "codes": codes.detach()}, kind="deepsdf",
                            config=config, meta={"names": result.names})

    def step_loss(step: int) -> tuple[Tensor, dict[str, float]]:
        x, s = batch_of_shapes(pts, sdf, config.points_per_shape, gen)
        x, s = x.to(device), s.to(device)
        pred = decoder(x, codes)
        return clamped_l1(pred, s, config.clamp) + config.code_reg * (codes**2).sum(-1).mean(), {}

    record = optimize(step_loss, opt, config.iterations, name="deepsdf", run=run,
                      log_every=config.log_every, save=save, progress_bar=progress_bar,
                      record=LoopRecord(result.losses))
    result.seconds = record.seconds
    save()
    decoder.eval().cpu()
    result.codes = codes.detach().cpu()
    result.iou = ious_of_shapes(shapes, lambda i: deepsdf_field(decoder, result.codes[i]))
    return result


def observations_from_points(points: np.ndarray, normals: np.ndarray, eps: float = 0.01
                             ) -> tuple[np.ndarray, np.ndarray]:
    """SDF observations from an oriented point cloud (e.g. a partial scan).

    Each point with value 0, and ``p +- eps n`` with value ``+-eps`` (DeepSDF's depth-scan
    protocol).

    Returns:
        ``(points (3N, 3), sdf (3N,))``.
    """
    p, n = np.asarray(points, np.float32), np.asarray(normals, np.float32)
    x = np.concatenate([p, p + eps * n, p - eps * n])
    s = np.concatenate([np.zeros(len(p)), np.full(len(p), eps), np.full(len(p), -eps)])
    return x.astype(np.float32), s.astype(np.float32)


def infer_code(decoder: DeepSDFDecoder, points: np.ndarray, sdf: np.ndarray,
               config: DeepSDFConfig = DeepSDFConfig(), *, batch: int = 4096) -> Tensor:
    """Find the code of a new shape from SDF observations, with the decoder frozen.

    Args:
        decoder: a trained decoder.
        points: ``(N, 3)`` observed points.
        sdf: ``(N,)`` their signed distances.
        config: uses ``latent_dim``, ``clamp``, ``code_reg``, ``infer_iterations``,
            ``infer_lr``, ``code_init_std``, ``seed``.
        batch: observations per step.

    Returns:
        The code ``[latent_dim]``.
    """
    gen = torch.Generator().manual_seed(config.seed)
    decoder.eval()
    for p in decoder.parameters():
        p.requires_grad_(False)
    z = torch.nn.Parameter(torch.randn(1, config.latent_dim, generator=gen) * config.code_init_std)
    opt = torch.optim.Adam([z], lr=config.infer_lr)
    x, s = torch.from_numpy(np.asarray(points, np.float32)), torch.from_numpy(
        np.asarray(sdf, np.float32))
    for _ in range(config.infer_iterations):
        idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=gen)
        loss = clamped_l1(decoder(x[idx][None], z)[0], s[idx], config.clamp) \
            + config.code_reg * (z**2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for p in decoder.parameters():
        p.requires_grad_(True)
    return z.detach()[0]


def load_deepsdf(path) -> tuple[DeepSDFDecoder, Tensor, DeepSDFConfig, dict]:
    """Load a trained DeepSDF: ``(decoder, codes [S, C], config, meta)``.

    Raises:
        MpgymError: not a DeepSDF checkpoint, or corrupt.
    """
    ck = load_checkpoint(path, expected_kind="deepsdf")
    config = config_from_dict(DeepSDFConfig, ck.config)
    state = dict(ck.state_dict)
    codes = state.pop("codes", None)
    if codes is None or codes.ndim != 2 or len(codes) < 1 or codes.shape[1] != config.latent_dim:
        raise MpgymError(f"{ck.path}: the codes tensor is missing or not [shapes >= 1, "
                         f"{config.latent_dim}]; the checkpoint is corrupt.")
    decoder = model_from_state(lambda: build_decoder(config), state, str(ck.path),
                               counts={"depth": config.depth, "num_freqs": config.num_freqs},
                               sizes={"width": config.width, "latent_dim": config.latent_dim})
    from mpgym.errors import check_finite

    check_finite(f"{ck.path}: the codes", codes)
    return decoder.eval(), codes.float(), config, ck.meta
