import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from agents.tabular import policy_evaluation, value_iteration
from envs import GamblersProblemEnv, GridWorldEnv, RandomWalkEnv, TabularModel
from envs.random_walk import true_values
from mpgym import MpgymError


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_registered_envs_pass_gymnasium_and_sb3_checkers(env_id):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=False)
    sb3_check_env(env.unwrapped, warn=True)
    assert env.spec.max_episode_steps is not None


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_rollouts_are_deterministic_given_seed(env_id):
    def rollout():
        env = gym.make(env_id)
        obs, _ = env.reset(seed=123)
        env.action_space.seed(7)
        out = [int(obs)]
        for _ in range(50):
            obs, r, term, trunc, _ = env.step(env.action_space.sample())
            out += [int(obs), float(r)]
            if term or trunc:
                obs, _ = env.reset()
                out.append(int(obs))
        return out

    assert rollout() == rollout()


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_step_samples_from_P(env_id):
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        s = env.s
        a = int(rng.integers(env.action_space.n))
        s2, r, term, _, info = env.step(a)
        assert (info["prob"], int(s2), float(r), term) in [
            (p, n, float(rr), t) for p, n, rr, t in env.P[s][a]]
        if term:
            env.reset()


def test_module_prefix_registers_without_import():
    code = ("import gymnasium as gym; e = gym.make('envs:mpgym/GridWorld-v0'); "
            "print(e.observation_space.n, e.spec.id)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["16", "mpgym/GridWorld-v0"]


def test_cliff_walking_matches_example_6_6_and_gymnasium():
    ours = TabularModel.from_env("mpgym/CliffWalking-v0")
    theirs = TabularModel.from_env("CliffWalking-v1")
    V1, _, _ = value_iteration(ours, 1.0)
    V2, _, _ = value_iteration(theirs, 1.0)
    assert V1[36] == pytest.approx(-13.0) and V2[36] == pytest.approx(-13.0)
    np.testing.assert_allclose(V1[:47], V2[:47])
    env = gym.make("mpgym/CliffWalking-v0")
    env.reset(seed=0)
    s, r, term, _, _ = env.step(2)  # RIGHT from the start steps into the cliff
    assert (int(s), r, term) == (36, -100.0, False)


def test_windy_gridworld_optimum_is_15_steps():
    model = TabularModel.from_env("mpgym/WindyGridWorld-v0")
    V, policy, _ = value_iteration(model, 1.0)
    assert V[3 * 10 + 0] == pytest.approx(-15.0)
    env = gym.make("mpgym/WindyGridWorld-v0")
    s, _ = env.reset(seed=0)
    steps, done = 0, False
    while not done:
        s, _, done, _, _ = env.step(int(policy[s].argmax()))
        steps += 1
    assert steps == 15


def test_wind_pushes_up_from_the_column_left():
    env = GridWorldEnv("windy")
    env.reset(seed=0)
    env.s = 3 * 10 + 6  # row 3, column 6 (wind 2)
    s, *_ = env.step(2)  # RIGHT
    assert divmod(int(s), 10) == (1, 7)


def test_slip_sends_half_the_rest_to_each_side():
    env = GridWorldEnv(desc=["...", ".S.", "..G"], slip=0.2)
    moves = sorted((p, s) for p, s, _, _ in env.P[4][2])  # RIGHT from the centre
    assert moves == [(pytest.approx(0.1), 1), (pytest.approx(0.1), 7), (pytest.approx(0.8), 5)]


def test_per_cell_rewards_walls_and_pits():
    env = GridWorldEnv(desc=["S#G", ".xH"], rewards={"x": 5.0, "G": 10.0}, step_reward=-1.0)
    assert env.P[0][2] == [(1.0, 0, -1.0, False)]  # wall: stay
    assert env.P[3][2] == [(1.0, 4, 5.0, False)]  # custom cell reward
    assert env.P[4][2] == [(1.0, 5, -1.0, True)]  # pit ends the episode
    assert env.P[5][0] == [(1.0, 5, 0.0, True)]  # terminal cells are absorbing


@pytest.mark.parametrize("desc, match", [
    ([], "at least one non-empty row"),
    (["S..", ".G"], "same length"),
    (["SS", "G."], "at most one start"),
    (["GT", "##"], "free, non-terminal cell"),
    (["C.", ".G"], "needs a start"),
])
def test_malformed_maps_are_rejected(desc, match):
    with pytest.raises(MpgymError, match=match):
        GridWorldEnv(desc=desc)


def test_bad_arguments_are_rejected():
    with pytest.raises(MpgymError, match="accepted: 4x4, windy, cliff"):
        GridWorldEnv("8x8")
    with pytest.raises(MpgymError, match="slip"):
        GridWorldEnv(slip=1.5)
    with pytest.raises(MpgymError, match="render_mode"):
        GridWorldEnv(render_mode="human")
    with pytest.raises(MpgymError, match="p_heads"):
        GamblersProblemEnv(p_heads=1.0)
    with pytest.raises(MpgymError, match="n_states"):
        RandomWalkEnv(0)


def test_renders():
    env = GridWorldEnv("4x4", render_mode="ansi")
    env.reset(seed=1)
    text = env.render()
    assert text.count("@") == 1 and text.count("T") == 2
    env = GridWorldEnv("cliff", render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.shape == (4 * 32, 12 * 32, 3) and img.dtype == np.uint8
    assert RandomWalkEnv(render_mode="ansi").render() == "|..@..|\n"


@pytest.mark.parametrize("n", [5, 19])
def test_random_walk_true_values(n):
    model = TabularModel.from_env(RandomWalkEnv(n))
    V = policy_evaluation(model, np.full((n + 2, 2), 0.5), 1.0)
    np.testing.assert_allclose(V[1:-1], true_values(n), atol=1e-12)
    assert V[0] == V[-1] == 0.0


def test_gamblers_problem_values_of_figure_4_3():
    model = TabularModel.from_env(GamblersProblemEnv())
    V, policy, _ = value_iteration(model, 1.0, tol=1e-12)
    # with p_heads = 0.4 the bold strategy is optimal: V(25) = 0.4^2, V(50) = 0.4, V(75) = 0.64
    assert V[[25, 50, 75]] == pytest.approx([0.16, 0.4, 0.64], abs=1e-9)
    assert policy[50].argmax() == 50 and policy[25].argmax() == 25
