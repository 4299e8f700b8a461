"""Image quality metrics: PSNR and SSIM, on images in ``[0, 1]``.

SSIM follows Wang et al. 2004 as the NeRF papers report it: Gaussian window of size 11 and
sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, population (not sample) covariances, mean over pixels
whose window fits in the image and over channels -- the same number as scikit-image's
``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1)``.

References:
    Wang, Bovik, Sheikh, Simoncelli, Image quality assessment: from error visibility to
    structural similarity, IEEE TIP 2004, https://doi.org/10.1109/TIP.2003.819861.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["mse_to_psnr", "psnr", "ssim"]


def mse_to_psnr(mse: float | Tensor, max_val: float = 1.0):
    """``10 log10(max_val^2 / mse)``; e.g. ``mse_to_psnr(0.01) == 20.0``."""
    if isinstance(mse, Tensor):
        return 10.0 * torch.log10(max_val**2 / mse)
    return 10.0 * math.log10(max_val**2 / mse) if mse > 0 else math.inf


def psnr(pred: Tensor, target: Tensor, max_val: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels.

    Args:
        pred: ``[..., H, W, C]`` image(s) in ``[0, max_val]``.
        target: same shape.
        max_val: the data range.

    Example:
        >>> psnr(torch.full((2, 2, 3), 0.1), torch.zeros(2, 2, 3))
        20.0
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ.")
    mse = float(((pred.double() - target.double()) ** 2).mean())
    return round(float(mse_to_psnr(mse, max_val)), 10)


def _gaussian_window(size: int, sigma: float, dtype, device) -> Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: Tensor, target: Tensor, *, max_val: float = 1.0, window: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> float:
    """Structural similarity (mean SSIM) of two images.

    Args:
        pred: ``[H, W, C]`` or ``[B, H, W, C]`` in ``[0, max_val]``.
        target: same shape.
        max_val: the data range ``L``.
        window: Gaussian window size (valid region only, as scikit-image crops).
        sigma: Gaussian standard deviation.
        k1: constant ``C1 = (k1 L)^2``.
        k2: constant ``C2 = (k2 L)^2``.

    Returns:
        The mean SSIM (1 for identical images).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ.")
    x = pred.double().reshape(-1, *pred.shape[-3:]).permute(0, 3, 1, 2)  # [B, C, H, W]
    y = target.double().reshape(-1, *target.shape[-3:]).permute(0, 3, 1, 2)
    C = x.shape[1]
    g = _gaussian_window(window, sigma, x.dtype, x.device)
    wx = g.view(1, 1, 1, -1).expand(C, 1, 1, window)
    wy = g.view(1, 1, -1, 1).expand(C, 1, window, 1)

    def blur(z: Tensor) -> Tensor:  # separable Gaussian, 'valid' region
        return F.conv2d(F.conv2d(z, wx, groups=C), wy, groups=C)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())
