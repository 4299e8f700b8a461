"""Learning results the book and Gymnasium state, reproduced with fixed seeds and budgets."""

import numpy as np
import pytest

from agents.common import Schedule, evaluate_policy
from agents.tabular import finite_horizon_evaluation, policy_evaluation, value_iteration
from agents.tabular.expected_sarsa import ExpectedSarsa
from agents.tabular.monte_carlo import MCControl, MCExploringStarts, MCPrediction
from agents.tabular.q_learning import QLearning
from agents.tabular.sarsa import Sarsa
from agents.tabular.td_prediction import TD0Prediction
from envs import TabularModel
from envs.random_walk import true_values


def test_example_6_6_sarsa_safer_online_q_learning_greedy_on_the_edge():
    sarsa = Sarsa("CliffWalking-v1", Sarsa.PRESETS["cliff"]).learn(progress_bar=False)
    qlearn = QLearning("CliffWalking-v1", QLearning.PRESETS["cliff"]).learn(progress_bar=False)
    online = {a.name: np.mean([h["return"] for h in a.history[100:]]) for a in (sarsa, qlearn)}
    assert online["sarsa"] > online["q-learning"] + 10  # book: about -25 against -50
    q_greedy = evaluate_policy(qlearn, "CliffWalking-v1", 1, seed=0)
    assert q_greedy.returns[0] == -13  # the path along the cliff edge
    assert q_greedy.lengths[0] == 13
    s_greedy = evaluate_policy(sarsa, "CliffWalking-v1", 1, seed=0)
    assert s_greedy.returns[0] < -13  # SARSA's greedy path keeps away from the edge


def test_expected_sarsa_on_cliff_walking_learns_the_optimal_path():
    agent = ExpectedSarsa("CliffWalking-v1", ExpectedSarsa.PRESETS["cliff"]).learn(
        200, progress_bar=False)
    assert evaluate_policy(agent, "CliffWalking-v1", 1, seed=0).returns[0] >= -17


def _rms_run(cls, alpha, seed):
    """RMS error over the 5 states before and after each of 100 episodes (Example 6.2)."""
    tv = true_values(5)
    agent = cls("mpgym/RandomWalk-v0", cls.Config(alpha=Schedule(alpha), seed=seed))
    rms = [np.sqrt(np.mean((agent.v[1:6] - tv) ** 2))]
    agent.learn(100, progress_bar=False, callback=lambda loc: rms.append(
        np.sqrt(np.mean((loc["self"].v[1:6] - tv) ** 2))))
    return rms


def _rms_curve(cls, alpha, runs):
    return np.mean([_rms_run(cls, alpha, r) for r in range(runs)], axis=0)


def _check_td_beats_mc(td_alphas, mc_alphas, runs):
    td = {a: _rms_curve(TD0Prediction, a, runs) for a in td_alphas}
    mc = {a: _rms_curve(MCPrediction, a, runs) for a in mc_alphas}
    assert min(c[-1] for c in td.values()) < min(c[-1] for c in mc.values())
    assert max(c.mean() for c in td.values()) < min(c.mean() for c in mc.values())
    assert all(c[0] == pytest.approx(np.sqrt(np.mean((0.5 - true_values(5)) ** 2)))
               for c in td.values())


def test_example_6_2_td_beats_constant_alpha_mc_reduced():
    _check_td_beats_mc([0.05, 0.1], [0.02, 0.04], runs=10)


@pytest.mark.slow
def test_example_6_2_td_beats_constant_alpha_mc_book_step_sizes():
    _check_td_beats_mc([0.05, 0.1, 0.15], [0.01, 0.02, 0.03, 0.04], runs=100)


def test_td0_and_mc_converge_to_true_values_with_small_steps():
    tv = true_values(5)
    td = TD0Prediction("mpgym/RandomWalk-v0", TD0Prediction.Config(alpha=Schedule(0.02)))
    td.learn(1000, progress_bar=False)
    mc = MCPrediction("mpgym/RandomWalk-v0", MCPrediction.Config(step_size="1/n", visit="every"))
    mc.learn(1000, progress_bar=False)
    assert np.abs(td.v[1:6] - tv).max() < 0.08
    assert np.abs(mc.v[1:6] - tv).max() < 0.05  # sample averages: unbiased


@pytest.fixture(scope="module")
def frozenlake_optimum():
    model = TabularModel.from_env("FrozenLake-v1")
    _, pi, _ = value_iteration(model, 0.99)
    return model, finite_horizon_evaluation(model, pi, 100)[0]


@pytest.mark.slow
@pytest.mark.parametrize("cls", [QLearning, Sarsa])
def test_frozenlake_greedy_success_within_two_points_of_optimal(cls, frozenlake_optimum):
    model, optimum = frozenlake_optimum
    agent = cls("FrozenLake-v1").learn(progress_bar=False)  # the default config
    success = finite_horizon_evaluation(model, agent.policy(), 100)[0]  # exact, no sampling
    assert success >= optimum - 0.02, (success, optimum)


def test_q_learning_solves_deterministic_frozenlake():
    import gymnasium as gym

    env = gym.make("FrozenLake-v1", is_slippery=False)
    agent = QLearning(env, QLearning.Config(episodes=300, epsilon=Schedule(1.0, 0.05, 200,
                                                                           "linear")))
    agent.learn(progress_bar=False)
    assert evaluate_policy(agent, env, 1, seed=0).returns[0] == 1.0


@pytest.mark.slow
def test_expected_sarsa_frozenlake_within_two_points(frozenlake_optimum):
    model, optimum = frozenlake_optimum
    agent = ExpectedSarsa("FrozenLake-v1").learn(progress_bar=False)
    assert finite_horizon_evaluation(model, agent.policy(), 100)[0] >= optimum - 0.02


def test_monte_carlo_exploring_starts_finds_the_4x4_shortest_paths():
    model = TabularModel.from_env("mpgym/GridWorld-v0")
    V_star, _, _ = value_iteration(model, 1.0)
    config = MCExploringStarts.Config(env_id="mpgym/GridWorld-v0", gamma=1.0, max_steps=100,
                                      step_size="schedule", alpha=Schedule(0.1))
    agent = MCExploringStarts("mpgym/GridWorld-v0", config).learn(2000, progress_bar=False)
    np.testing.assert_allclose(policy_evaluation(model, agent.policy(), 1.0), V_star)


def test_on_policy_monte_carlo_control_is_near_optimal_on_4x4():
    model = TabularModel.from_env("mpgym/GridWorld-v0")
    V_star, _, _ = value_iteration(model, 1.0)
    config = MCControl.Config(env_id="mpgym/GridWorld-v0", gamma=1.0, max_steps=100,
                              epsilon=Schedule(0.3, 0.05, 3000, "linear"))
    agent = MCControl("mpgym/GridWorld-v0", config).learn(3000, progress_bar=False)
    gap = V_star - policy_evaluation(model, agent.policy(), 1.0)
    assert gap.max() <= 2.0 + 1e-9 and gap.mean() < 0.3  # epsilon-soft: a detour at most
