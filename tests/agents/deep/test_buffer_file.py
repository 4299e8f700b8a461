"""The replay buffer's file: exact round trips, bit-packed binary images, refusals."""

import numpy as np
import pytest

from agents.deep.buffers import ReplayBuffer, load_replay_buffer, save_replay_buffer
from mpgym.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

KIND = "test-replay-buffer"


def no_check(actions):
    return None


def filled(obs_dtype, high, *, capacity=50, n=73, obs_dim=13, seed=0):
    """A wrapped-around buffer of random observations in ``[0, high]``."""
    rng = np.random.default_rng(seed)
    buf = ReplayBuffer(capacity, obs_dim, obs_dtype=obs_dtype)
    for i in range(n):
        buf.add(rng.integers(0, high + 1, obs_dim), i % 3, float(i),
                rng.integers(0, high + 1, obs_dim), i % 7 == 0)
    return buf


def assert_same(a: ReplayBuffer, b: ReplayBuffer) -> None:
    assert (a.pos, a.size) == (b.pos, b.size)
    for name in ("obs", "next_obs", "actions", "rewards", "terminated"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("obs_dim", [8, 13, 400])
def test_binary_uint8_observations_are_stored_eight_to_a_byte_and_come_back_exactly(
        tmp_path, obs_dim):
    buf = filled(np.uint8, 1, obs_dim=obs_dim)
    path = save_replay_buffer(buf, tmp_path / "b.safetensors", kind=KIND)
    ckpt = load_checkpoint(path, expected_kind=KIND)
    assert ckpt.meta["obs_bits"] is True
    assert tuple(ckpt.state_dict["obs"].shape) == (50, -(-obs_dim // 8))
    back = ReplayBuffer(50, obs_dim, obs_dtype=np.uint8)
    load_replay_buffer(back, path, kind=KIND, check_actions=no_check)
    assert_same(buf, back)


@pytest.mark.parametrize("dtype,high", [(np.uint8, 255), (np.float32, 1)])
def test_other_observations_are_stored_as_they_are(tmp_path, dtype, high):
    buf = filled(dtype, high)
    path = save_replay_buffer(buf, tmp_path / "b.safetensors", kind=KIND)
    ckpt = load_checkpoint(path, expected_kind=KIND)
    assert ckpt.meta["obs_bits"] is False
    assert tuple(ckpt.state_dict["obs"].shape) == (50, 13)
    back = ReplayBuffer(50, 13, obs_dtype=dtype)
    load_replay_buffer(back, path, kind=KIND, check_actions=no_check)
    assert_same(buf, back)


def test_a_file_without_the_bits_flag_still_loads(tmp_path):
    # files written before observations were packed carry no "obs_bits"
    buf = filled(np.uint8, 1)
    arrays = {name: getattr(buf, name) for name in
              ("obs", "next_obs", "actions", "rewards", "terminated")}
    path = save_checkpoint(tmp_path / "b.safetensors", arrays, kind=KIND,
                           meta={"pos": buf.pos, "size": buf.size, "capacity": 50})
    back = ReplayBuffer(50, 13, obs_dtype=np.uint8)
    load_replay_buffer(back, path, kind=KIND, check_actions=no_check)
    assert_same(buf, back)


def test_packed_files_are_refused_where_they_do_not_fit(tmp_path):
    path = save_replay_buffer(filled(np.uint8, 1), tmp_path / "b.safetensors", kind=KIND)
    untouched = ReplayBuffer(50, 13, obs_dtype=np.float32)
    with pytest.raises(CheckpointError, match="obs_bits"):
        load_replay_buffer(untouched, path, kind=KIND, check_actions=no_check)
    assert not untouched.obs.any() and untouched.size == 0
    with pytest.raises(CheckpointError, match="'obs' must be \\(50, 3\\)"):
        load_replay_buffer(ReplayBuffer(50, 17, obs_dtype=np.uint8), path, kind=KIND,
                           check_actions=no_check)
    ckpt = load_checkpoint(path, expected_kind=KIND)
    for bad in (1, "yes", None):
        save_checkpoint(tmp_path / "c.safetensors", ckpt.state_dict, kind=KIND,
                        meta={**ckpt.meta, "obs_bits": bad})
        with pytest.raises(CheckpointError, match="obs_bits"):
            load_replay_buffer(ReplayBuffer(50, 13, obs_dtype=np.uint8),
                               tmp_path / "c.safetensors", kind=KIND, check_actions=no_check)
