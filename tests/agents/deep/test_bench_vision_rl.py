"""benchmarks/vision_rl.py: SB3's MinAtar network is ours, the NBV wrapper, goals from rows."""


import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("vision_rl")


def test_sb3_minatar_ppo_is_the_preset(bench):
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("minatar")
    from agents.deep.ppo import PPO, PPO_PRESETS

    cfg = PPO_PRESETS["minatar-breakout"]
    ours, theirs = PPO(cfg.env_id, cfg), bench.sb3_minatar_ppo(cfg)
    mine = [p.shape for p in ours.policy.parameters()]
    sb3 = [p.shape for p in theirs.policy.parameters()]
    assert sorted(map(tuple, mine)) == sorted(map(tuple, sb3))
    assert (theirs.n_steps, theirs.batch_size, theirs.n_epochs) == (cfg.n_steps, cfg.batch_size,
                                                                    cfg.n_epochs)
    assert theirs.policy.optimizer.defaults["eps"] == ours.optimizer.defaults["eps"]
    # the same weights give the same features: transpose and bool -> float as ours
    src = [m for m in ours.policy.features.cnn if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    dst = [m for m in theirs.policy.features_extractor.cnn
           if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    for a, b in zip(src, dst, strict=True):
        b.load_state_dict(a.state_dict())
    obs = np.random.default_rng(0).random((3, 10, 10, 4)) < 0.3
    with torch.no_grad():
        want = ours.policy.features(torch.from_numpy(ours.preprocess(obs)))
        got = theirs.policy.features_extractor(torch.as_tensor(obs).float())
    torch.testing.assert_close(got, want)


def test_nbv_wrapper_ends_at_the_budget(bench):
    pytest.importorskip("open3d")
    import gymnasium as gym

    import envs  # noqa: F401

    env = bench.NBVTraining(gym.make("mpgym/NextBestView-v0", shapes="sphere",
                                     config={**bench.NBV_CONFIG, "n_points": 256}))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    ends = [env.step(v)[2:4] for v in range(bench.NBV_CONFIG["budget"])]
    assert ends[-1] == (True, False) and not any(t for t, _ in ends[:-1])


def test_goals_from_rows(bench):
    rows = [{"part": "dqn-minatar", "run": f"dqn-s{s}", "seed": s, "timesteps": 10,
             "budget": 10, "last100_return": r, "paper": 10.0} for s, r in ((1, 9.0), (2, 12.0))]
    rows += [{"part": "dqn-minatar", "run": "dqn-s3", "seed": 3, "timesteps": 5, "budget": 10,
              "last100_return": 0.0, "paper": 10.0}]  # unfinished: not counted
    rows += [{"part": "ppo-speed", "run": f"{lib}{s}", "lib": lib, "seed": s, "wall_s": w}
             for lib, s, w in (("mpgym", 1, 4.0), ("sb3", 1, 10.0), ("mpgym", 2, 100.0))]
    rows += [{"part": "nbv", "run": "nbv-ppo-s1", "seed": 1, "timesteps": 1, "budget": 1,
              "coverage_5views": 0.88}]
    rows += [{"part": "nbv", "run": f"nbv-{p}", "policy": p, "coverage_5views": c}
             for p, c in (("random", 0.7), ("greedy", 0.9))]
    goals = {g.name: g for g in bench.goals_of(rows)}
    assert goals["dqn_minatar_breakout_vs_paper"].value == pytest.approx(1.05)
    assert goals["ppo_minatar_wall_ratio_vs_sb3"].value == pytest.approx(0.4)
    assert goals["nbv_coverage_5views_vs_greedy"].value == pytest.approx(0.88 / 0.9)
    assert goals["nbv_coverage_5views_minus_random"].value == pytest.approx(0.18)
    assert all(g.met for g in goals.values())


def test_a_run_continues_from_its_snapshot_as_from_its_folder(bench, tmp_path):
    # a clone without runs/: the committed snapshot gives the same agent, buffer included
    import dataclasses

    from agents.deep.dqn import DQN, DQNConfig

    cfg = dataclasses.replace(DQNConfig(), hidden=(8,), buffer_size=300, learning_starts=50,
                              total_timesteps=400)
    run, snap = tmp_path / "runs" / "dqn-s1", tmp_path / "results" / "dqn-s1.tar.xz"
    agent = bench._open_run(DQN, run, lambda: DQN("CartPole-v1", cfg), snapshot=snap)
    state = bench.train_chunks(agent, run, total=400, chunk=200, hours=1.0, lock=None,
                               evaluate=lambda a: {}, include_buffer=True, snapshot=snap)
    assert [c["timesteps"] for c in state["chunks"]] == [200, 400] and snap.is_file()
    agent.env.close()
    clone = bench._open_run(DQN, tmp_path / "clone" / "dqn-s1", lambda: None, snapshot=snap)
    assert clone.num_timesteps == 400 and len(clone.buffer) == 300
    np.testing.assert_array_equal(clone.buffer.obs, agent.buffer.obs)
    obs = np.zeros((5, 4), np.float32)
    np.testing.assert_array_equal(clone.predict(obs, deterministic=True)[0],
                                  agent.predict(obs, deterministic=True)[0])
    clone.env.close()


def test_the_best_check_is_kept_and_travels_with_the_snapshot(bench, tmp_path):
    import dataclasses

    from agents.deep.ppo import PPO

    cfg = dataclasses.replace(PPO.PRESETS["CartPole-v1"], n_envs=2, n_steps=16,
                              vectorization="sync")
    run, snap = tmp_path / "runs" / "ppo-s1", tmp_path / "results" / "ppo-s1.tar.xz"
    agent = bench._open_run(PPO, run, lambda: PPO("CartPole-v1", cfg), snapshot=snap)
    scores = iter([0.5, 0.9, 0.7])
    state = bench.train_chunks(agent, run, total=96, chunk=32, hours=1.0, lock=None,
                               evaluate=lambda a: {"score": next(scores)}, snapshot=snap,
                               keep_best="score")
    second = state["chunks"][1]["timesteps"]
    assert len(state["chunks"]) == 3 and state["best"] == {"timesteps": second, "score": 0.9}
    assert PPO.load(run / "best").num_timesteps == second < agent.num_timesteps
    agent.close()
    clone = tmp_path / "clone" / "ppo-s1"
    bench._open_run(PPO, clone, lambda: None, snapshot=snap).close()
    kept = PPO.load(clone / "best")
    assert kept.num_timesteps == second
    for a, b in zip(kept.policy.parameters(), PPO.load(run / "best").policy.parameters(),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
