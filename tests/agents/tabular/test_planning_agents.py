"""Value and policy iteration as agents: known optimum on FrozenLake, save/load, the CLI path."""

import json

import numpy as np
import pytest

from agents.registry import get_algorithm
from agents.tabular.dp import finite_horizon_evaluation, value_iteration
from agents.tabular.planning import PolicyIteration, ValueIteration
from envs.tabular_model import TabularModel
from mpgym import MpgymError


@pytest.mark.parametrize("cls", [ValueIteration, PolicyIteration], ids=lambda c: c.name)
def test_frozenlake_optimum(cls):
    agent = cls("FrozenLake-v1", cls.Config(gamma=1.0)).learn(progress_bar=False)
    # Slippery 4x4 without a time limit: the optimal success probability from the start is
    # 14/17 (exact; "about 0.82" in the usual write-ups).
    assert agent.values()[0] == pytest.approx(14 / 17, abs=1e-6)
    model = TabularModel.from_env("FrozenLake-v1")
    V_ref, _, _ = value_iteration(model, 1.0, tol=1e-12)
    np.testing.assert_allclose(agent.values(), V_ref, atol=1e-6)
    # the discounted default acts optimally under Gymnasium's 100-step limit: optimum = 0.74
    agent = cls("FrozenLake-v1").learn(progress_bar=False)
    success = finite_horizon_evaluation(model, agent.policy(), 100)[0]
    assert success == pytest.approx(0.74, abs=0.005)
    assert agent.info.converged


@pytest.mark.parametrize("cls", [ValueIteration, PolicyIteration], ids=lambda c: c.name)
def test_save_load_round_trip_with_env_kwargs(cls, tmp_path):
    cfg = cls.Config(env_kwargs={"is_slippery": False}, gamma=0.9)
    agent = cls("FrozenLake-v1", cfg).learn(progress_bar=False)
    assert agent.values()[0] == pytest.approx(0.9 ** 5)  # six deterministic steps, reward 1
    agent.save(tmp_path)
    loaded = cls.load(tmp_path)
    assert loaded.config.env_kwargs == {"is_slippery": False}
    assert loaded.env.unwrapped.spec.kwargs["is_slippery"] is False
    np.testing.assert_array_equal(loaded.values(), agent.values())
    states = np.arange(16)
    np.testing.assert_array_equal(loaded.predict(states)[0], agent.predict(states)[0])


def test_registered_and_trainable_from_the_cli(tmp_path, capsys):
    from mpgym.cli import main

    assert get_algorithm("value-iteration") is ValueIteration
    assert get_algorithm("policy-iteration") is PolicyIteration
    out = tmp_path / "vi"
    assert main(["train", "value-iteration", "--env", "FrozenLake-v1", "--env-kwargs",
                 '{"is_slippery": false}', "--gamma", "0.9", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["env_kwargs"] == {"is_slippery": False}
    assert json.loads((out / "solve.json").read_text())["converged"] is True


def test_env_without_model_is_refused():
    import gymnasium as gym

    class NoModel(gym.Env):
        observation_space = gym.spaces.Discrete(3)
        action_space = gym.spaces.Discrete(2)

    with pytest.raises(MpgymError, match="exposes no model"):
        ValueIteration(NoModel()).learn(progress_bar=False)
