import math

import numpy as np
import pytest
import torch

from neural3d.cameras import (
    Intrinsics,
    focal_from_fov,
    look_at,
    opencv_to_opengl,
    opengl_to_opencv,
    pixel_rays,
    project,
    sphere_poses,
)


def test_focal_and_intrinsics():
    assert focal_from_fov(math.pi / 2, 100) == pytest.approx(50.0)
    intr = Intrinsics.from_fov(0.6911112070083618, 800)
    assert intr.fx == pytest.approx(1111.111, rel=1e-5)  # NeRF-synthetic's focal at 800 px
    assert intr.camera_angle_x == pytest.approx(0.6911112070083618)
    assert intr.scaled(0.25).fx == pytest.approx(intr.fx / 4)


def test_rays_look_down_minus_z_and_reproject():
    c2w = torch.as_tensor(look_at(np.array([0.0, -4.0, 1.0])), dtype=torch.float64)
    intr = Intrinsics.from_fov(0.7, 33, 21)
    o, d = pixel_rays(c2w, intr)
    assert o.shape == d.shape == (21, 33, 3)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(21, 33, dtype=torch.float64))
    centre = d[10, 16]  # the principal ray (pixel centre 16.5, 10.5 is the image centre)
    torch.testing.assert_close(centre, -c2w[:3, 2])
    pts = (o + 2.5 * d).reshape(-1, 3)
    uv, depth = project(pts, c2w, intr)
    jj, ii = torch.meshgrid(torch.arange(21.0), torch.arange(33.0), indexing="ij")
    torch.testing.assert_close(uv, torch.stack([ii + 0.5, jj + 0.5], -1).reshape(-1, 2).double())
    assert (depth > 0).all()


def test_look_at_and_axis_conversion():
    poses = sphere_poses(5, 4.0, rng=np.random.default_rng(0))
    for c2w in poses:
        R = c2w[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(np.linalg.det(R), 1.0)
        # the camera looks at the origin along -z
        np.testing.assert_allclose(-R[:, 2], -c2w[:3, 3] / np.linalg.norm(c2w[:3, 3]), atol=1e-12)
    t = torch.as_tensor(poses)
    torch.testing.assert_close(opencv_to_opengl(opengl_to_opencv(t)), t)
    cv = opengl_to_opencv(t)
    torch.testing.assert_close(cv[:, :3, 2], -t[:, :3, 2])  # OpenCV +z = forward
