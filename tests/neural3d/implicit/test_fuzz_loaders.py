"""Fuzzing the files a user points ``mpgym fit-shape`` and ``mpgym mesh`` at.

Each loader gets mutated copies of valid files (bit flips, truncation, huge counts, NaN...) in a
subprocess and must return or raise ``MpgymError`` -- never crash, hang, raise another type or
leave files behind. Case counts scale with ``MPGYM_FUZZ_SCALE``.
"""

import io
import time

import numpy as np
import pytest
import trimesh

from mpgym import MpgymError
from mpgym.fuzz import fuzz_cases, fuzz_loader


def _bytes(data) -> bytes:
    return data if isinstance(data, bytes) else data.encode()


def mesh_seeds() -> dict[str, tuple[str, bytes]]:
    """Valid files of every mesh format ``fit-shape`` reads: name -> (file name, bytes)."""
    ico = trimesh.creation.icosphere(1)  # 42 vertices, 80 faces
    box = trimesh.creation.box()  # 12 faces: keeps the ASCII STL small
    return {
        "ply-binary": ("m.ply", _bytes(ico.export(file_type="ply"))),
        "ply-ascii": ("m.ply", _bytes(ico.export(file_type="ply", encoding="ascii"))),
        "obj": ("m.obj", _bytes(ico.export(file_type="obj"))),
        "stl-binary": ("m.stl", _bytes(ico.export(file_type="stl"))),
        "stl-ascii": ("m.stl", _bytes(box.export(file_type="stl_ascii"))),
        "off": ("m.off", _bytes(ico.export(file_type="off"))),
        "glb": ("m.glb", _bytes(ico.export(file_type="glb"))),
    }


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def run_seeds() -> dict[str, dict[str, bytes]]:
    """Tiny run directories of each implicit kind, as ``mpgym mesh RUN`` loads them."""
    import json

    import torch
    from safetensors.torch import save

    from mpgym.checkpoint import to_jsonable
    from neural3d.implicit.deepsdf import DeepSDFConfig, build_decoder
    from neural3d.implicit.igr import IGRConfig, build_igr
    from neural3d.implicit.occnet import OccNetConfig, OccupancyNetwork

    def run(kind, cfg, state, meta=None, **extra):
        metadata = {"format": "1", "kind": kind, "config": json.dumps(to_jsonable(cfg)),
                    "meta": json.dumps(meta or {})}
        state = {k: v.detach().contiguous() for k, v in state.items()}
        config = json.dumps({**to_jsonable(cfg), "kind": kind})
        return {"config.json": config.encode(),
                "checkpoint.safetensors": save(state, metadata=metadata), **extra}

    igr = IGRConfig(width=16, depth=2, skip=1, num_freqs=1)
    occ_l = OccNetConfig(condition="latent", latent_dim=4, hidden=8, blocks=1, num_freqs=1)
    occ_p = OccNetConfig(condition="pointnet", latent_dim=4, hidden=4, blocks=1)
    ds = DeepSDFConfig(latent_dim=4, width=12, depth=2)
    torch.manual_seed(0)
    cond = np.random.default_rng(0).normal(size=(2, 8, 3)).astype(np.float32)
    return {
        "igr": run("igr", igr, build_igr(igr).state_dict()),
        "occnet-latent": run("occnet", occ_l, OccupancyNetwork(occ_l, 2).state_dict(),
                             {"num_shapes": 2, "names": ["a", "b"]}),
        "occnet-pointnet": run("occnet", occ_p, OccupancyNetwork(occ_p, 2).state_dict(),
                               {"num_shapes": 2}, **{"conditions.npy": _npy(cond)}),
        "deepsdf": run("deepsdf", ds, {**build_decoder(ds).state_dict(),
                                       "codes": torch.randn(2, 4)}, {"names": ["a", "b"]}),
    }


SEEDS = mesh_seeds()


@pytest.mark.parametrize("fmt", list(SEEDS))
def test_fuzz_mesh_loader(fmt):
    name, data = SEEDS[fmt]
    report = fuzz_loader("neural3d.data.meshes:_fuzz_load_and_sample", {name: data},
                         cases=fuzz_cases(100), seed=1)
    report.assert_ok()
    assert report.ok > 0 and report.refused > 0  # the mutations reach both outcomes


def test_fuzz_mesh_repair():
    """``fit-shape --repair trimesh|manifold`` on mutated meshes (manifold3d is native code)."""
    name, data = SEEDS["ply-binary"]
    report = fuzz_loader("neural3d.data.meshes:_fuzz_load_repaired", {name: data},
                         cases=fuzz_cases(50), seed=3, case_timeout=90.0)
    report.assert_ok()
    assert report.ok > 0


def test_fuzz_point_loader():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(64, 3)).astype(np.float32)
    with_normals = np.concatenate([pts, pts / np.linalg.norm(pts, axis=1, keepdims=True)], 1)
    for i, arr in enumerate([pts, with_normals.astype(np.float64)]):
        report = fuzz_loader("neural3d.data.meshes:load_points", {"p.npy": _npy(arr)},
                             cases=fuzz_cases(150), seed=i)
        report.assert_ok()
        assert report.ok > 0 and report.refused > 0


@pytest.mark.parametrize("kind", ["igr", "occnet-latent", "occnet-pointnet", "deepsdf"])
def test_fuzz_run_directory_loader(kind):
    seeds = run_seeds()[kind]
    report = fuzz_loader("neural3d.implicit.fields:_fuzz_load_run", seeds, entry=".",
                         cases=fuzz_cases(100), seed=2, case_timeout=90.0)
    report.assert_ok()
    assert report.ok > 0 and report.refused > 0


def test_seed_runs_load_and_give_finite_fields(tmp_path):
    """The seeds themselves are valid runs (so the fuzzer starts from loadable files)."""
    from neural3d.implicit.fields import _fuzz_load_run

    for kind, files in run_seeds().items():
        for name, data in files.items():
            (tmp_path / kind / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / kind / name).write_bytes(data)
        _fuzz_load_run(str(tmp_path / kind))


# -- targeted cases the fuzzer reaches rarely -----------------------------------------------
def test_ply_header_declaring_2_pow_31_vertices_is_refused_before_reading(tmp_path):
    for fmt in ["ply-binary", "ply-ascii"]:
        data = SEEDS[fmt][1].replace(b"element vertex 42", b"element vertex 2147483648")
        path = tmp_path / f"{fmt}.ply"
        path.write_bytes(data)
        with pytest.raises(MpgymError, match=r"declares 2147483728 elements.*only \d+ bytes"):
            _load_with_trimesh_forbidden(path)
    off = tmp_path / "huge.off"
    off.write_bytes(SEEDS["off"][1].replace(b"42 80 0", b"2147483648 80 0", 1))
    with pytest.raises(MpgymError, match="declares"):
        _load_with_trimesh_forbidden(off)


def _load_with_trimesh_forbidden(path):
    """load_mesh with trimesh.load replaced by a tripwire: the refusal must come first."""
    from unittest import mock

    from neural3d.data.meshes import load_mesh

    with mock.patch("trimesh.load", side_effect=AssertionError("trimesh was called")):
        return load_mesh(path)


@pytest.mark.parametrize("body, match", [
    ("v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n", "no triangles"),  # trimesh drops the face
    ("v 0 0 0\nv 1 0 0\nv inf 1 0\nf 1 2 3\n", "no triangles"),
    ("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "degenerate"),  # collinear: zero area
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no triangles"),
    ("v 0 0\nv 1 0\nv 0 1\nf 1 2 3\n", "mesh"),  # 2-D vertices
])
def test_bad_obj_contents_are_refused_with_the_file_and_formats(tmp_path, body, match):
    from neural3d.data.meshes import load_mesh

    path = tmp_path / "bad.obj"
    path.write_text(body)
    with pytest.raises(MpgymError, match=match) as info:
        load_mesh(path)
    assert "bad.obj" in str(info.value)


def test_check_mesh_refuses_non_finite_and_out_of_range():
    from neural3d.data.meshes import check_mesh

    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float)
    check_mesh(trimesh.Trimesh(v, [[0, 1, 2]], process=False))
    with pytest.raises(MpgymError, match="NaN or infinite"):
        check_mesh(trimesh.Trimesh(np.where(v == 1, np.inf, v), [[0, 1, 2]], process=False))
    with pytest.raises(MpgymError, match="face indices outside"):
        check_mesh(trimesh.Trimesh(v, [[0, 1, 3]], process=False, validate=False))


def test_point_files_checked_before_loading(tmp_path):
    from neural3d.data.meshes import load_points

    good = np.random.default_rng(0).normal(size=(100, 3))
    cases = {
        "ints.npy": (np.arange(300).reshape(100, 3), "int64"),
        "shape.npy": (good.reshape(50, 6)[:, :4], r"\(50, 4\)"),
        "few.npy": (good[:5], r"\(5, 3\)"),
        "nan.npy": (np.where(np.eye(100, 3) > 0, np.nan, good), "NaN"),
        "normals.npy": (np.concatenate([good, np.zeros_like(good)], 1), "zero-length normals"),
        "obj.npy": (np.array([None] * 300, dtype=object).reshape(100, 3), "object"),
    }
    for name, (arr, match) in cases.items():
        np.save(tmp_path / name, arr, allow_pickle=True)
        with pytest.raises(MpgymError, match=match):
            load_points(tmp_path / name)
    # a header declaring 2^40 rows: refused from the header, nothing allocated
    np.save(tmp_path / "ok.npy", good)
    raw = (tmp_path / "ok.npy").read_bytes().replace(b"(100, 3)", b"(1099511627776, 3)")
    (tmp_path / "huge.npy").write_bytes(raw)
    t0 = time.perf_counter()
    with pytest.raises(MpgymError, match=r"\(1099511627776, 3\)"):
        load_points(tmp_path / "huge.npy", max_points=2**50)
    assert time.perf_counter() - t0 < 1.0
    pts, nrm = load_points(tmp_path / "ok.npy")
    assert pts.dtype == np.float32 and nrm is None
    assert np.ptp(pts, axis=0).max() == pytest.approx(1.0)


def test_corrupt_checkpoints_are_refused_with_one_error(tmp_path):
    """Configs that build no network or do not match the tensors, without allocating."""
    import json

    from neural3d.implicit.fields import load_field

    seeds = run_seeds()
    bad = {"width": 2**40, "depth": 10**9, "num_freqs": 1000, "skip": "x", "radius": "nan"}
    for key, value in bad.items():
        files = dict(seeds["igr"])
        st = files["checkpoint.safetensors"]
        n = int.from_bytes(st[:8], "little")
        header = json.loads(st[8:8 + n])
        cfg = json.loads(header["__metadata__"]["config"])
        cfg[key] = value
        header["__metadata__"]["config"] = json.dumps(cfg)
        new = json.dumps(header).encode()
        new += b" " * (-len(new) % 8)
        files["checkpoint.safetensors"] = len(new).to_bytes(8, "little") + new + st[8 + n:]
        d = tmp_path / key
        d.mkdir()
        for name, data in files.items():
            (d / name).write_bytes(data)
        t0 = time.perf_counter()
        with pytest.raises(MpgymError, match=key if key in ("skip", "radius") else "checkpoint"):
            load_field(d)
        assert time.perf_counter() - t0 < 2.0, key
