"""Motion metrics against hand-computed cases, closed forms and brute force."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from bodies.motion import features as F
from bodies.motion import metrics as M
from bodies.rotations import axis_angle_to_matrix, matrix_to_rot6d
from mpgym.errors import MpgymError

FOOT = np.asarray(F.FOOT_HEIGHTS)


# ------------------------------------------------------------------------------ helpers
def _standing_feats(n: int = 1, t: int = 12) -> np.ndarray:
    """Features ``(n, t, D)`` of a body standing still, feet flat on the ground, rest pose."""
    x = np.zeros((n, t, F.D))
    eye6 = matrix_to_rot6d(torch.eye(3, dtype=torch.float64)).numpy()
    x[..., F.ROT6D] = np.tile(eye6, F.NUM_JOINTS)
    pos = np.zeros((F.NUM_JOINTS, 3))
    pos[:, 1] = 1.0  # every joint 1 m up, except the feet
    for j, h in zip(F.FOOT_JOINTS, FOOT, strict=True):
        pos[j] = (0.1 if j % 2 else -0.1, h, 0.0)
    x[..., F.POSITIONS] = pos.reshape(-1)
    x[..., F.ROOT_HEIGHT] = 1.0
    return x


def _with_feet(x: np.ndarray, feet: np.ndarray) -> np.ndarray:
    """Put foot positions ``(n, t, 4, 3)`` (heading frame) into features ``x``."""
    x = x.copy()
    p = x[..., F.POSITIONS].reshape(*x.shape[:2], F.NUM_JOINTS, 3)
    p[..., list(F.FOOT_JOINTS), :] = feet
    x[..., F.POSITIONS] = p.reshape(*x.shape[:2], -1)
    return x


def _feet(x: np.ndarray) -> np.ndarray:
    return x[..., F.POSITIONS].reshape(*x.shape[:2], F.NUM_JOINTS, 3)[..., list(F.FOOT_JOINTS), :]


class _IdentityClassifier:
    """A stand-in classifier: the embedding is the mean root height and velocity."""

    label_names = ("a", "b")

    def embed(self, x):
        return np.asarray(x)[..., :3].mean(1)


# --------------------------------------------------------------------------- Fréchet distance
def _whitened(n: int, d: int, seed: int) -> np.ndarray:
    """``n`` points in ``d`` dims with sample mean 0 and sample covariance exactly I."""
    z = np.random.default_rng(seed).normal(size=(n, d))
    z -= z.mean(0)
    L = np.linalg.cholesky(np.cov(z, rowvar=False))
    return z @ np.linalg.inv(L).T


def test_frechet_identical_sets_is_zero():
    a = np.random.default_rng(0).normal(size=(50, 4))
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("scale", [1.0, 2.0, 0.5])
def test_frechet_closed_form(scale):
    # N(0, I) against N(mu, s^2 I): |mu|^2 + d (1 + s^2 - 2 s) = |mu|^2 + d (1 - s)^2
    d, mu = 3, np.array([3.0, 4.0, 0.0])
    z = _whitened(40, d, 1)
    got = M.frechet_distance(z, scale * z + mu)
    assert got == pytest.approx(25.0 + d * (1 - scale) ** 2, rel=1e-9)


def test_frechet_bad_input():
    with pytest.raises(MpgymError, match="same width"):
        M.frechet_distance(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(MpgymError, match="n >= 2"):
        M.frechet_distance(np.zeros((1, 2)), np.zeros((3, 2)))
    with pytest.raises(MpgymError, match="NaN"):
        M.frechet_distance(np.full((3, 2), np.nan), np.zeros((3, 2)))


def test_matched_indices_keep_labels_and_avoid_repeats():
    pool = np.array(["a", "a", "b", "a", "b"])
    g = np.random.default_rng(0)
    idx = M.matched_indices(pool, ["b", "a", "b", "a"], g)
    assert pool[idx].tolist() == ["b", "a", "b", "a"]
    assert len(set(idx.tolist())) == 4  # enough of each label: no repeats
    idx = M.matched_indices(pool, ["b"] * 5, g)  # more than the pool has: with replacement
    assert set(pool[idx]) == {"b"}
    with pytest.raises(MpgymError, match="no data windows with label 'c'"):
        M.matched_indices(pool, ["c"], g)


def test_fd_report_floor_is_the_mean_over_label_matched_draws():
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    train = SimpleNamespace(
        x=rng.normal(size=(40, 12, F.D)),
        labels=np.repeat([0, 1], 20),
        label_names=("a", "b"),
    )
    held = rng.normal(size=(10, 12, F.D))
    gen, labels = held + 1.0, ["a"] * 6 + ["b"] * 4
    clf = _IdentityClassifier()
    rep = M.fd_report(
        clf, gen, held, train, labels=labels, subsamples=3, generator=np.random.default_rng(7)
    )
    g = np.random.default_rng(7)
    names = np.array(["a", "b"])[train.labels]
    e = clf.embed(train.x)
    floors = [
        M.frechet_distance(e[M.matched_indices(names, labels, g)], clf.embed(held))
        for _ in range(3)
    ]
    assert rep.floor == pytest.approx(np.mean(floors))
    assert rep.floor_std == pytest.approx(np.std(floors))
    assert rep.fd == pytest.approx(3.0, rel=1e-9)  # every mean moved by 1 in 3 dims
    assert (rep.n_generated, rep.n_heldout) == (10, 10)
    assert M.fd_report(clf, held, held, train).fd == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------------------- diversity
def test_diversity_of_square_corners():
    square = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert M.diversity(square, pairs=None) == pytest.approx((4 + 2 * math.sqrt(2)) / 6)
    sampled = M.diversity(square, pairs=20000, generator=np.random.default_rng(0))
    assert sampled == pytest.approx((4 + 2 * math.sqrt(2)) / 6, rel=0.01)


def test_diversity_never_pairs_a_point_with_itself():
    two = np.array([[0.0], [2.0]])
    assert M.diversity(two, pairs=50) == pytest.approx(2.0)
    with pytest.raises(MpgymError, match="n >= 2"):
        M.diversity(np.zeros((1, 3)))


# ----------------------------------------------------------------------- skating, ground
def _sliding_feet(step_m: float, t: int = 12, lift: float = 0.0) -> np.ndarray:
    """``(1, t, 4, 3)`` feet at their standing heights (+ lift), moving ``step_m`` per frame."""
    feet = np.zeros((1, t, 4, 3))
    feet[..., 1] = FOOT + lift
    feet[..., 2] = step_m * np.arange(t)[:, None]
    return feet


def test_skating_of_hand_built_feet():
    assert M.skating_from_feet(_sliding_feet(0.02)) == 1.0  # 0.6 m/s at 30 fps
    assert M.skating_from_feet(_sliding_feet(0.0)) == 0.0  # planted
    assert M.skating_from_feet(_sliding_feet(0.01)) == 0.0  # 0.3 m/s: under the threshold
    assert M.skating_from_feet(_sliding_feet(0.01), speed_m_s=0.25) == 1.0
    assert M.skating_from_feet(_sliding_feet(0.02, lift=0.2)) == 0.0  # swinging in the air


def test_skating_counts_contact_steps_only():
    feet = _sliding_feet(0.0, t=5)
    feet[0, 2:, 0, 2] = 0.02 * np.arange(3)  # left ankle slides over steps 2->3, 3->4
    feet[0, :, 1:, 1] += 0.2  # the other three joints are lifted: no contact
    assert M.skating_from_feet(feet) == pytest.approx(2 / 4)


def test_skating_from_features_integrates_the_root():
    x = _standing_feats(t=10)
    x[..., F.ROOT_VELOCITY] = (0.0, 0.6)  # the root walks forward at 0.6 m/s
    # feet fixed in the heading frame move with the root: they skate
    assert M.foot_skating(x) == 1.0
    # feet moving back in the heading frame as fast as the root goes forward are planted
    feet = _feet(x).copy()
    feet[..., 2] -= 0.02 * np.arange(10)[None, :, None]
    assert M.foot_skating(_with_feet(x, feet)) == pytest.approx(0.0)


def test_penetration_and_floating_of_hand_built_feet():
    x = _standing_feats(n=2)
    assert M.ground_penetration(x) == pytest.approx(0.0, abs=1e-9)
    assert M.floating(x) == pytest.approx(0.0, abs=1e-9)
    below = _with_feet(x, _feet(x) - np.array([0.0, 0.005, 0.0]))
    assert M.ground_penetration(below) == pytest.approx(5.0)
    assert M.floating(below) == pytest.approx(0.0, abs=1e-9)
    above = _with_feet(x, _feet(x) + np.array([0.0, 0.03, 0.0]))
    assert M.floating(above) == pytest.approx(30.0)
    # the lowest joint over its standing height counts: one toe 5 mm down, the rest lifted
    feet = _feet(x).copy()
    feet[..., 1] += 0.1
    feet[:, :6, 2, 1] = FOOT[2] - 0.005  # half the frames
    mixed = _with_feet(x, feet)
    assert M.ground_penetration(mixed) == pytest.approx(2.5)
    assert M.floating(mixed) == pytest.approx(50.0)


# ----------------------------------------------------------------------------- joint limits
def _posed(rotvecs: np.ndarray) -> np.ndarray:
    """Standing features whose 23 body joints have rotation vectors ``(n, t, 23, 3)``."""
    x = _standing_feats(*rotvecs.shape[:2])
    R = axis_angle_to_matrix(torch.as_tensor(rotvecs))
    x[..., F.ROT6D.start + 6 : F.ROT6D.stop] = (
        matrix_to_rot6d(R).reshape(*rotvecs.shape[:2], -1).numpy()
    )
    return x


def test_joint_rotvecs_round_trip():
    r = np.random.default_rng(0).uniform(-1, 1, (2, 3, 23, 3))
    np.testing.assert_allclose(M.joint_rotvecs(_posed(r)), r, atol=1e-9)


def test_backwards_knee_violates_data_limits():
    left_knee = 3  # joint 4 among the 23 body joints
    r = np.zeros((1, 20, 23, 3))
    r[0, :, left_knee, 0] = np.linspace(0.1, 1.5, 20)  # forward bends only
    limits = M.data_joint_limits(_posed(r), margin=0.1)
    assert limits.low[left_knee, 0] == pytest.approx(0.0)
    assert limits.high[left_knee, 0] == pytest.approx(1.6)
    assert M.joint_limit_violations(_posed(r), limits) == 0.0
    bad = np.zeros((1, 4, 23, 3))
    bad[0, :, left_knee, 0] = -0.5  # bent backwards
    assert M.joint_limit_violations(_posed(bad), limits) == pytest.approx(1 / 69)
    with pytest.raises(MpgymError, match="23, 3"):
        M.joint_limit_violations(_posed(bad), M.JointLimits(np.zeros(3), np.zeros(3)))


# ---------------------------------------------------------------------------------- novelty
def test_novelty_of_copies_is_zero_and_brute_force_otherwise():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(30, 12, F.D))
    held = train[:10] + rng.normal(scale=0.01, size=(10, 12, F.D))
    copy = M.novelty(train[5:15], train, held)
    assert copy.ratio == pytest.approx(0.0, abs=1e-5) and copy.copy_fraction == 1.0
    gen = train[:8] + 0.02
    got = M.novelty(gen, train, held)

    def brute(x):
        p = x[..., F.POSITIONS].reshape(len(x), -1)
        q = train[..., F.POSITIONS].reshape(len(train), -1)
        d = np.sqrt(((p[:, None] - q[None]) ** 2).sum(-1)).min(1)
        return np.median(d) * 1000 / math.sqrt(24 * 12)

    assert got.generated_median_mm == pytest.approx(brute(gen))
    assert got.heldout_median_mm == pytest.approx(brute(held))
    assert got.ratio == pytest.approx(brute(gen) / brute(held))
    assert got.generated_median_mm == pytest.approx(20.0 * math.sqrt(3))  # 2 cm along each axis
    with pytest.raises(MpgymError, match="one length"):
        M.novelty(gen[:, :6], train, held)


# ------------------------------------------------------------------------------ bad input
def test_bad_windows_are_refused():
    with pytest.raises(MpgymError, match=f"\\(N, T, {F.D}\\)"):
        M.foot_skating(np.zeros((2, 12, 5)))
    bad = _standing_feats()
    bad[0, 3, 7] = np.nan
    with pytest.raises(MpgymError, match="NaN"):
        M.ground_penetration(bad)


# -------------------------------------------------------------------------- on the real data
@functools.lru_cache(maxsize=1)
def _real():
    from bodies.motion import dataset
    from bodies.motion.classifier import MotionClassifierConfig, train_classifier

    train, test = dataset.windows("train"), dataset.windows("test")
    clf = train_classifier(train, config=MotionClassifierConfig(steps=60), seed=0)
    return clf, train, test


def test_score_of_the_data_itself():
    clf, train, test = _real()
    labels = np.asarray(test.label_names)[test.labels]
    s = M.score(clf, test.x, labels, train=train, heldout=test)
    assert s.fd == pytest.approx(0.0, abs=1e-6)  # the held-out set against itself
    assert s.fd_floor > 0 and s.novelty == pytest.approx(1.0)
    assert s.joint_limit_violations == s.data_joint_limit_violations
    copies = train.x[
        M.matched_indices(
            np.asarray(train.label_names)[train.labels], labels, np.random.default_rng(0)
        )
    ]
    c = M.score(clf, copies, labels, train=train, heldout=test)
    assert c.novelty == pytest.approx(0.0, abs=1e-5) and c.copy_fraction == 1.0
    assert c.joint_limit_violations == 0.0
    # copies are one more label-matched draw of the data the data values come from
    assert c.foot_skating == pytest.approx(c.data_foot_skating, abs=0.1)
    assert c.penetration_mm == pytest.approx(c.data_penetration_mm, abs=1.0)
    assert c.floating_mm == pytest.approx(c.data_floating_mm, rel=0.3)
    assert c.diversity == pytest.approx(c.data_diversity, rel=0.3)
    assert c.recognition_accuracy > 0.9
