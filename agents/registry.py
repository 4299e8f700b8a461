"""Registry of agents: name -> class, merged from ``agents.tabular`` and ``agents.deep``.

Each sub-package exposes ``ALGORITHMS: dict[str, str]`` mapping a name (``"q-learning"``,
``"dqn"``) to ``"module.path:ClassName"``; classes are imported only when asked for, so listing
names never imports torch. ``agents.deep`` is optional.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

from mpgym.errors import MpgymError

if TYPE_CHECKING:
    from agents.common.base import Agent

log = logging.getLogger(__name__)


def _collect() -> dict[str, str]:
    merged: dict[str, str] = {}
    for package in ("agents.tabular", "agents.deep"):
        try:
            module = importlib.import_module(package)
        except ImportError as exc:  # a part that is not installed
            log.debug("agents registry: %s not available (%s)", package, exc)
            continue
        merged.update(getattr(module, "ALGORITHMS", {}))
    return merged


ALGORITHMS: dict[str, str] = _collect()
"""Algorithm name -> ``"module.path:ClassName"``."""


def get_algorithm(name: str) -> type[Agent]:
    """The agent class registered under ``name``.

    Raises:
        MpgymError: unknown name (listing the accepted ones), or a class that cannot import.
    """
    key = name.strip().lower().replace("_", "-")
    if key not in ALGORITHMS:
        raise MpgymError(f"unknown algorithm {name!r}; accepted: {', '.join(sorted(ALGORITHMS))}.")
    module_name, _, cls_name = ALGORITHMS[key].partition(":")
    try:
        return getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise MpgymError(f"algorithm {key!r} is registered as {ALGORITHMS[key]!r} "
                         f"but cannot be imported ({exc}).") from None
