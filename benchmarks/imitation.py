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

Part ``train`` -- PPO's ``imitate-walk`` preset (:data:`agents.deep.ppo.PPO_PRESETS`: residual
PD targets, 16 envs stepped on a thread per core, observation normalisation; chosen with seed
0) per report seed (:data:`TRAIN_SEEDS`) for at most :data:`TRAIN_HOURS` of wall time on the 2
cores, in chunks of :data:`CHUNK_STEPS` steps (the last one cut to the rollouts the remaining
time holds at the previous chunk's rate), each under the timing lock and followed by a
checkpoint and a check (the learning curve), so a rerun continues where an interrupted one
stopped (``runs/imitation-bench/walk-s{seed}``). With ``--select best`` (the default) each check
runs :data:`VAL_EPISODES` 10-s episodes from validation starts (``reset(seed=3_000_000 + i)``)
and the policy of the best check so far (survival, then MPJPE) is kept: the usual
best-model-on-validation rule of an ``EvalCallback``, for a policy whose held-out survival
swings from check to check; with ``--select last`` (the protocol of the earlier runs) the
check is a few held-out episodes and the last policy is kept. The checks are off the clock, as
the evaluations always were. At the end the kept policy is evaluated on :data:`EVAL_EPISODES`
10-s episodes from reference-state starts that training never drew (``reset(seed=1_000_000 +
i)``), deterministic actions, and exported (networks and normalisation statistics, no
optimiser) to ``results/imitation-policies/walk-s{seed}/``, which ``mpgym eval`` reads.
Part ``report`` turns the seeds' evaluations into the goals ``walk_survival_10s`` >= 0.9
(fraction of episodes not terminated early) and ``walk_mpjpe_mm`` <= 100 (root-relative mean
joint-position error), means over seeds, and plots the learning curves
(``results/imitation-walk-curves.png``).

    python benchmarks/imitation.py --json benchmarks/results/imitation-speed.json [--quick]
    python benchmarks/imitation.py --part train --seeds 1          # resumable; repeat to continue
    python benchmarks/imitation.py --part report --json benchmarks/results/imitation-walk.json
    python benchmarks/imitation.py --part train --seeds 0 --set desired_kl=0.02  # a tuning run
    python benchmarks/imitation.py --part train --seeds 1 --motion run  # another motion
    python benchmarks/imitation.py --part tuning  # tuning runs -> results/imitation-tuning-s0.*

``--motion`` (a DeepMimic clip name or a ``.npz``/``.bvh`` motion file, such as one that
``mpgym motion sample --npz`` writes) trains the same preset, unchanged, on another motion
(``{motion}-s{seed}``, evaluated on the same held-out starts). A motion that does not loop is
trained from random phases too, but evaluated from its first frame, in one episode (the policy
and the physics are deterministic): its episodes end at its last frame, so survival there means
following the whole motion, and the exported policy keeps that setting for ``mpgym eval``. Part
``report`` lists those runs under the walk's rows; the goals are the walk's alone.

Part ``tuning`` merges the seed-0 tuning runs present into ``results/imitation-tuning-s0.json``
(mean training episode length every 250k steps; checks on the tuning starts, never the held-out
ones) and plots them.
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
from typing import Any

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

from mpgym.bench import Goal, bench_parser, parse_overrides, report  # noqa: E402
from mpgym.errors import MpgymError, check_positive  # noqa: E402

log = logging.getLogger("imitation-bench")

PARTS = ("speed", "train", "tuning")
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


# ----------------------------------------------------------------------------------- train
TRAIN_SEEDS = (1, 2, 3)
"""Report seeds of the walk policies (the preset was chosen with seed 0)."""
TRAIN_HOURS = 2.0
"""Wall-clock training budget per seed (2 cores)."""
CHUNK_STEPS = 262_144
"""Environment steps between checkpoints (a few minutes; an interrupted run loses at most one)."""
EVAL_EPISODES = 20
"""Held-out evaluation episodes per seed (10 s each, reference-state starts; one episode from
the first frame for a motion that does not loop)."""
EVAL_SEED = 1_000_000
"""Evaluation episode ``i`` starts from ``reset(seed=EVAL_SEED + i)`` (never trained on)."""
TUNE_EVAL_SEED = 2_000_000
"""Evaluation starts of tuning runs (seeds outside :data:`TRAIN_SEEDS`, or ``--set``), so that
choosing a setting never looks at the report's held-out starts."""
VAL_SEED = 3_000_000
"""Validation starts ``reset(seed=VAL_SEED + i)`` of the checks after each chunk of a run that
keeps its best policy (``--select best``): neither the held-out nor the tuning starts."""
VAL_EPISODES = 10
"""Validation episodes per check (``--select best``)."""
SELECTIONS = ("best", "last")
"""Which policy a run exports: the one of the check with the highest validation survival (then
lowest MPJPE; ``best``), or the one training ended with (``last``)."""
TRAIN_RUNS = Path(_HERE).parent / "runs" / "imitation-bench"
"""Resumable training runs (full checkpoints with the optimiser; not committed)."""
RESULTS = Path(_HERE) / "results"
POLICIES = RESULTS / "imitation-policies"
"""Committed policies: ``walk-s{seed}/`` run directories that ``mpgym eval`` reads."""


def _progress_file(run: Path) -> Path:
    return run / "progress.json"


def _read_progress(run: Path) -> dict:
    import json

    f = _progress_file(run)
    if not f.exists():
        return {"wall_s": 0.0, "chunks": []}
    data = json.loads(f.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("wall_s"), (int, float)):
        raise MpgymError(f"{f} is not a training progress file; remove {run} to start over.")
    return data


def _trim_metrics(run: Path, timesteps: int) -> None:
    """Drop ``metrics.csv`` rows logged after the checkpoint (a run killed mid-chunk)."""
    import csv

    f = run / "metrics.csv"
    if not f.exists():
        return
    with f.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames or [], list(reader)
    keep = [r for r in rows if float(r.get("timestep") or 0) <= timesteps]
    if len(keep) != len(rows):
        with f.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(keep)


def evaluation_setting(env_kwargs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The env keyword arguments an evaluation uses, and whether the motion loops.

    A looping motion is evaluated as trained, from reference-state starts at random phases. A
    motion that does not loop ends its episodes at its last frame, so a start near the end would
    count as surviving after a few steps: it is evaluated from its first frame
    (``reference_state_init`` off), where surviving means following the whole motion.
    ``env_kwargs`` are a run's (JSON: ``config`` is a dict); one env is built to decide.
    """
    import gymnasium as gym

    import envs  # noqa: F401  (registers the mpgym/ ids)

    env = gym.make(ENV_ID, **env_kwargs)
    try:
        loops = bool(env.unwrapped.ref.loops)
    finally:
        env.close()
    if loops:
        return dict(env_kwargs), True
    config = env_kwargs.get("config") or {}
    return {**env_kwargs, "config": {**config, "reference_state_init": False}}, False


def evaluate_walk(policy, setting: tuple[dict[str, Any], bool], *,
                  episodes: int = EVAL_EPISODES, seed: int = EVAL_SEED) -> dict:
    """Survival over 10-s episodes and mean MPJPE (mm) of a deterministic policy, episode ``i``
    starting from ``reset(seed=seed + i)`` of the env that ``setting``
    (:func:`evaluation_setting`) describes.

    A motion that does not loop is followed from its first frame: the policy and the physics
    are deterministic, so one episode stands for all of them and ``episodes`` is 1 in the
    result.
    """
    from agents.common import evaluate_policy

    env_kwargs, loops = setting
    episodes = episodes if loops else 1
    result = evaluate_policy(policy, ENV_ID, episodes, seed=seed, env_kwargs=env_kwargs)
    return {
        "survival_10s": float(result.success_rate),
        "mpjpe_mm": 1000.0 * float(np.mean(result.metrics["mpjpe"])),
        "mean_return": result.mean_return,
        "mean_length": float(np.mean(result.lengths)),
        "episodes": episodes,
        "eval_seed": seed,
    }


def _better(ev: dict, best: dict | None) -> bool:
    """Whether the check ``ev`` beats the kept ``best``: higher survival, then lower MPJPE."""
    return best is None or (ev["survival_10s"], -ev["mpjpe_mm"]) > (best["survival_10s"],
                                                                     -best["mpjpe_mm"])


def timed_learn(agent: Any, steps: int, lock: str | None) -> tuple[float, float, dict, dict]:
    """``agent.learn(steps)`` (continuing its counters) under the timing lock: the wall
    seconds, the seconds waited for the lock, and the machine load before and after."""
    with nerf_bench.timing_lock(lock) as waited:
        before = nerf_bench.machine_load()
        t0 = time.perf_counter()
        agent.learn(steps, reset_num_timesteps=agent.num_timesteps == 0, progress_bar=False)
        wall = time.perf_counter() - t0
        after = nerf_bench.machine_load()
    return wall, waited, before, after


CURVE_WINDOW = 65_536
"""Environment steps per row of the exported training-episode curve."""


def episode_curve(metrics: Path, out: Path, window: int = CURVE_WINDOW) -> None:
    """Write ``out``: the training episodes of ``metrics`` (``metrics.csv``) in step windows.

    One row per ``window`` environment steps that saw episodes end: the window's last step,
    the episodes and their mean length (policy steps) and mean return. The run's own
    ``metrics.csv`` has a row per episode, ~40 MB after 2 hours -- too much to commit.
    """
    from agents.common.plotting import curve, read_metrics
    from mpgym.checkpoint import atomic_write_text

    rows = read_metrics(metrics)
    steps, lengths = curve(rows, y="length", x="timestep")
    _, returns = curve(rows, y="return", x="timestep")  # the same (episode) rows
    w = (np.asarray(steps, np.int64) - 1) // window
    n = np.bincount(w)
    mean_length = np.bincount(w, lengths) / np.maximum(n, 1)
    mean_return = np.bincount(w, returns) / np.maximum(n, 1)
    lines = ["timestep,episodes,mean_length,mean_return"]
    lines += [f"{(i + 1) * window},{n[i]},{mean_length[i]:.2f},{mean_return[i]:.3f}"
              for i in np.flatnonzero(n)]
    atomic_write_text(out, "\n".join(lines) + "\n")


def evaluation_starts(seed: int, overrides: dict[str, Any]) -> int:
    """The first evaluation start of a training run: the held-out :data:`EVAL_SEED` for a report
    seed with the preset's settings, :data:`TUNE_EVAL_SEED` for any tuning run."""
    return EVAL_SEED if seed in TRAIN_SEEDS and not overrides else TUNE_EVAL_SEED


def config_changes(saved: Any, wanted: Any) -> list[str]:
    """The fields (``name: saved -> wanted``) in which a checkpoint's config differs."""
    import dataclasses

    return [f"{f.name}: {getattr(saved, f.name)!r} -> {getattr(wanted, f.name)!r}"
            for f in dataclasses.fields(wanted)
            if getattr(saved, f.name, None) != getattr(wanted, f.name)]


def motion_label(motion: str) -> str:
    """The run-name prefix of a motion: the clip name, or a motion file's stem."""
    from bodies.motion.clips import CLIP_NAMES

    return motion if motion in CLIP_NAMES else "".join(
        c if c.isalnum() or c in "-_" else "_" for c in Path(motion).stem)


def check_motion(motion: str) -> None:
    """One clear error for a motion the env cannot take, before any training starts: the env's
    own loader (clip name or file, the body's ``betas``, length) on the preset's body."""
    if motion == "walk":
        return
    from bodies import mjcf
    from envs.imitation import load_reference_motion

    try:
        load_reference_motion(motion, mjcf.check_betas(None))
    except MpgymError as e:
        raise MpgymError(f"--motion: {e}") from None


def train_part(seed: int, hours: float, lock: str | None, quick: bool,
               overrides: dict[str, Any] | None = None, motion: str = "walk",
               select: str = "last") -> dict:
    """Train (or continue) the ``imitate-walk`` preset for one seed; evaluate; export.

    Resumable: the run's checkpoint and ``progress.json`` (wall seconds and steps so far,
    one entry per chunk with its held-out evaluation) are written after every chunk of
    :data:`CHUNK_STEPS`; a rerun continues from them until ``hours`` of training or the
    preset's step budget, whichever comes first. ``overrides`` (tuning runs, seed 0) change
    preset settings; such a run is named after them (``walk-s0-gamma0.99``) and exported beside
    its checkpoint, never among the report's policies. ``motion`` replaces the preset's walk
    clip (a clip name or a motion file; the run is named after it).

    ``select="best"``: each chunk's check runs :data:`VAL_EPISODES` episodes from the validation
    starts (:data:`VAL_SEED`) instead of a few evaluation starts, the policy of the best check
    so far (validation survival, then MPJPE) is kept in ``best/``, and that policy is the one
    evaluated on the run's evaluation starts and exported. The choice is made when a run starts
    and kept in ``progress.json``; a run is never continued under the other one.
    """
    if select not in SELECTIONS:
        raise MpgymError(f"select must be one of {SELECTIONS}; got {select!r}.")
    import dataclasses
    import json
    import shutil

    import torch

    import envs  # noqa: F401  (registers the mpgym/ ids)
    from agents.deep.ppo import PPO, PPO_PRESETS
    from mpgym.checkpoint import atomic_write_text
    from mpgym.runs import RunDir

    # one torch thread: the env threads use the other core during rollouts, and two OpenMP
    # threads spin-waiting beside them (or beside any other process) slowed training 7x here;
    # the update, while the env threads are idle, runs on two (OnPolicyAgent._update_threads)
    torch.set_num_threads(1)
    overrides = overrides or {}
    cfg = dataclasses.replace(PPO_PRESETS["imitate-walk"], seed=seed, **overrides)
    if motion != "walk":
        cfg = dataclasses.replace(cfg, env_kwargs={**cfg.env_kwargs, "motion": str(motion)})
    eval_seed = evaluation_starts(seed, overrides)
    name = f"{motion_label(motion)}-s{seed}" + "".join(f"-{k}{v}"
                                                      for k, v in sorted(overrides.items()))
    chunk, eval_episodes = CHUNK_STEPS, EVAL_EPISODES
    if quick:
        cfg = dataclasses.replace(cfg, n_envs=4, n_steps=64, total_timesteps=2048)
        chunk, eval_episodes, hours = 1024, 2, min(hours, 0.05)
    setting = evaluation_setting(cfg.env_kwargs)  # decided once: the motion loops or not
    run = TRAIN_RUNS / (name + ("-quick" if quick else ""))
    run.mkdir(parents=True, exist_ok=True)
    state = _read_progress(run)
    started = state.get("select", "last" if state["chunks"] else select)
    if started != select:
        raise MpgymError(
            f"{run} was trained with --select {started}; move it away to train this seed with "
            f"--select {select} from the start, or continue it with --select {started}.")
    state["select"] = select
    if (run / "checkpoint.safetensors").exists():
        agent = PPO.load(run)
        changed = config_changes(agent.config, cfg)
        if changed:
            raise MpgymError(
                f"{run} was trained with other settings ({'; '.join(changed)}); move it away "
                "to train this seed from the start with the current preset."
            )
        _trim_metrics(run, agent.num_timesteps)
        log.info("seed %d: continuing at %d steps, %.2f h", seed, agent.num_timesteps,
                 state["wall_s"] / 3600)
    else:
        agent = PPO(cfg.env_id, cfg)
        RunDir(run).write_config(cfg, algo="ppo", kind="ppo")
    agent.run = RunDir(run)
    budget_s = hours * 3600.0
    rollout = cfg.n_envs * cfg.n_steps
    while state["wall_s"] < budget_s and agent.num_timesteps < cfg.total_timesteps:
        steps = min(chunk, cfg.total_timesteps - agent.num_timesteps)
        if state["chunks"]:  # the last chunk is cut to what the budget left, at the last rate
            last = state["chunks"][-1]
            prev = state["chunks"][-2] if len(state["chunks"]) > 1 else {"timesteps": 0,
                                                                          "wall_s": 0.0}
            rate = (last["timesteps"] - prev["timesteps"]) / max(last["wall_s"] - prev["wall_s"],
                                                                  1e-9)
            fits = int((budget_s - state["wall_s"]) * rate) // rollout * rollout
            if fits < rollout:
                break
            steps = min(steps, fits)
        wall, waited, before, after = timed_learn(agent, steps, lock)
        agent.save(run)
        if select == "best":
            ev = evaluate_walk(agent, setting, episodes=2 if quick else VAL_EPISODES,
                               seed=VAL_SEED)
            if _better(ev, state.get("best")):
                agent.save(run / "best", resume=False)
                state["best"] = {"timesteps": agent.num_timesteps, **ev}
        else:
            ev = evaluate_walk(agent, setting, episodes=max(2, eval_episodes // 4),
                               seed=eval_seed)
        state["wall_s"] += wall
        state["chunks"].append({"timesteps": agent.num_timesteps, "wall_s": state["wall_s"],
                                "lock_wait_s": waited, "load_before": before["loadavg"],
                                "load_after": after["loadavg"], **ev})
        atomic_write_text(_progress_file(run), json.dumps(state, indent=1))
        log.info("seed %d: %d steps, %.2f h, %.0f steps/s; eval survival %.2f mpjpe %.0f mm",
                 seed, agent.num_timesteps, state["wall_s"] / 3600, steps / wall,
                 ev["survival_10s"], ev["mpjpe_mm"])
    agent.close()
    if select == "best" and state.get("best"):
        # the kept policy (PPO.load gives it the env settings it was trained with)
        last_timesteps, agent = agent.num_timesteps, PPO.load(run / "best")
        log.info("seed %d: the policy of the check at %d steps (validation survival %.2f)",
                 seed, state["best"]["timesteps"], state["best"]["survival_10s"])
    else:
        last_timesteps = agent.num_timesteps
    final = evaluate_walk(agent, setting, episodes=eval_episodes, seed=eval_seed)
    out = (run / "export") if overrides else POLICIES / (name + ("-quick" if quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    # the exported policy carries its evaluation's env settings, so that ``mpgym eval`` on it
    # reproduces ``final`` (a motion that does not loop: from its first frame)
    agent.config = dataclasses.replace(agent.config, env_kwargs=setting[0])
    RunDir(out).write_config(agent.config, algo="ppo", kind="ppo")
    agent.save(out, resume=False)
    shutil.copyfile(_progress_file(run), out / "progress.json")
    if (run / "metrics.csv").exists():  # a row per episode (~40 MB by 2 h): windows of it
        episode_curve(run / "metrics.csv", out / "episode_curve.csv")
    row = {"part": "train", "run": name, "motion": str(motion), "seed": seed,
           "timesteps": last_timesteps, "hours": state["wall_s"] / 3600, "select": select,
           **({"selected_timesteps": state["best"]["timesteps"]}
              if select == "best" and state.get("best") else {}), **final}
    atomic_write_text(out / "eval.json", json.dumps(row, indent=1))
    agent.close()
    log.info("seed %d: %s", seed, row)
    return row


# ------------------------------------------------------------------------------------- cli


def report_part(quick: bool) -> dict:
    """Goals over the seeds' exported evaluations, and the learning curves (PNG)."""
    import json

    rows, missing = [], []
    for seed in TRAIN_SEEDS:
        f = POLICIES / (f"walk-s{seed}" + ("-quick" if quick else "")) / "eval.json"
        if f.exists():
            rows.append(json.loads(f.read_text()))
        else:
            missing.append(seed)
    if missing:
        log.warning("no trained walk policy for seeds %s yet: the goals cover %s", missing,
                    [r["seed"] for r in rows] or "none")
    selections = {r.get("select", "last") for r in rows}
    if len(selections) > 1:
        log.warning("the walk seeds were trained with different --select rules (%s): the goals "
                    "mix them", ", ".join(f"seed {r['seed']}: {r.get('select', 'last')}"
                                          for r in rows))
    goals = []
    if rows:
        goals = [
            Goal("walk_survival_10s", float(np.mean([r["survival_10s"] for r in rows])), 0.9,
                 ">="),
            Goal("walk_mpjpe_mm", float(np.mean([r["mpjpe_mm"] for r in rows])), 100.0, "<="),
        ]  # the hours are a row column, not a goal: training stops at TRAIN_HOURS by design
        _plot_curves(quick)
        walk = f"walk-s{rows[0]['seed']}" + ("-quick" if quick else "")
        _episode_gif(POLICIES / walk, RESULTS / f"imitation-walk{'-quick' if quick else ''}.gif",
                     seconds=5)
    for folder in _other_motions(quick):  # rows, not goals
        rows.append(json.loads((folder / "eval.json").read_text()))
        # the whole 10 s at 15 fps: a generated motion is judged on all of it
        _episode_gif(folder, RESULTS / f"imitation-{folder.name}.gif", seconds=10, stride=2,
                     reuse=True)  # one GIF per policy folder
    return {"rows": rows, "goals": goals, "missing_seeds": missing}


def _other_motions(quick: bool) -> list[Path]:
    """The exported policies trained on motions other than the walk (``run-s1``, ...)."""
    walks = {f"walk-s{seed}" + ("-quick" if quick else "") for seed in TRAIN_SEEDS}
    return [f.parent for f in sorted(POLICIES.glob("*-s*/eval.json"))
            if f.parent.name not in walks and f.parent.name.endswith("-quick") == quick]


TUNING = RESULTS / "imitation-tuning-s0.json"
"""Seed-0 tuning runs: mean training episode length at each :data:`TUNING_MARK` of steps."""
TUNING_MARK, TUNING_HALF_WINDOW = 250_000, 50_000


def tuning_part() -> dict:
    """Merge the tuning runs present in :data:`TRAIN_RUNS` (``walk-s0*``) into :data:`TUNING`.

    Per run: the mean length of the training episodes that ended within +-50k steps of every
    250k-step mark (stochastic policy; 300 = the 10-s goal), the mean over those episodes of the
    approximate KL and step size of the update before each (the values their rows carry), and
    the checks on the tuning (:data:`TUNE_EVAL_SEED`) or validation (:data:`VAL_SEED`) starts
    from ``progress.json``. Runs in the file whose folder is gone are
    kept as they are. Also plots ``imitation-tuning-s0.png``.
    """
    import json

    from agents.common.plotting import read_metrics
    from mpgym.checkpoint import atomic_write_text

    data = json.loads(TUNING.read_text()) if TUNING.exists() else {"runs": {}}
    for run in sorted(TRAIN_RUNS.glob("walk-s0*")):
        if not (run / "metrics.csv").exists() or run.name.endswith("-quick"):
            continue
        rows = [r for r in read_metrics(run / "metrics.csv") if r.get("length") not in (None, "")]
        t = np.array([float(r["timestep"]) for r in rows])
        length = np.array([float(r["length"]) for r in rows])
        kl, lr = (np.array([float(r.get(name) or "nan") for r in rows])
                  for name in ("approx_kl", "learning_rate"))
        marks = np.arange(TUNING_MARK, t.max() + 1, TUNING_MARK) if len(t) else np.array([])
        near = [np.abs(t - m) <= TUNING_HALF_WINDOW for m in marks]
        entry = data["runs"].get(run.name, {})
        entry.setdefault("label", "root sync, " + (run.name.removeprefix("walk-s0-")
                                                    if run.name != "walk-s0" else "preset"))
        entry.update(
            steps=[int(m) for m in marks],
            mean_episode_length=[round(float(length[w].mean()), 2) for w in near],
            mean_approx_kl=[round(float(np.nanmean(kl[w])), 4) for w in near],
            total_steps=int(t.max()) if len(t) else 0,
        )
        if np.isfinite(lr).any():
            entry["mean_learning_rate"] = [float(f"{np.nanmean(lr[w]):.3g}") for w in near]
        progress = _read_progress(run)
        # the checks of a tuning run: on the tuning starts, or the validation starts (--select
        # best); never the held-out ones (evaluation_starts)
        checks = [c for c in progress["chunks"] if c.get("eval_seed") in (TUNE_EVAL_SEED,
                                                                           VAL_SEED)]
        if checks:
            entry["tuning_checks"] = {
                "eval_seed": checks[-1]["eval_seed"],
                "timesteps": [c["timesteps"] for c in checks],
                "survival_10s": [c["survival_10s"] for c in checks],
                "mean_length": [c["mean_length"] for c in checks],
            }
        data["runs"][run.name] = entry
    atomic_write_text(TUNING, json.dumps(data, indent=1) + "\n")
    _plot_tuning(data)
    return {"rows": [{"run": k, "timesteps": v["total_steps"],
                      "mean episode steps": (v["mean_episode_length"] or [None])[-1]}
                     for k, v in data["runs"].items()], "goals": []}


def _plot_tuning(data: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for v in data["runs"].values():
        ax.plot(np.array(v["steps"]) / 1e6, v["mean_episode_length"], label=v["label"])
    ax.set(xlabel="env steps (M)", ylabel="mean training episode length (steps)",
           title="HumanoidImitate walk, PPO seed 0 (tuning)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(TUNING.with_suffix(".png"), dpi=100)
    plt.close(fig)


def _episode_gif(policy: Path, path: Path, *, seconds: float, stride: int = 1,
                 reuse: bool = False) -> None:
    """The first evaluation episode of ``policy`` (up to ``seconds``) beside the reference ghost,
    every ``stride``-th frame, at 320x240. With ``reuse``, a GIF of this policy newer than every
    file of it is kept (the render is deterministic: redrawing gives the same frames)."""
    if reuse and path.exists() and path.stat().st_mtime > max(
            f.stat().st_mtime for f in policy.iterdir()):
        return
    from agents.common import evaluate_policy
    from agents.deep.ppo import PPO
    from mpgym.plots import save_gif

    agent = PPO.load(policy)
    kwargs = {**dict(agent.env_kwargs), "width": 320, "height": 240}
    result = evaluate_policy(agent, ENV_ID, 1, seed=EVAL_SEED, render=True, env_kwargs=kwargs,
                             max_frames=round(seconds * 30))
    save_gif(path, result.frames[::stride], fps=30 / stride)


def _plot_curves(quick: bool) -> None:
    """``imitation-walk-curves.png``: the checks' survival and MPJPE against training hours, and
    the training episodes' mean length against environment steps (``episode_curve.csv``)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(14, 3.6))
    walks = [(POLICIES / (f"walk-s{seed}" + ("-quick" if quick else "")), f"walk, seed {seed}",
              "-") for seed in TRAIN_SEEDS]
    others = [(folder, "{}, seed {}".format(*folder.name.removesuffix("-quick").rsplit("-s", 1)),
               "--") for folder in _other_motions(quick)]
    for folder, label, style in walks + others:
        f = folder / "progress.json"
        if not f.exists():
            continue
        chunks = json.loads(f.read_text())["chunks"]
        h = [ch["wall_s"] / 3600 for ch in chunks]
        a.plot(h, [ch["survival_10s"] for ch in chunks], style, label=label)
        b.plot(h, [ch["mpjpe_mm"] for ch in chunks], style, label=label)
        if (folder / "episode_curve.csv").exists():
            curve = np.loadtxt(folder / "episode_curve.csv", delimiter=",", skiprows=1, ndmin=2)
            c.plot(curve[:, 0] / 1e6, curve[:, 2] / 30.0, style, label=label)
    a.set(xlabel="training hours (2 cores)", ylabel="10-s survival", ylim=(-0.02, 1.02))
    b.set(xlabel="training hours (2 cores)", ylabel="MPJPE (mm)")
    c.set(xlabel="environment steps (M)", ylabel="training episode (s, stochastic)")
    a.axhline(0.9, ls=":", c="k")
    b.axhline(100, ls=":", c="k")
    c.axhline(10, ls=":", c="k")
    a.legend()
    fig.suptitle("PPO imitating the walk clip (solid) and other motions (dashed); checks on "
                 "held-out starts (--select last) or validation starts (--select best)")
    fig.tight_layout()
    fig.savefig(RESULTS / ("imitation-walk-curves" + ("-quick" if quick else "") + ".png"),
                dpi=100)
    plt.close(fig)


def parse_args(argv: list[str] | None = None):
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--part", dest="parts", nargs="+", choices=PARTS + ("report",),
                   default=["speed"])
    p.add_argument("--seeds", nargs="+", type=int, default=list(TRAIN_SEEDS),
                   help="seeds of the train part (default 1 2 3)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="tuning runs: a PPO setting of the train part (repeatable)")
    p.add_argument("--motion", default="walk",
                   help="train part: a DeepMimic clip name or a .npz/.bvh motion file "
                        "(default walk)")
    p.add_argument("--select", choices=SELECTIONS, default="best",
                   help="train part: export the policy of the best validation check (default) "
                        "or the last one")
    p.add_argument("--hours", type=float, default=TRAIN_HOURS,
                   help=f"training budget per seed (default {TRAIN_HOURS})")
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
        check_positive("--hours", args.hours, integer=False)
        check_motion(args.motion)
        from agents.deep.ppo import PPOConfig

        args.overrides = parse_overrides(args.overrides, PPOConfig)
        for seed in args.seeds:
            if seed < 0:
                raise MpgymError(f"--seeds must be >= 0; got {seed}.")
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
    if "train" in args.parts:
        for seed in args.seeds:
            rows.append(train_part(seed, args.hours, args.timing_lock or None, args.quick,
                                   args.overrides, args.motion, args.select))
    if "tuning" in args.parts:
        rows += tuning_part()["rows"]
    if "report" in args.parts:
        rep = report_part(args.quick)
        rows += rep.pop("rows")
        goals += rep.pop("goals")
        extra["report"] = rep
    columns = ["env", "run", "seed", "steps/s", "steps/CPU s", "resets", "mean episode steps",
               "timestep", "timesteps", "hours", "survival_10s", "mpjpe_mm"]
    report("imitation", rows, goals, args.json, columns=columns, extra=extra)


if __name__ == "__main__":
    main()
