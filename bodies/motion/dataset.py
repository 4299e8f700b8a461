"""Motions on the SMPL body at one frame rate, their windows and splits, AMASS-style files.

A :class:`Motion` is ``T`` frames of SMPL axis-angle poses and a translation at ``fps`` frames
per second, in SMPL's axes (y up, the body faces +z, its left is +x), metres, the ground at
``y = 0``; ``transl`` is the pelvis' world position (see :mod:`bodies.motion.features`).

**The DeepMimic clips** (:func:`deepmimic_motion`): each clip's frames have their own durations
(1/60 to 1/16 s); they are resampled to :data:`~bodies.motion.features.FPS` = 30 fps (slerp of
every joint's rotation, linear translation, :func:`resample`). DeepMimic's humanoid has other
proportions than our skeleton, so each clip is shifted vertically to put its feet on the
floor: per frame, the lowest foot joint relative to its rest height above the sole
(``min_i y_i - FOOT_HEIGHTS[i]`` over :data:`~bodies.motion.features.FOOT_JOINTS`) is taken, and
the clip is moved so that the 5th percentile of that over the clip's frames is 0 (a foot
standing flat then has its ankle 0.116 m and its toe joint 0.061 m above the floor; the
percentile ignores the few frames where retargeting pushes a foot through it).

**Splits** (:data:`SPLITS`): contiguous blocks of each clip's frames, ``"train"`` the first 80%
and ``"test"`` the last 20%; for tuning, ``"fit"`` the first 60% and ``"val"`` 60-80%. Each
block is featurised on its own (its last frame's velocity repeats the one before, so nothing
leaks across a block's edge). **Windows** (:func:`windows`) are all :data:`WINDOW`-frame runs
of a block (stride 1); a block shorter than a window gives none. The held-out splits
(``"test"`` against ``"train"``, ``"val"`` against ``"fit"``) are never mirrored, and their
windows within :data:`NEAR_MM` of a window of the reference split or of its mirror are dropped,
the count logged per clip (walk and run are mirror-symmetric cycles: a mirrored training step
is a held-out step). The distance of two windows is the mean over frames and joints of the
distance between their ``POSITIONS`` (heading frame), in mm.

**AMASS-style files** (:func:`load_amass`, :func:`save_amass`): ``poses (T, 72)`` (SMPL),
``(T, 156)`` (SMPL-H) or ``(T, 165)`` (SMPL-X), ``trans (T, 3)``, ``mocap_framerate``. AMASS is
z-up and, as SMPL, puts the pelvis at ``trans + J_pelvis`` (the rest pelvis offset, not rotated
by the root): with ``A`` the rotation taking z-up to y-up (``-90`` degrees about x),
``global_orient = A R_root`` and ``transl = A (trans + J_0)``, ``J_0 = (0, -0.22, 0)`` the rest
skeleton's pelvis. The files this module writes say their up axis in ``up_axis`` (``"y"`` by
default: our frame, ``transl = trans + J_0``), so both kinds round trip.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bodies.motion import features as F
from bodies.motion.clips import CLIP_NAMES, NEAR_MM, load_clip
from bodies.skeleton import NUM_JOINTS, mirror_pose, rest_joints
from mpgym.errors import MpgymError

log = logging.getLogger(__name__)

__all__ = [
    "HELD_OUT",
    "MAX_FRAMES",
    "NEAR_MM",
    "SPLITS",
    "STD_FLOOR",
    "WINDOW",
    "Motion",
    "Normalizer",
    "Windows",
    "check_labels",
    "clip_features",
    "deepmimic_motion",
    "floor_offset",
    "load_amass",
    "load_motions",
    "resample",
    "save_amass",
    "split_slice",
    "window_distances",
    "windows",
]

WINDOW = 12
"""Frames per window (0.4 s at 30 fps): the held-out block of each clip lasts 0.16-0.88 s, so
at 12 frames about half the clips have held-out windows; long motion chains windows."""

SPLITS: dict[str, tuple[float, float]] = {
    "train": (0.0, 0.8),
    "test": (0.8, 1.0),
    "fit": (0.0, 0.6),
    "val": (0.6, 0.8),
    "all": (0.0, 1.0),
}
"""Per split, the block of each clip's frames it takes (fractions of the clip's length)."""

HELD_OUT: dict[str, str] = {"test": "train", "val": "fit"}
"""Held-out split -> the split its near-copies are looked for in (and in that split's mirror)."""

MAX_FRAMES = 1_000_000
"""Most frames a motion file may hold (9 hours at 30 fps)."""

Split = Literal["train", "test", "fit", "val", "all"]


# ------------------------------------------------------------------ motions
@dataclass(frozen=True, repr=False)
class Motion:
    """``T`` frames of SMPL poses and the pelvis' world position at ``fps`` frames per second.

    Checked on construction: shapes, ``T >= 1``, ``fps > 0``, finite values (the first bad
    frame is named). Arrays are stored as float64.
    """

    label: str
    """What the motion is (a clip name for the DeepMimic clips)."""
    fps: float
    """Frames per second."""
    global_orient: np.ndarray
    """``(T, 3)`` root orientation, axis-angle."""
    body_pose: np.ndarray
    """``(T, 23, 3)`` local joint rotations, axis-angle (``(T, 69)`` is accepted)."""
    transl: np.ndarray
    """``(T, 3)`` pelvis position (m), y up, ground at ``y = 0``."""

    def __post_init__(self) -> None:
        go = _float_array(self.global_orient, "global_orient")
        bp = _float_array(self.body_pose, "body_pose")
        tr = _float_array(self.transl, "transl")
        if bp.ndim == 2 and bp.shape[1] == 3 * (NUM_JOINTS - 1):
            bp = bp.reshape(len(bp), NUM_JOINTS - 1, 3)
        T = len(go)
        if (
            go.shape != (T, 3)
            or bp.shape != (T, NUM_JOINTS - 1, 3)
            or tr.shape != (T, 3)
            or not 1 <= T <= MAX_FRAMES
        ):
            raise MpgymError(
                f"motion {self.label!r} has global_orient {go.shape}, body_pose {bp.shape}, "
                f"transl {tr.shape}; expected (T, 3), (T, 23, 3) or (T, 69), (T, 3) with "
                f"1 <= T <= {MAX_FRAMES}."
            )
        fps = float(self.fps) if isinstance(self.fps, (int, float, np.number)) else math.nan
        if not (math.isfinite(fps) and fps > 0):
            raise MpgymError(f"motion {self.label!r} has fps {self.fps!r}; expected a number > 0.")
        bad = ~(np.isfinite(go).all(-1) & np.isfinite(bp).all((-1, -2)) & np.isfinite(tr).all(-1))
        if bad.any():
            raise MpgymError(
                f"motion {self.label!r} has NaN or infinite values at frame "
                f"{int(np.argmax(bad))} ({int(bad.sum())} of {T} frames); every frame must be "
                "finite."
            )
        for name, value in (("fps", fps), ("global_orient", go), ("body_pose", bp)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "transl", tr)
        object.__setattr__(self, "label", str(self.label))

    def __len__(self) -> int:
        return len(self.transl)

    def __getitem__(self, index: slice) -> Motion:
        """Frames ``index`` (a slice) as a new motion."""
        if not isinstance(index, slice):
            raise MpgymError(f"index a Motion with a slice of frames, not {index!r}.")
        return dataclasses.replace(
            self,
            global_orient=self.global_orient[index],
            body_pose=self.body_pose[index],
            transl=self.transl[index],
        )

    def __repr__(self) -> str:
        return f"Motion({self.label!r}, frames={len(self)}, fps={self.fps:g})"

    @property
    def poses(self) -> np.ndarray:
        """``(T, 72)`` SMPL poses: the root's axis-angle, then the body's."""
        return np.concatenate([self.global_orient, self.body_pose.reshape(len(self), -1)], 1)

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the last."""
        return (len(self) - 1) / self.fps

    def mirror(self) -> Motion:
        """The left-right mirror (``x -> -x``, :func:`bodies.skeleton.mirror_pose`)."""
        full = mirror_pose(self.poses.reshape(len(self), NUM_JOINTS, 3))
        return dataclasses.replace(
            self,
            global_orient=full[:, 0],
            body_pose=full[:, 1:],
            transl=self.transl * np.array([-1.0, 1.0, 1.0]),
        )

    def copy(self) -> Motion:
        """A copy with its own arrays."""
        return dataclasses.replace(
            self,
            global_orient=self.global_orient.copy(),
            body_pose=self.body_pose.copy(),
            transl=self.transl.copy(),
        )


def _float_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a new float64 array, or one clear error."""
    try:
        return np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MpgymError(f"Motion.{name} is not an array of numbers ({exc}).") from None


def _slerp_keys(
    times: np.ndarray, poses: np.ndarray, transl: np.ndarray, new_times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Joint rotations (slerp) and translation (linear) at ``new_times``.

    Args:
        times: ``(T,)`` strictly increasing key times.
        poses: ``(T, J, 3)`` axis-angle.
        transl: ``(T, 3)``.
        new_times: ``(N,)`` within ``[times[0], times[-1]]``.

    Returns:
        ``(poses (N, J, 3), transl (N, 3))``.
    """
    from scipy.spatial.transform import Rotation, Slerp

    out = np.empty((len(new_times), poses.shape[1], 3))
    for j in range(poses.shape[1]):
        out[:, j] = Slerp(times, Rotation.from_rotvec(poses[:, j]))(new_times).as_rotvec()
    tr = np.stack([np.interp(new_times, times, transl[:, k]) for k in range(3)], -1)
    return out, tr


def _resample_times(
    times: np.ndarray, poses: np.ndarray, transl: np.ndarray, fps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Keys at ``times`` to frames at ``fps`` from ``times[0]`` to at most ``times[-1]``."""
    if len(times) == 1:
        return poses.copy(), transl.copy()
    n = int(math.floor((times[-1] - times[0]) * fps + 1e-9)) + 1
    return _slerp_keys(times, poses, transl, times[0] + np.arange(n) / fps)


def resample(motion: Motion, fps: float = F.FPS) -> Motion:
    """A motion at another frame rate: each joint's rotation by slerp, translation linearly.

    Frames fall at ``k / fps`` for ``k = 0, 1, ...`` up to the motion's last frame, so the
    duration is kept up to one output frame.

    Args:
        motion: the motion.
        fps: the new frame rate (> 0).

    Returns:
        The resampled motion (a copy when ``fps`` equals ``motion.fps``).
    """
    if not (isinstance(fps, (int, float, np.number)) and math.isfinite(fps) and fps > 0):
        raise MpgymError(f"resample needs fps > 0; got {fps!r}.")
    if float(fps) == motion.fps:
        return motion.copy()
    poses, tr = _resample_times(
        np.arange(len(motion)) / motion.fps,
        motion.poses.reshape(len(motion), NUM_JOINTS, 3),
        motion.transl,
        float(fps),
    )
    return Motion(motion.label, float(fps), poses[:, 0], poses[:, 1:], tr)


def floor_offset(motion: Motion, *, percentile: float = 5.0) -> float:
    """How high (m) the motion's feet are above the floor (module docstring).

    The ``percentile`` of ``min_i (y_i - FOOT_HEIGHTS[i])`` over frames, ``i`` over
    :data:`~bodies.motion.features.FOOT_JOINTS`; subtract it from ``transl_y`` to stand the
    motion on ``y = 0``.
    """
    feet = F.motion_joints(motion)[:, list(F.FOOT_JOINTS), 1]  # [T, 4]
    return float(np.percentile((feet - np.asarray(F.FOOT_HEIGHTS)).min(1), percentile))


@functools.lru_cache(maxsize=len(CLIP_NAMES))
def _deepmimic(name: str) -> Motion:
    clip = load_clip(name)
    times = np.concatenate([[0.0], np.cumsum(clip.durations[:-1])])
    if not (np.diff(times) > 0).all():
        raise MpgymError(f"DeepMimic clip {name!r} has frames of zero or negative duration.")
    poses = np.concatenate([clip.global_orient[:, None], clip.body_pose], 1)
    poses, tr = _resample_times(times, poses, clip.transl, float(F.FPS))
    motion = Motion(name, float(F.FPS), poses[:, 0], poses[:, 1:], tr)
    tr[:, 1] -= floor_offset(motion)
    return Motion(name, float(F.FPS), poses[:, 0], poses[:, 1:], tr)


def deepmimic_motion(name: str) -> Motion:
    """One DeepMimic clip at 30 fps with its feet on the floor (module docstring).

    Args:
        name: one of :data:`bodies.motion.clips.CLIP_NAMES`.

    Returns:
        The motion, labelled ``name``.
    """
    check_labels([name], CLIP_NAMES, what="DeepMimic clip")
    return _deepmimic(name).copy()


def check_labels(
    labels: Sequence[str], accepted: Sequence[str], *, what: str = "label"
) -> list[int]:
    """The index of each label in ``accepted``; an unknown one -> one :class:`MpgymError`.

    Example: ``check_labels(["walk"], CLIP_NAMES) == [14]``.
    """
    if isinstance(labels, str):
        labels = [labels]
    unknown = [x for x in labels if x not in accepted]
    if unknown:
        raise MpgymError(f"unknown {what} {unknown[0]!r}; accepted: {', '.join(accepted)}.")
    return [list(accepted).index(x) for x in labels]


# ------------------------------------------------------------------ splits and windows
def split_slice(n_frames: int, split: str) -> slice:
    """The frames of a motion of ``n_frames`` frames in ``split`` (:data:`SPLITS`)."""
    if split not in SPLITS:
        raise MpgymError(f"unknown motion split {split!r}; accepted: {', '.join(SPLITS)}.")
    lo, hi = SPLITS[split]
    return slice(int(round(n_frames * lo)), int(round(n_frames * hi)))


@dataclass(repr=False)
class Windows:
    """Feature windows of one split, with where each comes from."""

    x: np.ndarray
    """``(N, W, D)`` float32 raw features."""
    labels: np.ndarray
    """``(N,)`` int64 index into :attr:`label_names`."""
    label_names: tuple[str, ...]
    """The labels (for the DeepMimic clips: :data:`~bodies.motion.clips.CLIP_NAMES`)."""
    clip: np.ndarray
    """``(N,)`` int64 index of the motion the window is cut from (into :attr:`clip_names`)."""
    start: np.ndarray
    """``(N,)`` int64 first frame of the window within its split block."""
    mirrored: np.ndarray
    """``(N,)`` bool: a left-right mirrored copy (:func:`.features.mirror_features`)."""
    clip_names: tuple[str, ...] = ()
    """Label of each motion the windows were cut from."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Held-out splits: per label, the windows dropped as near-copies (:data:`NEAR_MM`)."""

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return (
            f"Windows(n={len(self)}, window={self.x.shape[1]}, labels={len(self.label_names)}, "
            f"mirrored={int(self.mirrored.sum())}, dropped={sum(self.dropped.values())})"
        )


def _source(motions: Sequence[Motion] | None) -> tuple[list[Motion], tuple[str, ...]]:
    """The motions (the DeepMimic clips by default) and their label names, in first-seen order."""
    if motions is None:
        return [_deepmimic(n) for n in CLIP_NAMES], CLIP_NAMES
    motions = list(motions)
    if not motions or not all(isinstance(m, Motion) for m in motions):
        raise MpgymError("motions must be a non-empty sequence of bodies.motion.dataset.Motion.")
    for m in motions:
        if m.fps != F.FPS:
            raise MpgymError(
                f"motion {m.label!r} is at {m.fps:g} fps; resample it to {F.FPS} first "
                "(bodies.motion.dataset.resample)."
            )
    return motions, tuple(dict.fromkeys(m.label for m in motions))


def _block_features(motions: Sequence[Motion], split: str) -> list[np.ndarray]:
    """Per motion, the ``(T_i, D)`` float64 features of its ``split`` block (maybe empty)."""
    out = []
    for m in motions:
        sl = split_slice(len(m), split)
        out.append(F.motion_to_features(m[sl]) if sl.stop > sl.start else np.zeros((0, F.D)))
    return out


@functools.lru_cache(maxsize=8)
def _deepmimic_blocks(split: str) -> tuple[np.ndarray, ...]:
    blocks = _block_features([_deepmimic(n) for n in CLIP_NAMES], split)
    for b in blocks:
        b.flags.writeable = False
    return tuple(blocks)


def _blocks(motions: Sequence[Motion] | None, split: str) -> list[np.ndarray]:
    if motions is None:
        return list(_deepmimic_blocks(split))
    return _block_features(motions, split)


def _cut(blocks: Sequence[np.ndarray], window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All stride-1 windows: ``(x (N, W, D), clip (N,), start (N,))``."""
    xs, clips, starts = [np.zeros((0, window, F.D))], [], []
    for i, b in enumerate(blocks):
        n = len(b) - window + 1
        if n <= 0:
            continue
        xs.append(np.lib.stride_tricks.sliding_window_view(b, window, axis=0).transpose(0, 2, 1))
        clips.append(np.full(n, i))
        starts.append(np.arange(n))

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([np.zeros(0, np.int64), *parts]).astype(np.int64)

    return np.concatenate(xs), cat(clips), cat(starts)


def window_distances(x: np.ndarray, reference: np.ndarray, *, chunk: int = 8) -> np.ndarray:
    """Distance (mm) from each window to its nearest reference window.

    ``d(a, b) = 1000 / (W * 24) sum_{t, j} |p_tj(a) - p_tj(b)|`` over the ``POSITIONS`` of the
    windows' frames (heading frame, m).

    Args:
        x: ``(N, W, D)`` windows.
        reference: ``(M, W, D)`` windows.
        chunk: windows of ``x`` compared at a time (memory ``chunk * M * W * 72`` floats).

    Returns:
        ``(N,)`` float64 (``inf`` when there is no reference window).
    """
    W = x.shape[1]
    P = np.asarray(x[..., F.POSITIONS], np.float64).reshape(len(x), W * NUM_JOINTS, 3)
    R = np.asarray(reference[..., F.POSITIONS], np.float64).reshape(len(reference), -1, 3)
    out = np.full(len(P), np.inf)
    if len(R) == 0:
        return out
    for i in range(0, len(P), chunk):
        d = np.linalg.norm(P[i : i + chunk, None] - R[None], axis=-1).mean(-1)  # [c, M]
        out[i : i + chunk] = 1000.0 * d.min(1)
    return out


def _check_window(window: Any, motions: Sequence[Motion] | None) -> int:
    if not isinstance(window, (int, np.integer)) or isinstance(window, bool) or window < 1:
        raise MpgymError(f"window must be an integer >= 1 (frames); got {window!r}.")
    for m in motions or ():
        if len(m) < window:
            raise MpgymError(
                f"motion {m.label!r} has {len(m)} frames, shorter than a window of {window} "
                f"frames ({window / F.FPS:.2f} s); give motions at least one window long."
            )
    return int(window)


def windows(
    split: Split = "train",
    *,
    window: int = WINDOW,
    mirror: bool = True,
    motions: Sequence[Motion] | None = None,
) -> Windows:
    """All stride-1 windows of one split of every clip (module docstring).

    Args:
        split: a key of :data:`SPLITS`. ``"test"`` and ``"val"`` are never mirrored and lose
            their near-copies of ``"train"`` / ``"fit"`` windows (or of their mirrors).
        window: frames per window.
        mirror: add the left-right mirrored copy of each window (not for held-out splits).
        motions: motions at 30 fps to cut instead of the DeepMimic clips; each must be at least
            ``window`` frames long; labels are their ``label``s in first-seen order.

    Returns:
        :class:`Windows`, originals ordered by clip and start, the mirrored copies after them.
    """
    split_slice(1, split)  # checks the name
    window = _check_window(window, motions)
    if motions is not None:
        return _windows(split, window, bool(mirror), motions)
    w = _deepmimic_windows(split, window, bool(mirror))
    return dataclasses.replace(
        w,
        x=w.x.copy(),
        labels=w.labels.copy(),
        clip=w.clip.copy(),
        start=w.start.copy(),
        mirrored=w.mirrored.copy(),
        dropped=dict(w.dropped),
    )


@functools.lru_cache(maxsize=16)
def _deepmimic_windows(split: str, window: int, mirror: bool) -> Windows:
    return _windows(split, window, mirror, None)


def _windows(split: str, window: int, mirror: bool, motions: Sequence[Motion] | None) -> Windows:
    """:func:`windows` after its checks (uncached)."""
    source, label_names = _source(motions)
    blocks = _blocks(motions, split)
    x, clip, start = _cut(blocks, window)
    dropped: dict[str, int] = {}
    if split in HELD_OUT:
        ref, _, _ = _cut(_blocks(motions, HELD_OUT[split]), window)
        ref = np.concatenate([ref, F.mirror_features(ref)])
        keep = window_distances(x, ref) >= NEAR_MM
        for i, m in enumerate(source):
            dropped[m.label] = dropped.get(m.label, 0) + int((~keep[clip == i]).sum())
        log.info(
            "%s windows: kept %d of %d; dropped within %g mm of a %s window or its mirror: %s",
            split,
            int(keep.sum()),
            len(keep),
            NEAR_MM,
            HELD_OUT[split],
            ", ".join(
                f"{m.label} {int((~keep[clip == i]).sum())}/{int((clip == i).sum())}"
                for i, m in enumerate(source)
            ),
        )
        x, clip, start = x[keep], clip[keep], start[keep]
        mirror = False
    label_of = np.array([label_names.index(m.label) for m in source], np.int64)
    mirrored = np.zeros(len(x), bool)
    if mirror:
        x = np.concatenate([x, F.mirror_features(x)])
        clip, start = np.tile(clip, 2), np.tile(start, 2)
        mirrored = np.repeat([False, True], len(mirrored))
    return Windows(
        x=x.astype(np.float32),
        labels=label_of[clip] if len(clip) else np.zeros(0, np.int64),
        label_names=label_names,
        clip=clip,
        start=start,
        mirrored=mirrored,
        clip_names=tuple(m.label for m in source),
        dropped=dropped,
    )


def clip_features(
    split: Split = "train", *, mirror: bool = False, motions: Sequence[Motion] | None = None
) -> dict[str, list[np.ndarray]]:
    """Per label, the ``(T_i, D)`` float32 feature sequences of each clip's ``split`` block.

    For GenMM's examples and MVAE's sequences. Empty blocks are left out; held-out splits are
    neither mirrored nor pruned of near-copies (that is per window, :func:`windows`).

    Args:
        split: a key of :data:`SPLITS`.
        mirror: also give each block's left-right mirror (after the originals of its label).
        motions: motions at 30 fps instead of the DeepMimic clips.

    Returns:
        Label -> list of arrays, labels in :func:`windows`' ``label_names`` order.
    """
    split_slice(1, split)
    source, label_names = _source(motions)
    out: dict[str, list[np.ndarray]] = {name: [] for name in label_names}
    blocks = _blocks(motions, split)
    for m, b in zip(source, blocks, strict=True):
        if len(b):
            out[m.label].append(b.astype(np.float32))
    if mirror and split not in HELD_OUT:
        for m, b in zip(source, blocks, strict=True):
            if len(b):
                out[m.label].append(F.mirror_features(b).astype(np.float32))
    return out


# ------------------------------------------------------------------ normalisation
STD_FLOOR = 1e-2
"""Smallest standard deviation a dimension is divided by (constant dimensions such as the rest
hands' rotations would otherwise blow up)."""


class _FitMethod:
    """``Normalizer.fit(x)`` and ``Normalizer().fit(x)`` both return the fitted normalizer."""

    def __get__(self, obj: Normalizer | None, cls: type[Normalizer]) -> Any:
        if obj is None:
            return lambda x, **kw: cls()._fit(x, **kw)
        return obj._fit


class Normalizer:
    """Per-dimension standardisation ``(x - mean) / std`` with a floor on ``std``.

    Works on numpy arrays and torch tensors whose last axis is ``D``; the statistics are over
    every frame of every leading axis of the data it is fitted on. Contacts are normalised too.
    Example: ``Normalizer.fit(x).normalize(x)`` has mean 0 and std 1 (or less, where the floor
    applies) in each dimension.
    """

    fit = _FitMethod()

    def __init__(self, mean: Any = None, std: Any = None):
        """A normalizer with given statistics (``(D,)`` each), or an unfitted one."""
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        if mean is not None or std is not None:
            self.mean, self.std = _stat(mean, "mean"), _stat(std, "std")
            if self.mean.shape != self.std.shape or not (self.std > 0).all():
                raise MpgymError("Normalizer needs mean and std of the same shape (D,), std > 0.")

    def _fit(self, x: Any, *, std_floor: float = STD_FLOOR) -> Normalizer:
        """Fit mean and std to ``x`` (``(..., D)``, at least one frame); returns ``self``."""
        a = _numpy(x).astype(np.float64)
        if a.ndim < 1 or a.size == 0 or not np.isfinite(a).all():
            raise MpgymError(f"Normalizer.fit needs finite data (..., D); got shape {a.shape}.")
        a = a.reshape(-1, a.shape[-1])
        self.mean = a.mean(0).astype(np.float32)
        self.std = np.maximum(a.std(0), std_floor).astype(np.float32)
        return self

    def _stats(self, x: Any) -> tuple[Any, Any]:
        if self.mean is None or self.std is None:
            raise MpgymError("the Normalizer is not fitted; call Normalizer.fit(x) first.")
        if x.shape[-1] != len(self.mean):
            raise MpgymError(
                f"data of shape {tuple(x.shape)} given to a Normalizer of {len(self.mean)} "
                f"dimensions; expected (..., {len(self.mean)})."
            )
        if isinstance(x, np.ndarray):
            dt = x.dtype if x.dtype.kind == "f" else np.float64
            return self.mean.astype(dt), self.std.astype(dt)
        import torch

        dt = x.dtype if x.is_floating_point() else torch.float32
        return (
            torch.as_tensor(self.mean, device=x.device).to(dt),
            torch.as_tensor(self.std, device=x.device).to(dt),
        )

    def normalize(self, x: Any) -> Any:
        """``(x - mean) / std``, same type, device and (float) dtype as ``x``."""
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalize(self, x: Any) -> Any:
        """``x * std + mean``, the inverse of :meth:`normalize`."""
        mean, std = self._stats(x)
        return x * std + mean

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{"mean": (D,) float32, "std": (D,) float32}`` (numpy; copies)."""
        if self.mean is None or self.std is None:
            raise MpgymError("the Normalizer is not fitted; nothing to save.")
        return {"mean": self.mean.copy(), "std": self.std.copy()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Normalizer:
        """A normalizer from :meth:`state_dict`'s arrays (numpy arrays or torch tensors)."""
        if not isinstance(state, dict) or set(state) != {"mean", "std"}:
            keys = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise MpgymError(f"a Normalizer state has {keys}; expected the keys mean, std.")
        return cls(state["mean"], state["std"])

    def __repr__(self) -> str:
        return f"Normalizer(D={None if self.mean is None else len(self.mean)})"


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _stat(value: Any, name: str) -> np.ndarray:
    a = _numpy(value).astype(np.float32)
    if a.ndim != 1 or not np.isfinite(a).all():
        raise MpgymError(f"Normalizer {name} must be a finite (D,) array; got shape {a.shape}.")
    return a


# ------------------------------------------------------------------ AMASS-style files
_Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # R_x(-90 deg)
_POSE_WIDTHS = {72: "SMPL", 156: "SMPL-H", 165: "SMPL-X"}


def _text(value: Any) -> str | None:
    """A text scalar stored in an ``.npz`` (``str`` or bytes array), else ``None``."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "US" and value.size == 1:
        item = value.reshape(()).item()
        return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
    return None


def load_amass(path: str | os.PathLike, *, label: str | None = None) -> Motion:
    """Read an AMASS-style ``.npz`` (module docstring: axes and the pelvis offset).

    Args:
        path: the file; read with :func:`bodies.io.load_npz` (no pickles, sizes checked).
        label: the motion's label; by default the file's ``label`` entry, else its stem.

    Returns:
        The motion at the file's frame rate (SMPL-H and SMPL-X hands dropped: SMPL's hand joints
        22 and 23 are set to rest).
    """
    from bodies.io import load_npz

    path = Path(path)
    arrays = load_npz(path)
    missing = [k for k in ("poses", "trans") if k not in arrays]
    rate_key = next((k for k in ("mocap_framerate", "mocap_frame_rate") if k in arrays), None)
    if missing or rate_key is None:
        raise MpgymError(
            f"{path} lacks {', '.join(missing + ['mocap_framerate'] * (rate_key is None))}; an "
            "AMASS-style .npz holds poses (T, 72|156|165), trans (T, 3) and mocap_framerate."
        )
    poses, trans, rate = arrays["poses"], arrays["trans"], arrays[rate_key]
    if (
        poses.ndim != 2
        or poses.shape[1] not in _POSE_WIDTHS
        or poses.dtype.kind not in "iuf"
        or trans.shape != (len(poses), 3)
        or trans.dtype.kind not in "iuf"
        or rate.size != 1
        or rate.dtype.kind not in "iuf"
    ):
        raise MpgymError(
            f"{path} has poses {poses.shape} {poses.dtype}, trans {trans.shape}, "
            f"{rate_key} {rate.shape}; expected numbers: poses (T, 72) SMPL, (T, 156) SMPL-H or "
            "(T, 165) SMPL-X, trans (T, 3) and one frame rate."
        )
    up = _text(arrays["up_axis"]) if "up_axis" in arrays else "z"
    if up not in ("y", "z"):
        raise MpgymError(f"{path} has up_axis {up!r}; accepted: 'y' (mpgym's files) or 'z'.")
    T = len(poses)
    full = np.zeros((T, NUM_JOINTS, 3))
    if poses.shape[1] == 72:
        full[:] = poses.reshape(T, NUM_JOINTS, 3)
    else:  # root + 21 body joints; the hand joints of SMPL-H / SMPL-X are not SMPL's
        full[:, :22] = poses[:, :66].reshape(T, 22, 3)
    name = label if label is not None else (_text(arrays.get("label")) or path.stem)
    pelvis = np.asarray(trans, np.float64) + rest_joints()[0]
    motion = Motion(name, float(rate.reshape(())), full[:, 0], full[:, 1:], pelvis)  # checks
    if up == "y":
        return motion
    root = _Z_UP_TO_Y_UP @ F._rotvec_to_matrix(motion.global_orient)
    return dataclasses.replace(
        motion, global_orient=F._matrix_to_rotvec(root), transl=pelvis @ _Z_UP_TO_Y_UP.T
    )


def save_amass(
    path: str | os.PathLike, motion: Motion, *, up_axis: Literal["y", "z"] = "y"
) -> Path:
    """Write a motion as an AMASS-style ``.npz``, atomically (:func:`bodies.io.save_npz`).

    Keys: ``poses (T, 72)`` SMPL axis-angle, ``trans (T, 3)`` (SMPL's convention: the pelvis
    is at ``trans + J_0``), ``mocap_framerate``, ``betas (10,)`` zeros (the mean body),
    ``gender`` ``"neutral"``, ``up_axis`` and ``label``.

    Args:
        path: the file to write.
        motion: the motion.
        up_axis: ``"y"`` (our frame) or ``"z"`` (AMASS's: z up, as other AMASS tools expect).

    Returns:
        ``path``.
    """
    from bodies.io import save_npz

    if up_axis not in ("y", "z"):
        raise MpgymError(f"up_axis {up_axis!r} is not accepted; use 'y' or 'z'.")
    poses = motion.poses.copy()
    pelvis = motion.transl
    if up_axis == "z":
        to_z = _Z_UP_TO_Y_UP.T
        poses[:, :3] = F._matrix_to_rotvec(to_z @ F._rotvec_to_matrix(poses[:, :3]))
        pelvis = pelvis @ to_z.T
    arrays = {
        "poses": poses,
        "trans": pelvis - rest_joints()[0],
        "mocap_framerate": np.array(motion.fps),
        "betas": np.zeros(10),
        "gender": np.array("neutral"),
        "up_axis": np.array(up_axis),
        "label": np.array(motion.label),
    }
    return save_npz(path, arrays)


MAX_FILES = 10_000
"""Most motion files :func:`load_motions` reads at once."""


def load_motions(
    paths: str | os.PathLike | Sequence[str | os.PathLike], *, fps: float | None = F.FPS
) -> list[Motion]:
    """Read motions from ``.npz`` (AMASS-style) and ``.bvh`` files or folders of them.

    A folder is searched recursively, files in sorted order. Use the result as
    ``windows(..., motions=...)`` / ``clip_features(..., motions=...)``.

    Args:
        paths: files and folders.
        fps: resample every motion to this rate (:func:`resample`); ``None`` keeps each file's.

    Returns:
        One motion per file, labelled by the file (its ``label`` entry or stem).
    """
    from bodies.motion.bvh import load_bvh

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in (".npz", ".bvh"))
        elif p.suffix.lower() in (".npz", ".bvh") and p.is_file():
            files.append(p)
        else:
            raise MpgymError(f"{p} is not a .npz or .bvh file or a folder of them.")
        if len(files) > MAX_FILES:
            raise MpgymError(f"more than {MAX_FILES} motion files under {p}; pass fewer.")
    if not files:
        raise MpgymError(f"no .npz or .bvh motion files in {', '.join(map(str, paths))}.")
    out = [load_bvh(f) if f.suffix.lower() == ".bvh" else load_amass(f) for f in files]
    return [resample(m, fps) for m in out] if fps is not None else out
