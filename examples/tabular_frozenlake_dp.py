"""Solve FrozenLake 8x8 exactly with value iteration and policy iteration.

Run: python examples/tabular_frozenlake_dp.py   (writes runs/examples/tabular_dp/)
"""

import gymnasium as gym
import numpy as np

from agents.tabular import finite_horizon_evaluation, policy_iteration, value_iteration
from agents.tabular.plotting import plot_grid_values
from envs import TabularModel
from mpgym import RunDir

env = gym.make("FrozenLake8x8-v1")  # slippery: each move goes sideways with probability 2/3
model = TabularModel.from_env(env)  # sparse P (S*A, S), R (S, A), terminal mask

V, policy, info = value_iteration(model, gamma=0.99, tol=1e-8)  # tol bounds max |V - V*|
V_pi, policy_pi, pinfo = policy_iteration(model, gamma=0.99)
print(f"value iteration: {info.sweeps} sweeps, residual {info.residual:.1e}")
print(f"policy iteration: {pinfo.improvements} improvement steps")
print(f"max |V_vi - V_pi| = {np.abs(V - V_pi).max():.1e}")

success = finite_horizon_evaluation(model, policy, env.spec.max_episode_steps)[0]
print(f"P(goal within {env.spec.max_episode_steps} steps) = {success:.3f}")

run = RunDir.create("examples", "tabular_dp")
png = plot_grid_values(run.file("frozenlake8x8.png"), V, policy, env.unwrapped.desc.astype(str),
                       terminal=model.terminal, title="FrozenLake 8x8: V* and greedy policy")
print(f"picture: {png}")
