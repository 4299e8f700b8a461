"""Demo stop: FrozenLake 8x8 by value and policy iteration; SARSA vs Q-learning on the cliff."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mpgym.report import Section

CLIFF_RUNS = 5


def _frozenlake(out: Path) -> Section:
    import gymnasium as gym

    from agents.tabular import (
        finite_horizon_evaluation,
        policy_iteration,
        value_iteration,
    )
    from agents.tabular.plotting import plot_grid_values
    from envs import TabularModel

    env = gym.make("FrozenLake8x8-v1")
    model = TabularModel.from_env(env)
    t0 = time.perf_counter()
    V, pi, info = value_iteration(model, 0.99, tol=1e-8)
    t_vi = time.perf_counter() - t0
    t0 = time.perf_counter()
    V2, pi2, pinfo = policy_iteration(model, 0.99)
    t_pi = time.perf_counter() - t0
    desc = env.unwrapped.desc.astype(str)
    img = plot_grid_values(out / "frozenlake8x8_values.png", V, pi, desc, terminal=model.terminal,
                           title="FrozenLake 8x8 (slippery): V* and greedy policy, gamma 0.99")
    horizon = env.spec.max_episode_steps
    success = finite_horizon_evaluation(model, pi, horizon)[0]
    return Section(
        title="Tabular planning: FrozenLake 8x8",
        text=("Value iteration (sparse Bellman sweeps, stopped by a guaranteed error bound of "
              "1e-8) and policy iteration (exact linear solves) reach the same V*; the greedy "
              f"policy reaches the goal within the {horizon}-step limit with the probability "
              "shown (computed exactly from the model, not sampled)."),
        images=[img],
        metrics={"VI sweeps": info.sweeps, "VI ms": 1e3 * t_vi,
                 "PI improvement steps": pinfo.improvements, "PI ms": 1e3 * t_pi,
                 "max |V_VI - V_PI|": float(np.abs(V - V2).max()),
                 "policies agree": bool((pi.argmax(1) == pi2.argmax(1))[~model.terminal].all()),
                 f"success within {horizon} steps": float(success)},
    )


def _cliff(out: Path) -> Section:
    import gymnasium as gym

    from agents.tabular.plotting import greedy_path
    from agents.tabular.q_learning import QLearning
    from agents.tabular.sarsa import Sarsa
    from mpgym.plots import plot_curves, save_image_grid

    env_id = "mpgym/CliffWalking-v0"
    curves, agents = {}, {}
    for cls in (Sarsa, QLearning):
        config = cls.PRESETS["cliff"]
        returns = []
        for seed in range(CLIFF_RUNS):
            agent = cls(env_id, type(config)(**{**config.__dict__, "env_id": env_id,
                                                "seed": seed}))
            agent.learn(progress_bar=False)
            returns.append([h["return"] for h in agent.history])
            agents.setdefault(cls.name, agent)
        curves[cls.name] = (np.arange(1, len(returns[0]) + 1), np.mean(returns, axis=0))
    curve_png = plot_curves(out / "cliff_learning_curves.png", curves, xlabel="episode",
                            ylabel="sum of rewards during episode", smooth=10,
                            ylim=(-100, 0), hlines={"optimal -13": -13.0},
                            title=f"Cliff Walking, epsilon 0.1, alpha 0.5 ({CLIFF_RUNS} runs)")
    env = gym.make(env_id)
    images, greedy = [], {}
    for name, agent in agents.items():
        states, ret = greedy_path(agent, env)
        greedy[name] = ret
        images.append(env.unwrapped.render_rgb(path=states[:-1]) / 255.0)
    path_png = save_image_grid(out / "cliff_greedy_paths.png", np.stack(images), nrow=1,
                               pad=6)
    online = {n: float(np.mean(c[1][100:])) for n, c in curves.items()}
    return Section(
        title="SARSA vs Q-learning on Cliff Walking (Sutton & Barto, Example 6.6)",
        text=("On-policy SARSA learns the safe path and earns more per episode while exploring; "
              "off-policy Q-learning learns the optimal path along the cliff edge (return -13) "
              "but falls off during epsilon-greedy exploration. Greedy paths after 500 "
              "episodes: SARSA (top), Q-learning (bottom)."),
        images=[curve_png, path_png],
        metrics={"SARSA online return (episodes 101-500)": online["sarsa"],
                 "Q-learning online return (episodes 101-500)": online["q-learning"],
                 "SARSA greedy return": greedy["sarsa"],
                 "Q-learning greedy return": greedy["q-learning"]},
    )


def run(out: Path) -> list[Section]:
    """Run the tabular stop: FrozenLake planning and the cliff-walking comparison."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [_frozenlake(out), _cliff(out)]
