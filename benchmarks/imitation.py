"""Motion imitation benchmark: our MuJoCo DeepMimic env's speed against pybullet's DeepMimic env.

Part ``speed`` -- policy steps per second of ``mpgym/HumanoidImitate-v0`` (``gymnasium.make``
with its wrappers, the ``walk`` clip, the default config) and of pybullet's
``HumanoidDeepMimicWalkBulletEnv`` (the class behind ``HumanoidDeepMimicWalkBulletEnv-v1``: the
same walk clip, 30 Hz policy, eight 1/240 s Bullet steps with stable PD), both stepping uniform
random actions in [-1, 1] (each env's normalised action space) and resetting when an episode
ends, in this one process on one thread, under the machine-wide timing lock
(``/tmp/mpgym-timing.lock``, the lock of ``flock /tmp/mpgym-timing.lock ...``) with ``uptime``
read before and after. After a warm-up (numba's cached kernel loads, both envs reset once) the
two are timed in alternating rounds of ``--seconds`` each (``--rounds`` rounds); each env's
figure is the median over rounds of steps / wall seconds, resets included. Goal:
``env_steps_per_s_vs_pybullet`` >= 10 (ours over pybullet's).

pybullet's DeepMimic package cannot be imported as shipped with Gymnasium 1.x: its package
``__init__`` registers ids with the old ``gym``, and its env module needs ``gym``,
``pkg_resources`` and (through its logger) ``mpi4py``. Inside this benchmark only, those are
stubbed (:func:`pybullet_deepmimic_walk`): ``gym`` by Gymnasium's ``Env``, ``spaces`` and
``seeding``, ``pkg_resources.parse_version`` by the identity, ``pybullet_utils.mpi_util`` by a
single process, and the ``pybullet_envs`` packages by empty packages so their ``__init__``
files are not run; the env's own code runs unchanged (old 4-tuple ``step``).

    python benchmarks/imitation.py --json benchmarks/results/imitation-speed.json [--quick]
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import sys
import time
import types
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
# this folder holds bodies.py, a benchmark that would shadow the bodies package
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
# the NeRF benchmark's timing lock and load readings are reused
_spec = importlib.util.spec_from_file_location("nerf_bench", os.path.join(_HERE, "nerf.py"))
nerf_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nerf_bench)

from mpgym.bench import Goal, bench_parser, report  # noqa: E402
from mpgym.errors import MpgymError, check_positive  # noqa: E402

log = logging.getLogger("imitation-bench")

PARTS = ("speed",)
ENV_ID = "mpgym/HumanoidImitate-v0"
PYBULLET_NAME = "pybullet HumanoidDeepMimicWalkBulletEnv (Bullet 1/240 s x 8, stable PD)"


# ----------------------------------------------------------------------------------- peers


@contextlib.contextmanager
def _stubbed_modules(stubs: dict[str, types.ModuleType]):
    """Put ``stubs`` in ``sys.modules`` where nothing is; take out what was added afterwards."""
    added = [name for name in stubs if name not in sys.modules]
    sys.modules.update({name: stubs[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


@contextlib.contextmanager
def _quiet_stdout():
    """Silence stdout, Python's and the C library's (Bullet's URDF importer warns there)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(io.StringIO()):
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _package(name: str, path: Path) -> types.ModuleType:
    """An empty package at ``path``: its submodules import, its ``__init__`` does not run."""
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    return module


def pybullet_deepmimic_walk():
    """pybullet's ``HumanoidDeepMimicWalkBulletEnv``, made importable (module docstring)."""
    import gymnasium

    spec = importlib.util.find_spec("pybullet_envs")
    if spec is None or not spec.submodule_search_locations:
        raise MpgymError("pybullet is not installed (pip install pybullet); it ships the peer.")
    root = Path(list(spec.submodule_search_locations)[0])
    gym = types.ModuleType("gym")
    gym.Env, gym.spaces = gymnasium.Env, gymnasium.spaces
    gym_utils = types.ModuleType("gym.utils")
    gym_utils.seeding = gymnasium.utils.seeding
    gym.utils = gym_utils
    pkg_resources = types.ModuleType("pkg_resources")
    pkg_resources.parse_version = lambda v: v
    mpi_util = types.ModuleType("pybullet_utils.mpi_util")
    mpi_util.is_root_proc = lambda: True
    mpi_util.get_proc_rank = lambda: 0
    mpi_util.get_num_procs = lambda: 1
    stubs = {
        "gym": gym,
        "gym.spaces": gymnasium.spaces,
        "gym.utils": gym_utils,
        "gym.utils.seeding": gymnasium.utils.seeding,
        "pkg_resources": pkg_resources,
        "pybullet_utils.mpi_util": mpi_util,
        "pybullet_envs": _package("pybullet_envs", root),
        "pybullet_envs.deep_mimic": _package("pybullet_envs.deep_mimic", root / "deep_mimic"),
        "pybullet_envs.deep_mimic.gym_env": _package(
            "pybullet_envs.deep_mimic.gym_env", root / "deep_mimic" / "gym_env"
        ),
    }
    with _stubbed_modules(stubs), _quiet_stdout():
        from pybullet_envs.deep_mimic.gym_env.deep_mimic_env import (
            HumanoidDeepMimicWalkBulletEnv,
        )

        return HumanoidDeepMimicWalkBulletEnv()


class _Runner:
    """Steps one env with uniform random actions in [-1, 1], resetting when an episode ends."""

    def __init__(self, name: str, env, *, old_api: bool, seed: int):
        self.name, self.env, self.old_api = name, env, old_api
        self.rng = np.random.default_rng(seed)
        self.dim = env.action_space.shape[0]
        self.steps = self.resets = 0
        self.seconds = self.cpu_seconds = 0.0
        self.rates: list[float] = []
        self._reset()

    def _reset(self) -> None:
        if self.old_api:
            with contextlib.redirect_stdout(io.StringIO()):  # pybullet's env prints on reset
                self.env.reset()
        else:
            self.env.reset(seed=int(self.rng.integers(2**31)))

    def run(self, seconds: float) -> float:
        """Step for about ``seconds``; return (and record) the steps per wall second."""
        actions = self.rng.uniform(-1.0, 1.0, (4096, self.dim)).astype(np.float32)
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while True:
            out = self.env.step(actions[n % len(actions)])
            n += 1
            if out[2] if self.old_api else out[2] or out[3]:
                self._reset()
                self.resets += 1
            if n % 64 == 0 and time.perf_counter() - t0 >= seconds:
                break
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        self.steps, self.seconds, self.cpu_seconds = (
            self.steps + n,
            self.seconds + wall,
            self.cpu_seconds + cpu,
        )
        self.rates.append(n / wall)
        return n / wall

    def row(self, extra: dict) -> dict:
        return {
            "part": "speed",
            "env": self.name,
            "steps/s": float(np.median(self.rates)),
            "steps/s per round": [round(r, 1) for r in self.rates],
            "steps/CPU s": self.steps / self.cpu_seconds,
            "steps": self.steps,
            "resets": self.resets,
            "mean episode steps": self.steps / max(self.resets, 1),
            **extra,
        }


def speed_part(seconds: float, rounds: int, lock: str | None) -> dict:
    """Rows and the goal of the speed part (module docstring)."""
    import gymnasium as gym
    import torch

    import envs  # noqa: F401  (registers the mpgym/ ids)

    torch.set_num_threads(1)
    ours = gym.make(ENV_ID, motion="walk")
    cfg = ours.unwrapped.config
    name = (
        f"mpgym HumanoidImitate-v0 (MuJoCo 1/{round(1 / cfg.timestep)} s x "
        f"{ours.unwrapped.substeps})"
    )
    mine = _Runner(name, ours, old_api=False, seed=0)
    peer = _Runner(PYBULLET_NAME, pybullet_deepmimic_walk(), old_api=True, seed=0)
    for r in (mine, peer):  # warm-up off the clock
        r.run(0.5)
        r.steps = r.resets = 0
        r.seconds = r.cpu_seconds = 0.0
        r.rates.clear()
    with nerf_bench.timing_lock(lock) as waited:
        before = nerf_bench.machine_load()
        for i in range(rounds):
            for r in (mine, peer) if i % 2 == 0 else (peer, mine):
                rate = r.run(seconds)
                log.info("round %d: %s %.0f steps/s", i + 1, r.name, rate)
        after = nerf_bench.machine_load()
    ratio = float(np.median(mine.rates) / np.median(peer.rates))
    rows = [
        mine.row(
            {
                "backend": cfg.backend,
                "timestep": cfg.timestep,
                "action dim": mine.dim,
                "obs dim": ours.observation_space.shape[0],
            }
        ),
        peer.row(
            {"backend": "pybullet", "timestep": 1 / 240, "action dim": peer.dim, "obs dim": 197}
        ),
    ]
    goal = Goal("env_steps_per_s_vs_pybullet", ratio, 10.0, ">=")
    return {
        "rows": rows,
        "goals": [goal],
        "lock_wait_s": waited,
        "load_before": before,
        "load_after": after,
        "seconds_per_round": seconds,
        "rounds": rounds,
    }


# ------------------------------------------------------------------------------------- cli


def parse_args(argv: list[str] | None = None):
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--part", dest="parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="seconds per env and round (default 10; 2 with --quick)",
    )
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 5; 2 with --quick)")
    p.add_argument(
        "--timing-lock",
        default=nerf_bench.TIMING_LOCK,
        help=f"file locked while timing (default {nerf_bench.TIMING_LOCK}; '' for none)",
    )
    args = p.parse_args(argv)
    try:
        if args.seconds is not None:
            check_positive("--seconds", args.seconds, integer=False)
        if args.rounds is not None:
            check_positive("--rounds", args.rounds)
    except MpgymError as e:
        p.error(str(e))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    rounds = args.rounds or (2 if args.quick else 5)
    rows, goals, extra = [], [], {}
    if "speed" in args.parts:
        speed = speed_part(seconds, rounds, args.timing_lock or None)
        rows += speed.pop("rows")
        goals += speed.pop("goals")
        extra["speed"] = speed
    columns = ["env", "steps/s", "steps/CPU s", "resets", "mean episode steps", "timestep"]
    report("imitation", rows, goals, args.json, columns=columns, extra=extra)


if __name__ == "__main__":
    main()
