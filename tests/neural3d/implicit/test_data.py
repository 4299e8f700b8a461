import numpy as np
import pytest
import trimesh

from mpgym import MpgymError
from neural3d.data.ground_truth import MeshGroundTruth
from neural3d.data.meshes import check_watertight, load_mesh, normalize_mesh, repair_mesh
from neural3d.data.sampling import (
    SamplingConfig,
    sample_near_surface,
    sample_surface,
    sample_training_points,
    sample_uniform,
)


@pytest.fixture
def box_file(tmp_path):
    path = tmp_path / "box.stl"
    trimesh.creation.box((2.0, 4.0, 1.0)).apply_translation((5, 5, 5)).export(path)
    return path


def test_load_and_normalise(box_file):
    m = load_mesh(box_file)
    assert np.allclose(m.bounds, [[-0.25, -0.5, -0.125], [0.25, 0.5, 0.125]])
    assert m.metadata["normalization"]["scale"] == pytest.approx(0.25)
    assert np.allclose(normalize_mesh(m, 2.0).extents, [1.0, 2.0, 0.5])


def test_bad_files(tmp_path):
    (tmp_path / "empty.obj").write_text("")
    (tmp_path / "notes.ply").write_text("this is not a mesh")
    trimesh.PointCloud(np.random.default_rng(0).normal(size=(50, 3))).export(tmp_path / "pc.ply")
    for name in ["empty.obj", "notes.ply", "pc.ply"]:
        with pytest.raises(MpgymError, match="mesh"):
            load_mesh(tmp_path / name)
    with pytest.raises(MpgymError, match="no mesh file"):
        load_mesh(tmp_path / "missing.obj")


def test_watertight_check_and_repair():
    box = trimesh.creation.box()
    open_box = trimesh.Trimesh(box.vertices, box.faces[:-1])
    with pytest.raises(MpgymError, match="not watertight.*boundary edges"):
        check_watertight(open_box)
    with pytest.raises(MpgymError, match="not watertight"):
        MeshGroundTruth(open_box)
    assert repair_mesh(open_box, "trimesh").is_watertight
    assert repair_mesh(box, "manifold").is_watertight


@pytest.mark.parametrize("backend", ["open3d", "trimesh"])
def test_ground_truth_on_a_box(backend):
    box = trimesh.creation.box((1.0, 1.0, 1.0))
    gt = MeshGroundTruth(box, backend=backend)
    x = np.array([[0.0, 0, 0], [1.0, 0, 0], [0.25, 0.1, 0.0]], np.float32)
    assert np.allclose(gt.signed_distance(x), [-0.5, 0.5, -0.25], atol=1e-5)
    assert gt.occupancy(x).tolist() == [True, False, True]
    assert np.allclose(gt.unsigned_distance(x), [0.5, 0.5, 0.25], atol=1e-5)


def test_sampling_statistics():
    rng = np.random.default_rng(0)
    sphere = trimesh.creation.icosphere(4, radius=0.4)
    s = sample_surface(sphere, 5000, rng)
    assert np.allclose(np.linalg.norm(s.points, axis=1), 0.4, atol=2e-3)
    assert ((s.normals * s.points).sum(1) > 0).all()  # outward
    noisy = sample_surface(sphere, 5000, rng, noise=0.01)
    assert np.std(np.linalg.norm(noisy.points, axis=1) - 0.4) == pytest.approx(0.01, rel=0.1)
    u = sample_uniform(10000, 0.5, rng)
    assert u.min() >= -0.5 and u.max() <= 0.5 and abs(u.mean()) < 0.01
    base = np.zeros((1, 3), np.float32)
    near = sample_near_surface(base, 20000, (0.01, 0.1), rng)
    assert near[0::2].std() == pytest.approx(0.01, rel=0.05)
    assert near[1::2].std() == pytest.approx(0.1, rel=0.05)
    mix = sample_training_points(s.points, SamplingConfig(n_points=800), rng)
    assert mix.shape == (800, 3) and mix.dtype == np.float32
