"""Make your own grid world from an ASCII map and train, save, load and evaluate an agent.

Run: python examples/tabular_custom_grid.py   (writes runs/examples/custom_grid/)
"""

import numpy as np

from agents.common import Schedule, evaluate_policy
from agents.tabular import policy_evaluation, value_iteration
from agents.tabular.q_learning import QLearning, QLearningConfig
from envs import GridWorldEnv, TabularModel
from mpgym import RunDir

# S start, G goal, # wall, H pit (ends the episode), m mud: a cell with its own reward
MAP = ["S...#....",
       ".##.#.##.",
       ".#..m..#.",
       ".#.##H.#.",
       "...#...#G"]
REWARDS = {"G": 20.0, "H": -20.0, "m": -5.0}  # entering a cell; other cells: step_reward
env = GridWorldEnv(desc=MAP, slip=0.1, step_reward=-1.0, rewards=REWARDS)
model = TabularModel.from_env(env)
V_star, _, _ = value_iteration(model, gamma=0.95)

config = QLearningConfig(episodes=3000, gamma=0.95, alpha=Schedule(0.2, 0.02, 3000, "linear"),
                         epsilon=Schedule(1.0, 0.05, 2000, "linear"), max_steps=200)
run = RunDir.create("examples", "custom_grid")
agent = QLearning(env, config, run_dir=run).learn()
path = agent.save(run.path)

loaded = QLearning.load(path, env=GridWorldEnv(desc=MAP, slip=0.1, rewards=REWARDS))
V_learned = policy_evaluation(model, loaded.policy(), gamma=0.95)
start = int(np.argmax(env.isd))
print(f"V*(start) = {V_star[start]:.2f}, V of the learned greedy policy = {V_learned[start]:.2f}")
result = evaluate_policy(loaded, loaded.env, n_episodes=50, seed=0)
print(f"evaluation: return {result.mean_return:.2f} +- {result.std_return:.2f}")
