"""Device choice: CPU by default, CUDA when asked for (or ``auto`` and present)."""

from __future__ import annotations

from typing import Literal

from mpgym.errors import MpgymError

DeviceName = Literal["auto", "cpu", "cuda"]


def get_device(name: str = "cpu"):
    """Return a ``torch.device`` for ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

    ``"auto"`` picks CUDA when available, else CPU. Asking for CUDA on a machine without it
    raises :class:`MpgymError` instead of failing later inside a kernel.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MpgymError(
                f"device {name!r} was asked for but CUDA is not available; use 'cpu' or 'auto'."
            )
        return torch.device(name)
    raise MpgymError(f"unknown device {name!r}; accepted: 'auto', 'cpu', 'cuda', 'cuda:N'.")
