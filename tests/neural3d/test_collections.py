"""Shape collections: split, normalisation, cache, and bad folders -- on a handful of meshes."""

import io
import json
import time

import numpy as np
import pytest
import torch
import trimesh

from mpgym.errors import MpgymError
from neural3d.data.collections import (
    CollectionConfig,
    limit_positions,
    load_cached_shape,
    prepare_collection,
    procedural_shape,
    save_cached_shape,
    split_of,
    split_sizes,
)

torch.set_num_threads(1)

TINY = CollectionConfig(
    n_surface=2000, n_sdf=2000, n_occupancy=2000, procedural_shapes=24, procedural_resolution=32
)


def _prepare(source, tmp_path, **kw):
    return prepare_collection(
        str(source), TINY, cache_dir=tmp_path / "cache", progress_bar=False, **kw
    )


# -- split ------------------------------------------------------------------------------------
def test_split_is_fixed_by_position():
    assert split_sizes(1000) == (800, 100, 100)
    assert [split_of(i, 1000) for i in (0, 799, 800, 899, 900, 999)] == [
        "train",
        "train",
        "val",
        "val",
        "test",
        "test",
    ]
    assert split_sizes(3) == (1, 1, 1) and split_sizes(10) == (8, 1, 1)
    # a limited collection is a subset of the full one, split the same way
    keep = limit_positions(1000, 20)
    assert keep == limit_positions(1000, 20)
    assert [split_of(p, 1000) for p in keep].count("train") == 16
    assert {split_of(p, 1000) for p in keep} == {"train", "val", "test"}
    assert limit_positions(5, None) == limit_positions(5, 99) == [0, 1, 2, 3, 4]
    with pytest.raises(MpgymError, match="too small"):
        split_sizes(2)


def test_procedural_shapes_are_deterministic():
    assert procedural_shape(5, seed=0) == procedural_shape(5, seed=0)
    assert procedural_shape(5, seed=0) != procedural_shape(5, seed=1)
    assert type(procedural_shape(2)).__name__ == "Torus"


# -- prepare: normalisation, determinism, cache ------------------------------------------------
def test_procedural_collection_normalised_split_and_cached(tmp_path):
    coll = _prepare("procedural", tmp_path, limit=5)
    assert len(coll) == 5 and coll.computed == 5 and not coll.skipped
    assert [len(coll.split(s)) for s in ("train", "val", "test")] == [3, 1, 1]
    assert [r.position for r in coll.shapes] == limit_positions(24, 5)
    for rec in coll.shapes:
        s = coll.load(rec)
        lo, hi = s.surface_points.min(0), s.surface_points.max(0)
        assert 0.97 < (hi - lo).max() <= 1.0 + 1e-5  # longest side 1
        np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=0.02)  # bounding box centred
        assert np.abs(s.occ_points).max() <= 0.55 + 1e-6  # OccNet's padded cube
        assert 0 < s.occupancy.mean() < 1 and (s.sdf < 0).any() and (s.sdf > 0).any()
        np.testing.assert_allclose(np.linalg.norm(s.surface_normals, axis=1), 1.0, atol=1e-4)
        # near-surface samples are near the surface; ground truth agrees with itself
        assert s.sigmas[0] > s.sigmas[1] > 0
        inside = s.sdf < 0
        assert abs(inside.mean() - 0.5) < 0.25
    # a second call is a cache hit: nothing sampled, and fast
    t0 = time.perf_counter()
    again = _prepare("procedural", tmp_path, limit=5)
    assert again.computed == 0 and time.perf_counter() - t0 < 1.0
    assert [r.name for r in again.shapes] == [r.name for r in coll.shapes]
    # a fresh cache gives the same shapes, splits and samples (deterministic)
    other = prepare_collection(
        "procedural", TINY, limit=5, cache_dir=tmp_path / "other", progress_bar=False
    )
    assert [(r.name, r.split) for r in other.shapes] == [(r.name, r.split) for r in coll.shapes]
    np.testing.assert_array_equal(other.load(0).sdf_points, coll.load(0).sdf_points)
    # other settings, other cache folder
    moved = prepare_collection(
        "procedural",
        CollectionConfig(
            n_surface=2000,
            n_sdf=2000,
            n_occupancy=2000,
            procedural_shapes=24,
            procedural_resolution=32,
            seed=1,
        ),
        limit=3,
        cache_dir=tmp_path / "cache",
        progress_bar=False,
    )
    assert moved.root != coll.root and moved.computed == 3


def test_pybullet_collection_first_shapes(tmp_path):
    pytest.importorskip("pybullet_data")
    coll = _prepare("pybullet", tmp_path, limit=3)
    assert [(r.name, r.split) for r in coll.shapes] == [
        ("pybullet-000", "train"),
        ("pybullet-800", "val"),
        ("pybullet-900", "test"),
    ]
    s = coll.load(0)
    lo, hi = s.surface_points.min(0), s.surface_points.max(0)
    assert 0.97 < (hi - lo).max() <= 1.0 + 1e-5


def test_overlapping_parts_are_united():
    """Two overlapping closed boxes: ray parity calls the overlap outside until they are united."""
    from neural3d.data.collections import make_watertight, union_parts
    from neural3d.data.ground_truth import MeshGroundTruth

    a = trimesh.creation.box((1.0, 0.4, 0.4))
    b = trimesh.creation.box((0.4, 0.4, 1.0))
    both = trimesh.util.concatenate([a, b])
    united = union_parts(both)
    assert united.is_watertight and len(united.split(only_watertight=False)) == 1
    assert united.volume == pytest.approx(0.16 + 0.16 - 0.064, rel=1e-6)
    assert MeshGroundTruth(united).occupancy(np.zeros((1, 3)))[0]  # the overlap is inside
    mesh, repaired = make_watertight(both, "two boxes")
    assert mesh.is_watertight and not repaired


# -- bad folders ---------------------------------------------------------------------------------
def _write(path, mesh):
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(path)
    return path


def _tube():
    c = trimesh.creation.cylinder(0.2, 1.0, sections=24)
    return trimesh.Trimesh(c.vertices, c.faces[np.abs(c.face_normals[:, 2]) < 0.5], process=False)


def test_folder_with_broken_and_non_mesh_files(tmp_path):
    d = tmp_path / "meshes"
    (d / "sub").mkdir(parents=True)
    (d / "README.txt").write_text("not a mesh")
    (d / "notes.urdf").write_text("<robot/>")
    (d / "a_garbage.obj").write_text("this is not an obj file\n\x00\x01")
    (d / "b_lying.ply").write_bytes(
        b"ply\nformat ascii 1.0\nelement vertex 99999999\nproperty float x\nend_header\n"
    )
    _write(d / "c_tube.obj", _tube())  # cannot be closed
    box = trimesh.creation.box((1.0, 0.5, 0.3))
    _write(d / "d_holed.obj", trimesh.Trimesh(box.vertices, box.faces[1:], process=False))
    _write(d / "e_box.stl", trimesh.creation.box((0.3, 0.6, 0.9)))
    _write(d / "sub" / "f_sphere.ply", trimesh.creation.icosphere(2))
    _write(d / "g_cyl.obj", trimesh.creation.cylinder(0.3, 0.5))
    _write(d / "h_capsule.obj", trimesh.creation.capsule(0.5, 0.2))
    coll = _prepare(d, tmp_path)
    names = [r.name for r in coll.shapes]
    assert names == [
        "d_holed.obj",
        "e_box.stl",
        "g_cyl.obj",
        "h_capsule.obj",
        "sub__f_sphere.ply",
    ]  # sorted paths: sub/ comes last
    assert coll.repaired == 1
    skipped = dict(coll.skipped)
    assert set(skipped) == {
        "README.txt",
        "notes.urdf",
        "a_garbage.obj",
        "b_lying.ply",
        "c_tube.obj",
    }
    assert "not watertight" in skipped["c_tube.obj"]
    assert "not a mesh" in skipped["README.txt"]
    assert [r.split for r in coll.shapes[-2:]] == ["val", "test"]
    # skips are cached too: the second call reads no mesh
    again = _prepare(d, tmp_path)
    assert again.computed == 0 and len(again.skipped) == 5 and again.repaired == 1


def test_too_small_collections_are_refused(tmp_path):
    d = tmp_path / "two"
    _write(d / "a.obj", trimesh.creation.box())
    _write(d / "b.obj", trimesh.creation.icosphere(1))
    with pytest.raises(MpgymError, match="too small"):
        _prepare(d, tmp_path)
    (d / "c.obj").write_text("garbage")  # three files, one broken: the test split is empty
    with pytest.raises(MpgymError, match="none in the test split"):
        _prepare(d, tmp_path)
    with pytest.raises(MpgymError, match="limit"):
        _prepare("procedural", tmp_path, limit=2)
    with pytest.raises(MpgymError, match="unknown source"):
        _prepare(tmp_path / "nowhere", tmp_path)
    with pytest.raises(MpgymError, match="n_sdf"):
        prepare_collection("procedural", CollectionConfig(n_sdf=0), cache_dir=tmp_path)


# -- hostile cache files ---------------------------------------------------------------------
def test_cached_shape_loader_refuses_hostile_files(tmp_path):
    cfg = CollectionConfig(n_surface=10, n_sdf=10, n_occupancy=10)
    good = {
        "surface_points": np.zeros((10, 3)),
        "surface_normals": np.ones((10, 3)),
        "sdf_points": np.zeros((10, 3)),
        "sdf": np.zeros(10),
        "occ_points": np.zeros((10, 3)),
        "occupancy": np.zeros(10, bool),
        "sigmas": np.ones(2),
    }
    path = save_cached_shape(tmp_path / "ok.npz", good)
    assert load_cached_shape(path, cfg).sdf.shape == (10,)
    with pytest.raises(MpgymError, match="not a usable"):  # other settings
        load_cached_shape(path, CollectionConfig(n_surface=11, n_sdf=10, n_occupancy=10))
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 nonsense")
    with pytest.raises(MpgymError, match="not a usable"):
        load_cached_shape(tmp_path / "garbage.npz", cfg)
    buf = io.BytesIO()
    np.savez(buf, **{**good, "sdf": np.array([object()] * 10)})  # a pickled object array
    (tmp_path / "pickle.npz").write_bytes(buf.getvalue())
    with pytest.raises(MpgymError, match="not a usable"):
        load_cached_shape(tmp_path / "pickle.npz", cfg)
    bad = dict(good, sdf=np.full(10, np.nan))
    save_cached_shape(tmp_path / "nan.npz", bad)
    with pytest.raises(MpgymError, match="NaN"):
        load_cached_shape(tmp_path / "nan.npz", cfg)
    (tmp_path / "big.npz").write_bytes(b"\0" * 200_000)
    with pytest.raises(MpgymError, match="bytes"):
        load_cached_shape(tmp_path / "big.npz", cfg)


def test_corrupt_index_is_ignored(tmp_path):
    coll = _prepare("procedural", tmp_path, limit=3)
    (coll.root / "index.json").write_text("{not json")
    again = _prepare("procedural", tmp_path, limit=3)
    assert again.computed == 3
    assert json.loads((coll.root / "index.json").read_text())["key"]


# -- the command line -----------------------------------------------------------------------------
def test_cli_prepare(tmp_path, capsys):
    from mpgym.cli.shapes import shapes_main

    argv = [
        "prepare",
        "--source",
        "procedural",
        "--limit",
        "3",
        "--cache",
        str(tmp_path),
        "--n-surface",
        "500",
        "--n-sdf",
        "500",
        "--n-occupancy",
        "500",
        "--procedural-resolution",
        "32",
    ]
    assert shapes_main(argv) == 0
    assert "3 shapes (train/val/test 1/1/1)" in capsys.readouterr().out
    with pytest.raises(MpgymError, match="--limit"):
        shapes_main([*argv[:3], "--limit", "1"])
    with pytest.raises(MpgymError, match="--source"):
        shapes_main(["prepare", "--source", str(tmp_path / "missing")])
    with pytest.raises(MpgymError, match="subcommand"):
        shapes_main(["bake"])
