"""bodies: LBS speed against smplx's ``lbs``, and fitting accuracy on held-out bodies.

Held-out ground truth: random shapes (beta ~ N(0, I)) and poses from the last 20% of each
DeepMimic clip (the pose prior is fitted on the first 80%), yaw in +-34 degrees.
Goals: pve_from_joints_mm <= 10, pa_mpjpe_from_2d_mm <= 40, pve_from_scan_mm <= 15,
learned_vs_smplify_error_ratio <= 1.25, learned_vs_smplify_time_ratio <= 0.1,
lbs_speedup_vs_smplx_b1024 >= 2.0.

2D keypoints: three rows on the same keypoints -- SMPLify from its standard initialisation, the
learned fitter alone, and SMPLify initialised by the learned fitter (its time includes the
learned fitter's). ``pa_mpjpe_from_2d_mm`` is the last (the library's 2D pipeline); the
learned-vs-SMPLify ratios compare the learned fitter alone with standard SMPLify, as Song et al.
do. Times are wall-clock, all fits batched over the bodies in one process.
"""

from __future__ import annotations

import os
import sys
import time
from functools import partial

# this file is named like the package it measures: keep its folder off the import path
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mpgym.bench import Goal, bench_parser, report  # noqa: E402


def random_smpl_sized(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    V, J, S = 6890, 24, 10
    from bodies.skeleton import PARENTS

    vt = torch.randn(V, 3, generator=g)
    sd = torch.randn(V, 3, S, generator=g) * 0.01
    pd = torch.randn(207, V * 3, generator=g) * 0.01
    Jr = torch.rand(J, V, generator=g)
    Jr /= Jr.sum(1, keepdim=True)
    W = torch.rand(V, J, generator=g) ** 4
    W /= W.sum(1, keepdim=True)
    return [x.to(dtype) for x in (vt, sd, pd, Jr)] + [torch.tensor(PARENTS), W.to(dtype)]


def bench_lbs(quick: bool) -> tuple[list[dict], float]:
    import smplx.lbs

    from bodies.lbs import lbs

    torch.set_num_threads(2)
    vt, sd, pd, Jr, par, W = random_smpl_sized()
    rows, speedup = [], float("nan")
    for B in (1, 64, 1024):
        g = torch.Generator().manual_seed(B)
        betas, pose = torch.randn(B, 10, generator=g), torch.randn(B, 72, generator=g) * 0.5
        reps = {1: 50, 64: 10, 1024: 3}[B] // (5 if quick and B > 1 else 1) or 1
        # mpgym: the default (compiled, no-grad) path; mpgym_torch: the differentiable backend
        fns = {
            "mpgym": lbs,
            "mpgym_torch": partial(lbs, backend="torch"),
            "smplx": smplx.lbs.lbs,
        }
        times = {name: [] for name in fns}
        with torch.no_grad():
            for _ in range(reps + 1):  # interleaved, first round is warm-up; best of the rest
                for name, fn in fns.items():
                    t = time.perf_counter()
                    fn(betas, pose, vt, sd, pd, Jr, par, W)
                    times[name].append(time.perf_counter() - t)
        ours, theirs = min(times["mpgym"][1:]), min(times["smplx"][1:])
        rows.append(
            {
                "method": "lbs",
                "batch": B,
                "mpgym_ms": 1e3 * ours,
                "mpgym_torch_ms": 1e3 * min(times["mpgym_torch"][1:]),
                "smplx_ms": 1e3 * theirs,
                "speedup": theirs / ours,
                "bodies_per_s": B / ours,
            }
        )
        if B == 1024:
            speedup = theirs / ours
    return rows, speedup


def held_out_bodies(model, n: int, seed: int = 0):
    from bodies.motion import clip_poses

    g = torch.Generator().manual_seed(seed)
    te = clip_poses("test", mirror=False).reshape(-1, 69)
    idx = np.random.default_rng(seed).choice(len(te), n, replace=False)
    dtype = model.v_template.dtype
    betas = torch.randn(n, 10, generator=g).to(dtype)
    pose = torch.as_tensor(te[idx], dtype=dtype)
    go = torch.zeros(n, 3, dtype=dtype)
    go[:, 1] = (torch.rand(n, generator=g).to(dtype) - 0.5) * 1.2
    with torch.no_grad():
        out = model(betas, pose, go)
    return out, g


def scan_points(model, vertices, n_points, noise, g):
    import trimesh

    pts = []
    for b in range(len(vertices)):
        tm = trimesh.Trimesh(vertices[b].numpy(), model.faces, process=False)
        p, _ = trimesh.sample.sample_surface(tm, n_points, seed=b)
        pts.append(p)
    pts = torch.as_tensor(np.stack(pts), dtype=vertices.dtype)
    return pts + noise * torch.randn(pts.shape, generator=g).to(pts.dtype)


def bench_fits(n: int, n_scan: int) -> tuple[list[dict], dict[str, float]]:
    from bodies.fit import PRESETS, Camera, fit_to_joints, fit_to_keypoints, fit_to_scan
    from bodies.learned import default_fitter
    from bodies.metrics import mpjpe, pa_mpjpe, pve
    from bodies.model import BodyModel

    torch.set_num_threads(2)
    model = BodyModel(dtype=torch.float64)
    gt, g = held_out_bodies(model, n)
    rows, goals = [], {}

    def row(method, r, gt_v, gt_j):
        e = {
            "method": method,
            "bodies": len(gt_v),
            "pve_mm": float(pve(r.vertices, gt_v).mean()),
            "mpjpe_mm": float(mpjpe(r.joints, gt_j).mean()),
            "pa_mpjpe_mm": float(pa_mpjpe(r.joints, gt_j).mean()),
            "seconds_per_body": r.seconds / len(gt_v),
        }
        rows.append(e)
        return e

    e = row(
        "smplify: exact 3D joints (joints3d preset)",
        fit_to_joints(model, gt.joints, PRESETS["joints3d"]),
        gt.vertices,
        gt.joints,
    )
    goals["pve_from_joints_mm"] = e["pve_mm"]
    cam = Camera(1000.0, (500.0, 500.0), t=np.array([0.0, -0.3, 4.0]))
    kp = cam.project(gt.joints) + 2.0 * torch.randn(n, 24, 2, generator=g).to(gt.joints.dtype)
    smplify = row(
        "smplify: 2D keypoints, 2 px noise, known camera",
        fit_to_keypoints(model, kp, cam),
        gt.vertices,
        gt.joints,
    )
    fitter = default_fitter()  # trained on first use (~6 CPU-minutes), then cached
    r_learned = fitter.fit(model, kp, cam)
    learned = row(
        f"learned fitter ({fitter.config.steps} steps), same keypoints",
        r_learned,
        gt.vertices,
        gt.joints,
    )
    r_refined = fit_to_keypoints(model, kp, cam, PRESETS["refine2d"], init=r_learned)
    r_refined.seconds += r_learned.seconds
    e = row("learned fitter + smplify (refine2d preset)", r_refined, gt.vertices, gt.joints)
    # the library's best 2D pipeline: SMPLify initialised by the learned fitter
    goals["pa_mpjpe_from_2d_mm"] = e["pa_mpjpe_mm"]
    goals["learned_vs_smplify_error_ratio"] = learned["pa_mpjpe_mm"] / smplify["pa_mpjpe_mm"]
    goals["learned_vs_smplify_time_ratio"] = (
        learned["seconds_per_body"] / smplify["seconds_per_body"]
    )
    pts = scan_points(model, gt.vertices[:n_scan], 5000, 0.005, g)
    e = row(
        "smplify: scan, 5k points, 5 mm noise (scan preset)",
        fit_to_scan(model, pts, PRESETS["scan"]),
        gt.vertices[:n_scan],
        gt.joints[:n_scan],
    )
    goals["pve_from_scan_mm"] = e["pve_mm"]
    return rows, goals


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=("lbs", "fits"), default=["lbs", "fits"],
                        help="run only these parts (default: both)")
    args = parser.parse_args()
    lbs_rows, fit_rows, goals = [], [], []
    if "fits" in args.only:
        n, n_scan = (4, 2) if args.quick else (100, 100)
        fit_rows, g = bench_fits(n, n_scan)
        goals += [
            Goal("pve_from_joints_mm", g["pve_from_joints_mm"], 10.0, "<="),
            Goal("pa_mpjpe_from_2d_mm", g["pa_mpjpe_from_2d_mm"], 40.0, "<="),
            Goal("pve_from_scan_mm", g["pve_from_scan_mm"], 15.0, "<="),
            Goal("learned_vs_smplify_error_ratio", g["learned_vs_smplify_error_ratio"], 1.25,
                 "<="),
            Goal("learned_vs_smplify_time_ratio", g["learned_vs_smplify_time_ratio"], 0.1, "<="),
        ]
    if "lbs" in args.only:
        lbs_rows, speedup = bench_lbs(args.quick)
        goals.append(Goal("lbs_speedup_vs_smplx_b1024", speedup, 2.0, ">="))
    report(
        "bodies",
        lbs_rows + fit_rows,
        goals,
        args.json,
        columns=[
            "method",
            "batch",
            "mpgym_ms",
            "mpgym_torch_ms",
            "smplx_ms",
            "speedup",
            "bodies_per_s",
            "bodies",
            "pve_mm",
            "mpjpe_mm",
            "pa_mpjpe_mm",
            "seconds_per_body",
        ],
    )


if __name__ == "__main__":
    main()
