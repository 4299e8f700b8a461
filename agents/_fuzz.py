"""Loader entry points for the mutation fuzzer (:func:`mpgym.fuzz.fuzz_loader`).

Each function is what a user does with a file: load an agent checkpoint (or a replay buffer)
and ask the loaded agent for an action. Importable in a fresh interpreter; used by
``tests/agents/test_fuzz_checkpoints.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


def _act(agent: Any) -> None:
    """One greedy action for a valid observation: the loaded state must be usable."""
    space = agent.env.observation_space
    space.seed(0)
    agent.predict(space.sample(), deterministic=True)


def load(algo: str, path: str) -> None:
    """``get_algorithm(algo).load(path)`` (a checkpoint or run directory), then ``predict``."""
    from agents.registry import get_algorithm

    _act(get_algorithm(algo).load(path))


BUFFER_AGENT: dict[str, Any] = {"hidden": (8,), "buffer_size": 500}
"""The DQN config (on CartPole-v1) that :func:`load_replay_buffer` loads a buffer into."""


def load_replay_buffer(path: str) -> None:
    """``DQN.load_replay_buffer(path)`` into a fresh CartPole DQN, then sample from it."""
    from agents.deep.dqn import DQN, DQNConfig

    agent = DQN("CartPole-v1", dataclasses.replace(DQNConfig(), **BUFFER_AGENT))
    agent.load_replay_buffer(path)
    if len(agent.buffer):
        agent.buffer.sample(4, np.random.default_rng(0))


PACKED_BUFFER: dict[str, Any] = {"capacity": 40, "obs_dim": 13}
"""The uint8 buffer that :func:`load_packed_replay_buffer` loads a bit-packed buffer into."""


def load_packed_replay_buffer(path: str) -> None:
    """A bit-packed buffer file (binary uint8 images) into a fresh buffer, then sample from it."""
    from agents.deep.buffers import ReplayBuffer
    from agents.deep.buffers import load_replay_buffer as load

    buf = ReplayBuffer(PACKED_BUFFER["capacity"], PACKED_BUFFER["obs_dim"], obs_dtype=np.uint8)
    load(buf, path, kind="dqn-replay-buffer", check_actions=lambda a: None)
    if len(buf):
        buf.sample(4, np.random.default_rng(0))


# -- structure-aware entries: the checkpoint's parts as separate files ------------------------
# Byte mutations of a whole checkpoint mostly break the safetensors header, so few cases reach
# the agent's own checks. These entries read the parts -- ``config.json``, ``meta.json`` and
# ``tensors.safetensors`` (no metadata) -- assemble a well-formed checkpoint from them in a
# temporary directory elsewhere, and load that: mutations then land in the config values, the
# counters and generator states, and the tensors' shapes and values.

PARTS = ("config.json", "meta.json", "tensors.safetensors")
"""The files of a checkpoint split by :func:`split_checkpoint`."""


def split_checkpoint(path: str) -> dict[str, bytes]:
    """The parts of a checkpoint (for seeds): ``{name: bytes}`` with the names of ``PARTS``."""
    import json

    from safetensors.torch import save

    from mpgym.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    meta = dict(ckpt.meta, kind=ckpt.kind)
    return {"config.json": json.dumps(ckpt.config, indent=1).encode(),
            "meta.json": json.dumps(meta, indent=1).encode(),
            "tensors.safetensors": save(dict(ckpt.state_dict))}


def load_parts(algo: str, directory: str) -> None:
    """``load`` of a checkpoint assembled from the mutated parts of :func:`split_checkpoint`."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from safetensors import SafetensorError
    from safetensors.torch import load

    from agents.registry import get_algorithm
    from mpgym.checkpoint import save_checkpoint
    from mpgym.errors import MpgymError

    d = Path(directory)
    try:
        config = json.loads((d / "config.json").read_text())
        meta = json.loads((d / "meta.json").read_text())
        tensors = load((d / "tensors.safetensors").read_bytes())
    except (ValueError, UnicodeDecodeError, SafetensorError) as exc:
        raise MpgymError(f"unreadable checkpoint part: {exc}") from None
    if not isinstance(meta, dict):
        raise MpgymError("meta.json must hold a JSON object.")
    kind = meta.pop("kind", algo)
    tmp = Path(tempfile.mkdtemp(prefix="mpgym-fuzz-parts-"))
    try:
        save_checkpoint(tmp / "checkpoint.safetensors", tensors, kind=str(kind), config=config,
                        meta=meta)
        _act(get_algorithm(algo).load(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
