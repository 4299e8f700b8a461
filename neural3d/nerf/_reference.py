"""Slow, obviously-correct reference of the hash encoding (the fast path is tested against it).

Loops over levels and the 8 corners, uses int64 arithmetic with an explicit ``% T`` and lets
autograd differentiate through plain indexing.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from neural3d.nerf.hashgrid import PRIMES, LevelLayout


def hash_encode_reference(x: Tensor, table: Tensor, layout: LevelLayout) -> Tensor:
    """Same contract as :func:`neural3d.nerf.hashgrid.hash_encode`: ``[N, 3]`` -> ``[N, L*F]``."""
    T = 1 << layout.log2_table_size
    outs = []
    for level, n in enumerate(layout.resolutions):
        pos = x.clamp(0, 1) * n
        p0 = torch.minimum(pos.floor(), torch.full_like(pos, n - 1))
        frac = pos - p0
        p0 = p0.long()
        acc = 0.0
        for dx, dy, dz in itertools.product((0, 1), repeat=3):
            i, j, k = p0[:, 0] + dx, p0[:, 1] + dy, p0[:, 2] + dz
            if level < layout.num_dense:
                row = i + j * (n + 1) + k * (n + 1) ** 2
            else:
                row = ((i * PRIMES[0]) ^ (j * PRIMES[1]) ^ (k * PRIMES[2])) % T
            w = ((frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
                 * (frac[:, 2] if dz else 1 - frac[:, 2]))
            acc = acc + w[:, None].to(table.dtype) * table[layout.offsets[level] + row]
        outs.append(acc)
    return torch.cat(outs, dim=-1)
