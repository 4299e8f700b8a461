"""GenMM: motion synthesis by generative motion matching, with no training (Li et al. 2023).

GenMM "mines" new motions from a few example sequences. A motion is a sequence of feature
frames ``(T, D)``; a *patch* is ``patch_size`` consecutive frames. Synthesis runs coarse to fine
over a pyramid of the examples, each stage resampled in time:

1. **Pyramid.** The longest example's coarsest stage spans ``coarse_ratio`` patch lengths
   (repo default ``'5x_patchsize'``); each finer stage is ``1 / pyr_factor`` longer (0.75), up
   to the full length (:func:`pyramid_lengths`). Every example and the output get the same
   chain of time scales (:func:`plan_levels`); examples are resampled linearly.
2. **Initial guess.** The coarsest stages of the examples, concatenated and stretched linearly
   to the output's coarsest length, plus ``noise_sigma`` times Gaussian noise, wrapped by
   ``fmod(., 1)``: with the default sigma of 10 it is, in effect, uniform noise in (-1, 1).
3. **Generative motion matching** (``num_steps`` times per stage). *Match*: every output patch
   picks the example patch minimising the normalised distance of the bidirectional
   similarity, ``d(x, y) / (alpha + min_x' d(x', y))`` with ``d`` the mean squared difference
   over the patch's numbers; an example patch that no output patch is yet close to has a small
   denominator and becomes cheap, so small ``alpha`` pushes the output to use *all* example
   patches (completeness), large ``alpha`` is a plain nearest neighbour (coherence only).
   *Blend*: each output frame becomes the average of the frames that the overlapping matched
   patches put there (:func:`blend`).
4. **Upsample** the output linearly to the next stage's length and repeat 3.

Defaults are those of the authors' repository (``github.com/wyysf-98/GenMM``,
``configs/default.yaml``): patch 11 (also the paper), alpha 0.01, 3 steps per stage, noise
sigma 10, coarse ratio 5 patches, pyramid factor 0.75. What this project adds: synthesis runs in
the :class:`bodies.motion.dataset.Normalizer`'s unit-variance space, scaled per feature group
(:func:`feature_weights`) so that the root (height, planar velocity, yaw rate), the 6D
rotations and the joint positions each weigh the same in the patch distance, although they hold
4, 144 and 72 numbers; contact labels are made binary (threshold 0.5) after synthesis.

The nearest-neighbour search is exact and vectorised: patch dot products are sums along the
diagonals of the frame Gram matrix (:func:`patch_sq_distances`), so one match over all example
patches costs one ``(T, D) x (D, F)`` matmul.

References:
    W. Li, X. Chen, P. Li, O. Sorkine-Hornung, B. Chen. Example-based Motion Synthesis via
    Generative Motion Matching. ACM TOG 42(4), 2023 (SIGGRAPH). doi:10.1145/3592395
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bodies.motion import features
from bodies.motion.dataset import WINDOW, Normalizer, Split, clip_features
from mpgym.configs import check_ranges, check_types
from mpgym.errors import MpgymError

if TYPE_CHECKING:
    import torch

    from mpgym import RunDir

log = logging.getLogger(__name__)

KIND = "genmm"
"""The ``kind`` of a GenMM checkpoint."""
_CHUNK_NUMBERS = 2**23
"""Largest distance block (numbers) held at once by :func:`nearest_patches` (32 MiB float32)."""


@dataclass(frozen=True)
class GenMMConfig:
    """Options of GenMM; defaults are the authors' (repo ``configs/default.yaml``, paper)."""

    patch_size: int = 11
    """Frames per patch (paper and repo: 11); odd, and no example may be shorter."""
    alpha: float = 0.01
    """Completeness trade-off of the normalised distance (repo: 0.01); large = plain NN."""
    num_steps: int = 3
    """Match-and-blend iterations per pyramid stage (repo: 3)."""
    coarse_ratio: float = 5.0
    """Coarsest stage of the longest example spans this many patches (repo: '5x_patchsize')."""
    pyr_factor: float = 0.75
    """Length ratio of a stage to the next finer one (repo: 0.75)."""
    noise_sigma: float = 10.0
    """Std of the noise added to the initial guess before ``fmod(., 1)`` (repo: 10)."""
    group_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 0.25)
    """Total weight of the root, 6D rotations, positions, contacts in the distance (ours)."""
    mirror: bool = True
    """Use the left-right mirrored clips as extra examples (as the other models' training)."""
    window_context: int = 60
    """Frames synthesised per window by ``generate_windows`` (a random crop is returned)."""


PRESETS: dict[str, GenMMConfig] = {
    "default": GenMMConfig(),
    "ganimator": GenMMConfig(coarse_ratio=3.0),  # the repo's configs/ganimator.yaml
    "tiny": GenMMConfig(num_steps=1, window_context=24),
}
"""Named configs: ``default`` (the authors' settings), ``ganimator`` (their GANimator-format
settings: coarsest stage 3 patches), ``tiny`` (one step per stage, for tests and demos)."""


def check_config(config: GenMMConfig) -> GenMMConfig:
    """Refuse a config GenMM cannot run; returns it.

    Raises:
        MpgymError: a field of the wrong type or out of range, naming its flag.
    """
    check_types(config)
    check_ranges(
        config,
        ints={"patch_size": (1, 1001), "num_steps": (1, 100), "window_context": (1, 100_000)},
        positive=("alpha", "coarse_ratio"),
    )
    if config.patch_size % 2 == 0:
        raise MpgymError(
            f"--patch-size must be odd (GenMM centres patches); got {config.patch_size}."
        )
    if not 0.0 < config.pyr_factor < 1.0:
        raise MpgymError(f"--pyr-factor must be in (0, 1); got {config.pyr_factor}.")
    if not (np.isfinite(config.noise_sigma) and config.noise_sigma >= 0):
        raise MpgymError(f"--noise-sigma must be a finite number >= 0; got {config.noise_sigma}.")
    w = np.asarray(config.group_weights, dtype=float)
    if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise MpgymError(
            "--group-weights must be 4 finite numbers >= 0, not all 0 (root, rot6d, "
            f"positions, contacts); got {config.group_weights}."
        )
    if config.window_context < max(WINDOW, config.patch_size):
        raise MpgymError(
            f"--window-context must be at least the window ({WINDOW} frames) "
            f"and the patch size; got {config.window_context}."
        )
    return config


# ----------------------------------------------------------------------------- pure functions
def pyramid_lengths(final_len: int, coarse_ratio: float, pyr_factor: float) -> list[int]:
    """Stage lengths from coarse to fine: ``round(L r)``, then ``/ pyr_factor`` up to ``L``.

    A stage that rounds to its predecessor's length grows by one frame; the last is ``L``
    (the repo's rule). Example: ``pyramid_lengths(100, 0.5, 0.75) == [50, 67, 89, 100]``;
    with ``coarse_ratio >= 1`` there is one stage, ``[L]``.
    """
    lengths = [int(np.round(final_len * coarse_ratio))]
    while lengths[-1] < final_len:
        lengths.append(int(np.round(lengths[-1] / pyr_factor)))
        if lengths[-1] == lengths[-2]:
            lengths[-1] += 1
    lengths[-1] = final_len
    return lengths


def plan_levels(
    example_lengths: Sequence[int], length: int, config: GenMMConfig
) -> tuple[list[list[int]], list[int]]:
    """The pyramid: each example's and the output's length per stage, coarse to fine.

    The ratio ``coarse_ratio * patch_size / max(example_lengths)`` is applied to every sequence
    (:func:`pyramid_lengths`); all chains keep their last ``S`` stages, ``S`` the shortest chain
    (the repo trims the examples' chains the same way). Stages whose output is shorter than a
    patch, or where no example is, are dropped; the finest stage always stays.

    Returns:
        ``(examples, output)``: ``examples[s][i]`` the length of example ``i`` at stage ``s``,
        ``output[s]`` the output's.
    """
    p = config.patch_size
    ratio = config.coarse_ratio * p / max(example_lengths)
    chains = [pyramid_lengths(n, ratio, config.pyr_factor) for n in example_lengths]
    out = pyramid_lengths(length, ratio, config.pyr_factor)
    stages = min(len(c) for c in [*chains, out])
    chains, out = [c[-stages:] for c in chains], out[-stages:]
    keep = [
        s
        for s in range(stages)
        if s == stages - 1 or (out[s] >= p and max(c[s] for c in chains) >= p)
    ]
    return [[c[s] for c in chains] for s in keep], [out[s] for s in keep]


def resample(x: torch.Tensor, length: int, *, align_corners: bool = False) -> torch.Tensor:
    """Linear resampling in time (``F.interpolate``).

    Args:
        x: ``(..., T, D)`` frames.
        length: frames wanted.
        align_corners: keep the first and last frames in place (the repo's initial guess).

    Returns:
        ``(..., length, D)``.
    """
    import torch.nn.functional as nnf

    if x.shape[-2] == length:
        return x.clone()
    lead = x.shape[:-2]
    flat = x.reshape(-1, *x.shape[-2:]).transpose(1, 2)  # [B, D, T]
    out = nnf.interpolate(flat, size=length, mode="linear", align_corners=align_corners)
    return out.transpose(1, 2).reshape(*lead, length, x.shape[-1])


@dataclass
class PatchBank:
    """All patches of a set of example sequences, stored as their frames.

    Attributes:
        frames: ``(F, D)`` the sequences concatenated in time.
        starts: ``(N,) int64`` first frame (in ``frames``) of each patch; no patch crosses from
            one sequence into the next.
        patch_size: frames per patch ``p``.
    """

    frames: torch.Tensor
    starts: torch.Tensor
    patch_size: int

    @classmethod
    def build(cls, sequences: Sequence[torch.Tensor], patch_size: int) -> PatchBank:
        """Bank of every ``patch_size``-frame patch (stride 1) of ``sequences`` ``[(T_i, D)]``.

        Sequences shorter than a patch contribute no patch.
        """
        import torch

        starts, offset = [], 0
        for seq in sequences:
            n = seq.shape[0] - patch_size + 1
            if n > 0:
                starts.append(torch.arange(offset, offset + n))
            offset += seq.shape[0]
        if not starts:
            raise MpgymError(f"no example has a patch of {patch_size} frames at this stage.")
        return cls(torch.cat(list(sequences)), torch.cat(starts), patch_size)


def _window_sums(v: torch.Tensor, p: int) -> torch.Tensor:
    """``(..., T) -> (..., T - p + 1)``: sums over every ``p`` consecutive entries."""
    import torch.nn.functional as nnf

    c = nnf.pad(v.cumsum(-1), (1, 0))
    return c[..., p:] - c[..., :-p]


def patch_sq_distances(x: torch.Tensor, bank: PatchBank) -> torch.Tensor:
    """Mean squared difference between every patch of ``x`` and every patch of ``bank``.

    ``d(i, j) = 1/(p D) sum_k |x[i+k] - Y[s_j+k]|^2`` (the repo divides by the patch's
    numbers so that ``alpha`` does not depend on the patch size). The cross term is the sum of
    ``p`` diagonals of the frame Gram matrix ``x Y^T``. Example: ``x`` one patch of zeros,
    ``bank`` one patch of ones -> ``[[[1.0]]]``.

    Args:
        x: ``(B, T, D)`` sequences, ``T >= p``.
        bank: the example patches (``N`` of them, ``F`` frames).

    Returns:
        ``(B, T - p + 1, N)`` distances, clamped at 0.
    """
    p = bank.patch_size
    nx, nf = x.shape[1] - p + 1, bank.frames.shape[0] - p + 1
    gram = x @ bank.frames.T  # [B, T, F]
    cross = gram[:, :nx, :nf].clone()
    for k in range(1, p):
        cross += gram[:, k : k + nx, k : k + nf]
    cross = cross[:, :, bank.starts]  # [B, Nx, N]
    x_sq = _window_sums((x * x).sum(-1), p)  # [B, Nx]
    y_sq = _window_sums((bank.frames * bank.frames).sum(-1), p)[bank.starts]  # [N]
    d = x_sq[:, :, None] + y_sq[None, None, :] - 2.0 * cross
    return d.clamp_min_(0.0) / (p * x.shape[-1])


def nearest_patches(x: torch.Tensor, bank: PatchBank, alpha: float) -> torch.Tensor:
    """Match step: each patch of ``x`` picks the bank patch of least normalised distance.

    ``score(i, j) = d(i, j) / (alpha + min_i' d(i', j))``, the minimum taken over the patches
    of the same sequence ``x[b]`` (bidirectional similarity; Li et al. 2023, Eq. 2). Samples are
    processed in chunks that keep the distance block under 32 MiB.

    Args:
        x: ``(B, T, D)``.
        bank: example patches.
        alpha: > 0; small favours completeness.

    Returns:
        ``(B, T - p + 1) int64`` indices into ``bank.starts``.
    """
    import torch

    nx = x.shape[1] - bank.patch_size + 1
    per_sample = max(nx * bank.frames.shape[0], nx * len(bank.starts))
    chunk = max(1, _CHUNK_NUMBERS // per_sample)
    out = []
    for xb in torch.split(x, chunk):
        d = patch_sq_distances(xb, bank)
        d /= alpha + d.amin(dim=1, keepdim=True)
        out.append(d.argmin(dim=-1))
    return torch.cat(out)


def blend(bank: PatchBank, nn: torch.Tensor, length: int) -> torch.Tensor:
    """Blend step: average, per output frame, the frames that the matched patches put there.

    ``out[t] = mean over i with i <= t < i + p of Y[s_nn(i) + t - i]``. Example: ``p = 3``,
    ``length = 4``, matched patches ``(a0, a1, a2)`` then ``(b0, b1, b2)`` give
    ``(a0, (a1 + b0) / 2, (a2 + b1) / 2, b2)``.

    Args:
        bank: example patches.
        nn: ``(B, Nx) int64`` matched patch of each output patch, ``Nx = length - p + 1``.
        length: output frames ``T``.

    Returns:
        ``(B, T, D)``.
    """
    import torch

    p, frames = bank.patch_size, bank.frames
    b, nx = nn.shape
    src = bank.starts[nn]  # [B, Nx] first example frame of each matched patch
    out = torch.zeros(b, length, frames.shape[1], dtype=frames.dtype, device=frames.device)
    count = torch.zeros(length, 1, dtype=frames.dtype, device=frames.device)
    for k in range(p):  # the k-th frame of every matched patch votes for output frame i + k
        out[:, k : k + nx] += frames[src + k]
        count[k : k + nx] += 1
    return out / count


def initial_guess(
    coarsest: Sequence[torch.Tensor],
    n: int,
    length: int,
    noise_sigma: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """The repo's starting point: examples' coarsest stages stretched to ``length``, plus noise.

    ``fmod(resample(concat(coarsest)) + noise_sigma * N(0, 1), 1)`` per sample (without noise
    the examples are kept as they are).

    Returns:
        ``(n, length, D)``.
    """
    import torch

    base = resample(torch.cat(list(coarsest)), length, align_corners=True)
    x = base.expand(n, -1, -1).clone()
    if noise_sigma > 0:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = torch.fmod(x + noise_sigma * noise, 1.0)
    return x


def synthesize(
    examples: Sequence[torch.Tensor],
    n: int,
    length: int,
    config: GenMMConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """GenMM's coarse-to-fine generative motion matching (steps 1-4 of the module docstring).

    Args:
        examples: ``[(T_i, D)]`` example sequences (any space; GenMM works in the one given),
            each ``T_i >= patch_size``.
        n: sequences to synthesise.
        length: frames per sequence, ``>= patch_size``.
        config: patch size, alpha, steps, pyramid, noise.
        generator: the only source of randomness.

    Returns:
        ``(n, length, D)`` in the examples' dtype.
    """
    ex_lengths, out_lengths = plan_levels([e.shape[0] for e in examples], length, config)
    stages = [[resample(e, m) for e, m in zip(examples, ls, strict=True)] for ls in ex_lengths]
    x = initial_guess(stages[0], n, out_lengths[0], config.noise_sigma, generator)
    for seqs, lx in zip(stages, out_lengths, strict=True):
        bank = PatchBank.build(seqs, config.patch_size)
        x = resample(x, lx)  # a copy at the coarsest stage
        for _ in range(config.num_steps):
            x = blend(bank, nearest_patches(x, bank, config.alpha), lx)
    return x


def feature_weights(group_weights: Sequence[float]) -> np.ndarray:
    """Per-number weights ``(D,)`` giving each feature group its share of the distance.

    Group ``g`` (root = height + planar velocity + yaw rate, 6D rotations, positions, contacts)
    with ``n_g`` numbers gets ``w_g / n_g`` per number, scaled so the weights sum to ``D``.
    Example: ``(1, 1, 1, 0)`` gives the 4 root numbers 18.67 each, the 144 rotation numbers
    0.52 and the 72 positions 1.04.
    """
    groups = [
        slice(features.ROOT_HEIGHT.start, features.YAW_RATE.stop),
        features.ROT6D,
        features.POSITIONS,
        features.CONTACTS,
    ]
    w = np.zeros(features.D)
    for sl, g in zip(groups, group_weights, strict=True):
        w[sl] = g / (sl.stop - sl.start)
    return w * (features.D / w.sum())


# ----------------------------------------------------------------------------- the model
class GenMM:
    """GenMM over labelled example clips: ``generate`` / ``generate_windows`` / ``save``.

    The "weights" are the example feature sequences and the normaliser; nothing is trained.

    Args:
        config: GenMM options.
        examples: label -> raw feature sequences ``[(T_i, D) float]``, each at least
            ``patch_size`` frames.
        normalizer: a fitted :class:`bodies.motion.dataset.Normalizer`.

    Raises:
        MpgymError: no labels, a label without sequences, a sequence of the wrong shape, with
            NaN, or shorter than a patch.
    """

    def __init__(
        self, config: GenMMConfig, examples: Mapping[str, Sequence[np.ndarray]], normalizer: Any
    ):
        import torch

        self.config = check_config(config)
        self.normalizer = normalizer
        if not examples:
            raise MpgymError("GenMM needs at least one label with example sequences.")
        self.label_names: tuple[str, ...] = tuple(examples)
        self.examples: dict[str, list[np.ndarray]] = {}
        for label, seqs in examples.items():
            if len(seqs) == 0:
                raise MpgymError(f"label {label!r} has no example sequence.")
            self.examples[label] = [self._check_example(label, s) for s in seqs]
        self._weights = torch.as_tensor(
            np.sqrt(feature_weights(config.group_weights)), dtype=torch.float32
        )

    def _check_example(self, label: str, seq: np.ndarray) -> np.ndarray:
        seq = np.asarray(seq, dtype=np.float32)
        if seq.ndim != 2 or seq.shape[1] != features.D:
            raise MpgymError(
                f"example of {label!r} has shape {seq.shape}; expected (T, {features.D})."
            )
        if not np.isfinite(seq).all():
            raise MpgymError(f"example of {label!r} contains NaN or infinity.")
        if seq.shape[0] < self.config.patch_size:
            raise MpgymError(
                f"example of {label!r} has {seq.shape[0]} frames, fewer than the patch size "
                f"{self.config.patch_size}; GenMM accepts examples of at least a patch."
            )
        return seq

    # -- sampling ----------------------------------------------------------------------------
    def _group(self, label: str | None) -> list[torch.Tensor]:
        """The examples of ``label`` (None: all), normalised and weighted, as tensors."""
        import torch

        names = self.label_names if label is None else (label,)
        seqs = [s for name in names for s in self.examples[name]]
        return [
            torch.as_tensor(self.normalizer.normalize(s), dtype=torch.float32) * self._weights
            for s in seqs
        ]

    def _check_labels(self, labels: Sequence[str] | None, n: int) -> Sequence[str | None]:
        if labels is None:
            return [None] * n
        labels = [labels] if isinstance(labels, str) else list(labels)
        unknown = sorted({lab for lab in labels if lab not in self.examples})
        if unknown:
            raise MpgymError(
                f"unknown label(s) {', '.join(map(repr, unknown))}; accepted: "
                f"{', '.join(self.label_names)}."
            )
        if len(labels) == 1:
            return labels * n
        if len(labels) != n:
            raise MpgymError(
                f"got {len(labels)} labels for {n} samples; give one label, or one per sample."
            )
        return labels

    def generate_frames(
        self,
        n: int,
        frames: int,
        *,
        labels: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """``n`` motions of ``frames`` frames; see :meth:`generate`."""
        import torch

        for name, v in (("n", n), ("frames", frames)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise MpgymError(f"{name} must be a positive whole number; got {v!r}.")
        if frames < self.config.patch_size:
            raise MpgymError(
                f"GenMM synthesises at least one patch ({self.config.patch_size} "
                f"frames); asked for {frames}."
            )
        per_sample = self._check_labels(labels, n)
        g = generator if generator is not None else _fresh_generator()
        out = np.empty((n, frames, features.D), dtype=np.float32)
        for label in dict.fromkeys(per_sample):  # first-appearance order: deterministic
            idx = [i for i, lab in enumerate(per_sample) if lab == label]
            with torch.no_grad():
                z = synthesize(self._group(label), len(idx), frames, self.config, g)
            out[idx] = self.normalizer.denormalize((z / self._weights).numpy())
        c = out[..., features.CONTACTS]
        out[..., features.CONTACTS] = (c >= 0.5).astype(np.float32)
        return out

    def generate(
        self,
        n: int,
        seconds: float,
        *,
        labels: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """Synthesise ``n`` motions of ``seconds`` each.

        Args:
            n: number of motions.
            seconds: duration; ``T = round(seconds * FPS)`` frames, at least a patch.
            labels: one label, or one per motion, each synthesised from that label's examples;
                None: from all examples together.
            generator: source of randomness (None: fresh OS entropy).

        Returns:
            ``(n, T, D) float32`` raw features at :data:`bodies.motion.features.FPS`, contacts
            0/1.

        Raises:
            MpgymError: unknown labels (naming the accepted ones), a wrong number of labels,
                too short a duration.
        """
        if not np.isfinite(seconds) or seconds <= 0:
            raise MpgymError(f"seconds must be a positive number; got {seconds!r}.")
        return self.generate_frames(
            n, int(round(seconds * features.FPS)), labels=labels, generator=generator
        )

    def generate_windows(
        self, labels: Sequence[str], *, generator: torch.Generator | None = None
    ) -> np.ndarray:
        """One window per label: a random ``WINDOW``-frame crop of ``window_context`` frames.

        Returns:
            ``(len(labels), WINDOW, D) float32`` raw features.
        """
        import torch

        labels = [labels] if isinstance(labels, str) else list(labels)
        if not labels:
            raise MpgymError("generate_windows needs at least one label.")
        g = generator if generator is not None else _fresh_generator()
        ctx, w = self.config.window_context, WINDOW
        full = self.generate_frames(len(labels), ctx, labels=labels, generator=g)
        start = torch.randint(0, ctx - w + 1, (len(labels),), generator=g).numpy()
        return np.stack([m[s : s + w] for m, s in zip(full, start, strict=True)])

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Example frames, lengths and labels, and the normaliser's arrays."""
        import torch

        seqs = [(i, s) for i, lab in enumerate(self.label_names) for s in self.examples[lab]]
        state = {
            "examples": torch.as_tensor(np.concatenate([s for _, s in seqs])),
            "example_lengths": torch.tensor([len(s) for _, s in seqs], dtype=torch.int64),
            "example_labels": torch.tensor([i for i, _ in seqs], dtype=torch.int64),
        }
        for k, v in self.normalizer.state_dict().items():
            state[f"normalizer.{k}"] = torch.as_tensor(np.asarray(v))
        return state

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (``.safetensors``, atomically) with the config and label names."""
        from mpgym.checkpoint import save_checkpoint

        return save_checkpoint(
            path,
            self.state_dict(),
            kind=KIND,
            config=self.config,
            meta={"label_names": list(self.label_names)},
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> GenMM:
        """Read a checkpoint written by :meth:`save` (safetensors only, checked before use).

        Raises:
            MpgymError: not a GenMM checkpoint, or its config, tensor names, shapes or dtypes
                do not fit together.
        """
        from mpgym.checkpoint import load_checkpoint
        from mpgym.configs import config_from_dict

        ck = load_checkpoint(path, expected_kind=KIND)
        where = str(ck.path)
        try:
            config = check_config(config_from_dict(GenMMConfig, ck.config))
        except MpgymError as exc:
            raise MpgymError(f"{where}: {exc}") from None
        names = ck.meta.get("label_names")
        if (
            not isinstance(names, list)
            or not names
            or len(set(names)) != len(names)
            or not all(isinstance(s, str) for s in names)
        ):
            raise MpgymError(f"{where}: its metadata must list distinct label names.")
        examples, normalizer = _unpack_state(where, ck.state_dict, names)
        return cls(config, examples, normalizer)


def _unpack_state(where: str, state: dict[str, Any], names: list[str]) -> tuple[dict, Any]:
    """Check a checkpoint's tensors and rebuild the examples and the normaliser."""
    import torch

    fixed = {"examples", "example_lengths", "example_labels"}
    norm_keys = {k for k in state if k.startswith("normalizer.")}
    extra = sorted(set(state) - fixed - norm_keys)
    if extra or not fixed <= set(state) or not norm_keys:
        raise MpgymError(
            f"{where}: expected tensors {', '.join(sorted(fixed))} and "
            f"normalizer.*; got {', '.join(sorted(state))}."
        )
    ex, lengths, labels = state["examples"], state["example_lengths"], state["example_labels"]
    if ex.dtype != torch.float32 or ex.ndim != 2 or ex.shape[1] != features.D:
        raise MpgymError(
            f"{where}: examples must be (frames, {features.D}) float32; got "
            f"{tuple(ex.shape)} {ex.dtype}."
        )
    for name, t in (("example_lengths", lengths), ("example_labels", labels)):
        if t.dtype != torch.int64 or t.ndim != 1 or len(t) != len(lengths):
            raise MpgymError(
                f"{where}: {name} must be one int64 per example; got {tuple(t.shape)} {t.dtype}."
            )
    if (lengths < 1).any() or int(lengths.sum()) != ex.shape[0]:
        raise MpgymError(
            f"{where}: example_lengths must be positive and add up to the "
            f"{ex.shape[0]} example frames."
        )
    if ((labels < 0) | (labels >= len(names))).any():
        raise MpgymError(f"{where}: example_labels must index the {len(names)} label names.")
    examples: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for seq, lab in zip(torch.split(ex, lengths.tolist()), labels.tolist(), strict=True):
        examples[names[lab]].append(seq.numpy())
    for k in norm_keys:
        t = state[k]
        if t.dtype != torch.float32 or tuple(t.shape) != (features.D,) or not t.isfinite().all():
            raise MpgymError(
                f"{where}: {k} must be ({features.D},) finite float32; got "
                f"{tuple(t.shape)} {t.dtype}."
            )
    try:
        normalizer = Normalizer.from_state_dict(
            {k.removeprefix("normalizer."): state[k].numpy() for k in norm_keys}
        )
    except MpgymError as exc:
        raise MpgymError(f"{where}: {exc}") from None
    return examples, normalizer


def _fresh_generator() -> torch.Generator:
    import torch

    seed = int(np.random.default_rng().integers(2**62))
    return torch.Generator().manual_seed(seed)


def fit_genmm(
    config: GenMMConfig = GenMMConfig(),
    *,
    train: Any = None,
    split: Split = "train",
    run: RunDir | None = None,
    seed: int = 0,
) -> GenMM:
    """Build GenMM from the clips of ``split`` (no training: the examples are the model).

    Args:
        config: GenMM options (``config.mirror`` adds the mirrored clips).
        train: ignored (GenMM has no training); accepted for the generators' common signature.
        split: which block of each clip is the example (``"train"``, or ``"fit"`` for tuning).
        run: if given, ``config.json`` and ``checkpoint.safetensors`` are written there.
        seed: unused (fitting is deterministic); accepted for the common signature.

    Returns:
        The model; its normaliser is fitted on the examples' frames.
    """
    check_config(config)
    if train is not None:
        log.info("GenMM has no training; the train options are ignored.")
    examples = clip_features(split, mirror=config.mirror)
    frames = np.concatenate([s for seqs in examples.values() for s in seqs])
    normalizer = Normalizer.fit(frames)
    model = GenMM(config, examples, normalizer)
    n_seq = sum(len(s) for s in examples.values())
    log.info(
        "GenMM: %d labels, %d example sequences, %d frames (split %r)",
        len(examples),
        n_seq,
        len(frames),
        split,
    )
    if run is not None:
        run.write_config(dataclasses.asdict(config), kind=KIND, split=split, seed=seed)
        model.save(run.file("checkpoint.safetensors"))
    return model
