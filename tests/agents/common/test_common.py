import doctest

import gymnasium as gym
import numpy as np
import pytest

import agents.common.schedules as schedules
from agents.common import (
    Schedule,
    evaluate_policy,
    keep_going,
    linear_schedule,
    make_env,
    plot_learning_curve,
    read_metrics,
    visit_step_size,
)
from mpgym import MpgymError, RunDir


def test_schedule_docstring_examples():
    assert doctest.testmod(schedules).failed == 0


@pytest.mark.parametrize("t, expected", [(0, 1.0), (5, 0.55), (10, 0.1), (1000, 0.1)])
def test_linear_schedule_matches_cleanrl(t, expected):
    assert linear_schedule(1.0, 0.1, 10, t) == pytest.approx(expected)
    assert Schedule(1.0, 0.1, 10, "linear")(t) == pytest.approx(expected)


def test_exponential_and_constant_schedules():
    s = Schedule(1.0, 0.01, 100, "exponential")
    assert [s(0), s(50), s(100), s(500)] == pytest.approx([1.0, 0.1, 0.01, 0.01])
    assert Schedule(0.3)(10**6) == 0.3
    with pytest.raises(MpgymError, match="positive start and end"):
        Schedule(1.0, 0.0, 10, "exponential")(3)


def test_visit_step_size_is_sample_average():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    est = 0.0
    for n, xi in enumerate(x, start=1):
        est += visit_step_size(n) * (xi - est)
    assert est == pytest.approx(x.mean())
    np.testing.assert_allclose(visit_step_size(np.array([1, 4, 0]), 0.5), [1.0, 0.5, 1.0])


def test_keep_going_semantics():
    assert keep_going(None, {}) and keep_going(lambda _: None, {}) and keep_going(lambda _: 1, {})
    assert not keep_going(lambda _: False, {})


def test_make_env_errors_and_passthrough():
    env = gym.make("FrozenLake-v1")
    assert make_env(env) is env
    assert make_env("mpgym/RandomWalk-v0").observation_space.n == 7
    with pytest.raises(MpgymError, match="Did you mean: Taxi-v4"):
        make_env("Taxi-v5")
    with pytest.raises(MpgymError, match="id string or a gymnasium.Env"):
        make_env(42)


def test_evaluate_policy_with_function_agent_and_returns():
    # Always RIGHT on the random walk: every episode returns +1 after 3 steps.
    result = evaluate_policy(lambda obs: 1, "mpgym/RandomWalk-v0", 4, seed=0)
    assert result.returns.tolist() == [1.0] * 4 and result.lengths.tolist() == [3] * 4
    assert result.summary()["success_rate"] == 1.0
    result = evaluate_policy(lambda obs: (0, None), "mpgym/RandomWalk-v0", 2, seed=0, render=True)
    assert result.mean_return == 0.0 and len(result.frames) == 4
    with pytest.raises(MpgymError, match="predict"):
        evaluate_policy(object(), "mpgym/RandomWalk-v0", 1)
    with pytest.raises(MpgymError, match="n_episodes"):
        evaluate_policy(lambda o: 0, "mpgym/RandomWalk-v0", 0)


def test_plot_learning_curve_from_run_and_rows(tmp_path):
    run = RunDir(tmp_path / "r")
    for i in range(30):
        run.metrics.log(episode=i + 1, timestep=10 * (i + 1), **{"return": float(i)})
    png = plot_learning_curve(run, hlines={"optimum": 29.0})
    assert png == tmp_path / "r" / "learning_curve.png" and png.stat().st_size > 1000
    rows = read_metrics(run)
    assert len(rows) == 30
    assert plot_learning_curve(rows, tmp_path / "x.png", x="episode").exists()
    with pytest.raises(MpgymError, match="needs `path`"):
        plot_learning_curve(rows)
    with pytest.raises(MpgymError, match="no metrics"):
        read_metrics(tmp_path / "nothing")
