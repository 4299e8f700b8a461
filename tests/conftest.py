"""Shared test settings: quiet, deterministic, one torch thread per pytest-xdist worker."""

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config):
    # Under `pytest -n 2` each worker gets one of the two cores; more threads only contend.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture
def tmp_run(tmp_path):
    """A fresh run directory under pytest's tmp_path."""
    from mpgym import RunDir

    return RunDir(tmp_path / "run")
