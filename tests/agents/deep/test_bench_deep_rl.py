"""benchmarks/deep_rl_vs_sb3.py: like-for-like configs, held-out seeds, goals from rows."""


import pytest
import torch


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("deep_rl_vs_sb3")


def _widths(net: torch.nn.Module) -> list[int]:
    return [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]


def test_dqn_zoo_config_is_sb3s(bench):
    pytest.importorskip("stable_baselines3")
    from agents.deep.dqn import DQN

    ours = DQN("CartPole-v1", bench.zoo_mpgym("dqn", "CartPole-v1"))
    theirs = bench.zoo_sb3("dqn", "CartPole-v1", seed=0)
    c = ours.config
    assert c.learning_rate == theirs.learning_rate and c.lr_schedule == "constant"
    for name in ("batch_size", "buffer_size", "learning_starts", "gamma", "gradient_steps",
                 "exploration_fraction", "exploration_initial_eps", "exploration_final_eps",
                 "max_grad_norm", "tau"):
        assert getattr(c, name) == getattr(theirs, name), name
    assert c.train_freq == theirs.train_freq.frequency
    # SB3 copies the target every 10 env steps during collection, when the online net is
    # fixed: once per round of gradient_steps, as target_update_interval=gradient_steps does.
    assert theirs.target_update_interval < theirs.train_freq.frequency
    assert c.target_update_interval == c.gradient_steps
    assert not c.double_dqn and not c.dueling and c.loss == "huber"
    assert _widths(ours.q) == _widths(theirs.q_net) == [256, 256, 2]
    assert type(ours.optimizer) is type(theirs.policy.optimizer) is torch.optim.Adam
    assert ours.optimizer.defaults["eps"] == theirs.policy.optimizer.defaults["eps"]


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_onpolicy_zoo_config_is_sb3s(bench, algo):
    pytest.importorskip("stable_baselines3")
    from agents.registry import get_algorithm

    ours = get_algorithm(algo)("CartPole-v1", bench.zoo_mpgym(algo, "CartPole-v1"))
    theirs = bench.zoo_sb3(algo, "CartPole-v1", seed=0)
    c = ours.config
    assert c.n_envs == theirs.n_envs == 8 and c.vectorization == "sync"
    for name in ("n_steps", "gamma", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm",
                 "normalize_advantage"):
        assert getattr(c, name) == getattr(theirs, name), name
    for p in (1.0, 0.5):  # schedules: value at the start and half way
        lr = c.learning_rate * (p if c.lr_schedule == "linear" else 1.0)
        assert lr == pytest.approx(theirs.lr_schedule(p))
    if algo == "ppo":
        assert (c.batch_size, c.n_epochs) == (theirs.batch_size, theirs.n_epochs)
        assert c.clip_range * p == pytest.approx(theirs.clip_range(p))
        assert c.clip_schedule == "linear" and theirs.target_kl is None and c.target_kl is None
    assert _widths(ours.policy.actor) == _widths(theirs.policy.mlp_extractor.policy_net) + [2]
    assert _widths(ours.policy.critic) == _widths(theirs.policy.mlp_extractor.value_net) + [1]
    # the same update rule: torch's class, or FusedRMSprop (a subclass, the same arithmetic)
    assert isinstance(ours.optimizer, type(theirs.policy.optimizer))
    for key in ("eps", "alpha", "centered", "momentum", "weight_decay"):
        assert ours.optimizer.defaults.get(key) == theirs.policy.optimizer.defaults.get(key)


def test_heldout_seeds_are_not_the_tuning_seeds(bench):
    tuning = {0, 1, 2, 3, 4}  # the CartPole defaults were chosen on these
    held = {s["seed"] for s in bench.plan("solved-seeds", quick=False)}
    extras = {s["seed"] for s in bench.plan("extras", quick=False)}
    assert held == set(range(5, 15)) and extras == set(range(5, 10))
    assert not (held | extras) & tuning
    timing = bench.plan("ppo", quick=False)
    assert {(s["lib"], s["hparams"]) for s in timing} == {("mpgym", "own"), ("mpgym", "zoo"),
                                                          ("sb3", "zoo")}
    assert all(s["timing"] for s in timing) and not any(
        s["timing"] for s in bench.plan("extras", quick=False))


def test_goals_from_rows(bench):
    def row(lib, hparams, seed, wall, ret=500.0, algo="dqn", env="CartPole-v1", timing=True):
        return {"lib": lib, "hparams": hparams, "seed": seed, "wall_s": wall, "algo": algo,
                "env": env, "final_return": ret, "timing_lock": timing}

    rows = [row("sb3", "zoo", s, w) for s, w in ((0, 10.0), (1, 30.0), (2, 20.0))]
    rows += [row("mpgym", "own", s, w) for s, w in ((0, 4.0), (1, 6.0), (2, 5.0))]
    rows += [row("mpgym", "zoo", s, w) for s, w in ((0, 13.0), (1, 12.0), (2, 11.0))]
    rows += [row("mpgym", "own", 3, 100.0)]  # seed 3 has no SB3 run yet: not in the ratio
    rows += [row("mpgym", "own", s, 1.0, ret=400.0 if s == 7 else 500.0, timing=False)
             for s in range(5, 15)]
    rows += [row("mpgym", "own", s, 1.0, ret=r, algo="ppo", env="Pendulum-v1", timing=False)
             for s, r in zip(range(5, 10), (-150.0, -300.0, -200.0, -900.0, -240.0), strict=True)]
    goals = {g.name: g for g in bench.goals_of(rows)}
    assert goals["dqn_wall_ratio_vs_sb3"].value == pytest.approx(5.0 / 20.0)
    assert goals["dqn_wall_ratio_same_hparams"].value == pytest.approx(12.0 / 20.0)
    assert goals["dqn_wall_ratio_same_hparams"].met  # <= 0.6
    assert goals["dqn_solved_heldout_seeds"].value == 9.0 and goals["dqn_solved_heldout_seeds"].met
    assert goals["ppo_pendulum_return_median"].value == -240.0
    assert "dqn_acrobot_return_median" not in goals  # no rows, no goal


def test_merge_keeps_each_run_once(bench, tmp_path):
    import json

    def row(seed, ret):
        return {"lib": "mpgym", "algo": "ppo", "env": "Pendulum-v1", "seed": seed,
                "steps": 100_000, "hparams": "own", "final_return": ret}

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "extras.json").write_text(json.dumps({"rows": [row(5, -180.0), row(6, -150.0)]}))
    (b / "extras.json").write_text(json.dumps({"rows": [row(6, -999.0), row(8, -170.0)]}))
    rows = bench.merge_rows([a, b])
    assert sorted((r["seed"], r["final_return"]) for r in rows) == [
        (5, -180.0), (6, -150.0), (8, -170.0)]
