"""Human motion on the SMPL body: the DeepMimic clips, a motion feature space, generation.

- :mod:`bodies.motion.clips` — the 15 DeepMimic motion-capture clips retargeted to SMPL poses,
  and the pose splits of the pose prior and the fitters.
- :mod:`bodies.motion.features` — the per-frame motion feature vector and its inverse.
- :mod:`bodies.motion.dataset` — clips resampled to one frame rate, windows, the motion splits,
  AMASS-style ``.npz`` files; :mod:`bodies.motion.bvh` — BVH files.
- :mod:`bodies.motion.genmm`, :mod:`bodies.motion.mdm`, :mod:`bodies.motion.mvae` — generators;
  :mod:`bodies.motion.metrics` and :mod:`bodies.motion.classifier` — how they are scored.

The names of :mod:`bodies.motion.clips` are re-exported here, so ``from bodies.motion import
clip_poses`` keeps working.
"""

import importlib
from dataclasses import dataclass
from typing import Any

from bodies.motion.clips import (
    CLIP_NAMES,
    M_DM_TO_SMPL,
    NEAR_MM,
    SPLIT_BLOCKS,
    Clip,
    Split,
    SplitCheck,
    check_test_split,
    clip_poses,
    load_clip,
    mirror_body_pose,
    motions_dir,
    nearest_pose_distance,
    pose_joints,
    retarget,
    split_frames,
)

__all__ = [
    "CLIP_NAMES",
    "GENERATORS",
    "GeneratorAPI",
    "generator_api",
    "M_DM_TO_SMPL",
    "NEAR_MM",
    "SPLIT_BLOCKS",
    "Clip",
    "Split",
    "SplitCheck",
    "check_test_split",
    "clip_poses",
    "load_clip",
    "mirror_body_pose",
    "motions_dir",
    "nearest_pose_distance",
    "pose_joints",
    "retarget",
    "split_frames",
]

GENERATORS: dict[str, tuple[str, str]] = {
    "mdm": ("bodies.motion.mdm", "motion diffusion, Tevet et al. 2023"),
    "mvae": ("bodies.motion.mvae", "motion VAE, Ling et al. 2020"),
    "genmm": ("bodies.motion.genmm", "generative motion matching, Li et al. 2023"),
}
"""Motion generators by name: ``(module, one-line title)``."""


@dataclass(frozen=True)
class GeneratorAPI:
    """What the command line and the benchmark need of one generator module."""

    name: str
    title: str
    config_cls: type
    presets: dict[str, Any]
    train_presets: dict[str, Any] | None
    """Per preset, the :class:`generative.trainer.TrainConfig` (``None``: nothing to train)."""
    fit: Any
    """``fit(config, *, train=None, run=None, seed=0) -> model``."""
    model_cls: type


def generator_api(name: str) -> GeneratorAPI:
    """The config class, presets, fit function and model class of a generator by name.

    Raises:
        MpgymError: an unknown name (the accepted ones are listed).
    """
    if name not in GENERATORS:
        from mpgym.errors import MpgymError

        raise MpgymError(f"unknown motion generator {name!r}; accepted: {', '.join(GENERATORS)}.")
    module_name, title = GENERATORS[name]
    module = importlib.import_module(module_name)
    upper = {"mdm": "MDM", "mvae": "MVAE", "genmm": "GenMM"}[name]
    return GeneratorAPI(
        name=name,
        title=title,
        config_cls=getattr(module, f"{upper}Config"),
        presets=module.PRESETS,
        train_presets=getattr(module, "TRAIN_PRESETS", None),
        fit=getattr(module, f"fit_{name}"),
        model_cls=getattr(module, upper),
    )
