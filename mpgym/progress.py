"""A progress bar for every long loop (tqdm; hidden when stderr is not a terminal)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    enable: bool = True,
    unit: str = "it",
):
    """Wrap ``iterable`` (or count to ``total``) in a progress bar.

    The bar shows only when ``enable`` is true and stderr is a terminal, so CI logs and
    tests stay clean. Use ``bar.update(n)`` and ``bar.set_postfix(...)`` as with tqdm.
    """
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=None if enable else True,  # None: disable on non-TTY
        dynamic_ncols=True,
        leave=False,
    )
