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


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads in torch, numba kernels and the BLAS libraries numpy loaded.

    ``mpgym --threads N`` calls this before a command runs; on a busy machine ``1`` is often
    fastest. Raises :class:`MpgymError` unless ``n`` is a whole number >= 1.
    """
    import os

    from mpgym.errors import check_positive

    check_positive("--threads", n)
    n = int(n)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)  # for libraries not loaded yet
    import torch

    torch.set_num_threads(n)
    try:
        import numba
    except ImportError:
        pass
    else:
        from mpgym.optional import prefer_openmp_in_numba

        prefer_openmp_in_numba()
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(n)  # BLAS pools already loaded (numpy's OpenBLAS)
