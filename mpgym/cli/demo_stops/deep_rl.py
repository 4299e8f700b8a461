"""Demo stop: PPO learns CartPole-v1 in under a minute; learning curve and a rollout GIF."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mpgym.report import Section

STEPS = 50_000


def run(out: Path) -> Section:
    """Train PPO on CartPole-v1 for ``STEPS`` steps, evaluate it and film one episode."""
    import torch

    from agents.common import evaluate_policy, plot_learning_curve
    from agents.deep.ppo import PPO, PPOConfig
    from mpgym.plots import save_gif
    from mpgym.runs import RunDir

    torch.set_num_threads(1)
    run_dir = RunDir(out / "ppo-CartPole-v1")
    config = dataclasses.replace(PPOConfig(), total_timesteps=STEPS)
    agent = PPO("CartPole-v1", config, run_dir=run_dir).learn(progress_bar=False)
    agent.save(run_dir.path)
    curve = plot_learning_curve(
        run_dir,
        out / "ppo_cartpole_curve.png",
        title="PPO on CartPole-v1",
        hlines={"solved (475)": 475.0},
    )
    result = evaluate_policy(agent, "CartPole-v1", 20, seed=123, render=True)
    frames = [f[::2, ::2] for f in result.frames[:300:2]]  # half size, every other frame
    gif = save_gif(out / "ppo_cartpole_rollout.gif", frames, fps=25)
    return Section(
        title="Deep RL: PPO on CartPole-v1",
        text=(
            f"PPO (clipped surrogate, GAE, 8 vector envs) trained for {STEPS:,} env steps with "
            "one CPU thread; greedy evaluation over 20 episodes (500 is the maximum). The GIF "
            "shows the first 300 steps of one evaluation episode."
        ),
        images=[curve, gif],
        metrics={
            "eval mean return": result.mean_return,
            "eval std": result.std_return,
            "training episodes": agent.num_episodes,
            "last 20 training returns": float(np.mean(agent.episode_returns[-20:])),
        },
        files=[run_dir.path / "checkpoint.safetensors", run_dir.path / "metrics.csv"],
    )
