"""The 3DGS .ply: exact layout, bitwise round trip, and refusal of everything else."""

import doctest
import io
import tracemalloc

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

import neural3d.splat.ply as ply_module
from mpgym.errors import MpgymError
from mpgym.fuzz import fuzz_cases, fuzz_loader
from neural3d.splat.model import PARAM_NAMES, GaussianModel
from neural3d.splat.ply import load_ply, ply_property_names, save_ply


def _model(n=6, degree=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    shapes = {"means": (n, 3), "log_scales": (n, 3), "quats": (n, 4), "opacity_logits": (n,),
              "sh_dc": (n, 1, 3), "sh_rest": (n, k - 1, 3)}
    return GaussianModel({name: torch.randn(*s, generator=g) for name, s in shapes.items()},
                         max_sh_degree=degree)


def _header(data: bytes) -> list[str]:
    return data[: data.index(b"end_header\n")].decode().splitlines()


def _vertex_bytes(names, rows, types=None, fmt="<", text=False) -> bytes:
    """A PLY file with one vertex element of the given property names and float rows."""
    types = types or ["f4"] * len(names)
    arr = np.empty(len(rows), dtype=[(n, fmt + t) for n, t in zip(names, types, strict=True)])
    for i, name in enumerate(names):
        arr[name] = np.asarray(rows, np.float64)[:, i]
    buf = io.BytesIO()
    PlyData([PlyElement.describe(arr, "vertex")], text=text, byte_order=fmt).write(buf)
    return buf.getvalue()


def test_docstring_examples():
    assert doctest.testmod(ply_module).failed == 0


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_is_bitwise(tmp_path, degree):
    m = _model(degree=degree, seed=degree)
    m.sh_degree = min(degree, 1)
    back = load_ply(save_ply(m, tmp_path / "sub" / "s.ply"))
    assert back.max_sh_degree == degree and back.sh_degree == degree
    for name in PARAM_NAMES:
        assert torch.equal(back.params[name], m.params[name]), name


def test_header_is_the_reference_layout(tmp_path):
    data = save_ply(_model(n=4), tmp_path / "s.ply").read_bytes()
    names = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
             + [f"f_rest_{i}" for i in range(45)]
             + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert len(names) == 62 and ply_property_names(3) == names
    assert _header(data) == (["ply", "format binary_little_endian 1.0", "element vertex 4"]
                             + [f"property float {n}" for n in names])
    assert len(data) == data.index(b"end_header\n") + 11 + 4 * 62 * 4
    assert len(ply_property_names(0)) == 17 and ply_property_names(1)[9:18][-1] == "f_rest_8"


def test_values_are_raw_and_f_rest_channel_major(tmp_path):
    t = {"means": torch.tensor([[1.0, 2.0, 3.0]]), "log_scales": torch.tensor([[-1.0, -2, -3]]),
         "quats": torch.tensor([[2.0, 0, 0, 0]]), "opacity_logits": torch.tensor([-0.5]),
         "sh_dc": torch.tensor([[[0.1, 0.2, 0.3]]]),
         # coefficient rows (degree-1 bases) x colour columns (r, g, b)
         "sh_rest": torch.tensor([[[1.0, 2, 3], [4, 5, 6], [7, 8, 9]]])}
    data = save_ply(GaussianModel(t, max_sh_degree=1), tmp_path / "s.ply").read_bytes()
    row = np.frombuffer(data[data.index(b"end_header\n") + 11:], "<f4")
    expected = [1, 2, 3, 0, 0, 0, 0.1, 0.2, 0.3,
                1, 4, 7, 2, 5, 8, 3, 6, 9,  # red's three coefficients, then green's, then blue's
                -0.5, -1, -2, -3, 2, 0, 0, 0]  # logit, log-scales, unnormalised quaternion
    np.testing.assert_array_equal(row, np.asarray(expected, np.float32))


def test_ascii_and_big_endian_files_load_the_same(tmp_path):
    m = _model(n=3, degree=1)
    ref = PlyData.read(str(save_ply(m, tmp_path / "s.ply")))["vertex"].data
    names, rows = list(ref.dtype.names), [list(r) for r in ref]
    for fmt, text in (("<", True), (">", False)):
        path = tmp_path / f"v{text}.ply"
        path.write_bytes(_vertex_bytes(names, rows, fmt=fmt, text=text))
        back = load_ply(path)
        for name in PARAM_NAMES:
            assert torch.equal(back.params[name], m.params[name]), (fmt, name)


def test_max_sh_degree_pads_or_is_refused(tmp_path):
    path = save_ply(_model(degree=1), tmp_path / "s.ply")
    padded = load_ply(path, max_sh_degree=3)
    assert padded.max_sh_degree == 3 and padded.sh_degree == 1
    rest = padded.params["sh_rest"]
    assert rest.shape == (6, 15, 3) and not rest[:, 3:].any()
    with pytest.raises(MpgymError, match="holds SH degree 1; max_sh_degree=0"):
        load_ply(path, max_sh_degree=0)
    with pytest.raises(MpgymError, match="max_sh_degree must be"):
        load_ply(path, max_sh_degree=4)


def test_an_ordinary_mesh_ply_is_refused_clearly(tmp_path):
    import trimesh

    for encoding in ("binary", "ascii"):
        path = tmp_path / f"box_{encoding}.ply"
        path.write_bytes(trimesh.creation.box().export(file_type="ply", encoding=encoding))
        with pytest.raises(MpgymError, match="not a 3D Gaussian splatting .ply: its vertex "
                                             "element lacks f_dc_0, f_dc_1, f_dc_2, opacity"):
            load_ply(path)
    cloud = tmp_path / "cloud.ply"
    cloud.write_bytes(_vertex_bytes(["x", "y", "z", "red", "green", "blue"], [[0, 0, 0, 1, 2, 3]],
                                    types=["f4", "f4", "f4", "u1", "u1", "u1"]))
    with pytest.raises(MpgymError, match="lacks f_dc_0.*it has x, y, z, red, green, blue"):
        load_ply(cloud)


def _valid_row_names(rest):
    return (["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in rest]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


@pytest.mark.parametrize("names, types, match", [
    (_valid_row_names(range(10)), None, "10 f_rest properties"),
    (_valid_row_names([0, 1, 2, 3, 4, 5, 6, 7, 9]), None, "gaps in their numbering"),
    (_valid_row_names([]), ["f8"] + ["f4"] * 13, "'x' is 'double'; the 3DGS .ply stores float32"),
    (_valid_row_names([])[1:], None, "lacks x"),
])
def test_bad_properties_are_refused(tmp_path, names, types, match):
    path = tmp_path / "bad.ply"
    path.write_bytes(_vertex_bytes(names, [list(range(len(names)))], types=types))
    with pytest.raises(MpgymError, match=match):
        load_ply(path)


def test_non_finite_values_are_refused(tmp_path):
    data = bytearray(save_ply(_model(n=2, degree=0), tmp_path / "s.ply").read_bytes())
    start = data.index(b"end_header\n") + 11
    at = start + 17 * 4 + 7 * 4  # row 1 (17 properties a row), property 7 (f_dc_1)
    data[at:at + 4] = np.float32(np.nan).tobytes()
    (tmp_path / "nan.ply").write_bytes(bytes(data))
    with pytest.raises(MpgymError, match="'f_dc_1' is nan at row 1"):
        load_ply(tmp_path / "nan.ply")


def test_truncated_and_huge_counts_are_refused_before_reading(tmp_path, monkeypatch):
    data = save_ply(_model(n=5), tmp_path / "s.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[:-3])
    huge = data.replace(b"element vertex 5\n", b"element vertex 99999999999999\n")
    (tmp_path / "huge.ply").write_bytes(huge)
    monkeypatch.setattr(PlyData, "read", lambda *a, **k: pytest.fail("plyfile was called"))
    tracemalloc.start()
    try:
        with pytest.raises(MpgymError, match="declares 5 Gaussians .* truncated"):
            load_ply(tmp_path / "cut.ply")
        with pytest.raises(MpgymError, match="declares 99999999999999 Gaussians"):
            load_ply(tmp_path / "huge.ply")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20


@pytest.mark.parametrize("content, match", [
    (b"", "not a PLY file"),
    (b"\x00\x01garbage", "not a PLY file"),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n", "no 'end_header'"),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex -1\nend_header\n", "malformed"),
    (b"ply\nformat binary_middle_endian 1.0\nelement vertex 1\nend_header\n", "format"),
    (b"ply\nformat ascii 1.0\nelement face 0\nend_header\n", "no 'vertex' element"),
])
def test_not_a_splat_ply_is_refused(tmp_path, content, match):
    (tmp_path / "x.ply").write_bytes(content)
    with pytest.raises(MpgymError, match=match):
        load_ply(tmp_path / "x.ply")


def test_missing_path_and_extra_elements_are_refused(tmp_path):
    with pytest.raises(MpgymError, match="no .ply file"):
        load_ply(tmp_path / "none.ply")
    data = save_ply(_model(n=2, degree=0), tmp_path / "s.ply").read_bytes()
    extra = data.replace(b"end_header\n", b"element face 0\nproperty list uchar int vi\n"
                         b"end_header\n")
    (tmp_path / "faces.ply").write_bytes(extra)
    with pytest.raises(MpgymError, match="only 'vertex'"):
        load_ply(tmp_path / "faces.ply")


def test_save_refuses_nan_and_leaves_the_old_file(tmp_path):
    path = save_ply(_model(n=3), tmp_path / "s.ply")
    before = path.read_bytes()
    bad = _model(n=3, seed=1)
    with torch.no_grad():
        bad.params["log_scales"][1, 2] = float("inf")
    with pytest.raises(MpgymError, match="'log_scales' contains NaN or infinity"):
        save_ply(bad, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.ply"]
    with pytest.raises(MpgymError, match="GaussianModel"):
        save_ply({"means": torch.zeros(1, 3)}, tmp_path / "t.ply")


def test_fuzzed_files_load_or_are_refused(tmp_path):
    seed = save_ply(_model(n=4, degree=3), tmp_path / "s.ply").read_bytes()
    report = fuzz_loader("neural3d.splat.ply:load_ply", {"s.ply": seed}, cases=fuzz_cases(250))
    report.assert_ok()
    assert report.refused > 0 and report.ok > 0
