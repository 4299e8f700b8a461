"""Occupancy Networks (Mescheder et al., CVPR 2019): ``f(x, z) -> logit``, trained with BCE.

``z`` is either a PointNet encoding of the shape's point cloud (the paper's point-cloud
completion setting, ``condition="pointnet"``) or a free code per training shape
(``condition="latent"``, auto-decoder style). Training points are uniform in the box plus
near-surface samples (:class:`~neural3d.data.sampling.SamplingConfig`); the metric is
volumetric IoU on 100k uniform points, as in the paper.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from mpgym import MpgymError, RunDir, load_checkpoint, save_checkpoint
from mpgym.configs import config_from_dict
from neural3d.implicit.data import (
    ShapeSamples,
    batch_of_shapes,
    ious_of_shapes,
    model_from_state,
)
from neural3d.implicit.losses import occupancy_bce
from neural3d.implicit.networks import OccupancyDecoder, PointNetEncoder
from neural3d.implicit.training import LoopRecord, code_field, optimize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OccNetConfig:
    """Occupancy-network training options (defaults: the CPU run the benchmark reports)."""

    condition: Literal["pointnet", "latent"] = "pointnet"
    """Code from a PointNet on the shape's points (paper) or a learned code per shape."""
    latent_dim: int = 128
    """Code size (paper: 256 for point clouds)."""
    hidden: int = 128
    """Decoder width (paper: 256)."""
    blocks: int = 5
    """Decoder ResNet blocks (paper: 5)."""
    num_freqs: int = 0
    """Positional-encoding octaves on x (paper: 0)."""
    input_points: int = 300
    """Points given to the PointNet per shape (paper: 300)."""
    input_noise: float = 0.005
    """Gaussian noise on those points (paper: 0.005)."""
    points_per_shape: int = 2048
    """Training points per shape per step (paper: 2048)."""
    iterations: int = 2000
    """Optimisation steps (all shapes in every step)."""
    lr: float = 1e-3
    """Adam learning rate (paper: 1e-4 with batch 64; larger for few shapes)."""
    seed: int = 0
    """Seed of init and sampling."""
    device: str = "cpu"
    """``cpu``, ``cuda`` or ``auto``."""
    log_every: int = 100
    """Write a metrics row every this many steps."""


PRESETS: dict[str, OccNetConfig] = {
    "cpu": OccNetConfig(condition="latent", blocks=3, num_freqs=4, points_per_shape=1024,
                        iterations=1500),
    "pointnet": OccNetConfig(),
    "quick": OccNetConfig(hidden=64, blocks=3, latent_dim=32, iterations=300,
                          points_per_shape=1024),
}
"""Named configs: ``cpu`` (the benchmark's: a code per shape, positional encoding, sized for
a shared CPU), ``pointnet`` (the paper's conditioning), ``quick`` (smoke tests)."""


class OccupancyNetwork(nn.Module):
    """Encoder (PointNet, or one code per shape) + :class:`OccupancyDecoder`.

    Args:
        config: :class:`OccNetConfig`.
        num_shapes: number of training shapes (codes for ``condition="latent"``).
    """

    def __init__(self, config: OccNetConfig, num_shapes: int):
        super().__init__()
        self.condition = config.condition
        if config.condition == "pointnet":
            self.encoder: nn.Module = PointNetEncoder(config.latent_dim, config.hidden)
        else:
            self.encoder = nn.Embedding(num_shapes, config.latent_dim)
            nn.init.normal_(self.encoder.weight, 0.0, 0.1)
        self.decoder = OccupancyDecoder(config.latent_dim, config.hidden, config.blocks,
                                        config.num_freqs)

    def encode(self, cond: Tensor) -> Tensor:
        """Codes ``[B, C]`` from point clouds ``[B, T, 3]`` or shape indices ``[B]``."""
        return self.encoder(cond)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """Logits ``[B, N]`` for points ``[B, N, 3]`` (positive inside)."""
        return self.decoder(x, self.encode(cond))


@dataclass
class OccNetResult:
    """What :func:`train_occnet` returns."""

    model: OccupancyNetwork
    config: OccNetConfig
    names: list[str]
    iou: dict[str, float] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _condition(shapes: list[ShapeSamples], config: OccNetConfig, gen: torch.Generator | None
               ) -> Tensor:
    """PointNet inputs ``[S, T, 3]`` (random + noise with ``gen``, else the first T) or ``[S]``."""
    if config.condition == "latent":
        return torch.arange(len(shapes))
    clouds = []
    for s in shapes:
        surf = torch.from_numpy(s.surface)
        if gen is None:
            clouds.append(surf[: config.input_points])
        else:
            idx = torch.randint(0, len(surf), (config.input_points,), generator=gen)
            clouds.append(surf[idx] + config.input_noise * torch.randn(
                (config.input_points, 3), generator=gen))
    return torch.stack(clouds)


def occnet_field(model: OccupancyNetwork, cond: Tensor):
    """The SDF-signed field of one shape for meshing/IoU: ``x (N, 3) -> -logit (N,)``.

    The sign is flipped so that, like an SDF, it is negative inside (level 0); see
    :func:`~neural3d.implicit.training.code_field`.
    """
    with torch.no_grad():
        code = model.encode(cond[None])[0]
    return code_field(model.decoder, code, negate=True)


def train_occnet(shapes: list[ShapeSamples], config: OccNetConfig = OccNetConfig(), *,
                 run: RunDir | None = None, progress_bar: bool = True) -> OccNetResult:
    """Fit one occupancy network to a set of shapes; report IoU per training shape.

    Args:
        shapes: samples of each shape (:mod:`neural3d.implicit.data`), with ``truth`` for IoU.
        config: :class:`OccNetConfig`.
        run: optional run directory for metrics and the checkpoint (kind ``"occnet"``).
        progress_bar: show a progress bar on a terminal.
    """
    from mpgym.devices import get_device

    if not shapes:
        raise MpgymError("train_occnet needs at least one shape.")
    device = get_device(config.device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = OccupancyNetwork(config, len(shapes)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    pts = [torch.from_numpy(s.points) for s in shapes]
    occ = [torch.from_numpy(s.occupancy) for s in shapes]
    result = OccNetResult(model, config, [s.name for s in shapes])

    def save() -> None:
        if run is not None:
            save_checkpoint(run.file("checkpoint.safetensors"), model.state_dict(),
                            kind="occnet", config=config,
                            meta={"names": result.names, "num_shapes": len(shapes)})

    def step_loss(step: int) -> tuple[Tensor, dict[str, float]]:
        x, y = batch_of_shapes(pts, occ, config.points_per_shape, gen)
        x, y = x.to(device), y.to(device)
        return occupancy_bce(model(x, _condition(shapes, config, gen).to(device)), y), {}

    record = optimize(step_loss, opt, config.iterations, name="occnet", run=run,
                      log_every=config.log_every, save=save, progress_bar=progress_bar,
                      record=LoopRecord(result.losses))
    result.seconds = record.seconds
    save()
    model.eval().cpu()
    cond = _condition(shapes, config, None)
    result.iou = ious_of_shapes(shapes, lambda i: occnet_field(model, cond[i]))
    return result


def load_occnet(path) -> tuple[OccupancyNetwork, OccNetConfig, dict]:
    """Load a trained occupancy network: ``(model, config, meta)``.

    Raises:
        MpgymError: not an occupancy-network checkpoint, or corrupt.
    """
    ck = load_checkpoint(path, expected_kind="occnet")
    config = config_from_dict(OccNetConfig, ck.config)
    num_shapes = ck.meta.get("num_shapes", 1) if isinstance(ck.meta, dict) else None
    if isinstance(num_shapes, bool) or not isinstance(num_shapes, int) or num_shapes < 1:
        raise MpgymError(f"{ck.path}: num_shapes {num_shapes!r} in its metadata is not a "
                         "whole number >= 1; the checkpoint is corrupt.")
    model = model_from_state(lambda: OccupancyNetwork(config, num_shapes), ck.state_dict,
                             str(ck.path),
                             counts={"blocks": config.blocks, "num_freqs": config.num_freqs},
                             sizes={"latent_dim": config.latent_dim, "hidden": config.hidden,
                                    "num_shapes": num_shapes})
    meta = {**ck.meta, "num_shapes": num_shapes}
    return model.eval(), config, meta
