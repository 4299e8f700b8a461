"""Demo stop: the synthetic SMPL-compatible body in real poses, and a fit to noisy 2D keypoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mpgym.report import Section


def run(out: Path) -> Section:
    """Pose the body with clip poses; fit two held-out bodies to 2 px-noisy keypoints."""
    import numpy as np
    import torch

    from bodies.fit import Camera, FitConfig, fit_to_keypoints
    from bodies.metrics import pa_mpjpe
    from bodies.model import BodyModel
    from bodies.motion import clip_poses
    from bodies.render import body_figure

    model = BodyModel(dtype=torch.float64)
    te = clip_poses("test", mirror=False).reshape(-1, 69)
    g = torch.Generator().manual_seed(0)
    idx = [0, 80, 160, 240]
    betas = torch.randn(4, 10, generator=g, dtype=torch.float64)
    with torch.no_grad():
        gt = model(betas, torch.as_tensor(te[idx]))
    poses_png = body_figure(
        out / "poses.png", [dict(vertices=v.numpy(), faces=model.faces) for v in gt.vertices]
    )
    cam = Camera(400.0, (128.0, 128.0), t=np.array([0.0, -0.3, 3.3]))
    kp = cam.project(gt.joints[:2]) + 2.0 * torch.randn(2, 24, 2, generator=g, dtype=torch.float64)
    r = fit_to_keypoints(model, kp, cam, dataclasses.replace(FitConfig(), steps_per_stage=15))
    panels = []
    for b in range(2):
        panels.append(
            dict(
                vertices=r.vertices[b].numpy(),
                faces=model.faces,
                keypoints=kp[b].numpy(),
                pred_keypoints=cam.project(r.joints[b]).numpy(),
                title=f"fit {b}",
            )
        )
    fit_png = body_figure(out / "fit_2d.png", panels)
    err = float(pa_mpjpe(r.joints, gt.joints[:2]).mean())
    return Section(
        title="bodies: SMPL-compatible model and SMPLify-style fitting",
        text="Synthetic SMPL-format body posed with held-out DeepMimic mocap poses; "
        "fit to 2D keypoints (red: input, green: fit).",
        images=[poses_png, fit_png],
        metrics={"PA-MPJPE 2D fit (mm)": err, "fit seconds": r.seconds},
    )
