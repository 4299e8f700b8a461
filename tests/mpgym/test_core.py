import json
import os

import numpy as np
import pytest
import torch

from mpgym import (
    CheckpointError,
    MpgymError,
    RunDir,
    check_finite,
    get_device,
    load_checkpoint,
    save_checkpoint,
    save_on_interrupt,
    seed_everything,
)
from mpgym.checkpoint import atomic_write_text
from mpgym.plots import moving_average
from mpgym.report import Section, write_report


def test_seed_everything_reproduces_torch_and_numpy():
    g1 = seed_everything(3)
    a = (g1.np.random(4), torch.rand(3, generator=g1.torch), torch.rand(2))
    g2 = seed_everything(3)
    b = (g2.np.random(4), torch.rand(3, generator=g2.torch), torch.rand(2))
    np.testing.assert_array_equal(a[0], b[0])
    assert torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
    with pytest.raises(ValueError):
        seed_everything(-1)


def test_checkpoint_roundtrip_and_kind_check(tmp_path):
    sd = {"w": torch.randn(3, 4), "q": np.arange(6, dtype=np.float64).reshape(2, 3)}
    path = save_checkpoint(
        tmp_path / "c.safetensors", sd, kind="dqn", config={"lr": 1e-3}, meta={"step": 7}
    )
    ck = load_checkpoint(tmp_path / "c.safetensors", expected_kind="dqn")
    assert torch.equal(ck.state_dict["w"], sd["w"])
    assert ck.state_dict["q"].dtype == torch.float64
    assert ck.config == {"lr": 1e-3} and ck.meta == {"step": 7} and ck.path == path
    with pytest.raises(CheckpointError, match="'dqn' checkpoint; expected 'ppo'"):
        load_checkpoint(path, expected_kind="ppo")


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(bad)


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "f.txt"
    atomic_write_text(p, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(p, "new")
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["f.txt"]  # no temp file left behind


def test_run_dir_config_and_metrics(tmp_path):
    run = RunDir.create("tabular", "x", root=tmp_path)
    assert run.path == tmp_path / "tabular" / "x"
    run.write_config({"gamma": 0.9}, kind="q-learning")
    assert json.loads(run.file("config.json").read_text()) == {"gamma": 0.9, "kind": "q-learning"}
    run.metrics.log(episode=1, ret=1.0)
    run.metrics.log(episode=2, ret=0.5, eps=0.1)  # a new column extends the header
    lines = run.file("metrics.csv").read_text().splitlines()
    assert lines[0] == "episode,ret,eps" and len(lines) == 3
    again = RunDir(run.path)  # resuming keeps the rows
    assert again.metrics.column("ret") == [1.0, 0.5]
    with pytest.raises(MpgymError, match="not an mpgym run directory"):
        RunDir(tmp_path / "empty").read_config()


def test_save_on_interrupt_saves_then_reraises():
    saved = []
    with pytest.raises(KeyboardInterrupt):
        with save_on_interrupt(lambda: saved.append(True)):
            raise KeyboardInterrupt
    assert saved == [True]


def test_check_finite_and_device():
    check_finite("x", torch.ones(3))
    with pytest.raises(MpgymError, match="reward contains NaN"):
        check_finite("reward", float("nan"))
    with pytest.raises(MpgymError, match="contains NaN"):
        check_finite("obs", np.array([1.0, np.inf]))
    assert get_device("cpu").type == "cpu"
    with pytest.raises(MpgymError, match="accepted"):
        get_device("tpu")


def test_moving_average_matches_definition():
    y = [1, 2, 3, 4]
    np.testing.assert_allclose(moving_average(y, 2), [1, 1.5, 2.5, 3.5])


def test_report_links_images_relative(tmp_path):
    img = tmp_path / "stop" / "a.png"
    img.parent.mkdir()
    img.write_bytes(b"")
    p = write_report(
        tmp_path / "report.html",
        "t",
        [Section("S", text="<b>", images=[img], metrics={"psnr": 28.123456})],
    )
    html = p.read_text()
    assert "src='stop/a.png'" in html and "&lt;b&gt;" in html and "28.12" in html


def test_cli_unknown_command_and_help(capsys):
    from mpgym.cli import main

    assert main(["--help"]) == 0
    assert "commands:" in capsys.readouterr().out
    assert main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


def test_parse_overrides_reads_json_and_refuses_unknown_or_fixed_keys():
    from agents.deep.ppo import PPOConfig
    from mpgym.bench import parse_overrides
    from mpgym.errors import MpgymError

    got = parse_overrides(["learning_rate=1e-4", "lr_schedule=linear", "hidden=[64, 64]",
                           "normalize_obs=true"], PPOConfig)
    assert got == {"learning_rate": 1e-4, "lr_schedule": "linear", "hidden": (64, 64),
                   "normalize_obs": True}
    for bad in ("seed=3", "env_id=CartPole-v1", "no_such=1", "learning_rate"):
        with pytest.raises(MpgymError, match="accepted: .*learning_rate"):
            parse_overrides([bad], PPOConfig)
