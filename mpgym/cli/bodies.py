"""``mpgym fit-smpl INPUT``: fit the body model to 3D joints, 2D keypoints or a point cloud.

The input is read and checked first (:func:`load_target`), then the flags and the run directory,
then the model; only then does the fit start, and the run (``config.json``, ``params.npz``, one
``mesh_NNN.ply`` per body, ``fit.png`` with the target drawn over the fitted body, and
``metrics.json``) is written into a temporary directory that is moved into place at the end.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tyro

from mpgym.errors import MpgymError, check_positive

Target = Literal["joints", "keypoints", "scan"]
ARRAY_SUFFIXES = (".npy", ".json")
SCAN_SUFFIXES = (".ply", ".obj")
MAX_BODIES = 10_000
"""Most bodies one ``.npy``/``.json`` input may hold."""
MAX_JOINTS = 1_000
MAX_SCAN_POINTS = 5_000_000
MIN_SCAN_POINTS = 100
_ACCEPTED_ARRAY = (
    "accepted: (24, 3) or (B, 24, 3) joints in metres, or (24, 2) or (B, 24, 2) keypoints in "
    "pixels, as .npy or .json (NaN or null marks a missing joint)"
)
_ACCEPTED_SCAN = (
    f"accepted: a scan point cloud or mesh in metres (.ply or .obj) with {MIN_SCAN_POINTS} to "
    f"{MAX_SCAN_POINTS} finite points"
)
_ACCEPTED = f"{_ACCEPTED_ARRAY}; or {_ACCEPTED_SCAN.removeprefix('accepted: ')}"


@dataclass
class FitSmplArgs:
    """Fit the SMPL-format body model and write parameters, meshes, picture and metrics."""

    input: tyro.conf.Positional[Path]
    """(24, 3) or (B, 24, 3) joints in metres (.npy/.json); (24, 2) or (B, 24, 2) keypoints in
    pixels (.npy/.json, with --focal); or a scan point cloud or mesh in metres (.ply/.obj)."""
    model: str = "synthetic"
    """'synthetic' or a path to an SMPL .npz/.pkl."""
    out: Path = Path("runs/bodies/fit")
    """Run directory to write: config.json, params.npz, mesh_000.ply (one per body), fit.png
    and metrics.json. An earlier fit-smpl run there is replaced; anything else needs
    --overwrite."""
    focal: float | None = None
    """Focal length in pixels for 2D keypoints (camera at the origin looking down +z)."""
    center: tuple[float, float] = (500.0, 500.0)
    """Principal point in pixels for 2D keypoints."""
    method: Literal["smplify", "learned", "learned+smplify"] = "smplify"
    """2D keypoints: SMPLify, the learned fitter (trained and cached on first use, ~6
    CPU-minutes), or SMPLify initialised by the learned fitter."""
    steps: int | None = None
    """Optimiser iterations per stage (default: the preset's, 300 for joints, 50 for keypoints
    and scans, 20 to refine the learned fitter's result)."""
    overwrite: bool = False
    """Replace the run directory even if it holds another kind of run or other files."""


# ----------------------------------------------------------------------------- reading inputs
def _bounded_shape(shape: tuple[int, ...], path: Path) -> tuple[int, ...]:
    """Refuse shapes other than ``(J, d)`` / ``(B, J, d)`` with ``d`` in 2, 3 within bounds."""
    ok = (
        len(shape) in (2, 3)
        and shape[-1] in (2, 3)
        and 1 <= shape[-2] <= MAX_JOINTS
        and (len(shape) == 2 or 1 <= shape[0] <= MAX_BODIES)
    )
    if not ok:
        raise MpgymError(f"{path} holds an array of shape {tuple(shape)}; {_ACCEPTED_ARRAY}.")
    return shape


def _read_npy(path: Path) -> np.ndarray:
    """A small numeric ``.npy``: header, dtype and size checked before the data is read."""
    fmt = np.lib.format
    try:
        with path.open("rb") as f:
            version = fmt.read_magic(f)
            read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
            if version not in read:
                raise MpgymError(f"{path} has .npy format {version}; accepted: 1.0, 2.0.")
            shape, _, dtype = read[version](f)
            header = f.tell()
    except MpgymError:
        raise
    except Exception as exc:  # noqa: BLE001 -- hostile input: any failure is a refusal
        raise MpgymError(
            f"{path} is not a readable .npy file ({exc}); {_ACCEPTED_ARRAY}."
        ) from None
    if dtype.kind not in "iuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise MpgymError(f"{path} holds {dtype} values; {_ACCEPTED_ARRAY}.")
    _bounded_shape(shape, path)
    if header + math.prod(shape) * dtype.itemsize != path.stat().st_size:
        raise MpgymError(
            f"{path} has {path.stat().st_size} bytes, not what its header declares ({shape} "
            f"{dtype}): a truncated or corrupt file."
        )
    try:
        return np.load(path, allow_pickle=False).astype(np.float64)
    except Exception as exc:  # noqa: BLE001
        raise MpgymError(f"{path} could not be read ({exc}).") from None


def _read_json(path: Path) -> np.ndarray:
    """Nested lists of numbers (``null`` or ``NaN`` for a missing joint)."""
    if path.stat().st_size > 64 * 2**20:
        raise MpgymError(f"{path} is larger than 64 MB; {_ACCEPTED_ARRAY}.")
    try:
        data = json.loads(path.read_bytes())
        arr = np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError, RecursionError) as exc:
        raise MpgymError(
            f"{path} is not a JSON array of numbers ({type(exc).__name__}: {exc}); "
            f"{_ACCEPTED_ARRAY}."
        ) from None
    _bounded_shape(arr.shape, path)
    return arr


def _check_ply_header(path: Path) -> None:
    """Refuse a PLY whose declared element counts exceed what its size can hold."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(65536)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        raise MpgymError(f"{path} is not a PLY file (no 'ply' ... 'end_header' header).")
    total = 0
    for line in head[:end].decode("latin1").splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "element":
            if not words[2].isdigit():
                raise MpgymError(f"{path}: PLY element count {words[2]!r} is not a count.")
            total += int(words[2])
    if total > size:
        raise MpgymError(f"{path} declares {total} elements in {size} bytes: a corrupt file.")


def _read_scan(path: Path) -> np.ndarray:
    """The vertices of a point cloud or mesh (scenes concatenated), ``(N, 3)`` float64."""
    import trimesh

    if path.suffix.lower() == ".ply":
        _check_ply_header(path)
    try:
        loaded = trimesh.load(str(path), process=False)
        if isinstance(loaded, trimesh.Scene):
            parts = [np.asarray(g.vertices) for g in loaded.geometry.values()
                     if hasattr(g, "vertices")]
            verts = np.concatenate(parts) if parts else np.zeros((0, 3))
        else:
            verts = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))))
        verts = verts.astype(np.float64)
    except MpgymError:
        raise
    except Exception as exc:  # noqa: BLE001 -- hostile input: any failure is a refusal
        raise MpgymError(
            f"{path} could not be read as a point cloud or mesh ({type(exc).__name__}: {exc}); "
            f"{_ACCEPTED_SCAN}."
        ) from None
    n = len(verts)
    if verts.ndim != 2 or verts.shape[1] != 3 or not MIN_SCAN_POINTS <= n <= MAX_SCAN_POINTS:
        raise MpgymError(f"{path} holds {n} points of shape {verts.shape}; {_ACCEPTED_SCAN}.")
    if not np.isfinite(verts).all():
        raise MpgymError(f"{path} has NaN or infinite coordinates; {_ACCEPTED_SCAN}.")
    return verts


def load_target(path: str | Path) -> tuple[Target, np.ndarray]:
    """Read what ``fit-smpl`` fits to, refusing anything malformed with one :class:`MpgymError`.

    Args:
        path: ``.npy`` / ``.json`` joints or keypoints, or a ``.ply`` / ``.obj`` scan.

    Returns:
        ``("joints", [B, J, 3])``, ``("keypoints", [B, J, 2])`` (NaN where missing) or
        ``("scan", [N, 3])``, float64.
    """
    path = Path(path)
    if not path.is_file():
        raise MpgymError(f"{path} does not exist or is not a file; {_ACCEPTED}.")
    suffix = path.suffix.lower()
    if suffix in SCAN_SUFFIXES:
        return "scan", _read_scan(path)
    if suffix not in ARRAY_SUFFIXES:
        raise MpgymError(f"{path}: unknown input type {path.suffix!r}; {_ACCEPTED}.")
    arr = _read_npy(path) if suffix == ".npy" else _read_json(path)
    if np.isinf(arr).any():
        raise MpgymError(f"{path} has infinite values; {_ACCEPTED_ARRAY}.")
    arr = arr if arr.ndim == 3 else arr[None]
    return ("joints" if arr.shape[-1] == 3 else "keypoints"), arr


# ----------------------------------------------------------------------------- fitting
def _check_flags(args: FitSmplArgs, target: Target) -> None:
    if args.steps is not None:
        check_positive("--steps", args.steps)
    if target == "keypoints":
        if args.focal is None:
            raise MpgymError(
                "2D keypoints need --focal (pixels) and --center; accepted: a focal length > 0."
            )
        check_positive("--focal", args.focal, integer=False)
        if not all(math.isfinite(c) for c in args.center):
            raise MpgymError(f"--center must be finite pixel coordinates; got {args.center}.")
    elif args.focal is not None:
        check_positive("--focal", args.focal, integer=False)


def _config(args: FitSmplArgs, preset: str):
    from bodies.fit import PRESETS

    cfg = PRESETS[preset]
    return cfg if args.steps is None else dataclasses.replace(cfg, steps_per_stage=args.steps)


def _fit(args: FitSmplArgs, target: Target, x: np.ndarray, model, camera):
    """Run the fit for the input's kind; returns the :class:`bodies.fit.FitResult`."""
    import torch

    from bodies.fit import fit_to_joints, fit_to_keypoints, fit_to_scan

    t = torch.as_tensor(x, dtype=torch.float64)
    if target == "scan":
        return fit_to_scan(model, t[None], _config(args, "scan"))
    if target == "joints":
        return fit_to_joints(model, t, _config(args, "joints3d"))
    if args.method == "smplify":
        return fit_to_keypoints(model, t, camera, _config(args, "smplify"))
    from bodies.learned import default_fitter

    r = default_fitter().fit(model, t, camera)
    if args.method == "learned+smplify":
        r = fit_to_keypoints(model, t, camera, _config(args, "refine2d"), init=r)
    return r


def fit_metrics(target: Target, x: np.ndarray, r, camera=None) -> dict[str, Any]:
    """How well the fit matches its target, per body and on average.

    Args:
        target: the input's kind.
        x: the input (``[B, J, 3]`` joints, ``[B, J, 2]`` keypoints or ``[N, 3]`` scan points).
        r: the :class:`bodies.fit.FitResult`.
        camera: the keypoints' camera.

    Returns:
        ``final_energy``, ``energy_per_stage``, ``seconds`` and one of ``joint_error_mm``
        (mean over the given joints), ``keypoint_error_px`` or, for scans, ``chamfer_mm`` (mean
        of the two directions' mean nearest-neighbour distances) with ``scan_to_body_mm`` and
        ``body_to_scan_mm``; each a per-body list, with its mean as ``mean_...``.
    """
    import torch

    from mpgym.geometry import nearest_sq_distances

    out: dict[str, Any] = {
        "target": target,
        "bodies": int(r.betas.shape[0]),
        "final_energy": r.losses[-1] if r.losses else None,
        "energy_per_stage": list(r.losses),
        "seconds": r.seconds,
    }
    if target == "scan":
        pts = torch.as_tensor(x, dtype=r.vertices.dtype)[None]
        a, b = nearest_sq_distances(pts, r.vertices)
        s2b, b2s = 1000 * a.sqrt().mean(1), 1000 * b.sqrt().mean(1)
        per = {"scan_to_body_mm": s2b, "body_to_scan_mm": b2s, "chamfer_mm": (s2b + b2s) / 2}
    else:
        x_t = torch.as_tensor(x, dtype=r.joints.dtype)
        seen = torch.isfinite(x_t).all(-1)
        if target == "joints":
            name, pred, scale = "joint_error_mm", r.joints, 1000.0
        else:
            name, pred, scale = "keypoint_error_px", camera.project(r.joints), 1.0
        err = scale * (pred - torch.nan_to_num(x_t)).norm(dim=-1)
        per = {name: (err * seen).sum(1) / seen.sum(1).clamp_min(1)}
    for k, v in per.items():
        out[k] = [round(float(e), 3) for e in v]
        out[f"mean_{k}"] = round(float(v.mean()), 3)
    return out


def _summary(m: dict[str, Any]) -> str:
    n = m["bodies"]
    parts = [f"fit {n} bod{'y' if n == 1 else 'ies'} to {m['target']} in {m['seconds']:.1f} s"]
    if m["final_energy"] is not None:
        parts.append(f"final energy {m['final_energy']:.4g}")
    for key, text in (("mean_joint_error_mm", "mean joint error {:.1f} mm"),
                      ("mean_keypoint_error_px", "mean keypoint error {:.1f} px"),
                      ("mean_chamfer_mm", "Chamfer distance {:.1f} mm")):
        if key in m:
            parts.append(text.format(m[key]))
    return "; ".join(parts)


# ----------------------------------------------------------------------------- writing
def _panel_camera(target: Target, vertices: np.ndarray, camera) -> tuple:
    """``(R, t, focal, center)``: the input's camera for keypoints, else one facing the body."""
    if target == "keypoints":
        return np.asarray(camera.R, float), np.asarray(camera.t, float), camera.focal, camera.center
    R = np.diag([1.0, -1.0, -1.0])
    return R, np.array([0.0, 0.0, 3.3]) - R @ vertices.mean(0), 400.0, (0.0, 0.0)


def overlay_figure(path: Path, model, r, target: Target, x: np.ndarray, camera=None,
                   *, max_panels: int = 4) -> Path:
    """The fitted bodies (first ``max_panels``) with their target drawn on top, as one PNG.

    Joints and keypoints: input in red, the fit's joints as green crosses; scans: the scan's
    points in red over the body.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from bodies.render import draw_mesh, draw_skeleton, project

    n = min(max_panels, len(r.vertices))
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.4), dpi=110, squeeze=False)
    parents = model.parents.tolist()
    for b, ax in enumerate(axes[0]):
        v, j = r.vertices[b].numpy(), r.joints[b].numpy()
        R, t, f, c = _panel_camera(target, v, camera)
        draw_mesh(ax, v, model.faces, R, t, f, c, alpha=0.85)
        uv = [project(v, R, t, f, c)[0]]
        if target == "scan":
            pts = project(x[:: max(1, len(x) // 4000)], R, t, f, c)[0]
            ax.plot(pts[:, 0], pts[:, 1], ".", color="tab:red", ms=1.0, alpha=0.6, label="scan")
            uv.append(pts)
        else:
            seen = np.isfinite(x[b]).all(-1)
            uv_in = x[b] if target == "keypoints" else project(np.nan_to_num(x[b]), R, t, f, c)[0]
            draw_skeleton(ax, uv_in, color="tab:red", parents=parents, visible=seen, label="input")
            draw_skeleton(ax, project(j, R, t, f, c)[0], color="tab:green", parents=parents,
                          marker="x", label="fit")
            uv.append(uv_in[seen])
        allp = np.concatenate(uv)
        allp = allp[np.isfinite(allp).all(1)]
        lo, hi = allp.min(0), allp.max(0)
        pad = 0.08 * float((hi - lo).max()) + 1.0
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(hi[1] + pad, lo[1] - pad)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(f"body {b}", fontsize=8)
    axes[0][0].legend(fontsize=6, loc="lower left", markerscale=3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _write_run(run, args: FitSmplArgs, target: Target, x: np.ndarray, model, r, camera,
               metrics: dict[str, Any]) -> None:
    import trimesh

    run.write_config(args, kind="fit-smpl", target=target)
    np.savez(
        run.file("params.npz"),
        betas=r.betas.numpy(),
        body_pose=r.body_pose.numpy(),
        global_orient=r.global_orient.numpy(),
        transl=r.transl.numpy(),
    )
    for b, v in enumerate(r.vertices.numpy()):
        trimesh.Trimesh(v, model.faces, process=False).export(run.file(f"mesh_{b:03d}.ply"))
    overlay_figure(run.file("fit.png"), model, r, target, x, camera)
    run.write_json("metrics.json", metrics)


def fit_smpl_main(argv: list[str]) -> int:
    """Entry point of ``mpgym fit-smpl``."""
    args = tyro.cli(FitSmplArgs, args=argv, prog="mpgym fit-smpl")
    from mpgym.runs import check_run_target, staged_run

    target, x = load_target(args.input)
    _check_flags(args, target)
    check_run_target(args.out, kind="fit-smpl", overwrite=args.overwrite)

    import torch

    from bodies.fit import Camera
    from bodies.model import BodyModel

    model = BodyModel(args.model, dtype=torch.float64)
    camera = None
    if target == "keypoints":
        camera = Camera(float(args.focal), tuple(args.center), R=np.eye(3))
    r = _fit(args, target, x, model, camera)
    metrics = fit_metrics(target, x, r, camera)
    with staged_run(args.out, kind="fit-smpl", overwrite=args.overwrite) as run:
        _write_run(run, args, target, x, model, r, camera, metrics)
    print(_summary(metrics))
    print(f"wrote {args.out}")
    return 0
