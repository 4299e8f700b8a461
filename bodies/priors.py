"""Priors for fitting: a Gaussian-mixture pose prior, the knee/elbow bending prior, shape prior.

The pose prior follows SMPLify (Bogo et al. 2016): an 8-component, full-covariance Gaussian
mixture over the 69 body-pose numbers, evaluated as the negative log-likelihood of the *best*
component, ``min_k [ 0.5 (theta - mu_k)^T Sigma_k^-1 (theta - mu_k) - log(w_k / sqrt|Sigma_k|) ]``.
SMPLify fitted it on CMU mocap; here it is fitted on the DeepMimic clips shipped with pybullet
(CMU/SFU mocap, retargeted by :mod:`bodies.motion`, mirrored), on the first 80% of each clip.

References:
    Bogo, Kanazawa, Lassner, Gehler, Romero, Black. "Keep it SMPL: Automatic Estimation of 3D
    Human Pose and Shape from a Single Image", ECCV 2016. arXiv:1607.08128.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from bodies.synthetic import default_path

# body_pose indices (root excluded) of the left/right elbow y and left/right knee x angles,
# with the sign that makes bending the wrong way positive (SMPLify's indices 55, 58, 12, 15 - 3)
BEND_INDEX = (52, 55, 9, 12)
BEND_SIGN = (1.0, -1.0, -1.0, -1.0)


def gmm_path() -> Path:
    """Cache file of the fitted mixture, beside the body model.

    v2: fitted on the clips' train split; v1 caches came from an earlier split that overlapped
    today's test poses, so they are not read.
    """
    return default_path().parent / "pose_gmm_v2.npz"


def fit_pose_gmm(
    poses: np.ndarray, n_components: int = 8, seed: int = 0, reg: float = 1e-3
) -> dict[str, np.ndarray]:
    """Fit the mixture with EM (scikit-learn), deterministic for a seed.

    Args:
        poses: ``(N, 69)`` body poses.
        n_components: mixture size (SMPLify: 8).
        seed: EM initialisation seed.
        reg: added to covariance diagonals (rad^2); joints the clips never move get std ~0.03.

    Returns:
        ``means (K, 69)``, ``covars (K, 69, 69)``, ``weights (K,)``.
    """
    from sklearn.mixture import GaussianMixture

    g = GaussianMixture(
        n_components, covariance_type="full", reg_covar=reg, random_state=seed, max_iter=200
    ).fit(poses.reshape(len(poses), -1))
    return {"means": g.means_, "covars": g.covariances_, "weights": g.weights_}


def load_pose_gmm(path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The mixture fitted on the training split of the clips (cached after the first fit)."""
    from bodies.io import save_npz

    path = Path(path) if path is not None else gmm_path()
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    from bodies.motion import clip_poses

    gmm = fit_pose_gmm(clip_poses("train").reshape(-1, 69))
    save_npz(path, gmm)
    return gmm


class MaxMixturePrior(nn.Module):
    """SMPLify's pose prior: NLL of the best mixture component.

    A smooth, cheap stand-in for the full mixture likelihood.

    Args:
        gmm: ``means``, ``covars``, ``weights`` (default: :func:`load_pose_gmm`).
    """

    def __init__(self, gmm: dict[str, np.ndarray] | None = None):
        super().__init__()
        gmm = gmm if gmm is not None else load_pose_gmm()
        cov = torch.as_tensor(gmm["covars"], dtype=torch.float64)
        chol_prec = torch.linalg.cholesky(torch.linalg.inv(cov))  # P = L L^T
        logdet = torch.logdet(cov)
        w = torch.as_tensor(gmm["weights"], dtype=torch.float64)
        self.register_buffer("means", torch.as_tensor(gmm["means"], dtype=torch.float32))
        self.register_buffer("chol_prec", chol_prec.float())
        const = -torch.log(w) + 0.5 * logdet
        # shifted so the best component's minimum is 0: large constant offsets would swamp
        # float32 energies (SMPLify-X does the same with its "random_var_any" offset)
        self.register_buffer("const", (const - const.min()).float())

    def forward(self, body_pose: Tensor) -> Tensor:
        """Per-body NLL.

        Args:
            body_pose: ``[B, 69]`` axis-angle.

        Returns:
            ``[B]``: ``min_k 0.5 |L_k^T (theta - mu_k)|^2 + c_k`` with ``c_k = -log w_k +
            0.5 log |Sigma_k|`` shifted so that ``min_k c_k = 0`` (an NLL up to a constant).
        """
        d = body_pose[:, None, :] - self.means.to(body_pose.dtype)  # [B, K, 69]
        m = torch.einsum("bkd,kde->bke", d, self.chol_prec.to(body_pose.dtype))
        nll = 0.5 * (m * m).sum(-1) + self.const.to(body_pose.dtype)
        return nll.min(dim=1).values


def bending_prior(body_pose: Tensor) -> Tensor:
    """SMPLify's knee/elbow prior ``sum exp(s_i theta_i)^2`` (large when bent the wrong way).

    Args:
        body_pose: ``[B, 69]``.

    Returns:
        ``[B]``.
    """
    idx = list(BEND_INDEX)
    sign = body_pose.new_tensor(BEND_SIGN)
    return torch.exp(body_pose[:, idx] * sign).pow(2).sum(-1)


def shape_prior(betas: Tensor) -> Tensor:
    """``|beta|^2`` per body (betas are unit-variance PCA coefficients): ``[B, S] -> [B]``."""
    return (betas * betas).sum(-1)
