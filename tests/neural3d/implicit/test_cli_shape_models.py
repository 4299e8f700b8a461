"""``mpgym shapes train|sample|eval`` on a tiny fake collection: refusals first, then tiny runs."""

import json

import pytest

from mpgym.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """20 primitive meshes (16/2/2), sparsely sampled; returns the prepared cache folder."""
    import trimesh

    from neural3d.data.collections import CollectionConfig, prepare_collection

    root = tmp_path_factory.mktemp("fake")
    (root / "meshes").mkdir()
    for i in range(20):
        m = [
            trimesh.creation.box(extents=(1, 0.5 + 0.02 * i, 0.6)),
            trimesh.creation.icosphere(2, 0.5),
            trimesh.creation.cylinder(0.3, 1.0 + 0.01 * i, sections=24),
            trimesh.creation.capsule(0.8, 0.25),
        ][i % 4]
        m.export(root / "meshes" / f"shape{i:02d}.obj")
    cfg = CollectionConfig(n_surface=2048, n_sdf=2000, n_occupancy=3000)
    coll = prepare_collection(str(root / "meshes"), cfg, cache_dir=root / "cache",
                              progress_bar=False)
    return coll.root


def _run(argv, capsys):
    code = cli_main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def _refused(argv, capsys, *words):
    code, _, err = _run(argv, capsys)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def test_bad_input_is_refused_before_any_work(fake, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(["shapes", "train", "nerf"], capsys, "unknown shape model", "occnet")
    _refused(["shapes", "train", "occnet", "--preset", "huge"], capsys, "planes-cpu")
    _refused(["shapes", "train", "occnet", "--cache", str(tmp_path / "none")], capsys,
             "no prepared pybullet collection", "mpgym shapes prepare")
    _refused(["shapes", "train", "gan", "--resume", "--out", "x"], capsys, "cannot be resumed")
    _refused(["shapes", "train", "occnet", "--resume"], capsys, "--out")
    _refused(["shapes", "train", "prior", "--collection", str(fake)], capsys, "--codes-from")
    _refused(["shapes", "train", "occnet", "--model.resolution", "36", "--model.encoder",
              "planes", "--collection", str(fake)], capsys, "halved")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"kind": "igr"}))
    _refused(["shapes", "eval", str(other)], capsys, "'igr'", "shapes-occnet")
    _refused(["shapes", "sample", str(other)], capsys, "not a shape model")
    _refused(["shapes", "train", "occnet", "--out", str(other), "--collection", str(fake)],
             capsys, "already holds")
    _refused(["shapes", "eval", str(tmp_path / "missing")], capsys, "no config.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]  # nothing written


def test_occnet_trains_resumes_evaluates_and_samples(fake, tmp_path, capsys):
    run = tmp_path / "occ"
    base = ["shapes", "train", "occnet", "--preset", "planes-tiny", "--out", str(run)]
    code, out, err = _run([*base, "--collection", str(fake), "--model.iterations", "10"], capsys)
    assert code == 0, err
    assert "10 steps" in out and (run / "trainer.pt").is_file()
    code, out, err = _run([*base, "--resume", "--model.iterations", "20"], capsys)
    assert code == 0 and "20 steps" in out, err
    _refused([*base, "--resume", "--model.lr", "0.1"], capsys, "lr")
    _refused(["shapes", "train", "deepsdf", "--out", str(run), "--resume"], capsys,
             "holds a occnet run")
    code, out, err = _run(["shapes", "eval", str(run), "--points", "300"], capsys)
    assert code == 0, err
    scores = json.loads((run / "eval-test.json").read_text())
    assert scores["model"] == "occnet" and scores["shapes"] == 2 and 0 <= scores["iou"] <= 1
    code, out, err = _run(["shapes", "sample", str(run), "-n", "2"], capsys)
    assert code == 0, err
    assert (run / "samples" / "samples.png").is_file()


@pytest.mark.slow
def test_deepsdf_prior_and_gan_runs(fake, tmp_path, capsys):
    ds, prior, gan = tmp_path / "ds", tmp_path / "prior", tmp_path / "gan"
    common = ["--collection", str(fake), "--preset", "tiny"]
    code, _, err = _run(["shapes", "train", "deepsdf", "--out", str(ds), *common,
                         "--model.iterations", "60"], capsys)
    assert code == 0, err
    code, out, err = _run(["shapes", "train", "deepsdf", "--out", str(ds), "--resume",
                           "--model.iterations", "80"], capsys)
    assert code == 0 and "80 steps" in out, err
    code, _, err = _run(["shapes", "train", "prior", "--out", str(prior), *common,
                         "--codes-from", str(ds)], capsys)
    assert code == 0, err
    code, _, err = _run(["shapes", "train", "gan", "--out", str(gan), *common], capsys)
    assert code == 0, err
    code, _, err = _run(["shapes", "eval", str(ds), "--limit", "1"], capsys)
    assert code == 0, err
    assert json.loads((ds / "eval-test.json").read_text())["chamfer_mean"] > 0
    for run in (prior, gan):
        code, _, err = _run(["shapes", "sample", str(run), "-n", "2", "--strips", "1"], capsys)
        assert code == 0, err
        report = json.loads((run / "samples" / "samples.json").read_text())
        assert len(report["samples"]) == 2
        assert all(s["empty"] or s["nearest_training"].startswith("shape") for s in
                   report["samples"])
        code, _, err = _run(["shapes", "eval", str(run)], capsys)
        assert code == 0, err
        scores = json.loads((run / "eval-test.json").read_text())
        assert {"mmd_cd", "cov_cd", "1nna_cd"} <= set(scores)
    assert (prior / "samples" / "interpolation.png").is_file()
