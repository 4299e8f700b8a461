import json

import numpy as np
import pytest

from mpgym import MpgymError, RunDir
from mpgym.cli import main as cli_main
from mpgym.cli.shapes import mesh_main
from neural3d.implicit.igr import IGRConfig, fit_igr

TINY = IGRConfig(width=32, depth=3, skip=2, num_freqs=0, iterations=60, batch_size=256, lr=5e-3)


def _sphere_points(n=2000):
    rng = np.random.default_rng(0)
    u = rng.normal(size=(n, 3)).astype(np.float32)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return 0.35 * u, u


@pytest.fixture
def igr_run(tmp_path):
    run = RunDir(tmp_path / "igr")
    run.write_config(TINY, kind="igr")
    fit_igr(*_sphere_points(), TINY, run=run, progress_bar=False)
    return run


def test_mesh_command_on_igr_run(igr_run, tmp_path, capsys):
    out = tmp_path / "shape.ply"
    assert mesh_main([str(igr_run.path), "--resolution", "64", "-o", str(out)]) == 0
    import trimesh

    m = trimesh.load(out)
    assert len(m.faces) > 100
    r = np.linalg.norm(m.vertices, axis=1)
    assert abs(np.median(r) - 0.35) < 0.03
    assert "field queries" in capsys.readouterr().out


def test_mesh_command_bad_input(tmp_path, igr_run, capsys):
    assert cli_main(["mesh", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    other = RunDir(tmp_path / "dqn")
    other.write_config({"lr": 1.0}, kind="dqn")
    with pytest.raises(MpgymError, match="accepts igr, occnet, deepsdf and nerf"):
        mesh_main([str(other.path)])
    with pytest.raises(MpgymError, match="coarse_resolution"):
        mesh_main([str(igr_run.path), "--resolution", "100"])


def test_fit_shape_rejects_bad_inputs(tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((5, 2)))
    with pytest.raises(MpgymError, match=r"shape \(5, 2\).*\(N, 3\)"):
        cli_main_raise(["fit-shape", str(bad)])
    pts = tmp_path / "pts.npy"
    np.save(pts, np.random.default_rng(0).normal(size=(50, 3)))
    with pytest.raises(MpgymError, match="watertight mesh"):
        cli_main_raise(["fit-shape", str(pts), "--method", "occnet", "--out", str(tmp_path / "r")])


def cli_main_raise(argv):
    from mpgym.cli.shapes import fit_shape_main

    return fit_shape_main(argv[1:])


@pytest.mark.slow
def test_fit_shape_end_to_end(tmp_path):
    p, n = _sphere_points(3000)
    src = tmp_path / "sphere.npy"
    np.save(src, np.concatenate([p, n], 1))
    out = tmp_path / "run"
    assert cli_main(["fit-shape", str(src), "--preset", "quick", "--iterations", "150",
                     "--resolution", "64", "--views", "2", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["metrics"]["chamfer_l1"] < 0.02
    for f in ["mesh.ply", "mesh.png", "metrics.csv", "config.json", "checkpoint.safetensors"]:
        assert (out / f).exists(), f
