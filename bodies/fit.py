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
the paper) and a first stage fits only translation and global rotation to the torso joints.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from bodies.lbs import lbs, rigid_transforms
from bodies.model import BodyModel, shapes_repr
from bodies.priors import MaxMixturePrior, bending_prior, shape_prior
from bodies.rotations import axis_angle_to_matrix
from mpgym.errors import MpgymError

log = logging.getLogger(__name__)

TORSO = (1, 2, 16, 17)  # hips and shoulders


@dataclass(frozen=True)
class FitConfig:
    """Weights and schedule of SMPLify-style fitting (defaults: the SMPLify paper)."""

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


def gmof(r: Tensor, sigma: float) -> Tensor:
    """Geman-McClure ``sigma^2 r^2 / (sigma^2 + r^2)`` (elementwise)."""
    r2 = r * r
    return sigma**2 * r2 / (sigma**2 + r2)


def joint_basis(model: BodyModel) -> tuple[Tensor, Tensor]:
    """Rest joints ``[J, 3]`` and their shape directions ``[J, 3, S]`` (``J_regressor`` applied)."""
    jt = model.J_regressor @ model.v_template
    jd = torch.einsum("jv,vcs->jcs", model.J_regressor, model.shapedirs)
    return jt, jd


def posed_joints(
    model: BodyModel,
    betas: Tensor,
    body_pose: Tensor,
    global_orient: Tensor,
    transl: Tensor,
    basis: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Joints only, without skinning the mesh (``[B, J, 3]``): what joint-based fits need."""
    jt, jd = basis if basis is not None else joint_basis(model)
    J = jt + torch.einsum("jcs,bs->bjc", jd[..., : betas.shape[1]], betas)
    rot = axis_angle_to_matrix(torch.cat([global_orient, body_pose], 1).reshape(len(betas), -1, 3))
    return rigid_transforms(rot, J, model.parents)[0] + transl[:, None]


def rigid_init(model: BodyModel, joints: Tensor, conf: Tensor) -> tuple[Tensor, Tensor]:
    """Global rotation and translation aligning the rest torso to observed 3D joints (Kabsch).

    Returns:
        ``(global_orient [B, 3], transl [B, 3])``.
    """
    from bodies.rotations import matrix_to_axis_angle

    idx = [0, 1, 2, 3, 6, 9, 12, 16, 17]
    src = (model.J_regressor @ model.v_template)[idx].to(joints.dtype)
    w = conf[:, idx, None]
    dst = joints[:, idx]
    mu_s = (w * src).sum(1) / w.sum(1)
    mu_d = (w * dst).sum(1) / w.sum(1)
    H = ((src - mu_s[:, None]) * w).transpose(1, 2) @ (dst - mu_d[:, None])
    U, _, Vh = torch.linalg.svd(H)
    d = torch.sign(torch.linalg.det(Vh.transpose(1, 2) @ U.transpose(1, 2)))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    R = Vh.transpose(1, 2) @ D @ U.transpose(1, 2)  # dst ~ R src
    root = (model.J_regressor @ model.v_template)[0].to(joints.dtype)
    # rotation about the root joint: x' = R (x - root) + root + transl
    transl = mu_d - (R @ (mu_s - root)[..., None])[..., 0] - root
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
    from bodies.rotations import matrix_to_axis_angle
    from bodies.skeleton import children

    J0 = (model.J_regressor @ model.v_template).to(joints.dtype)
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


class _Params(torch.nn.Module):
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


def _params_from(r: FitResult, rows: Tensor, body_pose: Tensor | None = None) -> _Params:
    """Parameters starting from rows ``rows`` of a fit (with ``body_pose``'s rows if given)."""
    return _Params(
        len(rows),
        r.betas.shape[1],
        r.betas.dtype,
        transl=r.transl[rows],
        global_orient=r.global_orient[rows],
        body_pose=(r.body_pose if body_pose is None else body_pose)[rows],
        betas=r.betas[rows],
    )


def _stages(config: FitConfig, stages: slice) -> FitConfig:
    """``config`` with only some of its stages."""
    return dataclasses.replace(
        config, pose_weights=config.pose_weights[stages], shape_weights=config.shape_weights[stages]
    )


def _optimize(params: list[torch.nn.Parameter], closure, config: FitConfig) -> float:
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

        return float(opt.step(step).detach())
    opt = torch.optim.Adam(params, lr=config.adam_lr)
    for _ in range(10 * config.steps_per_stage):
        opt.zero_grad()
        loss = closure()
        loss.backward()
        opt.step()
    return float(loss.detach())


def _staged_fit(
    model: BodyModel, p: _Params, data_term, config: FitConfig, prior: MaxMixturePrior, t0: float
) -> FitResult:
    losses = []
    for w_pose, w_shape in zip(config.pose_weights, config.shape_weights, strict=True):

        def closure(w_pose=w_pose, w_shape=w_shape):
            e = data_term(p)
            e = e + w_pose**2 * prior(p.body_pose).sum()
            e = e + (config.bend_factor * w_pose) ** 2 * bending_prior(p.body_pose).sum()
            return e + w_shape**2 * shape_prior(p.betas).sum()

        losses.append(_optimize(list(p.parameters()), closure, config))
        log.debug("stage w_pose=%g: energy %.4g", w_pose, losses[-1])
    with torch.no_grad():
        out = model(p.betas, p.body_pose, p.global_orient, p.transl)
    return FitResult(
        p.betas.detach(),
        p.body_pose.detach(),
        p.global_orient.detach(),
        p.transl.detach(),
        out.vertices,
        out.joints,
        losses,
        time.perf_counter() - t0,
    )


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
    go, transl = rigid_init(model, joints.to(dtype), conf.to(dtype))
    pose0 = swing_init(model, joints.to(dtype), go) if bool((conf > 0).all()) else None
    p = _Params(B, model.num_betas, dtype, transl=transl, global_orient=go, body_pose=pose0)
    basis = joint_basis(model)

    def data(p):
        pred = posed_joints(model, p.betas, p.body_pose, p.global_orient, p.transl, basis)
        return (conf[..., None] ** 2 * gmof(1000.0 * (pred - joints), config.sigma)).sum()

    return _staged_fit(model, p, data, config, prior, t0)


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


def init_from_torso(model: BodyModel, keypoints: Tensor, conf: Tensor, camera: Camera) -> Tensor:
    """Body translation from the torso's 2D size (similar triangles, SMPLify), ``[B, 3]``.

    Depth ``z = f * L_3D / L_2D`` from the hip-shoulder distances of the template and of the
    keypoints; the pelvis is placed on the ray through the torso's 2D centre.
    """
    J0 = (model.J_regressor @ model.v_template).to(keypoints.dtype)
    pairs = [(1, 16), (2, 17)]
    l3 = torch.stack([(J0[a] - J0[b]).norm() for a, b in pairs]).mean()
    l2 = torch.stack([(keypoints[:, a] - keypoints[:, b]).norm(dim=-1) for a, b in pairs], -1)
    ok = torch.stack([(conf[:, a] > 0) & (conf[:, b] > 0) for a, b in pairs], -1)
    l2 = torch.where(
        ok.any(-1), (l2 * ok).sum(-1) / ok.sum(-1).clamp_min(1), l2.new_tensor(float("nan"))
    )
    vis = conf > 0
    uv = (keypoints * vis[..., None]).sum(1) / vis.sum(1, keepdim=True)
    z = camera.focal * l3 / l2
    z = torch.where(torch.isfinite(z), z, z.new_tensor(5.0))  # no torso seen: 5 m
    c = keypoints.new_tensor(camera.center)
    Xc = torch.cat([(uv - c) / camera.focal * z[:, None], z[:, None]], -1)
    R = torch.as_tensor(camera.R, dtype=keypoints.dtype)
    t = torch.as_tensor(camera.t, dtype=keypoints.dtype)
    return (Xc - t) @ R - J0[0]


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
    keypoints. With ``init`` (for example :meth:`bodies.learned.LearnedFitter.fit`'s result)
    the stages start from those parameters; ``PRESETS["refine2d"]`` is a schedule for that.

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
    # the body faces the camera and stands upright in the image
    R = torch.as_tensor(camera.R, dtype=dtype)
    from bodies.rotations import matrix_to_axis_angle

    basis = joint_basis(model)

    def data_with(c):
        def data(p):
            pred = camera.project(
                posed_joints(model, p.betas, p.body_pose, p.global_orient, p.transl, basis)
            )
            return (c[..., None] ** 2 * gmof(pred - kp, config.sigma)).sum()

        return data

    if init is not None:
        p = _Params(
            len(kp),
            model.num_betas,
            dtype,
            transl=init.transl.to(dtype),
            global_orient=init.global_orient.to(dtype),
            body_pose=init.body_pose.to(dtype),
        )
        with torch.no_grad():
            p.betas.copy_(init.betas.to(dtype))
        return _staged_fit(model, p, data_with(conf), config, prior, t0)
    go = matrix_to_axis_angle(R.T @ torch.diag(R.new_tensor([1.0, -1.0, -1.0]))).expand(len(kp), 3)
    p = _Params(
        len(kp),
        model.num_betas,
        dtype,
        transl=init_from_torso(model, kp, conf, camera),
        global_orient=go,
    )
    torso = torch.zeros_like(conf)
    torso[:, list(TORSO)] = conf[:, list(TORSO)]
    # stage 0: camera-facing pose of the torso (translation and global rotation only)
    init_closure = data_with(torso)
    _optimize([p.transl, p.global_orient], lambda: init_closure(p), config)
    return _staged_fit(model, p, data_with(conf), config, prior, t0)


def chamfer_terms(verts: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
    """Squared nearest-neighbour distances: ``([B, N] scan->model, [B, V] model->scan)``.

    Brute force (``[B, N, V]`` distances); :func:`chamfer_terms_kdtree` is the fast path.
    """
    d = torch.cdist(points, verts)  # [B, N, V]
    return d.min(2).values ** 2, d.min(1).values ** 2


def chamfer_terms_kdtree(
    verts: Tensor, points: Tensor, scan_trees: list | None = None
) -> tuple[Tensor, Tensor]:
    """:func:`chamfer_terms` with nearest neighbours found by KD-trees (scipy ``cKDTree``).

    The neighbours are looked up without gradient (a tree over each body's vertices per call,
    and one over each scan, built once when ``scan_trees`` is passed); the squared distances to
    them are differentiable, as with the brute-force minimum. ``O((N + V) log)`` per body
    instead of ``O(N V)``.

    Args:
        verts: ``[B, V, 3]`` model vertices.
        points: ``[B, N, 3]`` scan points.
        scan_trees: ``cKDTree`` per scan (built here when None).

    Returns:
        ``([B, N] scan->model, [B, V] model->scan)`` squared distances.
    """
    from scipy.spatial import cKDTree

    vn = verts.detach().cpu().numpy()
    pn = points.detach().cpu().numpy()
    trees = scan_trees if scan_trees is not None else [cKDTree(x) for x in pn]
    i_sm = np.stack([cKDTree(vn[b]).query(pn[b])[1] for b in range(len(vn))])  # [B, N]
    i_ms = np.stack([trees[b].query(vn[b])[1] for b in range(len(vn))])  # [B, V]
    i_sm = torch.as_tensor(i_sm, device=verts.device)
    i_ms = torch.as_tensor(i_ms, device=verts.device)
    near_v = torch.gather(verts, 1, i_sm[..., None].expand(-1, -1, 3))
    near_p = torch.gather(points, 1, i_ms[..., None].expand(-1, -1, 3))
    return (points - near_v).pow(2).sum(-1), (verts - near_p).pow(2).sum(-1)


def gmof_squared(r2: Tensor, sigma: float) -> Tensor:
    """:func:`gmof` of ``r`` given ``r^2`` (no square root, so finite gradients at 0)."""
    return sigma**2 * r2 / (sigma**2 + r2)


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
    points = torch.as_tensor(points, dtype=model.v_template.dtype)
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[-1] != 3 or points.shape[1] < 100:
        raise MpgymError(
            f"points have shape {tuple(points.shape)}; accepted: (B, N, 3) with N >= 100."
        )
    if not torch.isfinite(points).all():
        raise MpgymError("the point cloud contains NaN or infinity; remove those points first.")
    prior = prior or MaxMixturePrior()
    pose_bank = _default_bank(points.dtype) if pose_bank is None else pose_bank
    if init is None:
        p = _retrieval_init(model, points, pose_bank, k=hypotheses)
    else:
        if init.betas.shape != (len(points), model.num_betas):
            raise MpgymError(
                f"init has betas of shape {tuple(init.betas.shape)}; accepted: one row per scan "
                f"({len(points)}) with the model's {model.num_betas} shape coefficients."
            )
        p = _Params(
            len(points),
            model.num_betas,
            points.dtype,
            transl=init.transl.to(points.dtype),
            global_orient=init.global_orient.to(points.dtype),
            body_pose=init.body_pose.to(points.dtype),
            betas=init.betas.to(points.dtype),
        )
    sub = torch.arange(0, model.v_template.shape[0], 2)  # every other vertex: half the cost
    from scipy.spatial import cKDTree

    def data_for(points):
        trees = [cKDTree(x) for x in points.cpu().numpy()]

        def energy(v):  # [B, V', 3] -> [B]
            a, b = chamfer_terms_kdtree(v, points, trees)  # m^2
            a, b = 1e6 * a, 1e6 * b  # mm^2
            return gmof_squared(a, config.sigma).mean(1) + gmof_squared(b, config.sigma).mean(1)

        def data(p):
            v = model(p.betas, p.body_pose, p.global_orient, p.transl).vertices[:, sub]
            return config.scan_weight * energy(v).sum()

        return data, energy

    if p.betas.shape[0] > len(points):  # several hypotheses: first stage on each, keep the best
        k = p.betas.shape[0] // len(points)
        data, energy = data_for(points.repeat_interleave(k, 0))
        r = _staged_fit(model, p, data, _stages(config, slice(None, 1)), prior, t0)
        with torch.no_grad():
            best = energy(r.vertices[:, sub]).view(len(points), k).argmin(1)
        p = _params_from(r, torch.arange(len(points)) * k + best)
    data, _ = data_for(points)
    r = _staged_fit(model, p, data, config, prior, t0)
    if not limb_search:
        return r
    body_pose, better = _limb_search(model, r, points, pose_bank, config.sigma)
    if not better.any():
        return r
    idx = better.nonzero()[:, 0]
    data, energy_sub = data_for(points[idx])
    r2 = _staged_fit(
        model, _params_from(r, idx, body_pose), data, _stages(config, slice(-2, None)), prior, t0
    )
    with torch.no_grad():  # keep the refit only where it ended lower than the first fit
        keep = idx[energy_sub(r2.vertices[:, sub]) < energy_sub(r.vertices[idx][:, sub])]
    log.debug("limb search: %d of %d bodies refit, %d kept", len(idx), len(points), len(keep))
    if len(keep):
        pos = {int(b): i for i, b in enumerate(idx)}
        rows = torch.tensor([pos[int(b)] for b in keep])
        for name in ("betas", "body_pose", "global_orient", "transl", "vertices", "joints"):
            getattr(r, name)[keep] = getattr(r2, name)[rows]
    r.seconds = time.perf_counter() - t0
    return r


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

    from bodies.skeleton import children

    ch = children(tuple(model.parents.tolist()))
    owner = model.lbs_weights.argmax(1)
    V = owner.shape[0]
    limbs = []  # per limb: name, pose columns, moving vertices, the model cut to its vertices
    for name, joints in LIMBS.items():
        sub, todo = set(), list(joints)
        while todo:
            j = todo.pop()
            sub.add(j)
            todo += ch[j]
        moving = torch.isin(owner, torch.tensor(sorted(sub)))
        vi = moving.nonzero()[:, 0][::vertex_stride]
        cut = (
            model.v_template[vi],
            model.shapedirs[vi],
            model.posedirs.view(model.posedirs.shape[0], V, 3)[:, vi].reshape(-1, len(vi) * 3),
            model.J_regressor,
            model.parents,
            model.lbs_weights[vi],
        )
        cols = torch.tensor([3 * (j - 1) + c for j in joints for c in range(3)])
        limbs.append((name, cols, moving, cut))
    body_pose = r.body_pose.clone()
    better = torch.zeros(len(points), dtype=torch.bool)
    K = len(bank)
    with torch.no_grad():
        for b in range(len(points)):
            scan = points[b]
            tree = cKDTree(scan.numpy())
            for limb_name, cols, moving, cut in limbs:
                cand = body_pose[b : b + 1].repeat(K + 1, 1)
                cand[1:, cols] = bank[:, cols].to(cand.dtype)
                limb, _ = lbs(  # only the limb's vertices, through the cached joint basis
                    r.betas[b : b + 1].expand(K + 1, -1),
                    torch.cat([r.global_orient[b : b + 1].expand(K + 1, -1), cand], 1),
                    *cut,
                    joint_basis=model.joint_basis,
                )
                limb = (limb + r.transl[b]).float()  # [K+1, Vl, 3]
                fixed = r.vertices[b, ~moving].numpy()
                d_fixed = torch.as_tensor(cKDTree(fixed).query(scan.numpy())[0]) ** 2
                far = (d_fixed > near**2).nonzero()[:, 0]
                far = far[:: max(1, -(-len(far) // max_points))]
                P = scan[far].float()
                d_limb = (
                    torch.cat(
                        [torch.cdist(P.expand(len(x), -1, -1), x).amin(2) for x in limb.split(64)]
                    ).double()
                    ** 2
                )  # [K+1, far points]
                # beyond `reach` the robust cost is nearly flat: capping the search there keeps
                # the tree from walking far for limbs swung away from the scan
                reach = 2.5 * sigma / 1000.0
                to_scan = tree.query(
                    limb.reshape(-1, 3).double().numpy(),
                    distance_upper_bound=reach,
                    workers=torch.get_num_threads(),
                )[0]
                to_scan = torch.as_tensor(np.minimum(to_scan, reach))
                e = _gmof_mm2(torch.minimum(d_fixed[far], d_limb), sigma).mean(1)
                e *= (d_fixed > near**2).double().mean()  # the far points' share of the scan
                e += _gmof_mm2(to_scan.view(K + 1, -1) ** 2, sigma).sum(1) * vertex_stride / V
                best = int(e.argmin())
                log.debug("limb search, body %d, %s: %.4g -> %.4g", b, limb_name, e[0], e[best])
                if best and e[best] < e[0] - 1e-3 * abs(float(e[0])):
                    body_pose[b] = cand[best]
                    better[b] = True
    return body_pose, better


def _gmof_mm2(d2_m2: Tensor, sigma: float) -> Tensor:
    """:func:`gmof_squared` of squared distances given in m^2, the residuals taken in mm."""
    return gmof_squared(1e6 * d2_m2, sigma)


def _retrieval_init(
    model: BodyModel, points: Tensor, pose_bank: Tensor | None, n_sub: int = 300, k: int = 1
) -> _Params:
    """The ``k`` bank poses and yaws nearest to each scan (Chamfer on subsets), ``B * k`` rows."""
    if pose_bank is None:
        pose_bank = _default_bank(points.dtype)
    yaws = torch.tensor([-0.6, -0.3, 0.0, 0.3, 0.6], dtype=points.dtype)
    K, Y = len(pose_bank), len(yaws)
    go = torch.zeros(Y, 3, dtype=points.dtype)
    go[:, 1] = yaws
    bp = pose_bank.repeat_interleave(Y, 0)
    gor = go.repeat(K, 1)
    g = torch.Generator().manual_seed(0)
    vi = torch.randperm(model.v_template.shape[0], generator=g)[:n_sub]
    pi = torch.randperm(points.shape[1], generator=g)[:n_sub]
    with torch.no_grad():
        cand = torch.cat(  # [K*Y, n, 3], a few hundred bodies at a time
            [
                model(body_pose=bp[i : i + 256], global_orient=gor[i : i + 256]).vertices[:, vi]
                for i in range(0, len(bp), 256)
            ]
        )
        cand = cand - cand.mean(1, keepdim=True)
        pts = points[:, pi]
        centre = pts.mean(1, keepdim=True)
        pts = pts - centre
        best = []
        for b in range(len(points)):
            d = torch.cdist(pts[b].expand(len(cand), -1, -1), cand)
            cost = d.min(2).values.pow(2).mean(1) + d.min(1).values.pow(2).mean(1)
            best.append(cost.topk(k, largest=False).indices)
        best_t = torch.cat(best)
        v0 = model(body_pose=bp[best_t], global_orient=gor[best_t]).vertices
    transl = centre[:, 0].repeat_interleave(k, 0) - v0.mean(1)
    return _Params(
        len(best_t),
        model.num_betas,
        points.dtype,
        transl=transl,
        global_orient=gor[best_t],
        body_pose=bp[best_t],
    )
