import numpy as np
import pytest
import torch

from neural3d.implicit.losses import eikonal_loss, gradient
from neural3d.shapes import (
    SHAPES,
    Box,
    Sphere,
    Torus,
    get_shape,
    project_to_surface,
    sdf_box,
    sdf_sphere,
    sdf_torus,
    surface_normals,
)

EXACT = ["sphere", "box", "torus", "capsule", "cylinder"]


def test_docstring_examples():
    assert sdf_sphere(torch.tensor([[0.0, 0.0, 2.0]]), 1.0).item() == 1.0
    assert sdf_box(torch.tensor([[2.0, 0.0, 0.0]]), (1.0, 1.0, 1.0)).item() == 1.0
    assert sdf_torus(torch.tensor([[1.0, 0.0, 0.0]]), 1.0, 0.25).item() == pytest.approx(-0.25)


@pytest.mark.parametrize("name", EXACT)
def test_analytic_sdf_matches_open3d_distance(name):
    """Exact SDFs agree with Open3D's signed distance to a fine mesh of the same shape."""
    from neural3d.data.ground_truth import MeshGroundTruth
    from neural3d.mesh import extract_mesh

    shape = get_shape(name)
    mesh = extract_mesh(shape, 0.55, 128, normals="mesh")
    gt = MeshGroundTruth(mesh)
    x = np.random.default_rng(0).uniform(-0.55, 0.55, (4000, 3)).astype(np.float32)
    err = np.abs(gt.signed_distance(x) - shape(x))
    # marching cubes at h = 1.1/128 cuts curved parts by O(h^2 / r) and sharp edges by < h
    assert np.median(err) < 2e-4 and err.max() < 0.7 * 1.1 / 128
    assert (gt.occupancy(x) == (shape(x) < 0)).mean() > 0.999


@pytest.mark.parametrize("name", EXACT)
def test_eikonal_loss_is_zero_for_exact_sdf(name):
    shape = get_shape(name)
    x = (torch.rand(2000, 3, generator=torch.Generator().manual_seed(0)) - 0.5) * 1.1
    x.requires_grad_(True)
    g = gradient(shape.sdf(x), x)
    assert eikonal_loss(g).item() < 1e-8


def test_superquadric_zero_set_and_csg():
    sq = get_shape("superquadric")
    x = project_to_surface(sq, torch.tensor([[0.3, 0.1, 0.2], [-0.1, 0.3, 0.0]]))
    assert sq.sdf(x).abs().max() < 1e-5
    a, b = Sphere(0.3), Box((0.2, 0.2, 0.2), center=(0.3, 0.0, 0.0))
    p = torch.tensor([[0.0, 0.0, 0.0], [0.45, 0.0, 0.0], [0.0, 0.0, 0.29], [0.29, 0, 0]])
    assert torch.equal((a | b).sdf(p), torch.minimum(a.sdf(p), b.sdf(p)))
    assert torch.equal((a & b).sdf(p), torch.maximum(a.sdf(p), b.sdf(p)))
    assert torch.equal((a - b).sdf(p), torch.maximum(a.sdf(p), -b.sdf(p)))
    assert (a - b).sdf(p)[3] > 0  # inside the removed box


def test_numpy_and_tensor_inputs_agree_and_normals_point_out():
    t = Torus(0.3, 0.1)
    x = np.array([[0.3, 0.0, 0.05], [0.0, 0.0, 0.0]], np.float32)
    assert np.allclose(t(x), t(torch.from_numpy(x)).numpy())
    p = project_to_surface(t, torch.tensor([[0.45, 0.0, 0.0]]))
    assert torch.allclose(p, torch.tensor([[0.4, 0.0, 0.0]]), atol=1e-6)
    assert torch.allclose(surface_normals(t, p), torch.tensor([[1.0, 0.0, 0.0]]), atol=1e-6)


def test_builtin_shapes_fit_the_unit_cube_and_unknown_name():
    from mpgym import MpgymError

    corners = torch.tensor([[s * 0.5, t * 0.5, u * 0.5] for s in (-1, 1) for t in (-1, 1)
                            for u in (-1, 1)])
    for name in SHAPES:
        assert (get_shape(name).sdf(corners) > 0).all(), name
    with pytest.raises(MpgymError, match="accepted: sphere"):
        get_shape("teapot")
