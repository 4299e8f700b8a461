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
        prefer_openmp_in_numba()
        return importlib.import_module(name)
    except ImportError:
        return None


def prefer_openmp_in_numba() -> None:
    """Pick numba's OpenMP threading layer before TBB (call before numba starts its threads).

    Open3D loads its own, older libtbb; numba then tries TBB first, finds it too old and
    prints a ``NumbaWarning`` when its threads start (the first parallel kernel, or
    ``numba.set_num_threads``). OpenMP is what it falls back to anyway, so asking for it first
    changes nothing but the noise. ``import mpgym`` also sets the environment variable numba
    reads at import.
    """
    try:
        import numba
    except ImportError:
        return
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]
