"""Gymnasium environments of mpgym; importing this package registers them under ``mpgym/``.

``gymnasium.make("envs:mpgym/GridWorld-v0")`` works without importing anything first:
Gymnasium imports the module named before the colon, which runs the registrations below.

Ids: ``mpgym/GridWorld-v0`` (Sutton & Barto's 4x4 grid by default; any ASCII map with
``desc=[...]``), ``mpgym/WindyGridWorld-v0`` (Example 6.5), ``mpgym/CliffWalking-v0``
(Example 6.6), ``mpgym/RandomWalk-v0`` (Example 6.2), ``mpgym/GamblersProblem-v0``
(Example 4.3). Each exposes ``env.unwrapped.P``; :class:`TabularModel` turns it into sparse
matrices for dynamic programming.

``mpgym/HumanoidImitate-v0`` (:mod:`envs.imitation`, needs ``mujoco``): DeepMimic's motion
imitation on a MuJoCo humanoid built from ``bodies``; its module is imported only when the env
is made.

``mpgym/NextBestView-v0`` (:mod:`envs.nbv`, needs ``open3d``): choosing the next depth view of
an object from the shape collection to cover its surface, on ``neural3d``'s ray casting and
voxel fusion.
"""

from gymnasium.envs.registration import register, registry

from envs.discrete import DiscreteModelEnv
from envs.gambler import GamblersProblemEnv
from envs.gridworld import MAPS, GridWorldEnv
from envs.random_walk import RandomWalkEnv
from envs.tabular_model import TabularModel

_SPECS = [
    # id, entry point, kwargs, max_episode_steps, reward_threshold
    ("mpgym/GridWorld-v0", "envs.gridworld:GridWorldEnv", {"map_name": "4x4"}, 100, None),
    # optimum -15 (Example 6.5: 15 steps)
    ("mpgym/WindyGridWorld-v0", "envs.gridworld:GridWorldEnv", {"map_name": "windy"}, 2000, -15.0),
    # optimum -13 (Example 6.6: the path along the cliff edge)
    ("mpgym/CliffWalking-v0", "envs.gridworld:GridWorldEnv", {"map_name": "cliff"}, 2000, -13.0),
    ("mpgym/RandomWalk-v0", "envs.random_walk:RandomWalkEnv", {"n_states": 5}, 1000, None),
    ("mpgym/GamblersProblem-v0", "envs.gambler:GamblersProblemEnv", {}, 1000, None),
]

_PHYSICS_SPECS = [
    # 300 steps = 10 s at 30 Hz; optimum 300 (reward 1 per step on the reference)
    ("mpgym/HumanoidImitate-v0", "envs.imitation:HumanoidImitateEnv", {"motion": "walk"}, 300,
     None),
]

_VISION_SPECS = [
    # the view budget (NBVConfig.budget, 10) ends episodes, so no TimeLimit; no fixed optimum
    ("mpgym/NextBestView-v0", "envs.nbv:NextBestViewEnv", {"shapes": "procedural"}, None, None),
]

for _id, _entry, _kwargs, _steps, _threshold in _SPECS + _PHYSICS_SPECS + _VISION_SPECS:
    if _id not in registry:
        register(id=_id, entry_point=_entry, kwargs=_kwargs, max_episode_steps=_steps,
                 reward_threshold=_threshold)

ENV_IDS: tuple[str, ...] = tuple(spec[0] for spec in _SPECS)
"""The tabular ids this package registers (each env has ``P``)."""
PHYSICS_ENV_IDS: tuple[str, ...] = tuple(spec[0] for spec in _PHYSICS_SPECS)
"""The physics-simulated ids (MuJoCo) this package registers."""
VISION_ENV_IDS: tuple[str, ...] = tuple(spec[0] for spec in _VISION_SPECS)
"""The 3D-vision ids (Open3D ray casting) this package registers."""

__all__ = ["ENV_IDS", "MAPS", "PHYSICS_ENV_IDS", "VISION_ENV_IDS", "DiscreteModelEnv",
           "GamblersProblemEnv", "GridWorldEnv", "RandomWalkEnv", "TabularModel"]
