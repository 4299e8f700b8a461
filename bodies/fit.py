"""SMPLify-style fitting of the body model to 3D joints, 2D keypoints or point clouds.

Staged optimisation (Bogo et al. 2016): the priors start strong and are relaxed stage by stage
(pose-prior weights 404 / 404 / 57.4 / 4.78, shape weights 100 / 50 / 10 / 5, knee/elbow prior
0.317 x the pose weight), with a Geman-McClure robust data term (sigma 100 px). Weights multiply
residuals, so the energy carries their squares (as SMPLify-X's PyTorch code):

``E = sum_j c_j^2 rho(r_j) + w_p^2 GMM(theta)
+ (0.317 w_p)^2 sum exp(+-theta_bend)^2 + w_b^2 |beta|^2``

with ``r`` in pixels for keypoints and in millimetres for 3D joints and scans (at SMPLify's
scale, 1 px ~ 4 mm). Everything is batched over people; L-BFGS (strong Wolfe) or Adam.
For keypoints the body's depth is initialised from the torso length (similar triangles, as in
the paper) and a first stage fits only translation and global rotation to the torso joints;
optionally (``FitConfig.flip_hypothesis``) the stages also run from that orientation turned
180 degrees about the body's vertical axis, and each body keeps the fit of lower energy, and
(``FitConfig.per_body``) each body is optimised as a problem of its own, as in the paper.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from bodies.lbs import lbs, rigid_transforms
from bodies.model import BodyModel, shapes_repr
from bodies.priors import MaxMixturePrior, bending_prior, shape_prior
from bodies.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from mpgym.errors import MpgymError
from mpgym.geometry import nearest_sq_distances, similarity_transform

log = logging.getLogger(__name__)

TORSO = (1, 2, 16, 17)  # hips and shoulders


@dataclass(frozen=True)
class FitConfig:
    """Weights and schedule of SMPLify-style fitting (defaults: the SMPLify paper).

    SMPLify's interpenetration term is not implemented: it needs a collision model of the body
    (the paper's capsules, or a BVH over the mesh's triangles), which the project does not have.
    """

    pose_weights: tuple[float, ...] = (404.0, 404.0, 57.4, 4.78)
    """Pose-prior weight per stage (SMPLify)."""
    shape_weights: tuple[float, ...] = (100.0, 50.0, 10.0, 5.0)
    """Shape-prior weight per stage (SMPLify)."""
    bend_factor: float = 0.317
    """Knee/elbow prior weight as a multiple of the pose weight (SMPLify)."""
    sigma: float = 100.0
    """Geman-McClure scale in pixels (SMPLify), or millimetres for 3D data."""
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    """L-BFGS with strong-Wolfe line search (SMPLify-X) or Adam."""
    steps_per_stage: int = 50
    """L-BFGS iterations (or 10x as many Adam steps) per stage."""
    adam_lr: float = 0.02
    """Adam learning rate."""
    scan_weight: float = 50.0
    """Weight of the mean squared Chamfer distance (mm^2) against the joint-sized terms."""
    flip_hypothesis: bool = False
    """Keypoints: also fit from the camera stage's orientation turned 180 degrees about the
    body's vertical axis, and keep, per body, the fit of lower final energy (SMPLify)."""
    per_body: bool = False
    """Keypoints: optimise each body on its own (SMPLify) rather than all in one batched
    problem, whose L-BFGS shares one line search and curvature history across bodies."""


PRESETS: dict[str, FitConfig] = {
    "smplify": FitConfig(),
    # exact 3D joints: the pose starts near the answer (swing IK), so strong priors only pull it
    # away, and the last stage nearly drops the shape prior: the girth components move joints by
    # only 0.1-2 mm per unit beta, which exact joints still reveal. Measured on 10 held-out
    # bodies: PVE 7.4 mm, MPJPE 0.7 mm (shape weights 5/2/1 and 50 steps: PVE 14.9 mm).
    "joints3d": FitConfig(
        pose_weights=(4.78, 1.0, 0.1), shape_weights=(5.0, 0.5, 0.01), steps_per_stage=300
    ),
    # 2D keypoints from a learned fitter's result: one short, lightly regularised stage.
    # Measured on 30 held-out bodies (2 px noise): learned fitter alone PA-MPJPE 36.8 mm, this
    # 36.7 mm; SMPLify's last two stages (57.4 / 4.78, 50 steps) from the same start 52.6 mm
    # (the strong prior pulls the pose toward the mixture's means).
    "refine2d": FitConfig(pose_weights=(10.0,), shape_weights=(5.0,), steps_per_stage=20),
    # scans: weaker last-stage priors and more steps. Measured on 3 held-out bodies (5k points,
    # 5 mm noise): PVE 35.7 / 12.0 / 31.9 mm, against 63.8 / 12.7 / 35.4 with weights
    # (57.4, 4.78, 1) / (10, 5, 1) and 30 steps; the large errors are poses stuck near the wrong
    # initial hypothesis, mostly limbs, which fit_to_scan's limb search now fixes (100 held-out
    # bodies: mean PVE 15.8 mm without it, 13.0 mm with it).
    "scan": FitConfig(
        pose_weights=(57.4, 4.78, 0.5), shape_weights=(10.0, 1.0, 0.1), steps_per_stage=50
    ),
}
"""Named configurations: SMPLify's schedule (default, for keypoints), and lighter ones."""


@dataclass
class Camera:
    """A pinhole camera: ``x_cam = R x + t``, ``u = f x_cam / z + c`` (pixels, y down)."""

    focal: float
    center: tuple[float, float]
    R: np.ndarray = field(default_factory=lambda: np.diag([1.0, -1.0, -1.0]))
    t: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def project(self, X: Tensor) -> Tensor:
        """``[..., 3]`` world points -> ``[..., 2]`` pixels."""
        R = torch.as_tensor(self.R, dtype=X.dtype, device=X.device)
        t = torch.as_tensor(self.t, dtype=X.dtype, device=X.device)
        Xc = X @ R.T + t
        z = Xc[..., 2:3].clamp_min(1e-3)
        return self.focal * Xc[..., :2] / z + Xc.new_tensor(self.center)


@dataclass(repr=False)
class FitResult:
    """Fitted parameters and the posed body (batched)."""

    betas: Tensor  # [B, S]
    body_pose: Tensor  # [B, 69]
    global_orient: Tensor  # [B, 3]
    transl: Tensor  # [B, 3]
    vertices: Tensor  # [B, V, 3]
    joints: Tensor  # [B, J, 3]
    losses: list[float]  # energy at the end of each stage
    seconds: float

    def __repr__(self) -> str:
        return shapes_repr(self)


def geman_mcclure(sq_residual: Tensor, sigma: float) -> Tensor:
    """Geman-McClure ``rho(r) = sigma^2 r^2 / (sigma^2 + r^2)`` of squared residuals ``r^2``.

    Taking ``r^2`` (elementwise, any shape) serves residual components (pass ``r * r``) and
    squared distances alike, and keeps gradients finite at zero distance (no square root).

    Example:
        >>> geman_mcclure(torch.tensor([0.0, 100.0**2]), 100.0)
        tensor([   0., 5000.])
    """
    return sigma**2 * sq_residual / (sigma**2 + sq_residual)


def posed_joints(
    model: BodyModel,
    betas: Tensor,
    body_pose: Tensor,
    global_orient: Tensor,
    transl: Tensor,
    basis: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Joints only, without skinning the mesh (``[B, J, 3]``): what joint-based fits need.

    ``basis`` is :meth:`bodies.model.BodyModel.joint_affine` (default), possibly cast.
    """
    jt, jd = basis if basis is not None else model.joint_affine()
    J = jt + torch.einsum("jcs,bs->bjc", jd[..., : betas.shape[1]], betas)
    rot = axis_angle_to_matrix(torch.cat([global_orient, body_pose], 1).reshape(len(betas), -1, 3))
    return rigid_transforms(rot, J, model.parents)[0] + transl[:, None]


def rigid_init(model: BodyModel, joints: Tensor, conf: Tensor) -> tuple[Tensor, Tensor]:
    """Global rotation and translation aligning the rest torso to observed 3D joints (Kabsch).

    Returns:
        ``(global_orient [B, 3], transl [B, 3])``.
    """
    idx = [0, 1, 2, 3, 6, 9, 12, 16, 17]
    rest = model.joint_affine()[0].to(joints.dtype)
    src = rest[idx].expand(len(joints), -1, -1)
    _, R, t = similarity_transform(src, joints[:, idx], conf[:, idx], scale=False)  # R src + t
    root = rest[0]
    # rotation about the root joint: x' = R (x - root) + root + transl
    transl = t + (R @ root[:, None])[..., 0] - root
    return matrix_to_axis_angle(R), transl


def _rotvec_between(a: Tensor, b: Tensor) -> Tensor:
    """Smallest rotation (axis-angle) taking direction ``a`` to ``b``, ``[B, 3]``."""
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    c = torch.cross(a, b, dim=-1)
    s = c.norm(dim=-1, keepdim=True)
    angle = torch.atan2(s, (a * b).sum(-1, keepdim=True))
    return c / s.clamp_min(1e-12) * angle


def swing_init(model: BodyModel, joints: Tensor, global_orient: Tensor) -> Tensor:
    """Body pose that points every bone at its observed child joint (swing only, no twist).

    Walks the tree root first: ``G_k = Rot(G_p d_rest -> d_obs) G_p``; local ``R_k = G_p^T G_k``.

    Args:
        model: the body model (rest skeleton of the mean shape).
        joints: ``[B, J, 3]`` observed joints.
        global_orient: ``[B, 3]`` root rotation.

    Returns:
        ``[B, 3 (J - 1)]`` axis-angle body pose.
    """
    from bodies.skeleton import children

    J0 = model.joint_affine()[0].to(joints.dtype)
    par = model.parents.tolist()
    main = {0: 3, 9: 12, 13: 16, 14: 17}
    ch = children(tuple(par))
    B = joints.shape[0]
    G = [axis_angle_to_matrix(global_orient)] + [None] * (len(par) - 1)
    local = torch.eye(3, dtype=joints.dtype).repeat(B, len(par), 1, 1)
    for k in range(1, len(par)):
        Gp = G[par[k]]
        c = main.get(k, ch[k][0] if ch[k] else None)
        if c is None:
            G[k] = Gp
            continue
        d_rest = (Gp @ (J0[c] - J0[k])[:, None])[..., 0]
        swing = axis_angle_to_matrix(_rotvec_between(d_rest, joints[:, c] - joints[:, k]))
        G[k] = swing @ Gp
        local[:, k] = Gp.transpose(1, 2) @ G[k]
    return matrix_to_axis_angle(local[:, 1:]).reshape(B, -1)


class _FitParams(torch.nn.Module):
    """The optimised body parameters, batched; each is zero unless a start is given."""

    def __init__(
        self,
        B: int,
        S: int,
        dtype: torch.dtype,
        transl: Tensor | None = None,
        global_orient: Tensor | None = None,
        body_pose: Tensor | None = None,
        betas: Tensor | None = None,
    ):
        super().__init__()
        z = lambda *s: torch.zeros(*s, dtype=dtype)  # noqa: E731
        self.betas = torch.nn.Parameter(z(B, S) if betas is None else betas.clone())
        self.body_pose = torch.nn.Parameter(z(B, 69) if body_pose is None else body_pose.clone())
        self.global_orient = torch.nn.Parameter(
            z(B, 3) if global_orient is None else global_orient.clone()
        )
        self.transl = torch.nn.Parameter(z(B, 3) if transl is None else transl.clone())


_FIELDS = ("betas", "body_pose", "global_orient", "transl", "vertices", "joints")
"""The per-body tensors of a :class:`FitResult`."""


def _params_from(r: FitResult, rows: Tensor, body_pose: Tensor | None = None) -> _FitParams:
    """Parameters starting from rows ``rows`` of a fit (with ``body_pose``'s rows if given)."""
    return _FitParams(
        len(rows),
        r.betas.shape[1],
        r.betas.dtype,
        transl=r.transl[rows],
        global_orient=r.global_orient[rows],
        body_pose=(r.body_pose if body_pose is None else body_pose)[rows],
        betas=r.betas[rows],
    )


def _params_from_init(init: FitResult, B: int, S: int, dtype: torch.dtype) -> _FitParams:
    """Parameters starting from a previous fit of the same ``B`` bodies (``S`` betas)."""
    if init.betas.shape != (B, S):
        raise MpgymError(
            f"init has betas of shape {tuple(init.betas.shape)}; accepted: one row per body "
            f"({B}) with the model's {S} shape coefficients."
        )
    return _FitParams(
        B,
        S,
        dtype,
        transl=init.transl.to(dtype),
        global_orient=init.global_orient.to(dtype),
        body_pose=init.body_pose.to(dtype),
        betas=init.betas.to(dtype),
    )


def _stages(config: FitConfig, stages: slice) -> FitConfig:
    """``config`` with only some of its stages."""
    return dataclasses.replace(
        config, pose_weights=config.pose_weights[stages], shape_weights=config.shape_weights[stages]
    )


DataTerm = Callable[[_FitParams, bool], Tensor]
"""``data(params, per_body)``: the data energy, summed over bodies or per body ``[B]``."""


def _energy(
    params: _FitParams,
    data: DataTerm,
    config: FitConfig,
    prior: MaxMixturePrior,
    w_pose: float,
    w_shape: float,
    *,
    per_body: bool = False,
) -> Tensor:
    """``E = data + w_p^2 GMM + (bend w_p)^2 bending + w_b^2 |beta|^2``: a scalar or ``[B]``."""
    reduce = (lambda x: x) if per_body else torch.sum
    e = data(params, per_body)
    e = e + w_pose**2 * reduce(prior(params.body_pose))
    e = e + (config.bend_factor * w_pose) ** 2 * reduce(bending_prior(params.body_pose))
    return e + w_shape**2 * reduce(shape_prior(params.betas))


def _optimize(params: list[torch.nn.Parameter], closure, config: FitConfig) -> None:
    """One stage of L-BFGS (``steps_per_stage`` iterations) or Adam (10x as many steps)."""
    if config.optimizer == "lbfgs":
        opt = torch.optim.LBFGS(
            params,
            lr=1.0,
            max_iter=config.steps_per_stage,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-7,
            tolerance_change=1e-9,
        )

        def step():
            opt.zero_grad()
            loss = closure()
            loss.backward()
            return loss

        opt.step(step)
        return
    opt = torch.optim.Adam(params, lr=config.adam_lr)
    for _ in range(10 * config.steps_per_stage):
        opt.zero_grad()
        loss = closure()
        loss.backward()
        opt.step()


def _staged_fit(
    model: BodyModel,
    params: _FitParams,
    data: DataTerm,
    config: FitConfig,
    prior: MaxMixturePrior,
    t0: float,
) -> tuple[FitResult, Tensor]:
    """Run the stages of ``config`` on all parameters.

    Returns:
        The fit (``losses``: the energy summed over bodies at the end of each stage) and each
        body's energy at the end of each stage, ``[B, stages]``.
    """
    energies = []
    for w_pose, w_shape in zip(config.pose_weights, config.shape_weights, strict=True):

        def closure(w_pose=w_pose, w_shape=w_shape):
            return _energy(params, data, config, prior, w_pose, w_shape)

        _optimize(list(params.parameters()), closure, config)
        with torch.no_grad():
            energies.append(_energy(params, data, config, prior, w_pose, w_shape, per_body=True))
        log.debug("stage w_pose=%g: energy %.4g", w_pose, float(energies[-1].sum()))
    B, dtype = params.betas.shape[0], params.betas.dtype
    per_stage = torch.stack(energies, 1) if energies else torch.zeros(B, 0, dtype=dtype)
    with torch.no_grad():
        out = model(params.betas, params.body_pose, params.global_orient, params.transl)
    result = FitResult(
        params.betas.detach(),
        params.body_pose.detach(),
        params.global_orient.detach(),
        params.transl.detach(),
        out.vertices,
        out.joints,
        per_stage.sum(0).tolist(),
        time.perf_counter() - t0,
    )
    return result, per_stage


def fit_to_joints(
    model: BodyModel,
    joints: Tensor,
    config: FitConfig = FitConfig(),
    *,
    confidence: Tensor | None = None,
    prior: MaxMixturePrior | None = None,
) -> FitResult:
    """Fit to 3D joints (metres).

    Args:
        model: the body model.
        joints: ``[B, 24, 3]``; NaN rows count as missing.
        config: weights and schedule.
        confidence: ``[B, 24]`` in [0, 1] (default 1 where finite).
        prior: pose prior (default: the mixture fitted on the clips).

    Returns:
        :class:`FitResult`.
    """
    t0 = time.perf_counter()
    joints, conf = _observed(joints, confidence, model.num_joints, 3, "joints")
    prior = prior or MaxMixturePrior()
    B, dtype = joints.shape[0], model.v_template.dtype
    global_orient, transl = rigid_init(model, joints.to(dtype), conf.to(dtype))
    pose0 = swing_init(model, joints.to(dtype), global_orient) if bool((conf > 0).all()) else None
    params = _FitParams(
        B, model.num_betas, dtype, transl=transl, global_orient=global_orient, body_pose=pose0
    )
    basis = model.joint_affine()

    def data(params: _FitParams, per_body: bool) -> Tensor:
        pred = posed_joints(
            model, params.betas, params.body_pose, params.global_orient, params.transl, basis
        )
        r = 1000.0 * (pred - joints)  # mm
        e = conf[..., None] ** 2 * geman_mcclure(r * r, config.sigma)
        return e.sum((1, 2)) if per_body else e.sum()

    return _staged_fit(model, params, data, config, prior, t0)[0]


def _observed(
    x: Tensor, confidence: Tensor | None, J: int, dim: int, name: str
) -> tuple[Tensor, Tensor]:
    """Validate observations; NaN entries become missing (confidence 0)."""
    x = torch.as_tensor(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (J, dim):
        raise MpgymError(
            f"{name} have shape {tuple(x.shape)}; accepted: (B, {J}, {dim}) or ({J}, {dim})."
        )
    finite = torch.isfinite(x).all(-1)
    conf = (
        torch.ones(x.shape[:2], dtype=x.dtype)
        if confidence is None
        else torch.as_tensor(confidence, dtype=x.dtype).reshape(x.shape[:2]).clone()
    )
    conf = torch.where(finite & torch.isfinite(conf), conf.clamp(0, 1), torch.zeros_like(conf))
    few = (conf > 0).sum(1) < 4
    if few.any():
        raise MpgymError(
            f"{name}: body {int(few.nonzero()[0])} has {int((conf[few][0] > 0).sum())} "
            "visible joints; at least 4 are needed to fit."
        )
    return torch.nan_to_num(x, nan=0.0), conf


def torso_root(
    model: BodyModel,
    keypoints: Tensor,
    conf: Tensor,
    focal: float,
    center: Tensor | tuple[float, float],
) -> tuple[Tensor, Tensor]:
    """Camera-frame root joint from the torso's 2D size (similar triangles, SMPLify).

    Depth ``z = f * L_3D / L_2D`` from the hip-shoulder distances of the template and of the
    keypoints (5 m when no hip-shoulder pair is seen); the root is placed on the ray through the
    2D centre of the visible keypoints.

    Args:
        model: the body model (its mean-shape rest joints).
        keypoints: ``[B, J, 2]`` pixels.
        conf: ``[B, J]`` confidences (0: missing).
        focal: focal length in pixels.
        center: ``[2]`` principal point in pixels.

    Returns:
        ``(root [B, 3]`` in the camera frame (metres), ``uv [B, 2]`` the keypoints' 2D centre).
    """
    J0 = model.joint_affine()[0].to(keypoints.dtype)
    pairs = [(1, 16), (2, 17)]
    l3 = torch.stack([(J0[a] - J0[b]).norm() for a, b in pairs]).mean()
    l2 = torch.stack([(keypoints[:, a] - keypoints[:, b]).norm(dim=-1) for a, b in pairs], -1)
    ok = torch.stack([(conf[:, a] > 0) & (conf[:, b] > 0) for a, b in pairs], -1)
    l2 = (l2 * ok).sum(-1) / ok.sum(-1).clamp_min(1)
    z = torch.where(ok.any(-1) & (l2 > 1e-6), focal * l3 / l2.clamp_min(1e-6), 5.0)
    vis = (conf > 0).to(keypoints.dtype)[..., None]
    uv = (keypoints * vis).sum(1) / vis.sum(1)
    c = torch.as_tensor(center, dtype=keypoints.dtype)
    return torch.cat([(uv - c) / focal * z[:, None], z[:, None]], -1), uv


def init_from_torso(model: BodyModel, keypoints: Tensor, conf: Tensor, camera: Camera) -> Tensor:
    """Body translation that puts the root at :func:`torso_root`'s point, ``[B, 3]``."""
    root, _ = torso_root(model, keypoints, conf, camera.focal, camera.center)
    R = torch.as_tensor(camera.R, dtype=keypoints.dtype)
    t = torch.as_tensor(camera.t, dtype=keypoints.dtype)
    return (root - t) @ R - model.joint_affine()[0][0].to(keypoints.dtype)


def fit_to_keypoints(
    model: BodyModel,
    keypoints: Tensor,
    camera: Camera,
    config: FitConfig = FitConfig(),
    *,
    confidence: Tensor | None = None,
    prior: MaxMixturePrior | None = None,
    init: FitResult | None = None,
) -> FitResult:
    """Fit to 2D keypoints (the 24 SMPL joints, pixels) seen by a known camera.

    Without ``init`` the body starts in the rest pose facing the camera at the depth given by
    its torso's 2D size, and a first stage fits only its translation and rotation to the torso
    keypoints; with ``config.flip_hypothesis`` the stages run from that orientation and from it
    turned 180 degrees about the body's vertical axis, and each body keeps the fit of lower
    final energy. With ``init`` (for example :meth:`bodies.learned.LearnedFitter.fit`'s result)
    the stages start from those parameters; ``PRESETS["refine2d"]`` is a schedule for that.
    ``config.per_body`` fits each body as a problem of its own.

    Args:
        model: the body model.
        keypoints: ``[B, 24, 2]``; NaN keypoints are missing (confidence 0).
        camera: intrinsics and extrinsics.
        config: weights and schedule.
        confidence: ``[B, 24]`` detection confidences (default 1).
        prior: pose prior.
        init: a previous fit of the same bodies to start from.

    Returns:
        :class:`FitResult`.
    """
    t0 = time.perf_counter()
    kp, conf = _observed(keypoints, confidence, model.num_joints, 2, "keypoints")
    prior = prior or MaxMixturePrior()
    dtype = model.v_template.dtype
    kp, conf = kp.to(dtype), conf.to(dtype)
    if init is not None and init.betas.shape[0] != len(kp):
        raise MpgymError(
            f"init has {init.betas.shape[0]} bodies; accepted: one per keypoint set ({len(kp)})."
        )
    if not config.per_body:
        return _fit_keypoints(model, kp, conf, camera, config, prior, init, t0)[0]
    return _fit_each_body(model, kp, conf, camera, config, prior, init, t0)


def _fit_each_body(
    model: BodyModel,
    kp: Tensor,
    conf: Tensor,
    camera: Camera,
    config: FitConfig,
    prior: MaxMixturePrior,
    init: FitResult | None,
    t0: float,
) -> FitResult:
    """:func:`_fit_keypoints` on one body at a time (``FitConfig.per_body``), results stacked."""
    fits = []
    for b in range(len(kp)):
        rows = slice(b, b + 1)
        start = None if init is None else _result_rows(init, rows)
        fits.append(_fit_keypoints(model, kp[rows], conf[rows], camera, config, prior, start, t0))
    per_stage = torch.cat([e for _, e in fits])  # [B, stages]
    return FitResult(
        *(torch.cat([getattr(r, name) for r, _ in fits]) for name in _FIELDS),
        per_stage.sum(0).tolist(),
        time.perf_counter() - t0,
    )


def _result_rows(r: FitResult, rows: Tensor | slice) -> FitResult:
    """Rows ``rows`` of a fit (``losses`` and ``seconds`` as they are)."""
    return FitResult(*(getattr(r, name)[rows] for name in _FIELDS), list(r.losses), r.seconds)


def _keypoint_term(
    model: BodyModel, camera: Camera, kp: Tensor, conf: Tensor, sigma: float
) -> DataTerm:
    """Data term ``sum_j c_j^2 rho(|proj(J_j) - x_j|)`` (Geman-McClure per pixel coordinate)."""
    basis = model.joint_affine()

    def data(params: _FitParams, per_body: bool) -> Tensor:
        pred = camera.project(
            posed_joints(
                model, params.betas, params.body_pose, params.global_orient, params.transl, basis
            )
        )
        r = pred - kp
        e = conf[..., None] ** 2 * geman_mcclure(r * r, sigma)
        return e.sum((1, 2)) if per_body else e.sum()

    return data


def _camera_stage(
    model: BodyModel, kp: Tensor, conf: Tensor, camera: Camera, config: FitConfig
) -> _FitParams:
    """SMPLify's first stage: translation and global rotation fitted to the torso keypoints.

    The body starts in the rest pose, facing the camera, at :func:`init_from_torso`'s place.
    """
    dtype = kp.dtype
    # the body faces the camera and stands upright in the image
    R = torch.as_tensor(camera.R, dtype=dtype)
    facing = matrix_to_axis_angle(R.T @ torch.diag(R.new_tensor([1.0, -1.0, -1.0])))
    params = _FitParams(
        len(kp),
        model.num_betas,
        dtype,
        transl=init_from_torso(model, kp, conf, camera),
        global_orient=facing.expand(len(kp), 3),
    )
    torso = torch.zeros_like(conf)
    torso[:, list(TORSO)] = conf[:, list(TORSO)]
    torso_term = _keypoint_term(model, camera, kp, torso, config.sigma)
    _optimize([params.transl, params.global_orient], lambda: torso_term(params, False), config)
    return params


def _flipped(params: _FitParams) -> _FitParams:
    """SMPLify's second hypothesis: the global orientation turned 180 degrees about the body's y.

    A fresh start (rest pose, mean shape) with ``params``' translation and ``R' = R R_y(pi)``:
    the body's vertical axis is its own y.
    """
    R = axis_angle_to_matrix(params.global_orient.detach())
    turn = torch.diag(R.new_tensor([-1.0, 1.0, -1.0]))  # R_y(pi)
    B, S = params.betas.shape
    return _FitParams(
        B,
        S,
        R.dtype,
        transl=params.transl.detach(),
        global_orient=matrix_to_axis_angle(R @ turn),
    )


def _fit_keypoints(
    model: BodyModel,
    kp: Tensor,
    conf: Tensor,
    camera: Camera,
    config: FitConfig,
    prior: MaxMixturePrior,
    init: FitResult | None,
    t0: float,
) -> tuple[FitResult, Tensor]:
    """:func:`fit_to_keypoints` on validated inputs as one batched problem.

    Returns:
        The fit and each body's energy at the end of each stage, ``[B, stages]``.
    """
    data = _keypoint_term(model, camera, kp, conf, config.sigma)
    if init is not None:
        params = _params_from_init(init, len(kp), model.num_betas, kp.dtype)
        return _staged_fit(model, params, data, config, prior, t0)
    params = _camera_stage(model, kp, conf, camera, config)
    flipped = _flipped(params) if config.flip_hypothesis else None
    r, per_stage = _staged_fit(model, params, data, config, prior, t0)
    if flipped is None or not config.pose_weights:
        return r, per_stage
    r_flip, per_stage_flip = _staged_fit(model, flipped, data, config, prior, t0)
    take = per_stage_flip[:, -1] < per_stage[:, -1]  # [B] the flipped fit ended lower
    log.debug("flipped hypothesis kept for %d of %d bodies", int(take.sum()), len(take))
    per_stage = torch.where(take[:, None], per_stage_flip, per_stage)
    pick = lambda a, b: torch.where(take.view(-1, *[1] * (a.ndim - 1)), b, a)  # noqa: E731
    result = FitResult(
        *(pick(getattr(r, name), getattr(r_flip, name)) for name in _FIELDS),
        per_stage.sum(0).tolist(),
        time.perf_counter() - t0,
    )
    return result, per_stage


def fit_to_scan(
    model: BodyModel,
    points: Tensor,
    config: FitConfig = FitConfig(),
    *,
    init: FitResult | None = None,
    prior: MaxMixturePrior | None = None,
    pose_bank: Tensor | None = None,
    hypotheses: int = 3,
    limb_search: bool = True,
) -> FitResult:
    """Fit to point clouds (metres) by Chamfer distance (nearest neighbours by KD-tree).

    Pose initialisation, unless ``init`` is given: the ``hypotheses`` poses (from
    ``pose_bank``, default the training clips) and yaws whose mean-shape bodies are nearest to
    the scan in Chamfer distance; each goes through the first stage and the one with the lowest
    Chamfer energy goes on.

    Limb search (``limb_search``): Chamfer fitting gets stuck with a forearm or shin bent the
    wrong way, the scan's real limb then being outside the robust kernel's reach. After the
    stages, each limb's joint rotations (arms from the collar, legs from the hip) are replaced in
    turn by every bank pose's, keeping the rest of the fit, and the Chamfer energy of each
    candidate is evaluated (no optimisation: only the limb's vertices move); bodies where some
    limb found a lower energy go through the last two stages again from there.

    Args:
        model: the body model.
        points: ``[B, N, 3]`` scan points.
        config: weights and schedule.
        init: a previous fit to start from.
        prior: pose prior.
        pose_bank: ``[K, 69]`` candidate initial poses (and limb configurations).
        hypotheses: initial poses tried per scan.
        limb_search: search the bank for better limb configurations after the fit.

    Returns:
        :class:`FitResult`.
    """
    t0 = time.perf_counter()
    points = _checked_scan(points, model.v_template.dtype)
    prior = prior or MaxMixturePrior()
    pose_bank = _default_bank(points.dtype) if pose_bank is None else pose_bank
    if init is None:
        params = _retrieval_init(model, points, pose_bank, k=hypotheses)
    else:
        params = _params_from_init(init, len(points), model.num_betas, points.dtype)
    if params.betas.shape[0] > len(points):
        params = _best_hypothesis(model, points, params, config, prior, t0)
    r, _ = _staged_fit(model, params, _ScanTerm(model, points, config), config, prior, t0)
    if limb_search:
        _refit_limbs(model, r, points, pose_bank, config, prior, t0)
    r.seconds = time.perf_counter() - t0
    return r


def _checked_scan(points: Tensor, dtype: torch.dtype) -> Tensor:
    """``[B, N, 3]`` (or ``[N, 3]``) finite points with ``N >= 100``, as ``[B, N, 3]``."""
    points = torch.as_tensor(points, dtype=dtype)
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[-1] != 3 or points.shape[1] < 100:
        raise MpgymError(
            f"points have shape {tuple(points.shape)}; accepted: (B, N, 3) with N >= 100."
        )
    if not torch.isfinite(points).all():
        raise MpgymError("the point cloud contains NaN or infinity; remove those points first.")
    return points


class _ScanTerm:
    """Scan data term: ``scan_weight`` x the Geman-McClure Chamfer energy in mm^2.

    Every other model vertex takes part (half the cost); the scans' KD-trees are built once.

    Args:
        model: the body model.
        points: ``[B, N, 3]`` scan points (metres).
        config: ``sigma`` and ``scan_weight``.
    """

    def __init__(self, model: BodyModel, points: Tensor, config: FitConfig):
        from scipy.spatial import cKDTree

        self.model, self.points = model, points
        self.sigma, self.weight = config.sigma, config.scan_weight
        self.subset = torch.arange(0, model.v_template.shape[0], 2)
        self.trees = [cKDTree(x) for x in points.cpu().numpy()]

    def energy(self, vertices: Tensor) -> Tensor:
        """Mean robust squared distance both ways, ``[B, V', 3]`` subset vertices -> ``[B]``."""
        a, b = nearest_sq_distances(self.points, vertices, a_trees=self.trees)  # m^2
        a, b = 1e6 * a, 1e6 * b  # mm^2
        return geman_mcclure(a, self.sigma).mean(1) + geman_mcclure(b, self.sigma).mean(1)

    def __call__(self, params: _FitParams, per_body: bool) -> Tensor:
        """The weighted energy of ``params``' bodies, summed or ``[B]``."""
        out = self.model(params.betas, params.body_pose, params.global_orient, params.transl)
        e = self.energy(out.vertices[:, self.subset])
        return self.weight * e if per_body else self.weight * e.sum()


def _best_hypothesis(
    model: BodyModel,
    points: Tensor,
    params: _FitParams,
    config: FitConfig,
    prior: MaxMixturePrior,
    t0: float,
) -> _FitParams:
    """Per scan, the start whose first stage ends at the lowest Chamfer energy.

    ``params`` holds ``k`` starts per scan (rows ``b k .. b k + k - 1``).
    """
    k = params.betas.shape[0] // len(points)
    term = _ScanTerm(model, points.repeat_interleave(k, 0), config)
    r, _ = _staged_fit(model, params, term, _stages(config, slice(None, 1)), prior, t0)
    with torch.no_grad():
        best = term.energy(r.vertices[:, term.subset]).view(len(points), k).argmin(1)
    return _params_from(r, torch.arange(len(points)) * k + best)


def _refit_limbs(
    model: BodyModel,
    r: FitResult,
    points: Tensor,
    pose_bank: Tensor,
    config: FitConfig,
    prior: MaxMixturePrior,
    t0: float,
) -> None:
    """:func:`_limb_search`, then the last two stages again from the swapped limbs.

    ``r`` takes (in place) the refit's rows where it ended lower than the first fit.
    """
    body_pose, better = _limb_search(model, r, points, pose_bank, config.sigma)
    if not better.any():
        return
    idx = better.nonzero()[:, 0]
    term = _ScanTerm(model, points[idx], config)
    r2, _ = _staged_fit(
        model, _params_from(r, idx, body_pose), term, _stages(config, slice(-2, None)), prior, t0
    )
    with torch.no_grad():  # keep the refit only where it ended lower than the first fit
        keep = idx[
            term.energy(r2.vertices[:, term.subset]) < term.energy(r.vertices[idx][:, term.subset])
        ]
    log.debug("limb search: %d of %d bodies refit, %d kept", len(idx), len(points), len(keep))
    if len(keep):
        pos = {int(b): i for i, b in enumerate(idx)}
        rows = torch.tensor([pos[int(b)] for b in keep])
        for name in _FIELDS:
            getattr(r, name)[keep] = getattr(r2, name)[rows]


LIMBS: dict[str, tuple[int, ...]] = {
    "left arm": (13, 16, 18, 20),
    "right arm": (14, 17, 19, 21),
    "left leg": (1, 4, 7),
    "right leg": (2, 5, 8),
}
"""Joints whose rotations :func:`fit_to_scan`'s limb search swaps together (collar or hip down to
the wrist or ankle; hands and feet keep the fit's rotations)."""


def _default_bank(dtype: torch.dtype) -> Tensor:
    """About 400 body poses evenly spaced through the training clips (mirrored included)."""
    from bodies.motion import clip_poses

    bank = clip_poses("train").reshape(-1, 69)
    return torch.as_tensor(bank[:: max(1, len(bank) // 400)], dtype=dtype)


class _Limb(NamedTuple):
    """One limb of :data:`LIMBS` as the limb search needs it."""

    name: str
    cols: Tensor  # [3 n] body-pose columns of the limb's joints
    moving: Tensor  # [V] bool: vertices owned by the limb's joints and their descendants
    arrays: tuple  # lbs's model arrays cut to every vertex_stride-th moving vertex


def _limbs(model: BodyModel, vertex_stride: int) -> list[_Limb]:
    """:data:`LIMBS` with the vertices each one moves.

    A vertex belongs to the joint of its largest skinning weight; a limb moves its joints'
    vertices and their descendants'.
    """
    from bodies.skeleton import children

    ch = children(tuple(model.parents.tolist()))
    owner = model.lbs_weights.argmax(1)
    V = owner.shape[0]
    limbs = []
    for name, joints in LIMBS.items():
        below, todo = set(), list(joints)
        while todo:
            j = todo.pop()
            below.add(j)
            todo += ch[j]
        moving = torch.isin(owner, torch.tensor(sorted(below)))
        vi = moving.nonzero()[:, 0][::vertex_stride]
        arrays = (
            model.v_template[vi],
            model.shapedirs[vi],
            model.posedirs.view(model.posedirs.shape[0], V, 3)[:, vi].reshape(-1, len(vi) * 3),
            model.J_regressor,
            model.parents,
            model.lbs_weights[vi],
        )
        cols = torch.tensor([3 * (j - 1) + c for j in joints for c in range(3)])
        limbs.append(_Limb(name, cols, moving, arrays))
    return limbs


def _limb_search(
    model: BodyModel,
    r: FitResult,
    points: Tensor,
    bank: Tensor,
    sigma: float,
    near: float = 0.02,
    vertex_stride: int = 3,
    max_points: int = 300,
) -> tuple[Tensor, Tensor]:
    """Body poses with limbs swapped for the bank's where that lowers the Chamfer energy.

    Vertices belong to the joint of their largest skinning weight; for each limb only those of
    the limb's joints and their descendants move (every ``vertex_stride``-th is used), so a
    candidate needs distances for them alone. Scan->model: a scan point within ``near`` metres
    of the rest of the body costs about the same whatever the limb does and is left out; of the
    others (at most ``max_points``, evenly spaced), each takes the nearer of the rest of the
    body (KD-tree, once per limb) and the candidate's limb (brute force). Model->scan: a
    KD-tree over the scan. Energies as in
    :func:`fit_to_scan` (Geman-McClure in mm^2), up to terms common to all candidates.

    Returns:
        ``(body_pose [B, 69], better [B] bool)``.
    """
    from scipy.spatial import cKDTree

    limbs = _limbs(model, vertex_stride)
    body_pose = r.body_pose.clone()
    better = torch.zeros(len(points), dtype=torch.bool)
    with torch.no_grad():
        for b in range(len(points)):
            tree = cKDTree(points[b].numpy())
            for limb in limbs:
                cand = body_pose[b : b + 1].repeat(len(bank) + 1, 1)  # row 0: the fit's own
                cand[1:, limb.cols] = bank[:, limb.cols].to(cand.dtype)
                e = _limb_energies(
                    model, r, b, limb, cand, points[b], tree, sigma, near, vertex_stride, max_points
                )
                best = int(e.argmin())
                log.debug("limb search, body %d, %s: %.4g -> %.4g", b, limb.name, e[0], e[best])
                if best and e[best] < e[0] - 1e-3 * abs(float(e[0])):
                    body_pose[b] = cand[best]
                    better[b] = True
    return body_pose, better


def _limb_energies(
    model: BodyModel,
    r: FitResult,
    b: int,
    limb: _Limb,
    cand: Tensor,
    scan: Tensor,
    tree,
    sigma: float,
    near: float,
    vertex_stride: int,
    max_points: int,
) -> Tensor:
    """Chamfer energy ``[K]`` of body ``b`` of ``r`` with each candidate pose ``cand [K, 69]``.

    The candidates differ only in ``limb``'s columns; the energy as :func:`_limb_search`
    describes it, up to terms common to all candidates.
    """
    from scipy.spatial import cKDTree

    K, V = len(cand), model.v_template.shape[0]
    verts, _ = lbs(  # only the limb's vertices, through the cached joint basis
        r.betas[b : b + 1].expand(K, -1),
        torch.cat([r.global_orient[b : b + 1].expand(K, -1), cand], 1),
        *limb.arrays,
        joint_basis=model.joint_basis,
    )
    verts = (verts + r.transl[b]).float()  # [K, Vl, 3]
    fixed = r.vertices[b, ~limb.moving].numpy()
    d_fixed = torch.as_tensor(cKDTree(fixed).query(scan.numpy())[0]) ** 2
    far = (d_fixed > near**2).nonzero()[:, 0]
    far = far[:: max(1, -(-len(far) // max_points))]
    P = scan[far].float()
    d_limb = (
        torch.cat(
            [torch.cdist(P.expand(len(x), -1, -1), x).amin(2) for x in verts.split(64)]
        ).double()
        ** 2
    )  # [K, far points]
    # beyond `reach` the robust cost is nearly flat: capping the search there keeps the tree
    # from walking far for limbs swung away from the scan
    reach = 2.5 * sigma / 1000.0
    to_scan = tree.query(
        verts.reshape(-1, 3).double().numpy(),
        distance_upper_bound=reach,
        workers=torch.get_num_threads(),
    )[0]
    to_scan = torch.as_tensor(np.minimum(to_scan, reach))
    e = geman_mcclure(1e6 * torch.minimum(d_fixed[far], d_limb), sigma).mean(1)  # mm^2
    e *= (d_fixed > near**2).double().mean()  # the far points' share of the scan
    e += geman_mcclure(1e6 * to_scan.view(K, -1) ** 2, sigma).sum(1) * vertex_stride / V
    return e


def _retrieval_init(
    model: BodyModel, points: Tensor, pose_bank: Tensor | None, n_sub: int = 300, k: int = 1
) -> _FitParams:
    """The ``k`` bank poses and yaws nearest to each scan (Chamfer on subsets), ``B * k`` rows."""
    if pose_bank is None:
        pose_bank = _default_bank(points.dtype)
    yaws = torch.tensor([-0.6, -0.3, 0.0, 0.3, 0.6], dtype=points.dtype)
    K, Y = len(pose_bank), len(yaws)
    yaw_orient = torch.zeros(Y, 3, dtype=points.dtype)
    yaw_orient[:, 1] = yaws
    bank_pose = pose_bank.repeat_interleave(Y, 0)  # [K*Y, 69]: each pose at each yaw
    bank_orient = yaw_orient.repeat(K, 1)
    g = torch.Generator().manual_seed(0)
    vi = torch.randperm(model.v_template.shape[0], generator=g)[:n_sub]
    pi = torch.randperm(points.shape[1], generator=g)[:n_sub]
    with torch.no_grad():
        cand = torch.cat(  # [K*Y, n, 3], a few hundred bodies at a time
            [
                model(
                    body_pose=bank_pose[i : i + 256], global_orient=bank_orient[i : i + 256]
                ).vertices[:, vi]
                for i in range(0, len(bank_pose), 256)
            ]
        )
        cand = cand - cand.mean(1, keepdim=True)
        pts = points[:, pi]
        centre = pts.mean(1, keepdim=True)
        pts = pts - centre
        best = []
        for b in range(len(points)):
            a2, c2 = nearest_sq_distances(pts[b].expand(len(cand), -1, -1), cand, method="brute")
            best.append((a2.mean(1) + c2.mean(1)).topk(k, largest=False).indices)
        best_t = torch.cat(best)
        v0 = model(body_pose=bank_pose[best_t], global_orient=bank_orient[best_t]).vertices
    transl = centre[:, 0].repeat_interleave(k, 0) - v0.mean(1)
    return _FitParams(
        len(best_t),
        model.num_betas,
        points.dtype,
        transl=transl,
        global_orient=bank_orient[best_t],
        body_pose=bank_pose[best_t],
    )
