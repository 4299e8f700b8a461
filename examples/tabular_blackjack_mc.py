"""Sutton & Barto's Example 5.1 (and sec. 5.4): Monte Carlo on Blackjack.

Run: python examples/tabular_blackjack_mc.py   (writes runs/examples/blackjack_*.png)
The same control run from the command line: mpgym train mc-control --env Blackjack-v1 --gamma 1

Blackjack-v1 observes (player sum, dealer's card, usable ace), a Tuple of Discrete spaces;
tabular agents number it into one state (envs.tuple_discrete.TupleToDiscrete) by themselves.
"""

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from agents.tabular.monte_carlo import (  # noqa: E402
    MCControl,
    MCControlConfig,
    MCPrediction,
    MCPredictionConfig,
)
from envs.tuple_discrete import TupleToDiscrete  # noqa: E402
from mpgym.plots import save_figure  # noqa: E402

EPISODES = 100_000  # the book shows 10,000 and 500,000
env = TupleToDiscrete(gym.make("Blackjack-v1"))
S = env.observation_space.n
player = np.array([env.unflatten(s)[0] for s in range(S)])

# Example 5.1: the policy that sticks on 20 or 21 and hits otherwise (action 0 sticks)
stick20 = np.where((player >= 20)[:, None], [1.0, 0.0], [0.0, 1.0])
config = MCPredictionConfig(env_id="Blackjack-v1", episodes=EPISODES, gamma=1.0,
                            step_size="1/n", v_init=0.0)
v = MCPrediction(config.env_id, config, policy=stick20).learn().values()

# sec. 5.4: on-policy first-visit MC control with an epsilon-soft policy (its greedy policy is
# still noisy after 1e5 episodes; Figure 5.2 shows the optimum, found by MC ES in 5e5 or more)
control = MCControl("Blackjack-v1", MCControlConfig(env_id="Blackjack-v1", episodes=EPISODES,
                                                     gamma=1.0)).learn()
stick = control.q.argmax(axis=1) == 0

fig, axes = plt.subplots(2, 2, figsize=(8, 7))
for row, ace in enumerate((1, 0)):
    idx = np.array([[env.observation((p, d, ace)) for d in range(1, 11)] for p in range(12, 22)])
    panels = ((v[idx], "v, stick on 20"), (stick[idx], "MC control sticks"))
    for col, (values, title) in enumerate(panels):
        ax = axes[row, col]
        ax.imshow(values, origin="lower", extent=(0.5, 10.5, 11.5, 21.5), cmap="viridis",
                  vmin=-1 if col == 0 else 0, vmax=1)
        ax.set(title=f"{title} ({'usable' if ace else 'no usable'} ace)",
               xlabel="dealer showing", ylabel="player sum")
png = save_figure(fig, "runs/examples/blackjack_mc.png")
usable21 = [env.observation((21, d, 1)) for d in range(2, 11)]
print(f"v(21 with a usable ace, dealer 2..10) = {np.round(v[usable21], 2).tolist()}")
print(f"picture: {png}")
