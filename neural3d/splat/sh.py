"""View-dependent colour of Gaussians as real spherical harmonics up to degree 3.

Each Gaussian carries ``K = (degree + 1)^2`` coefficients per colour channel, ``[N, K, C]``;
its colour seen along the direction ``d`` (from the camera centre to the Gaussian) is
``c(d) = sum_k coeffs[k] * Y_k(d / |d|)``. The basis is the real, orthonormal one with the
Condon-Shortley phase (``Y_1 = (-C1 y, C1 z, -C1 x)`` ...), ordered by degree ``l`` and then
``m = -l .. l`` -- the constants and signs of the 3DGS reference (Kerbl et al. 2023,
``utils/sh_utils.py``, from PlenOctrees), which are also Instant-NGP's direction encoding, so
the basis itself is :func:`neural3d.encodings.spherical_harmonics`.

The DC coefficient stores colours offset by 0.5 (:func:`rgb_to_sh`): a Gaussian with only a DC
term ``f`` shows ``SH_C0 * f + 0.5`` from every direction.

References:
    Kerbl et al., 3D Gaussian Splatting for Real-Time Radiance Field Rendering, SIGGRAPH 2023,
    https://doi.org/10.1145/3592433.
    Yu et al., PlenOctrees for Real-time Rendering of Neural Radiance Fields, ICCV 2021.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mpgym.errors import MpgymError
from neural3d.encodings import spherical_harmonics

__all__ = ["MAX_SH_DEGREE", "SH_C0", "eval_sh", "num_sh_bases", "rgb_to_sh", "sh_basis",
           "sh_to_rgb"]

SH_C0 = 0.28209479177387814
"""``Y_0 = 1 / (2 sqrt(pi))``, the constant basis function."""

MAX_SH_DEGREE = 3
"""Highest degree supported (the 3DGS reference's, 16 coefficients per channel)."""


def num_sh_bases(degree: int) -> int:
    """Number of basis functions up to ``degree``: ``(degree + 1)^2``.

    Example:
        >>> [num_sh_bases(d) for d in range(4)]
        [1, 4, 9, 16]
    """
    return (degree + 1) ** 2


def _check_degree(degree: int) -> None:
    if not isinstance(degree, int) or isinstance(degree, bool) or not (
            0 <= degree <= MAX_SH_DEGREE):
        raise MpgymError(f"SH degree must be an integer 0..{MAX_SH_DEGREE}; got {degree!r}.")


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Real SH basis ``Y_k(d / |d|)`` for ``k < (degree + 1)^2``.

    Args:
        degree: 0..3.
        dirs: ``[..., 3]`` directions, any non-zero length (a zero vector gives only ``Y_0``).

    Returns:
        ``[..., (degree + 1)^2]``.

    Example:
        >>> d = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64)
        >>> sh_basis(1, d).tolist()  # (C0, -C1 y, C1 z, -C1 x)
        [[0.28209479177387814, -0.0, 0.4886025119029199, -0.0]]
    """
    _check_degree(degree)
    unit = torch.nn.functional.normalize(dirs, dim=-1)
    return spherical_harmonics(unit, degree + 1)


def eval_sh(degree: int, coeffs: Tensor, dirs: Tensor) -> Tensor:
    """Colour from SH coefficients: ``sum_{k < (degree+1)^2} coeffs[..., k, :] * Y_k(d)``.

    Args:
        degree: active degree 0..3; coefficients beyond ``(degree + 1)^2`` are ignored.
        coeffs: ``[N, K, C]`` with ``K >= (degree + 1)^2`` (any leading dims, matching ``dirs``).
        dirs: ``[N, 3]`` viewing directions, normalised here.

    Returns:
        ``[N, C]`` (before the +0.5 offset and clamping a renderer applies).

    Example:
        >>> f64 = torch.float64
        >>> eval_sh(0, torch.ones(1, 1, 2, dtype=f64), torch.tensor([[0.0, 0.0, 1.0]])).tolist()
        [[0.28209479177387814, 0.28209479177387814]]
    """
    k = num_sh_bases(degree)
    if coeffs.dim() < 2 or coeffs.shape[-2] < k:
        raise MpgymError(f"eval_sh at degree {degree} needs coefficients [..., K >= {k}, C]; got "
                         f"shape {tuple(coeffs.shape)}.")
    if dirs.shape[-1] != 3 or dirs.shape[:-1] != coeffs.shape[:-2]:
        raise MpgymError(f"eval_sh: directions {tuple(dirs.shape)} do not match coefficients "
                         f"{tuple(coeffs.shape)}; expected [..., 3] with the same leading dims.")
    dtype = torch.promote_types(coeffs.dtype, dirs.dtype)
    basis = sh_basis(degree, dirs.to(dtype))  # [..., k]
    return torch.einsum("...k,...kc->...c", basis, coeffs[..., :k, :].to(dtype))


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """DC coefficient whose colour is ``rgb``: ``(rgb - 0.5) / SH_C0``.

    Example:
        >>> rgb_to_sh(torch.tensor([0.5])).tolist()
        [0.0]
    """
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh: Tensor) -> Tensor:
    """Colour of a DC coefficient: ``sh * SH_C0 + 0.5`` (inverse of :func:`rgb_to_sh`)."""
    return sh * SH_C0 + 0.5

