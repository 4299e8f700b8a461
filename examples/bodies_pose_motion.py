"""Pose and shape the SMPL-format body: shape components, and a walk and a cartwheel clip.

Run: python examples/bodies_pose_motion.py   (writes runs/examples/bodies_motion/)

Shows the SMPL-compatible model built by ``bodies.synthetic`` (loaded like any SMPL file), its
first shape components at +-2 standard deviations, and frames of two DeepMimic mocap clips
(shipped with pybullet) retargeted to the SMPL tree, with the root motion of the clip. Writes
PNG strips and one PLY mesh per clip frame shown. A few seconds.
"""

import numpy as np
import torch
import trimesh

from bodies.model import BodyModel
from bodies.motion import load_clip
from bodies.render import body_figure
from mpgym import RunDir

model = BodyModel("synthetic")
run = RunDir.create("examples", "bodies_motion")

# shape space: first three components at -2 and +2 standard deviations
betas = torch.zeros(6, 10)
for i in range(3):
    betas[2 * i, i], betas[2 * i + 1, i] = -2.0, 2.0
with torch.no_grad():
    out = model(betas)
panels = [
    dict(vertices=v.numpy(), faces=model.faces, title=f"beta{i // 2} = {(-2, 2)[i % 2]:+d}")
    for i, v in enumerate(out.vertices)
]
print("picture:", body_figure(run.file("shapes.png"), panels))

for name in ("walk", "cartwheel"):
    clip = load_clip(name)
    frames = np.linspace(0, len(clip.body_pose) - 1, 6).astype(int)
    with torch.no_grad():
        out = model(
            betas=torch.zeros(len(frames), 10),
            body_pose=torch.as_tensor(clip.body_pose[frames], dtype=torch.float32),
            global_orient=torch.as_tensor(clip.global_orient[frames], dtype=torch.float32),
        )
    panels = []
    for k, f in enumerate(frames):
        v = out.vertices[k].numpy()
        v = v - v.mean(0)  # centre each frame in its panel
        panels.append(
            dict(vertices=v, faces=model.faces, title=f"{name} t={clip.durations[:f].sum():.2f} s")
        )
        trimesh.Trimesh(v, model.faces, process=False).export(run.file(f"{name}_{k}.ply"))
    print("picture:", body_figure(run.file(f"{name}.png"), panels))
print(f"meshes: {run.path}")
