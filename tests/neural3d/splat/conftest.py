"""Shared data of the splat tests."""

import numpy as np
import pytest


@pytest.fixture
def disc_rgba():
    """A soft disc as one 16x16 RGBA view (float32): colour and alpha vary across it."""
    yy, xx = np.mgrid[0:16, 0:16] + 0.5
    a = np.exp(-((xx - 8) ** 2 + (yy - 8) ** 2) / 18.0)
    return np.stack([a, 0.5 * a, 1 - a, np.clip(2 * a, 0, 1)], -1).astype(np.float32)
