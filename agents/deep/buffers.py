"""Experience storage in preallocated arrays: replay (DQN, SAC, TD3) and rollout (A2C, PPO) buffers.

Nothing here holds Python objects per transition: each field is one NumPy array written in
place, and sampling is one fancy-indexing gather per field. A replay buffer's stored
transitions are written to and read from one safetensors file (:func:`save_replay_buffer`,
:func:`load_replay_buffer`), beside the agent's checkpoint; binary image observations
(MinAtar's) are stored there eight to a byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from agents.deep.common import gae
from mpgym.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

BUFFER_FILE = "replay_buffer.safetensors"
"""File name of the replay buffer saved beside a checkpoint."""

REPLAY_FIELDS = ("obs", "next_obs", "actions", "rewards", "terminated")
"""The arrays of a :class:`ReplayBuffer` that its file holds, in this order."""
OBS_FIELDS = ("obs", "next_obs")
"""The observation arrays, stored bit-packed when every value is 0 or 1."""


@dataclass
class ReplayBatch:
    """A sampled minibatch: observations ``[B, obs_dim]``, actions ``[B, *shape]``, rest ``[B]``."""

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    next_obs: Tensor
    terminated: Tensor


class ReplayBuffer:
    """A ring buffer of transitions ``(s, a, r, s', terminated)`` (Lin 1992; Mnih et al. 2015).

    ``s'`` is stored explicitly, so the true final observation of a time-limited episode is
    kept, and ``terminated`` (not ``truncated``) decides whether ``s'`` is bootstrapped.

    Args:
        capacity: number of transitions kept; the oldest are overwritten.
        obs_dim: length of an observation vector.
        action_shape: shape of one action: ``()`` for Discrete indices (DQN), ``(act_dim,)``
            for Box actions (SAC, TD3).
        action_dtype: ``np.int64`` for indices, ``np.float32`` for Box actions.
        obs_dtype: how observations are stored: ``np.float32``, or ``np.uint8`` for images whose
            encoded values are integers in ``[0, 255]`` (uint8 pixels, MinAtar's booleans;
            :func:`agents.deep.features.storage_dtype`) -- a quarter of the memory, exact, as
            stable-baselines3 keeps image buffers. :meth:`gather_obs` returns float32 either way.
    """

    def __init__(self, capacity: int, obs_dim: int, action_shape: tuple[int, ...] = (),
                 action_dtype: type = np.int64, obs_dtype: type = np.float32):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if np.dtype(obs_dtype) not in (np.float32, np.uint8):
            raise ValueError(f"obs_dtype must be float32 or uint8, got {np.dtype(obs_dtype)}")
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), obs_dtype)
        self.next_obs = np.zeros((capacity, obs_dim), obs_dtype)
        self.actions = np.zeros((capacity, *action_shape), action_dtype)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(
        self, obs: np.ndarray, action: int | np.ndarray, reward: float, next_obs: np.ndarray,
        terminated: bool
    ) -> None:
        """Store one transition, overwriting the oldest when full."""
        i = self.pos
        self.obs[i] = obs
        self.actions[i] = action
        self.rewards[i] = reward
        self.next_obs[i] = next_obs
        self.terminated[i] = terminated
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample_indices(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform indices in ``[0, len(self))``, with replacement."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        return rng.integers(0, self.size, size=batch_size)

    def gather_obs(self, idx: np.ndarray, *, next_obs: bool = False) -> Tensor:
        """The (next) observations at ``idx`` (any index shape) as a float32 tensor."""
        rows = (self.next_obs if next_obs else self.obs)[idx]
        return torch.from_numpy(rows.astype(np.float32, copy=False))

    def sample(self, batch_size: int, rng: np.random.Generator) -> ReplayBatch:
        """A uniform minibatch of ``batch_size`` stored transitions."""
        idx = self.sample_indices(batch_size, rng)
        return ReplayBatch(
            obs=self.gather_obs(idx),
            actions=torch.from_numpy(self.actions[idx]),
            rewards=torch.from_numpy(self.rewards[idx]),
            next_obs=self.gather_obs(idx, next_obs=True),
            terminated=torch.from_numpy(self.terminated[idx]),
        )


def save_replay_buffer(buf: ReplayBuffer, path: str | Path, *, kind: str) -> Path:
    """Write the stored transitions of ``buf`` (safetensors, atomically).

    The file holds the first ``buf.size`` rows of each of :data:`REPLAY_FIELDS` and the meta
    ``{"pos", "size", "capacity", "obs_bits"}``, under the checkpoint ``kind``
    (``"dqn-replay-buffer"``). When the observations are stored as uint8 and every value is 0
    or 1 (MinAtar's channels), ``obs_bits`` is true and each observation row is saved as
    ``np.packbits`` of it: an eighth of the bytes, exact (MinAtar Breakout's 100,000
    transitions: ~10 MB instead of ~80 MB, small enough to keep a long run's state with it).
    """
    n = buf.size
    arrays = {name: getattr(buf, name)[:n] for name in REPLAY_FIELDS}
    bits = buf.obs.dtype == np.uint8 and all(
        not n or int(arrays[name].max()) <= 1 for name in OBS_FIELDS)
    if bits:
        for name in OBS_FIELDS:
            arrays[name] = np.packbits(arrays[name], axis=1)
    return save_checkpoint(path, arrays, kind=kind, meta={
        "pos": buf.pos, "size": n, "capacity": buf.capacity, "obs_bits": bits})


def load_replay_buffer(
    buf: ReplayBuffer, path: str | Path, *, kind: str,
    check_actions: Callable[[Tensor], str | None],
) -> None:
    """Read a file written by :func:`save_replay_buffer` into ``buf``, checked first.

    Each array must have ``buf``'s row shape and dtype for ``size`` rows (bit-packed
    observations: ``ceil(obs_dim / 8)`` uint8 bytes a row, for a uint8 buffer), float arrays
    must be finite, and ``check_actions`` (called with the ``[size, ...]`` actions when there are
    any) returns what is wrong with them, or None. ``buf`` is left untouched on refusal.

    Raises:
        CheckpointError: not a buffer of this ``kind``, or one that does not fit ``buf``
            (shapes, dtypes, size and position, non-finite values, the actions' own check).
    """
    ckpt = load_checkpoint(path, expected_kind=kind)
    meta, t = ckpt.meta, ckpt.state_dict
    meta = meta if isinstance(meta, dict) else {}
    size, pos, bits = meta.get("size"), meta.get("pos"), meta.get("obs_bits", False)
    size = size if isinstance(size, int) and not isinstance(size, bool) else -1
    pos = pos if isinstance(pos, int) and not isinstance(pos, bool) else -1
    if not 0 <= size <= buf.capacity or not 0 <= pos < buf.capacity or (
            size < buf.capacity and pos != size):
        raise CheckpointError(f"{path}: replay buffer size {size!r} / position {pos!r} do "
                              f"not fit a buffer of capacity {buf.capacity}.")
    if not isinstance(bits, bool) or (bits and buf.obs.dtype != np.uint8):
        raise CheckpointError(f"{path}: replay buffer 'obs_bits' must be true (a buffer of "
                              f"uint8 observations) or false, got {bits!r} for "
                              f"{buf.obs.dtype} observations.")
    obs_dim = buf.obs.shape[1]
    for name in REPLAY_FIELDS:
        like = getattr(buf, name)
        shape, dtype = (size, *like.shape[1:]), torch.from_numpy(like[:0]).dtype
        if bits and name in OBS_FIELDS:
            shape = (size, -(-obs_dim // 8))
        x = t.get(name)
        if x is None or tuple(x.shape) != shape or x.dtype != dtype:
            got = "missing" if x is None else f"{tuple(x.shape)} {x.dtype}"
            raise CheckpointError(f"{path}: replay buffer {name!r} must be {shape} {dtype}, "
                                  f"got {got}.")
        if dtype == torch.float32 and not bool(torch.isfinite(x).all()):
            raise CheckpointError(f"{path}: replay buffer {name!r} holds NaN or inf.")
    problem = check_actions(t["actions"]) if size else None
    if problem:
        raise CheckpointError(f"{path}: replay buffer actions must be {problem}.")
    for name in REPLAY_FIELDS:
        x = t[name].numpy()
        if bits and name in OBS_FIELDS:
            x = np.unpackbits(x, axis=1, count=obs_dim)
        getattr(buf, name)[:size] = x
    buf.size, buf.pos = size, pos


@dataclass
class RolloutBatch:
    """A flattened on-policy rollout, ``[T * N, ...]`` tensors."""

    obs: Tensor
    actions: Tensor
    log_probs: Tensor
    advantages: Tensor
    returns: Tensor
    values: Tensor
    masks: Tensor | None = None
    """``[T * N, A]`` bool: the allowed actions of each step (``action_masks``), else None."""


class RolloutBuffer:
    """``n_steps`` steps of ``n_envs`` environments, laid out ``[T, N, ...]``.

    Each step stores ``V(s'_t)`` of the true next state as well, so :func:`gae` can bootstrap
    truncated episodes from their final observation and never from the reset one.
    """

    def __init__(
        self, n_steps: int, n_envs: int, obs_dim: int, action_shape: tuple[int, ...],
        discrete: bool, mask_actions: int = 0,
    ):
        self.n_steps, self.n_envs = n_steps, n_envs
        self.masks = np.ones((n_steps, n_envs, mask_actions), bool) if mask_actions else None
        """Allowed actions per step when the agent masks its ``mask_actions`` actions."""
        self.obs = np.zeros((n_steps, n_envs, obs_dim), np.float32)
        self.actions = np.zeros(
            (n_steps, n_envs, *action_shape), np.int64 if discrete else np.float32
        )
        self.log_probs = np.zeros((n_steps, n_envs), np.float32)
        self.rewards = np.zeros((n_steps, n_envs), np.float32)
        self.values = np.zeros((n_steps, n_envs), np.float32)
        self.next_values = np.zeros((n_steps, n_envs), np.float32)
        self.terminated = np.zeros((n_steps, n_envs), np.float32)
        self.dones = np.zeros((n_steps, n_envs), np.float32)
        self.valid = np.ones((n_steps, n_envs), bool)
        """False at the reset-only steps of next-step autoreset, which are not transitions."""

    def finish(self, gamma: float, lam: float) -> RolloutBatch:
        """GAE advantages and value targets of the valid steps, flattened to ``[<= T * N]``.

        Steps marked invalid (``valid`` false) are dropped; they always follow an episode end,
        which cuts the GAE trace, so they never enter another step's advantage.
        """
        adv = gae(
            self.rewards, self.values, self.next_values, self.terminated, self.dones, gamma, lam
        )
        ret = adv + self.values
        n = self.n_steps * self.n_envs
        keep = None if self.valid.all() else self.valid.reshape(n)

        def flat(x: np.ndarray) -> Tensor:
            x = x.reshape(n, *x.shape[2:])
            return torch.from_numpy(x if keep is None else x[keep])

        return RolloutBatch(
            obs=flat(self.obs),
            actions=flat(self.actions),
            log_probs=flat(self.log_probs),
            advantages=flat(adv),
            returns=flat(ret),
            values=flat(self.values),
            masks=None if self.masks is None else flat(self.masks),
        )
