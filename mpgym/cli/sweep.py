"""``mpgym sweep train ALGO ...``: seeds x grid of ``mpgym train`` runs, scaled out on Ray Tune.

::

    mpgym sweep train ppo --env CartPole-v1 --seeds 0-9 --grid lr=3e-4,1e-3
        [--grid gamma=0.9,0.99] [--num-cpus N] [--address ray://host:10001] [--storage PATH]
        [--out DIR] [any flag of 'mpgym train ppo', e.g. --total-timesteps 20000]
    mpgym sweep gen train made --data digits --seeds 0-2 --grid lr=1e-3,3e-4 [...]
    mpgym sweep nerf train data/tabletop --preset tiny --seeds 0-1 --grid lr=1e-2,3e-3 [...]

The generative and NeRF forms (:mod:`mpgym.cli.sweep_models`) sweep ``mpgym gen train`` and
``mpgym nerf train`` the same way; each trial reports the metric its trainer reports (the best
validation loss, lower is better; the test PSNR, higher is better), "solved" is n/a for them.

Every seed with every grid point is one trial, and every trial is exactly ``mpgym train``: its
flags go through :func:`mpgym.cli.rl.parse_train_args` (``--seed S``, the point's values as
flags, ``--out`` its run directory) and it trains with :func:`mpgym.cli.rl.train`, writing its
run directory under ``DIR/runs/<point>/``. Grid keys are the config fields of the algorithm
(``learning_rate``, nested ones dotted: ``epsilon.end``; ``lr`` stands for ``learning_rate``),
checked -- with the seeds, every trial's flags, budgets and run directory, and the env's spaces
-- before Ray starts.

Trials run as Ray Tune trials of a function trainable, one CPU and one torch thread each: on
this machine by default (``ray.init(num_cpus=N)``, N its cores), or on a running cluster with
``--address`` (every node needs mpgym installed; ``--storage`` should then be a path or URI
every node can write, for Tune's results, and the run directories -- absolute paths under
``DIR`` -- are written on the node that trains each trial). Each trial reports its final
evaluation return and its training curve to Tune. At the end ``DIR`` holds ``sweep.md`` and
``sweep.json`` (per grid point: mean, std and range over seeds, and solved seeds -- the
evaluation return reaching the env's registered ``reward_threshold``, "n/a" without one) and
``curves.png`` (mean learning curve and a mean +- std band per point).

Ray is the optional extra ``mpgym[scale]`` (``ray[tune]``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.common.sweep import (
    Trial,
    TrialResult,
    aggregate,
    config_keys,
    downsample,
    expand_trials,
    mean_band,
    parse_grid,
    parse_seeds,
    point_label,
    point_slug,
)
from mpgym.cli import pop_flag
from mpgym.errors import MpgymError, check_positive

log = logging.getLogger("mpgym.sweep")

USAGE = """usage: mpgym sweep train ALGO --env ENV_ID --seeds 0-9 --grid KEY=V1,V2 [--grid ...]
                         [--num-cpus N] [--address ADDRESS] [--storage PATH] [--out DIR]
                         [flags of 'mpgym train ALGO']
       mpgym sweep gen train MODEL --data DATA [same sweep flags] [flags of 'mpgym gen train']
       mpgym sweep nerf train DATA [same sweep flags] [flags of 'mpgym nerf train']

  --seeds SEEDS     seeds of every grid point: '0-9', '0,3,7' or '0-4,10' (default 0)
  --grid K=V1,V2    a config field of ALGO and its values (repeat for more fields; the
                    trials are every combination); 'mpgym train ALGO --help' lists the
                    fields; nested ones dotted (epsilon.end); lr means learning_rate
  --num-cpus N      CPUs of the local Ray instance (default: this machine's cores)
  --address ADDR    a running Ray cluster (ray://host:10001 or auto) instead of a local one
  --storage PATH    where Tune keeps its results (default DIR/tune; on a cluster a path or
                    URI every node can write)
  --out DIR         sweep directory (default runs/sweep/<algo>-<env>): run directories under
                    DIR/runs/, the table in DIR/sweep.md and DIR/sweep.json, DIR/curves.png

  gen: grid keys are the fields of the model's config and of the training loop, as their
  flags name them (model.hidden, train.lr; a name only one of them has may stand alone:
  lr); --seeds sets --train.seed; the table is of the best validation loss (lower is better);
  DIR defaults to runs/sweep/gen-<model>-<data>.
  nerf: grid keys are the NeRF config's fields (lr, steps, batch_rays...); --seeds sets
  --seed; the table is of the final test PSNR in dB (higher is better); DIR defaults to
  runs/sweep/nerf-<data folder>. "solved" is n/a for both.

Needs Ray: pip install 'mpgym[scale]'."""

RAY_HINT = "mpgym sweep runs its trials on Ray Tune; install it with: pip install 'mpgym[scale]'"


@dataclass(frozen=True)
class Metric:
    """What a sweep's table is of.

    Attributes:
        name: as the table's heading says it (``"final evaluation return"``).
        key: the name a trial reports it under (``"final_return"``).
        higher_is_better: its direction.
    """

    name: str
    key: str
    higher_is_better: bool

    @property
    def direction(self) -> str:
        """``"higher is better"`` or ``"lower is better"``."""
        return "higher is better" if self.higher_is_better else "lower is better"


RETURN = Metric("final evaluation return", "final_return", True)
"""The metric of RL sweeps."""


@dataclass(frozen=True)
class SweepPlan:
    """A checked sweep: what to train and where the results go.

    Attributes:
        algo: the algorithm's (or model's) registry name; ``nerf`` for NeRF sweeps.
        env_id: the env every trial trains on (the dataset for gen and NeRF sweeps).
        trials: the trials, grid points in order, seeds within.
        argvs: each trial's arguments: ``mpgym train`` ones (ALGO first, ``--out`` its run
            dir), or those of ``mpgym gen train`` / ``mpgym nerf train`` (see ``kind``).
        out: the sweep directory.
        threshold: the env's ``reward_threshold``, or None.
        x_label: the curves' x axis (``timestep``, ``episode`` or ``step``).
        kind: ``"rl"``, ``"gen"`` or ``"nerf"``: which trainer runs the trials.
        metric: what each trial reports and the table is of.
    """

    algo: str
    env_id: str
    trials: list[Trial]
    argvs: list[list[str]]
    out: Path
    threshold: float | None
    x_label: str
    kind: str = "rl"
    metric: Metric = RETURN


def pop_repeated(argv: list[str], name: str) -> tuple[list[str], list[str]]:
    """Remove every ``name VALUE`` / ``name=VALUE`` from argv; return (rest, values in order)."""
    rest, values, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == name:
            if i + 1 >= len(argv):
                raise MpgymError(f"{name} needs a value.")
            values.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith(name + "="):
            values.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        i += 1
    return rest, values


def grid_flags(point: tuple[tuple[str, str], ...]) -> list[str]:
    """``mpgym train`` flags of a grid point: ``learning_rate=3e-4`` -> ``--learning-rate 3e-4``.

    A value with spaces gives several tokens (``hidden=64 64`` -> ``--hidden 64 64``).
    """
    flags: list[str] = []
    for key, value in point:
        flags += ["--" + key.replace("_", "-"), *value.split()]
    return flags


def reward_threshold(env_id: str) -> float | None:
    """The ``reward_threshold`` of ``env_id``'s registered spec, or None."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the mpgym/ ids)

    try:
        threshold = gym.spec(env_id.split(":", 1)[-1]).reward_threshold
    except gym.error.Error:
        return None
    return None if threshold is None else float(threshold)


def _parse_trial(argv: list[str], label: str) -> Any:
    """:func:`mpgym.cli.rl.parse_train_args`, a parser's exit turned into an MpgymError."""
    from mpgym.cli.rl import parse_train_args

    try:
        return parse_train_args(argv)
    except SystemExit:
        raise MpgymError(f"the flags of grid point {label} are not accepted by 'mpgym train "
                         f"{argv[0]}' (see the message above): {' '.join(argv[1:])}") from None


def _check_first_trial(req: Any) -> None:
    """Build the first trial's agent (makes its env, checks its spaces), then let it go."""
    agent = req.cls(req.config.env_id, req.config)
    env = getattr(agent, "env", None)
    if env is not None and hasattr(env, "close"):
        env.close()


def plan_sweep(argv: list[str]) -> tuple[SweepPlan, dict[str, Any]]:
    """Check a ``sweep train`` command line and expand it; nothing is trained or written.

    Args:
        argv: the arguments after ``mpgym sweep train``: ALGO first.

    Returns:
        ``(plan, engine options)``; the options are ``num_cpus``, ``address`` and ``storage``.

    Raises:
        MpgymError: an unknown algorithm, grid key or value, bad seeds, a ``--seed`` flag
            (use ``--seeds``), non-positive budgets, a run directory holding something else,
            an unknown env or spaces the agent cannot handle.
    """
    from agents.registry import get_algorithm
    from mpgym.cli.rl import check_budgets, run_name
    from mpgym.runs import check_run_target

    if not argv or argv[0].startswith("-"):
        raise MpgymError(f"name the algorithm: mpgym sweep train ALGO ...\n\n{USAGE}")
    sf = sweep_flags(argv[1:], seed_flags=("--seed",))
    rest = sf.rest
    cls = get_algorithm(argv[0])
    seeds = parse_seeds(sf.seeds)
    grid = parse_grid(sf.grid, config_keys(cls.Config))
    trials = expand_trials(seeds, grid)
    first = _parse_trial([cls.name, *rest, "--seed", str(seeds[0]), *grid_flags(trials[0].point)],
                         trials[0].label)
    env_id = first.config.env_id
    default_out = Path("runs") / "sweep" / run_name(cls.name, env_id, 0).rsplit("-s", 1)[0]
    out = Path(sf.out or default_out).resolve()
    argvs, requests = [], []
    for trial in trials:
        run_dir = out / "runs" / point_slug(trial.point) / run_name(cls.name, env_id, trial.seed)
        args = [cls.name, *rest, "--seed", str(trial.seed), *grid_flags(trial.point),
                "--out", str(run_dir)]
        req = _parse_trial(args, trial.label)
        check_budgets(req.config, req.eval_episodes)
        check_run_target(run_dir, kind=cls.name, overwrite=req.overwrite)
        argvs.append(args)
        requests.append(req)
    _check_first_trial(requests[0])
    x_label = "episode" if getattr(cls, "budget_unit", "timesteps") == "episodes" else "timestep"
    plan = SweepPlan(algo=cls.name, env_id=env_id, trials=trials, argvs=argvs, out=out,
                     threshold=reward_threshold(env_id), x_label=x_label)
    return plan, sf.engine


@dataclass(frozen=True)
class SweepFlags:
    """The flags a sweep takes for itself; ``rest`` goes to every trial.

    Attributes:
        rest: the trainer's flags.
        grid: the ``--grid`` items, in order.
        seeds: the ``--seeds`` text ("0" when not given).
        out: ``--out``, or None.
        engine: ``num_cpus``, ``address`` and ``storage`` for :func:`run_on_ray`.
    """

    rest: list[str]
    grid: list[str]
    seeds: str
    out: str | None
    engine: dict[str, Any]


def sweep_flags(argv: list[str], *, seed_flags: tuple[str, ...]) -> SweepFlags:
    """Take the sweep's own flags out of ``argv``, refusing the trainer's seed flags.

    Raises:
        MpgymError: one of ``seed_flags`` (the sweep sets it from ``--seeds``), a bad
            ``--num-cpus``, or ``--num-cpus`` with ``--address``.
    """
    rest, grid_items = pop_repeated(argv, "--grid")
    rest, seeds_text = pop_flag(rest, "--seeds")
    rest, cpus = pop_flag(rest, "--num-cpus")
    rest, address = pop_flag(rest, "--address")
    rest, storage = pop_flag(rest, "--storage")
    rest, out_text = pop_flag(rest, "--out")
    for flag in seed_flags:
        if any(a == flag or a.startswith(flag + "=") for a in rest):
            raise MpgymError(f"a sweep takes --seeds (e.g. --seeds 0-9), not {flag}.")
    num_cpus = None
    if cpus is not None:
        try:
            num_cpus = int(cpus)
        except ValueError:
            raise MpgymError(f"--num-cpus must be a whole number >= 1; got {cpus!r}.") from None
        check_positive("--num-cpus", num_cpus)
    if address is not None and num_cpus is not None:
        raise MpgymError("--num-cpus sizes a local Ray instance; a cluster (--address) brings "
                         "its own CPUs. Give one of them.")
    return SweepFlags(rest, grid_items, seeds_text if seeds_text is not None else "0", out_text,
                      {"num_cpus": num_cpus, "address": address, "storage": storage})


# -- one trial --------------------------------------------------------------------------------
def run_trial(argv: list[str]) -> dict[str, Any]:
    """Train one trial exactly as ``mpgym train`` does; return what it reports.

    Returns:
        ``final_return`` (mean evaluation return), ``std_return``, ``eval_episodes``,
        ``success_rate``, ``curve_x`` / ``curve_y`` (the training episodes' returns, at most
        2000 points), ``run_dir`` and ``train_s`` (wall seconds).
    """
    from agents.common.plotting import curve
    from mpgym.cli.rl import parse_train_args, train

    req = parse_train_args(argv)
    options = {f.name: getattr(req, f.name) for f in dataclasses.fields(req)
               if f.name not in ("cls", "config", "out")}  # --overwrite, --eval-episodes...
    t0 = time.perf_counter()
    agent, run, result = train(req.cls, req.config, req.out, progress_bar=False, **options)
    x_col = "episode" if getattr(req.cls, "budget_unit", "timesteps") == "episodes" else None
    xs, ys = downsample(*curve(agent.history, x=x_col))
    s = result.summary()
    return {"final_return": s["mean_return"], "std_return": s["std_return"],
            "eval_episodes": s["episodes"], "success_rate": s["success_rate"],
            "curve_x": xs, "curve_y": ys, "run_dir": str(run.path),
            "train_s": time.perf_counter() - t0}


def run_any_trial(kind: str, argv: list[str]) -> dict[str, Any]:
    """One trial of a sweep of ``kind`` (``"rl"``, ``"gen"``, ``"nerf"``); what it reports."""
    if kind == "rl":
        return run_trial(argv)
    from mpgym.cli.sweep_models import run_gen_trial, run_nerf_trial

    return run_gen_trial(argv) if kind == "gen" else run_nerf_trial(argv)


def _tune_trial(params: dict[str, Any]) -> None:
    """Ray Tune's function trainable: one trial on one torch thread, reported once."""
    from ray import tune

    from mpgym.devices import set_threads

    set_threads(1)
    trial = params["trial"]
    tune.report(run_any_trial(trial.get("kind", "rl"), list(trial["argv"])))


# -- Ray --------------------------------------------------------------------------------------
def import_ray() -> Any:
    """``ray`` (with Tune), or one MpgymError saying how to install it."""
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError as exc:
        raise MpgymError(f"{RAY_HINT} ({exc}).") from None
    return ray


RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",  # offline: no usage reports
    "RAY_CHDIR_TO_TRIAL_DIR": "0",  # trials run where the sweep was started
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # only result.json (no CSV, no TensorBoard)
    "RAY_AIR_NEW_OUTPUT": "0",  # Tune's plain status table
}
"""Environment variables set (unless already set) before Ray starts."""


def quiet_ray_env() -> None:
    """Set :data:`RAY_ENV` where the environment does not say otherwise."""
    for var, value in RAY_ENV.items():
        os.environ.setdefault(var, value)


def local_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once a ``ray://HOST:PORT`` or ``HOST:PORT`` address nothing listens on.

    Ray's own client waits ~30 s and then raises a bare ``ConnectionError``; a TCP connect with
    a short timeout says the same thing plainly, before Ray starts. ``auto`` and other forms are
    left to Ray.
    """
    import socket

    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise MpgymError(
            f"no Ray cluster answers at {address!r} ({exc}); start one (ray start --head "
            "--ray-client-server-port 10001) or pass a running cluster's address "
            "(ray://HOST:10001, or 'auto' on a cluster node)."
        ) from None


def start_ray(*, num_cpus: int | None = None, address: str | None = None) -> tuple[Any, bool]:
    """Start (or join) Ray; return ``(ray, whether this call started it)``.

    Locally ``ray.init(num_cpus=...)`` (default: this machine's cores), without a dashboard;
    with ``address``, ``ray.init(address=...)``. An already running Ray in this process is
    used as it is.
    """
    ray = import_ray()
    quiet_ray_env()
    if ray.is_initialized():
        return ray, False
    if address is not None:  # the cluster's own settings (dashboard, logging) stand
        check_reachable(address)
        try:
            ray.init(address=address)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
            raise MpgymError(
                f"cannot join the Ray cluster at {address!r} ({type(exc).__name__}: {exc}); "
                "accepted: ray://HOST:PORT of a running cluster's client server (port 10001 by "
                "default), HOST:PORT of its head node, or 'auto' on a cluster node."
            ) from None
    else:
        ray.init(num_cpus=num_cpus or local_cpus(), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    return ray, True


def run_on_ray(plan: SweepPlan, *, num_cpus: int | None = None, address: str | None = None,
               storage: str | None = None, verbose: int = 1) -> list[TrialResult]:
    """Run every trial of ``plan`` as a Ray Tune trial (one CPU each); their results.

    Ray is shut down at the end when this call started it.
    """
    ray, started = start_ray(num_cpus=num_cpus, address=address)
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    if storage is None:
        storage_path = str(plan.out / "tune")
    else:
        storage_path = storage if "://" in storage else str(Path(storage).resolve())
    params = [{"index": i, "argv": argv, "kind": plan.kind} for i, argv in enumerate(plan.argvs)]
    try:
        tuner = tune.Tuner(
            tune.with_resources(_tune_trial, {"cpu": 1}),
            param_space={"trial": tune.grid_search(params)},
            tune_config=tune.TuneConfig(reuse_actors=True,
                                        trial_dirname_creator=lambda t: f"trial-{t.trial_id}"),
            run_config=tune.RunConfig(name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
                                      storage_path=storage_path, verbose=verbose,
                                      callbacks=[JsonLoggerCallback()],
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
        grid = tuner.fit()
        reported: dict[int, tuple[dict[str, Any], str | None]] = {}
        for res in (grid[i] for i in range(len(grid))):
            index = int((res.config or {})["trial"]["index"])
            reported[index] = (res.metrics or {}, None if res.error is None else str(res.error))
    finally:
        if started:
            ray.shutdown()
    return [trial_result(trial, *reported.get(i, ({}, "no result reported")),
                         key=plan.metric.key)
            for i, trial in enumerate(plan.trials)]


def trial_result(trial: Trial, metrics: dict[str, Any], error: str | None, *,
                 key: str = "final_return") -> TrialResult:
    """A :class:`TrialResult` from what a trial reported (:func:`run_trial`'s dict).

    ``key`` names the metric in ``metrics`` (:attr:`Metric.key`).
    """
    if error is None and key not in metrics:
        error = "no result reported"
    if error is not None:
        return TrialResult(trial, float("nan"), error=error.strip().splitlines()[-1][:300])
    return TrialResult(trial, float(metrics[key]),
                       curve=(list(metrics.get("curve_x", ())), list(metrics.get("curve_y", ()))))


# -- the summary ------------------------------------------------------------------------------
def write_summary(plan: SweepPlan, results: list[TrialResult]) -> dict[str, Any]:
    """Write ``sweep.md``, ``sweep.json`` and ``curves.png`` into ``plan.out``; return the JSON.

    The JSON holds ``algo``, ``env_id``, ``reward_threshold``, ``metric`` (``name``,
    ``key``, ``direction``), ``rows`` (one per grid point: ``point``, ``seeds``, ``failed``,
    ``mean``, ``std``, ``min``, ``max``, ``solved``) and ``trials`` (``point``, ``seed``, the
    metric under its key -- ``final_return`` for RL -- and ``error``).
    """
    from mpgym.bench import format_table
    from mpgym.checkpoint import atomic_write_text, to_jsonable
    from mpgym.plots import plot_bands

    summaries = aggregate(results, plan.threshold)
    rows = [s.row() for s in summaries]
    metric = plan.metric
    if plan.kind == "rl":
        threshold = "none registered" if plan.threshold is None else f"{plan.threshold:g}"
        about = (f"Final evaluation return over seeds; solved: return >= the env's reward "
                 f"threshold ({threshold}).")
    else:
        about = (f"{metric.name[:1].upper()}{metric.name[1:]} over seeds ({metric.direction}); "
                 "solved: n/a.")
    text = (f"# {plan.algo} on {plan.env_id}: {len(results)} trials\n\n{about}\n\n"
            + format_table(rows) + "\n")
    failed = [r for r in results if r.error is not None]
    if failed:
        text += "\nFailed trials:\n\n" + "".join(
            f"- {r.trial.label} seed {r.trial.seed}: {r.error}\n" for r in failed)
    plan.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan.out / "sweep.md", text)
    data = {"algo": plan.algo, "env_id": plan.env_id, "reward_threshold": plan.threshold,
            "metric": {"name": metric.name, "key": metric.key, "direction": metric.direction},
            "rows": rows,
            "trials": [{"point": dict(r.trial.point), "seed": r.trial.seed,
                        metric.key: r.final_return if r.error is None else None,
                        "error": r.error} for r in results]}
    atomic_write_text(plan.out / "sweep.json", json.dumps(to_jsonable(data), indent=2))
    bands = {}
    for s in summaries:
        band = mean_band([r.curve for r in results
                          if r.trial.point == s.point and r.error is None])
        if band is not None:
            bands[point_label(s.point)] = band
    hlines = {f"threshold {plan.threshold:g}": plan.threshold} if plan.threshold else None
    ylabel = "episode return" if plan.kind == "rl" else metric.name
    plot_bands(plan.out / "curves.png", bands, xlabel=plan.x_label, ylabel=ylabel,
               title=f"{plan.algo} on {plan.env_id} (mean +- std over seeds)", hlines=hlines)
    return data


def sweep(argv: list[str], *, verbose: int = 1, kind: str = "rl"
          ) -> tuple[SweepPlan, dict[str, Any]]:
    """Check, run on Ray and summarise a sweep command line.

    Args:
        argv: what follows ``mpgym sweep train`` (ALGO first), ``mpgym sweep gen train``
            (MODEL first) or ``mpgym sweep nerf train`` (DATA first).
        verbose: Tune's verbosity.
        kind: ``"rl"``, ``"gen"`` or ``"nerf"``.
    """
    if kind == "rl":
        plan, engine = plan_sweep(argv)
    else:
        from mpgym.cli.sweep_models import plan_gen_sweep, plan_nerf_sweep

        plan, engine = (plan_gen_sweep if kind == "gen" else plan_nerf_sweep)(argv)
    import_ray()  # before anything starts: one clear message when Ray is missing
    log.info("sweep: %d trials of %s on %s -> %s", len(plan.trials), plan.algo, plan.env_id,
             plan.out)
    results = run_on_ray(plan, verbose=verbose, **engine)
    return plan, write_summary(plan, results)


def main(argv: list[str]) -> int:
    """Entry point of ``mpgym sweep``."""
    if not argv or argv[0] in ("-h", "--help") or "-h" in argv or "--help" in argv:
        print(USAGE)
        return 0
    kind = "rl"
    if argv[0] in ("gen", "nerf"):
        if argv[1:2] != ["train"]:
            raise MpgymError(f"unknown sweep command {' '.join(argv[:2])!r}; accepted: train, "
                             f"gen train, nerf train.\n\n{USAGE}")
        kind, argv = argv[0], argv[1:]
    elif argv[0] != "train":
        raise MpgymError(f"unknown sweep command {argv[0]!r}; accepted: train, gen train, "
                         f"nerf train.\n\n{USAGE}")
    from mpgym.bench import format_table

    plan, data = sweep(argv[1:], kind=kind)
    if kind != "rl":
        print(f"{plan.metric.name} over seeds ({plan.metric.direction}); solved: n/a")
    print(format_table(data["rows"]))
    n_failed = sum(t["error"] is not None for t in data["trials"])
    print(f"\n{len(plan.trials)} trials ({n_failed} failed); table: {plan.out / 'sweep.md'}, "
          f"{plan.out / 'sweep.json'}; curves: {plan.out / 'curves.png'}")
    return 0 if n_failed == 0 else 1


__all__ = ["RAY_ENV", "RETURN", "USAGE", "Metric", "SweepFlags", "SweepPlan", "grid_flags",
           "import_ray", "local_cpus", "main", "plan_sweep", "pop_repeated", "reward_threshold",
           "run_any_trial", "run_on_ray", "run_trial", "start_ray", "sweep", "sweep_flags",
           "trial_result", "write_summary"]
