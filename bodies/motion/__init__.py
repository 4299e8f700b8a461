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
