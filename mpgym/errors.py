"""One error type for bad input, and cheap checks used at public boundaries."""

from __future__ import annotations

import math
from typing import Any


class MpgymError(ValueError):
    """Bad input or state, with a message that says what was wrong and what is accepted.

    Subclasses ``ValueError`` so callers that already catch it keep working; the CLI prints
    the message alone, without a traceback.
    """


def check_finite(name: str, value: Any) -> None:
    """Raise :class:`MpgymError` if ``value`` (float, numpy array or tensor) has NaN or inf.

    Args:
        name: what the value is, for the message (``"reward from CartPole-v1"``).
        value: a Python number, a numpy array or a torch tensor.
    """
    bad = False
    if isinstance(value, (int, float)):
        bad = not math.isfinite(value)
    elif hasattr(value, "isfinite") and hasattr(value, "all"):  # torch.Tensor
        bad = not bool(value.isfinite().all())
    else:
        import numpy as np

        arr = np.asarray(value)
        if arr.dtype.kind in "fc":
            bad = not bool(np.isfinite(arr).all())
    if bad:
        raise MpgymError(f"{name} contains NaN or infinity; only finite values are accepted.")


def check_positive(name: str, value: Any, *, integer: bool = True) -> None:
    """Raise :class:`MpgymError` unless ``value`` is a positive (integer, by default) number.

    For budgets and resolutions (``--total-timesteps``, ``--steps``, ``--resolution``), checked
    before any work starts.

    Args:
        name: the option as the user wrote it (``"--total-timesteps"``).
        value: the value given.
        integer: accept only whole numbers.
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if ok:
        ok = math.isfinite(value) and value > 0
    if not ok:
        accepted = "a whole number >= 1" if integer else "a finite number > 0"
        raise MpgymError(f"{name} must be {accepted}; got {value!r}.")
