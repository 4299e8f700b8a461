import math

import numpy as np
import pytest
import torch

from mpgym.errors import MpgymError
from neural3d.cameras import Intrinsics, look_at, opengl_to_opencv, project
from neural3d.splat.project import project_gaussians, quat_to_rotmat

INTR = Intrinsics(64, 48, 70.0, 60.0, 31.0, 25.0)


def _camera_at_z(z: float, dtype=torch.float64) -> torch.Tensor:
    """OpenGL camera on the +z axis looking at the origin (down -z)."""
    c2w = torch.eye(4, dtype=dtype)
    c2w[2, 3] = z
    return c2w


def _unit_quats(n, gen, dtype=torch.float64):
    q = torch.randn(n, 4, generator=gen, dtype=dtype)
    return q / q.norm(dim=-1, keepdim=True)


def _identity(n, dtype=torch.float64):
    q = torch.zeros(n, 4, dtype=dtype)
    q[:, 0] = 1
    return q


def _numpy_projection(means, scales, quats, c2w, intr, eps2d=0.3):
    """Independent float64 EWA with explicit matrices, for comparison."""
    w2c = np.linalg.inv(opengl_to_opencv(torch.as_tensor(c2w)).numpy())
    out = []
    for m, s, q in zip(means, scales, quats, strict=True):
        R = quat_to_rotmat(torch.as_tensor(q)).numpy()
        sigma = R @ np.diag(s**2) @ R.T
        t = w2c[:3, :3] @ m + w2c[:3, 3]
        lim_x, lim_y = 1.3 * 0.5 * intr.width / intr.fx, 1.3 * 0.5 * intr.height / intr.fy
        tx = np.clip(t[0] / t[2], -lim_x, lim_x) * t[2]
        ty = np.clip(t[1] / t[2], -lim_y, lim_y) * t[2]
        J = np.array([[intr.fx / t[2], 0, -intr.fx * tx / t[2] ** 2],
                      [0, intr.fy / t[2], -intr.fy * ty / t[2] ** 2]])
        cov = J @ w2c[:3, :3] @ sigma @ w2c[:3, :3].T @ J.T + eps2d * np.eye(2)
        inv = np.linalg.inv(cov)
        out.append((cov[0, 0], cov[0, 1], cov[1, 1], inv[0, 0], inv[0, 1], inv[1, 1]))
    return np.array(out)


def test_quat_to_rotmat_is_a_rotation():
    q = _unit_quats(20, torch.Generator().manual_seed(0))
    R = quat_to_rotmat(q)
    eye = torch.eye(3, dtype=R.dtype).expand(20, 3, 3)
    torch.testing.assert_close(R @ R.transpose(-1, -2), eye)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(20, dtype=R.dtype))
    # 90 degrees about z maps x to y
    q90 = torch.tensor([math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)], dtype=torch.float64)
    torch.testing.assert_close(quat_to_rotmat(q90) @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                               torch.tensor([0.0, 1, 0], dtype=torch.float64))


def test_optical_axis_projects_to_principal_point_with_closed_form_covariance():
    z, s = 4.0, 0.05
    p = project_gaussians(torch.zeros(1, 3, dtype=torch.float64),
                          torch.full((1, 3), s, dtype=torch.float64), _identity(1),
                          _camera_at_z(z), INTR)
    torch.testing.assert_close(p.means2d, torch.tensor([[INTR.cx, INTR.cy]], dtype=torch.float64))
    torch.testing.assert_close(p.depths, torch.tensor([z], dtype=torch.float64))
    xx, yy = (INTR.fx * s / z) ** 2 + 0.3, (INTR.fy * s / z) ** 2 + 0.3
    torch.testing.assert_close(p.cov2d, torch.tensor([[xx, 0.0, yy]], dtype=torch.float64))
    torch.testing.assert_close(p.conics, torch.tensor([[1 / xx, 0.0, 1 / yy]], dtype=torch.float64))
    assert p.radii.dtype == torch.int32
    assert int(p.radii[0]) == math.ceil(3 * math.sqrt(max(xx, yy)))


def test_means_match_camera_projection_and_covariance_matches_matrix_form():
    g = torch.Generator().manual_seed(1)
    n = 30
    means = (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5) * 1.5
    scales = torch.rand(n, 3, generator=g, dtype=torch.float64) * 0.2 + 0.01
    quats = _unit_quats(n, g)
    c2w = torch.as_tensor(look_at(np.array([3.0, 1.0, 2.0])))
    p = project_gaussians(means, scales, quats, c2w, INTR)
    pix, depth = project(means, c2w, INTR)
    torch.testing.assert_close(p.means2d, pix)
    torch.testing.assert_close(p.depths, depth)
    ref = _numpy_projection(means.numpy(), scales.numpy(), quats.numpy(), c2w, INTR)
    torch.testing.assert_close(p.cov2d, torch.as_tensor(ref[:, :3]))
    torch.testing.assert_close(p.conics, torch.as_tensor(ref[:, 3:]))


def test_frustum_clamp_at_the_edge():
    """Beyond 1.3 tan(fov/2) the Jacobian stops changing: same covariance, different mean."""
    lim = 1.3 * 0.5 * INTR.width / INTR.fx
    z = 4.0
    xs = torch.tensor([lim * z * 1.1, lim * z * 1.3, lim * z * 0.5], dtype=torch.float64)
    means = torch.stack([xs, torch.zeros(3, dtype=xs.dtype), torch.zeros(3, dtype=xs.dtype)], -1)
    scales = torch.tensor([[0.5, 0.2, 0.3]] * 3, dtype=torch.float64)
    p = project_gaussians(means, scales, _identity(3), _camera_at_z(z), INTR, near=0.01)
    torch.testing.assert_close(p.cov2d[0], p.cov2d[1])
    assert not torch.allclose(p.cov2d[0], p.cov2d[2])
    assert p.means2d[1, 0] > p.means2d[0, 0]
    ref = _numpy_projection(means.numpy(), scales.numpy(), _identity(3).numpy(),
                            _camera_at_z(z), INTR)
    torch.testing.assert_close(p.cov2d, torch.as_tensor(ref[:, :3]))
    # the clamped Gaussian's covariance has no gradient w.r.t. its x position
    m = means.clone().requires_grad_()
    project_gaussians(m, scales, _identity(3), _camera_at_z(z), INTR).cov2d[0, 0].backward()
    assert m.grad[0, 0] == 0


def test_culling_behind_camera_beyond_far_and_off_image():
    means = torch.tensor([[0.0, 0, 0], [0.0, 0, 5.0], [0.0, 0, -100.0], [30.0, 0, 0],
                          [0.0, 0, 3.995]], dtype=torch.float64)
    scales = torch.full((5, 3), 0.05, dtype=torch.float64)
    p = project_gaussians(means, scales, _identity(5), _camera_at_z(4.0), INTR, far=50.0)
    assert p.radii.tolist()[0] > 0
    assert p.radii.tolist()[1:] == [0, 0, 0, 0]  # behind, beyond far, off image, before near
    assert torch.isfinite(p.means2d).all() and torch.isfinite(p.conics).all()


def test_degenerate_scales_keep_the_low_pass():
    p = project_gaussians(torch.zeros(1, 3, dtype=torch.float64),
                          torch.full((1, 3), 1e-12, dtype=torch.float64), _identity(1),
                          _camera_at_z(4.0), INTR)
    torch.testing.assert_close(p.cov2d, torch.tensor([[0.3, 0.0, 0.3]], dtype=torch.float64))
    assert int(p.radii[0]) == math.ceil(3 * math.sqrt(0.3 + math.sqrt(0.1)))


@pytest.mark.parametrize("antialiased", [False, True])
def test_gradcheck_float64(antialiased):
    g = torch.Generator().manual_seed(2)
    n = 6
    means = (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5).requires_grad_()
    scales = (torch.rand(n, 3, generator=g, dtype=torch.float64) * 0.2 + 0.05).requires_grad_()
    quats = _unit_quats(n, g).requires_grad_()
    c2w = torch.as_tensor(look_at(np.array([2.5, -1.0, 1.5])))

    def f(m, s, q):
        p = project_gaussians(m, s, q, c2w, INTR, antialiased=antialiased)
        extra = (p.compensation,) if antialiased else ()
        return p.means2d, p.conics, p.depths, p.cov2d, *extra

    assert torch.autograd.gradcheck(f, (means, scales, quats))
    if antialiased:
        rho = f(means, scales, quats)[-1]
        assert bool(((rho > 0) & (rho < 1)).all())


def test_bad_shapes_raise():
    with pytest.raises(MpgymError, match="means"):
        project_gaussians(torch.zeros(3, 2), torch.zeros(3, 3), torch.zeros(3, 4), torch.eye(4),
                          INTR)
    with pytest.raises(MpgymError, match="c2w"):
        project_gaussians(torch.zeros(3, 3), torch.zeros(3, 3), torch.zeros(3, 4), torch.eye(3),
                          INTR)


def test_antialiased_compensation_closed_form():
    """rho = sqrt(det(Sigma) / det(Sigma + eps2d I)) on the optical axis (diagonal covariance);
    none in the classic mode (its gradient: test_gradcheck_float64)."""
    z, s = 4.0, 0.05
    p = project_gaussians(torch.zeros(1, 3, dtype=torch.float64),
                          torch.full((1, 3), s, dtype=torch.float64), _identity(1),
                          _camera_at_z(z), INTR, antialiased=True)
    xx0, yy0 = (INTR.fx * s / z) ** 2, (INTR.fy * s / z) ** 2
    want = math.sqrt(xx0 * yy0 / ((xx0 + 0.3) * (yy0 + 0.3)))
    torch.testing.assert_close(p.compensation, torch.tensor([want], dtype=torch.float64))
    assert project_gaussians(torch.zeros(1, 3), torch.full((1, 3), s), _identity(1).float(),
                             _camera_at_z(z).float(), INTR).compensation is None
