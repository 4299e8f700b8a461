"""Pictures of digits models: sample grids and latent interpolations (PNG, via mpgym.plots)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from generative.data import LEVELS, SIDE
from mpgym.plots import save_image_grid


def save_digit_grid(
    path: str | Path, x: torch.Tensor, *, nrow: int = 8, levels: int = LEVELS, scale: int = 4
) -> Path:
    """Save integer images ``[n, 64]`` (levels ``0..levels-1``) as a PNG grid, dark on white."""
    imgs = 1.0 - x.detach().float().cpu().view(-1, SIDE, SIDE).numpy() / (levels - 1)
    return save_image_grid(path, imgs, nrow=nrow, scale=scale)


@torch.no_grad()
def save_interpolation(
    path: str | Path, vae: nn.Module, a: torch.Tensor, b: torch.Tensor, *, steps: int = 10
) -> Path:
    """Decode ``steps`` points between the posterior means of images ``a`` and ``b`` ``[k, 64]``."""
    za, zb = vae.encode(a)[0], vae.encode(b)[0]
    w = torch.linspace(0, 1, steps)[:, None, None]
    z = (1 - w) * za + w * zb  # [steps, k, latent]
    rows = vae.decode(z.transpose(0, 1).reshape(-1, za.shape[-1]), mean=True)
    return save_digit_grid(path, rows, nrow=steps)


def save_run_pictures(
    run_dir: str | Path,
    name: str,
    model: nn.Module,
    samples: torch.Tensor,
    x_ref: torch.Tensor | None = None,
) -> list[Path]:
    """``samples.png`` (first 64), plus ``interpolation.png`` for a VAE when ``x_ref`` is given."""
    run_dir = Path(run_dir)
    out = [save_digit_grid(run_dir / "samples.png", samples[:64])]
    if name == "vae" and x_ref is not None and len(x_ref) >= 10:
        out.append(save_interpolation(run_dir / "interpolation.png", model, x_ref[:5], x_ref[5:10]))
    return out
