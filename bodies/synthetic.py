"""Build the SMPL-compatible body model, deterministically, in a few seconds.

The official SMPL files cannot be redistributed, so mpgym makes its own model with the same
kinematic tree and file layout (``v_template (6890, 3)``, ``f (13776, 3)``, ``J_regressor
(24, 6890)``, ``weights (6890, 24)``, ``kintree_table (2, 24)``, ``shapedirs (6890, 3, 10)``,
``posedirs (6890, 3, 207)``). It loads unchanged into ``smplx.SMPL`` (pass
``data_struct=smplx.utils.Struct(**np.load(path))``). How each part is made:

* **Surface.** A smooth union of capsules and ellipsoids around a T-posed skeleton
  (:mod:`bodies.skeleton`), meshed with marching cubes and decimated (quadric error metric)
  to exactly 6890 vertices; a closed genus-0 surface with ``V`` vertices has ``2V - 4 = 13776``
  triangles, SMPL's counts.
* **Skinning weights.** Per vertex, a soft-min over the distances to the bones that it may
  follow (its own part, that part's parent and children, all of the trunk for trunk vertices),
  smoothed over the mesh and cut to the 4 largest, so they fall off smoothly from the bones.
* **Shape space.** A population of 400 bodies with varied height, limb lengths, shoulder and
  hip widths, girths and belly, each made by deforming the template with per-bone affine maps
  blended by the skinning weights; ``v_template`` is their mean and ``shapedirs`` their
  principal components scaled by their standard deviations (so ``beta ~ N(0, I)``, as SMPL).
* **Joint regressor.** Per joint, Gaussian weights over the nearest surface vertices, corrected
  (minimum-norm) so that it reproduces the population-mean skeleton exactly; rows sum to 1.
* **Pose correctives.** ``posedirs`` are fitted by ridge regression so that LBS plus correctives
  reproduces dual-quaternion skinning (Kavan et al. 2007, no candy-wrapper collapse) on 256
  random poses, each vertex using only the features of the joints that move it (as SMPL's
  correctives are local).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from bodies.skeleton import JOINT_NAMES, LEFT_RIGHT, NUM_JOINTS, PARENTS, children, rest_joints

log = logging.getLogger(__name__)

VERSION = "1"
NUM_VERTS, NUM_FACES, NUM_BETAS = 6890, 13776, 10
TRUNK = (0, 3, 6, 9, 12, 13, 14)


def default_path() -> Path:
    """Where the built model is cached: ``$MPGYM_CACHE`` or ``~/.cache/mpgym``."""
    root = Path(os.environ.get("MPGYM_CACHE", Path.home() / ".cache" / "mpgym"))
    return root / "bodies" / f"smpl_compatible_v{VERSION}.npz"


# ----------------------------------------------------------------------------- geometry
def _bones(J: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bone segment ``(start, end)`` per joint, ``(24, 3)`` each: the part that joint moves."""
    S = J.copy()
    E = np.zeros_like(J)
    ch = children()
    main_child = {0: 3, 9: 12, 13: 16, 14: 17}
    for k in range(NUM_JOINTS):
        if k in main_child:
            E[k] = J[main_child[k]]
        elif ch[k]:
            E[k] = J[ch[k][0]]
    S[0] = (0.0, J[1, 1], J[0, 2])  # the pelvis bone spans the hips up to spine1
    E[15] = J[15] + (0.0, 0.20, 0.0)
    for left in (22, 23):
        side = 1.0 if left == 22 else -1.0
        E[left] = J[left] + (side * 0.10, -0.005, 0.0)
    for foot in (10, 11):
        E[foot] = J[foot] + (0.0, -0.01, 0.08)
    return S, E


def _primitives(J: np.ndarray) -> list[tuple[str, int, tuple]]:
    """Capsules ``(a, b, ra, rb)`` and ellipsoids ``(centre, radii)`` making the body, per bone."""
    P: list[tuple[str, int, tuple]] = [
        ("ell", 0, ((0.0, -0.27, -0.005), (0.165, 0.12, 0.115))),
        ("ell", 3, ((0.0, -0.10, 0.0), (0.15, 0.12, 0.105))),
        ("ell", 6, ((0.0, 0.05, -0.005), (0.165, 0.13, 0.11))),
        ("ell", 9, ((0.0, 0.15, -0.02), (0.17, 0.10, 0.10))),
        ("cap", 12, ((0.0, 0.22, -0.03), (0.0, 0.40, -0.01), 0.055, 0.05)),
        ("ell", 15, ((0.0, 0.47, 0.01), (0.08, 0.11, 0.095))),
    ]
    for side in (1.0, -1.0):
        s = np.array([side, 1.0, 1.0])
        L = (lambda k: k) if side > 0 else (lambda k: LEFT_RIGHT[k])
        P += [
            ("cap", L(13), (J[L(13)], J[L(16)], 0.065, 0.055)),
            ("cap", L(16), (J[L(16)], J[L(18)], 0.052, 0.040)),
            ("cap", L(18), (J[L(18)], J[L(20)], 0.039, 0.029)),
            ("ell", L(20), (J[L(20)] + s * (0.085, -0.005, 0.0), (0.09, 0.022, 0.045))),
            ("cap", L(1), (J[L(1)] + (0, 0.02, 0), J[L(4)], 0.088, 0.056)),
            ("cap", L(4), (J[L(4)], J[L(7)], 0.054, 0.036)),
            ("cap", L(7), (J[L(7)] + (0, -0.03, -0.06), J[L(10)] + (0, -0.035, 0.06), 0.036, 0.03)),
        ]
    return P


def _prim_sdf(p: np.ndarray, kind: str, args: tuple) -> np.ndarray:
    if kind == "ell":
        c, r = (np.asarray(a, float) for a in args)
        q = (p - c) / r
        return (np.linalg.norm(q, axis=-1) - 1.0) * r.min()
    a, b, ra, rb = args
    a, b = np.asarray(a, float), np.asarray(b, float)
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - a - t[..., None] * ab, axis=-1) - (ra + (rb - ra) * t)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def _surface(J: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of the smooth union, decimated to SMPL's vertex count."""
    import open3d as o3d
    import trimesh
    from skimage.measure import marching_cubes

    lo, hi = np.array([-0.95, -1.25, -0.22]), np.array([0.95, 0.65, 0.30])
    axes = [np.arange(lo[i], hi[i] + spacing, spacing) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    d = np.full(len(grid), np.inf)
    for kind, _, args in _primitives(J):
        d = (
            _smin(d, _prim_sdf(grid, kind, args), 0.04)
            if np.isfinite(d).any()
            else _prim_sdf(grid, kind, args)
        )
    vol = d.reshape(*(len(a) for a in axes))
    verts, faces, _, _ = marching_cubes(vol, 0.0, spacing=(spacing,) * 3)
    tm = trimesh.Trimesh(verts + lo, faces, process=True)  # merges coincident vertices
    tm.update_faces(tm.nondegenerate_faces())
    tm.remove_unreferenced_vertices()
    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(tm.vertices), o3d.utility.Vector3iVector(tm.faces)
    )
    mesh = mesh.simplify_quadric_decimation(target_number_of_triangles=NUM_FACES)
    mesh.remove_unreferenced_vertices()
    mesh = mesh.filter_smooth_taubin(number_of_iterations=10)
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    if len(v) != NUM_VERTS or len(f) != NUM_FACES:
        raise RuntimeError(f"surface has {len(v)} vertices / {len(f)} faces; expected 6890 / 13776")
    # order vertices top to bottom, then faces, so the file is stable and readable
    order = np.lexsort((v[:, 0], v[:, 2], -np.round(v[:, 1], 3)))
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    f = inv[f]
    f = f[np.lexsort((f[:, 2], f[:, 1], f[:, 0]))]
    return v[order], f


# ----------------------------------------------------------------------------- weights
def _segment_dist(v: np.ndarray, S: np.ndarray, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances ``(V, 24)`` from vertices to bone segments, and the (unclamped) bone parameter."""
    d = E - S
    t = np.einsum("vkc,kc->vk", v[:, None] - S[None], d) / (d * d).sum(-1)
    tc = np.clip(t, 0.0, 1.0)
    return np.linalg.norm(v[:, None] - S[None] - tc[..., None] * d[None], axis=-1), t


def _neighbours(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    edges = np.unique(np.sort(edges, 1), axis=0)
    return edges[:, 0], edges[:, 1]


def _laplacian_smooth(x: np.ndarray, f: np.ndarray, n_iter: int, lam: float = 0.5) -> np.ndarray:
    i, j = _neighbours(x, f)
    deg = np.bincount(np.concatenate([i, j]), minlength=len(x)).astype(float)[:, None]
    for _ in range(n_iter):
        s = np.zeros_like(x)
        np.add.at(s, i, x[j])
        np.add.at(s, j, x[i])
        x = (1 - lam) * x + lam * s / deg
    return x


def _skinning_weights(v: np.ndarray, f: np.ndarray, J: np.ndarray, tau: float = 0.02) -> np.ndarray:
    S, E = _bones(J)
    dist, _ = _segment_dist(v, S, E)
    # the part a vertex belongs to: the primitive nearest to it
    prims = _primitives(J)
    pd = np.stack([_prim_sdf(v, k, a) for k, _, a in prims], 1)
    part = np.array([b for _, b, _ in prims])[np.abs(pd).argmin(1)]
    ch = children()
    allowed = np.zeros((NUM_JOINTS, NUM_JOINTS), bool)
    for k in range(NUM_JOINTS):
        allowed[k, [k, *ch[k]] + ([PARENTS[k]] if k else [])] = True
        if k in TRUNK:
            allowed[k, list(TRUNK)] = True
    mask = allowed[part]
    dm = np.where(mask, dist, np.inf)
    w = np.exp(-(dm - dm.min(1, keepdims=True)) / tau)
    w = _laplacian_smooth(w / w.sum(1, keepdims=True), f, 8)
    top = np.argsort(-w, 1)[:, 4:]
    np.put_along_axis(w, top, 0.0, 1)
    w[w < 1e-3] = 0.0
    return w / w.sum(1, keepdims=True)


# ----------------------------------------------------------------------------- shape space
def _random_skeleton(J: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One body's joints and per-bone girth scales."""
    g = lambda s: rng.normal(1.0, s)  # noqa: E731
    height, legs, arms, torso = g(0.06), g(0.05), g(0.05), g(0.04)
    shoulders, hips, weight, belly, limbs = g(0.06), g(0.06), g(0.10), g(0.12), g(0.07)
    seg = np.full(NUM_JOINTS, height)
    for k in (4, 5, 7, 8, 10, 11):
        seg[k] *= legs
    for k in (18, 19, 20, 21, 22, 23):
        seg[k] *= arms
    for k in (3, 6, 9, 12, 15):
        seg[k] *= torso
    Jn = np.zeros_like(J)
    Jn[0] = J[0] * (height, height, 1.0)
    for k in range(1, NUM_JOINTS):
        off = (J[k] - J[PARENTS[k]]) * seg[k]
        if k in (1, 2):
            off[0] *= hips
        if k in (13, 14, 16, 17):
            off[0] *= shoulders
        Jn[k] = Jn[PARENTS[k]] + off
    girth = np.full(NUM_JOINTS, weight * np.sqrt(height))
    girth[[3, 6]] *= belly
    girth[[0]] *= np.sqrt(belly) * hips
    girth[[16, 17, 18, 19, 1, 2, 4, 5]] *= limbs
    girth[[15]] = rng.normal(1.0, 0.04) * np.sqrt(height)
    return Jn, girth


def _shape_space(v, w, J, rng, n_bodies=400):
    """Population of deformed templates -> (mean, shapedirs, mean skeleton, explained variance).

    Each body blends per-bone maps that stretch along the bone to its new ends and scale across
    it by the bone's girth: ``v' = sum_k w_k (S'_k + t_k (E'_k - S'_k) + g_k r_k)``, linear in
    the new bones and girths, so the whole population is three matrix products.
    """
    S, E = _bones(J)
    _, t = _segment_dist(v, S, E)
    radial = v[:, None] - (S[None] + t[..., None] * (E - S)[None])  # [V, 24, 3]
    wt, wr = w * t, w[..., None] * radial
    skel, girth = zip(*(_random_skeleton(J, rng) for _ in range(n_bodies)), strict=False)
    bones = [_bones(Jn) for Jn in skel]
    Sn = np.stack([b[0] for b in bones])
    Dn = np.stack([b[1] - b[0] for b in bones])
    g = np.stack(girth)  # [n, 24]
    X = (
        w @ Sn.transpose(1, 0, 2).reshape(NUM_JOINTS, -1)
        + wt @ Dn.transpose(1, 0, 2).reshape(NUM_JOINTS, -1)
    ).reshape(len(v), n_bodies, 3)
    X += np.stack([wr[..., c] @ g.T for c in range(3)], -1)
    X = X.transpose(1, 0, 2).reshape(n_bodies, -1)
    mean = X.mean(0)
    _, s, vt = np.linalg.svd(X - mean, full_matrices=False)
    std = s[:NUM_BETAS] / np.sqrt(n_bodies - 1)
    vt = vt[:NUM_BETAS] * np.sign(vt[:NUM_BETAS].sum(1, keepdims=True))  # deterministic signs
    shapedirs = (vt * std[:, None]).T.reshape(NUM_VERTS, 3, NUM_BETAS)
    explained = (s[:NUM_BETAS] ** 2).sum() / (s**2).sum()
    return mean.reshape(NUM_VERTS, 3), shapedirs, np.mean(skel, 0), explained


def _joint_regressor(v: np.ndarray, w: np.ndarray, J: np.ndarray, k_near: int = 64) -> np.ndarray:
    """Per joint: non-negative weights on the surface ring around it that reproduce it."""
    from scipy.optimize import nnls

    S, E = _bones(J)
    R = np.zeros((NUM_JOINTS, len(v)))
    for j in range(NUM_JOINTS):
        near = w[:, j] + (w[:, PARENTS[j]] if j else 0.0) > 0.05  # vertices the joint moves
        axis = (E[j] - S[j]) / np.linalg.norm(E[j] - S[j])
        plane = np.abs((v - J[j]) @ axis)  # distance from the cross-section through the joint
        score = np.where(near, plane + 0.3 * np.linalg.norm(v - J[j], axis=1), np.inf)
        idx = np.argsort(score)[:k_near]
        w0 = np.full(k_near, 1.0 / k_near)
        A = np.concatenate(
            [100 * np.concatenate([v[idx].T, np.ones((1, k_near))]), 0.1 * np.eye(k_near)]
        )
        b = np.concatenate([100 * np.concatenate([J[j], [1.0]]), 0.1 * w0])
        R[j, idx] = nnls(A, b)[0]
    return R / R.sum(1, keepdims=True)


# ----------------------------------------------------------------------------- correctives
def _qmul(a, b):
    """Hamilton product of ``(w, x, y, z)`` quaternions (torch, broadcasting)."""
    import torch

    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def _dqs(v, support, ws, A):
    """Dual-quaternion skinning (Kavan et al. 2007) of rest vertices by rigid transforms.

    Args:
        v: ``[V, 3]`` rest vertices.
        support: ``[V, 4]`` the joints moving each vertex.
        ws: ``[V, 4]`` their weights.
        A: ``[B, J, 3, 4]`` rigid skinning transforms.

    Returns:
        ``[B, V, 3]``.
    """
    import torch

    from bodies.rotations import matrix_to_quaternion

    qr = matrix_to_quaternion(A[..., :3])  # [B, J, 4]
    t = torch.cat([torch.zeros_like(A[..., :1, 3]), A[..., 3]], -1)
    qd = 0.5 * _qmul(t, qr)
    qr_v, qd_v = qr[:, support], qd[:, support]  # [B, V, 4, 4]
    sign = torch.sign((qr_v * qr_v[:, :, :1]).sum(-1, keepdim=True))  # align with the main joint
    sign[sign == 0] = 1
    br = (ws[None, ..., None] * sign * qr_v).sum(2)
    bd = (ws[None, ..., None] * sign * qd_v).sum(2)
    n = br.norm(dim=-1, keepdim=True)
    br, bd = br / n, bd / n
    conj = br * br.new_tensor([1, -1, -1, -1])
    vq = torch.cat([torch.zeros_like(v[:, :1]), v], -1)[None]
    return _qmul(_qmul(br, vq), conj)[..., 1:] + 2 * _qmul(bd, conj)[..., 1:]


def _pose_correctives(v, w, Jr, n_poses=256, chunk=32, ridge=1e-2, seed=1):
    """Ridge-regress ``posedirs`` so that LBS + correctives matches DQS on random poses."""
    import torch

    from bodies.lbs import pose_feature, rigid_transforms
    from bodies.rotations import axis_angle_to_matrix

    rng = np.random.default_rng(seed)
    vt, wt = torch.from_numpy(v), torch.from_numpy(w)
    J = torch.from_numpy(Jr @ v)
    support = np.argsort(-w, 1, kind="stable")[:, :4]
    ws = np.take_along_axis(w, support, 1)
    sup_t, ws_t = torch.from_numpy(support), torch.from_numpy(ws)
    P = 9 * (NUM_JOINTS - 1)
    G = torch.zeros(P, P, dtype=torch.float64)
    C = torch.zeros(P, NUM_VERTS * 3, dtype=torch.float64)
    for _ in range(n_poses // chunk):
        pose = rng.normal(0.0, 0.45, (chunk, NUM_JOINTS, 3))
        pose[:, 0] = 0.0
        R = axis_angle_to_matrix(torch.from_numpy(pose))
        _, A = rigid_transforms(R, J[None].expand(chunk, -1, -1), torch.tensor(PARENTS))
        target = _dqs(vt, sup_t, ws_t, A)
        M = torch.einsum("vk,bkij->bvij", wt, A)  # blended LBS transforms [b, V, 3, 4]
        unposed = torch.linalg.solve(M[..., :3], (target - M[..., 3])[..., None])[..., 0]
        X = pose_feature(R)
        G += X.T @ X
        C += X.T @ (unposed - vt[None]).reshape(chunk, -1)
    G, C = G.numpy(), C.numpy()
    # each vertex uses only the features of the (non-root) joints that move it
    feats = (support[..., None] * 9 - 9 + np.arange(9)).reshape(NUM_VERTS, -1)  # [V, 36]
    valid = np.repeat((ws > 0) & (support > 0), 9, 1)
    feats = np.where(valid, feats, 0)
    Gv = G[feats[:, :, None], feats[:, None, :]] * (valid[:, :, None] & valid[:, None, :])
    Gv += np.eye(feats.shape[1]) * (ridge * np.trace(G) / P)
    Cv = C.reshape(P, NUM_VERTS, 3)[feats, np.arange(NUM_VERTS)[:, None]] * valid[..., None]
    beta = np.linalg.solve(Gv, Cv)  # [V, 36, 3]
    posedirs = np.zeros((NUM_VERTS, 3, P))
    rows = np.repeat(np.arange(NUM_VERTS), feats.shape[1])
    for c in range(3):
        np.add.at(posedirs[:, c], (rows, feats.reshape(-1)), (beta[..., c] * valid).reshape(-1))
    return posedirs


# ----------------------------------------------------------------------------- build
def make_arrays(seed: int = 0, spacing: float = 0.01) -> dict[str, np.ndarray]:
    """Make every array of the model (what :func:`build` writes), deterministically."""
    rng = np.random.default_rng(seed)
    J0 = rest_joints()
    v, f = _surface(J0, spacing)
    w = _skinning_weights(v, f, J0)
    v_mean, shapedirs, J_mean, explained = _shape_space(v, w, J0, rng)
    Jr = _joint_regressor(v_mean, w, J_mean)
    log.info("synthetic body: 10 shape components explain %.1f%% of the variance", 100 * explained)
    posedirs = _pose_correctives(v_mean, w, Jr)
    kintree = np.array([PARENTS, list(range(NUM_JOINTS))], dtype=np.int64)
    return {
        "v_template": v_mean.astype(np.float64),
        "f": f.astype(np.uint32),
        "J_regressor": Jr,
        "weights": w,
        "kintree_table": kintree,
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "joint_names": np.array(JOINT_NAMES),
    }


def build(path: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """Build the model into ``path`` (default: the user cache) unless it is already there.

    Args:
        path: target ``.npz``; default :func:`default_path`.
        force: rebuild even when the file exists.

    Returns:
        The path of the ``.npz`` (plain arrays only: loads with ``allow_pickle=False``).
    """
    from bodies.io import save_npz

    path = Path(path) if path is not None else default_path()
    if path.exists() and not force:
        return path
    log.info("building the SMPL-compatible body model into %s ...", path)
    save_npz(path, make_arrays())
    return path


def checksum(arrays: dict[str, np.ndarray]) -> str:
    """A short hash of the arrays (for determinism checks)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()[:16]
