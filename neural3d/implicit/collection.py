"""Occupancy networks and DeepSDF trained on a shape collection, evaluated on held-out shapes.

Data: a prepared :class:`~neural3d.data.collections.ShapeCollection` (unit-cube frame). Its
cached samples are stacked per split into a :class:`ShapeBank` and drawn from with an explicit
``torch.Generator``.

- **Conditional occupancy network** (Mescheder et al., CVPR 2019, point-cloud completion,
  ``configs/pointcloud/onet.yaml``): :class:`~neural3d.implicit.networks.ResnetPointNetEncoder`
  on 300 surface points with Gaussian noise of std 0.005, a conditional-batch-norm decoder
  (:class:`~neural3d.implicit.networks.CBatchNormDecoder`), BCE on 2,048 of the uniform
  occupancy samples per shape per step. ``encoder="planes"`` or ``"grid"`` swaps in the
  convolutional occupancy network (Peng et al., ECCV 2020; :mod:`neural3d.implicit.conv_occnet`):
  feature planes or a feature grid from a local-pooling PointNet and a U-Net, sampled at each
  query point by a small ResNet-FC decoder; loss, data and evaluation stay the same.
  Held-out IoU (:func:`eval_occnet_heldout`): each test shape's 300 noisy input points drawn
  with a fixed seed, IoU of ``sigmoid(logit) >= 0.2`` (``test.threshold``) against the uniform
  occupancy samples in ``[-0.55, 0.55]^3`` (OccNet's ``points_iou``).
- **DeepSDF over the collection** (Park et al., CVPR 2019, ``examples/*/specs.json``):
  auto-decoder with one code per training shape (``nn.Embedding`` with ``max_norm``
  ``CodeBound``), clamped L1, code regularisation ``lambda * min(1, epoch / 100) * sum ||z||``
  per SDF sample as in ``train_deep_sdf.py``. Held-out shapes (:func:`reconstruct_heldout`):
  codes optimised with the decoder frozen (``reconstruct.py``: 800 steps, 8,000 samples, lr
  ``5e-3`` divided by 10 half-way, ``1e-4 * mean(z^2)``), meshed, scored with DeepSDF's
  Chamfer (:func:`deepsdf_chamfer`); ``view="partial"`` uses only the surface seen from one
  direction (:func:`visible_surface`), DeepSDF's shape-completion setting.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mpgym import MpgymError, RunDir, load_checkpoint, save_checkpoint
from mpgym.configs import check_ranges, config_from_dict
from neural3d.data.collections import ShapeCollection
from neural3d.implicit.data import model_from_state
from neural3d.implicit.deepsdf import observations_from_points
from neural3d.implicit.losses import clamped_l1
from neural3d.implicit.networks import CBatchNormDecoder, DeepSDFDecoder, ResnetPointNetEncoder
from neural3d.implicit.training import LoopRecord, code_field, optimize

log = logging.getLogger(__name__)

Encoder = Literal["pointnet", "planes", "grid"]

Field = Literal["surface", "occupancy", "sdf"]


# ----------------------------------------------------------------------------------------------
# data: a split in memory, random rows (pure functions)
# ----------------------------------------------------------------------------------------------


@dataclass
class ShapeBank:
    """One split's cached samples stacked as tensors (absent fields are None)."""

    names: list[str]
    surface: Tensor | None = None  # [S, Ns, 3]
    normals: Tensor | None = None  # [S, Ns, 3]
    occ_points: Tensor | None = None  # [S, No, 3]
    occupancy: Tensor | None = None  # [S, No] bool
    sdf_points: Tensor | None = None  # [S, Nd, 3]
    sdf: Tensor | None = None  # [S, Nd]

    def __len__(self) -> int:
        return len(self.names)


def load_bank(
    collection: ShapeCollection,
    split: str,
    *,
    fields: tuple[Field, ...] = ("surface", "occupancy", "sdf"),
    limit: int | None = None,
) -> ShapeBank:
    """Stack the cached samples of one split (the first ``limit`` shapes) into a :class:`ShapeBank`.

    Raises:
        MpgymError: an unknown split or field, a bad ``limit``, or an empty split.
    """
    bad = [f for f in fields if f not in ("surface", "occupancy", "sdf")]
    if bad:
        raise MpgymError(f"unknown sample field(s) {bad}; accepted: surface, occupancy, sdf.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise MpgymError(f"limit must be a whole number >= 1 or None; got {limit!r}.")
    records = collection.split(split)[:limit]  # type: ignore[arg-type]
    if not records:
        raise MpgymError(
            f"the {split} split of {collection.source} holds no shapes; "
            "prepare a collection with at least one shape per split."
        )
    shapes = [collection.load(r) for r in records]

    def stack(key: str) -> Tensor:
        return torch.from_numpy(np.stack([getattr(s, key) for s in shapes]))

    bank = ShapeBank([r.name for r in records])
    if "surface" in fields:
        bank.surface, bank.normals = stack("surface_points"), stack("surface_normals")
    if "occupancy" in fields:
        bank.occ_points, bank.occupancy = stack("occ_points"), stack("occupancy")
    if "sdf" in fields:
        bank.sdf_points, bank.sdf = stack("sdf_points"), stack("sdf")
    return bank


def random_rows(
    points: Tensor, values: Tensor | None, n: int, gen: torch.Generator
) -> tuple[Tensor, Tensor | None]:
    """``n`` random rows (with replacement) of each shape: ``[B, N, 3], [B, N] -> [B, n, ...]``."""
    j = torch.randint(0, points.shape[1], (points.shape[0], n), generator=gen)  # [B, n]
    b = torch.arange(points.shape[0])[:, None]
    return points[b, j], (None if values is None else values[b, j])


def noisy_inputs(surface: Tensor, n: int, noise: float, gen: torch.Generator) -> Tensor:
    """OccNet's input clouds: ``n`` surface points per shape + ``N(0, noise^2)``, ``[B, n, 3]``."""
    pts, _ = random_rows(surface, None, n, gen)
    return pts + noise * torch.randn(pts.shape, generator=gen)


def occupancy_iou(logits: Tensor, occupied: Tensor, threshold: float = 0.2) -> Tensor:
    """Per-shape IoU of ``sigmoid(logits) >= threshold`` against ``occupied``: ``[S, N] -> [S]``.

    An empty union counts as IoU 1.

    Example:
        >>> occupancy_iou(torch.tensor([[3.0, 3.0, -3.0]]), torch.tensor([[True, False, False]]))
        tensor([0.5000])
    """
    pred = logits >= math.log(threshold / (1.0 - threshold))
    inter = (pred & occupied).sum(-1).float()
    union = (pred | occupied).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def visible_surface(
    points: np.ndarray, normals: np.ndarray, direction: np.ndarray, *, pixel: float = 0.01
) -> np.ndarray:
    """Mask of the surface points an orthographic camera looking along ``direction`` sees.

    A z-buffer on a ``pixel``-sized grid: a point is seen when it faces the camera
    (``n . d < 0``) and lies within two pixels of the nearest point in its pixel.

    Args:
        points: ``(N, 3)`` surface points.
        normals: ``(N, 3)`` their outward normals.
        direction: ``(3,)`` viewing direction (from the camera into the scene).
        pixel: pixel size.

    Returns:
        ``(N,)`` bool.
    """
    d = np.asarray(direction, np.float64)
    d = d / np.linalg.norm(d)
    u = np.cross(d, [0.0, 0.0, 1.0] if abs(d[2]) < 0.9 else [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(d, u)
    depth = points @ d
    ij = np.floor(np.stack([points @ u, points @ v], 1) / pixel).astype(np.int64)
    _, cell = np.unique(ij, axis=0, return_inverse=True)
    cell = cell.reshape(-1)
    nearest = np.full(cell.max() + 1, np.inf)
    np.minimum.at(nearest, cell, depth)
    return (depth <= nearest[cell] + 2 * pixel) & (normals @ d < 0)


def deepsdf_chamfer(pred: np.ndarray, truth: np.ndarray) -> float:
    """DeepSDF's Chamfer distance: ``mean_t min_p |t - p|^2 + mean_p min_t |p - t|^2``.

    The sum (not the mean) of both directions' mean squared nearest-neighbour distances
    (``deep_sdf/metrics/chamfer.py``; the paper quotes it times 1e3).

    Example:
        >>> deepsdf_chamfer(np.zeros((1, 3)), np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]]))
        6.0
    """
    from mpgym.geometry import nearest

    return float((nearest(truth, pred)[0] ** 2).mean() + (nearest(pred, truth)[0] ** 2).mean())


# ----------------------------------------------------------------------------------------------
# conditional occupancy network
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OccNetCollectionConfig:
    """Conditional OccNet on a collection (defaults: OccNet's ``configs/pointcloud/onet.yaml``).

    ``encoder="planes"``/``"grid"`` selects the convolutional occupancy network; its presets
    (``planes-paper``, ``grid-paper``) take ConvONet's ``configs/pointcloud/shapenet_3plane.yaml``
    and ``shapenet_grid32.yaml``.
    """

    encoder: Encoder = "pointnet"
    """``pointnet`` (OccNet: global code, CBN decoder), ``planes`` (ConvONet: three 2D feature
    planes) or ``grid`` (ConvONet: a 3D feature grid)."""
    c_dim: int = 512
    """Code size (onet.yaml ``c_dim: 512``; ``z_dim: 0``)."""
    encoder_hidden: int = 512
    """ResNet-PointNet width (onet.yaml ``encoder_kwargs.hidden_dim: 512``)."""
    decoder_hidden: int = 256
    """CBN decoder width (``DecoderCBatchNorm`` default ``hidden_size=256``)."""
    blocks: int = 5
    """ResNet blocks in the encoder and in the decoder (OccNet: 5 each)."""
    input_points: int = 300
    """Input surface points per shape (onet.yaml ``pointcloud_n: 300``)."""
    input_noise: float = 0.005
    """Std of the Gaussian noise on them (onet.yaml ``pointcloud_noise: 0.005``)."""
    points_per_shape: int = 2048
    """Occupancy samples per shape per step (onet.yaml ``points_subsample: 2048``)."""
    batch_shapes: int = 64
    """Shapes per step (``training.batch_size: 64``)."""
    iterations: int = 100_000
    """Steps (OccNet trains until val IoU stops improving; ~1e5 steps is its order)."""
    lr: float = 1e-4
    """Adam learning rate (``train.py``: 1e-4)."""
    threshold: float = 0.2
    """Occupancy-probability threshold for IoU and meshes (onet.yaml ``test.threshold``)."""
    resolution: int = 64
    """Planes / grid: cells per side (ConvONet: ``plane_resolution: 64``,
    ``grid_resolution: 32``)."""
    unet_depth: int = 4
    """Planes / grid: U-Net levels (ConvONet: ``depth: 4``; the grid's ``num_levels: 3``)."""
    unet_filters: int = 32
    """Planes / grid: channels of the U-Net's first level (``start_filts``/``f_maps``: 32)."""
    padding: float = 0.1
    """Planes / grid: they cover ``[-(1 + padding) / 2, (1 + padding) / 2]`` (ConvONet: 0.1)."""
    max_minutes: float = 0.0
    """Stop training after this many minutes (0: no limit; the CPU presets' budget)."""
    seed: int = 0
    """Seed of init and sampling."""
    device: str = "cpu"
    """``cpu``, ``cuda`` or ``auto``."""
    log_every: int = 100
    """Steps between metrics rows."""


@dataclass(frozen=True)
class DeepSDFCollectionConfig:
    """DeepSDF over a collection (defaults: DeepSDF's ``specs.json`` and ``reconstruct.py``)."""

    latent_dim: int = 256
    """Code length (``CodeLength: 256``)."""
    width: int = 512
    """Hidden units (``dims``: 8 x 512)."""
    depth: int = 8
    """Hidden layers; ``[z, x]`` re-enters at ``depth // 2`` (``latent_in: [4]``)."""
    dropout: float = 0.2
    """Dropout on hidden layers (``dropout_prob: 0.2``)."""
    clamp: float = 0.1
    """Clamp distance of the L1 loss (``ClampingDistance: 0.1``)."""
    code_reg: float = 1e-4
    """Code regularisation lambda (``CodeRegularizationLambda: 1e-4``)."""
    code_bound: float = 1.0
    """Largest code norm (``CodeBound: 1.0``, ``nn.Embedding(max_norm=...)``)."""
    code_init_std: float = 1.0
    """Codes start ``N(0, (std / sqrt(latent_dim))^2)`` (``CodeInitStdDev: 1.0``)."""
    points_per_shape: int = 16384
    """SDF samples per shape per step (``SamplesPerScene: 16384``)."""
    batch_shapes: int = 64
    """Shapes per step (``ScenesPerBatch: 64``)."""
    iterations: int = 26_000
    """Steps (paper: 2001 epochs; 792 shapes / 64 per step = 12.4 steps an epoch)."""
    lr: float = 5e-4
    """Decoder Adam learning rate (``LearningRateSchedule[0].Initial``)."""
    code_lr: float = 1e-3
    """Code Adam learning rate (``LearningRateSchedule[1].Initial``)."""
    lr_step: int = 6_500
    """Steps between halvings of both rates (paper: every 500 epochs, factor 0.5)."""
    infer_iterations: int = 800
    """Code-optimisation steps for a held-out shape (``reconstruct.py``: 800)."""
    infer_samples: int = 8000
    """SDF observations per step of that optimisation (``reconstruct.py``: 8000)."""
    infer_lr: float = 5e-3
    """Its learning rate, divided by 10 half-way (``reconstruct.py``: 5e-3)."""
    infer_init_std: float = 0.01
    """Std of the initial held-out code (``reconstruct.py``: 0.01)."""
    infer_reg: float = 1e-4
    """Weight of ``mean(z^2)`` in that optimisation (``reconstruct.py``: 1e-4)."""
    mesh_resolution: int = 256
    """Marching-cubes cells per axis for meshes (``reconstruct.py``: N = 256)."""
    chamfer_points: int = 30_000
    """Points sampled on the reconstructed mesh (``compute_trimesh_chamfer``: 30,000)."""
    seed: int = 0
    """Seed of init and sampling."""
    device: str = "cpu"
    """``cpu``, ``cuda`` or ``auto``."""
    log_every: int = 100
    """Steps between metrics rows."""


_CONVONET = OccNetCollectionConfig(
    encoder="planes", c_dim=32, encoder_hidden=32, decoder_hidden=32, input_points=3000,
    batch_shapes=32,
)
"""ConvONet's ``configs/pointcloud/shapenet_3plane.yaml`` (the rest as OccNet's defaults)."""
# Batch 8 and 2,800 steps were chosen on the val split only (val IoU 0.810, against 0.803 for
# batch 16 cut at 1,375 steps by the clock and 0.805 for batch 16 at lr 1e-3); see the docstring.
_CONVONET_CPU = replace(_CONVONET, input_points=300, unet_filters=16, batch_shapes=8,
                        iterations=2800, lr=5e-4, max_minutes=25.0)
_CONVONET_TINY = replace(_CONVONET, c_dim=16, encoder_hidden=16, blocks=3, input_points=300,
                         resolution=16, unet_depth=2, unet_filters=8, batch_shapes=4,
                         points_per_shape=512, iterations=120, lr=2e-3, log_every=40)

OCCNET_PRESETS: dict[str, OccNetCollectionConfig] = {
    "paper": OccNetCollectionConfig(),
    "cpu": OccNetCollectionConfig(
        c_dim=128,
        encoder_hidden=64,
        decoder_hidden=128,
        batch_shapes=16,
        points_per_shape=512,
        iterations=2400,
        lr=5e-4,
    ),
    "tiny": OccNetCollectionConfig(
        c_dim=32,
        encoder_hidden=32,
        decoder_hidden=32,
        blocks=2,
        batch_shapes=8,
        points_per_shape=512,
        iterations=150,
        lr=2e-3,
        log_every=50,
    ),
    "planes-paper": _CONVONET,
    "grid-paper": replace(_CONVONET, encoder="grid", resolution=32, unet_depth=3),
    "planes-cpu": _CONVONET_CPU,
    "grid-cpu": replace(_CONVONET_CPU, encoder="grid", resolution=16, unet_depth=3),
    "planes-tiny": _CONVONET_TINY,
    "grid-tiny": replace(_CONVONET_TINY, encoder="grid", resolution=8),
}
"""``paper`` (onet.yaml), ``cpu`` (narrower, smaller batches, larger lr: ~10 min on one core),
``tiny`` (tests); ``planes-paper`` / ``grid-paper`` (ConvONet's object-level configs, with its
3,000 input points), ``planes-cpu`` / ``grid-cpu`` (300 input points as OccNet's protocol, so
the held-out IoU compares; planes: U-Net filters 16 instead of 32, ~0.55 s a step on 2 cores;
grid: 16^3 cells and 16 filters, as 32^3 took ~8 s a step; batches of 8 shapes, lr 5e-4, at
most 2,800 steps or 25 minutes: twice the updates of batches of 16 in the same time, chosen on
the val split), ``planes-tiny`` / ``grid-tiny`` (tests)."""

DEEPSDF_PRESETS: dict[str, DeepSDFCollectionConfig] = {
    "paper": DeepSDFCollectionConfig(),
    "cpu": DeepSDFCollectionConfig(
        latent_dim=64,
        width=128,
        depth=4,
        dropout=0.0,
        points_per_shape=512,
        batch_shapes=64,
        iterations=6000,
        lr_step=2000,
        lr=1e-3,
        code_lr=1e-2,
        infer_iterations=200,
        infer_samples=2000,
        mesh_resolution=64,
        chamfer_points=30_000,
    ),
    "tiny": DeepSDFCollectionConfig(
        latent_dim=8,
        width=64,
        depth=4,
        dropout=0.0,
        points_per_shape=512,
        batch_shapes=8,
        iterations=300,
        lr=2e-3,
        code_lr=2e-2,
        lr_step=1000,
        infer_iterations=100,
        infer_samples=1000,
        infer_lr=2e-2,
        mesh_resolution=32,
        chamfer_points=2000,
        log_every=50,
    ),
}
"""``paper`` (specs.json / reconstruct.py), ``cpu`` (a smaller net, no dropout, fewer samples
and steps, larger learning rates, meshes at 64^3), ``tiny`` (tests).

``cpu`` was chosen on the val split, scoring the default latent-diffusion prior over its codes:
16 shapes x 2,048 points a step for 1,500 steps (30 epochs) gave 1-NNA 0.772 / COV 0.374;
64 shapes x 512 points (the same points a step, so the same ~0.14 s a step on 2 threads) for
6,000 steps (~485 epochs; every code updated 16x as often) gave 0.679 / 0.404, in ~16 minutes.
64 x 1,024 points a step cost 4x as much per step (memory-bound at 65k points), too slow for
the 30-minute budget."""


def _check(config: OccNetCollectionConfig | DeepSDFCollectionConfig) -> None:
    sizes = {
        k: (1, 1 << 20) for k in ("batch_shapes", "points_per_shape", "iterations", "log_every")
    }
    if isinstance(config, OccNetCollectionConfig):
        sizes |= {
            k: (1, 1 << 16)
            for k in ("c_dim", "encoder_hidden", "decoder_hidden", "blocks", "input_points")
        }
        sizes |= {"resolution": (2, 512), "unet_depth": (1, 8), "unet_filters": (1, 1 << 12)}
        check_ranges(config, ints=sizes, positive=("lr", "threshold"))
        if not 0 < config.threshold < 1 or config.input_noise < 0:
            raise MpgymError(
                "threshold must lie in (0, 1) and input_noise be >= 0; got "
                f"{config.threshold}, {config.input_noise}."
            )
        _check_conv(config)
    else:
        sizes |= {
            k: (1, 1 << 16)
            for k in (
                "latent_dim",
                "width",
                "depth",
                "lr_step",
                "infer_iterations",
                "infer_samples",
                "mesh_resolution",
                "chamfer_points",
            )
        }
        check_ranges(
            config,
            ints=sizes,
            unit=("dropout",),
            positive=("lr", "code_lr", "clamp", "code_bound", "infer_lr"),
        )


def _check_conv(config: OccNetCollectionConfig) -> None:
    """Refuse an unknown encoder, a negative padding, or a U-Net the resolution cannot halve."""
    if config.encoder not in ("pointnet", "planes", "grid"):
        raise MpgymError(
            f"unknown encoder {config.encoder!r}; accepted: pointnet, planes, grid."
        )
    if not (math.isfinite(config.padding) and 0 <= config.padding <= 1):
        raise MpgymError(f"padding must lie in [0, 1]; got {config.padding!r}.")
    if not (math.isfinite(config.max_minutes) and config.max_minutes >= 0):
        raise MpgymError(f"max_minutes must be >= 0 (0: no limit); got {config.max_minutes!r}.")
    halvings = 2 ** (config.unet_depth - 1)
    if config.encoder != "pointnet" and config.resolution % halvings:
        raise MpgymError(
            f"resolution {config.resolution} cannot be halved {config.unet_depth - 1} times by "
            f"the U-Net; use a multiple of {halvings} or a smaller unet_depth."
        )


class ConditionalOccNet(nn.Module):
    """An occupancy network conditioned on a point cloud: ``encoder(cloud)`` then ``decoder``.

    ``encoder="pointnet"``: ResNet-PointNet to a global code + conditional-batch-norm decoder
    (OccNet). ``"planes"`` / ``"grid"``: ConvONet's local-pooling PointNet with a U-Net to
    feature planes or a feature grid + its local decoder
    (:mod:`neural3d.implicit.conv_occnet`). Either way ``decoder(x, encoder(cloud))``.
    """

    def __init__(self, config: OccNetCollectionConfig):
        super().__init__()
        self.encoder: nn.Module
        self.decoder: nn.Module
        if config.encoder == "pointnet":
            self.encoder = ResnetPointNetEncoder(config.c_dim, config.encoder_hidden, config.blocks)
            self.decoder = CBatchNormDecoder(config.c_dim, config.decoder_hidden, config.blocks)
            return
        from neural3d.implicit.conv_occnet import LocalDecoder, LocalPoolPointNet

        self.encoder = LocalPoolPointNet(
            config.c_dim,
            config.encoder_hidden,
            config.blocks,
            layout=config.encoder,  # type: ignore[arg-type]
            resolution=config.resolution,
            unet_depth=config.unet_depth,
            unet_filters=config.unet_filters,
            padding=config.padding,
        )
        self.decoder = LocalDecoder(
            config.c_dim, config.decoder_hidden, config.blocks, padding=config.padding
        )

    def forward(self, x: Tensor, cloud: Tensor) -> Tensor:
        """Logits ``[B, N]`` of points ``[B, N, 3]`` given input clouds ``[B, T, 3]``."""
        return self.decoder(x, self.encoder(cloud))


# ----------------------------------------------------------------------------------------------
# the loop of both trainers: a time cap, periodic checkpoints, resuming
# ----------------------------------------------------------------------------------------------

TRAINER_FILE = "trainer.pt"
"""Beside a run's checkpoint: optimiser, scheduler, sampling generator and step, for resuming."""


class _TimeUp(Exception):
    """Raised by a step when the training budget (``max_minutes``) is spent."""


def save_trainer_state(
    path, opt: torch.optim.Optimizer, gen: torch.Generator, step: int, sched=None
) -> None:
    """Write the loop's state (``torch.save`` of tensors and numbers only), atomically."""
    import io

    from mpgym.checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(
        {
            "step": int(step),
            "generator": gen.get_state(),
            "optimizer": opt.state_dict(),
            "scheduler": None if sched is None else sched.state_dict(),
        },
        buf,
    )
    atomic_write_bytes(path, buf.getvalue())


def load_trainer_state(path, opt: torch.optim.Optimizer, gen: torch.Generator, sched=None) -> int:
    """Restore :func:`save_trainer_state`'s file into ``opt``, ``gen`` (and ``sched``); the step.

    Raises:
        MpgymError: a missing or unreadable file, or one that does not fit the optimiser.
    """
    from pathlib import Path

    if not Path(path).is_file():
        raise MpgymError(f"{path} is missing; the run cannot be resumed (train it afresh).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        if sched is not None and state.get("scheduler") is not None:
            sched.load_state_dict(state["scheduler"])
        return int(state["step"])
    except Exception as exc:  # noqa: BLE001 - any fault of the file is one message
        raise MpgymError(f"{path} cannot be resumed from ({type(exc).__name__}: {exc}).") from None


def _resumable(run: RunDir | None, kind: str, config) -> dict[str, Tensor]:
    """The saved weights of a run to resume, after checking it was trained with ``config``.

    The step budget (``iterations``, ``max_minutes``), ``log_every`` and ``device`` may differ.

    Raises:
        MpgymError: no run, no checkpoint of ``kind``, or another config.
    """
    from dataclasses import fields

    if run is None:
        raise MpgymError("resume needs the run directory of the training to continue.")
    ck = load_checkpoint(run.file("checkpoint.safetensors"), expected_kind=kind)
    free = {"iterations", "max_minutes", "log_every", "device"} & {f.name for f in fields(config)}
    saved = config_from_dict(type(config), ck.config)
    if replace(saved, **{k: getattr(config, k) for k in free}) != config:
        changed = [f.name for f in fields(config)
                   if getattr(saved, f.name) != getattr(config, f.name)]
        raise MpgymError(
            f"{run.path} was trained with other settings ({', '.join(changed)} differ); resume "
            "with the same settings (only the step budget may change), or train a new run."
        )
    return ck.state_dict


def _train_loop(
    step_loss,
    opt: torch.optim.Optimizer,
    config: OccNetCollectionConfig | DeepSDFCollectionConfig,
    *,
    name: str,
    run: RunDir | None,
    save,
    progress_bar: bool,
    record: LoopRecord,
    start: int = 0,
    scheduler=None,
) -> tuple[float, int]:
    """:func:`optimize` from step ``start`` to ``config.iterations``, within ``max_minutes``.

    ``step_loss`` gets the absolute step. Checkpoints every ``10 * log_every`` steps (when there
    is a run), on Ctrl-C and at the end. Returns ``(seconds, steps done in all)``.
    """
    limit = 60.0 * getattr(config, "max_minutes", 0.0)
    t0 = time.perf_counter()
    done = [start]

    def timed(step: int) -> tuple[Tensor, dict[str, float]]:
        done[0] = start + step
        if limit and time.perf_counter() - t0 > limit:
            raise _TimeUp
        loss, terms = step_loss(start + step)
        return loss, {**terms, "iteration": float(start + step)}

    try:
        optimize(
            timed,
            opt,
            max(0, config.iterations - start),
            name=name,
            run=run,
            log_every=config.log_every,
            save=lambda: save(done[0]),
            progress_bar=progress_bar,
            scheduler=scheduler,
            save_every=10 * config.log_every if run is not None else 0,
            record=record,
        )
        done[0] = max(start, config.iterations)
    except _TimeUp:
        log.info("%s: stopped at step %d after %.1f minutes", name, done[0], limit / 60)
    seconds = time.perf_counter() - t0
    save(done[0])
    return seconds, done[0]


@dataclass
class OccNetCollectionResult:
    """What :func:`train_occnet_collection` returns."""

    model: ConditionalOccNet
    config: OccNetCollectionConfig
    names: list[str]
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    """Steps done in all (fewer than ``iterations`` when ``max_minutes`` ran out)."""


def train_occnet_collection(
    collection: ShapeCollection,
    config: OccNetCollectionConfig = OccNetCollectionConfig(),
    *,
    split: str = "train",
    limit: int | None = None,
    run: RunDir | None = None,
    progress_bar: bool = True,
    resume: bool = False,
) -> OccNetCollectionResult:
    """Train the conditional occupancy network on one split of a collection.

    Each step draws ``batch_shapes`` shapes (with replacement), a noisy input cloud for each
    and ``points_per_shape`` of its uniform occupancy samples; the loss is the mean BCE
    (OccNet sums over points and averages over shapes; Adam makes the scale immaterial).
    Training stops after ``iterations`` steps or ``max_minutes``, whichever comes first.

    Args:
        collection: a prepared collection.
        config: :class:`OccNetCollectionConfig`.
        split: the split trained on.
        limit: use only its first shapes.
        run: optional run directory (metrics, checkpoint of kind ``"occnet-collection"``, the
            loop's state in :data:`TRAINER_FILE`).
        progress_bar: show a progress bar on a terminal.
        resume: continue from ``run``'s checkpoint and loop state (same config) up to
            ``config.iterations`` steps in all.
    """
    from mpgym.devices import get_device

    _check(config)
    bank = load_bank(collection, split, fields=("surface", "occupancy"), limit=limit)
    device = get_device(config.device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = ConditionalOccNet(config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    result = OccNetCollectionResult(model, config, bank.names)
    start = 0
    if resume:
        state = _resumable(run, "occnet-collection", config)
        model.load_state_dict(state)
        start = load_trainer_state(run.file(TRAINER_FILE), opt, gen)  # type: ignore[union-attr]

    def save(step: int) -> None:
        if run is not None:
            state = {k: v.float() for k, v in model.state_dict().items()}  # counters as floats
            save_checkpoint(
                run.file("checkpoint.safetensors"),
                state,
                kind="occnet-collection",
                config=config,
                meta={"source": collection.source, "split": split, "shapes": len(bank),
                      "steps": step},
            )
            save_trainer_state(run.file(TRAINER_FILE), opt, gen, step)

    def step_loss(step: int) -> tuple[Tensor, dict[str, float]]:
        idx = torch.randint(0, len(bank), (config.batch_shapes,), generator=gen)
        cloud = noisy_inputs(bank.surface[idx], config.input_points, config.input_noise, gen)
        x, y = random_rows(bank.occ_points[idx], bank.occupancy[idx], config.points_per_shape, gen)
        logits = model(x.to(device), cloud.to(device))
        return F.binary_cross_entropy_with_logits(logits, y.to(device).float()), {}

    model.train()
    result.seconds, result.steps = _train_loop(
        step_loss,
        opt,
        config,
        name="occnet-collection",
        run=run,
        save=save,
        progress_bar=progress_bar,
        record=LoopRecord(result.losses),
        start=start,
    )
    model.eval().cpu()
    return result


@dataclass
class HeldoutIoU:
    """What :func:`eval_occnet_heldout` returns."""

    split: str
    ious: dict[str, float]
    """IoU per shape."""
    seconds: float = 0.0

    @property
    def mean(self) -> float:
        """Mean IoU over the shapes (OccNet's figure)."""
        return float(np.mean(list(self.ious.values())))


def eval_occnet_heldout(
    model: ConditionalOccNet,
    collection: ShapeCollection,
    config: OccNetCollectionConfig = OccNetCollectionConfig(),
    *,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    batch: int = 8,
    chunk: int = 25_000,
) -> HeldoutIoU:
    """OccNet's point-cloud completion IoU on held-out shapes.

    For each shape in order, ``input_points`` surface points with noise ``input_noise`` drawn
    from one ``torch.Generator(seed)``; IoU at ``threshold`` on all its uniform occupancy
    samples. The model runs in ``eval()`` mode (running batch-norm statistics).

    Args:
        model: a trained :class:`ConditionalOccNet`.
        collection: the collection.
        config: uses ``input_points``, ``input_noise``, ``threshold``.
        split: ``val`` (model selection) or ``test`` (the reported figure).
        limit: only the first shapes of the split.
        seed: seed of the input clouds.
        batch: shapes per forward pass.
        chunk: query points per forward pass.
    """
    t0 = time.perf_counter()
    bank = load_bank(collection, split, fields=("surface", "occupancy"), limit=limit)
    gen = torch.Generator().manual_seed(seed)
    clouds = noisy_inputs(bank.surface, config.input_points, config.input_noise, gen)
    model.eval()
    ious = []
    with torch.no_grad():
        for lo in range(0, len(bank), batch):
            c = model.encoder(clouds[lo : lo + batch])  # [b, c_dim]
            pts = bank.occ_points[lo : lo + batch]
            logits = torch.cat(
                [model.decoder(pts[:, j : j + chunk], c) for j in range(0, pts.shape[1], chunk)],
                dim=1,
            )
            ious.append(occupancy_iou(logits, bank.occupancy[lo : lo + batch], config.threshold))
    iou = torch.cat(ious).tolist()
    return HeldoutIoU(split, dict(zip(bank.names, iou, strict=True)), time.perf_counter() - t0)


def load_occnet_collection(path) -> tuple[ConditionalOccNet, OccNetCollectionConfig, dict]:
    """Load a :func:`train_occnet_collection` checkpoint: ``(model in eval mode, config, meta)``.

    BatchNorm running statistics travel in the state dict (its step counters as floats).
    """
    ck = load_checkpoint(path, expected_kind="occnet-collection")
    config = config_from_dict(OccNetCollectionConfig, ck.config)
    _check(config)
    model = model_from_state(
        lambda: ConditionalOccNet(config),
        ck.state_dict,
        str(ck.path),
        counts={"blocks": config.blocks, "unet_depth": config.unet_depth},
        sizes={
            "c_dim": config.c_dim,
            "encoder_hidden": config.encoder_hidden,
            "decoder_hidden": config.decoder_hidden,
            "unet_filters": config.unet_filters,
        },
    )
    return model.eval(), config, ck.meta


# ----------------------------------------------------------------------------------------------
# DeepSDF over a collection
# ----------------------------------------------------------------------------------------------


@dataclass
class DeepSDFCollectionResult:
    """What :func:`train_deepsdf_collection` returns."""

    decoder: DeepSDFDecoder
    codes: Tensor  # [S, latent_dim]
    config: DeepSDFCollectionConfig
    names: list[str]
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    """Steps done in all (a resumed run counts the earlier ones too)."""


def build_sdf_decoder(config: DeepSDFCollectionConfig) -> DeepSDFDecoder:
    """DeepSDF's decoder for ``config`` (weight norm, tanh output, ``[z, x]`` re-injected)."""
    return DeepSDFDecoder(config.latent_dim, config.width, config.depth, config.dropout)


def check_codes(codes: Tensor, latent_dim: int) -> Tensor:
    """``codes`` as a finite float ``[S, latent_dim]`` tensor (a single ``[latent_dim]`` code too).

    Raises:
        MpgymError: codes of another width or rank, or non-finite values.
    """
    from mpgym.errors import check_finite

    codes = torch.as_tensor(codes, dtype=torch.float32)
    codes = codes[None] if codes.ndim == 1 else codes
    if codes.ndim != 2 or codes.shape[1] != latent_dim:
        raise MpgymError(
            f"codes of shape {tuple(codes.shape)} do not fit this decoder; "
            f"accepted: [{latent_dim}] or [shapes, {latent_dim}]."
        )
    check_finite("the codes", codes)
    return codes


def train_deepsdf_collection(
    collection: ShapeCollection,
    config: DeepSDFCollectionConfig = DeepSDFCollectionConfig(),
    *,
    split: str = "train",
    limit: int | None = None,
    run: RunDir | None = None,
    progress_bar: bool = True,
    resume: bool = False,
) -> DeepSDFCollectionResult:
    """Train DeepSDF's auto-decoder on one split of a collection.

    Loss per step (``train_deep_sdf.py``): mean over the batch's samples of
    ``|clamp(f(z_j, x)) - clamp(s)|`` plus ``code_reg * min(1, epoch / 100) * sum_j ||z_j||``
    divided by the number of samples; codes kept within ``code_bound``; both learning rates
    halved every ``lr_step`` steps.

    Args:
        collection: a prepared collection.
        config: :class:`DeepSDFCollectionConfig`.
        split: the split trained on.
        limit: use only its first shapes.
        run: optional run directory (metrics, checkpoint of kind ``"deepsdf-collection"``, the
            loop's state in :data:`TRAINER_FILE`).
        progress_bar: show a progress bar on a terminal.
        resume: continue from ``run``'s checkpoint and loop state (same config).
    """
    from mpgym.devices import get_device

    _check(config)
    bank = load_bank(collection, split, fields=("sdf",), limit=limit)
    device = get_device(config.device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    decoder = build_sdf_decoder(config).to(device)
    codes = nn.Embedding(len(bank), config.latent_dim, max_norm=config.code_bound).to(device)
    with torch.no_grad():
        codes.weight.copy_(
            torch.randn(len(bank), config.latent_dim, generator=gen)
            * config.code_init_std
            / math.sqrt(config.latent_dim)
        )
    opt = torch.optim.Adam(
        [
            {"params": decoder.parameters(), "lr": config.lr},
            {"params": codes.parameters(), "lr": config.code_lr},
        ]
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, config.lr_step, 0.5)
    result = DeepSDFCollectionResult(decoder, codes.weight, config, bank.names)
    n_samples = config.batch_shapes * config.points_per_shape
    start = 0
    if resume:
        state = dict(_resumable(run, "deepsdf-collection", config))
        with torch.no_grad():
            codes.weight.copy_(check_codes(state.pop("codes", torch.zeros(0)), config.latent_dim))
        decoder.load_state_dict(state)
        start = load_trainer_state(run.file(TRAINER_FILE), opt, gen, sched)  # type: ignore[union-attr]

    def save(step: int) -> None:
        if run is not None:
            save_checkpoint(
                run.file("checkpoint.safetensors"),
                {**decoder.state_dict(), "codes": codes.weight.detach()},
                kind="deepsdf-collection",
                config=config,
                meta={"source": collection.source, "split": split, "names": bank.names,
                      "steps": step},
            )
            save_trainer_state(run.file(TRAINER_FILE), opt, gen, step, sched)

    def step_loss(step: int) -> tuple[Tensor, dict[str, float]]:
        idx = torch.randint(0, len(bank), (config.batch_shapes,), generator=gen)
        x, s = random_rows(bank.sdf_points[idx], bank.sdf[idx], config.points_per_shape, gen)
        z = codes(idx.to(device))  # [B, C], renormalised to code_bound
        l1 = clamped_l1(decoder(x.to(device), z), s.to(device), config.clamp)
        epoch = step * config.batch_shapes / len(bank)
        reg = config.code_reg * min(1.0, epoch / 100) * z.norm(dim=-1).sum() / n_samples
        return l1 + reg, {"l1": l1.item()}

    decoder.train()
    result.seconds, result.steps = _train_loop(
        step_loss,
        opt,
        config,
        name="deepsdf-collection",
        run=run,
        save=save,
        progress_bar=progress_bar,
        record=LoopRecord(result.losses),
        start=start,
        scheduler=sched,
    )
    decoder.eval().cpu()
    result.codes = codes.weight.detach().cpu()
    return result


def infer_codes(
    decoder: DeepSDFDecoder,
    points: Tensor,
    sdf: Tensor,
    config: DeepSDFCollectionConfig = DeepSDFCollectionConfig(),
    *,
    gen: torch.Generator | None = None,
    init: Tensor | None = None,
) -> Tensor:
    """Codes of new shapes from their SDF observations, decoder frozen (``reconstruct.py``).

    All shapes are optimised together; each shape's loss is its own mean clamped L1 plus
    ``infer_reg * mean(z^2)``, summed over shapes, so shapes do not interact.

    Args:
        decoder: a trained decoder (put in ``eval()`` mode).
        points: ``[S, N, 3]`` observed points per shape.
        sdf: ``[S, N]`` their signed distances.
        config: uses ``latent_dim``, ``clamp`` and the ``infer_*`` fields.
        gen: generator of the initial codes and the samples (seed ``config.seed`` if None).
        init: ``[S, latent_dim]`` starting codes instead of ``N(0, infer_init_std^2)``.

    Returns:
        ``[S, latent_dim]`` codes.

    Raises:
        MpgymError: ``init`` of the wrong width, or mismatched observations.
    """
    if points.ndim != 3 or points.shape[-1] != 3 or sdf.shape != points.shape[:2]:
        raise MpgymError(
            f"observations must be points [S, N, 3] and sdf [S, N]; got "
            f"{tuple(points.shape)} and {tuple(sdf.shape)}."
        )
    gen = gen if gen is not None else torch.Generator().manual_seed(config.seed)
    S = points.shape[0]
    if init is None:
        init = torch.randn(S, config.latent_dim, generator=gen) * config.infer_init_std
    z = nn.Parameter(check_codes(init, config.latent_dim).clone())
    if z.shape[0] != S:
        raise MpgymError(f"{z.shape[0]} initial codes for {S} shapes; give one per shape.")
    decoder.eval()
    decoder.requires_grad_(False)
    opt = torch.optim.Adam([z], lr=config.infer_lr)
    n = min(config.infer_samples, points.shape[1])
    try:
        for it in range(config.infer_iterations):
            for g in opt.param_groups:
                g["lr"] = config.infer_lr * 0.1 ** (it // max(1, config.infer_iterations // 2))
            x, s = random_rows(points, sdf, n, gen)
            err = (
                (
                    decoder(x, z).clamp(-config.clamp, config.clamp)
                    - s.clamp(-config.clamp, config.clamp)
                )
                .abs()
                .mean(-1)
            )  # [S]
            loss = (err + config.infer_reg * (z**2).mean(-1)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        decoder.requires_grad_(True)
    return z.detach()


def mesh_of_code(decoder: DeepSDFDecoder, code: Tensor, *, resolution: int = 128):
    """The zero level set of one code as a ``trimesh.Trimesh`` (MISE, ``[-0.55, 0.55]^3``).

    Raises:
        MpgymError: a code of the wrong width, or no surface in the box.
    """
    from neural3d.mesh import extract_mesh

    code = check_codes(code, decoder.d_in - 3)
    if code.shape[0] != 1:
        raise MpgymError(f"mesh_of_code takes one code; got {code.shape[0]}.")
    return extract_mesh(code_field(decoder.eval(), code[0]), 0.55, resolution, normals="mesh")


@dataclass
class Reconstruction:
    """What :func:`reconstruct_heldout` returns."""

    split: str
    view: str
    codes: Tensor  # [S, latent_dim]
    chamfer: dict[str, float]
    """DeepSDF's Chamfer per shape (NaN where the code gave no surface)."""
    seconds: float = 0.0

    @property
    def mean(self) -> float:
        """Mean Chamfer over the shapes that gave a surface."""
        return float(np.nanmean(list(self.chamfer.values())))

    @property
    def median(self) -> float:
        """Median Chamfer over the shapes that gave a surface."""
        return float(np.nanmedian(list(self.chamfer.values())))

    @property
    def failed(self) -> int:
        """Shapes whose code gave no surface."""
        return int(np.isnan(list(self.chamfer.values())).sum())


def partial_observations(
    bank: ShapeBank,
    n: int,
    gen: torch.Generator,
    *,
    direction: tuple[float, float, float] = (0.0, -1.0, 0.0),
    eps: float = 0.01,
) -> tuple[Tensor, Tensor]:
    """SDF observations of the surface one camera sees: ``([S, n, 3], [S, n])``.

    The points visible to an orthographic camera looking along ``direction`` (default: down
    ``-y``, so it sees the ``+y`` side; :func:`visible_surface`) with value 0 and ``p +- eps n``
    with values ``+-eps`` (:func:`~neural3d.implicit.deepsdf.observations_from_points`), ``n``
    drawn per shape.

    Args:
        bank: shapes with ``surface`` and ``normals``.
        n: observations per shape.
        gen: generator of the draw.
        direction: viewing direction.
        eps: offset along the normals.
    """
    xs, ss = [], []
    for i in range(len(bank)):
        p, nrm = bank.surface[i].numpy(), bank.normals[i].numpy()
        seen = visible_surface(p, nrm, np.asarray(direction))
        x, s = observations_from_points(p[seen], nrm[seen], eps)
        j = torch.randint(0, len(x), (n,), generator=gen)
        xs.append(torch.from_numpy(x)[j])
        ss.append(torch.from_numpy(s)[j])
    return torch.stack(xs), torch.stack(ss)


def reconstruct_heldout(
    decoder: DeepSDFDecoder,
    collection: ShapeCollection,
    config: DeepSDFCollectionConfig = DeepSDFCollectionConfig(),
    *,
    split: str = "test",
    view: Literal["full", "partial"] = "full",
    limit: int | None = None,
    seed: int = 0,
    batch: int = 25,
) -> Reconstruction:
    """Reconstruct held-out shapes by latent optimisation and score them with Chamfer.

    ``view="full"``: observations are the shape's cached SDF samples (DeepSDF's test
    protocol). ``view="partial"``: only the ``+y`` side, as a camera looking down ``-y`` sees it,
    with ``+-0.01`` offsets along the normals (shape completion,
    :func:`partial_observations`). The mesh of each code (``mesh_resolution``) gives
    ``chamfer_points`` points; :func:`deepsdf_chamfer` against the cached surface points.

    Args:
        decoder: a trained decoder.
        collection: the collection.
        config: :class:`DeepSDFCollectionConfig`.
        split: ``val`` (selection) or ``test`` (reporting).
        view: ``full`` or ``partial``.
        limit: only the first shapes of the split.
        seed: seed of initial codes, samples and mesh sampling.
        batch: shapes optimised together.
    """
    import trimesh

    t0 = time.perf_counter()
    if view not in ("full", "partial"):
        raise MpgymError(f"view {view!r} is not known; accepted: full, partial.")
    bank = load_bank(collection, split, fields=("surface", "sdf"), limit=limit)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    codes, chamfer = [], {}
    for lo in range(0, len(bank), batch):
        part = ShapeBank(
            bank.names[lo : lo + batch],
            bank.surface[lo : lo + batch],
            bank.normals[lo : lo + batch],
            sdf_points=bank.sdf_points[lo : lo + batch],
            sdf=bank.sdf[lo : lo + batch],
        )
        if view == "full":
            x, s = part.sdf_points, part.sdf
        else:
            x, s = partial_observations(part, 3 * config.infer_samples, gen)
        z = infer_codes(decoder, x, s, config, gen=gen)
        codes.append(z)
        for i, name in enumerate(part.names):
            try:
                mesh = mesh_of_code(decoder, z[i], resolution=config.mesh_resolution)
            except MpgymError:
                chamfer[name] = float("nan")
                continue
            pts = trimesh.sample.sample_surface(mesh, config.chamfer_points, seed=rng)[0]
            chamfer[name] = deepsdf_chamfer(np.asarray(pts), part.surface[i].numpy())
    return Reconstruction(split, view, torch.cat(codes), chamfer, time.perf_counter() - t0)


def load_deepsdf_collection(path) -> tuple[DeepSDFDecoder, Tensor, DeepSDFCollectionConfig, dict]:
    """Load a :func:`train_deepsdf_collection` checkpoint: ``(decoder, codes, config, meta)``."""
    ck = load_checkpoint(path, expected_kind="deepsdf-collection")
    config = config_from_dict(DeepSDFCollectionConfig, ck.config)
    _check(config)
    state = dict(ck.state_dict)
    codes = check_codes(state.pop("codes", torch.zeros(0)), config.latent_dim)
    decoder = model_from_state(
        lambda: build_sdf_decoder(config),
        state,
        str(ck.path),
        counts={"depth": config.depth},
        sizes={"width": config.width, "latent_dim": config.latent_dim},
    )
    return decoder.eval(), codes, config, ck.meta
