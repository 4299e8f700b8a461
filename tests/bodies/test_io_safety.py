"""Model files from untrusted sources: hostile pickles and archives are refused, never crash."""

import io
import json
import pickle
import resource
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from bodies.io import UnsafePickleError, load_model_arrays, load_npz, load_pickle
from bodies.model import BodyModel
from mpgym.errors import MpgymError
from mpgym.fuzz import fuzz_cases, fuzz_loader


# ----------------------------------------------------------------------------- seeds
@pytest.fixture(scope="module")
def tiny(arrays):
    """A small model cut from the synthetic one: 6 faces, all 24 joints (fast to load)."""
    vi, f = np.unique(arrays["f"][:6].astype(np.int64), return_inverse=True)
    V = len(vi)
    w = arrays["weights"][vi]
    return {
        "v_template": arrays["v_template"][vi],
        "f": f.reshape(-1, 3).astype(np.uint32),
        "J_regressor": np.full((24, V), 1.0 / V),
        "weights": w / w.sum(1, keepdims=True),
        "kintree_table": arrays["kintree_table"],
        "shapedirs": arrays["shapedirs"][vi, :, :2].astype(np.float32),
        "posedirs": arrays["posedirs"][vi].astype(np.float32),
        "joint_names": arrays["joint_names"],
    }


def _npz_bytes(arrays, compressed=False):
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


# ----------------------------------------------------------------------------- protocols
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_model_pickled_with_each_protocol_loads_equal(tmp_path, arrays, protocol):
    (tmp_path / "m.pkl").write_bytes(pickle.dumps(dict(arrays), protocol=protocol))
    loaded = load_model_arrays(tmp_path / "m.pkl")
    for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "f"):
        np.testing.assert_array_equal(loaded[k], arrays[k])
    assert loaded["joint_names"].tolist() == arrays["joint_names"].tolist()


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_official_style_pickle_loads_with_each_protocol(tmp_path, tiny, protocol,
                                                       official_style_pickle):
    (tmp_path / "m.pkl").write_bytes(official_style_pickle(tiny, protocol))
    raw = load_pickle(tmp_path / "m.pkl")
    assert raw["bs_style"] == "lbs"
    np.testing.assert_array_equal(raw["J_regressor"], tiny["J_regressor"])
    np.testing.assert_array_equal(raw["posedirs"], tiny["posedirs"])


def test_numpy_1_module_names_load(tmp_path, tiny):
    """Pickles written by numpy 1.x name ``numpy.core``, numpy 2 ``numpy._core``."""
    data = pickle.dumps({"x": tiny["posedirs"], "s": np.float64(2.5)}, protocol=2)
    assert b"numpy._core." in data
    (tmp_path / "m.pkl").write_bytes(data.replace(b"numpy._core.", b"numpy.core."))
    raw = load_pickle(tmp_path / "m.pkl")
    np.testing.assert_array_equal(raw["x"], tiny["posedirs"])
    assert raw["s"] == 2.5


def test_python_2_style_array_text_loads(tmp_path):
    """Python 2 pickles hold array data as ``str`` (read as latin1 text), as the SMPL files."""
    a = np.arange(6.0).reshape(2, 3)
    dtype = _FakeDtype("f8", (3, "<", None, None, None, -1, -1, 0))
    text = _FakeArray((2, 3), dtype, a.tobytes().decode("latin1"))
    (tmp_path / "m.pkl").write_bytes(pickle.dumps({"a": text}, protocol=2))
    np.testing.assert_array_equal(load_pickle(tmp_path / "m.pkl")["a"], a)


def test_protocol_2_bytes_load(tmp_path):
    """Protocol 2 writes b"" as bytes() and other bytes through _codecs.encode(..., latin1)."""
    data = pickle.dumps({"empty": b"", "some": b"\x00\xffab"}, protocol=2)
    assert b"bytes" in data and b"encode" in data
    (tmp_path / "m.pkl").write_bytes(data)
    assert load_pickle(tmp_path / "m.pkl") == {"empty": b"", "some": b"\x00\xffab"}


def test_big_endian_and_fortran_arrays_come_back_native(tmp_path):
    a = np.asfortranarray(np.arange(12.0).reshape(3, 4)).astype(">f8")
    for protocol in (2, 5):
        (tmp_path / "m.pkl").write_bytes(pickle.dumps({"a": a}, protocol=protocol))
        b = load_pickle(tmp_path / "m.pkl")["a"]
        np.testing.assert_array_equal(b, a)
        assert b.dtype == np.float64 and b.dtype.isnative


# ----------------------------------------------------------------------------- hostile pickles
class _FakeDtype:
    """Pickles as ``numpy.dtype(spec)`` with a hand-written state (fields at any offset)."""

    def __init__(self, spec, state):
        self.spec, self.state = spec, state

    def __reduce__(self):
        return (np.dtype, (self.spec, False, True), self.state)


class _FakeArray:
    """Pickles as an ndarray of ``shape`` with the given dtype stand-in and raw bytes."""

    def __init__(self, shape, dtype, raw):
        self.shape, self.dtype, self.raw = shape, dtype, raw

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        state = (1, self.shape, self.dtype, False, self.raw)
        return (_reconstruct, (np.ndarray, (0,), b"b"), state)


def _field_offset_array(shape, spec="V8"):
    """An array whose dtype has one float64 field at offset 2^30 (reads far outside)."""
    state = (3, "|", None, ("a",), {"a": (np.dtype("f8"), 2**30)}, 8, 1, 16)
    return _FakeArray(shape, _FakeDtype(spec, state), b"\0" * (8 * int(np.prod(shape))))


def _sparse_with_row(dense, row):
    import scipy.sparse as sp

    m = sp.csc_matrix(dense)
    m.indices[0] = row  # scipy does not check on assignment
    return m


def _hostile_files(tmp_path, tiny):
    """name -> (file, what the refusal must mention)."""
    V = tiny["v_template"].shape[0]
    base = {k: v for k, v in tiny.items() if k != "joint_names"}
    cases = {
        f"sparse-row-{row}": (
            dict(base, J_regressor=_sparse_with_row(tiny["J_regressor"], row)), "sparse"
        )
        for row in (100_000, 2_000_000_000, -100_000)
    }
    cases["dtype-field-offset"] = (dict(base, v_template=_field_offset_array((V, 3))), "dtype")
    cases["f8-with-fields"] = (dict(base, v_template=_field_offset_array((V, 3), "f8")), "dtype")
    cases["object-dtype"] = (
        dict(base, v_template=_FakeArray((V, 3), _FakeDtype("O8", None), [0.0] * V * 3)), "dtype"
    )
    cases["huge-shape"] = (
        dict(base, posedirs=_FakeArray((2**40, 3), _FakeDtype("f8", None), b"\0" * 48)), "bytes"
    )
    out = {}
    for name, (data, needle) in cases.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(pickle.dumps(data, protocol=2))
        out[name] = (path, needle)
    raw = {  # opcode-level attacks
        "memo-index": (b"\x80\x02K\x01r\xff\xff\xff\x7f.", "dict"),  # C unpickler: 32 GB memo
        "bytes-alloc": (b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x7f\x85R.", "bytes()"),
        "hex-encode": (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x03\x00\x00\x00hex\x86R.",
                       "latin1"),
        "build-on-dict": (b"\x80\x02}}b.", "state"),
        "truncated": (pickle.dumps(base, protocol=2)[:500], "pickle"),
    }
    for name, (data, needle) in raw.items():
        (tmp_path / f"{name}.pkl").write_bytes(data)
        out[name] = (tmp_path / f"{name}.pkl", needle)
    return out


_LOAD_EACH = """
import json, sys
from bodies.model import _fuzz_entry
from mpgym.errors import MpgymError
for p in sys.argv[1:]:
    try:
        _fuzz_entry(p)
        print(json.dumps("loaded"), flush=True)
    except MpgymError as exc:
        print(json.dumps(f"refused: {exc}"), flush=True)
"""


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))


def test_hostile_pickles_are_refused_in_a_subprocess(tmp_path, tiny):
    """The reproducers of out-of-bounds writes and reads; a crash would be a signal exit."""
    files = _hostile_files(tmp_path, tiny)
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_EACH, *(str(p) for p, _ in files.values())],
        capture_output=True, text=True, timeout=300, preexec_fn=_limit_memory,
    )
    assert proc.returncode == 0, f"loader crashed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == len(files)
    for (name, (_, needle)), result in zip(files.items(), results, strict=True):
        assert result.startswith("refused: "), f"{name}: {result}"
        assert needle in result, f"{name}: {result}"


def test_malicious_pickle_in_a_chumpy_state_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("true",))

    (tmp_path / "e.pkl").write_bytes(pickle.dumps({"x": [1, {"y": Evil()}]}, protocol=4))
    with pytest.raises(UnsafePickleError, match="refusing to load"):
        load_pickle(tmp_path / "e.pkl")


def test_shared_references_are_converted_once(tmp_path):
    """A pickle can name one list twice at every level: 2^30 paths, 30 objects."""
    x = [np.arange(3.0)]
    for _ in range(30):
        x = [x, x]
    (tmp_path / "m.pkl").write_bytes(pickle.dumps({"x": x}, protocol=2))
    y = load_pickle(tmp_path / "m.pkl")["x"]
    for _ in range(30):
        assert y[0] is y[1]
        y = y[0]
    np.testing.assert_array_equal(y[0], np.arange(3.0))
    x = [x]
    for _ in range(10):
        x = [x, x]
    (tmp_path / "deep.pkl").write_bytes(pickle.dumps({"x": x}, protocol=2))
    with pytest.raises(MpgymError, match="nests containers too deeply"):
        load_pickle(tmp_path / "deep.pkl")


def test_many_empty_sparse_matrices_cannot_exhaust_memory(tmp_path):
    """200 empty 1000 x 1000 matrices (under 1 MB of pickle) would be 1.6 GB dense."""
    import scipy.sparse as sp

    data = {f"m{i}": sp.csc_matrix((1000, 1000)) for i in range(200)}
    (tmp_path / "m.pkl").write_bytes(pickle.dumps(data, protocol=2))
    assert (tmp_path / "m.pkl").stat().st_size < 1_000_000
    with pytest.raises(MpgymError, match="more memory than a model file"):
        load_pickle(tmp_path / "m.pkl")


# ----------------------------------------------------------------------------- hostile npz
def _npy(header: dict, payload: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data, match",
    [
        (_zip({"a.npy": _npy({"descr": "<f8", "fortran_order": False, "shape": (2**40, 3)},
                             b"\0" * 48)}), "declares shape"),
        (_zip({"a.npy": _npy({"descr": "|O", "fortran_order": False, "shape": (2,)},
                             b"\0" * 16)}), "dtype"),
        (_zip({"a.npy": _npy({"descr": [("a", "<f8")], "fortran_order": False, "shape": (2,)},
                             b"\0" * 16)}), "dtype"),
        (b"not a zip at all", "not a readable .npz"),
        (_npy({"descr": "<f8", "fortran_order": False, "shape": (2,)}, b"\0" * 16),
         "not a readable .npz"),
    ],
    ids=["huge-shape", "object", "structured", "junk", "plain-npy"],
)
def test_hostile_npz_is_refused_before_allocating(tmp_path, data, match):
    (tmp_path / "m.npz").write_bytes(data)
    with pytest.raises(MpgymError, match=match):
        load_npz(tmp_path / "m.npz")
    with pytest.raises(MpgymError):
        load_model_arrays(tmp_path / "m.npz")


# ----------------------------------------------------------------------------- malformed models
def _parent(j, p):
    def edit(a):
        a["kintree_table"] = a["kintree_table"].copy()
        a["kintree_table"][0, j] = p

    return edit


def _set(key, index, value, dtype=None):
    def edit(a):
        a[key] = a[key].astype(dtype or a[key].dtype)
        a[key][index] = value

    return edit


@pytest.mark.parametrize(
    "edit, match",
    [
        (_parent(5, 30), "kintree_table"),
        (_parent(5, 5), "kintree_table"),
        (_parent(3, -1), "kintree_table"),
        (_parent(7, 2**40), "kintree_table"),
        (_set("posedirs", (0, 0, 0), np.nan), "'posedirs' contains NaN"),
        (_set("v_template", (1, 2), np.inf), "'v_template' contains NaN or infinity"),
        (_set("f", (0, 1), 10_000), "'f' indexes vertices"),
        (_set("kintree_table", (0, 4), 1.5, np.float64), "non-integer"),
        (lambda a: a.update(joint_names=a["joint_names"][:5]), "joint_names"),
        (lambda a: a.update(weights=a["weights"].astype(np.complex128)), "weights.*complex128"),
        (lambda a: a.update(posedirs=a["posedirs"][..., :9]), "'posedirs' has shape"),
    ],
    ids=["parent-beyond", "parent-self", "parent-negative", "parent-huge", "nan", "inf",
         "face-index", "float-parent", "joint-names", "complex", "posedirs-shape"],
)
def test_malformed_models_are_refused_at_load(tmp_path, tiny, edit, match):
    bad = {k: np.array(v) for k, v in tiny.items()}
    edit(bad)
    np.savez(tmp_path / "m.npz", **bad)
    with pytest.raises(MpgymError, match=match):
        load_model_arrays(tmp_path / "m.npz")
    with pytest.raises(MpgymError, match=match):
        BodyModel(tmp_path / "m.npz", num_betas=1)


def test_tiny_model_loads_and_poses(tmp_path, tiny):
    (tmp_path / "m.npz").write_bytes(_npz_bytes(tiny))
    m = BodyModel(tmp_path / "m.npz", num_betas=2, dtype=torch.float64)
    assert m.num_joints == 24 and m.parents[0] == -1
    with torch.no_grad():
        out = m(body_pose=torch.full((3, 69), 0.1, dtype=torch.float64))
    assert out.vertices.shape == (3, len(tiny["v_template"]), 3)
    assert torch.isfinite(out.vertices).all()


def test_one_joint_model_poses(tmp_path, tiny):
    """The smallest consistent model (a root only, no pose correctives) loads and poses."""
    V = len(tiny["v_template"])
    one = dict(tiny, kintree_table=tiny["kintree_table"][:, :1], J_regressor=np.full((1, V), 1 / V),
               weights=np.ones((V, 1)), posedirs=tiny["posedirs"][..., :0])
    del one["joint_names"]
    np.savez(tmp_path / "m.npz", **one)
    m = BodyModel(tmp_path / "m.npz", num_betas=1)
    assert m(body_pose=torch.zeros(2, 0)).vertices.shape == (2, V, 3)


# ----------------------------------------------------------------------------- fuzzing
def test_fuzz_npz_model(tiny):
    """Through BodyModel and two poses: what loads must be safe for the compiled kernels."""
    report = fuzz_loader("bodies.model:_fuzz_entry", {"m.npz": _npz_bytes(tiny)},
                         cases=fuzz_cases(300))
    report.assert_ok()
    assert report.refused > 0


def test_fuzz_compressed_npz_model(tiny):
    """The archive layer (deflate); the loader alone, as the arrays are the same as above."""
    report = fuzz_loader("bodies.io:load_model_arrays", {"m.npz": _npz_bytes(tiny, True)},
                         cases=fuzz_cases(60), seed=1)
    report.assert_ok()


def test_fuzz_official_style_pkl_model(tiny, official_style_pickle):
    report = fuzz_loader("bodies.model:_fuzz_entry", {"m.pkl": official_style_pickle(tiny, 2)},
                         cases=fuzz_cases(300))
    report.assert_ok()
    assert report.refused > 0


def test_fuzz_protocol5_pkl_model(tiny):
    """Protocol 5's opcodes (frames, in-band buffers); the loader alone."""
    data = pickle.dumps(dict(tiny), protocol=5)
    report = fuzz_loader("bodies.io:load_model_arrays", {"m.pkl": data}, cases=fuzz_cases(100),
                         seed=2)
    report.assert_ok()


def test_save_npz_round_trips_plain_arrays_atomically(tmp_path):
    from bodies.io import save_npz

    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "f": np.array([[0, 1, 2]])}
    path = save_npz(tmp_path / "x.npz", arrays)
    back = load_npz(path)
    assert sorted(back) == ["a", "f"]
    np.testing.assert_array_equal(back["a"], arrays["a"])
    assert back["a"].dtype == np.float32
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]  # no temporary file left behind
