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
from typing import Literal

import torch
from torch import Tensor

__all__ = ["mse_to_psnr", "psnr", "ssim", "ssim_tensor"]


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


def _blur_matrix(n: int, g: Tensor, padding: Literal["same", "valid"]) -> Tensor:
    """``[m, n]`` matrix applying the 1D window ``g [w]`` along an axis of length ``n``.

    ``"same"``: ``m = n``, zero padding; ``"valid"``: ``m = n - w + 1``. A banded matmul is
    tens of times faster on CPU than PyTorch's depthwise ``conv2d`` at image sizes like these.
    """
    w = len(g)
    m = n if padding == "same" else n - w + 1
    shift = w // 2 if padding == "same" else 0
    rows = torch.arange(m, device=g.device)[:, None]
    cols = rows - shift + torch.arange(w, device=g.device)[None]  # [m, w] input index per tap
    ok = (cols >= 0) & (cols < n)
    mat = torch.zeros(m, n, dtype=g.dtype, device=g.device)
    mat[rows.expand(-1, w)[ok], cols[ok]] = g.expand(m, w)[ok]
    return mat


def ssim_tensor(pred: Tensor, target: Tensor, *, max_val: float = 1.0, window: int = 11,
                sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03,
                padding: Literal["same", "valid"] = "valid") -> Tensor:
    """Mean SSIM as a differentiable 0-dim tensor (the training loss of 3DGS uses it).

    Args:
        pred: ``[..., H, W, C]`` in ``[0, max_val]``.
        target: same shape.
        max_val: the data range ``L``.
        window: Gaussian window size.
        sigma: Gaussian standard deviation.
        k1: constant ``C1 = (k1 L)^2``.
        k2: constant ``C2 = (k2 L)^2``.
        padding: ``"valid"`` averages only where the window fits (:func:`ssim`'s number);
            ``"same"`` zero-pads the window at the borders, as 3DGS's training loss does.
    """
    x, y = pred.movedim(-1, -3), target.movedim(-1, -3)  # [..., C, H, W]
    g = _gaussian_window(window, sigma, x.dtype, x.device)
    bh = _blur_matrix(x.shape[-2], g, padding)  # [H', H]
    bw = _blur_matrix(x.shape[-1], g, padding).T  # [W, W']

    def blur(z: Tensor) -> Tensor:  # separable Gaussian, per channel: [..., C, H', W']
        return bh @ z @ bw

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean()


def ssim(pred: Tensor, target: Tensor, *, max_val: float = 1.0, window: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> float:
    """Structural similarity (mean SSIM) of two images, in float64.

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
    return float(ssim_tensor(pred.double(), target.double(), max_val=max_val, window=window,
                             sigma=sigma, k1=k1, k2=k2))
