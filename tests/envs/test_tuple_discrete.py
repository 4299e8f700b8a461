"""A Tuple of Discrete observations numbered into one index, and Blackjack (S&B ch. 5)."""

from __future__ import annotations

import functools
import itertools

import gymnasium as gym
import numpy as np
import pytest

from envs.tuple_discrete import (
    TupleToDiscrete,
    discrete_observations,
    flatten_tuple,
    tuple_radix,
    unflatten_index,
)
from mpgym.errors import MpgymError

D = gym.spaces.Discrete


def test_round_trip_over_the_whole_space():
    space = gym.spaces.Tuple((D(3), D(4, start=-2), D(2, start=5)))
    radix = tuple_radix(space)
    indices = [flatten_tuple(obs, radix)
               for obs in itertools.product(range(3), range(-2, 2), range(5, 7))]
    assert indices == list(range(24))  # mixed radix, first member most significant
    for i in range(24):
        obs = unflatten_index(i, radix)
        assert space.contains(tuple(np.int64(o) for o in obs))
        assert flatten_tuple(obs, radix) == i


def test_batched_and_blackjack_numbers():
    env = TupleToDiscrete(gym.make("Blackjack-v1"))
    assert env.observation_space == D(704)
    assert env.observation((21, 10, 1)) == (21 * 11 + 10) * 2 + 1 == 483
    assert env.unflatten(483) == (21, 10, 1)
    batch = (np.array([21, 4]), np.array([10, 1]), np.array([1, 0]))
    idx = env.observation(batch)
    np.testing.assert_array_equal(idx, [483, (4 * 11 + 1) * 2])
    for got, want in zip(env.unflatten(idx), batch, strict=True):
        np.testing.assert_array_equal(got, want)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_refusals():
    with pytest.raises(MpgymError, match="every member is Discrete"):
        tuple_radix(gym.spaces.Tuple((D(3), gym.spaces.Box(0, 1, (2,)))))
    with pytest.raises(MpgymError, match="Tuple of Discrete"):
        tuple_radix(D(3))
    radix = ((3, 2), (0, 0))
    with pytest.raises(MpgymError, match="outside the space"):
        flatten_tuple((3, 0), radix)
    with pytest.raises(MpgymError, match="the space has 2"):
        flatten_tuple((1, 0, 0), radix)
    with pytest.raises(MpgymError, match="outside 0..5"):
        unflatten_index(6, radix)
    frozen = gym.make("FrozenLake-v1")
    assert discrete_observations(frozen) is frozen


def test_tabular_agents_refuse_non_discrete_members():
    from agents.tabular.q_learning import QLearning

    class Mixed(gym.Env):
        observation_space = gym.spaces.Tuple((D(3), gym.spaces.Box(0, 1, (1,))))
        action_space = D(2)

    with pytest.raises(MpgymError, match="every member is Discrete"):
        QLearning(Mixed())


# -- Blackjack, Sutton & Barto chapter 5 ---------------------------------------------------------
CARDS = {c: (4 if c == 10 else 1) / 13 for c in range(1, 11)}  # infinite deck


def _total(hard: int, ace: bool) -> int:
    return hard + 10 if ace and hard + 10 <= 21 else hard


@functools.cache
def _dealer_final(hard: int, ace: bool) -> tuple[tuple[int, float], ...]:
    """Distribution of the dealer's final score (0: bust), hitting below 17 (soft 17 stands)."""
    if hard > 21:
        return ((0, 1.0),)
    if _total(hard, ace) >= 17:
        return ((_total(hard, ace), 1.0),)
    dist: dict[int, float] = {}
    for card, p in CARDS.items():
        for score, q in _dealer_final(hard + card, ace or card == 1):
            dist[score] = dist.get(score, 0.0) + p * q
    return tuple(dist.items())


@functools.cache
def _v_stick20(hard: int, ace: bool, dealer: int) -> float:
    """Exact value of 'stick on 20 or 21, else hit' without the natural rule (sab=False)."""
    if hard > 21:
        return -1.0
    total = _total(hard, ace)
    if total >= 20:
        final = [(s, p * q) for c, p in CARDS.items()
                 for s, q in _dealer_final(dealer + c, dealer == 1 or c == 1)]
        return sum(pq * ((total > s) - (total < s)) for s, pq in final)
    return sum(p * _v_stick20(hard + c, ace or c == 1, dealer) for c, p in CARDS.items())


def test_mc_prediction_of_the_stick_on_20_policy_matches_its_exact_values():
    """Figure 5.1: with a usable ace, 21 is worth about +0.9 (draws when the dealer makes 21)."""
    from agents.tabular.monte_carlo import MCPrediction, MCPredictionConfig

    env = TupleToDiscrete(gym.make("Blackjack-v1", sab=False))
    player = np.array([env.unflatten(s)[0] for s in range(704)])
    policy = np.where((player >= 20)[:, None], [1.0, 0.0], [0.0, 1.0])  # 0 stick, 1 hit
    config = MCPredictionConfig(env_id="Blackjack-v1", env_kwargs={"sab": False}, seed=0,
                                episodes=20_000, gamma=1.0, step_size="1/n", v_init=0.0)
    agent = MCPrediction(config.env_id, config, policy=policy).learn(progress_bar=False)
    # usable-ace 21 against dealer 2..10: exact 1 - P(dealer makes 21), about 0.88
    exact = np.array([_v_stick20(11, True, d) for d in range(2, 11)])
    states = [env.observation((21, d, 1)) for d in range(2, 11)]
    assert 0.85 < exact.mean() < 0.92
    visits = agent.n_v[states]
    assert visits.sum() > 1000
    estimate = (agent.v[states] * visits).sum() / visits.sum()
    truth = (exact * visits).sum() / visits.sum()
    assert abs(estimate - truth) < 0.04
    # every well-visited state within 4.5 standard errors of its exact value
    for s in np.flatnonzero(agent.n_v >= 100):
        total, dealer, ace = env.unflatten(int(s))
        hard = total - 10 if ace else total
        z = (agent.v[s] - _v_stick20(hard, bool(ace), dealer)) / (1.0 / np.sqrt(agent.n_v[s]))
        assert abs(z) < 4.5, (total, dealer, ace, agent.v[s], agent.n_v[s])


def test_mc_control_runs_on_blackjack_and_predicts_from_tuples(tmp_path):
    from agents.common import evaluate_policy
    from agents.tabular.monte_carlo import MCControl, MCControlConfig, MCExploringStarts

    config = MCControlConfig(env_id="Blackjack-v1", episodes=3000, gamma=1.0, seed=0)
    agent = MCControl(config.env_id, config).learn(progress_bar=False)
    assert agent.q.shape == (704, 2)
    assert agent.predict((20, 10, 0))[0] == agent.predict((20 * 11 + 10) * 2)[0]
    result = evaluate_policy(agent, "Blackjack-v1", 50, seed=1)  # the env's own tuples
    assert -1.0 <= result.mean_return <= 1.0
    agent.save(tmp_path)
    loaded = MCControl.load(tmp_path)
    np.testing.assert_array_equal(loaded.q, agent.q)
    with pytest.raises(MpgymError, match="mc-control"):
        MCExploringStarts("Blackjack-v1")
