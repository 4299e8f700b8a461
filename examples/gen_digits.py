"""Train a VAE and a MADE on the 8x8 digits, compare their test NLLs, and save sample grids.

python examples/gen_digits.py            # about two minutes on 2 cores
-> runs/examples/gen_digits/{real,vae,made}_samples.png, vae_interpolation.png
"""

import sys
from pathlib import Path

import torch

from generative import build_model
from generative.autoencoders import VAEConfig
from generative.data import categorical_baseline_nll, load_digits_split
from generative.evaluation import evaluate
from generative.trainer import TrainConfig, train
from generative.visuals import save_digit_grid, save_interpolation

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
out = Path("runs/examples/gen_digits")
torch.manual_seed(0)
split = load_digits_split()
save_digit_grid(out / "real_samples.png", split.x_test[:64])
print(f"independent pixels: {categorical_baseline_nll(split.x_train, split.x_test):.2f} nats")
for name, cfg in [("vae", VAEConfig(dropout=0.2)), ("made", None)]:
    model = build_model(name, cfg)
    train(model, split.x_train, split.x_val, TrainConfig(steps=steps, eval_every=200))
    result = evaluate(name, model, split, n_samples=64)
    save_digit_grid(out / f"{name}_samples.png", result.samples)
    print(
        f"{name}: {result.nll_nats:.2f} nats ({result.bound}), {result.bits_per_dim:.3f} bits/dim"
    )
    if name == "vae":
        save_interpolation(
            out / "vae_interpolation.png", model, split.x_test[:5], split.x_test[5:10]
        )
print(f"pictures in {out}/")
