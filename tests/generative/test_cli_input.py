"""``mpgym gen``: bad input is refused with one line (exit 2) before any work; nothing is left."""

import json

import pytest

from mpgym.cli import main

TINY_NADE = ["--model.hidden", "8", "--train.steps", "4", "--train.eval-every", "2"]


def listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def refused(argv, capsys, words):
    """Run ``argv``; assert exit 2 and a one-line message containing ``words``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert words in err, err
    return err


@pytest.fixture(scope="module")
def nade_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["gen", "train", "nade", *TINY_NADE, "--out", str(out)]) == 0
    return out / "nade-digits"


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--train.steps", "-10"], "--train.steps must be a whole number >= 1; got -10"),
        (["--train.steps", "0"], "--train.steps must be a whole number >= 1"),
        (["--train.batch-size", "0"], "--train.batch-size must be a whole number >= 1"),
        (["--train.eval-every", "0"], "--train.eval-every must be a whole number >= 1"),
        (["--train.lr", "-0.1"], "--train.lr must be a finite number > 0"),
        (["--train.ema", "1.5"], "--train.ema must be in [0, 1)"),
        (["--train.max-seconds", "-1"], "--train.max-seconds must be a finite number >= 0"),
        (["--model.hidden", "-5"], "does not build a model"),
    ],
)
def test_train_refuses_bad_budgets_before_any_work(tmp_path, capsys, flags, words):
    refused(["gen", "train", "nade", *flags, "--out", str(tmp_path / "runs")], capsys, words)
    assert listing(tmp_path) == []  # not even the --out folder


def test_train_refuses_a_pixelcnn_that_cannot_see_every_earlier_pixel(tmp_path, capsys):
    argv = ["gen", "train", "pixelcnn", "--model.layers", "1", "--out", str(tmp_path)]
    refused(argv, capsys, "kernel >= 15")
    assert listing(tmp_path) == []


def test_train_writes_a_staged_run_and_refuses_another_kinds_run_without_overwrite(
    tmp_path, capsys, nade_run
):
    other = tmp_path / "x"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"kind": "dqn"}))
    (other / "keep.txt").write_text("mine")
    argv = ["gen", "train", "nade", *TINY_NADE, "--out", str(tmp_path), "--name", "x"]
    refused(argv, capsys, "--overwrite")
    assert listing(tmp_path) == ["x", "x/config.json", "x/keep.txt"]
    assert main([*argv, "--overwrite"]) == 0
    assert json.loads((other / "config.json").read_text())["kind"] == "nade"
    assert not (other / "keep.txt").exists()
    assert [p for p in listing(tmp_path) if p.startswith(".")] == []  # no staging left over
    # the run itself: config with its kind, checkpoint and samples
    assert {"config.json", "checkpoint.safetensors", "samples.png", "metrics.csv"} <= {
        p.name for p in nade_run.iterdir()
    }


@pytest.mark.parametrize("output", ["out.jpgx", "out", "grid.PNG.txt"])
def test_sample_refuses_an_unwritable_picture_format_before_loading(tmp_path, capsys, output):
    # the run does not even exist: the output name is checked first
    argv = ["gen", "sample", str(tmp_path / "no-run"), "-o", str(tmp_path / output)]
    refused(argv, capsys, "must end in .png, .jpg, .jpeg, .pdf")
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "flags, words",
    [
        (["-n", "0"], "-n must be a whole number >= 1"),
        (["-n", "-3"], "-n must be a whole number >= 1"),
        (["-n", "100001"], "-n must be at most 10,000"),
        (["--ddim-steps", "-1"], "--ddim-steps must be 0"),
        (["--ddim-steps", "5"], "--ddim-steps applies to diffusion models (ddpm) only"),
    ],
)
def test_sample_refuses_bad_counts_and_ddim_steps_for_other_models(
    tmp_path, capsys, nade_run, flags, words
):
    before = listing(nade_run)
    refused(["gen", "sample", str(nade_run), *flags, "-o", str(tmp_path / "g.png")], capsys, words)
    assert listing(tmp_path) == [] and listing(nade_run) == before


def test_sample_writes_the_picture_atomically(tmp_path, capsys, nade_run, monkeypatch):
    import generative.visuals

    def broken(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(generative.visuals, "save_digit_grid", broken)
    with pytest.raises(OSError, match="disk full"):
        main(["gen", "sample", str(nade_run), "-n", "4", "-o", str(tmp_path / "g.png")])
    assert listing(tmp_path) == []  # neither a half picture nor the temporary file
    monkeypatch.undo()
    assert main(["gen", "sample", str(nade_run), "-n", "4", "-o", str(tmp_path / "g.jpg")]) == 0
    assert listing(tmp_path) == ["g.jpg"]
    assert (tmp_path / "g.jpg").read_bytes()[:2] == b"\xff\xd8"  # a JPEG, not a PNG renamed


@pytest.mark.parametrize("n", ["0", "-5", "1000001"])
def test_eval_refuses_sample_counts_out_of_range(capsys, nade_run, n):
    refused(["gen", "eval", str(nade_run), "--samples", n], capsys, "--samples must be")


def test_train_help_documents_every_flag_and_says_nothing_internal(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["gen", "train", "made", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "issue" not in text.lower()
    for flag, words in [
        ("--data", "Training data"),
        ("--out", "Folder that holds the run directory"),
        ("--name", "Run directory name"),
        ("--overwrite", "Replace a run directory"),
    ]:
        assert flag in text and words in text, flag


def test_no_internal_references_in_generative_docstrings():
    import importlib
    import inspect
    import pkgutil

    import generative

    for info in pkgutil.iter_modules(generative.__path__):
        source = inspect.getsource(importlib.import_module(f"generative.{info.name}"))
        assert "issue" not in source.lower(), info.name
    assert "issue" not in inspect.getsource(importlib.import_module("mpgym.cli.gen")).lower()
