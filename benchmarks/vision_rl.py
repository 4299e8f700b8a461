"""Vision RL benchmark: MinAtar DQN against the paper, PPO against SB3, next-best-view coverage.

Part ``dqn-minatar`` -- DQN's ``minatar-breakout`` preset (:data:`agents.deep.dqn.DQN_PRESETS`,
the MinAtar paper's DQN: Young & Tian 2019, arXiv:1903.03176) per report seed (1, 2, 3; the
preset was taken from the paper, no seed was used to tune it) for the paper's 5M frames. The
figure is the paper's: the mean return of the last :data:`LAST_EPISODES` training episodes at
5M frames (``metrics.csv`` of the run), the mean over seeds, over the paper's figure
(:data:`agents.deep.dqn.MINATAR_DQN_REFERENCE`, ~10 read off its plot: a mean over 30 runs).
Goal ``dqn_minatar_breakout_vs_paper`` >= 1. Resumable: chunks of :data:`DQN_CHUNK` frames, each
under the machine-wide timing lock (``/tmp/mpgym-timing.lock``) with the load read before and
after, then the checkpoint with its replay buffer (``save(run, include_buffer=True)``: the
continuation is exact) and ``progress.json``; each invocation trains for at most ``--hours``
and a rerun continues (``runs/vision-rl-bench/dqn-minatar-breakout-s{seed}``). After each chunk
the run is also packed into ``benchmarks/results/vision_rl-runs/{run}.tar.xz`` (checkpoint,
replay buffer with its binary observations bit-packed, metrics, progress: ~1.9 MB), which is
committed: a clone without the ``runs/`` folder continues from there, so a seed's 5M frames
(longer than one working session here) can span several. The preset's
epsilon decays over the first 105,000 frames of one 5M-frame ``learn``; a chunked
``learn(..., reset_num_timesteps=False)`` would take that fraction of the frames so far plus the
chunk, so before each chunk the fraction is set to give the same 105,000 frames (the only
schedule of the preset: its step size is constant). The figure is a return, not a time, so two
seeds may train side by side, one process each with ``--timing-lock ''`` (the lock would run
their chunks in turn). Measured here at ~350 frames/s a process with two side by side on the
two cores (since the RMSprop step runs as one compiled loop: ~300 before), ~4 h a seed; the
three report seeds side by side made ~280-380 frames/s each (~950 together).

Part ``ppo-speed`` -- wall time of PPO's ``minatar-breakout`` preset against stable-baselines3's
PPO ``CnnPolicy`` with the same network and settings, :data:`PPO_SPEED_STEPS` env steps, per
seed (1, 2, 3). SB3 gets :class:`MinAtarCNN` as its ``features_extractor_class`` (MinAtar's
network as :mod:`agents.deep.features` builds it: the boolean channel-last ``(10, 10, 4)``
observation as float, channel-first, conv 16 3x3 stride 1, ReLU, fully connected 128, ReLU),
``net_arch=[]`` (linear heads on the shared features, as the preset's ``hidden=()``), and the
preset's 8 envs in a ``DummyVecEnv``, 128 steps, 4 epochs, batch 256, step size and clip range
annealed linearly from 2.5e-4 and 0.1, entropy 0.01, value 0.5, gradient clip 0.5, gamma 0.99,
lambda 0.95; both initialise orthogonally (gain sqrt(2) in the CNN, 0.01 policy head, 1 value
head). Each run is its own process with one thread everywhere (``OMP/OPENBLAS/MKL_NUM_THREADS``
before NumPy loads, ``torch.set_num_threads(1)``, ``threadpoolctl``) under the timing lock, as
``benchmarks/deep_rl_vs_sb3.py`` runs its peers; each row gives wall and CPU time of training,
CPU over wall, the busy OS threads and the mean return of the last 100 training episodes. Goal
``ppo_minatar_wall_ratio_vs_sb3`` <= 0.5 (median wall over SB3's median wall, on the seeds
that have both runs). A run takes 30-60 s here (4,096 steps: 1.4 s ours, 1.2 s SB3's, both
about 1 s of CPU), so the six runs about 5 minutes.

Part ``nbv`` -- PPO with ``policy="multi_input"`` (:func:`_nbv_ppo`) on
``mpgym/NextBestView-v0`` over the train split of the ``pybullet`` shapes (800 of the wheel's
1,000 ``random_urdfs`` meshes), evaluated on all 100 test-split shapes (episode ``i`` on shape
``i``) by the mean coverage after 5 views (:func:`envs.nbv.mean_coverage`), beside
``RandomViews`` (seed 0), ``FarthestView`` (seed 0) and ``GreedyOracle`` on the same shapes.
Goals (means over seeds): ``nbv_coverage_5views_vs_greedy`` >= 0.97 (over the greedy oracle) and
``nbv_coverage_5views_minus_random`` >= 0.15. Resumable like ``dqn-minatar`` (chunks of
:data:`NBV_CHUNK` steps, each followed by the checkpoint and the coverage on 50 val-split
shapes: the learning curve). With ``--select best`` (the default) the policy of the chunk with
the highest val coverage is kept (``best/`` in the run) and is the one scored on the test
shapes; ``--select last`` scores the policy training ended with (the protocol of the rows
committed before the option existed, which have no ``select`` field). About 300 steps/s here
once a shape's ground truth is cached (the first visit of each of the 800 train shapes costs
~0.12 s, of each view a few ms), so ~2 h per seed for the :func:`_nbv_ppo` budget of 2M steps
(400,000 episodes). The PPO settings are a first choice (not tuned: a 2-hour run per try),
stated in :func:`_nbv_ppo`. Tuning runs: ``--part nbv --seeds 0 --set KEY=VALUE`` (repeatable;
the report seeds are refused) trains with those settings under a run named after them and scores
it on the val shapes only, into ``nbv-tuning.json`` (never merged into the report); compare two
settings on the same seed.

Why this source and config (:data:`NBV_CONFIG`): with the env's default sensor (radius 2,
55-degree field of view: every image holds the whole object) five random views already see
most of the surface: after 5 views random reaches 0.912 and the greedy oracle 0.998 on the
procedural test shapes, and 0.901 and 0.992 on the 100 pybullet test shapes (farthest-view
0.976), so no policy can be 0.15 above random there. A camera nearer with a narrower field
(radius 1.5, 25 degrees) sees a part of the object per view, so which views are taken matters:
on the 100 pybullet test shapes random reaches 0.700, farthest-view 0.765 and greedy 0.903
after 5 views (on the first 20 of them, radius 1.2 / 35 degrees: 0.739, 0.810, 0.923; radius
2 / 20 degrees: 0.762, 0.839, 0.941). There 0.97 of greedy (0.876) is 0.176 above random, so
the two goals are both reachable, and a fixed well-spread sequence (farthest-view, 0.85 of
greedy) is not enough: the policy must read the fused grid. pybullet's meshes (real objects
with concavities) rather than the procedural shapes, which are mostly convex. The episode
ends after 5 views (``budget=5``, no early end at a coverage threshold:
``coverage_threshold=1``) and the 5th view's end counts as termination in training
(:class:`NBVTraining`: coverage after exactly 5 views is the task, not a time limit to
bootstrap across). The grid is 16^3 one-hot (unknown, free, occupied: 48 channels of 16x16 for
MinAtar's CNN, which fits grids of that size), ``visited`` a MultiBinary vector (the agents'
Dict encoder flattens it to 0/1 floats). One env (``n_envs=1``): every copy
would compute and cache the ground truth of all 800 shapes again (~1.8 MB and ~0.12 s each).

Part ``report`` merges the parts' JSON (``benchmarks/results/vision_rl-parts/{part}.json``)
into ``benchmarks/results/vision_rl.json`` with the goals, prints the table and draws the
learning curves (``vision_rl-curves.png`` beside the JSON). With ``--quick`` everything is
tiny and goes under ``runs/bench/vision_rl-quick/`` (runs under ``runs/vision-rl-bench/*-quick``).

    python benchmarks/vision_rl.py --part ppo-speed                   # ~5 min
    python benchmarks/vision_rl.py --part dqn-minatar --seeds 1 --hours 4  # repeat to continue
    python benchmarks/vision_rl.py --part nbv --seeds 1 2 3 --hours 3  # ~2 h per seed
    python benchmarks/vision_rl.py --part nbv --seeds 0 --set lr_schedule=linear  # tuning (val)
    python benchmarks/vision_rl.py --part report
    python benchmarks/vision_rl.py --quick --part dqn-minatar ppo-speed nbv report  # smoke test
"""

from __future__ import annotations

import os

# One thread for NumPy's BLAS here and in the timed child processes; before NumPy loads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import csv  # noqa: E402
import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

_HERE = Path(__file__).resolve().parent
# this folder holds bodies.py, a benchmark that would shadow the bodies package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def _load_benchmark(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"{name}_bench", _HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the imitation benchmark's progress files and metrics trimming, the NeRF benchmark's timing
# lock and load readings (through it), the SB3 benchmark's thread accounting and schedules
imitation_bench = _load_benchmark("imitation")
nerf_bench = imitation_bench.nerf_bench
sb3_bench = _load_benchmark("deep_rl_vs_sb3")

from mpgym.bench import (  # noqa: E402
    Goal,
    bench_parser,
    parse_overrides,
    report,
    restore_run,
    snapshot_run,
)
from mpgym.checkpoint import atomic_write_text  # noqa: E402
from mpgym.errors import MpgymError, check_positive  # noqa: E402

log = logging.getLogger("vision-rl-bench")

NAME = "vision_rl"
PARTS = ("dqn-minatar", "ppo-speed", "nbv")
RESULTS = _HERE / "results"
PARTS_DIR = RESULTS / f"{NAME}-parts"
QUICK_DIR = _HERE.parent / "runs" / "bench" / f"{NAME}-quick"
RUNS = _HERE.parent / "runs" / "vision-rl-bench"
"""Resumable training runs (checkpoints, replay buffers; not committed)."""
SNAPSHOTS = RESULTS / f"{NAME}-runs"
"""A committed copy of each report or tuning run after its latest chunk
(``{run}.tar.xz``, :func:`mpgym.bench.snapshot_run`): a run missing from :data:`RUNS` (a fresh
clone) continues from it."""
REPORT_SEEDS = (1, 2, 3)
"""Seeds of every part (the presets were not tuned on them)."""
HOURS = 4.0
"""Default training wall time of one invocation of a training part (per seed)."""
LAST_EPISODES = 100
"""The MinAtar paper's figure: mean return of the last 100 training episodes."""
DQN_CHUNK = 250_000
"""Frames between DQN checkpoints (~5 minutes; the replay buffer file is ~320 MB)."""
PPO_SPEED_STEPS = 100_000
"""Env steps of each timed PPO run (98 rollouts of 8 x 128)."""
NBV_SOURCE = "pybullet"
NBV_CONFIG = {"radius": 1.5, "fov_deg": 25.0, "budget": 5, "coverage_threshold": 1.0,
              "grid_size": 16, "grid_encoding": "onehot", "cache_shapes": 1000}
"""The NextBestView settings of the ``nbv`` part (module docstring)."""
NBV_VIEWS = 5
NBV_VAL_SHAPES = 50
NBV_CHUNK = 50_000
"""Env steps (views) between NBV checkpoints and val-split evaluations."""


def _nbv_ppo():
    """PPO for the ``nbv`` part: one env, 512-step rollouts (~100 episodes), 4 epochs of
    128-sample minibatches, Adam 3e-4, clip 0.2, entropy 0.01, undiscounted (the rewards of an
    episode sum to its coverage), MinAtar's CNN on the grid and a 256-unit ReLU layer after the
    features (CNN 128 + ``visited`` 48)."""
    from agents.deep.ppo import PPOConfig

    return PPOConfig(
        env_id="mpgym/NextBestView-v0", env_kwargs={"shapes": NBV_SOURCE, "config": NBV_CONFIG},
        total_timesteps=2_000_000, n_envs=1, n_steps=512, batch_size=128, n_epochs=4,
        learning_rate=3e-4, lr_schedule="constant", clip_range=0.2, clip_schedule="constant",
        gamma=1.0, gae_lambda=0.95, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
        hidden=(256,), activation="relu", policy="multi_input", features="minatar")


# ------------------------------------------------------------------------ resumable training


def _last_returns(run: Path, n: int = LAST_EPISODES) -> tuple[float, int]:
    """Mean return of the run's last ``n`` training episodes (``metrics.csv``) and the count."""
    f = run / "metrics.csv"
    if not f.exists():
        return math.nan, 0
    with f.open(newline="") as fh:
        returns = [float(r["return"]) for r in csv.DictReader(fh) if r.get("return")]
    return (float(np.mean(returns[-n:])) if returns else math.nan), len(returns)


def train_chunks(agent: Any, run: Path, *, total: int, chunk: int, hours: float,
                 lock: str | None, evaluate: Callable[[Any], dict],
                 before_chunk: Callable[[Any, int], None] | None = None,
                 include_buffer: bool = False, snapshot: Path | None = None,
                 keep_best: str | None = None) -> dict:
    """Train ``agent`` in chunks until ``total`` steps or ``hours`` of this call; its progress.

    After each chunk (under the timing lock): the checkpoint (with the replay buffer when
    ``include_buffer``), ``evaluate(agent)``, with ``keep_best`` (a key of its result, higher
    is better) the policy in ``run/best/`` when it beats the best check so far (recorded as
    ``progress["best"]``), and ``progress.json`` (wall seconds and one entry per chunk), so a
    rerun continues where this one stopped; then the run's ``snapshot`` (when given,
    :func:`mpgym.bench.snapshot_run`).
    """
    state = imitation_bench._read_progress(run)
    deadline = time.perf_counter() + hours * 3600.0
    while agent.num_timesteps < total and time.perf_counter() < deadline:
        steps = min(chunk, total - agent.num_timesteps)
        if before_chunk is not None:
            before_chunk(agent, steps)
        wall, waited, before, after = imitation_bench.timed_learn(agent, steps, lock)
        agent.save(run, **({"include_buffer": True} if include_buffer else {}))
        ev = evaluate(agent)
        best = state.get("best")
        if keep_best is not None and (best is None or ev[keep_best] > best[keep_best]):
            agent.save(run / "best", resume=False)
            state["best"] = {"timesteps": agent.num_timesteps, keep_best: ev[keep_best]}
        state["wall_s"] += wall
        state["chunks"].append({"timesteps": agent.num_timesteps, "wall_s": state["wall_s"],
                                "steps_per_s": steps / wall, "lock_wait_s": waited,
                                "load_before": before["loadavg"], "load_after": after["loadavg"],
                                **ev})
        atomic_write_text(imitation_bench._progress_file(run), json.dumps(state, indent=1))
        if snapshot is not None:
            snapshot_run(run, snapshot)
        log.info("%s: %d steps, %.2f h, %.0f steps/s; %s", run.name, agent.num_timesteps,
                 state["wall_s"] / 3600, steps / wall, ev)
    return state


def _snapshot(run: Path, quick: bool) -> Path | None:
    """Where ``run``'s committed snapshot lives (none for ``--quick`` runs)."""
    return None if quick else SNAPSHOTS / f"{run.name}.tar.xz"


def _open_run(cls: Any, run: Path, make: Callable[[], Any], env: Any = None,
              snapshot: Path | None = None) -> Any:
    """The run's agent: loaded from its checkpoint (metrics trimmed to it), or ``make()``.

    A run with no checkpoint is first restored from its ``snapshot`` when there is one.
    """
    from mpgym.runs import RunDir

    run.mkdir(parents=True, exist_ok=True)
    if snapshot is not None and restore_run(snapshot, run):
        log.info("%s: restored from %s", run.name, snapshot)
    if (run / "checkpoint.safetensors").exists():
        agent = cls.load(run, env=env) if env is not None else cls.load(run)
        imitation_bench._trim_metrics(run, agent.num_timesteps)
        log.info("%s: continuing at %d steps", run.name, agent.num_timesteps)
    else:
        agent = make()
    agent.run = RunDir(run)
    return agent


# ------------------------------------------------------------------------ dqn-minatar


def dqn_part(seed: int, hours: float, lock: str | None, quick: bool) -> dict:
    """Train (or continue) DQN's ``minatar-breakout`` preset for one seed; its row."""
    import torch

    from agents.deep.dqn import DQN, DQN_PRESETS, MINATAR_DQN_REFERENCE

    torch.set_num_threads(1)
    preset = dataclasses.replace(DQN_PRESETS["minatar-breakout"], seed=seed)
    chunk = DQN_CHUNK
    if quick:
        preset = dataclasses.replace(preset, total_timesteps=3_000, learning_starts=500,
                                     buffer_size=5_000)
        chunk = 1_500
    decay = preset.exploration_fraction * preset.total_timesteps  # 105,000 frames

    def same_decay(agent: Any, steps: int) -> None:
        # epsilon decays over fraction x (frames so far + this chunk): keep ``decay`` frames
        agent.config = dataclasses.replace(
            preset, exploration_fraction=(decay + 0.5) / (agent.num_timesteps + steps))

    def evaluate(agent: Any) -> dict:
        ret, episodes = _last_returns(run)
        return {"last100_return": ret, "episodes": episodes}

    run = RUNS / (f"dqn-minatar-breakout-s{seed}" + ("-quick" if quick else ""))
    agent = _open_run(DQN, run, lambda: DQN(preset.env_id, preset),
                      snapshot=_snapshot(run, quick))
    state = train_chunks(agent, run, total=preset.total_timesteps, chunk=chunk, hours=hours,
                         lock=lock, evaluate=evaluate, before_chunk=same_decay,
                         include_buffer=True, snapshot=_snapshot(run, quick))
    agent.env.close()
    ret, episodes = _last_returns(run)
    return {"part": "dqn-minatar", "run": f"dqn-s{seed}", "seed": seed,
            "timesteps": agent.num_timesteps, "budget": preset.total_timesteps,
            "hours": state["wall_s"] / 3600, "last100_return": ret, "episodes": episodes,
            "paper": MINATAR_DQN_REFERENCE[preset.env_id],
            "curve": [[c["timesteps"], c["last100_return"]] for c in state["chunks"]]}


# ------------------------------------------------------------------------ ppo-speed


def minatar_extractor() -> type:
    """SB3's ``features_extractor_class`` of MinAtar's network, as :mod:`agents.deep.features`.

    ``[B, 10, 10, C]`` boolean (SB3 passes it as float: not an image space) -> channel-first
    ``[B, C, 10, 10]`` -> conv 16 3x3 stride 1 -> ReLU -> fully connected 128 -> ReLU.
    """
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from torch import Tensor, nn

    class MinAtarCNN(BaseFeaturesExtractor):
        def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128):
            super().__init__(observation_space, features_dim)
            h, w, c = observation_space.shape
            self.cnn = nn.Sequential(nn.Conv2d(c, 16, 3, stride=1), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(16 * (h - 2) * (w - 2), features_dim), nn.ReLU())

        def forward(self, observations: Tensor) -> Tensor:
            return self.cnn(observations.float().permute(0, 3, 1, 2))

    return MinAtarCNN


def sb3_minatar_ppo(cfg: Any) -> Any:
    """SB3's PPO ``CnnPolicy`` with the network and settings of the PPO config ``cfg``."""
    import stable_baselines3 as sb3
    from stable_baselines3.common.env_util import make_vec_env

    from envs.make import make_env

    env = make_vec_env(lambda: make_env(cfg.env_id), n_envs=cfg.n_envs, seed=cfg.seed)
    lin = sb3_bench._lin
    return sb3.PPO(
        "CnnPolicy", env, n_steps=cfg.n_steps, batch_size=cfg.batch_size,
        n_epochs=cfg.n_epochs, learning_rate=lin(cfg.learning_rate),
        clip_range=lin(cfg.clip_range), ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef,
        max_grad_norm=cfg.max_grad_norm, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
        policy_kwargs={"features_extractor_class": minatar_extractor(),
                       "features_extractor_kwargs": {"features_dim": 128}, "net_arch": []},
        seed=cfg.seed, device="cpu", verbose=0)


def speed_run(spec: dict[str, Any]) -> dict[str, Any]:
    """One timed PPO run in this process (one thread everywhere); its row."""
    import torch
    from threadpoolctl import threadpool_limits

    from agents.deep.ppo import PPO, PPO_PRESETS

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    threadpool_limits(1)
    cfg = dataclasses.replace(PPO_PRESETS["minatar-breakout"], seed=spec["seed"],
                              total_timesteps=spec["steps"])
    model = PPO(cfg.env_id, cfg) if spec["lib"] == "mpgym" else sb3_minatar_ppo(cfg)
    t0, c0 = time.perf_counter(), time.process_time()
    if spec["lib"] == "mpgym":
        model.learn(spec["steps"], progress_bar=False)
        returns = model.episode_returns
    else:
        model.learn(spec["steps"])
        returns = [ep["r"] for ep in model.ep_info_buffer]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    per_thread = sb3_bench._thread_cpu()
    return {**spec, "env_steps": int(model.num_timesteps), "wall_s": wall, "cpu_s": cpu,
            "cpu_over_wall": cpu / wall, "blas_threads": sb3_bench._blas_threads(),
            "torch_threads": torch.get_num_threads(),
            "busy_threads": sum(c > 0.05 * sum(per_thread) for c in per_thread),
            "last100_return": float(np.mean(returns[-LAST_EPISODES:])) if returns else math.nan}


def ppo_speed_part(seeds: list[int], lock: str | None, quick: bool, done: list[dict]) -> list:
    """The timed runs missing from ``done``, each in a fresh process under the lock; rows."""
    steps = 4_096 if quick else PPO_SPEED_STEPS
    have = {r["run"] for r in done}
    rows = []
    for seed in seeds:
        for lib in ("mpgym", "sb3"):
            spec = {"part": "ppo-speed", "run": f"ppo-{lib}-s{seed}-{steps}", "lib": lib,
                    "seed": seed, "steps": steps}
            if spec["run"] in have:
                continue
            with nerf_bench.timing_lock(lock) as waited:
                before = nerf_bench.machine_load()
                out = subprocess.run([sys.executable, __file__, "--run-one", json.dumps(spec)],
                                     capture_output=True, text=True, check=False,
                                     env=dict(os.environ))
                after = nerf_bench.machine_load()
            if out.returncode != 0:
                raise MpgymError(f"run {spec} failed:\n{out.stderr[-4000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({**row, "lock_wait_s": waited, "load_before": before["loadavg"][0],
                         "load_after": after["loadavg"][0]})
            log.info("%s: %.1f s wall, %.1f s CPU", spec["run"], row["wall_s"], row["cpu_s"])
    return rows


# ------------------------------------------------------------------------ nbv


class NBVTraining(gym.Wrapper):
    """The last view's end (the budget) as termination, not truncation (module docstring)."""

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated or truncated, False, info


def nbv_env(split: str) -> gym.Env:
    """The ``nbv`` part's env on ``split`` (:data:`NBV_CONFIG`, :class:`NBVTraining`)."""
    import envs  # noqa: F401  (registers the mpgym/ ids)

    return NBVTraining(gym.make("mpgym/NextBestView-v0", shapes=NBV_SOURCE, split=split,
                                config=NBV_CONFIG))


def _coverage(env: gym.Env, policy: Any, n: int | None = None) -> float:
    from envs.nbv import mean_coverage

    n = n or len(env.unwrapped.shape_names)
    return mean_coverage(env, policy, min(n, len(env.unwrapped.shape_names)), views=NBV_VIEWS,
                         shapes="in_order")


def nbv_part(seed: int, hours: float, lock: str | None, quick: bool,
             overrides: dict[str, Any] | None = None, select: str = "best") -> dict:
    """Train (or continue) PPO on the NBV train split for one seed; its test-split row.

    ``overrides`` (``--set``, tuning runs on seeds outside :data:`REPORT_SEEDS`) change
    :func:`_nbv_ppo`'s settings; such a run is named after them and its row holds the val-split
    curve only: the test shapes are never scored for a setting being chosen.

    ``select``: which policy the test row scores: ``"best"``, the one of the chunk with the
    highest val coverage (kept in ``run/best/``, as an ``EvalCallback`` keeps its best model;
    the test shapes untouched until the end), or ``"last"``, the one training ended with. The
    choice is made when a run starts and kept in its ``progress.json``.
    """
    import torch

    from agents.deep.ppo import PPO

    torch.set_num_threads(1)
    overrides = overrides or {}
    cfg = dataclasses.replace(_nbv_ppo(), seed=seed, **overrides)
    chunk, val_shapes, test_shapes = NBV_CHUNK, NBV_VAL_SHAPES, None
    if quick:
        cfg = dataclasses.replace(cfg, total_timesteps=1_024, n_steps=256, batch_size=64)
        chunk, val_shapes, test_shapes = 512, 4, 8
    name = f"nbv-ppo-s{seed}" + "".join(f"-{k}{v}" for k, v in sorted(overrides.items()))
    run = RUNS / (name + ("-quick" if quick else ""))
    train_env, val_env = nbv_env("train"), nbv_env("val")
    agent = _open_run(PPO, run, lambda: PPO(train_env, cfg), env=train_env,
                      snapshot=_snapshot(run, quick))
    progress = imitation_bench._read_progress(run)
    started = progress.get("select", "last" if progress["chunks"] else select)
    if started != select:
        raise MpgymError(
            f"{run} was trained with --select {started}; continue it with --select {started}, "
            f"or move it away to train this seed with --select {select} from the start.")
    if not progress["chunks"]:
        progress["select"] = select
        atomic_write_text(imitation_bench._progress_file(run), json.dumps(progress, indent=1))
    state = train_chunks(agent, run, total=cfg.total_timesteps, chunk=chunk, hours=hours,
                         lock=lock, evaluate=lambda a: {
                             "val_coverage": _coverage(val_env, a, val_shapes)},
                         snapshot=_snapshot(run, quick),
                         keep_best="val_coverage" if select == "best" else None)
    agent.close()
    curve = [[c["timesteps"], c["val_coverage"]] for c in state["chunks"]]
    if overrides:
        return {"part": "nbv-tuning", "run": name, "policy": "ppo", "seed": seed,
                "settings": json.dumps(overrides), "timesteps": agent.num_timesteps,
                "budget": cfg.total_timesteps, "hours": state["wall_s"] / 3600,
                "val_coverage": curve[-1][1] if curve else math.nan, "curve": curve}
    test = nbv_env("test")
    timesteps, chosen = agent.num_timesteps, {}
    if select == "best" and state.get("best"):
        agent = PPO.load(run / "best", env=train_env)
        chosen = {"selected_timesteps": state["best"]["timesteps"],
                  "val_coverage": state["best"]["val_coverage"]}
        log.info("%s: the policy of the check at %d steps (val coverage %.4f)", run.name,
                 chosen["selected_timesteps"], chosen["val_coverage"])
    return {"part": "nbv", "run": f"nbv-ppo-s{seed}", "policy": "ppo", "seed": seed,
            "timesteps": timesteps, "budget": cfg.total_timesteps,
            "hours": state["wall_s"] / 3600, "select": select, **chosen,
            "coverage_5views": _coverage(test, agent, test_shapes),
            "shapes": len(test.unwrapped.shape_names[:test_shapes]),
            "curve": [[c["timesteps"], c["val_coverage"]] for c in state["chunks"]]}


def nbv_baselines(quick: bool) -> list[dict]:
    """Random, farthest-view and greedy-oracle coverage after 5 views on the test shapes."""
    from envs.nbv import FarthestView, GreedyOracle, RandomViews

    env = nbv_env("test")
    n = 8 if quick else len(env.unwrapped.shape_names)
    policies = {"random": RandomViews(env, seed=0), "farthest": FarthestView(env, seed=0),
                "greedy": GreedyOracle(env)}
    return [{"part": "nbv", "run": f"nbv-{name}", "policy": name, "shapes": n,
             "coverage_5views": _coverage(env, policy, n)} for name, policy in policies.items()]


# ------------------------------------------------------------------------ goals and report


def goals_of(rows: list[dict[str, Any]]) -> list[Goal]:
    """The goals the rows allow (a training seed counts once it reached its budget)."""
    goals = []
    done = [r for r in rows if r["part"] in ("dqn-minatar", "nbv") and "budget" in r
            and r["timesteps"] >= r["budget"]]
    dqn = [r for r in done if r["part"] == "dqn-minatar"]
    if dqn:
        value = float(np.mean([r["last100_return"] for r in dqn])) / dqn[0]["paper"]
        goals.append(Goal("dqn_minatar_breakout_vs_paper", value, 1.0, ">="))
    speed = [r for r in rows if r["part"] == "ppo-speed"]
    both = ({r["seed"] for r in speed if r["lib"] == "mpgym"}
            & {r["seed"] for r in speed if r["lib"] == "sb3"})
    if both:
        def wall(lib: str) -> float:
            return statistics.median(r["wall_s"] for r in speed
                                     if r["lib"] == lib and r["seed"] in both)

        goals.append(Goal("ppo_minatar_wall_ratio_vs_sb3", wall("mpgym") / wall("sb3"), 0.5,
                          "<="))
    ours = [r["coverage_5views"] for r in done if r["part"] == "nbv"]
    base = {r["policy"]: r["coverage_5views"] for r in rows
            if r["part"] == "nbv" and "budget" not in r}
    if ours and {"greedy", "random"} <= set(base):
        mean = float(np.mean(ours))
        goals += [Goal("nbv_coverage_5views_vs_greedy", mean / base["greedy"], 0.97, ">="),
                  Goal("nbv_coverage_5views_minus_random", mean - base["random"], 0.15, ">=")]
    return goals


COLUMNS = ["part", "run", "lib", "policy", "seed", "timesteps", "budget", "hours", "env_steps",
           "wall_s", "cpu_s", "cpu_over_wall", "busy_threads", "last100_return", "episodes",
           "coverage_5views", "shapes", "select", "selected_timesteps", "settings",
           "val_coverage", "load_before", "load_after"]


def write_part(folder: Path, part: str, rows: list[dict]) -> list[dict]:
    """Add ``rows`` to the part's JSON (a row replaces the one of the same ``run``); all rows."""
    path = folder / f"{part}.json"
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    new = {r["run"] for r in rows}
    merged = [r for r in old if r["run"] not in new] + rows
    report(NAME, merged, goals_of(merged), path, columns=COLUMNS, extra={"part": part})
    return merged


def plot_curves(rows: list[dict], path: Path) -> None:
    """DQN's last-100 return against frames and NBV's val coverage against steps, per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for r in sorted(rows, key=lambda r: r.get("seed", -1)):  # legend in seed order
        if r.get("curve"):
            ax = a if r["part"] == "dqn-minatar" else b
            x, y = zip(*r["curve"], strict=True)
            ax.plot(x, y, label=f"seed {r['seed']}")
    for r in rows:
        if r["part"] == "dqn-minatar":
            a.axhline(r["paper"], ls=":", c="k")
            break
    for r in rows:
        if r["part"] == "nbv" and r.get("policy") in ("random", "greedy"):
            b.axhline(r["coverage_5views"], ls=":", c="grey")
    a.set(xlabel="frames", ylabel="mean return, last 100 episodes",
          title="DQN on MinAtar Breakout (dotted: paper)")
    b.set(xlabel="env steps (views)", ylabel="coverage after 5 views (val)",
          title="PPO next-best-view (dotted: random, greedy on test)")
    for ax in (a, b):
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report_part(folder: Path, json_path: Path) -> None:
    """Merge the parts' rows into ``json_path`` with the goals; the curves beside it."""
    rows, missing = [], []
    for part in PARTS:
        path = folder / f"{part}.json"
        if path.exists():
            rows += json.loads(path.read_text())["rows"]
        else:
            missing.append(part)
    if missing:
        log.warning("no results yet for %s: their goals are left out", ", ".join(missing))
    chosen = {r.get("select", "last") for r in rows if r["part"] == "nbv" and "seed" in r}
    if len(chosen) > 1:
        log.warning("the nbv seeds were scored with different --select (%s): their mean "
                    "mixes two protocols", ", ".join(sorted(chosen)))
    png = json_path.with_name(f"{NAME}-curves.png")
    plot_curves(rows, png)
    report(NAME, rows, goals_of(rows), json_path, columns=COLUMNS,
           extra={"parts_dir": str(folder), "missing_parts": missing, "curves": str(png)})


# ------------------------------------------------------------------------ cli


def _seed(text: str) -> int:
    """A seed argument: a whole number >= 0."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are whole numbers; got {text!r}") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"seeds must be >= 0; got {seed}")
    return seed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--part", dest="parts", nargs="+", choices=PARTS + ("report",),
                   default=["report"], help="parts to run, in this order (default: report)")
    p.add_argument("--seeds", nargs="+", type=_seed, default=list(REPORT_SEEDS),
                   help="seeds of the training and timing parts (default 1 2 3)")
    p.add_argument("--hours", type=float, default=HOURS,
                   help=f"training wall time of this invocation, per seed (default {HOURS})")
    p.add_argument("--parts-dir", type=Path, default=None,
                   help=f"where parts write (default {PARTS_DIR}; --quick: {QUICK_DIR})")
    p.add_argument("--timing-lock", default=nerf_bench.TIMING_LOCK,
                   help=f"file locked while timing (default {nerf_bench.TIMING_LOCK}; '' none)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="tuning runs: a PPO setting of the nbv part (repeatable; seeds outside "
                   "the report's; scored on the val shapes only, into nbv-tuning.json)")
    p.add_argument("--select", choices=("best", "last"), default="best",
                   help="nbv: score on the test shapes the policy of the best val check "
                   "(default) or the last one")
    p.add_argument("--run-one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        check_positive("--hours", args.hours, integer=False)
        from agents.deep.ppo import PPOConfig

        args.overrides = parse_overrides(args.overrides, PPOConfig)
    except MpgymError as e:
        p.error(str(e))
    if args.overrides and (set(args.parts) != {"nbv"} or set(args.seeds) & set(REPORT_SEEDS)):
        p.error(f"--set is for tuning runs of the nbv part on seeds other than the report's "
                f"{', '.join(map(str, REPORT_SEEDS))} (e.g. --part nbv --seeds 0 --set "
                f"lr_schedule=linear); got --part {' '.join(args.parts)} --seeds "
                f"{' '.join(map(str, args.seeds))}.")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.run_one is not None:
        print(json.dumps(speed_run(json.loads(args.run_one))))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run_parts(args)
    except MpgymError as e:  # a run that cannot continue as asked: the message, no traceback
        sys.exit(f"error: {e}")


def run_parts(args: argparse.Namespace) -> None:
    """Run the parts ``args.parts`` asks for, in order."""
    folder = args.parts_dir or (QUICK_DIR if args.quick else PARTS_DIR)
    lock = args.timing_lock or None
    for part in args.parts:
        if part == "dqn-minatar":
            write_part(folder, part, [dqn_part(s, args.hours, lock, args.quick)
                                      for s in args.seeds])
        elif part == "ppo-speed":
            path = folder / f"{part}.json"
            done = json.loads(path.read_text())["rows"] if path.exists() else []
            write_part(folder, part, ppo_speed_part(args.seeds, lock, args.quick, done))
        elif part == "nbv" and args.overrides:
            write_part(folder, "nbv-tuning", [nbv_part(s, args.hours, lock, args.quick,
                                                       args.overrides, args.select)
                                              for s in args.seeds])
        elif part == "nbv":
            rows = [nbv_part(s, args.hours, lock, args.quick, select=args.select)
                    for s in args.seeds]
            write_part(folder, part, rows + nbv_baselines(args.quick))
        else:
            report_part(folder, args.json or (folder if args.quick else RESULTS)
                        / f"{NAME}.json")


if __name__ == "__main__":
    main()
