"""RL agents with one API (see DESIGN.md): ``agents.tabular`` and ``agents.deep``.

``agents.registry.get_algorithm("q-learning")`` returns a class by its name; every class takes
``(env, config, run_dir=...)`` and offers ``learn``, ``predict``, ``save`` and ``load``.
Shared plumbing (base class, evaluation, schedules, learning curves) is ``agents.common``.
"""
