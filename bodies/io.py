"""Loading SMPL-format model files: ``.npz`` and ``.pkl`` (without chumpy, without running code).

The official SMPL ``.pkl`` files hold numpy arrays, a scipy sparse ``J_regressor`` and chumpy
``Ch`` objects, so ``pickle.load`` needs chumpy -- which does not work on numpy >= 1.24 and
Python 3.11 (chumpy issues #51, #55) -- and, like any pickle, may run arbitrary code.
:func:`load_pickle` uses a restricted unpickler that never hands a pickle's data to numpy's or
scipy's own constructors. It rebuilds numpy arrays (protocols 0-5) from their raw bytes after
checking them: plain numeric or fixed-width text dtypes only (no fields, subarrays or objects),
a declared shape whose size matches the bytes present. Scipy sparse matrices are rebuilt from
``data/indices/indptr/shape`` after a full structural check (every index in range, ``indptr``
non-decreasing and consistent with the number of entries), chumpy arrays as the numpy array
they hold (their ``x``); every other class is refused, so a malicious pickle can neither
execute code nor make numpy read or write outside its buffers.

:func:`load_npz` reads ``.npz`` archives member by member with ``allow_pickle=False``, checking
each declared dtype and shape against the member's size before anything is allocated.
:func:`validate` checks every key, dtype, shape and index (faces, the kinematic tree) and that
the arrays are finite, with one message per problem, so code downstream (the compiled skinning
kernels index by ``parents``) only ever sees a consistent model.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import re
import reprlib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mpgym.errors import MpgymError

REQUIRED_KEYS = (
    "v_template",
    "f",
    "J_regressor",
    "weights",
    "kintree_table",
    "shapedirs",
    "posedirs",
)

_DTYPE_SPEC = re.compile(r"[biuf][1248]|f16|[US][1-9][0-9]{0,8}")
"""dtype strings a pickle may ask for: plain numbers and fixed-width text."""
_MAX_NDIM = 32
_MAX_DEPTH = 32  # nesting of containers in a pickle's values
_ZIP_RATIO = 1100  # above deflate's largest possible expansion (1032:1)
_MIN_DENSE_LIMIT = 64 * 2**20
_NPZ_BUDGET = (512 * 2**20, 16)  # all members together: max(512 MiB, 16 x the archive's size)


class UnsafePickleError(MpgymError):
    """A pickle asked for a class outside the allow-list (it was not loaded)."""


# ------------------------------------------------------------------ checks on arrays and dtypes
def _plain_dtype(dtype: np.dtype, what: str) -> np.dtype:
    """``dtype`` in native byte order if it is a plain number or fixed-width text; else refuse."""
    if (
        dtype.kind not in "biufUS"
        or dtype.fields is not None
        or dtype.subdtype is not None
        or dtype.hasobject
        or dtype.itemsize < 1
    ):
        raise MpgymError(
            f"{what} has dtype {dtype}; accepted: plain numbers (bool, int, uint, float) "
            "or fixed-width text, without fields, subarrays or Python objects."
        )
    return dtype


def _shape(shape: Any, what: str) -> tuple[int, ...]:
    """A declared array shape as a tuple of non-negative Python ints."""
    text = reprlib.repr(shape)
    if not isinstance(shape, (tuple, list)) or len(shape) > _MAX_NDIM:
        raise MpgymError(f"{what} declares the shape {text}; accepted: a tuple of sizes.")
    if not all(type(n) is int and n >= 0 for n in shape):
        raise MpgymError(f"{what} declares the shape {text}; sizes must be integers >= 0.")
    return tuple(shape)


def _array_from_bytes(raw: Any, dtype: np.dtype, shape: Any, order: str) -> np.ndarray:
    """A new native-order array from the raw bytes of one in a pickle, sizes checked first."""
    if isinstance(raw, str):  # Python 2 pickles read with encoding="latin1"
        raw = raw.encode("latin1")
    if isinstance(raw, memoryview):
        raw = raw.tobytes()
    if not isinstance(raw, (bytes, bytearray)):
        raise MpgymError(f"an array in the pickle holds {type(raw).__name__} instead of bytes.")
    shape = _shape(shape, "an array in the pickle")
    need = math.prod(shape) * dtype.itemsize
    if need != len(raw):
        raise MpgymError(
            f"an array in the pickle declares shape {shape} of {dtype} ({need} bytes) but holds "
            f"{len(raw)} bytes."
        )
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape, order=order)
    return arr.astype(dtype.newbyteorder("="), copy=True)


# ------------------------------------------------------------------ stand-ins used while unpickling
class _NDArrayMarker:
    """What ``numpy.ndarray`` resolves to: only accepted as ``_reconstruct``'s first argument."""

    __slots__ = ()


class _Value:
    """A finished value (a numpy scalar), boxed so that no pickle opcode can modify it."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


class _DtypeStub:
    """Stands in for ``numpy.dtype(spec, align, copy)``; its state is checked, not trusted."""

    def __init__(self, spec: Any):
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        if not isinstance(spec, str) or not _DTYPE_SPEC.fullmatch(spec):
            raise MpgymError(
                f"the pickle asks for the numpy dtype {reprlib.repr(spec)}; accepted: plain "
                "numbers (b1, i1-i8, u1-u8, f2-f16) and fixed-width text (U, S)."
            )
        self.dtype = np.dtype(spec)
        self.built = False

    def __setstate__(self, state: Any) -> None:
        ok = isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
        if not ok or self.built:
            raise MpgymError("a numpy dtype in the pickle has a malformed state.")
        _, order, subdescr, names, fields, elsize = state[:6]
        if subdescr is not None or names is not None or fields is not None:
            raise MpgymError(
                "the pickle holds a structured or subarray numpy dtype; accepted: plain numbers "
                "and fixed-width text."
            )
        size_ok = elsize == self.dtype.itemsize or (self.dtype.kind not in "US" and elsize == -1)
        if order not in ("<", ">", "=", "|") or not size_ok:
            raise MpgymError("a numpy dtype in the pickle has a malformed state.")
        if order in "<>" and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(order)
        self.built = True


class _ArrayStub:
    """Stands in for ``numpy.ndarray``; ``array`` is set once the state has been checked."""

    array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5:  # (version, shape, dtype, F, data)
            state = state[1:]
        if self.array is not None or not isinstance(state, tuple) or len(state) != 4:
            raise MpgymError("a numpy array in the pickle has a malformed state.")
        shape, dtype, fortran, raw = state
        if not isinstance(dtype, _DtypeStub):
            raise MpgymError("a numpy array in the pickle has no valid dtype.")
        dt = _plain_dtype(dtype.dtype, "an array in the pickle")
        self.array = _array_from_bytes(raw, dt, shape, "F" if fortran is True else "C")


class _ChArray:
    """Stands in for ``chumpy.ch.Ch`` during unpickling; keeps only its ``x`` array."""

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}

    def to_numpy(self, conv: _Converter, depth: int) -> np.ndarray:
        x = conv.plain(getattr(self, "state", {}).get("x"), depth + 1)
        if not isinstance(x, np.ndarray):
            raise MpgymError("a chumpy object in the pickle holds no array 'x'; cannot convert it.")
        return x


class _SparseState:
    """Stands in for a scipy sparse matrix; rebuilt from ``data/indices/indptr/shape`` only."""

    fmt = "csc"

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}

    def to_numpy(self, conv: _Converter, depth: int) -> np.ndarray:
        """The dense matrix, after checking the sparse structure in full."""
        s = getattr(self, "state", {})
        parts = {k: conv.plain(s.get(k), depth + 1) for k in ("data", "indices", "indptr")}
        shape = _shape(s.get("_shape", s.get("shape")), "a sparse matrix in the pickle")
        data, indices, indptr = parts["data"], parts["indices"], parts["indptr"]
        if len(shape) != 2 or not all(
            isinstance(a, np.ndarray) and a.ndim == 1 for a in parts.values()
        ):
            raise MpgymError("a sparse matrix in the pickle is malformed (shape or arrays).")
        if indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu":
            raise MpgymError("a sparse matrix in the pickle has non-integer indices.")
        if data.dtype.kind not in "biuf":
            raise MpgymError(f"a sparse matrix in the pickle has {data.dtype} entries.")
        major, minor = (shape[1], shape[0]) if self.fmt == "csc" else shape
        nnz = len(data)
        problems = (
            len(indptr) != major + 1
            or len(indices) != nnz
            or indptr[0] != 0
            or indptr[-1] != nnz
            or bool((np.diff(indptr.astype(np.int64)) < 0).any())
            or (nnz > 0 and (int(indices.min()) < 0 or int(indices.max()) >= minor))
        )
        if problems:
            raise MpgymError(
                f"a sparse matrix in the pickle is malformed: its indices or index pointers do "
                f"not fit its shape {shape} and {nnz} entries."
            )
        conv.allocate(shape[0] * shape[1] * max(8, data.dtype.itemsize), f"shape {shape}")
        import scipy.sparse as sp

        cls = sp.csc_matrix if self.fmt == "csc" else sp.csr_matrix
        m = cls((data, indices.astype(np.int64), indptr.astype(np.int64)), shape=shape)
        m.check_format(full_check=True)
        return m.toarray()


class _CSC(_SparseState):
    fmt = "csc"


class _CSR(_SparseState):
    fmt = "csr"


_STATEFUL = (_DtypeStub, _ArrayStub, _ChArray, _SparseState)


def _make_dtype(spec: Any, align: Any = False, copy: Any = False) -> _DtypeStub:
    """``numpy.dtype(spec, align, copy)`` as called by a pickle."""
    return _DtypeStub(spec)


def _reconstruct(cls: Any, shape: Any = None, typecode: Any = None) -> _ArrayStub:
    """``numpy.core.multiarray._reconstruct``: an empty array whose state comes next."""
    if cls is not _NDArrayMarker:
        raise UnsafePickleError("refusing to rebuild a numpy array subclass from a pickle.")
    return _ArrayStub()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any = "C") -> _ArrayStub:
    """``numpy.core.numeric._frombuffer`` (protocol 5): an array from in-band bytes."""
    if not isinstance(dtype, _DtypeStub) or order not in ("C", "F"):
        raise MpgymError("a numpy array in the pickle (protocol 5) is malformed.")
    stub = _ArrayStub()
    dt = _plain_dtype(dtype.dtype, "an array in the pickle")
    stub.array = _array_from_bytes(buf, dt, shape, order)
    return stub


def _scalar(dtype: Any, raw: Any = b"") -> _Value:
    """``numpy.core.multiarray.scalar``: one number from its bytes."""
    if not isinstance(dtype, _DtypeStub):
        raise MpgymError("a numpy scalar in the pickle has no valid dtype.")
    dt = _plain_dtype(dtype.dtype, "a scalar in the pickle")
    return _Value(_array_from_bytes(raw, dt, (), "C")[()])


def _empty_bytes(*args: Any) -> bytes:
    """``bytes()``: how protocol 2 writes ``b""`` (nothing else is accepted)."""
    if args:
        raise UnsafePickleError("refusing to call bytes() with arguments from a pickle.")
    return b""


def _latin1_encode(obj: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode(text, "latin1")``: how protocol 2 writes bytes from Python 3."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("refusing _codecs.encode with anything but latin1 text.")
    return obj.encode("latin1")


def _safe_reconstructor(cls: type, base: type, state: Any = None) -> Any:
    """``copyreg._reconstructor`` restricted to the stand-in classes."""
    if cls not in (_ChArray, _CSC, _CSR) or base is not object:
        raise UnsafePickleError(f"refusing to rebuild {cls!r} from a pickle.")
    return object.__new__(cls)


_NUMPY = {
    ("multiarray", "_reconstruct"): _reconstruct,
    ("multiarray", "scalar"): _scalar,
    ("numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NDArrayMarker,
    ("numpy", "dtype"): _make_dtype,
}


def _load_build(self: _RestrictedUnpickler) -> None:
    """The BUILD opcode, for the stand-ins only (no state is ever set on anything else)."""
    state = self.stack.pop()
    inst = self.stack[-1]
    if not isinstance(inst, _STATEFUL):
        raise UnsafePickleError(f"refusing to set the state of a {type(inst).__name__}.")
    inst.__setstate__(state)


class _RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """Python's own (pure-Python) unpickler with an allow-list of classes.

    The pure-Python unpickler, not the C one: the C unpickler sizes its memo table by the
    largest index a pickle names, so a 10-byte file can make it allocate tens of gigabytes.
    """

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]
    dispatch[pickle.BUILD[0]] = _load_build

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a global from the allow-list; refuse everything else."""
        root, last = module.split(".")[0], module.rsplit(".", 1)[-1]
        if root == "numpy" and (last, name) in _NUMPY:
            return _NUMPY[(last, name)]
        if root == "chumpy" and name in ("Ch", "ChLambda", "Select", "Reorder"):
            return _ChArray
        if root == "scipy" and name in ("csc_matrix", "csr_matrix", "csc_array", "csr_array"):
            return _CSC if name.startswith("csc") else _CSR
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _safe_reconstructor
        if module in ("__builtin__", "builtins") and name == "object":
            return object
        if module in ("__builtin__", "builtins") and name == "bytes":
            return _empty_bytes
        if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles from Python 3
            return _latin1_encode
        raise UnsafePickleError(
            f"refusing to load {module}.{name} from a pickle: only numpy arrays, scipy sparse "
            "matrices and chumpy arrays are rebuilt (a model file needs nothing else)."
        )


class _Converter:
    """Turns the stand-ins left by unpickling into numpy values, within a memory budget.

    Each object is converted once (a pickle may reference one list from many places, which
    walked naively takes exponential time), and the dense matrices made from sparse ones may
    take ``budget`` bytes in all.
    """

    def __init__(self, budget: int):
        self.budget = budget
        self.memo: dict[int, Any] = {}

    def allocate(self, nbytes: int, what: str) -> None:
        """Take ``nbytes`` from the budget, or refuse."""
        if nbytes > self.budget:
            raise MpgymError(
                f"a sparse matrix in the pickle declares {what}: more memory than a model file "
                "of this size can need."
            )
        self.budget -= nbytes

    def plain(self, value: Any, depth: int = 0) -> Any:
        """Stand-ins (also inside dicts, lists and tuples) -> numpy arrays, dtypes, scalars."""
        if depth > _MAX_DEPTH:
            raise MpgymError("the pickle nests containers too deeply for a model file.")
        if id(value) not in self.memo:
            self.memo[id(value)] = (value, self._convert(value, depth))  # keeps value alive
        return self.memo[id(value)][1]

    def _convert(self, value: Any, depth: int) -> Any:
        if isinstance(value, _ArrayStub):
            if value.array is None:
                raise MpgymError("a numpy array in the pickle has no data.")
            return value.array
        if isinstance(value, (_ChArray, _SparseState)):
            return value.to_numpy(self, depth)
        if isinstance(value, _DtypeStub):
            return value.dtype
        if isinstance(value, _Value):
            return value.value
        if isinstance(value, (_NDArrayMarker, type)) or callable(value):
            return None  # a class or function as a value: nothing a model file needs
        if isinstance(value, dict):
            return {k: self.plain(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.plain(v, depth + 1) for v in value)
        return value


# ------------------------------------------------------------------ file readers
def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except (OSError, MemoryError) as exc:
        raise MpgymError(f"cannot read {path} ({type(exc).__name__}: {exc}).") from None


def load_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Load an SMPL-style ``.pkl`` safely (no chumpy needed, no code executed, bounded memory).

    Args:
        path: the ``.pkl`` file (Python 2 pickles are read with ``latin1``; protocols 0-5).

    Returns:
        key -> numpy array (chumpy and sparse values converted), other plain values unchanged.

    Raises:
        UnsafePickleError: the pickle names a class outside the allow-list.
        MpgymError: the file is not a well-formed model pickle (any malformed part: dtypes,
            sizes, sparse structure, truncation).
    """
    path = Path(path)
    raw = _read_bytes(path)
    conv = _Converter(budget=max(_MIN_DENSE_LIMIT, 8 * len(raw)))
    try:
        data = _RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
        if not isinstance(data, dict):
            raise MpgymError(f"it holds a {type(data).__name__}; expected a dict of arrays.")
        return {str(k): conv.plain(v) for k, v in data.items()}
    except MpgymError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 -- hostile input: any failure is a refusal
        raise MpgymError(
            f"{path} is not a readable model pickle ({type(exc).__name__}: {exc})."
        ) from None


def _npz_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, budget: list[int]
                ) -> np.ndarray:
    """One ``.npy`` member, its header checked against the member's size before reading.

    ``budget[0]`` is what all members together may still take (entries of a hostile archive
    may all point at the same compressed data).
    """
    what = f"{path}: array {info.filename!r}"
    if info.file_size > _ZIP_RATIO * info.compress_size + 4096:
        raise MpgymError(f"{what} declares {info.file_size} bytes, more than it can hold.")
    fmt = np.lib.format
    with zf.open(info) as f:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise MpgymError(f"{what} has .npy format {version}; accepted: 1.0, 2.0.")
        header = f.tell()
    _plain_dtype(dtype, what)
    shape = _shape(shape, what)
    need = math.prod(shape) * dtype.itemsize
    if header + need > info.file_size:
        raise MpgymError(
            f"{what} declares shape {shape} of {dtype} ({need} bytes) but holds "
            f"{info.file_size - header}."
        )
    if need > budget[0]:
        raise MpgymError(f"{what}: the arrays declare more data than the archive can hold.")
    budget[0] -= need
    with zf.open(info) as f:
        arr = fmt.read_array(f, allow_pickle=False)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an ``.npz`` archive of plain arrays (no pickles), every declared size checked first.

    Args:
        path: the ``.npz`` file.

    Returns:
        member name (without ``.npy``) -> array, in native byte order.

    Raises:
        MpgymError: not a zip archive, a member that is not a plain ``.npy`` array, or one whose
            header declares more data than the member holds.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if i.filename.endswith(".npy")]
            if len(infos) > 4096:
                raise MpgymError(f"{path} holds {len(infos)} arrays; a model file has about ten.")
            budget = [max(_NPZ_BUDGET[0], _NPZ_BUDGET[1] * path.stat().st_size)]
            return {i.filename[:-4]: _npz_member(zf, i, path, budget) for i in infos}
    except MpgymError:
        raise
    except Exception as exc:  # noqa: BLE001 -- hostile input: any failure is a refusal
        raise MpgymError(
            f"{path} is not a readable .npz of plain arrays ({type(exc).__name__}: {exc}); "
            "re-save it with numpy.savez."
        ) from None


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write plain arrays as an ``.npz`` atomically (temp file + rename).

    The file reads back with :func:`load_npz` and ``numpy.load(..., allow_pickle=False)``.

    Args:
        path: the ``.npz`` file to write.
        arrays: name -> array (no object arrays).

    Returns:
        ``path``.
    """
    from mpgym.checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


# ------------------------------------------------------------------ validation
_INDEX_KEYS = ("f", "kintree_table")


def _check_arrays(out: dict[str, Any]) -> list[str]:
    """Problems with the types and values of the required arrays (before shapes)."""
    problems = []
    for k in REQUIRED_KEYS:
        a = out[k]
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
            kind = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            problems.append(f"{k!r} holds {kind}; accepted: an array of numbers")
        elif a.dtype.kind == "f" and not np.isfinite(a).all():
            problems.append(f"{k!r} contains NaN or infinity")
        elif k in _INDEX_KEYS and a.dtype.kind == "f" and (
            (np.abs(a) >= 2**53).any() or (a != np.round(a)).any()
        ):
            problems.append(f"{k!r} holds non-integer indices")
    return problems


def _check_shapes(out: dict[str, np.ndarray]) -> tuple[list[str], int, int]:
    """Problems with the shapes (``V`` from ``v_template``, ``J`` from ``kintree_table``)."""
    V = out["v_template"].shape[0] if out["v_template"].ndim == 2 else -1
    J = out["kintree_table"].shape[1] if out["kintree_table"].ndim == 2 else -1
    expect = {
        "v_template": ((V, 3), "(V, 3)"),
        "f": ((None, 3), "(F, 3)"),
        "J_regressor": ((J, V), "(J, V)"),
        "weights": ((V, J), "(V, J)"),
        "kintree_table": ((2, J), "(2, J)"),
        "shapedirs": ((V, 3, None), "(V, 3, S)"),
        "posedirs": ((V, 3, 9 * (J - 1)), "(V, 3, 9 (J - 1))"),
    }
    problems = []
    for k, (shape, text) in expect.items():
        a = out[k]
        pairs = zip(shape, a.shape, strict=False)
        if a.ndim != len(shape) or any(e is not None and e != n for e, n in pairs):
            problems.append(f"{k!r} has shape {a.shape}; expected {text} with V={V}, J={J}")
    if not problems and (V < 1 or J < 1 or out["f"].shape[0] < 1):
        problems.append(f"the model has {V} vertices, {out['f'].shape[0]} faces and {J} joints; "
                        "at least one of each is needed")
    return problems, V, J


def _check_indices(out: dict[str, np.ndarray], V: int, J: int) -> list[str]:
    """Problems with face indices and the kinematic tree (each parent before its child)."""
    problems = []
    f = out["f"]
    if f.min() < 0 or f.max() >= V:
        problems.append(f"'f' indexes vertices outside 0..{V - 1}")
    par = out["kintree_table"][0, 1:]
    if not ((par >= 0) & (par < np.arange(1, J))).all():
        problems.append(
            "'kintree_table' must list each joint after its parent (row 0: parent indices, "
            f"0 <= parent < joint for joints 1..{J - 1})"
        )
    return problems


def validate(arrays: dict[str, Any], source: str = "model") -> dict[str, np.ndarray]:
    """Check keys, dtypes, values, shapes and indices; return the required arrays.

    Args:
        arrays: key -> array (as in the SMPL files; ``J_regressor`` dense or sparse).
        source: name for messages (the file path).

    Returns:
        The required arrays; ``f`` and ``kintree_table`` as ``int64`` (``kintree_table[0, 0]``,
        the root's parent, is set to -1), the others as given.

    Raises:
        MpgymError: listing every missing, misshaped, non-finite or out-of-range key, with
            what is accepted.
    """
    problems = [f"missing key {k!r}" for k in REQUIRED_KEYS if k not in arrays]
    if problems:
        raise MpgymError(
            f"{source}: "
            + "; ".join(problems)
            + f". An SMPL-format model needs {', '.join(REQUIRED_KEYS)}."
        )
    conv = _Converter(budget=_MIN_DENSE_LIMIT)
    out = {k: conv.plain(arrays[k]) for k in REQUIRED_KEYS}
    problems = _check_arrays(out)
    if not problems:
        problems, V, J = _check_shapes(out)
        if not problems:
            problems = _check_indices(out, V, J)
    if problems:
        raise MpgymError(f"{source}: " + "; ".join(problems) + ".")
    kintree = out["kintree_table"].copy()
    kintree[0, 0] = 0  # the root's parent: often 2^32 - 1 in the official files
    kintree = kintree.astype(np.int64)
    kintree[0, 0] = -1
    out["kintree_table"] = kintree
    out["f"] = out["f"].astype(np.int64)
    return out


def _joint_names(raw: dict[str, Any], J: int, source: str) -> np.ndarray:
    names = raw["joint_names"]
    if not isinstance(names, np.ndarray) or names.dtype.kind not in "US" or names.shape != (J,):
        shape = getattr(names, "shape", type(names).__name__)
        raise MpgymError(
            f"{source}: 'joint_names' is {shape}; accepted: an array of {J} strings."
        )
    return names.astype(str)


def load_model_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and validate an SMPL-format model file (``.npz`` or ``.pkl``).

    Args:
        path: an ``.npz`` (plain arrays, :func:`load_npz`) or ``.pkl`` (:func:`load_pickle`).

    Returns:
        The required arrays (see :data:`REQUIRED_KEYS` and :func:`validate`) plus
        ``joint_names`` when present.

    Raises:
        MpgymError: the file is missing, unreadable, or not a consistent model.
    """
    path = Path(path)
    if not path.is_file():
        raise MpgymError(
            f"model file {path} does not exist; pass 'synthetic' or a path to an SMPL .npz/.pkl."
        )
    if path.suffix == ".npz":
        raw: dict[str, Any] = load_npz(path)
    elif path.suffix == ".pkl":
        raw = load_pickle(path)
    else:
        raise MpgymError(f"{path}: unknown model file type {path.suffix!r}; accepted: .npz, .pkl.")
    out = validate(raw, str(path))
    if "joint_names" in raw:
        out["joint_names"] = _joint_names(raw, out["kintree_table"].shape[1], str(path))
    return out
