"""``mpgym fit-smpl``: refusals are one line and leave nothing behind; runs hold every body."""

import io
import json
import re

import numpy as np
import pytest
import torch

from mpgym.cli import main
from mpgym.fuzz import fuzz_cases, fuzz_loader


def _bodies(model64, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    pose = 0.2 * torch.randn(n, 69, generator=g, dtype=torch.float64)
    with torch.no_grad():
        return model64(body_pose=pose)


@pytest.fixture(scope="module")
def joints(model64):
    return _bodies(model64, 2).joints.numpy()


def _ply_points(points: np.ndarray) -> bytes:
    import trimesh

    return trimesh.PointCloud(points).export(file_type="ply")


def _inputs(tmp_path, joints):
    """name -> (bytes, extra flags, what the one-line refusal must say)."""
    j = joints[0]
    cases = {
        "malformed.json": (b"[[1, 2,", [], "not a JSON array of numbers"),
        "ragged.json": (b"[[1, 2, 3], [1, 2]]", [], "not a JSON array of numbers"),
        "words.json": (b'[["a", "b", "c"]]', [], "not a JSON array of numbers"),
        "inf.json": (json.dumps([["INF", 0, 0]] + j[1:].tolist()).replace('"INF"', "1e999")
                     .encode(), [], "has infinite values"),
        "corrupt.ply": (b"ply\nformat binary_little_endian 1.0\nelement vertex 5000000000\n"
                        b"property float x\nproperty float y\nproperty float z\nend_header\n"
                        + bytes(64), [], "declares 5000000000 elements"),
        "junk.ply": (bytes(range(256)) * 4, [], "not a PLY file"),
        "truncated.ply": (_ply_points(np.random.default_rng(0).random((300, 3)))[:400], [],
                          "could not be read|holds"),
        "few.ply": (_ply_points(np.random.default_rng(0).random((50, 3))), [],
                    "holds 50 points"),
        "wide.npy": (_npy(np.zeros((24, 4))), [], r"shape \(24, 4\)"),
        "object.npy": (_npy(np.array([None] * 72, dtype=object).reshape(24, 3)), [],
                       "holds object values"),
        "cut.npy": (_npy(j)[:-8], [], "truncated or corrupt"),
        "joints.txt": (b"1 2 3", [], "unknown input type"),
        "steps0.npy": (_npy(j), ["--steps", "0"], "--steps must be a whole number >= 1; got 0"),
        "steps-5.npy": (_npy(j), ["--steps", "-5"], "--steps must be"),
        "kp.npy": (_npy(j[:, :2] * 100), [], "2D keypoints need --focal"),
        "kp-focal.npy": (_npy(j[:, :2] * 100), ["--focal", "-3"], "--focal must be"),
        "badmodel.npy": (_npy(j), ["--model", "nowhere.npz"], "model file nowhere.npz does not"),
    }
    for name, (data, _, _) in cases.items():
        (tmp_path / name).write_bytes(data)
    return cases


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def _one_line_refusal(capsys, argv) -> str:
    code = main(["fit-smpl", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mpgym fit-smpl: error: "), err
    return lines[0]


def test_bad_inputs_and_flags_are_one_line_refusals_leaving_nothing(tmp_path, joints, capsys,
                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = _inputs(tmp_path, joints)
    cases["missing.npy"] = (None, [], "does not exist")
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, (_, flags, match) in cases.items():
        out = tmp_path / "runs" / name
        line = _one_line_refusal(capsys, [name, "--out", str(out), *flags])
        assert re.search(match, line), f"{name}: {line}"
        assert not (tmp_path / "runs").exists(), f"{name} left a run directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_fit_writes_every_body_metrics_and_an_overlay(tmp_path, joints, model64, capsys):
    np.save(tmp_path / "j.npy", joints.astype(np.float32))
    out = tmp_path / "fit"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"kind": "dqn"}))
    argv = ["fit-smpl", str(tmp_path / "j.npy"), "--out", str(out), "--steps", "3"]
    assert main(argv) == 2
    assert "already holds a 'dqn' run" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]

    assert main([*argv, "--overwrite"]) == 0
    stdout = capsys.readouterr().out
    assert re.search(r"fit 2 bodies to joints in [\d.]+ s; final energy [\d.e+]+; "
                     r"mean joint error [\d.]+ mm", stdout)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["config.json", "fit.png", "mesh_000.ply", "mesh_001.ply", "metrics.json",
                     "params.npz"]
    assert json.loads((out / "config.json").read_text())["kind"] == "fit-smpl"
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["joint_error_mm"]) == 2 and metrics["mean_joint_error_mm"] < 60
    assert len(metrics["energy_per_stage"]) == 3

    import trimesh

    p = np.load(out / "params.npz")
    with torch.no_grad():
        fitted = model64(*(torch.as_tensor(p[k]) for k in
                           ("betas", "body_pose", "global_orient", "transl")))
    for b in range(2):
        mesh = trimesh.load(out / f"mesh_{b:03d}.ply", process=False)
        np.testing.assert_allclose(mesh.vertices, fitted.vertices[b].numpy(), atol=1e-5)
    assert _red_pixels(out / "fit.png") > 50  # the input skeleton drawn over the body


def _red_pixels(path) -> int:
    import matplotlib.image

    img = matplotlib.image.imread(path)[..., :3]
    red = np.array([0.839, 0.153, 0.157])  # matplotlib's tab:red
    return int((np.abs(img - red).max(-1) < 0.1).sum())


def test_scan_metrics_and_overlay(tmp_path, model64):
    from bodies.fit import FitResult
    from mpgym.cli.bodies import fit_metrics, overlay_figure

    out = _bodies(model64, 1, seed=3)
    z = torch.zeros(1, 3, dtype=torch.float64)
    r = FitResult(out.betas, torch.zeros(1, 69), z, z, out.vertices, out.joints, [2.0], 1.0)
    scan = out.vertices[0].numpy()
    m = fit_metrics("scan", scan, r)
    assert m["mean_chamfer_mm"] < 1e-6 and m["final_energy"] == 2.0
    m = fit_metrics("scan", scan + np.array([0.0, 0.0, 0.002]), r)  # 2 mm off
    assert 1.0 < m["mean_chamfer_mm"] <= 2.0 + 1e-6
    overlay_figure(tmp_path / "scan.png", model64, r, "scan", scan)
    assert _red_pixels(tmp_path / "scan.png") > 50


@pytest.mark.slow
def test_fit_smpl_on_a_scan_end_to_end(tmp_path, model64, capsys):
    v = _bodies(model64, 1, seed=4).vertices[0].numpy()[::3]
    (tmp_path / "scan.ply").write_bytes(_ply_points(v))
    assert main(["fit-smpl", str(tmp_path / "scan.ply"), "--out", str(tmp_path / "f")]) == 0
    assert "Chamfer distance" in capsys.readouterr().out
    m = json.loads((tmp_path / "f" / "metrics.json").read_text())
    assert m["mean_chamfer_mm"] < 15


# ----------------------------------------------------------------------------- fuzzing
def test_fuzz_fit_smpl_joints_npy(joints):
    report = fuzz_loader("mpgym.cli.bodies:load_target", {"j.npy": _npy(joints[0])},
                         cases=fuzz_cases(300))
    report.assert_ok()


def test_fuzz_fit_smpl_keypoints_json(joints):
    data = json.dumps((joints[0, :, :2] * 500 + 500).round(2).tolist()).encode()
    report = fuzz_loader("mpgym.cli.bodies:load_target", {"kp.json": data},
                         cases=fuzz_cases(300))
    report.assert_ok()


def test_fuzz_fit_smpl_scan_ply(model64):
    v = _bodies(model64, 1, seed=5).vertices[0].numpy()[::40]
    report = fuzz_loader("mpgym.cli.bodies:load_target", {"scan.ply": _ply_points(v)},
                         cases=fuzz_cases(300))
    report.assert_ok()


def test_fuzz_fit_smpl_scan_obj():
    import trimesh

    data = trimesh.creation.icosphere(subdivisions=2).export(file_type="obj").encode()
    report = fuzz_loader("mpgym.cli.bodies:load_target", {"scan.obj": data},
                         cases=fuzz_cases(200))
    report.assert_ok()
