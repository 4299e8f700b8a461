"""Loading SMPL-format model files: ``.npz`` and ``.pkl`` (without chumpy, without running code).

The official SMPL ``.pkl`` files hold numpy arrays, a scipy sparse ``J_regressor`` and chumpy
``Ch`` objects, so ``pickle.load`` needs chumpy -- which does not work on numpy >= 1.24 and
Python 3.11 (chumpy issues #51, #55) -- and, like any pickle, may run arbitrary code.
:func:`load_pickle` uses a restricted unpickler: it rebuilds numpy arrays, scipy sparse
matrices (from their ``data/indices/indptr`` only) and chumpy arrays (as the numpy array they
hold, their ``x``), and refuses every other class, so a malicious pickle cannot execute code.

:func:`load_model_arrays` validates every key and shape with one message per problem.
"""

from __future__ import annotations

import codecs
import os
import pickle
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


class UnsafePickleError(MpgymError):
    """A pickle asked for a class outside the allow-list (it was not loaded)."""


class _ChArray:
    """Stands in for ``chumpy.ch.Ch`` during unpickling; keeps only its ``x`` array."""

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}

    def to_numpy(self) -> np.ndarray:
        x = self.state.get("x")
        if not isinstance(x, np.ndarray):
            raise MpgymError("a chumpy object in the pickle holds no array 'x'; cannot convert it.")
        return x


class _SparseState:
    """Stands in for a scipy sparse matrix; rebuilt from ``data/indices/indptr/shape`` only."""

    fmt = "csc"

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}

    def to_numpy(self) -> np.ndarray:
        import scipy.sparse as sp

        s = self.state
        try:
            cls = sp.csc_matrix if self.fmt == "csc" else sp.csr_matrix
            shape = tuple(int(n) for n in s.get("_shape", s.get("shape")))
            m = cls((s["data"], s["indices"], s["indptr"]), shape=shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise MpgymError(f"a sparse matrix in the pickle is malformed ({exc}).") from None
        return np.asarray(m.todense())


class _CSC(_SparseState):
    fmt = "csc"


class _CSR(_SparseState):
    fmt = "csr"


_NUMPY_OK = {
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


def _safe_reconstructor(cls: type, base: type, state: Any) -> Any:
    """``copyreg._reconstructor`` restricted to the stand-in classes."""
    if cls not in (_ChArray, _CSC, _CSR) or base is not object:
        raise UnsafePickleError(f"refusing to rebuild {cls!r} from a pickle.")
    return object.__new__(cls)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        last = module.rsplit(".", 1)[-1]
        if module.split(".")[0] == "numpy" and (
            (last, name) in _NUMPY_OK or (module, name) in _NUMPY_OK
        ):
            return super().find_class(module, name)
        if module.split(".")[0] == "chumpy" and name in ("Ch", "ChLambda", "Select", "Reorder"):
            return _ChArray
        if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix"):
            return _CSC if name == "csc_matrix" else _CSR
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _safe_reconstructor
        if module in ("__builtin__", "builtins") and name == "object":
            return object
        if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles from Python 3
            return codecs.encode
        raise UnsafePickleError(
            f"refusing to load {module}.{name} from a pickle: only numpy arrays, scipy sparse "
            "matrices and chumpy arrays are rebuilt (a model file needs nothing else)."
        )


def _plain(value: Any) -> Any:
    if isinstance(value, (_ChArray, _SparseState)):
        return value.to_numpy()
    return value


def load_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Load an SMPL-style ``.pkl`` safely (no chumpy needed, no code executed).

    Args:
        path: the ``.pkl`` file (Python 2 pickles are read with ``latin1``).

    Returns:
        key -> numpy array (chumpy and sparse values converted), other plain values unchanged.

    Raises:
        UnsafePickleError: the pickle names a class outside the allow-list.
    """
    with open(path, "rb") as f:
        try:
            data = _RestrictedUnpickler(f, encoding="latin1").load()
        except UnsafePickleError:
            raise
        except Exception as exc:
            raise MpgymError(
                f"{path} is not a readable model pickle ({type(exc).__name__}: {exc})."
            ) from None
    if not isinstance(data, dict):
        raise MpgymError(f"{path} holds a {type(data).__name__}; expected a dict of model arrays.")
    return {str(k): _plain(v) for k, v in data.items()}


def validate(arrays: dict[str, Any], source: str = "model") -> dict[str, np.ndarray]:
    """Check keys, shapes and consistency; return the required arrays as numpy arrays.

    Args:
        arrays: key -> array-like (as in the SMPL files).
        source: name for messages (the file path).

    Raises:
        MpgymError: listing every missing or misshaped key, with the shape accepted.
    """
    problems = [f"missing key {k!r}" for k in REQUIRED_KEYS if k not in arrays]
    if problems:
        raise MpgymError(
            f"{source}: "
            + "; ".join(problems)
            + f". An SMPL-format model needs {', '.join(REQUIRED_KEYS)}."
        )
    out = {k: np.asarray(_plain(arrays[k])) for k in REQUIRED_KEYS}
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
    for k, (shape, text) in expect.items():
        a = out[k]
        pairs = zip(shape, a.shape, strict=False)
        if a.ndim != len(shape) or any(e is not None and e != n for e, n in pairs):
            problems.append(f"{k!r} has shape {a.shape}; expected {text} with V={V}, J={J}")
    if not problems:
        if out["f"].min() < 0 or out["f"].max() >= V:
            problems.append(f"'f' indexes vertices outside 0..{V - 1}")
        par = out["kintree_table"][0].astype(np.int64)
        if any(not 0 <= par[j] < j for j in range(1, J)):
            problems.append("'kintree_table' must list each joint after its parent")
    if problems:
        raise MpgymError(f"{source}: " + "; ".join(problems) + ".")
    return out


def load_model_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and validate an SMPL-format model file (``.npz`` or ``.pkl``).

    Args:
        path: an ``.npz`` (read with ``allow_pickle=False``) or ``.pkl`` (restricted unpickler).

    Returns:
        The required arrays (see :data:`REQUIRED_KEYS`) plus ``joint_names`` when present.
    """
    path = Path(path)
    if not path.exists():
        raise MpgymError(
            f"model file {path} does not exist; pass 'synthetic' or a path to an SMPL .npz/.pkl."
        )
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
        except ValueError as exc:
            raise MpgymError(
                f"{path}: cannot read it without pickles ({exc}); re-save it with plain arrays."
            ) from None
    elif path.suffix == ".pkl":
        raw = load_pickle(path)
    else:
        raise MpgymError(f"{path}: unknown model file type {path.suffix!r}; accepted: .npz, .pkl.")
    out = validate(raw, str(path))
    if "joint_names" in raw:
        out["joint_names"] = np.asarray(raw["joint_names"]).astype(str)
    return out
