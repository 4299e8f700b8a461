"""Run snapshots: a resumable run packed for committing, and unpacked where none is."""

import io
import tarfile

import pytest

from mpgym import bench
from mpgym.bench import restore_run, snapshot_run
from mpgym.errors import MpgymError
from mpgym.fuzz import fuzz_cases, fuzz_loader


def make_run(folder, extra=()):
    folder.mkdir()
    files = {"config.json": b'{"seed": 1}', "checkpoint.safetensors": bytes(range(256)) * 40,
             "replay_buffer.safetensors": b"\x00" * 100_000, "metrics.csv": b"a,b\n1,2\n",
             "progress.json": b'{"wall_s": 3.0}'}
    for name in (*files, *extra):
        (folder / name).write_bytes(files.get(name, b"not kept"))
    return files


def test_a_snapshot_restores_the_run_files_exactly_and_leaves_others_out(tmp_path):
    files = make_run(tmp_path / "run", extra=("scratch.bin",))
    snap = snapshot_run(tmp_path / "run", tmp_path / "snaps" / "run.tar.xz")
    assert snap.stat().st_size < 20_000  # the zeros and the repeated bytes compress
    assert not list((tmp_path / "snaps").glob(".*"))  # no temporary file left
    assert restore_run(snap, tmp_path / "fresh")
    got = {p.name: p.read_bytes() for p in (tmp_path / "fresh").iterdir()}
    assert got == files


def test_a_run_that_has_a_checkpoint_is_not_overwritten(tmp_path):
    make_run(tmp_path / "run")
    snap = snapshot_run(tmp_path / "run", tmp_path / "run.tar.xz")
    (tmp_path / "run" / "metrics.csv").write_bytes(b"newer")
    assert not restore_run(snap, tmp_path / "run")
    assert (tmp_path / "run" / "metrics.csv").read_bytes() == b"newer"
    assert not restore_run(tmp_path / "missing.tar.xz", tmp_path / "other")
    assert not (tmp_path / "other").exists()


def tar_with(path, members):
    with tarfile.open(path, "w:xz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_info(name, size):
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def link_info(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize("members", [
    [(file_info("../escape.json", 2), b"{}")],
    [(file_info("checkpoint.safetensors", 2), b"ab"), (file_info("evil.py", 1), b"x")],
    [(link_info("config.json", "/etc/passwd"), None)],
    [(file_info("metrics.csv", 1), b"a"), (file_info("metrics.csv", 1), b"b")],
], ids=["outside", "other-file", "symlink", "twice"])
def test_snapshots_with_other_members_are_refused_before_anything_is_written(tmp_path, members):
    snap = tar_with(tmp_path / "bad.tar.xz", members)
    with pytest.raises(MpgymError, match="holds only the regular files"):
        restore_run(snap, tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / "escape.json").exists()


def test_oversized_and_corrupt_snapshots_are_refused(tmp_path, monkeypatch):
    make_run(tmp_path / "run")
    snap = snapshot_run(tmp_path / "run", tmp_path / "run.tar.xz")
    monkeypatch.setattr(bench, "SNAPSHOT_MAX_BYTES", 50_000)
    with pytest.raises(MpgymError, match="50000 bytes in all"):
        restore_run(snap, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    (tmp_path / "junk.tar.xz").write_bytes(b"\xfd7zXZ\x00" + b"\x01" * 64)
    with pytest.raises(MpgymError, match="not a readable run snapshot"):
        restore_run(tmp_path / "junk.tar.xz", tmp_path / "b")


def test_fuzz_restore_run(tmp_path):
    make_run(tmp_path / "run")
    snap = snapshot_run(tmp_path / "run", tmp_path / "run.tar.xz")
    report = fuzz_loader("mpgym.bench:_fuzz_restore", {"run.tar.xz": snap.read_bytes()},
                         cases=fuzz_cases(150))
    report.assert_ok()
    assert report.refused > 0
