"""``benchmarks/splat.py --part tune``: refusals, a tiny run scored on val views only, merging."""

import dataclasses
import json
import math

import numpy as np
import pytest

from mpgym import MpgymError
from neural3d.cameras import Intrinsics, sphere_poses
from neural3d.data.multiview import NERF_SYNTHETIC_ANGLE, load_split, write_split


@pytest.fixture
def bench(load_benchmark):
    return load_benchmark("splat")


@pytest.fixture
def disc(tmp_path, disc_rgba):
    """A NeRF-synthetic folder with train and val views only (16x16): a tuning run that
    rendered a test view would fail on it."""
    root = tmp_path / "disc"
    intr = Intrinsics.from_fov(NERF_SYNTHETIC_ANGLE, 16)
    img = disc_rgba
    poses = sphere_poses(6, 4.0, rng=np.random.default_rng(0))
    write_split(root, "train", np.repeat(img[None], 4, 0), poses[:4], intr)
    write_split(root, "val", np.repeat(img[None], 2, 0), poses[4:], intr)
    return root


@pytest.mark.parametrize("argv, mentions", [
    (["--part", "tune", "--tune-seed", "0"], "--tune-seed must be a whole number >= 1"),
    (["--part", "tune", "--set", "seed=3"], "--set 'seed=3'"),
    (["--part", "tune", "--set", "no_such=1"], "accepted: "),
    (["--part", "tune", "speed"], "--part tune runs alone"),
    (["--part", "train", "--set", "sh_degree=1"], "--set goes with --part tune"),
])
def test_tune_refuses_bad_options(bench, capsys, argv, mentions):
    with pytest.raises(SystemExit) as e:
        bench.parse_args(argv)
    assert e.value.code == 2
    assert mentions in capsys.readouterr().err


def test_tune_is_not_a_default_part(bench):
    assert "tune" not in bench.parse_args([]).parts


def test_a_tuning_run_is_scored_on_the_val_views_and_merged(bench, disc, tmp_path, monkeypatch):
    scored = []  # (views scored, first view's pose) per call
    score_views = bench.score_views

    def spy(model, data, targets, **kw):
        scored.append((len(targets), np.asarray(data.c2w[0]).tolist()))
        return score_views(model, data, targets, **kw)

    monkeypatch.setattr(bench, "score_views", spy)
    overrides = {"init_points": 200, "backend": "torch", "sh_degree": 1}
    run = bench.splat_tune_part(disc, overrides=overrides, seed=2, seconds=0.4, threads=1)
    assert run["val_views"] == 2 and run["seed"] == 2 and run["overrides"] == overrides
    curve = run["curve"]
    assert [c["s"] for c in curve] == pytest.approx([0.04, 0.1, 0.2, 0.3, 0.4])
    steps = [c["step"] for c in curve]
    assert steps == sorted(steps) and steps[-1] >= 1
    assert all(math.isfinite(c["val_psnr"]) and c["gaussians"] >= 1 for c in curve)
    # each snapshot: the 2 val views, then the first training views (all 4 of the fixture's)
    assert all(math.isfinite(c["train_psnr"]) for c in curve)
    assert [n for n, _ in scored] == [2, 4] * len(curve)
    np.testing.assert_allclose(scored[0][1], load_split(disc, "val").c2w[0])
    np.testing.assert_allclose(scored[1][1], load_split(disc, "train").c2w[0])

    study = tmp_path / "study.json"
    name = bench.tune_run_name(overrides, 2)
    assert name == 'backend="torch",init_points=200,sh_degree=1 s2'
    bench.write_tune_run(study, name, run)
    bench.write_tune_run(study, bench.tune_run_name({}, 2), run)
    runs = json.loads(study.read_text())["runs"]
    assert set(runs) == {name, "preset s2"}
    assert runs[name]["curve"] == curve
    # a name may be measured again with its config, not reused for another (a changed preset)
    config = dataclasses.asdict(bench.tune_config(overrides, 2, 0.4, 1))
    bench.check_tune_name(study, name, config)
    bench.check_tune_name(study, bench.tune_run_name({}, 3), config)  # not in the study
    with pytest.raises(MpgymError, match="already holds run 'preset s2'"):
        bench.check_tune_name(study, "preset s2", {**config, "sh_degree": 3})
    del runs[name]["config"]  # written before runs recorded their config
    study.write_text(json.dumps({"runs": runs}))
    with pytest.raises(MpgymError, match="--set KEY=VALUE"):
        bench.check_tune_name(study, name, config)

    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"rows": []}))
    with pytest.raises(MpgymError, match="not a tuning study"):
        bench.write_tune_run(foreign, name, run)
    assert json.loads(foreign.read_text()) == {"rows": []}
