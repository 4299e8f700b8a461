import doctest

import numpy as np
import pytest

import agents.tabular.dp as dp
from agents.tabular import (
    bellman_backup,
    finite_horizon_evaluation,
    policy_evaluation,
    policy_iteration,
    value_iteration,
)
from envs import TabularModel
from mpgym import MpgymError

CASES = [("FrozenLake-v1", 0.99), ("FrozenLake8x8-v1", 0.99), ("Taxi-v4", 0.99),
         ("mpgym/GridWorld-v0", 1.0), ("mpgym/GridWorld-v0", 0.9), ("CliffWalking-v1", 1.0),
         ("mpgym/GamblersProblem-v0", 1.0)]


@pytest.mark.parametrize("env_id, gamma", CASES)
def test_value_iteration_policy_iteration_and_linear_solve_agree(env_id, gamma):
    model = TabularModel.from_env(env_id)
    V_vi, pi_vi, info_vi = value_iteration(model, gamma, tol=1e-10)
    V_pi, pi_pi, info_pi = policy_iteration(model, gamma)
    V_lin = policy_evaluation(model, pi_vi, gamma, method="linear")
    np.testing.assert_allclose(V_vi, V_pi, atol=1e-8, rtol=0)
    np.testing.assert_allclose(V_vi, V_lin, atol=1e-8, rtol=0)
    np.testing.assert_allclose(policy_evaluation(model, pi_pi, gamma), V_pi, atol=1e-8, rtol=0)
    assert info_vi.converged and info_pi.converged
    assert info_vi.residual < 1e-8 and info_pi.residual < 1e-8
    assert info_vi.sweeps > 0 and info_pi.improvements >= 1


def test_example_4_1_random_policy_values():
    model = TabularModel.from_env("mpgym/GridWorld-v0")
    book = np.array([[0, -14, -20, -22], [-14, -18, -20, -20],
                     [-20, -20, -18, -14], [-22, -20, -14, 0]], dtype=float)
    uniform = np.full((16, 4), 0.25)
    for method in ("linear", "iterative"):
        V = policy_evaluation(model, uniform, 1.0, method=method, tol=1e-12)
        np.testing.assert_allclose(V.reshape(4, 4), book, atol=1e-9)
    V_opt, _, _ = value_iteration(model, 1.0)  # Figure 4.1, optimal: minus the step distance
    assert V_opt.reshape(4, 4)[1].tolist() == [-1, -2, -3, -2]


def test_value_iteration_error_bound_holds():
    model = TabularModel.from_env("FrozenLake8x8-v1")
    V_star = policy_iteration(model, 0.99)[0]
    for tol in (1e-2, 1e-4, 1e-6):
        V, _, info = value_iteration(model, 0.99, tol=tol)
        assert info.error_bound < tol
        assert np.abs(V - V_star).max() <= tol


def test_value_iteration_on_random_mdp_without_termination():
    rng = np.random.default_rng(0)
    S, A, K = 50, 3, 4
    rows = np.repeat(np.arange(S * A), K)
    probs = rng.dirichlet(np.ones(K), size=S * A).ravel()
    model = TabularModel.from_transitions(rows, rng.integers(0, S, size=S * A * K), probs,
                                          rng.random(S * A * K), np.zeros(S * A * K, bool),
                                          n_states=S, n_actions=A)
    V_star = policy_iteration(model, 0.95)[0]
    V, _, info = value_iteration(model, 0.95, tol=1e-9)
    assert np.abs(V - V_star).max() < 1e-9
    assert info.sweeps < 100  # the span-based bound stops long before the residual would


def test_finite_horizon_success_of_optimal_frozenlake_policy():
    model = TabularModel.from_env("FrozenLake-v1")
    _, pi, _ = value_iteration(model, 0.99)
    success = finite_horizon_evaluation(model, pi, 100)[0]
    assert success == pytest.approx(0.74, abs=0.005)  # Gymnasium: "optimum = 0.74"
    assert finite_horizon_evaluation(model, pi, 10_000)[0] == pytest.approx(
        policy_evaluation(model, pi, 1.0)[0], abs=1e-6)


def test_improper_policy_with_gamma_one_gives_clear_error():
    model = TabularModel.from_env("mpgym/GridWorld-v0")
    always_left = np.zeros((16, 4))
    always_left[:, 0] = 1
    with pytest.raises(MpgymError, match="never terminates"):
        policy_evaluation(model, always_left, 1.0)
    with pytest.raises(MpgymError, match="gamma must be in"):
        value_iteration(model, 1.5)
    with pytest.raises(MpgymError, match="accepted: 'linear', 'iterative'"):
        policy_evaluation(model, np.full((16, 4), 0.25), 0.9, method="exact")


def test_docstring_examples():
    assert doctest.testmod(dp).failed == 0
    model = TabularModel.from_dict({0: {0: [(1.0, 1, 1.0, False)]}, 1: {0: [(1.0, 1, 0.0, True)]}})
    np.testing.assert_allclose(bellman_backup(model, np.array([0.0, 5.0]), 0.5), [[3.5], [0.0]])
