"""``mpgym fit-shape`` and ``mpgym mesh``: bad input is refused first, in one line, leaving
nothing behind; runs are written whole or not at all."""

import json
import time

import numpy as np
import pytest

from mpgym import RunDir
from mpgym.cli import main as cli_main
from neural3d.implicit.igr import IGRConfig, fit_igr

TINY = IGRConfig(width=16, depth=2, skip=1, num_freqs=0, iterations=20, batch_size=128)


def _sphere_npy(path, n=2000):
    rng = np.random.default_rng(0)
    u = rng.normal(size=(n, 3)).astype(np.float32)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    np.save(path, np.concatenate([0.35 * u, u], 1))
    return path


def _refused(argv, capsys, *words):
    """Run the CLI; assert exit 2 with one line on stderr containing ``words``."""
    code = cli_main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
    return err


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def igr_run(tmp_path):
    run = RunDir(tmp_path / "igr")
    run.write_config(TINY, kind="igr")
    fit_igr(*_sphere_points(), TINY, run=run, progress_bar=False)
    return run


def _sphere_points(n=1000):
    rng = np.random.default_rng(0)
    u = rng.normal(size=(n, 3)).astype(np.float32)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return 0.35 * u, u


@pytest.mark.parametrize("flags, words", [
    (["--iterations", "-5"], ["--iterations", ">= 1", "-5"]),
    (["--iterations", "0"], ["--iterations"]),
    (["--points", "0"], ["--points"]),
    (["--points", "1000000000000"], ["--points", "at most"]),
    (["--resolution", "0"], ["--resolution"]),
    (["--resolution", "-4"], ["--resolution"]),
    (["--resolution", "100"], ["coarse_resolution * 2^k"]),
    (["--views", "0"], ["--views"]),
    (["--preset", "nope"], ["unknown preset"]),
    (["--method", "occnet"], ["watertight mesh"]),
])
def test_fit_shape_refuses_before_any_work_and_leaves_nothing(tmp_path, capsys, flags, words):
    src = _sphere_npy(tmp_path / "sphere.npy")
    before = _listing(tmp_path)
    t0 = time.perf_counter()
    _refused(["fit-shape", str(src), "--out", str(tmp_path / "runs" / "x"), *flags], capsys,
             *words)
    assert time.perf_counter() - t0 < 5.0  # refused before training, not after
    assert _listing(tmp_path) == before  # no run directory, empty or not


def test_fit_shape_refuses_bad_points_file_without_leftovers(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((50, 2)))
    before = _listing(tmp_path)
    _refused(["fit-shape", str(bad), "--out", str(tmp_path / "r")], capsys, "(N, 3)")
    truncated = tmp_path / "cut.npy"
    truncated.write_bytes(_sphere_npy(tmp_path / "ok.npy").read_bytes()[:300])
    before = _listing(tmp_path)
    _refused(["fit-shape", str(truncated), "--out", str(tmp_path / "r")], capsys, "cut.npy")
    assert _listing(tmp_path) == before


def test_fit_shape_refuses_another_kinds_run_unless_overwrite(tmp_path, capsys):
    other = RunDir(tmp_path / "dqn")
    other.write_config({"lr": 1.0}, kind="dqn")
    src = _sphere_npy(tmp_path / "sphere.npy")
    argv = ["fit-shape", str(src), "--out", str(other.path), "--preset", "quick",
            "--iterations", "3", "--resolution", "32", "--views", "1"]
    _refused(argv, capsys, "'dqn' run", "--overwrite")
    assert json.loads((other.path / "config.json").read_text())["kind"] == "dqn"


def test_fit_shape_writes_a_whole_run_and_replaces_its_own_kind(tmp_path, capsys):
    src = _sphere_npy(tmp_path / "sphere.npy")
    out = tmp_path / "runs" / "igr-sphere"
    argv = ["fit-shape", str(src), "--out", str(out), "--preset", "quick", "--iterations", "3",
            "--resolution", "32", "--views", "1"]
    for _ in range(2):  # the second run replaces the first (same kind)
        assert cli_main(argv) == 0, capsys.readouterr().err
        assert sorted(p.name for p in out.parent.iterdir()) == ["igr-sphere"]  # no temp dirs
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["kind"] == "igr" and cfg["iterations"] == 3
        for f in ["mesh.ply", "mesh.png", "metrics.csv", "results.json",
                  "checkpoint.safetensors"]:
            assert (out / f).stat().st_size > 0, f


def test_mesh_refuses_unknown_output_format_before_work(igr_run, tmp_path, capsys):
    for name in ["out.xyz", "out.gltf", "out", "out.ply.tmp"]:
        out = tmp_path / name
        _refused(["mesh", str(igr_run.path), "-o", str(out)], capsys, ".ply", ".obj", ".glb")
        assert not out.exists()


@pytest.mark.parametrize("flags", [["--resolution", "0"], ["--resolution", "-4"],
                                   ["--simplify", "0"], ["--shape", "-1"]])
def test_mesh_refuses_non_positive_sizes_first(tmp_path, capsys, flags):
    # checked before the run is even looked at: a missing run gives the flag's message
    err = _refused(["mesh", str(tmp_path / "missing"), *flags], capsys, flags[0])
    assert "does not exist" not in err


def test_mesh_writes_atomically_in_every_format(igr_run, tmp_path, capsys):
    import trimesh

    for suffix in [".ply", ".obj", ".stl", ".off", ".glb"]:
        out = tmp_path / "meshes" / f"sphere{suffix}"
        assert cli_main(["mesh", str(igr_run.path), "--resolution", "32", "-o", str(out)]) == 0
        m = trimesh.load(out, force="mesh")
        assert len(m.faces) > 50
    assert sorted(p.name for p in (tmp_path / "meshes").iterdir()) == [
        "sphere.glb", "sphere.obj", "sphere.off", "sphere.ply", "sphere.stl"]  # no temp files
    capsys.readouterr()


def test_mesh_still_extracts_a_nerf_run(tmp_path, capsys):
    """``mpgym mesh`` dispatches a NeRF run to neural3d.nerf's density field."""
    import torch

    from mpgym import save_checkpoint
    from neural3d.implicit.fields import load_field
    from neural3d.nerf.presets import build_field, preset
    from neural3d.render.volume import OccupancyGrid

    cfg = preset("tiny", num_levels=2, log2_table_size=6, base_resolution=4, max_resolution=8,
                 hidden=8, grid_resolution=4)
    field = build_field(cfg, generator=torch.Generator().manual_seed(0))
    sd = {f"field.{k}": v for k, v in field.state_dict().items()}
    sd.update({f"grid.{k}": v for k, v in OccupancyGrid(field.aabb, 4).state_dict().items()})
    run = tmp_path / "nerf"
    run.mkdir()
    save_checkpoint(run / "checkpoint.safetensors", sd, kind="nerf", config=cfg)
    (run / "config.json").write_text(json.dumps({"kind": "nerf", "data": "nowhere"}))
    loaded = load_field(run)
    assert loaded.kind == "nerf" and loaded.inside == "above"
    lo, hi = (torch.tensor(b, dtype=torch.float32) for b in loaded.bounds)
    x = lo + (hi - lo) * torch.rand(4096, 3, generator=torch.Generator().manual_seed(0))
    level = float(loaded.fn(x).median())  # some surface exists at the median density
    out = tmp_path / "nerf.obj"
    assert cli_main(["mesh", str(run), "--level", str(level), "--resolution", "32",
                     "-o", str(out)]) == 0, capsys.readouterr().err
    assert out.stat().st_size > 0 and "nerf:" in capsys.readouterr().out
