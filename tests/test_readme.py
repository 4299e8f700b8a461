"""The README's command lines and Python snippet, as written: they must not drift from the code.

The fast test parses every ``mpgym ...`` line of the README's command-line block with the real
command (its parser is stopped right after a successful parse, before any work); the slow test
(``make test-all``) runs them all, in order, in a scratch directory.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    text = README.read_text()
    section = text.split("## Command line", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def command_lines() -> list[list[str]]:
    """The README's ``mpgym`` lines, comments stripped, as argv lists (without ``mpgym``)."""
    lines = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if argv and argv[0] == "mpgym":
                lines.append(argv[1:])
    return lines


def test_the_readme_has_a_command_block():
    lines = command_lines()
    assert len(lines) >= 10
    assert {argv[0] for argv in lines} >= {"envs", "train", "eval", "mesh", "nerf", "gen"}


class _Parsed(Exception):
    pass


@pytest.mark.parametrize("argv", command_lines(), ids=lambda a: " ".join(a)[:60])
def test_readme_command_line_parses(argv, monkeypatch, tmp_path):
    """Each line's flags are accepted by the real parser (the command stops after parsing)."""
    import tyro

    from mpgym.cli import main

    real_cli = tyro.cli

    def parse_then_stop(*args, **kwargs):
        real_cli(*args, **kwargs)
        raise _Parsed

    monkeypatch.setattr(tyro, "cli", parse_then_stop)
    monkeypatch.chdir(tmp_path)
    try:
        code = main(list(argv))
    except _Parsed:
        return
    except SystemExit as exc:  # tyro/argparse refusing a flag
        pytest.fail(f"`mpgym {' '.join(argv)}` does not parse (exit {exc.code})")
    pytest.fail(f"`mpgym {' '.join(argv)}` returned {code} without parsing its flags")


def test_readme_python_snippet_runs(tmp_path):
    pytest.importorskip("smplx")
    (code,) = _blocks("python")
    out = subprocess.run([sys.executable, "-c", code + "\nprint(smpl.NUM_JOINTS)"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("23")


def _inputs(tmp: Path) -> None:
    """The files the README's lines name: mesh.ply, joints.npy and an SB3 model.zip."""
    import numpy as np
    import trimesh

    trimesh.creation.capsule(height=0.6, radius=0.25).export(tmp / "mesh.ply")
    from bodies import BodyModel

    joints = BodyModel("synthetic")().joints.detach().numpy()[0, :24]
    np.save(tmp / "joints.npy", joints.astype(np.float32))
    from stable_baselines3 import DQN

    DQN("MlpPolicy", "CartPole-v1", learning_starts=100, seed=0).learn(500).save(tmp / "model")


@pytest.mark.slow
def test_readme_command_lines_run_in_order(tmp_path):
    """Every line, as written, exits 0 (run in order: later lines read earlier lines' runs)."""
    _inputs(tmp_path)
    env = dict(os.environ, MPLBACKEND="Agg")
    mpgym = Path(sys.executable).with_name("mpgym")
    for argv in command_lines():
        out = subprocess.run([str(mpgym), *argv], capture_output=True, text=True, cwd=tmp_path,
                             env=env, timeout=3600)
        assert out.returncode == 0, f"mpgym {' '.join(argv)}:\n{out.stderr[-3000:]}"
        assert "Traceback" not in out.stderr
