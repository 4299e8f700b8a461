"""Value and policy iteration: mpgym against mdptoolbox-hiive, pymdptoolbox and bettermdptools.

Problems: FrozenLake 8x8 (slippery, gamma 0.99) and a random sparse MDP (10,000 states,
8 actions, 10 successors each, gamma 0.99; ``--quick``: 1,000 states). Reference values V*
come from mpgym's value iteration run to a guaranteed error of 1e-12 and are cross-checked
against policy iteration (exact linear solves).

Every solver is timed the same way. ``setup_s``: one run of building the solver's input from the
toy-text ``P`` dict (what a user holding an env starts from) and constructing the solver;
``solve_s``: one run of setup + solve; ``sweep_ms``: the marginal cost of one Bellman sweep,
(best time of 110 sweeps - best time of 10 sweeps) / 100, best of 5 repeats (2 with
``--quick``); ``sweeps``: sweeps taken by the solver's stopping rule (mpgym and bettermdptools:
a rule that guarantees max|V - V*| <= 1e-6; the mdptoolboxes: their own default, an
epsilon-optimal policy by the span of V_k+1 - V_k with epsilon 0.01, which stops with values far
from V*); ``max_abs_err``: max |V - V*|; ``x_mpgym_vi`` and ``x_sweep``: solve time and sweep
time over mpgym VI's on the same problem. The mdptoolboxes' setup is dominated by the
iteration bound they compute on construction (a loop over all states' columns).

The peers run in their own venv (``.venv-peers``, made by ``make bench``), as a subprocess.

Goals, on the random MDP: ``vi_sweep_speedup_vs_bettermdptools`` >= 10 (bettermdptools' sweep
time over mpgym's), ``vi_sweep_vs_spmv_floor`` <= 2.0 (mpgym's sweep time over the bare sparse
matrix-vector product ``P @ V`` a sweep must do), ``vi_max_abs_err`` <= 1e-6. The toolbox
speedups are rows, not goals: their setup, not their sweeps, decides them.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from agents.tabular import policy_iteration, value_iteration
from envs import TabularModel
from mpgym.bench import Goal, bench_parser, report

GAMMA = 0.99
TOL = 1e-6


def best_time(fn, repeats: int):
    """(min wall time over repeats, last result)."""
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def random_mdp(S: int, A: int, K: int, seed: int = 0):
    """Random sparse MDP as a TabularModel and as a toy-text ``P`` dict."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(S * A), K)
    nxt = rng.integers(0, S, size=S * A * K)
    probs = rng.random((S * A, K))
    probs = (probs / probs.sum(axis=1, keepdims=True)).ravel()
    rew = np.repeat(rng.random(S * A), K)  # R(s, a) in [0, 1)
    model = TabularModel.from_transitions(rows, nxt, probs, rew, np.zeros(S * A * K, bool),
                                          n_states=S, n_actions=A)
    P = {s: {a: [] for a in range(A)} for s in range(S)}
    for r, n, p, w in zip(rows.tolist(), nxt.tolist(), probs.tolist(), rew.tolist(),
                          strict=True):
        s, a = divmod(r, A)
        P[s][a].append((p, n, w, False))
    return model, P


def run_mpgym(P: dict, V_star: np.ndarray, repeats: int):
    """mpgym's VI and PI, timed as the peers are: setup and solve from one run, sweeps best of N."""
    t0 = time.perf_counter()
    model = TabularModel.from_dict(P)
    t1 = time.perf_counter()
    V, _, info = value_iteration(model, GAMMA, TOL)
    t2 = time.perf_counter()
    # marginal cost of a sweep: (time of 110 sweeps - time of 10 sweeps) / 100
    t_short, _ = best_time(lambda: value_iteration(model, GAMMA, 0.0, max_sweeps=10), repeats)
    t_long, _ = best_time(lambda: value_iteration(model, GAMMA, 0.0, max_sweeps=110), repeats)
    sweep_s = (t_long - t_short) / 100
    rows = [{"solver": "mpgym value_iteration (tol 1e-6)", "setup_s": t1 - t0,
             "solve_s": t2 - t0, "sweeps": info.sweeps, "sweep_ms": 1e3 * sweep_s,
             "max_abs_err": float(np.abs(V - V_star).max())}]
    t3 = time.perf_counter()
    V, _, pinfo = policy_iteration(model, GAMMA)
    rows.append({"solver": "mpgym policy_iteration", "setup_s": t1 - t0,
                 "solve_s": t1 - t0 + time.perf_counter() - t3, "sweeps": pinfo.improvements,
                 "sweep_ms": None, "max_abs_err": float(np.abs(V - V_star).max())})
    x = np.random.default_rng(1).random(model.n_states)
    spmv_s, _ = best_time(lambda: model.P @ x, 20 * repeats)
    return rows, model, sweep_s, spmv_s


PEERS = Path(__file__).parent / "peers"
PEER_PYTHON = Path(__file__).resolve().parent.parent / ".venv-peers" / "bin" / "python"


def run_peers(P: dict, V_star: np.ndarray, sweeps_hint: float, repeats: int) -> list[dict]:
    """bettermdptools and both mdptoolboxes, run in their own venv (``make bench`` makes it).

    They pin old dependencies (``gym``, ``numpy<2``), so they are kept out of the project's
    environment; see ``benchmarks/peers/mdp_peers.py``.
    """
    python = Path(os.environ.get("MPGYM_PEER_PYTHON", PEER_PYTHON))
    if not python.exists():
        raise SystemExit(f"peer solvers need their own venv at {python}: run `make bench`, or "
                         "set MPGYM_PEER_PYTHON to a Python with benchmarks/peers/requirements.txt")
    A = len(P[0])
    trans = [(s * A + a, n, p, r, d) for s in P for a in P[s] for p, n, r, d in P[s][a]]
    rows, nxt, prob, rew, done = (np.array(c) for c in zip(*trans, strict=True))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mdp.npz"
        np.savez(path, rows=rows, next=nxt, prob=prob, reward=rew, done=done.astype(bool),
                 n_states=len(P), n_actions=A, V_star=V_star, gamma=GAMMA, tol=TOL,
                 sweeps_hint=sweeps_hint, repeats=repeats)
        out = subprocess.run([str(python), str(PEERS / "mdp_peers.py"), str(path)],
                             capture_output=True, text=True, check=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1"))
    return json.loads(out.stdout)


def solve_problem(name: str, P: dict, model: TabularModel, repeats: int):
    V_star, _, ref = value_iteration(model, GAMMA, 1e-12)
    V_pi = policy_iteration(model, GAMMA)[0]
    assert ref.converged and np.abs(V_star - V_pi).max() < 1e-7, np.abs(V_star - V_pi).max()
    rows, _, sweep_s, spmv_s = run_mpgym(P, V_star, repeats)
    # bettermdptools needs ~log(theta)/log(gamma) sweeps: 1833 for gamma 0.99, theta ~1e-8
    hint = np.log(TOL * (1 - GAMMA) / GAMMA / 1.0) / np.log(GAMMA)
    rows += run_peers(P, V_star, sweeps_hint=max(hint, 100), repeats=repeats)
    base, base_sweep = rows[0]["solve_s"], rows[0]["sweep_ms"]
    for r in rows:
        r["x_mpgym_vi"] = r["solve_s"] / base
        r["x_sweep"] = r["sweep_ms"] / base_sweep if r["sweep_ms"] else None
        r["problem"] = name
    rows.append({"problem": name, "solver": "bare SpMV P @ V (floor per sweep)",
                 "sweep_ms": 1e3 * spmv_s})
    return rows, sweep_s / spmv_s


def main() -> None:
    args = bench_parser(__doc__.splitlines()[0]).parse_args()
    repeats = 2 if args.quick else 5
    S = 1000 if args.quick else 10_000
    import gymnasium as gym

    fl_P = gym.make("FrozenLake8x8-v1").unwrapped.P
    fl_rows, _ = solve_problem("FrozenLake8x8", fl_P, TabularModel.from_dict(fl_P), repeats)
    model, P = random_mdp(S, 8, 10)
    name = f"random S={S} A=8 K=10"
    rows, floor_ratio = solve_problem(name, P, model, repeats)
    ours = rows[0]
    better = next(r for r in rows if r["solver"].startswith("bettermdptools"))
    goals = [
        Goal("vi_sweep_speedup_vs_bettermdptools", better["sweep_ms"] / ours["sweep_ms"], 10,
             ">="),
        Goal("vi_sweep_vs_spmv_floor", floor_ratio, 2.0, "<="),
        Goal("vi_max_abs_err", ours["max_abs_err"], TOL, "<="),
    ]
    columns = ["problem", "solver", "setup_s", "solve_s", "sweeps", "sweep_ms", "max_abs_err",
               "x_mpgym_vi", "x_sweep"]
    report("tabular_dp", fl_rows + rows, goals, args.json, columns=columns,
           extra={"quick": args.quick, "gamma": GAMMA, "tol": TOL})


if __name__ == "__main__":
    main()
