"""Modules that need an optional dependency, imported on first use."""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType


@cache
def optional_module(name: str) -> ModuleType | None:
    """``import name`` once, or None when a dependency it needs is not installed.

    For compiled kernels with a plain PyTorch fallback (the hash grid's and skinning's numba
    kernels): the first call pays the import (and any compilation from the on-disk cache), later
    calls return the same module.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
