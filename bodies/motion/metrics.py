"""Scores of generated motion: Fréchet distance, recognition, diversity, feet, limits, novelty.

Each is a pure function: the classifier Fréchet distance and recognition accuracy, diversity,
foot skating, ground penetration, floating, joint-limit violations and novelty; :func:`score`
computes them all for one model, next to the data's own values.

Inputs are raw (de-normalised) feature windows ``(N, W, D)`` float (any ``(..., T, D)`` where
it makes sense) of :mod:`bodies.motion.features` at :data:`~bodies.motion.features.FPS`;
:class:`~bodies.motion.dataset.Windows` are accepted where data (with labels) is expected.
Lengths are in metres inside, reported in millimetres where the name says ``mm``.

Protocols (what each number means, and where the thresholds come from):

- **Fréchet distance** (Heusel et al. 2017, as FID; for motion Guo et al. 2020): between
  Gaussian fits of :class:`~bodies.motion.classifier.MotionClassifier` embeddings of the
  generated windows and of the held-out windows. Its estimate grows as ``1/n`` with fewer
  samples, so the floor ``FD(train, held-out)`` is computed with as many training windows as
  there are generated ones, drawn with the generated windows' labels (one training window of
  the same label per generated window), averaged over :data:`FLOOR_SUBSAMPLES` draws.
- **Diversity** (the HumanML3D / MDM protocol: mean Euclidean distance between the
  embeddings of 300 random pairs; Guo et al. 2020): we draw :data:`DIVERSITY_PAIRS` pairs of
  two distinct windows with replacement, because our sets have fewer than 300 windows.
- **Foot skating**: after Karunratanakul et al. 2023 (GMD, ``calculate_skating_ratio`` in
  their HumanML3D evaluation): a foot joint is in contact over the step ``t -> t + 1`` when it
  lies less than :data:`CONTACT_HEIGHT_M` = 5 cm above its standing height in both frames;
  the step skates when its horizontal speed exceeds :data:`SKATE_SPEED_M_S`. GMD uses the two
  toe joints, 0.5 m/s (2.5 cm per frame at HumanML3D's 20 fps), a 5-frame speed average and
  divides by all frames; we use the four joints of :data:`~bodies.motion.features.FOOT_JOINTS`
  (ankles and toes, each against its own standing height), the instantaneous speed, and
  divide by the contact steps (the issue's "fraction of contact frames").
- **Penetration / floating**: per frame the clearance ``c_t = min_j (y_j - h_j)`` of the foot
  joints over their standing heights ``h_j`` (:func:`standing_foot_heights`); penetration is
  the mean of ``max(0, -c_t)``, floating the mean of ``max(0, c_t)`` over frames, in mm.
  Flight phases of jumps and runs float legitimately: compare with the data's own value.
- **Joint limits**: rotation vectors of the 23 body joints (the root is free) against a box
  per joint and axis, :func:`data_joint_limits` = the training range widened by
  :data:`LIMIT_MARGIN_RAD`; the fraction of values outside. A knee bent backwards has a
  negative x component, outside the data's range.
- **Novelty**: the median distance from each generated window to its nearest training window
  over the same for held-out windows (:func:`generative.novelty.nearest_neighbour_distances`),
  on the joint positions in the heading frame (the ``POSITIONS`` slice) over the window,
  reported as the RMS joint distance in mm. Copies of training windows give 0.

References:
    Heusel et al. "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
    Equilibrium", NeurIPS 2017. Guo et al. "Action2Motion", ACM MM 2020. Tevet et al.
    "Human Motion Diffusion Model", ICLR 2023. Karunratanakul et al. "Guided Motion Diffusion
    for Controllable Human Motion Synthesis", ICCV 2023.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bodies.motion import features as F
from mpgym.errors import MpgymError

if TYPE_CHECKING:
    from bodies.motion.classifier import MotionClassifier
    from bodies.motion.dataset import Windows

log = logging.getLogger(__name__)

FLOOR_SUBSAMPLES = 5
"""Training subsamples averaged for the Fréchet-distance floor."""
DIVERSITY_PAIRS = 300
"""Random pairs of the diversity (HumanML3D / MDM use 300)."""
CONTACT_HEIGHT_M = 0.05
"""A foot joint less than this above its standing height is in contact (GMD: 5 cm)."""
SKATE_SPEED_M_S = 0.5
"""A contact step faster than this (horizontally) skates (GMD: 0.5 m/s)."""
LIMIT_MARGIN_RAD = math.radians(10.0)
"""Margin added on each side of the training range of every joint angle."""
COPY_MM = 1.0
"""Generated windows nearer than this (RMS joint distance) to a training window are copies."""


# ---------------------------------------------------------------------------------- inputs
def _windows(x: Any, name: str, *, min_frames: int = 1) -> np.ndarray:
    """Raw feature windows (array or ``Windows``) -> ``(N, T, D)`` float64, checked."""
    arr = np.asarray(getattr(x, "x", x), np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] != F.D or len(arr) == 0 or arr.shape[1] < min_frames:
        raise MpgymError(
            f"{name} must be motion features of shape (N, T, {F.D}) or (T, {F.D}) with "
            f"N >= 1 and T >= {min_frames}; got {arr.shape}."
        )
    if not np.isfinite(arr).all():
        raise MpgymError(f"{name} holds NaN or infinite values; only finite features accepted.")
    return arr


def _label_names(windows: Any) -> np.ndarray:
    """``(N,)`` label names of a ``Windows``."""
    return np.asarray(windows.label_names)[np.asarray(windows.labels)]


# ------------------------------------------------------------------------- Fréchet distance
def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` of two sets.

    :func:`generative.evaluation.frechet_distance` behind input checks. Example: two sets of
    Gaussian samples with the same covariance whose means differ by ``(3, 4)`` are at about 25.

    Args:
        a: ``(n_a, F)`` embeddings, ``n_a >= 2``.
        b: ``(n_b, F)`` embeddings, ``n_b >= 2``.

    Returns:
        The distance (``>= 0`` up to round-off; 0 for identical sets).

    Raises:
        MpgymError: sets that are not 2D, have fewer than 2 rows, differ in ``F``, or hold
            NaN or infinite values.
    """
    from generative.evaluation import frechet_distance as _fd

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    for name, v in (("a", a), ("b", b)):
        if v.ndim != 2 or len(v) < 2:
            raise MpgymError(f"{name} must be (n, F) embeddings with n >= 2; got {v.shape}.")
        if not np.isfinite(v).all():
            raise MpgymError(f"{name} holds NaN or infinite values; only finite accepted.")
    if a.shape[1] != b.shape[1]:
        raise MpgymError(f"a and b must have the same width; got {a.shape[1]} and {b.shape[1]}.")
    return _fd(a, b)


def matched_indices(
    pool_labels: Sequence[str] | np.ndarray,
    wanted: Sequence[str] | np.ndarray,
    generator: np.random.Generator,
) -> np.ndarray:
    """One random pool element with the same label per wanted label.

    Per label, draws without replacement while the pool has enough elements of that label,
    with replacement beyond.

    Example: pool labels ``[a, a, b]`` and wanted ``[b, a]`` give ``[2, 0]`` or ``[2, 1]``.

    Args:
        pool_labels: ``(M,)`` labels of the pool.
        wanted: ``(n,)`` labels to match.
        generator: draws the elements.

    Returns:
        ``(n,)`` int64 indices into the pool, in the order of ``wanted``.

    Raises:
        MpgymError: a wanted label has no element in the pool.
    """
    pool = np.asarray(pool_labels).astype(str)
    want = np.asarray(wanted).astype(str)
    out = np.empty(len(want), np.int64)
    for label in np.unique(want):
        slots = np.flatnonzero(want == label)
        choices = np.flatnonzero(pool == label)
        if len(choices) == 0:
            raise MpgymError(
                f"no data windows with label {str(label)!r} to compare with; available: "
                f"{', '.join(sorted(set(pool.tolist())))}."
            )
        out[slots] = generator.choice(choices, len(slots), replace=len(slots) > len(choices))
    return out


@dataclass(frozen=True)
class FDReport:
    """What :func:`fd_report` returns."""

    fd: float
    """FD(generated, held-out)."""
    floor: float
    """Mean FD(training subsample, held-out) over the subsamples, as many windows as generated."""
    floor_std: float
    """Standard deviation of the floor over the subsamples."""
    n_generated: int
    """Generated windows."""
    n_heldout: int
    """Held-out windows."""

    @property
    def ratio(self) -> float:
        """``fd / floor``: about 1 when the samples are as close to held-out data as data is."""
        return self.fd / self.floor if self.floor > 0 else math.inf


def fd_report(
    classifier: MotionClassifier,
    generated: np.ndarray,
    heldout: Windows | np.ndarray,
    train: Windows,
    *,
    labels: Sequence[str] | np.ndarray | None = None,
    subsamples: int = FLOOR_SUBSAMPLES,
    generator: np.random.Generator | None = None,
) -> FDReport:
    """Fréchet distance of generated windows to held-out windows, next to the data's floor.

    The floor is ``FD(train subsample, held-out)`` with as many training windows as generated
    ones (the estimate's ``1/n`` bias then matches), drawn with the generated windows' labels
    when ``labels`` is given (:func:`matched_indices`; otherwise uniformly without
    replacement), averaged over ``subsamples`` draws. Generate with the held-out windows'
    labels for a like-for-like comparison.

    Args:
        classifier: supplies the embedding.
        generated: ``(n, W, D)`` raw features, ``n >= 2``.
        heldout: ``(m, W, D)`` raw features or their ``Windows``.
        train: the training ``Windows``.
        labels: ``(n,)`` label names of the generated windows.
        subsamples: draws averaged for the floor.
        generator: draws the subsamples (default: seed 0).

    Returns:
        An :class:`FDReport`.
    """
    g = generator if generator is not None else np.random.default_rng(0)
    gen = _windows(generated, "generated")
    held = _windows(heldout, "heldout")
    train_x = _windows(train, "train")
    e_gen, e_held = classifier.embed(gen), classifier.embed(held)
    e_train = classifier.embed(train_x)
    n = len(gen)
    floors = []
    for _ in range(max(1, int(subsamples))):
        if labels is not None:
            idx = matched_indices(_label_names(train), labels, g)
        else:
            idx = g.choice(len(train_x), n, replace=n > len(train_x))
        floors.append(frechet_distance(e_train[idx], e_held))
    return FDReport(
        fd=frechet_distance(e_gen, e_held),
        floor=float(np.mean(floors)),
        floor_std=float(np.std(floors)),
        n_generated=n,
        n_heldout=len(held),
    )


# ---------------------------------------------------------------------- recognition, diversity
def recognition_accuracy(
    classifier: MotionClassifier, generated: np.ndarray, labels: Sequence[str] | np.ndarray
) -> float:
    """Fraction of generated windows the classifier labels as they were asked for.

    Args:
        classifier: the motion classifier.
        generated: ``(n, W, D)`` raw features.
        labels: ``(n,)`` the label names (or the classifier's ids) they were generated with.

    Raises:
        MpgymError: a label the classifier does not know, or a count mismatch.
    """
    gen = _windows(generated, "generated")
    ids = classifier.label_ids(labels)
    if len(ids) != len(gen):
        raise MpgymError(f"got {len(gen)} generated windows but {len(ids)} labels.")
    return float((classifier.predict(gen) == ids).mean())


def diversity(
    embeddings: np.ndarray,
    *,
    pairs: int | None = DIVERSITY_PAIRS,
    generator: np.random.Generator | None = None,
) -> float:
    """Mean Euclidean distance between random pairs of distinct embeddings.

    Example: the four corners of a unit square have exact diversity ``(4 + 2 sqrt 2) / 6``
    (four sides of 1 and two diagonals of sqrt 2 among the six pairs).

    Args:
        embeddings: ``(n, F)``, ``n >= 2``.
        pairs: pairs ``(i, j)``, ``i != j``, drawn uniformly with replacement; ``None``: the
            exact mean over all ``n (n - 1) / 2`` pairs.
        generator: draws the pairs (default: seed 0).

    Returns:
        The mean distance.
    """
    e = np.asarray(embeddings, np.float64)
    if e.ndim != 2 or len(e) < 2 or not np.isfinite(e).all():
        raise MpgymError(f"embeddings must be finite (n, F) with n >= 2; got {e.shape}.")
    if pairs is None:
        i, j = np.triu_indices(len(e), 1)
    else:
        if pairs < 1:
            raise MpgymError(f"pairs must be >= 1 or None; got {pairs}.")
        g = generator if generator is not None else np.random.default_rng(0)
        i = g.integers(0, len(e), pairs)
        j = (i + g.integers(1, len(e), pairs)) % len(e)  # uniform over the others
    return float(np.linalg.norm(e[i] - e[j], axis=-1).mean())


# ---------------------------------------------------------------------------- feet and ground
def standing_foot_heights() -> np.ndarray:
    """Heights ``(4,)`` (m) of :data:`~bodies.motion.features.FOOT_JOINTS` on a flat foot.

    :data:`bodies.motion.features.FOOT_HEIGHTS`: each joint's rest height above the sole
    (0.116 m for the ankles, 0.061 m for the toe joints); the dataset stands every clip on
    these (:func:`bodies.motion.dataset.floor_offset`).
    """
    return np.asarray(F.FOOT_HEIGHTS, np.float64)


def feet_from_features(feats: np.ndarray) -> np.ndarray:
    """World positions ``(N, T, 4, 3)`` (m) of the foot joints of raw features ``(N, T, D)``.

    :func:`bodies.motion.features.world_joints` from heading 0 at the origin (skating,
    penetration and floating do not depend on the start).
    """
    x = _windows(feats, "feats")
    return np.asarray(F.world_joints(x))[..., list(F.FOOT_JOINTS), :]


def skating_from_feet(
    feet: np.ndarray,
    *,
    fps: float = F.FPS,
    heights: np.ndarray | None = None,
    contact_m: float = CONTACT_HEIGHT_M,
    speed_m_s: float = SKATE_SPEED_M_S,
) -> float:
    """Fraction of foot-contact steps whose horizontal foot speed exceeds ``speed_m_s``.

    A joint is in contact over the step ``t -> t + 1`` when it lies less than ``contact_m``
    above its standing height in both frames; pooled over joints, steps and windows.

    Example: a foot at its standing height moving 2 cm per frame at 30 fps (0.6 m/s) skates
    in every step (1.0); a planted one in none (0.0).

    Args:
        feet: ``(..., T, J, 3)`` world positions (y up), ``T >= 2``.
        fps: frames per second.
        heights: ``(J,)`` standing heights (default :func:`standing_foot_heights`).
        contact_m: contact band above the standing height.
        speed_m_s: skating speed.

    Returns:
        The fraction (0 when no step is in contact).
    """
    feet = np.asarray(feet, np.float64)
    h = standing_foot_heights() if heights is None else np.asarray(heights, np.float64)
    near = feet[..., 1] - h < contact_m  # (..., T, J)
    contact = near[..., :-1, :] & near[..., 1:, :]
    speed = np.linalg.norm(np.diff(feet[..., [0, 2]], axis=-3), axis=-1) * fps  # (..., T-1, J)
    n_contact = int(contact.sum())
    return float((contact & (speed > speed_m_s)).sum() / n_contact) if n_contact else 0.0


def clearance_from_feet(feet: np.ndarray, *, heights: np.ndarray | None = None) -> np.ndarray:
    """Per frame, ``min_j (y_j - h_j)`` (m): the lowest foot joint over its standing height.

    Args:
        feet: ``(..., T, J, 3)`` world positions.
        heights: ``(J,)`` standing heights (default :func:`standing_foot_heights`).

    Returns:
        ``(..., T)``; negative means below the ground.
    """
    feet = np.asarray(feet, np.float64)
    h = standing_foot_heights() if heights is None else np.asarray(heights, np.float64)
    return (feet[..., 1] - h).min(-1)


def foot_skating(
    feats: np.ndarray,
    *,
    contact_m: float = CONTACT_HEIGHT_M,
    speed_m_s: float = SKATE_SPEED_M_S,
) -> float:
    """:func:`skating_from_feet` of raw features ``(N, T, D)`` (``T >= 2``) at 30 fps."""
    feet = feet_from_features(_windows(feats, "feats", min_frames=2))
    return skating_from_feet(feet, contact_m=contact_m, speed_m_s=speed_m_s)


def ground_penetration(feats: np.ndarray, *, heights: np.ndarray | None = None) -> float:
    """Mean over frames of ``max(0, -clearance)`` in mm (:func:`clearance_from_feet`).

    Example: feet held 5 mm below their standing heights give 5.0.
    """
    c = clearance_from_feet(feet_from_features(feats), heights=heights)
    return float(np.maximum(-c, 0).mean() * 1000)


def floating(feats: np.ndarray, *, heights: np.ndarray | None = None) -> float:
    """Mean over frames of ``max(0, clearance)`` in mm (:func:`clearance_from_feet`).

    Example: feet held 3 cm above their standing heights give 30.0.
    """
    c = clearance_from_feet(feet_from_features(feats), heights=heights)
    return float(np.maximum(c, 0).mean() * 1000)


# ------------------------------------------------------------------------------ joint limits
def joint_rotvecs(feats: np.ndarray) -> np.ndarray:
    """Rotation vectors ``(N, T, 23, 3)`` (rad) of the body joints 1..23 of raw features."""
    import torch

    from bodies.rotations import matrix_to_axis_angle, rot6d_to_matrix

    x = _windows(feats, "feats")
    d6 = torch.as_tensor(x[..., F.ROT6D]).reshape(*x.shape[:2], F.NUM_JOINTS, 6)[..., 1:, :]
    return matrix_to_axis_angle(rot6d_to_matrix(d6)).numpy()


@dataclass(frozen=True)
class JointLimits:
    """A box of allowed rotation-vector components per body joint (rad)."""

    low: np.ndarray
    """``(23, 3)`` lower bounds."""
    high: np.ndarray
    """``(23, 3)`` upper bounds."""


def data_joint_limits(feats: np.ndarray, *, margin: float = LIMIT_MARGIN_RAD) -> JointLimits:
    """The range of every joint's rotation-vector components in ``feats``, widened by ``margin``.

    Pass the training windows with their mirrored copies (left and right limits then agree).
    Joints the data never moves (DeepMimic has no collars, toes, wrists, hands) get
    ``[-margin, margin]``.

    Args:
        feats: ``(N, T, D)`` raw features of the training data.
        margin: radians added on each side.
    """
    r = joint_rotvecs(feats).reshape(-1, F.NUM_JOINTS - 1, 3)
    return JointLimits(low=r.min(0) - margin, high=r.max(0) + margin)


def joint_limit_violations(feats: np.ndarray, limits: JointLimits) -> float:
    """Fraction of rotation-vector components of the body joints outside ``limits``.

    Over all windows, frames, 23 joints and 3 components. Example: a knee bent backwards
    (negative x rotation) against limits from forward-bending knees violates 1 value of 69
    per frame.
    """
    r = joint_rotvecs(feats)
    low, high = np.asarray(limits.low), np.asarray(limits.high)
    if low.shape != (F.NUM_JOINTS - 1, 3) or high.shape != low.shape:
        raise MpgymError(f"joint limits must be (23, 3) arrays; got {low.shape}, {high.shape}.")
    return float(((r < low) | (r > high)).mean())


# ----------------------------------------------------------------------------------- novelty
@dataclass(frozen=True)
class NoveltyScore:
    """What :func:`novelty` returns (distances: RMS joint distance over the window, mm)."""

    ratio: float
    """``generated_median / heldout_median``: ~0 for copies, ~1 as novel as new data."""
    generated_median_mm: float
    """Median distance of generated windows to their nearest training window."""
    heldout_median_mm: float
    """Median distance of held-out windows to their nearest training window."""
    copy_fraction: float
    """Fraction of generated windows within :data:`COPY_MM` of a training window."""


def _positions(x: np.ndarray):
    import torch

    return torch.as_tensor(x[..., F.POSITIONS].reshape(len(x), -1))


def novelty(
    generated: np.ndarray, train: Windows | np.ndarray, heldout: Windows | np.ndarray
) -> NoveltyScore:
    """Nearest-training-window distance of generated windows over that of held-out windows.

    On the joint positions in the heading frame (``POSITIONS``, ``(W, 24, 3)`` per window),
    Euclidean over the flattened window, reported as RMS joint distance
    ``d / sqrt(24 W)`` in mm. Pass the training windows with their mirrored copies.

    Args:
        generated: ``(n, W, D)`` raw features.
        train: ``(m, W, D)`` the training windows (or ``Windows``).
        heldout: ``(k, W, D)`` the held-out windows (or ``Windows``).

    Raises:
        MpgymError: windows of different lengths, or held-out windows that all copy training
            ones (median 0).
    """
    from generative.novelty import nearest_neighbour_distances

    gen, tr, held = (
        _windows(v, k)
        for k, v in (("generated", generated), ("train", train), ("heldout", heldout))
    )
    if not gen.shape[1] == tr.shape[1] == held.shape[1]:
        raise MpgymError(
            f"windows must have one length; got generated {gen.shape[1]}, train {tr.shape[1]}, "
            f"heldout {held.shape[1]} frames."
        )
    to_mm = 1000.0 / math.sqrt(F.NUM_JOINTS * gen.shape[1])
    ref = _positions(tr)
    d_gen = nearest_neighbour_distances(_positions(gen), ref).numpy() * to_mm
    d_held = nearest_neighbour_distances(_positions(held), ref).numpy() * to_mm
    held_median = float(np.median(d_held))
    if held_median <= 0:
        raise MpgymError("held-out windows all copy training windows; pass a disjoint split.")
    gen_median = float(np.median(d_gen))
    return NoveltyScore(
        ratio=gen_median / held_median,
        generated_median_mm=gen_median,
        heldout_median_mm=held_median,
        copy_fraction=float((d_gen < COPY_MM).mean()),
    )


# ----------------------------------------------------------------------------------- all of it
@dataclass(frozen=True)
class MotionScores:
    """Every score of one model's generated windows, next to the data's own values.

    "Data" values are computed on training windows drawn with the generated windows' labels
    (the draws of the FD floor, pooled), so a model is compared with data of the same mix.
    """

    fd: float
    """FD(generated, held-out) of classifier embeddings."""
    fd_floor: float
    """FD(training subsample, held-out) with as many windows (mean over draws)."""
    fd_floor_std: float
    """Spread of the floor over the draws."""
    recognition_accuracy: float
    """Fraction of generated windows classified as their label."""
    diversity: float
    """Mean embedding distance of random generated pairs."""
    data_diversity: float
    """The same for the label-matched training windows."""
    foot_skating: float
    """Fraction of contact steps that skate."""
    data_foot_skating: float
    """The same for the data."""
    penetration_mm: float
    """Mean foot penetration below the ground."""
    data_penetration_mm: float
    """The same for the data."""
    floating_mm: float
    """Mean foot clearance above the ground."""
    data_floating_mm: float
    """The same for the data."""
    joint_limit_violations: float
    """Fraction of joint-angle values outside the training range plus margin."""
    data_joint_limit_violations: float
    """The same for the held-out windows."""
    novelty: float
    """Novelty ratio (generated over held-out median nearest-training distance)."""
    novelty_generated_mm: float
    """Median nearest-training distance of the generated windows."""
    novelty_heldout_mm: float
    """Median nearest-training distance of the held-out windows."""
    copy_fraction: float
    """Fraction of generated windows that copy a training window."""
    n_generated: int
    """Generated windows scored."""

    @property
    def fd_over_floor(self) -> float:
        """``fd / fd_floor``."""
        return self.fd / self.fd_floor if self.fd_floor > 0 else math.inf


def score(
    classifier: MotionClassifier,
    generated: np.ndarray,
    labels: Sequence[str] | np.ndarray,
    *,
    train: Windows,
    heldout: Windows,
    generator: np.random.Generator | None = None,
    limits: JointLimits | None = None,
) -> MotionScores:
    """All the scores of one model's generated windows.

    Args:
        classifier: the motion classifier (trained on ``train``).
        generated: ``(n, W, D)`` raw features, ``n >= 2``, ideally one per held-out window
            with its label.
        labels: ``(n,)`` their label names.
        train: training ``Windows`` (mirrored copies included).
        heldout: held-out ``Windows``.
        generator: draws the floor subsamples and the diversity pairs (default: seed 0).
        limits: joint limits (default: :func:`data_joint_limits` of ``train``).

    Returns:
        :class:`MotionScores`.
    """
    g = generator if generator is not None else np.random.default_rng(0)
    gen = _windows(generated, "generated", min_frames=2)
    if len(gen) < 2:
        raise MpgymError(f"score needs at least 2 generated windows; got {len(gen)}.")
    names = np.asarray(labels).astype(str)
    fd = fd_report(classifier, gen, heldout, train, labels=names, generator=g)
    # the data reference: training windows with the generated labels (a fresh draw per subsample)
    train_x = _windows(train, "train")
    idx = np.concatenate(
        [matched_indices(_label_names(train), names, g) for _ in range(FLOOR_SUBSAMPLES)]
    )
    data = train_x[idx]
    limits = limits if limits is not None else data_joint_limits(train_x)
    feet_gen, feet_data = feet_from_features(gen), feet_from_features(data)
    c_gen, c_data = clearance_from_feet(feet_gen), clearance_from_feet(feet_data)
    nov = novelty(gen, train_x, heldout)
    e_data = classifier.embed(data[: len(gen)])  # one draw, as many windows as generated
    return MotionScores(
        fd=fd.fd,
        fd_floor=fd.floor,
        fd_floor_std=fd.floor_std,
        recognition_accuracy=recognition_accuracy(classifier, gen, names),
        diversity=diversity(classifier.embed(gen), generator=g),
        data_diversity=diversity(e_data, generator=g),
        foot_skating=skating_from_feet(feet_gen),
        data_foot_skating=skating_from_feet(feet_data),
        penetration_mm=float(np.maximum(-c_gen, 0).mean() * 1000),
        data_penetration_mm=float(np.maximum(-c_data, 0).mean() * 1000),
        floating_mm=float(np.maximum(c_gen, 0).mean() * 1000),
        data_floating_mm=float(np.maximum(c_data, 0).mean() * 1000),
        joint_limit_violations=joint_limit_violations(gen, limits),
        data_joint_limit_violations=joint_limit_violations(_windows(heldout, "heldout"), limits),
        novelty=nov.ratio,
        novelty_generated_mm=nov.generated_median_mm,
        novelty_heldout_mm=nov.heldout_median_mm,
        copy_fraction=nov.copy_fraction,
        n_generated=len(gen),
    )
