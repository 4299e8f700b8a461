"""Seeding: one call seeds Python, NumPy and torch, and returns explicit generators."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Generators:
    """Explicit random generators to pass around instead of using global state."""

    np: np.random.Generator
    torch: object  # torch.Generator (typed loosely so importing this module stays cheap)
    seed: int


def seed_everything(seed: int) -> Generators:
    """Seed Python's ``random``, NumPy's legacy global RNG and torch, and return generators.

    Library code should take the returned generators (or ``env.np_random``) rather than
    calling global RNGs; the globals are seeded for third-party code that uses them.

    Args:
        seed: a non-negative integer.

    Returns:
        Generators with a NumPy ``Generator`` and a CPU ``torch.Generator`` seeded with ``seed``.
    """
    import torch

    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    return Generators(np=np.random.default_rng(seed), torch=gen, seed=seed)
