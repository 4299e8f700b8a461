"""Shared test settings: quiet, deterministic, one torch thread per pytest-xdist worker."""

import importlib.util
import os
import sys
from pathlib import Path

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


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("imitation")``: ``benchmarks/imitation.py`` loaded by path (a script,
    not a package), once per session; the thread variables and ``sys.path`` entries its import
    sets are put back after."""
    root = Path(__file__).resolve().parents[1]
    loaded = {}

    def load(name: str):
        if name not in loaded:
            env, path = dict(os.environ), list(sys.path)
            spec = importlib.util.spec_from_file_location(
                f"_{name}_benchmark", root / "benchmarks" / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            finally:
                os.environ.clear()
                os.environ.update(env)
                sys.path[:] = path
            loaded[name] = module
        return loaded[name]

    return load
