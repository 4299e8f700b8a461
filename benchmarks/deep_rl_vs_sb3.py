"""Deep RL agents vs stable-baselines3: wall time, steps to threshold, final return.

Four kinds of figures, each a resumable part (``--part``) that writes its own JSON:

- ``dqn-cartpole``, ``ppo``, ``a2c`` (timing, seeds 0-4, CartPole-v1 at the zoo's budgets:
  DQN 5e4, PPO 1e5, A2C 5e5 env steps): per seed three runs -- this project with its own
  CartPole defaults (``hparams=own``), this project with rl-baselines3-zoo's hyperparameters
  exactly and SB3's env vectorisation (``hparams=zoo``: a ``SyncVectorEnv`` of ``n_envs`` single
  envs, as SB3's ``DummyVecEnv``), and stable-baselines3 with the zoo's hyperparameters.
  Goals ``{algo}_wall_ratio_vs_sb3`` (own / SB3, median wall) <= 0.5 and
  ``{algo}_wall_ratio_same_hparams`` (zoo / SB3) <= 0.6.
- ``solved-seeds``: this project's DQN with its CartPole defaults on seeds 5-14, which were never
  used for tuning (the defaults were chosen on seeds 0-4). Goal ``dqn_solved_heldout_seeds`` >= 9.
- ``extras``: this project's presets for PPO on Pendulum-v1 and DQN on Acrobot-v1 (1e5 steps
  each), seeds 5-9. Goals ``ppo_pendulum_return_median`` >= -250 and
  ``dqn_acrobot_return_median`` >= -100.
- ``sac-td3-pendulum`` and ``sac-td3-hopper`` (timing, held-out seeds 5-9 on Pendulum-v1 at 2e4
  steps and 5-7 on Hopper-v5 at 1e5 steps, never used to choose a setting): SAC and TD3 of this
  project with rl-baselines3-zoo's hyperparameters (its presets ``SAC.PRESETS`` and
  ``TD3.PRESETS`` are the zoo's: ``hparams=zoo``) against SB3 with the same. Goals
  ``sac_pendulum_return`` >= -200 (median over the seeds), ``{sac,td3}_wall_ratio_vs_sb3`` <= 0.5
  (median wall over SB3's median wall; the larger of the two envs' ratios) and
  ``{sac,td3}_hopper_return_vs_sb3`` >= 0.95 (median final return over SB3's at equal steps).

Every run is its own Python process with ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``MKL_NUM_THREADS`` set to 1 before NumPy loads (and ``threadpoolctl`` limiting the BLAS pools
and ``torch.set_num_threads(1)`` inside), so both libraries get one core; each row gives the
process CPU time over the wall time of training (``cpu_over_wall``, ~1 at one core on an idle
machine), the BLAS threads seen, and -- a check that does not depend on the load -- how many of
the process's OS threads used more than 5% of its CPU time (``busy_threads``) and the busiest
one's share (``top_thread_cpu_share``). Wall and CPU time exclude the periodic evaluations.
A timing run holds the machine-wide lock ``/tmp/mpgym-timing.lock`` (so timing runs never
overlap) and records the 1-minute load average before and after. A part's JSON is rewritten
after every run and a rerun skips the runs it already holds; ``--merge`` combines the parts
into one JSON with the goals.

Solved: the mean return of 20 evaluation episodes (deterministic policy, episode ``i`` reset with
seed ``20000 + seed + i``) reaches CartPole-v1's ``reward_threshold`` of 475, the success rule
:func:`agents.common.evaluate_policy` applies to CartPole (each row also gives the fraction of
the 20 episodes that reach it, ``success_rate``).

rl-baselines3-zoo's hyperparameters (``hyperparams/dqn.yml``, ``ppo.yml``, ``a2c.yml``), with
SB3's defaults for what they leave out:

- DQN CartPole-v1: lr 2.3e-3 (constant), batch 64, buffer 1e5, learning_starts 1000, gamma 0.99,
  target_update_interval 10 env steps, train_freq 256, gradient_steps 128, exploration_fraction
  0.16, final eps 0.04, net_arch [256, 256]; SB3: Adam (eps 1e-8), Huber loss, max_grad_norm 10,
  plain DQN targets (no Double DQN). SB3 copies the target net during collection, when the
  online net does not change, so the copy every 10 env steps equals this project's copy after
  each round of 128 gradient steps (``target_update_interval=128`` gradient steps).
- PPO CartPole-v1: 8 envs, n_steps 32, batch 256, gae_lambda 0.8, gamma 0.98, 20 epochs,
  ent_coef 0, lr linear from 1e-3, clip range linear from 0.2; SB3: Adam eps 1e-5, vf_coef 0.5,
  max_grad_norm 0.5, advantages normalised per minibatch, [64, 64] tanh, orthogonal init.
- A2C CartPole-v1: 8 envs, ent_coef 0, 5e5 steps; SB3: n_steps 5, lr 7e-4 (constant), gamma
  0.99, gae_lambda 1, vf_coef 0.5, max_grad_norm 0.5, RMSprop (alpha 0.99, eps 1e-5), no
  advantage normalisation, [64, 64] tanh.
- SAC Pendulum-v1: lr 1e-3; Hopper-v5 (the zoo's MuJoCo defaults): learning_starts 1e4; SB3:
  buffer 1e6, learning_starts 100, batch 256, tau 0.005, gamma 0.99, train_freq 1,
  gradient_steps 1, automatic entropy (target -dim(A)), [256, 256] ReLU, Adam 3e-4.
- TD3 Pendulum-v1: gamma 0.98, buffer 2e5, learning_starts 1e4, Gaussian action noise 0.1,
  lr 1e-3, [400, 300]; Hopper-v5: learning_starts 1e4, noise 0.1, lr 1e-3, batch 256,
  [400, 300]; SB3: policy delay 2, target noise 0.2 clipped at 0.5, tau 0.005.
- PPO Pendulum-v1 (SB3 only with ``--extra-sb3``): 4 envs, n_steps 1024, gae_lambda 0.95, gamma
  0.9, 10 epochs, lr 1e-3, clip 0.2, gSDE resampled every 4 steps; DQN Acrobot-v1: lr 6.3e-4,
  batch 128, buffer 5e4, learning_starts 0, target_update_interval 250, train_freq 4,
  gradient_steps -1, exploration 0.12 to 0.1, net_arch [256, 256].

One difference remains in the ``zoo`` rows: this project reads the schedules' progress at the
start of a rollout, SB3 after it (one rollout later; PPO's linear lr and clip range).

    python benchmarks/deep_rl_vs_sb3.py --part dqn-cartpole  # ppo, a2c, solved-seeds, extras
    python benchmarks/deep_rl_vs_sb3.py --merge  # -> benchmarks/results/deep_rl_vs_sb3.json
    python benchmarks/deep_rl_vs_sb3.py --quick --part ppo  # smoke test, under runs/bench/
"""

from __future__ import annotations

import os

# One thread for NumPy's BLAS in this process and (inherited) in every measured child process;
# must happen before NumPy loads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import fcntl  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Literal  # noqa: E402

from mpgym.bench import Goal, bench_parser, machine_info, report  # noqa: E402
from mpgym.checkpoint import atomic_write_text, to_jsonable  # noqa: E402
from mpgym.errors import MpgymError  # noqa: E402

NAME = "deep_rl_vs_sb3"
RESULTS = Path(__file__).resolve().parent / "results"
LOCK = Path("/tmp/mpgym-timing.lock")
EVAL_EPISODES = 20
CHECK_EPISODES = 5
THRESHOLD = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "Pendulum-v1": -250.0,
             "Hopper-v5": 3800.0}  # Hopper: Gymnasium's reward_threshold
BUDGET = {"dqn": 50_000, "ppo": 100_000, "a2c": 500_000}
EXTRA_BUDGET = {"Acrobot-v1": 100_000, "Pendulum-v1": 100_000}
TIMING_SEEDS = [0, 1, 2, 3, 4]
HELDOUT_SEEDS = list(range(5, 15))
EXTRA_SEEDS = [5, 6, 7, 8, 9]
EXTRAS = [("ppo", "Pendulum-v1"), ("dqn", "Acrobot-v1")]
CONTINUOUS = {"sac-td3-pendulum": ("Pendulum-v1", 20_000, [5, 6, 7, 8, 9]),
              "sac-td3-hopper": ("Hopper-v5", 100_000, [5, 6, 7])}
"""Continuous-control parts: env, steps, held-out seeds."""
PARTS = ["dqn-cartpole", "ppo", "a2c", "solved-seeds", "extras", *CONTINUOUS]
Hparams = Literal["own", "zoo"]


# --------------------------------------------------------------------------- run plans


def plan(part: str, quick: bool, extra_sb3: bool = False) -> list[dict[str, Any]]:
    """The runs of a part as specs ``{lib, algo, env, seed, steps, hparams, every, timing}``."""
    scale = 0.05 if quick else 1.0
    specs: list[dict[str, Any]] = []

    def add(lib: str, algo: str, env: str, seed: int, hparams: str, budget: int, timing: bool,
            checks: int) -> None:
        steps = int(budget * scale)
        specs.append({"lib": lib, "algo": algo, "env": env, "seed": seed, "steps": steps,
                      "hparams": hparams, "every": max(steps // checks, 1000),
                      "timing": timing})

    if part in ("dqn-cartpole", "ppo", "a2c"):
        algo = part.split("-")[0]
        for seed in TIMING_SEEDS[:1] if quick else TIMING_SEEDS:
            for lib, hparams in (("mpgym", "own"), ("mpgym", "zoo"), ("sb3", "zoo")):
                add(lib, algo, "CartPole-v1", seed, hparams, BUDGET[algo], True, 20)
    elif part == "solved-seeds":
        for seed in HELDOUT_SEEDS[:2] if quick else HELDOUT_SEEDS:
            add("mpgym", "dqn", "CartPole-v1", seed, "own", BUDGET["dqn"], False, 20)
    elif part == "extras":
        for seed in EXTRA_SEEDS[:1] if quick else EXTRA_SEEDS:
            for algo, env in EXTRAS:
                add("mpgym", algo, env, seed, "own", EXTRA_BUDGET[env], False, 10)
                if extra_sb3:
                    add("sb3", algo, env, seed, "zoo", EXTRA_BUDGET[env], False, 10)
    elif part in CONTINUOUS:
        env, budget, seeds = CONTINUOUS[part]
        for seed in seeds[:1] if quick else seeds:
            for algo in ("sac", "td3"):
                for lib in ("mpgym", "sb3"):
                    add(lib, algo, env, seed, "zoo", budget, True, 10)
    else:
        raise MpgymError(f"unknown part {part!r}; accepted: {', '.join(PARTS)}.")
    return specs


def _key(spec: dict[str, Any]) -> tuple:
    return tuple(spec[k] for k in ("lib", "algo", "env", "seed", "steps", "hparams"))


# --------------------------------------------------------------------------- one run (child)


class Probe:
    """Evaluates a policy every ``every`` env steps; records when it first reaches ``threshold``.

    Its own wall and CPU time are accumulated so they can be subtracted from the training's.
    """

    def __init__(self, env_id: str, every: int, threshold: float, seed: int):
        self.env_id, self.every, self.threshold, self.seed = env_id, every, threshold, seed
        self.next_at = every
        self.solved_at: int | None = None
        self.eval_seconds = 0.0
        self.eval_cpu_seconds = 0.0

    def __call__(self, policy: Any, num_timesteps: int) -> None:
        from agents.common import evaluate_policy

        if num_timesteps < self.next_at or self.solved_at is not None:
            return
        self.next_at += self.every
        t0, c0 = time.perf_counter(), time.process_time()
        r = evaluate_policy(policy, self.env_id, CHECK_EPISODES, seed=10_000 + self.seed)
        if r.mean_return >= self.threshold:
            self.solved_at = num_timesteps
        self.eval_seconds += time.perf_counter() - t0
        self.eval_cpu_seconds += time.process_time() - c0


def zoo_mpgym(algo: str, env_id: str) -> Any:
    """This project's config with rl-baselines3-zoo's CartPole-v1 hyperparameters exactly."""
    from agents.deep.a2c import A2CConfig
    from agents.deep.dqn import DQNConfig
    from agents.deep.ppo import PPOConfig

    if env_id != "CartPole-v1":
        raise MpgymError(f"no like-for-like zoo config for {algo} on {env_id}; accepted: "
                         "CartPole-v1.")
    if algo == "dqn":
        return DQNConfig(
            learning_rate=2.3e-3, lr_schedule="constant", buffer_size=100_000,
            learning_starts=1000, batch_size=64, gamma=0.99, train_freq=256, gradient_steps=128,
            target_update_interval=128, tau=1.0, exploration_fraction=0.16,
            exploration_initial_eps=1.0, exploration_final_eps=0.04, double_dqn=False,
            dueling=False, loss="huber", max_grad_norm=10.0, hidden=(256, 256))
    if algo == "ppo":
        return PPOConfig(
            n_envs=8, vectorization="sync", n_steps=32, batch_size=256, gae_lambda=0.8,
            gamma=0.98, n_epochs=20, ent_coef=0.0, learning_rate=1e-3, lr_schedule="linear",
            clip_range=0.2, clip_schedule="linear", vf_coef=0.5, max_grad_norm=0.5,
            normalize_advantage=True, target_kl=None, hidden=(64, 64), activation="tanh")
    if algo == "a2c":
        return A2CConfig(
            n_envs=8, vectorization="sync", n_steps=5, learning_rate=7e-4,
            lr_schedule="constant", gamma=0.99, gae_lambda=1.0, ent_coef=0.0, vf_coef=0.5,
            max_grad_norm=0.5, optimizer="rmsprop", normalize_advantage=False,
            hidden=(64, 64), activation="tanh")
    raise MpgymError(f"unknown algorithm {algo!r}; accepted: dqn, ppo, a2c.")


def train_mpgym(spec: dict[str, Any], probe: Probe) -> Any:
    """Train this project's agent (its preset for the env, or the zoo's settings)."""
    from agents.registry import get_algorithm

    cls = get_algorithm(spec["algo"])
    if spec["algo"] in ("sac", "td3"):  # their presets are the zoo's settings
        base = cls.PRESETS[spec["env"]]
    elif spec["hparams"] == "own":
        base = cls.PRESETS[spec["env"]]
    else:
        base = zoo_mpgym(spec["algo"], spec["env"])
    config = dataclasses.replace(base, seed=spec["seed"], total_timesteps=spec["steps"])
    agent = cls(spec["env"], config)

    def callback(local: dict[str, Any]) -> None:
        probe(agent, agent.num_timesteps)

    return agent.learn(spec["steps"], callback=callback, progress_bar=False)


def _lin(v: float) -> Callable[[float], float]:
    return lambda progress_remaining: progress_remaining * v


def zoo_sb3(algo: str, env_id: str, seed: int) -> Any:
    """An SB3 model with rl-baselines3-zoo's hyperparameters (see the module docstring)."""
    import stable_baselines3 as sb3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    if algo == "dqn" and env_id in ("CartPole-v1", "Acrobot-v1"):
        kw = (dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
                   learning_starts=1000, target_update_interval=10, train_freq=256,
                   gradient_steps=128, exploration_fraction=0.16, exploration_final_eps=0.04)
              if env_id == "CartPole-v1" else
              dict(learning_rate=6.3e-4, batch_size=128, buffer_size=50_000, learning_starts=0,
                   target_update_interval=250, train_freq=4, gradient_steps=-1,
                   exploration_fraction=0.12, exploration_final_eps=0.1))
        return sb3.DQN("MlpPolicy", env_id, gamma=0.99, policy_kwargs=dict(net_arch=[256, 256]),
                       seed=seed, verbose=0, **kw)
    if algo == "ppo" and env_id == "CartPole-v1":
        env = make_vec_env(env_id, n_envs=8, seed=seed)
        return sb3.PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                       n_epochs=20, ent_coef=0.0, learning_rate=_lin(1e-3), clip_range=_lin(0.2),
                       seed=seed, verbose=0)
    if algo == "ppo" and env_id == "Pendulum-v1":
        env = VecNormalize(make_vec_env(env_id, n_envs=4, seed=seed), gamma=0.9)
        return sb3.PPO("MlpPolicy", env, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10,
                       ent_coef=0.0, learning_rate=1e-3, clip_range=0.2, use_sde=True,
                       sde_sample_freq=4, seed=seed, verbose=0)
    if algo == "sac" and env_id in ("Pendulum-v1", "Hopper-v5"):
        kw = dict(learning_rate=1e-3) if env_id == "Pendulum-v1" else dict(learning_starts=10_000)
        return sb3.SAC("MlpPolicy", env_id, seed=seed, verbose=0, **kw)
    if algo == "td3" and env_id in ("Pendulum-v1", "Hopper-v5"):
        import gymnasium as gym
        import numpy as np
        from stable_baselines3.common.noise import NormalActionNoise

        dim = gym.make(env_id).action_space.shape[0]
        noise = NormalActionNoise(np.zeros(dim), 0.1 * np.ones(dim))
        kw = (dict(gamma=0.98, buffer_size=200_000) if env_id == "Pendulum-v1" else
              dict(batch_size=256))
        return sb3.TD3("MlpPolicy", env_id, learning_starts=10_000, action_noise=noise,
                       learning_rate=1e-3, policy_kwargs=dict(net_arch=[400, 300]), seed=seed,
                       verbose=0, **kw)
    if algo == "a2c" and env_id == "CartPole-v1":
        env = make_vec_env(env_id, n_envs=8, seed=seed)
        return sb3.A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, verbose=0)
    raise MpgymError(f"no zoo settings for {algo} on {env_id}.")


class _NormalizedPolicy:
    """An SB3 model trained under VecNormalize, evaluated on raw observations."""

    def __init__(self, model: Any):
        self.model, self.venv = model, model.get_env()

    def predict(self, obs: Any, deterministic: bool = True) -> tuple[Any, None]:
        return self.model.predict(self.venv.normalize_obs(obs), deterministic=deterministic)


def train_sb3(spec: dict[str, Any], probe: Probe) -> Any:
    """Train stable-baselines3's agent with the zoo's settings."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecNormalize

    model = zoo_sb3(spec["algo"], spec["env"], spec["seed"])
    policy = _NormalizedPolicy(model) if isinstance(model.get_env(), VecNormalize) else model

    class ProbeCallback(BaseCallback):
        def _on_step(self) -> bool:
            probe(policy, self.num_timesteps)
            return True

    model.learn(spec["steps"], callback=ProbeCallback())
    return policy


def _stepping(policy: Any) -> tuple[str, int]:
    """How a trained agent stepped its envs (class names) and how many env steps it took."""
    model = getattr(policy, "model", policy)  # unwrap _NormalizedPolicy
    if hasattr(model, "get_env"):  # stable-baselines3
        env, names = model.get_env(), []
        while env is not None:
            names.append(type(env).__name__)
            env = getattr(env, "venv", None)
        return "/".join(names), int(model.num_timesteps)
    vec = getattr(model, "vec_env", None)
    name = f"{type(vec.unwrapped).__name__}" if vec is not None else "single env"
    return name, int(model.num_timesteps)


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    return max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"),
               default=0)


def _thread_cpu() -> list[float]:
    """CPU seconds of each OS thread of this process so far (Linux ``/proc``; else empty)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        stats = [(t / "stat").read_text() for t in Path("/proc/self/task").iterdir()]
    except (OSError, ValueError):
        return []
    # fields after the ")" closing the name: utime and stime are the 12th and 13th
    return [sum(int(f) for f in st.rsplit(")", 1)[1].split()[11:13]) / ticks for st in stats]


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one spec in this process (one thread everywhere); its row."""
    import torch
    from threadpoolctl import threadpool_limits

    from agents.common import evaluate_policy

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # only possible before any parallel work
        torch.set_num_interop_threads(1)
    threadpool_limits(1)
    probe = Probe(spec["env"], spec["every"], THRESHOLD[spec["env"]], spec["seed"])
    train = train_mpgym if spec["lib"] == "mpgym" else train_sb3
    t0, c0 = time.perf_counter(), time.process_time()
    policy = train(spec, probe)
    wall = time.perf_counter() - t0 - probe.eval_seconds
    cpu = time.process_time() - c0 - probe.eval_cpu_seconds
    per_thread = _thread_cpu()  # whole process so far: imports and evaluations too
    vec, env_steps = _stepping(policy)
    final = evaluate_policy(policy, spec["env"], EVAL_EPISODES, seed=20_000 + spec["seed"])
    return {
        "algo": spec["algo"], "env": spec["env"], "lib": spec["lib"], "hparams": spec["hparams"],
        "seed": spec["seed"], "steps": spec["steps"], "env_steps": env_steps, "vec": vec,
        "wall_s": wall, "cpu_s": cpu, "cpu_over_wall": cpu / wall if wall > 0 else math.nan,
        "blas_threads": _blas_threads(), "torch_threads": torch.get_num_threads(),
        "busy_threads": sum(c > 0.05 * sum(per_thread) for c in per_thread),
        "top_thread_cpu_share": max(per_thread) / sum(per_thread) if per_thread else math.nan,
        "steps_to_threshold": probe.solved_at, "final_return": final.mean_return,
        "success_rate": final.success_rate,
    }


# --------------------------------------------------------------------------- parts (parent)


def _load1() -> float:
    return os.getloadavg()[0]


@contextlib.contextmanager
def timing_lock(enabled: bool) -> Iterator[float]:
    """Hold ``/tmp/mpgym-timing.lock`` (exclusive) when enabled; yields the seconds waited."""
    if not enabled:
        yield 0.0
        return
    t0 = time.perf_counter()
    with LOCK.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield time.perf_counter() - t0
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``spec`` in a fresh interpreter (threads pinned to 1 before NumPy loads); its row."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with timing_lock(spec["timing"]) as waited:
        load_before = _load1()
        out = subprocess.run([sys.executable, __file__, "--run-one", json.dumps(spec)],
                             env=env, capture_output=True, text=True, check=False)
        load_after = _load1()
    if out.returncode != 0:
        raise MpgymError(f"run {spec} failed:\n{out.stderr[-4000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row.update(load_before=load_before, load_after=load_after, lock_wait_s=waited,
               timing_lock=spec["timing"])
    return row


def run_part(part: str, path: Path, quick: bool, extra_sb3: bool,
             seeds: list[int] | None = None) -> list[dict[str, Any]]:
    """Run the part's runs missing from ``path`` (only ``seeds`` when given), rewriting it after
    each; all its rows."""
    rows: list[dict[str, Any]] = []
    if path.exists():
        rows = json.loads(path.read_text())["rows"]
    done = {_key(r) for r in rows}
    for spec in plan(part, quick, extra_sb3):
        if _key(spec) in done or (seeds is not None and spec["seed"] not in seeds):
            continue
        row = run_child(spec)
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in row.items()), flush=True)
        rows.append(row)
        write_json(path, rows, [], {"part": part})
    return rows


def merge_rows(dirs: list[Path]) -> list[dict[str, Any]]:
    """The rows of every part's JSON in ``dirs``, each run once (the first directory wins)."""
    rows, seen = [], set()
    for d in dirs:
        for part in PARTS:
            path = d / f"{part}.json"
            for r in json.loads(path.read_text())["rows"] if path.exists() else []:
                if _key(r) not in seen:
                    seen.add(_key(r))
                    rows.append(r)
    return rows


def write_json(path: Path, rows: list[dict[str, Any]], goals: list[Goal],
               extra: dict[str, Any]) -> None:
    """DESIGN.md's benchmark JSON (``benchmark``, ``machine``, ``rows``, ``goals``) and more."""
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": NAME, "machine": machine_info(), "rows": to_jsonable(rows),
              "goals": [g.to_dict() for g in goals], **to_jsonable(extra)}
    atomic_write_text(path, json.dumps(result, indent=2))


# --------------------------------------------------------------------------- goals


def _select(rows: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def _median(rows: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in rows]
    return statistics.median(vals) if vals else math.nan


def _timing_rows(rows: list[dict[str, Any]], algo: str) -> list[dict[str, Any]]:
    """Timing rows of ``algo`` on the seeds that have all three runs (mpgym own, zoo; SB3)."""
    timing = [r for r in _select(rows, algo=algo, env="CartPole-v1") if r.get("timing_lock")]
    kinds = {"own", "zoo", "sb3"}
    by_seed: dict[int, set[str]] = {}
    for r in timing:
        by_seed.setdefault(r["seed"], set()).add("sb3" if r["lib"] == "sb3" else r["hparams"])
    return [r for r in timing if by_seed[r["seed"]] == kinds]


def goals_of(rows: list[dict[str, Any]]) -> list[Goal]:
    """The goals the rows allow (a goal whose runs are missing is left out); wall ratios are
    medians over the seeds with all three timing runs."""
    goals = []
    for algo in ("dqn", "ppo", "a2c"):
        timing = _timing_rows(rows, algo)
        sb3 = _median(_select(timing, lib="sb3"), "wall_s")
        for hparams, name, target in (("own", "wall_ratio_vs_sb3", 0.5),
                                      ("zoo", "wall_ratio_same_hparams", 0.6)):
            ours = _median(_select(timing, lib="mpgym", hparams=hparams), "wall_s")
            if not (math.isnan(ours) or math.isnan(sb3)):
                goals.append(Goal(f"{algo}_{name}", ours / sb3, target, "<="))
    held = [r for r in _select(rows, lib="mpgym", algo="dqn", env="CartPole-v1", hparams="own")
            if r["seed"] in HELDOUT_SEEDS]
    if held:
        solved = sum(r["final_return"] >= THRESHOLD["CartPole-v1"] for r in held)
        goals.append(Goal("dqn_solved_heldout_seeds", float(solved), 9.0, ">="))
    for name, algo, env in (("ppo_pendulum_return_median", "ppo", "Pendulum-v1"),
                            ("dqn_acrobot_return_median", "dqn", "Acrobot-v1")):
        mine = [r for r in _select(rows, lib="mpgym", algo=algo, env=env)
                if r["seed"] in EXTRA_SEEDS]
        if mine:
            goals.append(Goal(name, _median(mine, "final_return"), THRESHOLD[env], ">="))
    return goals + continuous_goals(rows)


def _paired(rows: list[dict[str, Any]], algo: str, part: str) -> tuple[list, list]:
    """A continuous part's timing rows of ``algo``: (mpgym, SB3) on the seeds that have both."""
    env, steps, seeds = CONTINUOUS[part]
    timing = [r for r in _select(rows, algo=algo, env=env) if r.get("timing_lock")
              and r["seed"] in seeds]
    both = ({r["seed"] for r in _select(timing, lib="mpgym")}
            & {r["seed"] for r in _select(timing, lib="sb3")})
    keep = [r for r in timing if r["seed"] in both]
    return _select(keep, lib="mpgym"), _select(keep, lib="sb3")


def continuous_goals(rows: list[dict[str, Any]]) -> list[Goal]:
    """SAC's Pendulum return, SAC/TD3 wall ratios (the larger env's) and Hopper return ratios."""
    goals = []
    ours, _ = _paired(rows, "sac", "sac-td3-pendulum")
    if ours:
        goals.append(Goal("sac_pendulum_return", _median(ours, "final_return"), -200.0, ">="))
    for algo in ("sac", "td3"):
        ratios = []
        for part in CONTINUOUS:
            ours, sb3 = _paired(rows, algo, part)
            if ours:
                ratios.append(_median(ours, "wall_s") / _median(sb3, "wall_s"))
        if ratios:
            goals.append(Goal(f"{algo}_wall_ratio_vs_sb3", max(ratios), 0.5, "<="))
        ours, sb3 = _paired(rows, algo, "sac-td3-hopper")
        if ours:
            goals.append(Goal(f"{algo}_hopper_return_vs_sb3",
                              _median(ours, "final_return") / _median(sb3, "final_return"),
                              0.95, ">="))
    return goals


def summary_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per timing/held-out set, algo, env, lib, hparams: seeds, median wall and CPU, the highest
    CPU/wall, solved seeds (mean return >= threshold), median return, load range."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        part = "timing" if r.get("timing_lock") else "held-out seeds"
        groups.setdefault((part, r["algo"], r["env"], r["lib"], r["hparams"]), []).append(r)
    out = []
    for (part, algo, env, lib, hparams), rs in groups.items():
        seeds = sorted(r["seed"] for r in rs)
        out.append({
            "runs_of": part, "algo": algo, "env": env, "lib": lib, "hparams": hparams,
            "seeds": f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0]),
            "runs": len(rs), "median_wall_s": _median(rs, "wall_s"),
            "median_cpu_s": _median(rs, "cpu_s"),
            "max_cpu_over_wall": max(r["cpu_over_wall"] for r in rs),
            "solved": sum(r["final_return"] >= THRESHOLD[env] for r in rs),
            "median_return": _median(rs, "final_return"),
            "load_range": f"{min(r['load_before'] for r in rs):.1f}-"
                          f"{max(r['load_after'] for r in rs):.1f}",
        })
    return out


def ratios_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per algorithm: median wall and CPU of mpgym (own, zoo) over SB3's, on the seeds with all
    three timing runs.

    At one thread a run's CPU time is about its wall time on an idle core, so the CPU ratio is
    the figure that survives a loaded machine; the goals use wall time as they always have.
    """
    out = []
    for algo in ("dqn", "ppo", "a2c"):
        timing = _timing_rows(rows, algo)
        sb3 = _select(timing, lib="sb3")
        for hparams in ("own", "zoo"):
            ours = _select(timing, lib="mpgym", hparams=hparams)
            if not ours or not sb3:
                continue
            out.append({
                "algo": algo, "env": "CartPole-v1", "mpgym_hparams": hparams,
                "seeds": ",".join(str(s) for s in sorted({r["seed"] for r in ours})),
                "mpgym_wall_s": _median(ours, "wall_s"), "sb3_wall_s": _median(sb3, "wall_s"),
                "wall_ratio": _median(ours, "wall_s") / _median(sb3, "wall_s"),
                "mpgym_cpu_s": _median(ours, "cpu_s"), "sb3_cpu_s": _median(sb3, "cpu_s"),
                "cpu_ratio": _median(ours, "cpu_s") / _median(sb3, "cpu_s"),
                "load": f"{min(r['load_before'] for r in ours + sb3):.1f}-"
                        f"{max(r['load_after'] for r in ours + sb3):.1f}",
            })
    for algo in ("sac", "td3"):
        for part, (env, _, _) in CONTINUOUS.items():
            ours, sb3 = _paired(rows, algo, part)
            if not ours:
                continue
            out.append({
                "algo": algo, "env": env, "mpgym_hparams": "zoo",
                "seeds": ",".join(str(s) for s in sorted({r["seed"] for r in ours})),
                "mpgym_wall_s": _median(ours, "wall_s"), "sb3_wall_s": _median(sb3, "wall_s"),
                "wall_ratio": _median(ours, "wall_s") / _median(sb3, "wall_s"),
                "mpgym_cpu_s": _median(ours, "cpu_s"), "sb3_cpu_s": _median(sb3, "cpu_s"),
                "cpu_ratio": _median(ours, "cpu_s") / _median(sb3, "cpu_s"),
                "mpgym_return": _median(ours, "final_return"),
                "sb3_return": _median(sb3, "final_return"),
                "load": f"{min(r['load_before'] for r in ours + sb3):.1f}-"
                        f"{max(r['load_after'] for r in ours + sb3):.1f}",
            })
    return out


COLUMNS = ["algo", "env", "lib", "hparams", "seed", "steps", "env_steps", "vec", "wall_s",
           "cpu_s", "cpu_over_wall", "blas_threads", "steps_to_threshold", "final_return",
           "load_before", "load_after"]


def main() -> None:
    """Run one part, merge the parts, or (internal) run one spec in this process."""
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--part", choices=PARTS, nargs="+", default=None,
                   help="parts to run, each resuming its JSON under --parts-dir (no --part and "
                        "no --merge: all parts, then --merge)")
    p.add_argument("--merge", action="store_true",
                   help=f"combine the parts' JSON into --json (default results/{NAME}.json)")
    p.add_argument("--parts-dir", type=Path, default=None,
                   help=f"where parts write (default: benchmarks/results/{NAME}/; with --quick "
                        f"runs/bench/{NAME}-quick/; with --json PATH, PATH's stem + '-parts/')")
    p.add_argument("--merge-also", type=Path, nargs="+", default=[],
                   help="more parts directories to merge (a part run in another process)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run only these of each part's seeds (the rest can follow later)")
    p.add_argument("--extra-sb3", action="store_true", help="train SB3 on the extra envs too")
    p.add_argument("--run-one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.run_one is not None:
        print(json.dumps(run_one(json.loads(args.run_one))))
        return
    if not args.part and not args.merge:  # everything (``make bench``)
        args.part, args.merge = PARTS, True
    parts_dir = args.parts_dir or (
        Path("runs/bench") / f"{NAME}-quick" if args.quick
        else args.json.parent / f"{args.json.stem}-parts" if args.json else RESULTS / NAME)
    for part in args.part or []:
        rows = run_part(part, parts_dir / f"{part}.json", args.quick, args.extra_sb3, args.seeds)
        report(NAME, rows, goals_of(rows), None, columns=COLUMNS)
    if args.merge:
        rows = merge_rows([parts_dir, *args.merge_also])
        out = args.json or (parts_dir / f"{NAME}.json" if args.quick else RESULTS / f"{NAME}.json")
        summary, ratios, goals = summary_of(rows), ratios_of(rows), goals_of(rows)
        report(NAME, rows, [], None, columns=COLUMNS)
        print()
        report(NAME, summary, [], None)
        print()
        report(NAME, ratios, goals, None)
        write_json(out, rows, goals, {"summary": summary, "ratios": ratios,
                                      "parts_dirs": [str(parts_dir), *map(str, args.merge_also)]})
        print(f"\nwrote {out}")

if __name__ == "__main__":
    main()
