"""Peer MDP solvers (mdptoolbox-hiive, pymdptoolbox, bettermdptools), run in their own venv.

These packages pin old or conflicting dependencies (mdptoolbox-hiive pulls the unmaintained
``gym``, which prints a banner on import; bettermdptools pins ``gymnasium<1.4`` and
``numpy<2``), so they never go into the user's environment. ``make bench`` installs them into
``.venv-peers`` (from ``benchmarks/peers/requirements.txt``) and ``benchmarks/tabular_dp.py``
runs this script there: ``python mdp_peers.py PROBLEM.npz`` prints one JSON list of rows.

The ``.npz`` holds the MDP as flat transition arrays (``rows = s * A + a``, ``next``, ``prob``,
``reward``, ``done``; ``n_states``, ``n_actions``), the reference values ``V_star``, and
``gamma``, ``tol``, ``sweeps_hint``. Each solver's time includes building its input from the
toy-text ``P`` dict, as it would for a user holding an env.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp


def p_dict(z) -> dict:
    S, A = int(z["n_states"]), int(z["n_actions"])
    P = {s: {a: [] for a in range(A)} for s in range(S)}
    for r, n, p, w, d in zip(z["rows"].tolist(), z["next"].tolist(), z["prob"].tolist(),
                             z["reward"].tolist(), z["done"].tolist(), strict=True):
        s, a = divmod(r, A)
        P[s][a].append((p, n, w, bool(d)))
    return P


def toolbox_arrays(P: dict):
    """(list of A CSR (S, S) stochastic matrices, R (S, A)) from a P dict whose terminal
    states are absorbing zero-reward self-loops (FrozenLake, the random MDP)."""
    S, A = len(P), len(P[0])
    rows, cols, vals = [[] for _ in range(A)], [[] for _ in range(A)], [[] for _ in range(A)]
    R = np.zeros((S, A))
    for s in range(S):
        for a in range(A):
            for p, n, r, _ in P[s][a]:
                rows[a].append(s)
                cols[a].append(n)
                vals[a].append(p)
                R[s, a] += p * r
    mats = [sp.csr_matrix((vals[a], (rows[a], cols[a])), shape=(S, S)) for a in range(A)]
    return mats, R


def run_toolbox(module_name: str, label: str, P: dict, V_star: np.ndarray, gamma: float):
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mdp = importlib.import_module(module_name)
        t0 = time.perf_counter()
        mats, R = toolbox_arrays(P)
        vi = mdp.ValueIteration(mats, R, gamma)  # default epsilon 0.01, its own stopping rule
        t1 = time.perf_counter()
        vi.run()
    t2 = time.perf_counter()
    V = np.asarray(vi.V, dtype=float)
    return {"solver": f"{label} ValueIteration (eps 0.01)", "solve_s": t2 - t0,
            "sweeps": int(vi.iter), "sweep_ms": 1e3 * (t2 - t1) / max(1, int(vi.iter)),
            "max_abs_err": float(np.abs(V - V_star).max())}


def run_bettermdptools(P: dict, V_star: np.ndarray, gamma: float, tol: float,
                       sweeps_hint: float):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from bettermdptools.algorithms.planner import Planner

        theta = tol * (1 - gamma) / gamma  # max|V_k+1 - V_k| < theta  =>  max|V - V*| < tol
        t0 = time.perf_counter()
        V, V_track, _ = Planner(P).value_iteration_vectorized(
            gamma=gamma, n_iters=int(2 * sweeps_hint), theta=theta, dtype=np.float64)
    dt = time.perf_counter() - t0
    sweeps = int(np.flatnonzero(np.abs(V_track).sum(axis=1) > 0).max()) if V_track.any() else 0
    return {"solver": "bettermdptools value_iteration_vectorized (same tol)", "solve_s": dt,
            "sweeps": sweeps, "sweep_ms": 1e3 * dt / max(1, sweeps),
            "max_abs_err": float(np.abs(V - V_star).max())}


def main(path: str) -> None:
    z = np.load(path, allow_pickle=False)
    P, V_star = p_dict(z), z["V_star"]
    gamma, tol = float(z["gamma"]), float(z["tol"])
    rows = [run_bettermdptools(P, V_star, gamma, tol, float(z["sweeps_hint"])),
            run_toolbox("hiive.mdptoolbox.mdp", "mdptoolbox-hiive", P, V_star, gamma),
            run_toolbox("mdptoolbox.mdp", "pymdptoolbox", P, V_star, gamma)]
    json.dump(rows, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
