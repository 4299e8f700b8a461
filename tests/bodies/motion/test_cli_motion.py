"""``mpgym motion``: train, sample and eval a real run; bad input is one line, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mpgym.cli import main


@pytest.fixture(scope="module")
def genmm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("motion")
    assert main(["motion", "train", "genmm", "--preset", "tiny", "--out", str(out)]) == 0
    return out / "genmm-tiny"


def test_train_writes_a_loadable_run_with_a_preview(genmm_run):
    cfg = json.loads((genmm_run / "config.json").read_text())
    assert cfg["kind"] == "motion-genmm" and cfg["generator"] == "genmm"
    assert (genmm_run / "model.safetensors").is_file()
    assert (genmm_run / "sample-walk.gif").is_file()


def test_sample_writes_gif_npz_and_bvh_that_load_back(genmm_run, tmp_path):
    from bodies.motion.bvh import load_bvh
    from bodies.motion.dataset import load_amass

    gif, npz, bvh = tmp_path / "w.gif", tmp_path / "w.npz", tmp_path / "w.bvh"
    argv = ["motion", "sample", str(genmm_run), "--label", "jump", "--seconds", "2",
            "-o", str(gif), "--npz", str(npz), "--bvh", str(bvh), "--no-compare"]
    assert main(argv) == 0
    a, b = load_amass(npz), load_bvh(bvh)
    assert len(a) == len(b) == 60 and a.fps == 30
    np.testing.assert_allclose(a.transl, b.transl, atol=1e-5)
    np.testing.assert_allclose(a.body_pose, b.body_pose, atol=1e-4)
    assert gif.stat().st_size > 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--label", "moonwalk", "--npz", "x.npz"], "unknown label 'moonwalk'"),
        (["--seconds", "0", "--npz", "x.npz"], "--seconds must be in"),
        (["--seconds", "nan", "--npz", "x.npz"], "--seconds must be a finite number"),
        (["-o", "x.png"], "-o writes a .gif file"),
        (["--npz", "x.txt"], "--npz writes a .npz file"),
        ([], "nothing to write"),
    ],
)
def test_sample_refusals(genmm_run, tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    assert main(["motion", "sample", str(genmm_run), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_unknown_generator_and_non_motion_run(tmp_path, capsys):
    assert main(["motion", "train", "vae"]) == 2
    assert "unknown motion generator 'vae'; accepted: mdm, mvae, genmm" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"kind": "dqn"}))
    assert main(["motion", "sample", str(tmp_path), "--npz", str(tmp_path / "a.npz")]) == 2
    assert "is not a motion run" in capsys.readouterr().err


def test_eval_scores_the_run_against_the_heldout_windows(genmm_run, tmp_path):
    out = tmp_path / "scores.json"
    assert main(["motion", "eval", str(genmm_run), "--per-label", "2", "--json", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["n_generated"] == 4 * 54  # REPEATS per held-out window
    assert 0 <= s["recognition_accuracy"] <= 1 and s["fd"] > 0 and s["fd_floor"] > 0
    # motion matching copies patches of the examples: nearer the training windows than held-out
    assert s["novelty"] < 1.0
