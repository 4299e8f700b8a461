import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco (rendering tests)

import numpy as np
import pytest
import torch

from bodies import mjcf
from bodies.mjcf import (
    A_SMPL_TO_MJ,
    JOINTS,
    HumanoidConfig,
    build_humanoid,
    fit_capsule,
    humanoid_mjcf,
    part_volumes,
    pose_to_qpos,
    qpos_to_pose,
    qpos_to_targets,
)
from bodies.skeleton import JOINT_NAMES, LEFT_RIGHT
from mpgym import MpgymError

mujoco = pytest.importorskip("mujoco")
torch.set_num_threads(1)


def random_pose(rng, n):
    """Poses the humanoid can take: ball joints inside their cone, hinges in range."""
    rv = np.zeros((n, 24, 3))
    for j, spec in enumerate(JOINTS):
        if spec.kind in ("free", "ball"):
            axis = rng.normal(size=(n, 3))
            axis /= np.linalg.norm(axis, axis=1, keepdims=True)
            top = np.pi if spec.kind == "free" else np.radians(spec.limit[1])
            rv[:, j] = axis * rng.uniform(0, top, (n, 1))
        elif spec.kind == "hinge":
            angle = rng.uniform(*np.radians(spec.limit), (n, 1))
            rv[:, j] = angle * (np.asarray(spec.axis) @ A_SMPL_TO_MJ)  # SMPL axes
    return rv[:, 0], rv[:, 1:], rng.normal(size=(n, 3))


@pytest.mark.parametrize("seed", [0, 1])
def test_mujoco_and_bodies_forward_kinematics_agree(seed):
    rng = np.random.default_rng(seed)
    betas = None if seed == 0 else rng.normal(size=10)
    h = build_humanoid(betas)
    m = h.compile()
    d = mujoco.MjData(m)
    go, bp, tr = random_pose(rng, 16)
    qpos = pose_to_qpos(go, bp, tr)
    body = mjcf._body_model("synthetic")
    with torch.no_grad():
        out = body(
            betas=torch.tensor(h.betas)[None].expand(16, -1),
            global_orient=torch.tensor(go),
            body_pose=torch.tensor(bp),
        )
    joints = out.joints.numpy() - out.joints[:, :1].numpy() + tr[:, None]  # pelvis at transl
    ids = [m.body(name).id for name in h.body_names]
    for i in range(16):
        d.qpos[:] = qpos[i]
        mujoco.mj_kinematics(m, d)
        np.testing.assert_allclose(d.xpos[ids], joints[i] @ A_SMPL_TO_MJ.T, atol=1e-6, rtol=0)


def test_pose_qpos_round_trip_is_exact():
    go, bp, tr = random_pose(np.random.default_rng(2), 32)
    qpos = pose_to_qpos(go, bp, tr)
    pose = qpos_to_pose(qpos)
    np.testing.assert_allclose(pose.global_orient, go, atol=1e-12)
    np.testing.assert_allclose(pose.body_pose, bp, atol=1e-12)
    np.testing.assert_allclose(pose.transl, tr, atol=1e-12)
    np.testing.assert_allclose(
        pose_to_qpos(pose.global_orient, pose.body_pose, pose.transl), qpos, atol=1e-12
    )
    assert qpos.shape == (32, mjcf.NQ) and pose_to_qpos(go[0], bp[0], tr[0]).shape == (mjcf.NQ,)


def test_pd_targets_are_what_the_actuators_measure():
    h = build_humanoid()
    m = h.compile()
    d = mujoco.MjData(m)
    go, bp, tr = random_pose(np.random.default_rng(3), 4)
    for q in pose_to_qpos(go, bp, tr):
        d.qpos[:] = q
        mujoco.mj_forward(m, d)
        np.testing.assert_allclose(d.actuator_length, qpos_to_targets(q), atol=1e-9)


@pytest.mark.parametrize("betas", [None, [2.0], [-2.0, 1.0, 0.5], np.linspace(-1.5, 1.5, 10)])
def test_mjcf_builds_for_several_shapes_with_plausible_mass(betas):
    h = build_humanoid(betas)
    m = mujoco.MjModel.from_xml_string(humanoid_mjcf(betas))
    assert (m.nq, m.nv, m.nu) == (mjcf.NQ, 43, 37) == (mjcf.NQ, m.nv, h.nu)
    assert m.nbody == 25 and m.njnt == 1 + 11 + 4  # root, ball joints, knees and elbows
    assert 45 < h.total_mass < 90
    np.testing.assert_allclose(m.body_subtreemass[1], h.total_mass, rtol=1e-9)
    assert h.joints.shape == (24, 3) and h.sole_height > 0.8
    assert h.joint_names == tuple(m.joint(i).name for i in range(m.njnt))
    for name, s in zip(h.body_names, h.qpos_slices, strict=True):
        if s.stop > s.start:  # each SMPL joint's qpos slice is its MuJoCo joint's
            assert m.jnt_qposadr[m.joint("root" if name == "pelvis" else name).id] == s.start


def test_mean_body_masses_are_human():
    h = build_humanoid()
    mass = dict(zip(JOINT_NAMES, h.masses, strict=True))
    assert 55 < h.total_mass < 70  # the synthetic body: 1.79 m tall, 59.9 kg at 985 kg/m^3
    trunk = sum(
        mass[n] for n in ("pelvis", "spine1", "spine2", "spine3", "left_collar", "right_collar")
    )
    assert 0.35 < trunk / h.total_mass < 0.5  # anthropometric tables: ~43 %
    assert mass["left_hip"] > mass["left_knee"] > mass["left_ankle"] > mass["left_foot"]
    assert mass["left_shoulder"] > mass["left_elbow"] > mass["left_wrist"]
    for a, b in LEFT_RIGHT.items():
        assert mass[JOINT_NAMES[a]] == pytest.approx(mass[JOINT_NAMES[b]], rel=0.05)


def test_gains_follow_deepmimic_scaled_by_mass():
    h = build_humanoid()
    m = h.compile()
    scale = h.total_mass / mjcf.DEEPMIMIC_MASS
    knee = m.actuator("left_knee")
    assert knee.gainprm[0] == pytest.approx(500 * scale)
    assert knee.biasprm[2] == pytest.approx(-50 * scale)  # kv
    assert m.actuator("spine1_x").gainprm[0] == pytest.approx(3000 * scale)  # chest x 3
    assert m.actuator("neck_y").forcerange[1] == pytest.approx(50 * scale)
    flat = build_humanoid(config=HumanoidConfig(gain_scale="none")).compile()
    assert flat.actuator("left_knee").gainprm[0] == pytest.approx(500)


def test_joint_table_is_mirror_symmetric_and_holds_the_deepmimic_clips():
    from bodies.motion.clips import CLIP_NAMES
    from bodies.motion.dataset import deepmimic_motion

    for a, b in LEFT_RIGHT.items():
        left, right = JOINTS[a], JOINTS[b]
        assert left.kind == right.kind and left.limit == right.limit
        if left.kind == "ball":
            (x0, x1), y, (z0, z1) = left.target
            assert right.target == ((-x1, -x0), y, (-z1, -z0))
    locked = [JOINT_NAMES[j] for j, s in enumerate(JOINTS) if s.kind == "locked"]
    assert sorted(locked) == sorted(
        [
            "left_collar",
            "right_collar",
            "left_foot",
            "right_foot",
            "left_wrist",
            "right_wrist",
            "left_hand",
            "right_hand",
        ]
    )
    lo, hi = build_humanoid().ctrl_range.T
    for name in CLIP_NAMES:
        m = deepmimic_motion(name)
        q = pose_to_qpos(m.global_orient, m.body_pose, m.transl)
        back = qpos_to_pose(q)
        np.testing.assert_allclose(back.body_pose, m.body_pose, atol=1e-9)  # exact on the clips
        t = qpos_to_targets(q)
        assert (t >= lo).all() and (t <= hi).all(), name
        for j, spec in enumerate(JOINTS):
            if spec.kind == "ball":
                angle = np.linalg.norm(m.body_pose[:, j - 1], axis=-1)
                assert np.degrees(angle).max() <= spec.limit[1] - 10, (name, JOINT_NAMES[j])


def test_bad_betas_and_config_are_refused():
    for betas in (np.zeros(11), np.zeros((2, 10)), [np.nan], [], "tall"):
        with pytest.raises(MpgymError, match="betas"):
            build_humanoid(betas)
    with pytest.raises(MpgymError, match="timestep"):
        build_humanoid(config=HumanoidConfig(timestep=0.0))
    with pytest.raises(MpgymError, match="gain_scale"):
        build_humanoid(config=HumanoidConfig(gain_scale="mass2"))
    with pytest.raises(MpgymError, match="qpos"):
        qpos_to_pose(np.zeros(7))
    with pytest.raises(MpgymError, match="body_pose"):
        pose_to_qpos(np.zeros(3), np.zeros((22, 3)), np.zeros(3))


def test_ghost_adds_mocap_bodies_without_dynamics():
    plain = build_humanoid().compile()
    ghost = build_humanoid(config=HumanoidConfig(ghost=True)).compile()
    assert ghost.nmocap == 24 and plain.nmocap == 0
    assert (ghost.nq, ghost.nv, ghost.nu) == (plain.nq, plain.nv, plain.nu)
    g = ghost.geom("floor").id
    ghost_geoms = [
        i for i in range(ghost.ngeom) if ghost.body(ghost.geom_bodyid[i]).name.startswith("ghost_")
    ]
    assert len(ghost_geoms) == 24 and g not in ghost_geoms
    assert (ghost.geom_contype[ghost_geoms] == 0).all()
    assert (ghost.geom_conaffinity[ghost_geoms] == 0).all()


def test_fit_capsule_recovers_a_cylinder():
    rng = np.random.default_rng(0)
    t, phi = rng.uniform(-0.2, 0.2, 4000), rng.uniform(0, 2 * np.pi, 4000)
    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    u = np.cross(axis, [1.0, 0, 0])
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    pts = 0.05 * (np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v) + t[:, None] * axis
    p0, p1, r = fit_capsule(pts + 1.0)
    assert r == pytest.approx(0.05, rel=1e-3)
    d = (p1 - p0) / np.linalg.norm(p1 - p0)
    assert abs(d @ axis) == pytest.approx(1.0, abs=1e-4)
    assert np.linalg.norm(p1 - p0) == pytest.approx(0.4 * 0.98 - 2 * 0.05, abs=0.01)


def test_part_volumes_split_a_cube_by_weight():
    v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    f = np.array(
        [
            [0, 1, 3],
            [0, 3, 2],
            [4, 6, 7],
            [4, 7, 5],
            [0, 4, 5],
            [0, 5, 1],
            [2, 3, 7],
            [2, 7, 6],
            [0, 2, 6],
            [0, 6, 4],
            [1, 5, 7],
            [1, 7, 3],
        ]
    )
    assert mjcf.mesh_volume(v, f) == pytest.approx(1.0)
    w = np.stack([v[:, 0] < 0.5, v[:, 0] > 0.5], 1).astype(float)  # left / right halves
    vol = part_volumes(v, f, w, spacing=0.05)
    assert vol.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(vol, [0.5, 0.5], atol=0.03)
