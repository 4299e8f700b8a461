"""Plumbing shared by tabular and deep agents: the Agent base class, envs, schedules, evaluation.

Training callbacks in the style of stable-baselines3 are :mod:`agents.common.callbacks`.
The agent contract (DESIGN.md): ``Cls(env, config, run_dir=...)`` with ``Cls.Config`` a frozen
dataclass holding ``env_id`` and ``seed``, ``learn(...) -> self``, ``predict(obs,
deterministic) -> (action, None)``, ``save(path)``, ``Cls.load(path, env=None)``.
"""

from agents.common.base import Agent, Callback, check_config, keep_going
from agents.common.callbacks import (
    BaseCallback,
    CallbackError,
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    FunctionCallback,
    ResumableCheckpointCallback,
    StepLocals,
    StopTrainingOnRewardThreshold,
    convert_callback,
)
from agents.common.envs import EnvKwargs, require_discrete
from agents.common.evaluation import EvalResult, evaluate_policy
from agents.common.plotting import plot_learning_curve, read_metrics
from agents.common.schedules import (
    Schedule,
    constant,
    exponential_schedule,
    linear_schedule,
    visit_step_size,
)
from envs.make import env_id_of, make_env

__all__ = [
    "Agent",
    "BaseCallback",
    "Callback",
    "CallbackError",
    "CallbackList",
    "CheckpointCallback",
    "ResumableCheckpointCallback",
    "EnvKwargs",
    "EvalCallback",
    "EvalResult",
    "FunctionCallback",
    "Schedule",
    "StepLocals",
    "StopTrainingOnRewardThreshold",
    "check_config",
    "constant",
    "convert_callback",
    "env_id_of",
    "evaluate_policy",
    "exponential_schedule",
    "keep_going",
    "linear_schedule",
    "make_env",
    "plot_learning_curve",
    "read_metrics",
    "require_discrete",
    "visit_step_size",
]
