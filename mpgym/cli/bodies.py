"""``mpgym fit-smpl INPUT``: fit the body model to 3D joints, 2D keypoints or a point cloud."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from mpgym.errors import MpgymError


@dataclass
class FitSmplArgs:
    """Fit the SMPL-format body model and write parameters, mesh, picture and metrics."""

    input: tyro.conf.Positional[Path]
    """(24, 3) joints .npy/.json (m), (24, 2) keypoints .npy (px, with --focal), or .ply."""
    model: str = "synthetic"
    """'synthetic' or a path to an SMPL .npz/.pkl."""
    out: Path = Path("runs/bodies/fit")
    """Run directory."""
    focal: float = 0.0
    """Focal length in pixels for 2D keypoints (camera at the origin looking down +z)."""
    center: tuple[float, float] = (500.0, 500.0)
    """Principal point for 2D keypoints."""
    method: Literal["smplify", "learned", "learned+smplify"] = "smplify"
    """2D keypoints: SMPLify, the learned fitter (trained and cached on first use, ~6
    CPU-minutes), or SMPLify initialised by the learned fitter."""


def _load(path: Path):
    import json

    import numpy as np

    if not path.exists():
        raise MpgymError(f"{path} does not exist; accepted: .npy, .json (joints/keypoints), .ply.")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".json":
        return np.asarray(json.loads(path.read_text()), float)
    if path.suffix == ".ply":
        import trimesh

        return np.asarray(trimesh.load(path, process=False).vertices)
    raise MpgymError(f"{path}: unknown input type {path.suffix!r}; accepted: .npy, .json, .ply.")


def fit_smpl_main(argv: list[str]) -> int:
    """Entry point of ``mpgym fit-smpl``."""
    import numpy as np
    import torch

    from bodies.fit import PRESETS, Camera, fit_to_joints, fit_to_keypoints, fit_to_scan
    from bodies.model import BodyModel
    from bodies.render import body_figure
    from mpgym.runs import RunDir

    args = tyro.cli(FitSmplArgs, args=argv, prog="mpgym fit-smpl")
    x = _load(args.input)
    model = BodyModel(args.model, dtype=torch.float64)
    t = torch.as_tensor(x, dtype=torch.float64)
    if args.input.suffix == ".ply":
        r = fit_to_scan(model, t[None], PRESETS["scan"])
    elif t.shape[-1] == 2:
        if args.focal <= 0:
            raise MpgymError(
                "2D keypoints need --focal (pixels) and --center; accepted: focal > 0."
            )
        cam = Camera(args.focal, args.center, R=np.eye(3))
        if args.method == "smplify":
            r = fit_to_keypoints(model, t, cam)
        else:
            from bodies.learned import default_fitter

            r = default_fitter().fit(model, t, cam)
            if args.method == "learned+smplify":
                r = fit_to_keypoints(model, t, cam, PRESETS["refine2d"], init=r)
    elif t.shape[-1] == 3:
        r = fit_to_joints(model, t, PRESETS["joints3d"])
    else:
        raise MpgymError(f"input has shape {tuple(t.shape)}; accepted: (24, 3), (24, 2) or a .ply.")
    run = RunDir(args.out)
    run.write_config(args, kind=args.method if t.shape[-1] == 2 else "smplify")
    np.savez(
        run.file("params.npz"),
        betas=r.betas.numpy(),
        body_pose=r.body_pose.numpy(),
        global_orient=r.global_orient.numpy(),
        transl=r.transl.numpy(),
    )
    import trimesh

    trimesh.Trimesh(r.vertices[0].numpy(), model.faces, process=False).export(run.file("mesh.ply"))
    body_figure(run.file("fit.png"), [dict(vertices=r.vertices[0].numpy(), faces=model.faces)])
    run.write_json("metrics.json", {"energy_per_stage": r.losses, "seconds": r.seconds})
    print(f"wrote {run.path}")
    return 0
