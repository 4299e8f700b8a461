import gymnasium as gym
import numpy as np
import pytest

from agents.tabular import bellman_backup
from agents.tabular._reference import bellman_backup_reference
from envs import TabularModel
from mpgym import MpgymError


@pytest.mark.parametrize("env_id", ["FrozenLake-v1", "FrozenLake8x8-v1", "Taxi-v4",
                                    "CliffWalking-v1", "mpgym/WindyGridWorld-v0",
                                    "mpgym/GamblersProblem-v0"])
def test_sparse_backup_matches_loop_over_P(env_id):
    env = gym.make(env_id)
    model = TabularModel.from_env(env, terminal="as-given")
    V = np.random.default_rng(0).normal(size=model.n_states)
    for gamma in (0.9, 1.0):
        np.testing.assert_allclose(bellman_backup(model, V, gamma),
                                   bellman_backup_reference(env.unwrapped.P, V, gamma), atol=1e-12)


def test_shapes_and_expected_rewards():
    model = TabularModel.from_env("FrozenLake-v1")
    assert model.P.shape == (64, 16) and model.R.shape == (16, 4)
    # slippery: from 14 moving RIGHT reaches the goal with probability 1/3
    assert model.R[14, 2] == pytest.approx(1 / 3)
    assert model.terminal.sum() == 5 and not model.absorbed.any()


def test_cliffwalking_goal_is_not_absorbing_in_gymnasium():
    env = gym.make("CliffWalking-v1")
    assert env.unwrapped.P[47][0] == [(1.0, 35, -1, False)]  # the goal "moves on"
    as_given = TabularModel.from_env(env, terminal="as-given")
    absorbing = TabularModel.from_env(env)
    assert as_given.terminal[47] and not as_given.absorbed.any()
    assert absorbing.absorbed[47] and absorbing.absorbed.sum() == 1
    assert absorbing.P[47 * 4:48 * 4].nnz == 0 and (absorbing.R[47] == 0).all()
    np.testing.assert_array_equal(absorbing.P[:47 * 4].toarray(), as_given.P[:47 * 4].toarray())


def test_policy_matrix_rows():
    model = TabularModel.from_env("FrozenLake-v1")
    P_pi, r_pi = model.policy_matrix(np.full((16, 4), 0.25))
    live = ~model.terminal
    np.testing.assert_allclose(np.asarray(P_pi.sum(axis=1)).ravel()[live],
                               1 - model.done[live].mean(axis=1))
    assert r_pi[14] == pytest.approx(0.25 * (model.R[14].sum()))


def _toy_P():
    return {0: {0: [(0.5, 0, 0.0, False), (0.5, 1, 1.0, True)], 1: [(1.0, 1, 0.0, True)]},
            1: {0: [(1.0, 1, 0.0, True)], 1: [(1.0, 1, 0.0, True)]}}


def test_probabilities_not_summing_to_one_name_the_pair():
    P = _toy_P()
    P[0][1] = [(0.7, 1, 0.0, True)]
    with pytest.raises(MpgymError, match=r"P\[0\]\[1\] sum to 0.7, not 1"):
        TabularModel.from_dict(P)


@pytest.mark.parametrize("edit, match", [
    (lambda P: P[0].update({0: [(1.0, 5, 0.0, False)]}), r"leads to state 5"),
    (lambda P: P[0].update({0: [(-0.5, 0, 0.0, False), (1.5, 1, 0.0, True)]}), "negative"),
    (lambda P: P[0].update({0: [(1.0, 1, np.nan, True)]}), "non-finite rewards"),
    (lambda P: P[1].pop(1), r"P\[1\] must list the actions"),
    (lambda P: P[0].update({0: [(1.0, 1)]}), "each entry must be"),
])
def test_malformed_models_are_rejected(edit, match):
    P = _toy_P()
    edit(P)
    with pytest.raises(MpgymError, match=match):
        TabularModel.from_dict(P)


def test_env_without_model_is_rejected():
    with pytest.raises(MpgymError, match="exposes no model"):
        TabularModel.from_env(gym.make("CartPole-v1"))


def test_bad_policy_shapes():
    model = TabularModel.from_dict(_toy_P())
    with pytest.raises(MpgymError, match=r"\(2, 2\) action probabilities"):
        model.policy_matrix(np.ones((3, 2)) / 2)
    with pytest.raises(MpgymError, match="probabilities"):
        model.policy_matrix(np.ones((2, 2)))
    P_pi, _ = model.policy_matrix(np.array([1, 0]))
    assert P_pi[0, 0] == 0.0
