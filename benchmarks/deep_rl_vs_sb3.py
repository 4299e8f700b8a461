"""Deep RL agents vs stable-baselines3: wall time, steps to threshold, final return.

Trains this project's DQN, PPO and A2C and stable-baselines3's (with rl-baselines3-zoo's tuned
hyperparameters) on CartPole-v1 with the same env-step budget and seeds, one torch thread each,
and prints per run: wall and CPU time of training (periodic evaluations excluded), env steps
until the mean evaluation return first reaches the threshold, and the final mean return over
20 evaluation episodes. Then DQN on Acrobot-v1 and PPO on Pendulum-v1 (this project's agents; add
``--extra-sb3`` to train SB3 there too).

Each row names how its environments were stepped (``vec``) and the env steps actually taken
(``env_steps``, transitions only). This project's A2C and PPO use the env's own vector entry
point when its registration has one -- Gymnasium's NumPy-vectorised ``CartPoleVectorEnv``, the
same MDP as ``gym.make("CartPole-v1")`` (tests/agents/deep/test_vector_envs.py), whose
reset-only steps are not counted -- and a ``SyncVectorEnv`` otherwise; SB3 uses its
``DummyVecEnv`` of single envs, as rl-baselines3-zoo does; both DQNs step one env.

    python benchmarks/deep_rl_vs_sb3.py --seeds 0 1 2 3 4 --json runs/bench/deep_rl.json
    python benchmarks/deep_rl_vs_sb3.py --quick
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.common import evaluate_policy
from mpgym.bench import Goal, bench_parser, report

EVAL_EPISODES = 20
CHECK_EPISODES = 5
THRESHOLD = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "Pendulum-v1": -250.0}
BUDGET = {"dqn": 50_000, "ppo": 100_000, "a2c": 500_000}
EXTRA_BUDGET = {"Acrobot-v1": 100_000, "Pendulum-v1": 100_000}


class Probe:
    """Evaluates a policy every ``every`` env steps; records when it first reaches ``threshold``.

    Its own time is accumulated in ``eval_seconds`` so it can be subtracted from wall time.
    """

    def __init__(self, env_id: str, every: int, threshold: float, seed: int):
        self.env_id, self.every, self.threshold, self.seed = env_id, every, threshold, seed
        self.next_at = every
        self.solved_at: int | None = None
        self.eval_seconds = 0.0
        self.eval_cpu_seconds = 0.0

    def __call__(self, policy: Any, num_timesteps: int) -> None:
        if num_timesteps < self.next_at or self.solved_at is not None:
            return
        self.next_at += self.every
        t0, c0 = time.perf_counter(), time.process_time()
        r = evaluate_policy(policy, self.env_id, CHECK_EPISODES, seed=10_000 + self.seed)
        if r.mean_return >= self.threshold:
            self.solved_at = num_timesteps
        self.eval_seconds += time.perf_counter() - t0
        self.eval_cpu_seconds += time.process_time() - c0


# --------------------------------------------------------------------------- this project


def train_mpgym(algo: str, env_id: str, seed: int, steps: int, probe: Probe) -> Any:
    from agents.registry import get_algorithm

    cls = get_algorithm(algo)
    config = dataclasses.replace(cls.PRESETS[env_id], seed=seed, total_timesteps=steps)
    agent = cls(env_id, config)

    def callback(local: dict[str, Any]) -> None:
        probe(agent, agent.num_timesteps)

    return agent.learn(steps, callback=callback, progress_bar=False)


# --------------------------------------------------------------------------- stable-baselines3


def _lin(v: float) -> Callable[[float], float]:
    return lambda progress_remaining: progress_remaining * v


def zoo_sb3(algo: str, env_id: str, seed: int) -> Any:
    """An SB3 model with rl-baselines3-zoo's hyperparameters (dqn.yml, ppo.yml, a2c.yml)."""
    import stable_baselines3 as sb3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    if algo == "dqn" and env_id == "CartPole-v1":
        return sb3.DQN(
            "MlpPolicy",
            env_id,
            learning_rate=2.3e-3,
            batch_size=64,
            buffer_size=100_000,
            learning_starts=1000,
            gamma=0.99,
            target_update_interval=10,
            train_freq=256,
            gradient_steps=128,
            exploration_fraction=0.16,
            exploration_final_eps=0.04,
            policy_kwargs=dict(net_arch=[256, 256]),
            seed=seed,
            verbose=0,
        )
    if algo == "dqn" and env_id == "Acrobot-v1":
        return sb3.DQN(
            "MlpPolicy",
            env_id,
            learning_rate=6.3e-4,
            batch_size=128,
            buffer_size=50_000,
            learning_starts=0,
            gamma=0.99,
            target_update_interval=250,
            train_freq=4,
            gradient_steps=-1,
            exploration_fraction=0.12,
            exploration_final_eps=0.1,
            policy_kwargs=dict(net_arch=[256, 256]),
            seed=seed,
            verbose=0,
        )
    if algo == "ppo" and env_id == "CartPole-v1":
        env = make_vec_env(env_id, n_envs=8, seed=seed)
        return sb3.PPO(
            "MlpPolicy",
            env,
            n_steps=32,
            batch_size=256,
            gae_lambda=0.8,
            gamma=0.98,
            n_epochs=20,
            ent_coef=0.0,
            learning_rate=_lin(1e-3),
            clip_range=_lin(0.2),
            seed=seed,
            verbose=0,
        )
    if algo == "ppo" and env_id == "Pendulum-v1":
        env = VecNormalize(make_vec_env(env_id, n_envs=4, seed=seed), gamma=0.9)
        return sb3.PPO(
            "MlpPolicy",
            env,
            n_steps=1024,
            gae_lambda=0.95,
            gamma=0.9,
            n_epochs=10,
            ent_coef=0.0,
            learning_rate=1e-3,
            clip_range=0.2,
            use_sde=True,
            sde_sample_freq=4,
            seed=seed,
            verbose=0,
        )
    if algo == "a2c" and env_id == "CartPole-v1":
        env = make_vec_env(env_id, n_envs=8, seed=seed)
        return sb3.A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, verbose=0)
    raise ValueError(f"no zoo settings for {algo} on {env_id}")


class _NormalizedPolicy:
    """An SB3 model trained under VecNormalize, evaluated on raw observations."""

    def __init__(self, model: Any):
        self.model, self.venv = model, model.get_env()

    def predict(self, obs: Any, deterministic: bool = True) -> tuple[Any, None]:
        return self.model.predict(self.venv.normalize_obs(obs), deterministic=deterministic)


def train_sb3(algo: str, env_id: str, seed: int, steps: int, probe: Probe) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecNormalize

    model = zoo_sb3(algo, env_id, seed)
    policy = _NormalizedPolicy(model) if isinstance(model.get_env(), VecNormalize) else model

    class ProbeCallback(BaseCallback):
        def _on_step(self) -> bool:
            probe(policy, self.num_timesteps)
            return True

    model.learn(steps, callback=ProbeCallback())
    return policy


# --------------------------------------------------------------------------- runs and goals


def run_one(lib: str, algo: str, env_id: str, seed: int, steps: int, every: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    probe = Probe(env_id, every, THRESHOLD[env_id], seed)
    train = train_mpgym if lib == "mpgym" else train_sb3
    t0, c0 = time.perf_counter(), time.process_time()
    policy = train(algo, env_id, seed, steps, probe)
    wall = time.perf_counter() - t0 - probe.eval_seconds
    cpu = time.process_time() - c0 - probe.eval_cpu_seconds
    vec, env_steps = _stepping(policy)
    final = evaluate_policy(policy, env_id, EVAL_EPISODES, seed=20_000 + seed)
    row = {
        "algo": algo,
        "env": env_id,
        "lib": lib,
        "seed": seed,
        "steps": steps,
        "env_steps": env_steps,
        "vec": vec,
        "wall_s": wall,
        "cpu_s": cpu,
        "steps_to_threshold": probe.solved_at,
        "final_return": final.mean_return,
    }
    print(
        " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
        flush=True,
    )
    return row


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


def _median(rows: list[dict[str, Any]], key: str, **match: Any) -> float:
    vals = [r[key] for r in rows if all(r[k] == v for k, v in match.items())]
    return statistics.median(vals) if vals else float("nan")


def goals_of(rows: list[dict[str, Any]]) -> list[Goal]:
    goals = []
    dqn = [
        r for r in rows if r["lib"] == "mpgym" and r["algo"] == "dqn" and r["env"] == "CartPole-v1"
    ]
    if dqn:
        solved = sum(r["final_return"] >= THRESHOLD["CartPole-v1"] for r in dqn)
        goals.append(Goal("dqn_cartpole_solved_seeds", float(solved), 5.0, ">="))
    for algo in ("dqn", "ppo", "a2c"):
        ours = _median(rows, "wall_s", algo=algo, lib="mpgym", env="CartPole-v1")
        theirs = _median(rows, "wall_s", algo=algo, lib="sb3", env="CartPole-v1")
        if not (np.isnan(ours) or np.isnan(theirs)):
            goals.append(Goal(f"{algo}_wall_ratio_vs_sb3", ours / theirs, 0.5, "<="))
    for algo, env_id in (("ppo", "CartPole-v1"), ("a2c", "CartPole-v1")):
        mine = [r for r in rows if r["lib"] == "mpgym" and r["algo"] == algo and r["env"] == env_id]
        if mine:
            solved = sum(r["final_return"] >= THRESHOLD[env_id] for r in mine)
            goals.append(
                Goal(f"{algo}_cartpole_solved_seeds", float(solved), float(len(mine)), ">=")
            )
    for name, algo, env_id, target in (
        ("dqn_acrobot_return", "dqn", "Acrobot-v1", -100.0),
        ("ppo_pendulum_return", "ppo", "Pendulum-v1", -250.0),
    ):
        v = _median(rows, "final_return", algo=algo, lib="mpgym", env=env_id)
        if not np.isnan(v):
            goals.append(Goal(name, v, target, ">="))
    return goals


COLUMNS = [
    "algo",
    "env",
    "lib",
    "seed",
    "steps",
    "env_steps",
    "vec",
    "wall_s",
    "cpu_s",
    "steps_to_threshold",
    "final_return",
]


def main() -> None:
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument(
        "--algos",
        nargs="*",
        default=["dqn", "ppo", "a2c"],
        help="CartPole-v1 comparisons to run (none: --algos with no value, only the extras)",
    )
    p.add_argument("--libs", nargs="+", default=["mpgym", "sb3"])
    p.add_argument(
        "--extra",
        nargs="*",
        default=["dqn:Acrobot-v1", "ppo:Pendulum-v1"],
        help="extra ALGO:ENV runs on the first seed (none: --extra with no value)",
    )
    p.add_argument("--extra-sb3", action="store_true", help="train SB3 on the extra envs too")
    p.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        default=None,
        help="only merge the rows of earlier --json outputs (runs split over processes)",
    )
    args = p.parse_args()
    if args.from_json:
        rows = [r for path in args.from_json for r in json.loads(path.read_text())["rows"]]
        report("deep_rl_vs_sb3", rows, goals_of(rows), args.json, columns=COLUMNS)
        return
    scale = 0.05 if args.quick else 1.0
    seeds = args.seeds[:1] if args.quick else args.seeds
    rows = []
    for algo in args.algos:
        steps = int(BUDGET[algo] * scale)
        for seed in seeds:
            for lib in args.libs:
                every = max(steps // 20, 1000)
                rows.append(run_one(lib, algo, "CartPole-v1", seed, steps, every))
    for item in args.extra:
        algo, env_id = item.split(":")
        steps = int(EXTRA_BUDGET[env_id] * scale)
        for lib in args.libs if args.extra_sb3 else ["mpgym"]:
            rows.append(run_one(lib, algo, env_id, seeds[0], steps, max(steps // 10, 1000)))
    report("deep_rl_vs_sb3", rows, goals_of(rows), args.json, columns=COLUMNS)


if __name__ == "__main__":
    main()
