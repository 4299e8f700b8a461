"""Peer MDP solvers (mdptoolbox-hiive, pymdptoolbox, bettermdptools), run in their own venv.

These packages pin old or conflicting dependencies (mdptoolbox-hiive pulls the unmaintained
``gym``, which prints a banner on import; bettermdptools pins ``gymnasium<1.4`` and
``numpy<2``), so they never go into the user's environment. ``make bench`` installs them into
``.venv-peers`` (from ``benchmarks/peers/requirements.txt``) and ``benchmarks/tabular_dp.py``
runs this script there: ``python mdp_peers.py PROBLEM.npz`` prints one JSON list of rows.

The ``.npz`` holds the MDP as flat transition arrays (``rows = s * A + a``, ``next``, ``prob``,
``reward``, ``done``; ``n_states``, ``n_actions``), the reference values ``V_star``, and
``gamma``, ``tol``, ``sweeps_hint``, ``repeats``. Timing is the same for every solver (this
project's included, in ``tabular_dp.py``): ``setup_s`` and ``solve_s`` from one run, which
starts from the toy-text ``P`` dict as a user holding an env would; ``sweep_ms`` the marginal
cost of a sweep, (best time of 110 sweeps - best time of 10 sweeps) / 100, best of
``repeats``.
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


def best_time(fn, repeats: int) -> float:
    """Least wall time of ``fn()`` over ``repeats`` calls."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_toolbox(module_name: str, label: str, P: dict, V_star: np.ndarray, gamma: float,
                repeats: int) -> dict:
    """One solve with the toolbox's own stopping rule (span of V_k+1 - V_k < eps (1-g)/g,
    eps 0.01: an eps-optimal policy, not values within eps), and its marginal sweep time."""
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
        V, sweeps = np.asarray(vi.V, dtype=float), int(vi.iter)

        def sweeps_of(n: int):
            def run():
                vi.V, vi.iter, vi.max_iter, vi.thresh = np.zeros(len(P)), 0, n, 0.0
                vi.run()
            return run

        marginal = (best_time(sweeps_of(110), repeats) - best_time(sweeps_of(10), repeats)) / 100
    return {"solver": f"{label} ValueIteration (own stop, eps 0.01)", "setup_s": t1 - t0,
            "solve_s": t2 - t0, "sweeps": sweeps, "sweep_ms": 1e3 * marginal,
            "max_abs_err": float(np.abs(V - V_star).max())}


def run_bettermdptools(P: dict, V_star: np.ndarray, gamma: float, tol: float,
                       sweeps_hint: float, repeats: int) -> dict:
    """One solve to max|V - V*| <= tol (theta = tol (1-g)/g on the sup-norm change), and its
    marginal sweep time; its setup is building its arrays from ``P`` inside each call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from bettermdptools.algorithms.planner import Planner

        planner = Planner(P)
        theta = tol * (1 - gamma) / gamma  # max|V_k+1 - V_k| < theta  =>  max|V - V*| < tol

        def sweeps_of(n: int, th: float = 0.0):
            return lambda: planner.value_iteration_vectorized(gamma=gamma, n_iters=n, theta=th,
                                                              dtype=np.float64)

        t0 = time.perf_counter()
        V, V_track, _ = sweeps_of(int(2 * sweeps_hint), theta)()
        dt = time.perf_counter() - t0
        t_short = best_time(sweeps_of(10), repeats)
        marginal = (best_time(sweeps_of(110), repeats) - t_short) / 100
    sweeps = int(np.flatnonzero(np.abs(V_track).sum(axis=1) > 0).max()) + 1 if V_track.any() else 0
    return {"solver": "bettermdptools value_iteration_vectorized (tol 1e-6)",
            "setup_s": max(0.0, t_short - 10 * marginal), "solve_s": dt, "sweeps": sweeps,
            "sweep_ms": 1e3 * marginal, "max_abs_err": float(np.abs(V - V_star).max())}


def main(path: str) -> None:
    z = np.load(path, allow_pickle=False)
    P, V_star = p_dict(z), z["V_star"]
    gamma, tol, repeats = float(z["gamma"]), float(z["tol"]), int(z["repeats"])
    rows = [run_bettermdptools(P, V_star, gamma, tol, float(z["sweeps_hint"]), repeats),
            run_toolbox("hiive.mdptoolbox.mdp", "mdptoolbox-hiive", P, V_star, gamma, repeats),
            run_toolbox("mdptoolbox.mdp", "pymdptoolbox", P, V_star, gamma, repeats)]
    json.dump(rows, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
