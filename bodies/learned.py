"""Learned gradient-descent fitting to 2D keypoints (Song, Chen and Hilliges 2020).

A few update steps replace SMPLify's hundreds of optimiser iterations. Each step feeds the
gradient of the reprojection loss, the current parameters and the keypoints to an MLP that
returns the parameter update:

``theta_{t+1} = theta_t + F(dL_reproj/dtheta_t, theta_t, x, t)``

``theta = (root rotation relative to camera-facing [3], body pose [69], betas [S], translation
offset / depth [3])``, axis-angle. The network is trained on synthetic 2D projections (2 px noise)
of our own body model with random shapes ``beta ~ N(0, I)``, poses from the training split of the
DeepMimic clips and samples of the Gaussian-mixture pose prior, and random yaw and depth; the loss
is the root-relative 3D joint error plus a rotation-matrix pose loss after every step (each step
is trained on its own: the input of step ``t+1`` is detached, as in the paper). Everything runs in
the camera frame, so any known camera works; keypoints and residuals are expressed in metres at
the body's initial depth (``(u - c) / f * z0``), which makes the inputs independent of focal
length and distance.

Use it alone (:meth:`LearnedFitter.fit`), or as the initialisation of SMPLify
(``fit_to_keypoints(..., init=fitter.fit(...))``). :func:`default_fitter` trains one on first use
and caches it beside the body model (safetensors, via :mod:`mpgym.checkpoint`).

References:
    Song, Chen, Hilliges. "Human Body Model Fitting by Learned Gradient Descent", ECCV 2020.
    arXiv:2008.08474.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from bodies.fit import Camera, FitResult, _observed, posed_joints, torso_root
from bodies.model import BodyModel
from bodies.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from mpgym.errors import MpgymError

log = logging.getLogger(__name__)

KIND = "bodies-learned-fitter"
FACING = (1.0, -1.0, -1.0)  # camera-frame rotation of a body facing the camera (x right, y down)


@dataclass(frozen=True)
class LearnedConfig:
    """Network, training data and budget of the learned fitter."""

    steps: int = 4
    """Update steps at test time (Song et al. use 4)."""
    hidden: int = 512
    """Width of the update MLP."""
    layers: int = 3
    """Hidden layers of the update MLP."""
    iterations: int = 3000
    """Training iterations (each trains all steps on one batch; ~6 min on one CPU thread)."""
    batch: int = 128
    """Bodies per training batch."""
    lr: float = 1e-3
    """Adam learning rate (cosine-decayed to 5% of it)."""
    gmm_fraction: float = 0.25
    """Fraction of training poses sampled from the pose prior instead of the clips."""
    max_yaw: float = 0.8
    """Training yaw range (rad) about the camera-facing orientation."""
    max_tilt: float = 0.15
    """Training pitch and roll range (rad)."""
    depth: tuple[float, float] = (2.5, 7.0)
    """Training distances from the camera (m)."""
    noise_px: float = 2.0
    """Keypoint noise during training (pixels at focal 1000)."""
    seed: int = 0
    """Seed of the training data and the network initialisation."""


@dataclass
class _KeypointObs:
    """Keypoints in the camera frame and what the fitter derives from them once."""

    kp: Tensor  # [B, J, 2] pixels
    conf: Tensor  # [B, J]
    focal: float
    center: Tensor  # [2]
    z0: Tensor  # [B] initial depth (m)
    t0: Tensor  # [B, 3] initial camera-frame translation
    x: Tensor  # [B, J, 2] keypoints in metres at depth z0, centred, zero where missing


def _facing(dtype: torch.dtype) -> Tensor:
    return torch.diag(torch.tensor(FACING, dtype=dtype))


def _unpack(theta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Split ``theta [B, 3 + 69 + S + 3]`` as the module docstring lays it out.

    Returns:
        ``(rel [B, 3], body_pose [B, 69], betas [B, S], dt [B, 3])``.
    """
    S = theta.shape[1] - 75
    return theta[:, :3], theta[:, 3:72], theta[:, 72 : 72 + S], theta[:, 72 + S :]


def _camera_transl(dt: Tensor, obs: _KeypointObs) -> Tensor:
    """Camera-frame root translation ``[B, 3]`` from the offset ``dt``, in units of depth."""
    return obs.t0 + dt * obs.z0[:, None]


def _rest_root(basis: tuple[Tensor, Tensor], betas: Tensor) -> Tensor:
    """The root joint of shape ``betas`` in the rest pose, ``[B, 3]``."""
    return basis[0][0] + torch.einsum("cs,bs->bc", basis[1][0, :, : betas.shape[1]], betas)


def camera_joints(
    model: BodyModel, basis: tuple[Tensor, Tensor], theta: Tensor, obs: _KeypointObs
) -> Tensor:
    """Camera-frame joints ``[B, J, 3]`` of parameters ``theta [B, 6 + 69 + S]``."""
    rel, pose, betas, dt = _unpack(theta)
    J = posed_joints(model, betas, pose, rel, torch.zeros_like(dt), basis)  # R_rel (x - j0) + j0
    j0 = _rest_root(basis, betas)
    transl = _camera_transl(dt, obs)
    return (J - j0[:, None]) @ _facing(theta.dtype) + j0[:, None] + transl[:, None]


def _reprojection(J_cam: Tensor, obs: _KeypointObs) -> Tensor:
    """Per-body ``sum_j c_j |r_j|^2``, residuals in metres at depth ``z0``, ``[B]``."""
    uv = obs.focal * J_cam[..., :2] / J_cam[..., 2:3].clamp_min(0.1) + obs.center
    r = (uv - obs.kp) / obs.focal * obs.z0[:, None, None]
    return (obs.conf * (r * r).sum(-1)).sum(-1)


def _observe(
    model: BodyModel, kp: Tensor, conf: Tensor, focal: float, center: Tensor
) -> _KeypointObs:
    """Initial depth and root from the torso's 2D size (:func:`bodies.fit.torso_root`), inputs."""
    root, uv = torso_root(model, kp, conf, focal, center)
    z0 = root[:, 2]
    t0 = root - model.joint_affine()[0][0].to(kp.dtype)
    vis = (conf > 0).to(kp.dtype)[..., None]
    x = ((kp - uv[:, None]) / focal * z0[:, None, None]) * vis
    return _KeypointObs(kp, conf, focal, center, z0, t0, x)


class UpdateNet(nn.Module):
    """The update MLP ``F``: standardised inputs, ReLU hidden layers, a small last layer."""

    def __init__(self, n_in: int, n_out: int, hidden: int, layers: int):
        super().__init__()
        dims = [n_in] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            mods += [nn.Linear(a, b), nn.ReLU()]
        last = nn.Linear(hidden, n_out)
        with torch.no_grad():
            last.weight.mul_(0.01)
            last.bias.zero_()
        self.mlp = nn.Sequential(*mods, last)
        self.register_buffer("in_mean", torch.zeros(n_in))
        self.register_buffer("in_std", torch.ones(n_in))

    def forward(self, features: Tensor) -> Tensor:
        """``[B, n_in] -> [B, n_out]``.

        Standardised inputs are clipped to +-10 std: far from the answer the reprojection
        gradient can be huge.
        """
        return self.mlp(((features - self.in_mean) / self.in_std).clamp(-10.0, 10.0))


class LearnedFitter(nn.Module):
    """Learned gradient-descent fitter for 2D keypoints of the 24 SMPL joints.

    Args:
        config: network size, step count and training budget.
        num_betas: shape coefficients it regresses.
        num_joints: keypoints per body.
    """

    def __init__(self, config: LearnedConfig = LearnedConfig(), num_betas: int = 10, J: int = 24):
        super().__init__()
        self.config = config
        self.num_betas, self.num_joints = num_betas, J
        self.n_theta = 75 + num_betas
        n_in = 2 * self.n_theta + 3 * J + config.steps
        self.net = UpdateNet(n_in, self.n_theta, config.hidden, config.layers)

    def _features(self, theta: Tensor, grad: Tensor, obs: _KeypointObs, step: int) -> Tensor:
        onehot = theta.new_zeros(len(theta), self.config.steps)
        onehot[:, step] = 1.0
        return torch.cat([grad, theta, obs.x.flatten(1), obs.conf, onehot], 1)

    def _gradient(self, model, basis, theta: Tensor, obs: _KeypointObs) -> Tensor:
        with torch.enable_grad():
            th = theta.detach().requires_grad_(True)
            loss = _reprojection(camera_joints(model, basis, th, obs), obs).sum()
            return torch.autograd.grad(loss, th)[0]

    def _step(self, model, basis, theta: Tensor, obs: _KeypointObs, step: int) -> Tensor:
        grad = self._gradient(model, basis, theta, obs)
        return theta.detach() + self.net(self._features(theta.detach(), grad, obs, step))

    def fit(
        self,
        model: BodyModel,
        keypoints: Tensor,
        camera: Camera,
        *,
        confidence: Tensor | None = None,
    ) -> FitResult:
        """Fit to 2D keypoints with a few learned update steps.

        Args:
            model: the body model the fitter was trained with.
            keypoints: ``[B, 24, 2]`` or ``[24, 2]`` pixels; NaN keypoints are missing.
            camera: the known camera.
            confidence: ``[B, 24]`` in [0, 1] (default 1 where finite).

        Returns:
            :class:`bodies.fit.FitResult` in world coordinates (``losses`` holds the mean
            reprojection error in pixels after each step).
        """
        t_start = time.perf_counter()
        if model.num_betas < self.num_betas or model.num_joints != self.num_joints:
            raise MpgymError(
                f"this fitter regresses {self.num_betas} betas of a {self.num_joints}-joint "
                f"model; the model has {model.num_betas} betas and {model.num_joints} joints."
            )
        kp, conf = _observed(keypoints, confidence, model.num_joints, 2, "keypoints")
        dtype = torch.float32
        kp, conf = kp.to(dtype), conf.to(dtype)
        R = torch.as_tensor(camera.R, dtype=dtype)
        t_cam = torch.as_tensor(camera.t, dtype=dtype)
        obs = _observe(model, kp, conf, camera.focal, kp.new_tensor(camera.center))
        basis = tuple(b.to(dtype) for b in model.joint_affine())
        theta = kp.new_zeros(len(kp), self.n_theta)
        losses = []
        with torch.no_grad():
            for s in range(self.config.steps):
                theta = self._step(model, basis, theta, obs, s)
                J = camera_joints(model, basis, theta, obs)
                px = (_reprojection(J, obs) / obs.conf.sum(-1)).sqrt() * camera.focal / obs.z0
                losses.append(float(px.mean()))
        rel, pose, betas, dt = _unpack(theta)
        t_c = _camera_transl(dt, obs)
        # camera frame -> world: R_go = R^T F R_rel, t = R^T (t_c + j0 - t_cam) - j0
        orient = matrix_to_axis_angle(R.T @ _facing(dtype) @ axis_angle_to_matrix(rel))
        j0 = _rest_root(basis, betas)
        transl = ((t_c + j0 - t_cam) @ R) - j0
        md = model.v_template.dtype
        if self.num_betas < model.num_betas:
            betas = torch.nn.functional.pad(betas, (0, model.num_betas - self.num_betas))
        orient, pose, betas, transl = (x.to(md) for x in (orient, pose, betas, transl))
        with torch.no_grad():
            out = model(betas, pose, orient, transl)
        return FitResult(
            betas,
            pose,
            orient,
            transl,
            out.vertices,
            out.joints,
            losses,
            time.perf_counter() - t_start,
        )

    def save(self, path: str | os.PathLike, meta: dict | None = None) -> Path:
        """Write a safetensors checkpoint (config in its metadata)."""
        from mpgym.checkpoint import save_checkpoint

        cfg = {"learned": dataclasses.asdict(self.config), "num_betas": self.num_betas}
        return save_checkpoint(path, self.state_dict(), kind=KIND, config=cfg, meta=meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LearnedFitter:
        """Read a checkpoint written by :meth:`save`."""
        from mpgym.checkpoint import load_checkpoint

        ck = load_checkpoint(path, expected_kind=KIND)
        c = dict(ck.config["learned"])
        c["depth"] = tuple(c["depth"])
        fitter = cls(LearnedConfig(**c), num_betas=int(ck.config["num_betas"]))
        fitter.load_state_dict(ck.state_dict)
        return fitter.eval()


# ----------------------------------------------------------------------------- training data
def _pose_sampler(config: LearnedConfig, g: torch.Generator):
    """``n -> [n, 69]`` poses: the clips' training split, and samples of the pose prior."""
    from bodies.motion import clip_poses
    from bodies.priors import load_pose_gmm

    clips = torch.as_tensor(clip_poses("train").reshape(-1, 69), dtype=torch.float32)
    gmm = load_pose_gmm()
    means = torch.as_tensor(gmm["means"], dtype=torch.float32)
    chol = torch.linalg.cholesky(torch.as_tensor(gmm["covars"], dtype=torch.float64)).float()
    w = torch.as_tensor(gmm["weights"], dtype=torch.float32)

    def sample(n: int) -> Tensor:
        n_gmm = int(round(n * config.gmm_fraction))
        k = torch.multinomial(w, n_gmm, replacement=True, generator=g)
        z = torch.randn(n_gmm, 69, 1, generator=g)
        sampled = means[k] + (chol[k] @ z)[..., 0]
        real = clips[torch.randint(len(clips), (n - n_gmm,), generator=g)]
        return torch.cat([real, sampled])

    return sample


def _synthetic_batch(model, basis, config: LearnedConfig, sample_pose, g: torch.Generator, n: int):
    """Ground-truth parameters and their noisy projections (camera frame, focal 1000)."""
    S = basis[1].shape[-1]
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g)  # noqa: E731
    rel = torch.stack(
        [
            u(-config.max_tilt, config.max_tilt),
            u(-config.max_yaw, config.max_yaw),
            u(-config.max_tilt, config.max_tilt),
        ],
        1,
    )
    pose = sample_pose(n)
    betas = torch.randn(n, S, generator=g)
    z = u(*config.depth)
    transl = torch.stack([u(-0.4, 0.4) * z / 4, u(-0.4, 0.4) * z / 4, z], 1)
    focal, center = 1000.0, torch.tensor([500.0, 500.0])
    probe = _KeypointObs(
        torch.zeros(n, 24, 2), torch.ones(n, 24), focal, center, torch.ones(n), transl, None
    )
    theta_gt = torch.cat([rel, pose, betas, torch.zeros(n, 3)], 1)
    J = camera_joints(model, basis, theta_gt, probe)
    kp = focal * J[..., :2] / J[..., 2:3] + center
    kp = kp + config.noise_px * torch.randn(kp.shape, generator=g)
    return theta_gt, J, kp, transl


def _loss(
    model, basis, theta: Tensor, theta_gt: Tensor, J_gt: Tensor, t_gt: Tensor, obs: _KeypointObs
) -> Tensor:
    """The training loss of one step's output.

    Root-relative joint error (m), translation error (m), pose rotation-matrix error and a small
    shape error.
    """
    J = camera_joints(model, basis, theta, obs)
    S = theta.shape[1] - 75
    t = _camera_transl(_unpack(theta)[3], obs)
    transl = ((t - t_gt).pow(2).sum(-1) + 1e-12).sqrt().mean()
    rel_j = (J[:, 1:] - J[:, :1]) - (J_gt[:, 1:] - J_gt[:, :1])  # the root's is always 0
    joint = (rel_j.pow(2).sum(-1) + 1e-12).sqrt().mean()
    R = axis_angle_to_matrix(theta[:, :72].reshape(-1, 24, 3))
    R_gt = axis_angle_to_matrix(theta_gt[:, :72].reshape(-1, 24, 3))
    rot = (R - R_gt).pow(2).sum((-1, -2)).mean()
    shape = (theta[:, 72 : 72 + S] - theta_gt[:, 72 : 72 + S]).pow(2).mean()
    return 10.0 * joint + 2.0 * transl + 0.2 * rot + 0.01 * shape


def train(
    model: BodyModel, config: LearnedConfig = LearnedConfig(), *, log_every: int = 0
) -> LearnedFitter:
    """Train a fitter on synthetic projections of ``model`` (float32, CPU or the model's device).

    Args:
        model: the body model (its joint basis is used; the mesh is never skinned).
        config: network, data and budget.
        log_every: log the mean joint error every so many iterations (0: never).

    Returns:
        The trained :class:`LearnedFitter` in eval mode.
    """
    g = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # network initialisation
    fitter = LearnedFitter(config, num_betas=model.num_betas, J=model.num_joints)
    basis = tuple(b.float() for b in model.joint_affine())
    sample_pose = _pose_sampler(config, g)

    def observed_batch(n):
        theta_gt, J_gt, kp, t_gt = _synthetic_batch(model, basis, config, sample_pose, g, n)
        conf = torch.ones(n, model.num_joints)
        obs = _observe(model, kp, conf, 1000.0, torch.tensor([500.0, 500.0]))
        return theta_gt, J_gt, t_gt, obs

    # input standardisation from a large batch (fixed afterwards): gradients and keypoints at
    # the start; parameters from the ground truth (they are all zero at the start)
    with torch.no_grad():
        theta_gt, _, _, obs = observed_batch(1024)
        theta = torch.zeros_like(theta_gt)
        f = fitter._features(theta, fitter._gradient(model, basis, theta, obs), obs, 0)
        f[:, fitter.n_theta : 2 * fitter.n_theta] = theta_gt
        fitter.net.in_mean.copy_(f.mean(0))
        fitter.net.in_std.copy_(f.std(0).clamp_min(1e-2))
        fitter.net.in_mean[-config.steps :] = 0.0
        fitter.net.in_std[-config.steps :] = 1.0
    opt = torch.optim.Adam(fitter.net.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.iterations, config.lr * 0.05)
    fitter.train()
    for it in range(config.iterations):
        theta_gt, J_gt, t_gt, obs = observed_batch(config.batch)
        theta = torch.zeros(config.batch, fitter.n_theta)
        total = 0.0
        opt.zero_grad()
        for s in range(config.steps):
            theta = fitter._step(model, basis, theta, obs, s)
            loss = _loss(model, basis, theta, theta_gt, J_gt, t_gt, obs)
            loss.backward()
            total += float(loss.detach())
        nn.utils.clip_grad_norm_(fitter.net.parameters(), 1.0)
        opt.step()
        sched.step()
        if log_every and (it % log_every == 0 or it == config.iterations - 1):
            log.info("learned fitter: iteration %d, loss %.4f", it, total / config.steps)
    return fitter.eval()


def fitter_path(config: LearnedConfig = LearnedConfig()) -> Path:
    """Cache file of the default fitter, beside the body model.

    v2: trained on the clips' train split; v1 caches came from an earlier split that overlapped
    today's test poses, so they are not read.
    """
    from bodies.synthetic import default_path

    return default_path().parent / f"learned_fitter_v2_seed{config.seed}.safetensors"


def default_fitter(
    model: BodyModel | None = None, config: LearnedConfig = LearnedConfig()
) -> LearnedFitter:
    """The fitter for the synthetic model: loaded from the cache, or trained and cached.

    Training takes a few minutes on one CPU thread (``config.iterations`` iterations).
    """
    path = fitter_path(config)
    if path.exists():
        fitter = LearnedFitter.load(path)
        if fitter.config == config:
            return fitter
    model = model if model is not None else BodyModel("synthetic")
    t0 = time.perf_counter()
    fitter = train(model, config)
    fitter.save(path, meta={"train_seconds": time.perf_counter() - t0})
    return fitter
