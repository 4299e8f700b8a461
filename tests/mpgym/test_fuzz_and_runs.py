"""The loader fuzzer, staged run directories, budget checks, threads and quiet numba."""

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mpgym import MpgymError, RunDir, check_positive, save_checkpoint, staged_run
from mpgym.checkpoint import atomic_write_text
from mpgym.fuzz import fuzz_cases, fuzz_loader, generate_cases, mutate

LOADERS = textwrap.dedent('''
    import json, os, signal, time
    from pathlib import Path
    from mpgym.errors import MpgymError

    def strict_json(path):
        try:
            return json.loads(Path(path).read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            raise MpgymError(f"{path} is not JSON ({exc})") from None

    def crash_on_short(path):
        if len(Path(path).read_bytes()) < 8:
            os.kill(os.getpid(), signal.SIGSEGV)

    def hang_on_short(path):
        if len(Path(path).read_bytes()) < 8:
            time.sleep(60)

    def raises_keyerror(path):
        raise KeyError("x")

    def litters(path):
        Path(path).with_suffix(".tmp").write_text("half")
''')


@pytest.fixture
def loaders(tmp_path, monkeypatch):
    (tmp_path / "fz_loaders.py").write_text(LOADERS)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return tmp_path


def test_mutations_are_deterministic_and_change_the_input():
    seeds = {"a.json": b'{"n": 12, "v": [1.5, 2.5]}'}
    first = list(generate_cases(seeds, 50, seed=3))
    assert first == list(generate_cases(seeds, 50, seed=3))
    assert sum(files["a.json"] != seeds["a.json"] for _, files in first) >= 45
    import numpy as np

    desc, out = mutate(b"", np.random.default_rng(0))
    assert isinstance(out, bytes) and desc


def test_fuzz_loader_passes_a_loader_that_only_refuses(loaders):
    report = fuzz_loader("fz_loaders:strict_json", {"a.json": b'{"n": 12, "v": [1.5]}'},
                         cases=100)
    report.assert_ok()
    assert report.cases == 100 and report.refused > 0


@pytest.mark.parametrize("target, expect", [("crash_on_short", "signal 11"),
                                            ("raises_keyerror", "KeyError"),
                                            ("litters", "left files behind")])
def test_fuzz_loader_reports_crashes_other_errors_and_leftovers(loaders, target, expect):
    report = fuzz_loader(f"fz_loaders:{target}", {"a.bin": b"0123456789abcdef"}, cases=40,
                         keep_dir=loaders / "kept")
    assert report.failures and expect in report.failures[0]
    with pytest.raises(AssertionError, match=expect):
        report.assert_ok()


def test_fuzz_loader_reports_a_hang_and_keeps_the_input(loaders):
    report = fuzz_loader("fz_loaders:hang_on_short", {"a.bin": b"0123456789abcdef"}, cases=40,
                         case_timeout=1.0, keep_dir=loaders / "kept")
    assert report.failures and "hang" in report.failures[0]
    kept = list((loaders / "kept").glob("case-*/a.bin"))
    assert kept and len(kept[0].read_bytes()) < 8


def test_fuzz_cases_scales_with_the_environment(monkeypatch):
    monkeypatch.setenv("MPGYM_FUZZ_SCALE", "10")
    assert fuzz_cases(300) == 3000
    monkeypatch.delenv("MPGYM_FUZZ_SCALE")
    assert fuzz_cases(300) == 300


def _tiny_checkpoint_tree(tmp_path: Path) -> dict[str, bytes]:
    import torch

    run = RunDir(tmp_path / "seed")
    run.write_config({"hidden": 4}, kind="demo")
    save_checkpoint(run.file("checkpoint.safetensors"),
                    {"w": torch.arange(12.0).reshape(3, 4), "b": torch.zeros(3)},
                    kind="demo", config={"hidden": 4}, meta={"step": 10})
    return {p.name: p.read_bytes() for p in run.path.iterdir()}


def test_fuzz_safetensors_checkpoints_and_run_configs(tmp_path):
    seeds = _tiny_checkpoint_tree(tmp_path)
    report = fuzz_loader("mpgym.checkpoint:load_checkpoint", seeds, entry=".",
                         mutable=("checkpoint.safetensors",), cases=fuzz_cases(300))
    report.assert_ok()
    report = fuzz_loader("mpgym.runs:read_run_config", seeds, entry=".",
                         mutable=("config.json",), cases=fuzz_cases(300))
    report.assert_ok()


# -- staged runs -------------------------------------------------------------------------------
def test_staged_run_moves_into_place_on_success(tmp_path):
    target = tmp_path / "rl" / "a"
    with staged_run(target, kind="dqn") as run:
        run.write_config({"x": 1}, kind="dqn")
        assert run.path != target and not target.exists()
    assert json.loads((target / "config.json").read_text())["kind"] == "dqn"
    assert [p.name for p in target.parent.iterdir()] == ["a"]


def test_staged_run_leaves_nothing_on_error_and_keeps_the_run_on_ctrl_c(tmp_path):
    target = tmp_path / "runs" / "rl" / "a"
    with pytest.raises(MpgymError), staged_run(target, kind="dqn") as run:
        run.write_config({}, kind="dqn")
        raise MpgymError("bad env")
    assert not list(tmp_path.iterdir())  # nor the parents it made
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "keep.txt").write_text("")
    with pytest.raises(MpgymError), staged_run(target, kind="dqn"):
        raise MpgymError("bad env")
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["keep.txt"]
    target = tmp_path / "a"
    with pytest.raises(KeyboardInterrupt), staged_run(target, kind="dqn") as run:
        run.write_config({}, kind="dqn")
        raise KeyboardInterrupt
    assert (target / "config.json").exists()


def test_staged_run_refuses_another_kind_unless_overwrite(tmp_path):
    target = tmp_path / "a"
    with staged_run(target, kind="dqn") as run:
        run.write_config({}, kind="dqn")
    with pytest.raises(MpgymError, match="already holds a 'dqn' run.*--overwrite"):
        with staged_run(target, kind="ppo"):
            pass
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(MpgymError, match="not an mpgym run"), staged_run(tmp_path / "notes",
                                                                          kind="ppo"):
        pass
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
    with staged_run(target, kind="ppo", overwrite=True) as run:
        run.write_config({}, kind="ppo")
    assert json.loads((target / "config.json").read_text())["kind"] == "ppo"
    with staged_run(target, kind="ppo") as run:  # same kind: replaced
        run.write_config({"v": 2}, kind="ppo")
    assert json.loads((target / "config.json").read_text())["v"] == 2


@pytest.mark.parametrize("value", [0, -5, 1.5, float("nan"), float("inf"), True, "3", None])
def test_check_positive_refuses(value):
    with pytest.raises(MpgymError, match="--steps must be a whole number >= 1"):
        check_positive("--steps", value)


def test_check_positive_accepts():
    check_positive("--steps", 1)
    check_positive("--steps", 5.0)
    check_positive("--lr", 0.5, integer=False)


def test_outputs_and_checkpoints_get_the_same_file_mode(tmp_path):
    import torch

    old = os.umask(0o022)
    try:
        ckpt = save_checkpoint(tmp_path / "c.safetensors", {"w": torch.zeros(2)}, kind="demo")
        text = atomic_write_text(tmp_path / "c.json", "{}")
    finally:
        os.umask(old)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    modes = {stat.S_IMODE(p.stat().st_mode) for p in (ckpt, text, plain)}
    assert modes == {0o644}


# -- command line ------------------------------------------------------------------------------
def test_threads_flag_works_on_every_command_and_is_validated(capsys):
    import torch

    from mpgym.cli import main

    before = torch.get_num_threads()
    try:
        assert main(["envs", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert main(["envs", "--threads", "0"]) == 2
    assert main(["envs", "--threads=x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mpgym envs: error: --threads must be a whole number >= 1; got 0.",
                   "mpgym envs: error: --threads must be a whole number >= 1; got 'x'."]


def test_ctrl_c_prints_one_message(capsys, monkeypatch):
    import mpgym.cli as cli
    from mpgym.runs import save_on_interrupt

    def interrupted(argv):
        with save_on_interrupt(lambda: None, "the run"):
            raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "stop", ("tests_stop_module", "main", ""))
    monkeypatch.setitem(sys.modules, "tests_stop_module", type(sys)("tests_stop_module"))
    sys.modules["tests_stop_module"].main = interrupted
    assert cli.main(["stop"]) == 130
    captured = capsys.readouterr()
    assert (captured.out + captured.err).lower().count("interrupt") == 1


def test_numba_kernels_print_no_tbb_warning_after_open3d(tmp_path):
    pytest.importorskip("numba")
    pytest.importorskip("open3d")
    (tmp_path / "par_kernel.py").write_text(textwrap.dedent('''
        import numba, numpy as np
        @numba.njit(parallel=True, cache=False)
        def total(a):
            s = 0.0
            for i in numba.prange(a.size):
                s += a[i]
            return s
    '''))
    code = ("import open3d, numpy as np\n"
            "from mpgym.devices import set_threads\n"
            "from mpgym.optional import optional_module\n"
            "set_threads(1)\n"  # starts numba's threads before any kernel
            "m = optional_module('par_kernel')\n"
            "print(m.total(np.ones(100)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(tmp_path)), timeout=300)
    assert out.returncode == 0, out.stderr
    assert "100.0" in out.stdout
    assert "TBB" not in out.stderr and "Warning" not in out.stderr


def test_bench_extra_keeps_gym_pinning_peers_out_of_the_users_environment():
    import tomllib

    root = Path(__file__).resolve().parents[2]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    listed = " ".join(" ".join(v) for v in extras.values()).lower()
    for peer in ("mdptoolbox-hiive", "pymdptoolbox", "bettermdptools", "gym>", "gym="):
        assert peer not in listed
    peers = (root / "benchmarks" / "peers" / "requirements.txt").read_text()
    assert "mdptoolbox-hiive" in peers and "bettermdptools" in peers
