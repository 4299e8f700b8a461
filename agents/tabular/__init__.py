"""Tabular RL: dynamic programming on a model, and sampling-based prediction and control.

Planning (on an :class:`envs.TabularModel`, vectorised over states and actions):
``policy_evaluation``, ``value_iteration``, ``policy_iteration``, ``bellman_backup``; as agents
(``mpgym train value-iteration``): ``ValueIteration``, ``PolicyIteration``.
Learning (any env with Discrete observation and action spaces; budgets in episodes):
``QLearning``, ``Sarsa``, ``ExpectedSarsa``, ``MCControl``, ``MCExploringStarts``,
``MCPrediction``, ``TD0Prediction``.
"""

from agents.tabular.dp import (
    SolveInfo,
    bellman_backup,
    finite_horizon_evaluation,
    greedy_policy,
    policy_evaluation,
    policy_iteration,
    value_iteration,
)

ALGORITHMS: dict[str, str] = {
    "q-learning": "agents.tabular.q_learning:QLearning",
    "sarsa": "agents.tabular.sarsa:Sarsa",
    "expected-sarsa": "agents.tabular.expected_sarsa:ExpectedSarsa",
    "mc-control": "agents.tabular.monte_carlo:MCControl",
    "mc-es": "agents.tabular.monte_carlo:MCExploringStarts",
    "mc-prediction": "agents.tabular.monte_carlo:MCPrediction",
    "td0": "agents.tabular.td_prediction:TD0Prediction",
    "value-iteration": "agents.tabular.planning:ValueIteration",
    "policy-iteration": "agents.tabular.planning:PolicyIteration",
}
"""Registry name -> ``"module:Class"`` (merged into :data:`agents.registry.ALGORITHMS`)."""


def __getattr__(name: str):  # lazy access to the agent classes: agents.tabular.QLearning
    for path in ALGORITHMS.values():
        module, _, cls = path.partition(":")
        if cls == name:
            import importlib

            return getattr(importlib.import_module(module), cls)
    raise AttributeError(f"module 'agents.tabular' has no attribute {name!r}")


__all__ = [
    "ALGORITHMS",
    "SolveInfo",
    "bellman_backup",
    "finite_horizon_evaluation",
    "greedy_policy",
    "policy_evaluation",
    "policy_iteration",
    "value_iteration",
]
