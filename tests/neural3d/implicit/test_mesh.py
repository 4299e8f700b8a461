import numpy as np
import pytest
import torch

from mpgym import MpgymError
from neural3d.mesh import _upsample2, extract_mesh, sample_grid
from neural3d.metrics import chamfer_l1
from neural3d.shapes import get_shape


@pytest.mark.parametrize("name", ["sphere", "torus", "csg_difference"])
def test_hierarchical_equals_dense_with_fewer_queries(name):
    shape = get_shape(name)
    dense = extract_mesh(shape, 0.55, 64, hierarchical=False)
    mise = extract_mesh(shape, 0.55, 64, hierarchical=True)
    assert len(dense.faces) == len(mise.faces)
    assert np.allclose(np.sort(dense.vertices, 0), np.sort(mise.vertices, 0), atol=1e-6)
    assert dense.metadata["extraction"]["queries"] == 65**3
    assert mise.metadata["extraction"]["queries"] * 2 < 65**3


def test_mesh_is_watertight_outward_and_accurate():
    shape = get_shape("sphere")
    m = extract_mesh(shape, 0.55, 64)
    assert m.is_watertight
    assert m.volume == pytest.approx(4 / 3 * np.pi * 0.4**3, rel=5e-3)
    radial = m.vertices / np.linalg.norm(m.vertices, axis=1, keepdims=True)
    assert (m.vertex_normals * radial).sum(1).min() > 0.999  # gradient normals, outward
    assert np.abs(np.linalg.norm(m.vertices, axis=1) - 0.4).max() < 1e-3


def test_occupancy_field_inside_above_and_numpy_callable():
    def occ(x):  # probability-like, inside above 0.5, numpy in/out
        return 1.0 / (1.0 + np.exp((np.linalg.norm(x, axis=1) - 0.3) * 50))

    m = extract_mesh(occ, ((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)), 64, 0.5, inside="above",
                     array="numpy")
    assert m.volume == pytest.approx(4 / 3 * np.pi * 0.3**3, rel=1e-2)
    assert (m.vertex_normals * m.vertices).sum(1).min() > 0  # finite differences, outward


def test_upsample_keeps_points_and_interpolates():
    v = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    u = _upsample2(v)
    assert u.shape == (3, 3, 3)
    assert np.array_equal(u[::2, ::2, ::2], v)
    assert u[1, 1, 1] == pytest.approx(v.mean())


def test_hierarchical_query_count_at_256_is_8x_lower():
    g = sample_grid(get_shape("torus"), 0.55, 256, hierarchical=True)
    assert g.queries * 8 <= 257**3


def test_bad_input_errors():
    shape = get_shape("sphere")
    with pytest.raises(MpgymError, match="no surface at level"):
        extract_mesh(shape, 0.55, 32, level=5.0)
    with pytest.raises(MpgymError, match="coarse_resolution"):
        extract_mesh(shape, 0.55, 100)
    with pytest.raises(MpgymError, match="NaN"):
        extract_mesh(lambda x: torch.full((len(x),), float("nan")), 0.55, 32)
    with pytest.raises(MpgymError, match="max > min"):
        extract_mesh(shape, ((0, 0, 0), (1, -1, 1)), 32)
    with pytest.raises(MpgymError, match="GiB"):
        extract_mesh(shape, 0.55, 32 * 2**10)  # 32769^3 samples cannot fit


def test_chamfer_between_resolutions_is_small():
    shape = get_shape("torus")
    a = extract_mesh(shape, 0.55, 64)
    b = extract_mesh(shape, 0.55, 128)
    assert chamfer_l1(a.vertices, b.vertices) < 5e-3


def test_simplify_reaches_target_and_stays_on_the_surface():
    shape = get_shape("torus")
    full = extract_mesh(shape, 0.55, 128)
    small = extract_mesh(shape, 0.55, 128, simplify=2000)
    assert len(full.faces) > 10 * 2000
    assert 1800 <= len(small.faces) <= 2000
    # quadric decimation keeps the vertices near the zero level set and the shape whole
    assert np.abs(shape.sdf(torch.from_numpy(small.vertices).float()).numpy()).max() < 0.01
    assert chamfer_l1(small.sample(20_000), full.sample(20_000)) < 0.01
    assert small.euler_number == full.euler_number == 0  # still a torus
