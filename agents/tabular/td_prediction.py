"""TD(0) prediction (Sutton 1988; Sutton & Barto, sec. 6.1)."""

from __future__ import annotations

from agents.tabular.prediction import PredictionConfig, TabularPredictionAgent
from agents.tabular.targets import td0_target


class TD0Prediction(TabularPredictionAgent):
    """TD(0): ``V(s) += alpha * (r + gamma * V(s') - V(s))`` after every step.

    Defaults reproduce Example 6.2 (random walk, V initialised to 0.5, alpha 0.1, 100 episodes).
    ``learn(n)`` counts episodes.
    """

    name = "td0"
    Config = PredictionConfig
    PRESETS = {"random-walk": PredictionConfig(),
               "random-walk-19": PredictionConfig(env_id="mpgym/RandomWalk-v0", v_init=0.0,
                                                   env_kwargs={"n_states": 19})}

    def run_episode(self, episode: int, seed: int | None) -> tuple[float, int]:
        """One episode under the target policy with TD(0) updates."""
        gamma, max_steps = self.config.gamma, self.config.max_steps
        s = int(self.env.reset(seed=seed)[0])
        ret, length, done = 0.0, 0, False
        while not done and length < max_steps:
            s2, r, terminated, truncated, _ = self.env.step(self.act(s))
            s2 = int(s2)
            target = td0_target(float(r), self.v[s2], gamma, terminated)
            self.v[s] += self.state_step_size(s, episode) * (target - self.v[s])
            ret, length, done, s = ret + float(r), length + 1, terminated or truncated, s2
        return ret, length
