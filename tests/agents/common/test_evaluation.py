"""evaluate_policy's success rate follows the env's own success signal, and says which."""

import os

import gymnasium as gym
import numpy as np
import pytest

from agents.common.evaluation import (
    RULE_INFO,
    RULE_POSITIVE_TERMINAL,
    RULE_TERMINATED,
    evaluate_policy,
    quiet_pygame,
    success_rule,
)

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3  # CliffWalking's actions


def cliff_optimal(state: int) -> int:
    """The 13-step path along the cliff edge: up from the start, 11 right, down to the goal."""
    if state == 36:
        return UP
    return DOWN if state == 35 else RIGHT


def test_cliffwalking_optimal_path_succeeds_every_time():
    result = evaluate_policy(cliff_optimal, "CliffWalking-v1", 5, seed=0)
    assert result.returns.tolist() == [-13.0] * 5  # the goal is reached, with a negative return
    assert result.success_rate == 1.0
    assert result.success_rule == RULE_TERMINATED
    s = result.summary()
    assert s["success_rate"] == 1.0 and s["success_rule"] == RULE_TERMINATED


def test_cliffwalking_episode_that_never_reaches_the_goal_fails():
    # Always UP from the start: the agent sits at the top-left corner until the step cap.
    result = evaluate_policy(lambda s: UP, "CliffWalking-v1", 2, seed=0, max_steps=50)
    assert result.lengths.tolist() == [50, 50] and result.success_rate == 0.0


def test_random_cartpole_policy_is_not_a_success():
    rng = np.random.default_rng(0)
    result = evaluate_policy(lambda obs: int(rng.integers(2)), "CartPole-v1", 10, seed=0)
    assert result.returns.max() < 100
    assert result.success_rate == 0.0
    assert result.success_rule == "return >= reward_threshold (475.0)"


def test_balancing_cartpole_policy_succeeds():
    # Push toward the side the pole falls to: balances the full 500 steps from these seeds.
    result = evaluate_policy(lambda o: int(o[2] + 0.5 * o[3] > 0), "CartPole-v1", 5, seed=0)
    assert result.returns.tolist() == [500.0] * 5 and result.success_rate == 1.0


def test_frozenlake_success_is_reaching_the_goal_not_ending():
    env = gym.make("FrozenLake-v1", is_slippery=False)
    path = {0: 2, 1: 2, 2: 1, 6: 1, 10: 1, 14: 2}  # RIGHT RIGHT DOWN DOWN DOWN RIGHT
    result = evaluate_policy(lambda s: path[int(s)], env, 3, seed=0)
    assert result.returns.tolist() == [1.0] * 3 and result.success_rate == 1.0
    assert result.success_rule == RULE_POSITIVE_TERMINAL
    # DOWN from the start ends in the hole at state 12 (terminated, reward 0): a failure.
    result = evaluate_policy(lambda s: 1, env, 3, seed=0)
    assert result.lengths.tolist() == [3] * 3 and result.success_rate == 0.0


class _Coin(gym.Env):
    """One step; ``info["is_success"]`` says whether action 1 was taken; reward always 0."""

    observation_space = gym.spaces.Discrete(1)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 0, 0.0, True, False, {"is_success": bool(action == 1)}


def test_info_is_success_is_preferred():
    assert evaluate_policy(lambda o: 1, _Coin(), 4).success_rate == 1.0
    result = evaluate_policy(lambda o: 0, _Coin(), 4)
    assert result.success_rate == 0.0 and result.success_rule == RULE_INFO
    assert success_rule(_Coin(), {"is_success": False}) == RULE_INFO


class _Counter(gym.Env):
    """Three steps; ``info["k"]`` is the step number, named as an episode metric."""

    metadata = {"episode_metrics": ("k",), "render_fps": 12}
    observation_space = gym.spaces.Discrete(1)
    action_space = gym.spaces.Discrete(1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return 0, {}

    def step(self, action):
        self.t += 1
        return 0, 1.0, False, self.t == 3, {"k": float(self.t)}


def test_episode_metrics_average_the_named_info_keys_over_steps():
    result = evaluate_policy(lambda o: 0, _Counter(), 2)
    assert result.metrics["k"].tolist() == [2.0, 2.0]  # mean of 1, 2, 3
    assert result.summary()["mean_k"] == 2.0 and result.fps == 12.0
    assert evaluate_policy(cliff_optimal, "CliffWalking-v1", 1).metrics == {}


def test_bad_episode_counts_and_seeds_are_refused():
    from mpgym.errors import MpgymError

    with pytest.raises(MpgymError, match="n_episodes must be >= 1"):
        evaluate_policy(cliff_optimal, "CliffWalking-v1", 0)
    with pytest.raises(MpgymError, match="seed must be >= 0"):
        evaluate_policy(cliff_optimal, "CliffWalking-v1", 1, seed=-1)


def test_no_success_signal_gives_no_rate():
    result = evaluate_policy(lambda o: np.zeros(1, np.float32), "Pendulum-v1", 1, seed=0)
    assert result.success_rate is None and result.success_rule is None
    assert result.summary()["success_rate"] is None


@pytest.mark.parametrize("env_id, rule", [
    ("Taxi-v4", RULE_TERMINATED),  # ends only on a drop-off
    ("FrozenLake8x8-v1", RULE_POSITIVE_TERMINAL),
    ("mpgym/RandomWalk-v0", RULE_POSITIVE_TERMINAL),  # right end +1, left end 0
    ("mpgym/CliffWalking-v0", RULE_TERMINATED),
    ("Blackjack-v1", None),  # no model, no threshold
    ("MountainCar-v0", "return >= reward_threshold (-110.0)"),
])
def test_success_rule_per_env(env_id, rule):
    from agents.common import make_env

    assert success_rule(make_env(env_id)) == rule


def test_rendering_keeps_a_bounded_number_of_frames():
    result = evaluate_policy(lambda s: UP, "CliffWalking-v1", 1, seed=0, render=True,
                             max_steps=200, max_frames=10)
    assert result.lengths.tolist() == [200] and len(result.frames) == 10


def test_quiet_pygame_sets_dummy_drivers_and_restores(monkeypatch):
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    monkeypatch.delenv("SDL_AUDIODRIVER", raising=False)
    with quiet_pygame("rgb_array"):
        assert os.environ["SDL_VIDEODRIVER"] == "dummy"
        assert os.environ["SDL_AUDIODRIVER"] == "dummy"
    assert "SDL_VIDEODRIVER" not in os.environ and "SDL_AUDIODRIVER" not in os.environ
    monkeypatch.setenv("SDL_VIDEODRIVER", "x11")
    with quiet_pygame("human"):  # a window is wanted: the video driver is left alone
        assert os.environ["SDL_VIDEODRIVER"] == "x11"
        assert os.environ["SDL_AUDIODRIVER"] == "dummy"
    assert os.environ["SDL_VIDEODRIVER"] == "x11"
