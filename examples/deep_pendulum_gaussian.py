"""A Gaussian policy on a continuous action space: PPO on Pendulum-v1 vs the random policy.

    python examples/deep_pendulum_gaussian.py

Uses the Pendulum-v1 preset (rl-baselines3-zoo's: gSDE exploration, observation and reward
normalisation, gamma 0.9, 1e5 steps), then evaluates the mean action and writes a rollout GIF
to runs/examples/deep_pendulum/.
"""

import logging

import torch

from agents.common import evaluate_policy
from agents.deep.ppo import PPO
from mpgym.plots import save_gif
from mpgym.runs import RunDir

logging.basicConfig(level=logging.INFO, format="%(message)s")
torch.set_num_threads(1)
run = RunDir.create("examples", "deep_pendulum")

agent = PPO("Pendulum-v1", PPO.PRESETS["Pendulum-v1"], run_dir=run).learn()
agent.save(run.path)
random_policy = evaluate_policy(lambda obs: agent.env.action_space.sample(), "Pendulum-v1", 20)
trained = evaluate_policy(agent, "Pendulum-v1", 20, render=True)
logging.info(
    "random policy %.0f, PPO %.0f (mean return over 20 episodes)",
    random_policy.mean_return,
    trained.mean_return,
)
save_gif(run.file("rollout.gif"), trained.frames[::2], fps=15)
