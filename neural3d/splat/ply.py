"""The standard 3D Gaussian splatting ``.ply``: what the 3DGS reference writes and viewers open.

One ``vertex`` element, one row per Gaussian, every property float32, binary little endian, in
this order (``K = (degree + 1)^2`` SH coefficients per channel; 62 properties at degree 3)::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 .. f_rest_{3(K-1)-1}  opacity
    scale_0 scale_1 scale_2  rot_0 rot_1 rot_2 rot_3

Values are stored before activation, exactly as :class:`~neural3d.splat.model.GaussianModel`
holds them: opacity logits, log-scales, unnormalised quaternions ``(w, x, y, z)``; normals are
zero. ``f_rest`` is channel-major: the ``[N, K-1, 3]`` coefficients transposed to
``[N, 3, K-1]`` and flattened, so ``f_rest_0 .. f_rest_{K-2}`` are red's degree 1..3
coefficients, then green's, then blue's (the reference's ``construct_list_of_attributes`` and
``save_ply``).

:func:`load_ply` treats the file as untrusted: the header is read first (at most 64 KiB) and
checked -- the 3DGS properties present and float32, an ``f_rest`` count of an SH degree 0..3
(0, 9, 24 or 45), and a vertex count the file's size can hold -- before ``plyfile`` reads a
byte of the body, so a hostile count cannot make it allocate; every problem is one
:class:`~mpgym.errors.MpgymError`. ASCII and big-endian files with these properties load too.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mpgym.checkpoint import atomic_write_bytes
from mpgym.errors import MpgymError
from neural3d.splat.model import PARAM_NAMES, GaussianModel
from neural3d.splat.sh import MAX_SH_DEGREE, num_sh_bases

__all__ = ["load_ply", "ply_property_names", "save_ply"]

ACCEPTED = ("accepted: a 3D Gaussian splatting .ply as the 3DGS reference writes it -- one "
            "'vertex' element with float32 properties x y z, f_dc_0..2, f_rest_0..M-1 (M = 0, "
            "9, 24 or 45 for SH degree 0..3), opacity, scale_0..2, rot_0..3")

MAX_HEADER_BYTES = 65536
"""Longest header read (a degree-3 3DGS header is about 1.2 KB)."""

_FORMATS = ("binary_little_endian", "binary_big_endian", "ascii")
_FLOAT32 = ("float", "float32")
# Bytes per value of each PLY scalar type (and the numpy codes plyfile also accepts).
_TYPE_SIZES = {"char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2,
               "ushort": 2, "uint16": 2, "int": 4, "int32": 4, "uint": 4, "uint32": 4,
               "float": 4, "float32": 4, "double": 8, "float64": 8, "i1": 1, "u1": 1, "b1": 1,
               "i2": 2, "u2": 2, "i4": 4, "u4": 4, "f4": 4, "f8": 8}
_F_REST_COUNTS = {3 * (num_sh_bases(d) - 1): d for d in range(MAX_SH_DEGREE + 1)}


def ply_property_names(sh_degree: int) -> list[str]:
    """The vertex properties of a 3DGS ``.ply`` at ``sh_degree``, in file order.

    Example:
        >>> len(ply_property_names(3)), ply_property_names(0)[6:]
        (62, ['f_dc_0', 'f_dc_1', 'f_dc_2', 'opacity', 'scale_0', 'scale_1', 'scale_2', \
'rot_0', 'rot_1', 'rot_2', 'rot_3'])
    """
    rest = 3 * (num_sh_bases(sh_degree) - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(rest)] + ["opacity"]
            + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])


def save_ply(model: GaussianModel, path: str | os.PathLike) -> Path:
    """Write ``model`` as a 3DGS ``.ply`` (binary little endian), atomically.

    All ``max_sh_degree`` bands are written, whatever the active degree, as the reference does.

    Args:
        model: the Gaussians (any device and float dtype; written as float32).
        path: the target file; its directory is created.

    Returns:
        The path written.

    Raises:
        MpgymError: not a :class:`GaussianModel`, no Gaussians, or NaN/infinite parameters
            (nothing is written then).
    """
    from plyfile import PlyData, PlyElement

    if not isinstance(model, GaussianModel):
        raise MpgymError(f"save_ply needs a GaussianModel; got {type(model).__name__}.")
    t = {k: model.params[k].detach().to("cpu", torch.float32) for k in PARAM_NAMES}
    n = int(t["means"].shape[0])
    if n == 0:
        raise MpgymError("the model has no Gaussians; nothing to write to a .ply.")
    for name, value in t.items():
        if not bool(torch.isfinite(value).all()):
            raise MpgymError(f"Gaussian {name!r} contains NaN or infinity; refusing to write "
                             f"{path} (a .ply with them would not load).")
    columns = [t["means"], torch.zeros(n, 3), t["sh_dc"].reshape(n, 3),
               t["sh_rest"].transpose(1, 2).reshape(n, -1),  # channel-major, as the reference
               t["opacity_logits"][:, None], t["log_scales"], t["quats"]]
    table = np.ascontiguousarray(torch.cat(columns, 1).numpy(), dtype="<f4")  # [N, P]
    names = ply_property_names(model.max_sh_degree)
    vertex = table.view(np.dtype([(name, "<f4") for name in names])).reshape(n)
    buf = io.BytesIO()
    PlyData([PlyElement.describe(vertex, "vertex")], byte_order="<").write(buf)
    return atomic_write_bytes(path, buf.getvalue())


@dataclass
class _Header:
    """What :func:`_read_header` found: format, byte length, elements in file order."""

    format: str
    length: int
    elements: list[tuple[str, int, list[tuple[str, str]]]]  # (name, count, [(prop, type)])


def _read_header(path: Path) -> _Header:
    """Parse the header from at most :data:`MAX_HEADER_BYTES` bytes (the body is not read)."""
    try:
        with path.open("rb") as f:
            head = f.read(MAX_HEADER_BYTES)
    except OSError as exc:
        raise MpgymError(f"{path} could not be read ({exc.strerror or exc}); {ACCEPTED}.") from None
    nl = b"\r\n" if head.startswith(b"ply\r\n") else b"\n"
    if not head.startswith(b"ply" + nl):
        raise MpgymError(f"{path} is not a PLY file (it does not start with a 'ply' line); "
                         f"{ACCEPTED}.")
    end = head.find(nl + b"end_header" + nl)
    if end < 0:
        raise MpgymError(f"{path} has no 'end_header' line in its first {MAX_HEADER_BYTES} "
                         f"bytes (a truncated or corrupt PLY header); {ACCEPTED}.")
    try:
        lines = head[:end].decode("ascii").split(nl.decode())[1:]
    except UnicodeDecodeError:
        raise MpgymError(f"{path} has a PLY header that is not ASCII text; {ACCEPTED}.") from None
    header = _Header("", end + 2 * len(nl) + len(b"end_header"), [])
    for line in lines:
        words = line.split()  # str.split, as plyfile's parser, so both see the same tokens
        if words[:1] == ["format"] and len(words) == 3:
            header.format = words[1]
        elif words[:1] == ["element"] and len(words) == 3 and _is_count(words[2]):
            header.elements.append((words[1], int(words[2]), []))
        elif words[:1] == ["property"] and len(words) in (3, 5) and header.elements:
            kind = "list" if len(words) == 5 and words[1] == "list" else words[1]
            header.elements[-1][2].append((words[-1], kind))
        elif words[:1] not in (["comment"], ["obj_info"]):
            raise MpgymError(f"{path} has a malformed PLY header line {line[:60]!r}; "
                             f"{ACCEPTED}.")
    return header


def _is_count(word: str) -> bool:
    return word.isascii() and word.isdigit()


def _check_vertex_properties(path: Path, props: list[tuple[str, str]]) -> int:
    """Check the 3DGS properties of the vertex element; return the file's SH degree."""
    names = [name for name, _ in props]
    if len(set(names)) != len(names):
        raise MpgymError(f"{path} repeats a vertex property name; {ACCEPTED}.")
    rest = [name for name in names if name.startswith("f_rest_")]
    needed = ply_property_names(0)
    missing = [name for name in needed if name not in names and name not in ("nx", "ny", "nz")]
    if missing:
        raise MpgymError(
            f"{path} is not a 3D Gaussian splatting .ply: its vertex element lacks "
            f"{', '.join(missing[:12])}{' ...' if len(missing) > 12 else ''} (it has "
            f"{', '.join(names[:12]) or 'no properties'}{' ...' if len(names) > 12 else ''}: "
            f"an ordinary mesh or point cloud?); {ACCEPTED}.")
    if sorted(rest) != sorted(f"f_rest_{i}" for i in range(len(rest))) or (
            len(rest) not in _F_REST_COUNTS):
        raise MpgymError(f"{path} has {len(rest)} f_rest properties (or gaps in their "
                         f"numbering); an SH degree 0..3 has f_rest_0..M-1 with M in "
                         f"{sorted(_F_REST_COUNTS)}.")
    types = dict(props)
    for name in needed[:3] + needed[6:] + rest:
        if name in types and types[name] not in _FLOAT32:
            raise MpgymError(f"{path}: vertex property {name!r} is {types[name]!r}; the 3DGS "
                             f".ply stores float32 ('float'); {ACCEPTED}.")
    bad = [f"{name} ({kind})" for name, kind in props if kind not in _TYPE_SIZES]
    if bad:
        raise MpgymError(f"{path} has vertex properties of unsupported types: "
                         f"{', '.join(bad[:5])}; {ACCEPTED}.")
    return _F_REST_COUNTS[len(rest)]


def _check_layout(path: Path, header: _Header) -> tuple[int, int]:
    """Validate the header against the 3DGS layout and the file size: ``(count, degree)``."""
    if header.format not in _FORMATS:
        raise MpgymError(f"{path} has PLY format {header.format!r}; expected one of "
                         f"{list(_FORMATS)}.")
    names = [name for name, _, _ in header.elements]
    if "vertex" not in names:
        raise MpgymError(f"{path} has no 'vertex' element (elements: {names[:5]}); {ACCEPTED}.")
    _, count, props = header.elements[names.index("vertex")]
    degree = _check_vertex_properties(path, props)
    if names != ["vertex"]:
        raise MpgymError(f"{path} has elements {names[:5]}; a 3DGS .ply has only 'vertex'.")
    if count == 0:
        raise MpgymError(f"{path} holds no Gaussians (vertex count 0).")
    body = path.stat().st_size - header.length
    if header.format == "ascii":  # every value takes at least one character and a separator
        need, what = count * len(props), "values"
    else:
        need, what = count * sum(_TYPE_SIZES[kind] for _, kind in props), "bytes"
    if need > body:
        raise MpgymError(f"{path} declares {count} Gaussians ({need} {what}) but has only {body} "
                         "bytes after its header: a truncated or corrupt file.")
    return count, degree


def _read_vertices(path: Path, count: int, names: list[str]) -> dict[str, np.ndarray]:
    """Read the named vertex properties with plyfile: name -> ``(count,)`` float32 copies."""
    from plyfile import PlyData

    try:
        with path.open("rb") as f:
            vertex = PlyData.read(f, mmap="c")["vertex"]  # memory-mapped when binary
            if vertex.count != count:
                raise MpgymError(f"{path}: plyfile read {vertex.count} vertices where the header "
                                 f"declares {count}; a corrupt file.")
            return {name: np.array(vertex.data[name], dtype=np.float32) for name in names}
    except MpgymError:
        raise
    except Exception as exc:  # plyfile raises several types (parse, value, decode) on bad input
        raise MpgymError(f"{path} could not be read as a PLY file ({type(exc).__name__}: "
                         f"{str(exc)[:200]}); {ACCEPTED}.") from None


def _stack(cols: dict[str, np.ndarray], names: list[str], path: Path) -> torch.Tensor:
    """``(N, len(names))`` float32 tensor of the columns, refusing NaN or infinity."""
    for name in names:
        bad = np.flatnonzero(~np.isfinite(cols[name]))
        if len(bad):
            raise MpgymError(f"{path}: vertex property {name!r} is {cols[name][bad[0]]} at row "
                             f"{bad[0]}; only finite values are accepted.")
    return torch.from_numpy(np.stack([cols[name] for name in names], axis=1))


def load_ply(path: str | os.PathLike, *, max_sh_degree: int | None = None) -> GaussianModel:
    """Read a 3DGS ``.ply`` of SH degree 0..3 into a :class:`GaussianModel`.

    Args:
        path: the file.
        max_sh_degree: the model's ``max_sh_degree``; None takes the file's. A higher degree
            pads the extra bands with zeros; a lower one is refused (it would drop data).

    Returns:
        A float32 model on the CPU with ``sh_degree`` (active) = the file's degree.

    Raises:
        MpgymError: not a PLY file or unreadable, missing 3DGS properties (an ordinary mesh),
            an ``f_rest`` count of no SH degree 0..3, non-float32 or non-finite values, a vertex
            count the file is too short for, or ``max_sh_degree`` below the file's degree.
    """
    path = Path(path)
    if not path.is_file():
        raise MpgymError(f"no .ply file at {path}; {ACCEPTED}.")
    if max_sh_degree is not None and (isinstance(max_sh_degree, bool) or not isinstance(
            max_sh_degree, int) or not 0 <= max_sh_degree <= MAX_SH_DEGREE):
        raise MpgymError(f"max_sh_degree must be None or an integer 0..{MAX_SH_DEGREE}; got "
                         f"{max_sh_degree!r}.")
    count, degree = _check_layout(path, _read_header(path))
    if max_sh_degree is not None and max_sh_degree < degree:
        raise MpgymError(f"{path} holds SH degree {degree}; max_sh_degree={max_sh_degree} would "
                         f"drop its higher bands. Pass max_sh_degree >= {degree} or None.")
    names = [n for n in ply_property_names(degree) if n not in ("nx", "ny", "nz")]
    cols = _read_vertices(path, count, names)
    rest_n = num_sh_bases(degree) - 1
    k_model = num_sh_bases(degree if max_sh_degree is None else max_sh_degree)
    rest = torch.zeros(count, 0, 3)
    if rest_n:  # channel-major in the file: [N, 3, K-1] -> [N, K-1, 3]
        rest = _stack(cols, names[6:6 + 3 * rest_n], path).reshape(count, 3, rest_n).transpose(1, 2)
    tensors: dict[str, Any] = {
        "means": _stack(cols, ["x", "y", "z"], path),
        "log_scales": _stack(cols, [f"scale_{i}" for i in range(3)], path),
        "quats": _stack(cols, [f"rot_{i}" for i in range(4)], path),
        "opacity_logits": _stack(cols, ["opacity"], path)[:, 0],
        "sh_dc": _stack(cols, ["f_dc_0", "f_dc_1", "f_dc_2"], path)[:, None, :],
        "sh_rest": torch.cat([rest, torch.zeros(count, k_model - 1 - rest_n, 3)], 1),
    }
    return GaussianModel.from_tensors(tensors, max_sh_degree=(
        degree if max_sh_degree is None else max_sh_degree), sh_degree=degree)
