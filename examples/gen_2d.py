"""Fit RealNVP to a 2D density (two moons by default) and plot its density and samples.

python examples/gen_2d.py [moons|gaussians8|checkerboard|spirals]
-> runs/examples/gen_2d/<name>.png
"""

import sys
from pathlib import Path

import torch

from generative.data import plot_density_2d, sample_toy
from generative.flows import RealNVP2D, RealNVP2DConfig
from generative.trainer import TrainConfig, train

name = sys.argv[1] if len(sys.argv) > 1 else "moons"
out = Path("runs/examples/gen_2d")
out.mkdir(parents=True, exist_ok=True)
g = torch.Generator().manual_seed(0)
x_train, x_val = sample_toy(name, 20000, generator=g), sample_toy(name, 2000, generator=g)
flow = RealNVP2D(RealNVP2DConfig())
res = train(flow, x_train, x_val, TrainConfig(steps=2000, batch_size=256, eval_every=250))
print(f"{name}: validation NLL {res.best_val:.3f} nats per point")
plot_density_2d(
    out / f"{name}.png", flow.log_prob, flow.sample(3000, generator=g), title=f"RealNVP on {name}"
)
print(f"wrote {out / name}.png")
