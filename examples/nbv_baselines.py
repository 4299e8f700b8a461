"""Next-best-view baselines: mean surface coverage after 5 views on the procedural test shapes.

    python examples/nbv_baselines.py            # about a minute on one CPU core

Runs random views, the farthest-view heuristic and the greedy oracle on each of the 20 test-split
procedural shapes of mpgym/NextBestView-v0 (48 views, 64x64 depth, 32^3 grid), prints a table
of the mean coverage after 1..5 views and the time per step, and writes a GIF of the greedy
oracle on the first shape to runs/examples/nbv_baselines/greedy.gif.
"""

import logging
import time

import gymnasium as gym

import envs  # noqa: F401  (registers mpgym/NextBestView-v0)
from envs.nbv import FarthestView, GreedyOracle, RandomViews, mean_coverage
from mpgym.plots import save_gif
from mpgym.runs import RunDir

logging.basicConfig(level=logging.INFO, format="%(message)s")
root = RunDir.create("examples", "nbv_baselines")
env = gym.make("mpgym/NextBestView-v0", shapes="procedural", split="test",
               config={"coverage_threshold": 1.0})  # no early end: coverage after exactly k views
n = len(env.unwrapped.shape_names)

t0 = time.perf_counter()
mean_coverage(env, GreedyOracle(env), n, views=5, shapes="in_order")  # ground truth, cached
logging.info("ground truth of %d shapes: %.1f s", n, time.perf_counter() - t0)

policies = {"random": RandomViews(env, seed=0), "farthest": FarthestView(env, seed=0),
            "greedy oracle": GreedyOracle(env)}
rows = {}
for name, policy in policies.items():
    t0 = time.perf_counter()
    rows[name] = [mean_coverage(env, policy, n, views=k, shapes="in_order") for k in range(1, 6)]
    seconds = time.perf_counter() - t0
    logging.info("%s: %.2f ms per step, resets included (ground truth cached)", name,
                 1000 * seconds / (n * 15))

print(f"\nmean coverage after k views, {n} test-split procedural shapes")
print(f"{'policy':<14}" + "".join(f"{'k=' + str(k):>8}" for k in range(1, 6)))
for name, cov in rows.items():
    print(f"{name:<14}" + "".join(f"{c:>8.3f}" for c in cov))

gif_env = gym.make("mpgym/NextBestView-v0", shapes="procedural", split="test",
                   render_mode="rgb_array")
obs, _ = gif_env.reset(seed=0, options={"shape": 0})
frames, oracle, done = [gif_env.render()], GreedyOracle(gif_env), False
while not done:
    obs, _, terminated, truncated, _ = gif_env.step(oracle.predict(obs)[0])
    frames.append(gif_env.render())
    done = terminated or truncated
logging.info("wrote %s", save_gif(root.file("greedy.gif"), frames, fps=2))
