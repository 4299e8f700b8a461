"""Fit the SMPL-format body to noisy 2D keypoints and to exact 3D joints; write PNG and PLY.

Run: python examples/bodies_fit_keypoints.py [--learned]   (writes runs/examples/bodies_fit/)

Four held-out bodies (random shapes, poses from the last 20% of the DeepMimic clips, which the
pose prior never saw) are seen by a known camera; their 24 joints are projected with 2 px noise
and two keypoints of the first body are hidden (NaN = missing). SMPLify fits them; with
``--learned`` the learned fitter (bodies.learned, trained and cached on first use: ~6 CPU-minutes)
fits them in a few steps and initialises SMPLify. The same bodies are then fitted to their exact
3D joints. About a minute on one CPU core without ``--learned``.
"""

import sys

import numpy as np
import torch
import trimesh

from bodies.fit import PRESETS, Camera, fit_to_joints, fit_to_keypoints
from bodies.metrics import pa_mpjpe, pve
from bodies.model import BodyModel
from bodies.motion import clip_poses
from bodies.render import body_figure
from mpgym import RunDir

torch.set_num_threads(1)
model = BodyModel("synthetic", dtype=torch.float64)  # built and cached on first use
g = torch.Generator().manual_seed(0)
test_poses = clip_poses("test", mirror=False).reshape(-1, 69)
pose = torch.as_tensor(test_poses[[10, 100, 190, 300]])
betas = torch.randn(4, 10, generator=g, dtype=torch.float64)
orient = torch.tensor([[0.0, 0.4, 0.0], [0.0, -0.3, 0.0], [0.0, 0.0, 0.0], [0.0, 0.2, 0.0]])
with torch.no_grad():
    gt = model(betas, pose, orient.double())

# --- 2D keypoints seen by a known camera (the same one the pictures use)
cam = Camera(400.0, (128.0, 128.0), t=np.array([0.0, -0.3, 3.3]))
kp = cam.project(gt.joints) + 2.0 * torch.randn(4, 24, 2, generator=g, dtype=torch.float64)
kp[0, [20, 22]] = float("nan")  # left wrist and hand not detected
fits = {"smplify": fit_to_keypoints(model, kp, cam)}
if "--learned" in sys.argv:
    from bodies.learned import default_fitter

    learned = default_fitter().fit(model, kp, cam)
    fits["learned"] = learned
    fits["learned + smplify"] = fit_to_keypoints(model, kp, cam, PRESETS["refine2d"], init=learned)
for name, r in fits.items():
    err = pa_mpjpe(r.joints, gt.joints)
    print(f"2D {name:18s} PA-MPJPE {err.mean():6.1f} mm  ({r.seconds:.2f} s)")

run = RunDir.create("examples", "bodies_fit")
best = list(fits.values())[-1]
panels = [
    dict(
        vertices=best.vertices[b].numpy(),
        faces=model.faces,
        keypoints=kp[b].numpy(),
        pred_keypoints=cam.project(best.joints[b]).numpy(),
        title=f"{list(fits)[-1]}: {pa_mpjpe(best.joints, gt.joints)[b]:.0f} mm",
    )
    for b in range(4)
]
print("picture:", body_figure(run.file("fit_2d.png"), panels))

# --- exact 3D joints
r3 = fit_to_joints(model, gt.joints, PRESETS["joints3d"])
print(f"3D joints PVE {pve(r3.vertices, gt.vertices).mean():.1f} mm ({r3.seconds:.1f} s)")
panels = [dict(vertices=gt.vertices[b].numpy(), faces=model.faces, title="truth") for b in (0, 1)]
panels += [dict(vertices=r3.vertices[b].numpy(), faces=model.faces, title="fit") for b in (0, 1)]
print("picture:", body_figure(run.file("fit_3d.png"), panels))
for b in range(4):
    trimesh.Trimesh(best.vertices[b].numpy(), model.faces, process=False).export(
        run.file(f"fit_2d_{b}.ply")
    )
np.savez(
    run.file("params.npz"),
    betas=best.betas.numpy(),
    body_pose=best.body_pose.numpy(),
    global_orient=best.global_orient.numpy(),
    transl=best.transl.numpy(),
)
print(f"meshes and parameters: {run.path}")
