"""A small motion classifier over feature windows: the feature space of the motion metrics.

It labels a window ``(W, D)`` of raw motion features (:mod:`bodies.motion.features`) with the
clip it comes from. Its penultimate activations (:meth:`MotionClassifier.embed`) are the
space in which :mod:`bodies.motion.metrics` measures the Fréchet distance and the diversity of
generated motion, as the action-recognition networks of HumanAct12 / UESTC do for
action-to-motion models (Guo et al. 2020, Petrovich et al. 2021, Tevet et al. 2023), and its
predictions give the recognition accuracy.

Network (``arch="cnn"``): the normalised window ``(N, W, D)`` goes through ``layers`` 1D
convolutions over time (``channels`` wide, ``kernel`` frames, ReLU), a global average over
time, a linear layer to ``embed_dim`` with ReLU (the embedding) and a linear head to the
labels. ``arch="gru"`` replaces the convolutions by a GRU whose outputs are averaged over time
instead. Training (:func:`train_classifier`): AdamW on cross-entropy with label smoothing,
Gaussian noise in normalised units and random temporal crops as augmentation, a fixed step
budget (no selection on held-out data), one CPU thread, deterministic given the seed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mpgym.errors import MpgymError

if TYPE_CHECKING:
    from bodies.motion.dataset import Normalizer, Windows

log = logging.getLogger(__name__)

KIND = "motion-classifier"
"""The ``kind`` of a saved classifier (:mod:`mpgym.checkpoint`)."""


@dataclass(frozen=True)
class MotionClassifierConfig:
    """Network and training options of :func:`train_classifier`.

    Defaults chosen by validation accuracy (trained on the ``"fit"`` windows, scored on
    ``"val"``, 5 seeds): 0.70 +- 0.06 against 0.61 for 3 layers of 3 frames with noise 0.1, 0.65
    for a GRU; dropout 0.5, 200 steps, a wider or narrower embedding or no augmentation did no
    better. The errors are the two get-up clips, whose later frames (rising to stand) look like
    the end of the roll clip.
    """

    arch: Literal["cnn", "gru"] = "cnn"
    """Temporal 1D CNN, or a GRU."""
    channels: int = 128
    """Width of the convolutions (hidden size of the GRU)."""
    layers: int = 2
    """Convolution (GRU) layers (2 x 5 frames: a 9-frame receptive field)."""
    kernel: int = 5
    """Frames per convolution kernel (odd)."""
    embed_dim: int = 32
    """Size of the embedding (the penultimate layer): the space of the Fréchet distance. Small,
    because the held-out split has only tens of windows per Gaussian fit."""
    dropout: float = 0.2
    """Dropout before the embedding layer and before the head."""
    label_smoothing: float = 0.1
    """Cross-entropy label smoothing."""
    noise_std: float = 0.3
    """Gaussian noise added to the normalised input during training."""
    min_crop: int = 8
    """Training windows are random temporal crops of ``min_crop..W`` frames (W: no cropping)."""
    steps: int = 400
    """Optimiser steps."""
    batch_size: int = 128
    """Windows per step."""
    lr: float = 2e-3
    """AdamW learning rate (cosine decay to 0)."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""


class _Net(nn.Module):
    """The classifier network on normalised windows ``(N, W, D)``."""

    def __init__(self, config: MotionClassifierConfig, in_dim: int, num_labels: int):
        super().__init__()
        self.arch = config.arch
        c = config.channels
        self.body: nn.Module
        if config.arch == "cnn":
            convs: list[nn.Module] = []
            for i in range(config.layers):
                convs += [
                    nn.Conv1d(
                        in_dim if i == 0 else c, c, config.kernel, padding=config.kernel // 2
                    ),
                    nn.ReLU(),
                ]
            self.body = nn.Sequential(*convs)
        else:
            self.body = nn.GRU(in_dim, c, num_layers=config.layers, batch_first=True)
        self.embed = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(c, config.embed_dim))
        self.head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(config.embed_dim, num_labels)
        )

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, W, D)`` normalised windows -> ``(N, embed_dim)`` embeddings (after the ReLU)."""
        if self.arch == "cnn":
            h = self.body(z.transpose(1, 2)).mean(-1)  # (N, C, W) -> (N, C)
        else:
            h = self.body(z)[0].mean(1)  # (N, W, C) -> (N, C)
        return F.relu(self.embed(h))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, W, D)`` normalised windows -> ``(N, labels)`` logits."""
        return self.head(self.features(z))


class MotionClassifier(nn.Module):
    """A trained motion classifier with its input :class:`~bodies.motion.dataset.Normalizer`.

    Call :meth:`embed`, :meth:`predict` and :meth:`accuracy` on raw feature windows; the
    normalisation is applied inside. Build one with :func:`train_classifier` or :meth:`load`.
    """

    def __init__(
        self,
        config: MotionClassifierConfig,
        label_names: Sequence[str],
        normalizer: Normalizer,
        in_dim: int,
    ):
        super().__init__()
        self.config = config
        self.label_names = tuple(label_names)
        self.normalizer = normalizer
        self.in_dim = int(in_dim)
        self.net = _Net(config, self.in_dim, len(self.label_names))

    # ---------------------------------------------------------------------------------- inputs
    def _prepare(self, x: Any) -> torch.Tensor:
        """Check raw windows ``(N, W, D)`` and return them normalised, float32."""
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        if t.ndim != 3 or t.shape[-1] != self.in_dim or t.shape[0] == 0 or t.shape[1] == 0:
            raise MpgymError(
                f"motion windows must have shape (N, W, {self.in_dim}) with N, W >= 1; "
                f"got {tuple(t.shape)}."
            )
        t = t.float()
        if not torch.isfinite(t).all():
            raise MpgymError("motion windows hold NaN or infinite values; only finite accepted.")
        return torch.as_tensor(self.normalizer.normalize(t)).float()

    def label_ids(self, labels: Sequence[str] | np.ndarray) -> np.ndarray:
        """Label names (or ids) -> ``(N,)`` int64 ids; unknown names raise :class:`MpgymError`."""
        arr = np.asarray(labels)
        if arr.dtype.kind in "iu":
            if arr.size and (arr.min() < 0 or arr.max() >= len(self.label_names)):
                raise MpgymError(
                    f"label ids must lie in 0..{len(self.label_names) - 1}; got {arr.tolist()}."
                )
            return arr.astype(np.int64).reshape(-1)
        index = {name: i for i, name in enumerate(self.label_names)}
        unknown = sorted({str(a) for a in arr.reshape(-1)} - set(index))
        if unknown:
            raise MpgymError(
                f"unknown motion labels {unknown}; accepted: {', '.join(self.label_names)}."
            )
        return np.array([index[str(a)] for a in arr.reshape(-1)], np.int64)

    # ---------------------------------------------------------------------------------- outputs
    @torch.no_grad()
    def _batched(self, x: Any, fn, batch: int) -> torch.Tensor:
        self.eval()
        z = self._prepare(x)
        return torch.cat([fn(z[i : i + batch]) for i in range(0, len(z), batch)])

    def logits(self, x: Any, *, batch: int = 1024) -> np.ndarray:
        """Class logits of raw windows ``(N, W, D)`` -> ``(N, labels)`` float32."""
        return self._batched(x, self.net, batch).numpy()

    def embed(self, x: Any, *, batch: int = 1024) -> np.ndarray:
        """Penultimate features of raw windows ``(N, W, D)`` -> ``(N, embed_dim)`` float32."""
        return self._batched(x, self.net.features, batch).numpy()

    def predict(self, x: Any, *, batch: int = 1024) -> np.ndarray:
        """Most likely label ids of raw windows ``(N, W, D)`` -> ``(N,)`` int64."""
        return self.logits(x, batch=batch).argmax(-1).astype(np.int64)

    def accuracy(self, windows: Windows) -> float:
        """Fraction of ``windows`` (a :class:`~bodies.motion.dataset.Windows`) labelled right.

        The windows' label ids are mapped by name, so windows built with another label order
        are scored correctly.
        """
        names = np.asarray(windows.label_names)[np.asarray(windows.labels)]
        return float((self.predict(windows.x) == self.label_ids(names)).mean())

    # ------------------------------------------------------------------------------- save / load
    def save(self, path: str | Path) -> Path:
        """Write weights, normaliser, config and label names to one ``.safetensors`` file.

        Atomic (:func:`mpgym.checkpoint.save_checkpoint`); nothing is pickled.
        """
        from mpgym.checkpoint import save_checkpoint

        state = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        for k, v in self.normalizer.state_dict().items():
            state[f"normalizer.{k}"] = torch.as_tensor(np.asarray(v))
        meta = {"label_names": list(self.label_names), "in_dim": self.in_dim}
        return save_checkpoint(path, state, kind=KIND, config=self.config, meta=meta)

    @classmethod
    def load(cls, path: str | Path) -> MotionClassifier:
        """Read a file written by :meth:`save` (safetensors only, no pickle).

        Raises:
            MpgymError: not a motion-classifier checkpoint, unknown or missing config keys,
                or tensors whose names, shapes or dtypes do not match the config.
        """
        from bodies.motion.dataset import Normalizer
        from mpgym.checkpoint import load_checkpoint

        ck = load_checkpoint(path, expected_kind=KIND)
        names = {f.name for f in fields(MotionClassifierConfig)}
        if set(ck.config) != names:
            raise MpgymError(
                f"{path}: classifier config keys {sorted(ck.config)} differ from the accepted "
                f"{sorted(names)}."
            )
        try:
            config = MotionClassifierConfig(**ck.config)
            label_names = [str(s) for s in ck.meta["label_names"]]
            in_dim = int(ck.meta["in_dim"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MpgymError(f"{path}: corrupt classifier metadata ({exc}).") from None
        norm_state = {
            k.removeprefix("normalizer."): v.numpy()
            for k, v in ck.state_dict.items()
            if k.startswith("normalizer.")
        }
        for k, v in norm_state.items():
            if v.shape[-1:] != (in_dim,):
                raise MpgymError(
                    f"{path}: normaliser array {k!r} has shape {v.shape}; expected (..., {in_dim})."
                )
        model = cls(config, label_names, Normalizer.from_state_dict(norm_state), in_dim)
        expected = model.net.state_dict()
        got = {k.removeprefix("net."): v for k, v in ck.state_dict.items() if k.startswith("net.")}
        if set(got) != set(expected):
            raise MpgymError(
                f"{path}: classifier tensors {sorted(set(got) ^ set(expected))} are missing or "
                "unexpected for its config."
            )
        for k, v in expected.items():
            if got[k].shape != v.shape or got[k].dtype != v.dtype:
                raise MpgymError(
                    f"{path}: tensor 'net.{k}' is {tuple(got[k].shape)} {got[k].dtype}; the config "
                    f"needs {tuple(v.shape)} {v.dtype}."
                )
        model.net.load_state_dict(got)
        model.eval()
        return model


# ---------------------------------------------------------------------------------- training
def _check_config(config: MotionClassifierConfig, window: int) -> None:
    for name in ("channels", "layers", "kernel", "embed_dim", "steps", "batch_size", "min_crop"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise MpgymError(
                f"MotionClassifierConfig.{name} must be an integer >= 1; got {value!r}."
            )
    if config.arch not in ("cnn", "gru"):
        raise MpgymError(
            f"MotionClassifierConfig.arch must be 'cnn' or 'gru'; got {config.arch!r}."
        )
    if config.kernel % 2 == 0:
        raise MpgymError(f"MotionClassifierConfig.kernel must be odd; got {config.kernel}.")
    if not 0 <= config.dropout < 1 or not 0 <= config.label_smoothing < 1:
        raise MpgymError("MotionClassifierConfig.dropout and label_smoothing must lie in [0, 1).")
    for name in ("noise_std", "lr", "weight_decay"):
        value = getattr(config, name)
        if not (math.isfinite(value) and value >= 0):
            raise MpgymError(f"MotionClassifierConfig.{name} must be finite and >= 0; got {value}.")
    if config.min_crop > window:
        raise MpgymError(
            f"MotionClassifierConfig.min_crop ({config.min_crop}) exceeds the window ({window})."
        )


def _random_crops(z: torch.Tensor, min_len: int, g: torch.Generator) -> torch.Tensor:
    """One random length in ``min_len..W`` per batch, a random start per window."""
    n, w, _ = z.shape
    length = int(torch.randint(min_len, w + 1, (), generator=g))
    start = torch.randint(0, w - length + 1, (n, 1), generator=g)
    return z[torch.arange(n)[:, None], start + torch.arange(length)]


def train_classifier(
    windows_train: Windows,
    *,
    config: MotionClassifierConfig = MotionClassifierConfig(),
    seed: int = 0,
    normalizer: Normalizer | None = None,
) -> MotionClassifier:
    """Train a :class:`MotionClassifier` on labelled windows (all of them: no selection).

    Runs on one CPU thread (restored afterwards) and in a forked global RNG, so the result
    depends only on the data, the config and ``seed``.

    Args:
        windows_train: a :class:`~bodies.motion.dataset.Windows` (``x (N, W, D)`` raw features,
            ``labels (N,)``, ``label_names``), mirrored copies included when wanted.
        config: network and training options.
        seed: seeds the initialisation, the minibatches, the noise, the crops and dropout.
        normalizer: the input normaliser; ``None`` fits one on ``windows_train.x``.

    Returns:
        The classifier in eval mode.

    Raises:
        MpgymError: empty or non-finite windows, or an invalid config.
    """
    x = np.asarray(windows_train.x, np.float32)
    y = np.asarray(windows_train.labels, np.int64)
    if x.ndim != 3 or len(x) == 0 or len(y) != len(x):
        raise MpgymError(
            f"training windows must be (N, W, D) with N >= 1 labels; got x {x.shape}, "
            f"labels {y.shape}."
        )
    _check_config(config, x.shape[1])
    if normalizer is None:
        from bodies.motion.dataset import Normalizer

        normalizer = Normalizer.fit(x.reshape(-1, x.shape[-1]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # initialisation and dropout
            model = MotionClassifier(config, windows_train.label_names, normalizer, x.shape[-1])
            _fit(model, model._prepare(x), torch.as_tensor(y), config, seed)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return model


def _fit(
    model: MotionClassifier,
    z: torch.Tensor,
    y: torch.Tensor,
    config: MotionClassifierConfig,
    seed: int,
) -> None:
    """The training loop on normalised windows ``z (N, W, D)`` and label ids ``y (N,)``."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    model.train()
    for step in range(config.steps):
        idx = torch.randint(0, len(z), (config.batch_size,), generator=g)
        zb = z[idx]
        if config.noise_std > 0:
            zb = zb + config.noise_std * torch.randn(zb.shape, generator=g)
        if config.min_crop < zb.shape[1]:
            zb = _random_crops(zb, config.min_crop, g)
        loss = F.cross_entropy(model.net(zb), y[idx], label_smoothing=config.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 100 == 0:
            log.debug("classifier step %d loss %.4f", step + 1, float(loss.detach()))
