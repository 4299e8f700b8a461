import json

import pytest

from mpgym.cli import main


def test_train_sample_eval_round_trip(tmp_path, capsys):
    out = tmp_path / "runs"
    assert (
        main(
            [
                "gen",
                "train",
                "nade",
                "--model.hidden",
                "8",
                "--train.steps",
                "20",
                "--train.eval-every",
                "10",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    run = out / "nade-digits"
    assert (run / "checkpoint.safetensors").exists() and (run / "samples.png").exists()
    assert json.loads((run / "config.json").read_text())["kind"] == "nade"
    assert main(["gen", "sample", str(run), "-n", "9", "-o", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").exists()
    assert main(["gen", "eval", str(run), "--no-fd"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["bound"] == "exact" and 60 < result["test_nll_nats"] < 200


def test_vqvae_with_token_prior_round_trip(tmp_path):
    out = tmp_path / "runs"
    argv = ["gen", "train", "vqprior", "--model.channels", "8", "--model.layers", "2"]
    argv += ["--model.codebook", "8", "--model.hidden", "8", "--train.steps", "20"]
    assert main([*argv, "--train.eval-every", "10", "--out", str(out)]) == 0
    run = out / "vqprior-digits"
    assert (run / "samples.png").exists()
    assert main(["gen", "sample", str(run), "-n", "4", "-o", str(tmp_path / "g.png")]) == 0
    assert main(["gen", "eval", str(run), "--no-fd"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["bound"] == "VQ bound" and 60 < result["test_nll_nats"] < 400


def test_point_data_with_a_flow(tmp_path):
    out = tmp_path / "runs"
    assert (
        main(
            [
                "gen",
                "train",
                "realnvp2d",
                "--data",
                "moons",
                "--model.couplings",
                "2",
                "--model.hidden",
                "8",
                "--train.steps",
                "20",
                "--train.eval-every",
                "10",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert main(["gen", "eval", str(out / "realnvp2d-moons")]) == 0


@pytest.mark.parametrize(
    "argv, words",
    [
        (["gen", "train", "nope"], "accepted"),
        (["gen", "train", "pixelcnn", "--data", "moons"], "does not model 2D points"),
        (["gen", "frobnicate"], "accepted: train, sample, eval"),
        (["gen", "eval", "/nonexistent/run"], "no checkpoint"),
    ],
)
def test_bad_input_gives_one_clear_message(argv, words, capsys):
    assert main(argv) == 2
    assert words in capsys.readouterr().err
