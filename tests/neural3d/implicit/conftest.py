"""Fixtures shared by the implicit-shape tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (the CI machine's cores are shared), then restore."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
