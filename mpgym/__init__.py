"""mpgym core utilities: seeding, devices, run directories, checkpoints, progress, reports.

This is the bottom layer: it must not import a domain package (envs, agents, neural3d,
bodies, generative). The `mpgym` command line lives in :mod:`mpgym.cli` and imports the
domains lazily, inside each command.
"""

import os as _os

# Open3D loads an old libtbb; numba would try TBB first, find it too old and warn on the first
# parallel kernel. Ask for OpenMP first (what it falls back to anyway) before numba is imported.
_os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp workqueue tbb")

from mpgym.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from mpgym.devices import get_device
from mpgym.errors import MpgymError, check_finite, check_positive
from mpgym.progress import progress
from mpgym.runs import MetricsLogger, RunDir, check_run_target, save_on_interrupt, staged_run
from mpgym.seeding import seed_everything

__version__ = "0.1.0"

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "MetricsLogger",
    "MpgymError",
    "RunDir",
    "check_finite",
    "check_positive",
    "check_run_target",
    "get_device",
    "load_checkpoint",
    "progress",
    "save_checkpoint",
    "save_on_interrupt",
    "seed_everything",
    "staged_run",
]
