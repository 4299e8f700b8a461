"""Scoring a motion generator end to end: the windows, the classifier, the generated sets.

The protocol (used by ``mpgym motion eval`` and ``benchmarks/motion.py``):

- Data: the training windows of :func:`bodies.motion.dataset.windows` (``"train"``, mirrored
  copies included) and the held-out ``"test"`` windows (near-copies of training windows or
  their mirrors dropped).
- The classifier (:func:`bodies.motion.classifier.train_classifier`, seed 0) is trained on the
  training windows and cached under ``$MPGYM_CACHE/motion`` (keyed by its config and the data),
  so every model is scored in the same feature space.
- Distribution scores (:func:`bodies.motion.metrics.score`): the model generates, ``repeats``
  times over, one window per held-out window with that window's label, so the generated set
  has the held-out label mix; the FD floor draws training windows with the same labels.
- Recognition accuracy: ``per_label`` generated windows for every label the model knows (the
  held-out split covers only the clips long enough to hold a held-out window).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mpgym.errors import MpgymError

log = logging.getLogger(__name__)

REPEATS = 4
"""Generated windows per held-out window in the distribution scores."""


def cache_dir() -> Path:
    """``$MPGYM_CACHE/motion`` (default ``~/.cache/mpgym/motion``)."""
    root = Path(os.environ.get("MPGYM_CACHE", Path.home() / ".cache" / "mpgym"))
    return root / "motion"


@dataclass(frozen=True)
class EvalData:
    """The windows and the classifier every model is scored with."""

    train: Any
    """Training :class:`~bodies.motion.dataset.Windows` (mirrored copies included)."""
    heldout: Any
    """Held-out ``"test"`` windows."""
    classifier: Any
    """:class:`~bodies.motion.classifier.MotionClassifier` trained on ``train``."""
    classifier_heldout_accuracy: float
    """Its accuracy on ``heldout``."""


def _data_key(train: Any, config: Any) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(train.x).tobytes())
    h.update(np.ascontiguousarray(train.labels).tobytes())
    h.update(repr((train.label_names, asdict(config))).encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=2)
def eval_data(seed: int = 0) -> EvalData:
    """Windows and the classifier (trained once, about a minute, then read from the cache)."""
    from bodies.motion.classifier import MotionClassifier, MotionClassifierConfig, train_classifier
    from bodies.motion.dataset import windows

    train = windows("train", mirror=True)
    heldout = windows("test")
    config = MotionClassifierConfig()
    path = cache_dir() / f"classifier-s{seed}-{_data_key(train, config)}.safetensors"
    clf = None
    if path.is_file():
        try:
            clf = MotionClassifier.load(path)
        except MpgymError as exc:  # a damaged cache is retrained, not trusted
            log.warning("ignoring the cached motion classifier %s (%s)", path, exc)
    if clf is None:
        log.info("training the motion classifier (cached at %s)", path)
        clf = train_classifier(train, config=config, seed=seed)
        clf.save(path)
    return EvalData(train, heldout, clf, float(clf.accuracy(heldout)))


def generate_like(
    model: Any, labels: list[str], *, generator: Any, batch: int = 256
) -> np.ndarray:
    """``model.generate_windows`` over many labels, in batches: ``(len(labels), W, D)``."""
    out = [
        np.asarray(model.generate_windows(labels[i : i + batch], generator=generator))
        for i in range(0, len(labels), batch)
    ]
    return np.concatenate(out).astype(np.float32)


def evaluate_generator(
    model: Any, *, per_label: int = 32, repeats: int = REPEATS, seed: int = 0
) -> dict[str, Any]:
    """Every score of one generator against the held-out windows (module docstring).

    Args:
        model: a generator (``generate_windows``, ``label_names``).
        per_label: generated windows per label for the recognition accuracy.
        repeats: generated windows per held-out window for the distribution scores.
        seed: seeds the generator's sampling and the metric subsamples.

    Returns:
        A flat dict of the :class:`~bodies.motion.metrics.MotionScores` fields plus
        ``fd_over_floor``, ``recognition_all_labels``, ``classifier_heldout_accuracy`` and
        the generation time.
    """
    import torch

    from bodies.motion.metrics import recognition_accuracy, score

    data = eval_data()
    names = data.heldout.label_names
    known = set(model.label_names)
    missing = sorted({names[i] for i in data.heldout.labels} - known)
    if missing:
        raise MpgymError(
            f"the model does not know the held-out labels {missing}; it was trained on "
            f"{sorted(known)}. Motion eval scores generators of the built-in clips."
        )
    g = torch.Generator().manual_seed(seed)
    held_labels = [names[i] for i in data.heldout.labels] * repeats
    t0 = time.perf_counter()
    gen = generate_like(model, held_labels, generator=g)
    seconds = time.perf_counter() - t0
    scores = score(
        data.classifier,
        gen,
        held_labels,
        train=data.train,
        heldout=data.heldout,
        generator=np.random.default_rng(seed),
    )
    all_labels = [lab for lab in model.label_names for _ in range(per_label)]
    rec = generate_like(model, all_labels, generator=g)
    out = asdict(scores)
    out["fd_over_floor"] = scores.fd_over_floor
    out["recognition_all_labels"] = recognition_accuracy(data.classifier, rec, all_labels)
    out["classifier_heldout_accuracy"] = data.classifier_heldout_accuracy
    out["generate_windows_per_s"] = len(gen) / seconds if seconds > 0 else math.inf
    return out


def format_scores(name: str, scores: dict[str, Any]) -> str:
    """A readable block of the scores, model next to data where both exist."""
    from mpgym.bench import format_table

    pairs = [
        ("FD (held-out) / floor", scores["fd"], scores["fd_floor"]),
        ("diversity", scores["diversity"], scores["data_diversity"]),
        ("foot skating", scores["foot_skating"], scores["data_foot_skating"]),
        ("penetration (mm)", scores["penetration_mm"], scores["data_penetration_mm"]),
        ("floating (mm)", scores["floating_mm"], scores["data_floating_mm"]),
        (
            "joint-limit violations",
            scores["joint_limit_violations"],
            scores["data_joint_limit_violations"],
        ),
        ("novelty NN distance (mm)", scores["novelty_generated_mm"], scores["novelty_heldout_mm"]),
    ]
    rows = [{"score": s, name: m, "data": d} for s, m, d in pairs]
    rows += [
        {"score": "FD / floor", name: scores["fd_over_floor"], "data": 1.0},
        {"score": "recognition (held-out labels)", name: scores["recognition_accuracy"],
         "data": scores["classifier_heldout_accuracy"]},
        {"score": "recognition (all labels)", name: scores["recognition_all_labels"]},
        {"score": "novelty ratio", name: scores["novelty"], "data": 1.0},
    ]
    return format_table(rows)
