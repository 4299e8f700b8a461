"""bodies: SMPL-format body models, linear blend skinning, priors and fitting.

``bodies.BodyModel("synthetic" | path)`` is the entry point (an ``nn.Module`` returning
``.vertices`` and ``.joints`` as smplx does); ``bodies.synthetic.build()`` makes the
SMPL-compatible model file; ``bodies.lbs`` holds the pure skinning functions; ``bodies.fit``
the SMPLify-style fitting; ``bodies.learned`` the learned gradient-descent fitter for 2D
keypoints. Attributes load lazily so ``import bodies`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"BodyModel": "bodies.model", "BodyOutput": "bodies.model"}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bodies' has no attribute {name!r}")
