"""Foot locking: planted feet stop sliding, the rest is kept, features stay consistent."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bodies.motion.cleanup import FootLockConfig, foot_lock, planted, root_steps_holding_feet
from bodies.motion.dataset import Motion
from bodies.motion.features import (
    CONTACTS,
    FOOT_JOINTS,
    FPS,
    POSITIONS,
    ROOT_VELOCITY,
    D,
    features_to_motion,
    motion_to_features,
    world_joints,
)
from mpgym.errors import MpgymError

T = 10
LOCKED = slice(2, 7)  # frames whose contact channel of the left ankle is on


def sliding_motion(seed: int = 0) -> np.ndarray:
    """``(T, D)`` features of a turning, moving body with a random pose whose left ankle
    (``FOOT_JOINTS[0]``) is labelled planted at frames 2..6 although the body walks on at
    0.6 m/s: that ankle slides during its contact."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    yaw = 0.02 * t + 0.3
    orient = np.stack([np.zeros(T), yaw, np.zeros(T)], -1)
    body = 0.2 * rng.standard_normal((23, 3)) + 0.01 * t[:, None, None] * rng.standard_normal(3)
    transl = np.stack([0.02 * t, np.full(T, 0.9), 0.01 * t + 0.001 * t**2], -1)
    feats = motion_to_features(
        Motion(label="x", fps=FPS, global_orient=orient, body_pose=body, transl=transl)
    )
    feats[:, CONTACTS] = 0.0
    feats[LOCKED, CONTACTS.start] = 1.0
    return feats.astype(np.float32)


def left_ankle_world(feats: np.ndarray) -> np.ndarray:
    return world_joints(feats)[..., FOOT_JOINTS[0], :]


def test_planted_ankle_is_pinned_and_other_steps_keep_their_root_motion():
    x = sliding_motion()
    before = left_ankle_world(x)
    assert np.linalg.norm(np.diff(before[LOCKED, [0, 2]], axis=0), axis=-1).min() > 0.01
    out = foot_lock(x)
    after = left_ankle_world(out)
    slide = np.linalg.norm(np.diff(after[2:8][:, [0, 2]], axis=0), axis=-1)
    np.testing.assert_allclose(slide, 0.0, atol=1e-5)  # steps 2->3 .. 6->7 start planted
    # steps starting at unlocked frames keep their velocity; only ROOT_VELOCITY may change
    free = [0, 1, 7, 8]
    np.testing.assert_array_equal(out[free, ROOT_VELOCITY], x[free, ROOT_VELOCITY])
    np.testing.assert_array_equal(out[-1, ROOT_VELOCITY], out[-2, ROOT_VELOCITY])
    keep = np.ones(D, bool)
    keep[ROOT_VELOCITY] = False
    np.testing.assert_array_equal(out[:, keep], x[:, keep])
    assert out.dtype == np.float32 and out.shape == x.shape


def test_hand_computed_example():
    """Standing still, the planted left ankle drifting 1 cm per frame to +x: v_x = -0.3 m/s."""
    x = np.zeros((4, D), np.float32)
    j = POSITIONS.start + 3 * FOOT_JOINTS[0]
    x[:, j] = 0.01 * np.arange(4)
    x[:, CONTACTS.start] = 1.0
    out = foot_lock(x)
    np.testing.assert_allclose(out[:, ROOT_VELOCITY], [[-0.3, 0.0]] * 4, atol=1e-6)
    np.testing.assert_allclose(root_steps_holding_feet(x)[:, 0], [[-0.01, 0.0]] * 3, atol=1e-7)


def test_two_planted_joints_get_the_least_squares_root_step():
    """Ankle drifting +1 cm/frame, toe -1 cm/frame in x: the mean root step is 0."""
    x = np.zeros((3, D), np.float32)
    x[:, ROOT_VELOCITY.start] = 0.7
    x[:, POSITIONS.start + 3 * FOOT_JOINTS[0]] = 0.01 * np.arange(3)
    x[:, POSITIONS.start + 3 * FOOT_JOINTS[2]] = -0.01 * np.arange(3)
    x[:, CONTACTS.start] = x[:, CONTACTS.start + 2] = 1.0
    np.testing.assert_allclose(foot_lock(x)[:, ROOT_VELOCITY], 0.0, atol=1e-6)


def test_round_trip_through_the_feature_inverse():
    out = foot_lock(sliding_motion())
    again = motion_to_features(features_to_motion(out))
    # contacts are relabelled from kinematics by motion_to_features; everything else returns
    np.testing.assert_allclose(again[:, : CONTACTS.start], out[:, : CONTACTS.start], atol=1e-5)


def test_idempotent_and_identity_without_contacts_or_strength():
    x = sliding_motion(1)
    once = foot_lock(x)
    np.testing.assert_allclose(foot_lock(once), once, atol=1e-6)
    np.testing.assert_array_equal(foot_lock(x, FootLockConfig(strength=0.0)), x)
    none = x.copy()
    none[:, CONTACTS] = 0.0
    np.testing.assert_array_equal(foot_lock(none), none)
    half = foot_lock(x, FootLockConfig(strength=0.5))
    np.testing.assert_allclose(
        half[:, ROOT_VELOCITY], (x[:, ROOT_VELOCITY] + once[:, ROOT_VELOCITY]) / 2, atol=1e-6
    )


def test_steps_that_would_need_a_fast_root_correction_are_left_alone():
    """The ankle jumps 10 cm (3 m/s) over step 1 -> 2, 1 cm over the others: only the slow
    steps are locked, and a second pass changes nothing."""
    x = np.zeros((4, D), np.float32)
    x[:, POSITIONS.start + 3 * FOOT_JOINTS[0]] = [0.0, 0.01, 0.11, 0.12]
    x[:, CONTACTS.start] = 1.0
    out = foot_lock(x, FootLockConfig(max_slide=2.0))
    np.testing.assert_allclose(out[:, ROOT_VELOCITY.start], [-0.3, 0.0, -0.3, -0.3], atol=1e-6)
    np.testing.assert_array_equal(foot_lock(out, FootLockConfig(max_slide=2.0)), out)
    no_limit = foot_lock(x, FootLockConfig(max_slide=float("inf")))
    np.testing.assert_allclose(
        no_limit[:, ROOT_VELOCITY.start], [-0.3, -3.0, -0.3, -0.3], atol=1e-5
    )


def test_threshold_and_step_rule():
    x = np.zeros((4, D), np.float32)
    x[:, CONTACTS.start] = [0.9, 0.6, 0.2, 0.9]
    np.testing.assert_array_equal(planted(x)[:, 0], [True, True, False])
    np.testing.assert_array_equal(
        planted(x, FootLockConfig(step="both"))[:, 0], [True, False, False]
    )
    np.testing.assert_array_equal(
        planted(x, FootLockConfig(threshold=0.7))[:, 0], [True, False, False]
    )


@pytest.mark.parametrize("lead", [(), (2,), (1, 2)])
def test_batch_shapes_match_single_motions(lead):
    xs = np.stack([sliding_motion(s) for s in range(int(np.prod(lead, dtype=int)))])
    batch = xs.reshape(*lead, T, D)
    out = foot_lock(torch.as_tensor(batch))
    assert out.shape == batch.shape
    for i, x in enumerate(xs):
        np.testing.assert_allclose(out.reshape(-1, T, D)[i], foot_lock(x), atol=1e-7)


def test_single_frame_is_returned_unchanged():
    x = sliding_motion()[:1]
    np.testing.assert_array_equal(foot_lock(x), x)


@pytest.mark.parametrize(
    ("feats", "config", "match"),
    [
        (np.zeros((3, D - 1)), FootLockConfig(), "shape"),
        (np.zeros(D), FootLockConfig(), "shape"),
        (np.full((3, D), np.nan), FootLockConfig(), "NaN"),
        (np.zeros((3, D)), FootLockConfig(strength=2.0), "strength"),
        (np.zeros((3, D)), FootLockConfig(step="end"), "step"),
        (np.zeros((3, D)), FootLockConfig(threshold=float("inf")), "threshold"),
        (np.zeros((3, D)), FootLockConfig(max_slide=0.0), "max_slide"),
    ],
)
def test_bad_input_is_refused(feats, config, match):
    with pytest.raises(MpgymError, match=match):
        foot_lock(feats, config)


def test_mdm_applies_it_when_configured():
    """MDM's ``foot_lock`` option equals the cleanup applied to its un-cleaned samples."""
    from bodies.motion.mdm import MDM, PRESETS

    torch.manual_seed(0)
    config = dataclasses.replace(PRESETS["tiny"], labels=("walk", "run"), foot_lock=False)
    raw = MDM(config).eval()
    locked = MDM(dataclasses.replace(config, foot_lock=True)).eval()
    locked.load_state_dict(raw.state_dict())
    labels = ["walk", "run", "walk"]
    a = raw.generate_windows(labels, generator=torch.Generator().manual_seed(3))
    b = locked.generate_windows(labels, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(b, foot_lock(a), atol=1e-6)
    a = raw.generate(2, 1.0, labels=["run"], generator=torch.Generator().manual_seed(4))
    b = locked.generate(2, 1.0, labels=["run"], generator=torch.Generator().manual_seed(4))
    np.testing.assert_allclose(b, foot_lock(a), atol=1e-6)


def test_mdm_configs_saved_before_the_option_load_with_it_on():
    from bodies.motion.mdm import MDMConfig, config_from_dict

    data = dataclasses.asdict(MDMConfig(foot_lock=False))
    data["labels"] = list(data["labels"])
    assert config_from_dict(dict(data)).foot_lock is False
    del data["foot_lock"]
    assert config_from_dict(data).foot_lock is True
    with pytest.raises(MpgymError, match="foot_lock"):
        MDMConfig(foot_lock=1).check()
