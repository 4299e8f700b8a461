"""Sutton & Barto's Example 6.6: SARSA vs Q-learning on Cliff Walking.

Run: python examples/tabular_cliff_sarsa_vs_q.py   (writes runs/examples/cliff_*/)
The same from the command line: mpgym train sarsa --preset cliff
"""

import gymnasium as gym
import numpy as np

from agents.common import evaluate_policy
from agents.tabular.plotting import greedy_path
from agents.tabular.q_learning import QLearning
from agents.tabular.sarsa import Sarsa
from mpgym import RunDir
from mpgym.plots import plot_curves

curves = {}
for cls in (Sarsa, QLearning):
    config = cls.PRESETS["cliff"]  # epsilon 0.1, alpha 0.5, gamma 1, 500 episodes
    run = RunDir.create("examples", f"cliff_{cls.name}")
    agent = cls(config.env_id, config, run_dir=run).learn()  # logs metrics.csv per episode
    agent.save(run.path)
    returns = [h["return"] for h in agent.history]
    curves[cls.name] = (np.arange(1, len(returns) + 1), returns)
    greedy = evaluate_policy(agent, config.env_id, n_episodes=1, seed=0)
    states, _ = greedy_path(agent, gym.make(config.env_id))
    print(f"{cls.name}: online return (last 400 episodes) {np.mean(returns[100:]):.1f}, "
          f"greedy return {greedy.returns[0]:.0f}, path {states}")

png = plot_curves("runs/examples/cliff_curves.png", curves, xlabel="episode", smooth=10,
                  ylim=(-100, 0), title="Cliff Walking (Example 6.6)")
print(f"picture: {png}")
