"""Train DQN and PPO on CartPole-v1, compare their learning curves, save and reload one.

    python examples/deep_cartpole.py            # about a minute per agent on one CPU thread

Writes runs/examples/deep_cartpole/{dqn,ppo}/ (config.json, metrics.csv, learning_curve.png,
checkpoint.safetensors) and curves.png with both agents.
"""

import logging

import torch

from agents.common import evaluate_policy
from agents.deep.dqn import DQN
from agents.deep.ppo import PPO
from mpgym.plots import plot_curves
from mpgym.runs import RunDir

logging.basicConfig(level=logging.INFO, format="%(message)s")
torch.set_num_threads(1)
root = RunDir.create("examples", "deep_cartpole")

curves = {}
for cls in (DQN, PPO):
    run = RunDir(root.path / cls.name)
    agent = cls("CartPole-v1", cls.PRESETS["CartPole-v1"], run_dir=run).learn()
    agent.save(run.path)
    result = evaluate_policy(agent, "CartPole-v1", n_episodes=20, seed=1000)
    logging.info("%s: mean return %.1f over 20 episodes", cls.name, result.mean_return)
    curves[cls.name] = (agent.episode_timesteps, agent.episode_returns)

    reloaded = cls.load(run.path)  # same actions from the checkpoint alone
    logging.info(
        "reloaded %s: mean return %.1f",
        cls.name,
        evaluate_policy(reloaded, "CartPole-v1", n_episodes=20, seed=1000).mean_return,
    )

plot_curves(
    root.file("curves.png"),
    curves,
    xlabel="env steps",
    ylabel="episode return",
    smooth=20,
    hlines={"solved": 475.0},
    title="CartPole-v1",
)
logging.info("wrote %s", root.file("curves.png"))
