"""Checkpoints: weights in safetensors plus a JSON config, written atomically.

A checkpoint is one ``.safetensors`` file whose header metadata holds ``kind`` (which
algorithm or model wrote it), ``config`` (the JSON of its dataclass config) and ``meta``
(anything else JSON-serialisable: step counts, metrics). Nothing is pickled, so loading a
user's file never executes code, and renaming a Python attribute never breaks an old file.

Writes go to a temporary file in the same directory, are flushed to disk, and replace the
target with ``os.replace`` -- an interrupted run never leaves a half-written checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpgym.errors import MpgymError

FORMAT_VERSION = "1"


class CheckpointError(MpgymError):
    """A checkpoint is missing, corrupt, or of another kind than expected."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    kind: str
    config: dict[str, Any]
    state_dict: dict[str, Any]  # name -> torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode any other output gets (0666 & ~umask).
        mask = os.umask(0)
        os.umask(mask)
        os.fchmod(fd, 0o666 & ~mask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, paths, numpy scalars and tuples to plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    return obj


def save_checkpoint(
    path: str | os.PathLike,
    state_dict: dict[str, Any],
    *,
    kind: str,
    config: Any = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Save tensors (or numpy arrays) with their config, atomically.

    Args:
        path: target file, conventionally ``<run_dir>/checkpoint.safetensors``.
        state_dict: name -> ``torch.Tensor`` or ``numpy.ndarray``.
        kind: what wrote it (``"dqn"``, ``"q-learning"``, ``"nerf"``...), checked on load.
        config: a dataclass or dict, stored as JSON.
        meta: extra JSON-serialisable information.

    Returns:
        The path written.
    """
    import torch
    from safetensors.torch import save

    tensors = {}
    for name, value in state_dict.items():
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        tensors[name] = t.detach().cpu().contiguous().clone()
    metadata = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "config": json.dumps(to_jsonable(config) if config is not None else {}),
        "meta": json.dumps(to_jsonable(meta or {})),
    }
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_checkpoint(
    path: str | os.PathLike, *, expected_kind: str | tuple[str, ...] | None = None
) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` (no pickle is ever executed).

    Args:
        path: the ``.safetensors`` file, or a run directory holding ``checkpoint.safetensors``.
        expected_kind: raise :class:`CheckpointError` if the file was written by something else.

    Raises:
        CheckpointError: missing file, not a safetensors checkpoint, or wrong kind.
    """
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.safetensors"
    if not path.exists():
        raise CheckpointError(
            f"no checkpoint at {path}; expected a .safetensors file written by mpgym."
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for a corrupt header
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({exc}).") from None
    if "kind" not in metadata:
        raise CheckpointError(
            f"{path} is a safetensors file but not an mpgym checkpoint (no 'kind' in its metadata)."
        )
    kind = metadata["kind"]
    if expected_kind is not None:
        accepted = (expected_kind,) if isinstance(expected_kind, str) else tuple(expected_kind)
        if kind not in accepted:
            raise CheckpointError(
                f"{path} is a {kind!r} checkpoint; expected {' or '.join(map(repr, accepted))}."
            )
    try:
        config = json.loads(metadata.get("config", "{}"))
        meta = json.loads(metadata.get("meta", "{}"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} has corrupt JSON metadata ({exc}).") from None
    return Checkpoint(kind=kind, config=config, state_dict=state, meta=meta, path=path)
