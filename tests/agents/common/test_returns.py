"""reward_to_go: the Monte Carlo target of tabular MC and REINFORCE."""

import numpy as np

from agents.common.returns import reward_to_go
from agents.deep.common import rollout_returns


def test_reward_to_go_hand_computed():
    # G_2 = 3, G_1 = 2 + 0.9 * 3 = 4.7, G_0 = 1 + 0.9 * 4.7 = 5.23
    np.testing.assert_allclose(reward_to_go(np.array([1.0, 2.0, 3.0]), 0.9), [5.23, 4.7, 3.0])
    assert reward_to_go(np.array([1.0, 0.0, 2.0]), 0.5).tolist() == [1.5, 1.0, 2.0]
    assert reward_to_go(np.array([]), 0.9).shape == (0,)


def test_reward_to_go_gamma_one_is_suffix_sum():
    r = np.arange(5.0)
    np.testing.assert_allclose(reward_to_go(r, 1.0), np.cumsum(r[::-1])[::-1])


def test_reward_to_go_is_a_rollout_of_one_episode_without_bootstrap():
    r = np.random.default_rng(0).normal(size=50)
    np.testing.assert_array_equal(reward_to_go(r, 0.97), rollout_returns(r, np.zeros(50), 0.97))
    ints = [1, 0, 3]  # integer rewards (toy-text envs) give float returns
    assert reward_to_go(np.array(ints), 0.5).dtype == np.float64
