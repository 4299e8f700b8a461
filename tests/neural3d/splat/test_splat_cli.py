"""``mpgym splat train|render|export``: refusals before any work, and a run end to end."""

import json

import numpy as np
import pytest

from mpgym.cli import main
from neural3d.cameras import Intrinsics, sphere_poses
from neural3d.data.multiview import NERF_SYNTHETIC_ANGLE, write_split

TRAIN = ["--preset", "tiny", "--iterations", "12", "--init-points", "150", "--backend", "torch",
         "--densify-from", "4", "--densify-every", "4", "--densify-until", "10",
         "--threads", "1"]  # later flags override these


@pytest.fixture
def blobs(tmp_path, monkeypatch, disc_rgba):
    """A NeRF-synthetic folder: 6 train + 1 test views of two soft discs, 16x16; cwd tmp_path."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "blobs"
    intr = Intrinsics.from_fov(NERF_SYNTHETIC_ANGLE, 16)
    img = disc_rgba
    poses = sphere_poses(7, 4.0, rng=np.random.default_rng(0))
    write_split(root, "train", np.repeat(img[None], 6, 0), poses[:6], intr)
    write_split(root, "test", img[None], poses[6:], intr)
    return root


def _refused(capsys, argv, *, mentions=""):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert mentions in err, err
    return err


def test_train_render_export_end_to_end(blobs, tmp_path, capsys):
    from neural3d.splat.ply import load_ply
    from neural3d.splat.trainer import load_splat

    assert main(["splat", "train", str(blobs), *TRAIN]) == 0
    out = capsys.readouterr().out
    assert "test PSNR" in out and "Gaussians" in out
    run = tmp_path / "runs" / "splat" / "blobs-tiny"
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "splat" and config["data"] == str(blobs.resolve())
    assert config["iterations"] == 12 and config["threads"] == 1
    assert {"checkpoint.safetensors", "metrics.csv", "test_view.png", "results.json"} <= {
        p.name for p in run.iterdir()}
    assert [p.name for p in run.parent.iterdir()] == ["blobs-tiny"]  # no staging left

    assert main(["splat", "render", str(run), "--frames", "3", "--resolution", "16",
                 "-o", "t.gif"]) == 0
    assert "(3 frames" in capsys.readouterr().out
    assert (tmp_path / "t.gif").is_file() and (tmp_path / "t_depth.gif").is_file()
    assert main(["splat", "render", str(run), "--path", "test", "-o", "test.gif"]) == 0
    assert "(1 frames" in capsys.readouterr().out

    assert main(["splat", "export", str(run), "-o", "scene.ply"]) == 0
    model, _ = load_splat(run)
    back = load_ply(tmp_path / "scene.ply")
    assert back.num_gaussians == model.num_gaussians and "Gaussians" in capsys.readouterr().out
    np.testing.assert_array_equal(back.params["means"].detach().numpy(),
                                  model.params["means"].numpy())


def test_an_antialiased_run_renders_as_trained_and_export_says_viewers_do_not(
        blobs, tmp_path, capsys, monkeypatch):
    import neural3d.splat.render as render_module
    from neural3d.splat.trainer import load_splat

    assert main(["splat", "train", str(blobs), *TRAIN, "--rasterize-mode", "antialiased"]) == 0
    run = tmp_path / "runs" / "splat" / "blobs-tiny"
    assert json.loads((run / "config.json").read_text())["rasterize_mode"] == "antialiased"
    capsys.readouterr()
    assert main(["splat", "export", str(run), "-o", "scene.ply"]) == 0
    assert "viewers of the standard .ply render it classic" in capsys.readouterr().out
    seen, render = [], render_module.render

    def spy(*args, **kw):
        seen.append(kw.get("rasterize_mode"))
        return render(*args, **kw)

    monkeypatch.setattr(render_module, "render", spy)
    assert main(["splat", "render", str(run), "--frames", "2", "--resolution", "16",
                 "-o", "t.gif"]) == 0
    assert seen == ["antialiased", "antialiased"]
    assert load_splat(run)[1].rasterize_mode == "antialiased"


@pytest.mark.parametrize("flags, mentions", [
    (["--iterations", "0"], "--iterations"),
    (["--init-points", "-1"], "--init-points"),
    (["--position-lr-init", "0"], "--position-lr-init"),
    (["--lambda-dssim", "1.5"], "--lambda-dssim"),
    (["--sh-degree", "4"], "--sh-degree"),
    (["--init", "mesh"], "--init-path"),
    (["--init", "points"], "point cloud"),
    (["--downscale", "0"], "--downscale"),
    (["--preset", "nope"], "nope"),
    (["--name", "../escape"], "--name"),
])
def test_train_refuses_bad_options_before_any_work(blobs, tmp_path, capsys, flags, mentions):
    _refused(capsys, ["splat", "train", str(blobs), *TRAIN, *flags], mentions=mentions)
    assert not (tmp_path / "runs" / "splat").exists() or not any(
        (tmp_path / "runs" / "splat").iterdir())


def test_train_on_a_missing_folder_and_a_foreign_run(tmp_path, blobs, capsys):
    _refused(capsys, ["splat", "train", str(tmp_path / "nothing"), *TRAIN], mentions="nothing")
    other = tmp_path / "runs" / "splat" / "blobs-tiny"
    other.mkdir(parents=True)
    (other / "config.json").write_text(json.dumps({"kind": "nerf"}))
    _refused(capsys, ["splat", "train", str(blobs), *TRAIN], mentions="--overwrite")
    assert json.loads((other / "config.json").read_text())["kind"] == "nerf"


@pytest.mark.parametrize("argv, mentions", [
    (["splat", "render", "nothing-here"], "does not exist"),
    (["splat", "render", "nothing-here", "--frames", "0"], "--frames"),
    (["splat", "render", "nothing-here", "-o", "x.png"], ".gif"),
    (["splat", "export", "nothing-here", "-o", "x.obj"], ".ply"),
    (["splat", "export", "nothing-here"], "does not exist"),
    (["splat", "fly"], "train, render, export"),
])
def test_render_and_export_refusals(tmp_path, monkeypatch, capsys, argv, mentions):
    monkeypatch.chdir(tmp_path)
    _refused(capsys, argv, mentions=mentions)
    assert not any(tmp_path.iterdir())


def test_help_names_the_commands(capsys):
    assert main(["splat"]) == 0
    assert "export" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert "splat" in capsys.readouterr().out
