"""mpgym/NextBestView-v0 and the depth fusion under it (neural3d.fusion)."""

import warnings

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs.nbv import FarthestView, GreedyOracle, NextBestViewEnv, RandomViews, mean_coverage
from mpgym.errors import MpgymError
from neural3d import fusion
from neural3d._fusion_reference import fuse_rays_reference

SMALL = {"n_views": 12, "image_size": 16, "grid_size": 12, "n_points": 512, "budget": 6}
"""A small configuration: the sphere's ground truth takes milliseconds."""


def small_env(shapes="sphere", **overrides):
    return NextBestViewEnv(shapes, config={**SMALL, **overrides})


def test_traverse_rays_docstring_example_and_a_diagonal():
    ray, vox = fusion.traverse_rays(np.array([[-1.0, 0.1, 0.1]]), np.array([[1.0, 0.0, 0.0]]),
                                    np.array([np.inf]), 0.0, 1.0, 2)
    assert ray.tolist() == [0, 0] and vox.tolist() == [0, 4]
    # stopping inside the first voxel: only that one; a miss of the cube: none
    _, vox = fusion.traverse_rays(np.array([[-1.0, 0.1, 0.1]]), np.array([[1.0, 0.0, 0.0]]),
                                  np.array([1.2]), 0.0, 1.0, 2)
    assert vox.tolist() == [0]
    _, vox = fusion.traverse_rays(np.array([[-1.0, 2.0, 0.1]]), np.array([[1.0, 0.0, 0.0]]),
                                  np.array([np.inf]), 0.0, 1.0, 2)
    assert vox.size == 0


def test_fuse_rays_matches_brute_force_on_random_rays():
    # rays from inside and outside the grid, some parallel to the axes, ending anywhere or never
    rng = np.random.default_rng(0)
    n = 300
    o = rng.uniform(-1.0, 1.0, (n, 3))
    d = rng.normal(size=(n, 3))
    d[np.arange(40), rng.integers(0, 3, 40)] = 0.0  # parallel to one axis
    d[40:60] = np.eye(3)[rng.integers(0, 3, 20)] * rng.choice([-1, 1], (20, 1))
    t = np.where(rng.random(n) < 0.3, np.inf, rng.uniform(0.0, 2.0, n))
    free, occupied = fusion.fuse_rays(o, d, t, -0.5, 0.5, 6)
    ref = fuse_rays_reference(o, d, t, -0.5, 0.5, 6)
    np.testing.assert_array_equal(fusion.grid_labels(free, occupied), ref)
    assert {0, 1, 2} <= set(np.unique(ref).tolist())


def test_fused_grid_matches_brute_force_slab_tests_on_a_sphere():
    # Criterion: every voxel of the env's fused grid has exactly the label the brute-force
    # reference gives (occupied: a hit point inside the voxel; free: some ray segment from the
    # camera to its hit overlaps the voxel's box along a piece longer than 1e-9 voxel sides).
    env = small_env()
    obs, _ = env.reset(seed=0)
    views = [0, 5, 9]
    for v in views:
        obs, *_ = env.step(v)
    o = env._ray_o[views].reshape(-1, 3)
    d = env._ray_d[views].reshape(-1, 3)
    t = env.shape.cast(o, d)
    ref = fuse_rays_reference(o, d, t, -0.55, 0.55, SMALL["grid_size"])
    np.testing.assert_array_equal(obs["grid"], ref)
    assert {0, 1, 2} <= set(np.unique(ref).tolist())


def test_fused_labels_agree_with_the_analytic_sphere():
    g, n = 16, SMALL["n_views"]
    env = small_env(grid_size=g, budget=n, coverage_threshold=1.0)
    env.reset(seed=0)
    for v in range(n):
        obs, *_ = env.step(v)
    h = 1.1 / g
    idx = np.stack(np.meshgrid(*[np.arange(g)] * 3, indexing="ij"), -1).reshape(-1, 3)
    lo = -0.55 + h * idx  # (G^3, 3) lower corners, in the grid's flat order
    corners = np.stack([lo + h * np.array(c) for c in np.ndindex(2, 2, 2)])
    r_max = np.linalg.norm(corners, axis=-1).max(0)  # farthest point of each box
    r_min = np.linalg.norm(np.clip(0.0, lo, lo + h), axis=-1)  # nearest point of each box
    radius, slack = 0.5, 0.01  # the normalised sphere, meshed by marching cubes at 64^3
    labels = obs["grid"].reshape(-1)
    occ = labels == fusion.OCCUPIED
    assert occ.any() and (labels == fusion.FREE).any()
    assert ((r_min[occ] <= radius + slack) & (r_max[occ] >= radius - slack)).all()
    assert (labels[r_max < radius - slack] == fusion.UNKNOWN).all()  # no ray enters the solid


def test_point_visibility_on_a_sphere_is_the_visible_cap():
    env = small_env(n_points=2048)
    env.reset(seed=0)
    p = env.shape.points / np.linalg.norm(env.shape.points, axis=1, keepdims=True)
    cos = p @ env.view_directions.T  # (P, V): the cap seen from distance 2 is cos >= 0.25
    vis = env.shape.visibility.T
    assert (cos[vis] >= 0.2).all()
    assert vis[cos > 0.3].mean() > 0.995


def test_rewards_sum_to_the_final_coverage_and_revisits_earn_nothing():
    env = small_env(coverage_threshold=1.0)
    obs, info = env.reset(seed=1)
    assert info["coverage"] == 0.0 and info["observable"] == 1.0
    policy, total, last = RandomViews(env, seed=0), 0.0, 0.0
    for _ in range(SMALL["budget"] - 1):
        obs, r, terminated, truncated, info = env.step(policy.predict(obs)[0])
        total += r
        assert info["coverage"] >= last and r >= 0
        last = info["coverage"]
    obs, r, terminated, truncated, info = env.step(env.history[0])  # a revisit
    assert r == 0.0 and truncated and not terminated
    assert total == pytest.approx(info["coverage"], abs=1e-12)
    assert obs["visited"].sum() == SMALL["budget"] - 1
    assert info["action_mask"].tolist() == (1 - obs["visited"]).tolist()


def test_coverage_threshold_terminates():
    env = small_env(coverage_threshold=0.3)
    env.reset(seed=0)
    _, r, terminated, truncated, info = env.step(0)
    assert terminated and not truncated and info["is_success"] and info["coverage"] >= 0.3


def test_greedy_oracle_covers_at_least_as_much_as_random_and_farthest():
    env = NextBestViewEnv("procedural", split="test",
                          config={**SMALL, "n_views": 24, "coverage_threshold": 1.0})
    k, n = 3, 4
    greedy = mean_coverage(env, GreedyOracle(env), n, views=k, shapes="in_order")
    random = mean_coverage(env, RandomViews(env, seed=0), n, views=k, shapes="in_order")
    farthest = mean_coverage(env, FarthestView(env, seed=0), n, views=k, shapes="in_order")
    assert greedy >= random and greedy >= farthest
    assert 0 < random <= 1


@pytest.mark.parametrize("overrides", [{}, {"grid_encoding": "onehot", "depth": "last",
                                            "first_view": "random"}])
def test_gymnasium_and_sb3_env_checkers_pass(overrides):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("mpgym/NextBestView-v0", shapes="sphere", config={**SMALL, **overrides},
                   render_mode="rgb_array").unwrapped
    check_env(env, skip_render_check=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3's advice on non-image 3D boxes
        sb3_check_env(env, warn=True)


def test_registered_id_and_render():
    env = gym.make("mpgym/NextBestView-v0", shapes="torus", config=SMALL,
                   render_mode="rgb_array")
    env.reset(seed=0)
    before = env.render()
    env.step(3)
    after = env.render()
    assert before.shape == after.shape == (320, 320, 3) and before.dtype == np.uint8
    assert not np.array_equal(before, after)


def test_same_seed_same_episode():
    def rollout():
        env = NextBestViewEnv("procedural", config={**SMALL, "first_view": "random"})
        obs, info = env.reset(seed=7)
        policy, out = RandomViews(env, seed=3), [(info["shape"], obs["grid"].copy())]
        for _ in range(3):
            obs, r, *_ = env.step(policy.predict(obs)[0])
            out.append((r, obs["grid"].copy()))
        return out, env.history

    (a, ha), (b, hb) = rollout(), rollout()
    assert ha == hb and a[0][0] == b[0][0]
    for (x, gx), (y, gy) in zip(a, b, strict=True):
        assert x == y and np.array_equal(gx, gy)


def test_bad_input_is_refused_before_any_work(tmp_path, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr(fusion, "MeshRayCaster", no_work)
    broken = tmp_path / "broken.obj"
    broken.write_text("v 0 0 0\nv nan 1 0\nf 1 2 3\n")
    with pytest.raises(MpgymError, match=r"broken\.obj.*accepted"):
        NextBestViewEnv(str(broken))
    with pytest.raises(MpgymError, match=r"budget 10 is larger than the 6 views.*at most"):
        NextBestViewEnv("sphere", config={"n_views": 6})
    with pytest.raises(MpgymError, match=r"unknown split 'dev'; accepted: train, val, test"):
        NextBestViewEnv("procedural", split="dev")
    with pytest.raises(MpgymError, match=r"unknown shapes 'teapot'; accepted: procedural"):
        NextBestViewEnv("teapot")
    with pytest.raises(MpgymError, match="unknown keys views; accepted: n_views"):
        NextBestViewEnv("sphere", config={"views": 6})


def test_bad_actions_and_options():
    env = small_env()
    env.reset(seed=0)
    for bad in (SMALL["n_views"], -1, 1.5, "2"):
        with pytest.raises(MpgymError, match="view index"):
            env.step(bad)
    with pytest.raises(MpgymError, match="options\\['shape'\\]"):
        env.reset(options={"shape": 5})
    with pytest.raises(MpgymError, match="budget"):
        mean_coverage(env, GreedyOracle(env), 1, views=SMALL["budget"] + 1)


def test_random_draws_skip_a_shape_that_cannot_be_read():
    env = NextBestViewEnv("procedural", config=SMALL)
    refs = env._refs
    bad = refs[1]

    def unreadable():
        raise MpgymError("empty.obj holds no triangles")

    env._refs = [refs[0], type(bad)(bad.name, bad.position, unreadable)]
    names = {env.reset(seed=s)[1]["shape"] for s in range(12)}
    assert names == {refs[0].name}  # a draw of the unreadable shape draws again
    assert list(env.unusable) == [bad.name] and "no triangles" in env.unusable[bad.name]
    with pytest.raises(MpgymError, match="no triangles"):  # asked for by index: refused
        env.reset(options={"shape": 1})
    env._refs = [env._refs[1]]
    with pytest.raises(MpgymError, match="no shape of the 'train' split can be used"):
        env.reset(seed=0)
