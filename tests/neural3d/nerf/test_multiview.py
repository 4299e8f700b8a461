import json
import math

import numpy as np
import pytest
import torch

from mpgym.errors import MpgymError
from neural3d.cameras import Intrinsics, look_at
from neural3d.data.multiview import (
    check_scene_visible,
    load_split,
    render_views,
    write_split,
)
from neural3d.data.scenes import builtin_scene


@pytest.fixture(scope="module")
def ball_views():
    intr = Intrinsics.from_fov(0.6911112070083618, 48)
    poses = np.stack([look_at(np.array([4.0 * math.cos(a), 4.0 * math.sin(a), 1.0]))
                      for a in (0.0, 2.0)])
    return render_views(builtin_scene("ball"), poses, intr), poses, intr


def test_rendered_sphere_covers_its_projected_disk(ball_views):
    images, poses, intr = ball_views
    r, d = 0.7, math.sqrt(17.0)  # icosphere radius, camera distance
    rho = intr.fx * r / math.sqrt(d * d - r * r)  # silhouette radius in pixels
    expected = math.pi * rho**2 / (intr.width * intr.height)
    assert images[..., 3].mean() == pytest.approx(expected, rel=0.05)
    assert images.shape == (2, 48, 48, 4) and images.min() >= 0 and images.max() <= 1


def test_specular_makes_colour_view_dependent():
    scene = builtin_scene("ball")
    intr = Intrinsics.from_fov(0.7, 32)
    pose = look_at(np.array([0.0, -4.0, 1.0]))[None]
    a = render_views(scene, pose, intr, specular=0.0)
    b = render_views(scene, pose, intr, specular=0.35)
    assert (b[..., :3] - a[..., :3]).max() > 0.1  # a highlight exists
    np.testing.assert_allclose(a[..., 3], b[..., 3])


def test_write_then_load_roundtrip(tmp_path, ball_views):
    images, poses, intr = ball_views
    write_split(tmp_path, "train", images, poses, intr)
    data = load_split(tmp_path, "train")
    np.testing.assert_allclose(data.images, images, atol=1 / 255)
    np.testing.assert_allclose(data.c2w, poses, atol=1e-6)
    assert data.intrinsics.fx == pytest.approx(intr.fx)
    white = data.rgb("white")
    assert white[0, 0, 0] == pytest.approx([1, 1, 1])  # empty corner pixel
    half = load_split(tmp_path, "train", downscale=2)
    assert half.images.shape[1:3] == (24, 24) and half.intrinsics.fx == pytest.approx(intr.fx / 2)
    check_scene_visible(data, np.array([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5]))
    with pytest.raises(MpgymError, match="seen by none"):
        check_scene_visible(data, np.array([20, 20, 20, 21, 21, 21.0]))


def _corrupt(tmp_path, ball_views, edit):
    images, poses, intr = ball_views
    write_split(tmp_path, "train", images, poses, intr)
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    edit(meta)
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("camera_angle_x"), "camera_angle_x"),
    (lambda m: m["frames"][1]["transform_matrix"][0].__setitem__(0, float("nan")),
     r"frames\[1\].transform_matrix contains NaN"),
    (lambda m: m["frames"][0].__setitem__("file_path", "./train/nope"), r"frames\[0\].file_path"),
    (lambda m: m["frames"][0].__setitem__("transform_matrix", [[1, 0], [0, 1]]), "4x4"),
    (lambda m: m.__setitem__("frames", []), "'frames'"),
])
def test_bad_transforms_name_file_and_field(tmp_path, ball_views, edit, message):
    _corrupt(tmp_path, ball_views, edit)
    with pytest.raises(MpgymError, match=message) as e:
        load_split(tmp_path, "train")
    assert "transforms_train.json" in str(e.value)


def test_missing_file_and_mixed_sizes(tmp_path, ball_views):
    with pytest.raises(MpgymError, match="missing transforms_test.json"):
        load_split(tmp_path, "test")
    images, poses, intr = ball_views
    write_split(tmp_path, "train", images, poses, intr)
    from PIL import Image

    Image.new("RGBA", (10, 12)).save(tmp_path / "train" / "r_1.png")
    with pytest.raises(MpgymError, match="r_1.png is 10x12"):
        load_split(tmp_path, "train")


def test_builtin_scene_has_thin_parts_and_concavity():
    scene = builtin_scene("tabletop")
    mesh = scene.mesh
    assert len(scene.face_color) == len(mesh.faces) == len(scene.face_pattern)
    assert set(np.unique(scene.face_pattern)) == {0, 1, 2}
    lo, hi = mesh.bounds
    assert (lo > -1).all() and (hi < 1).all()
    # the cup is open: a ray straight down into it hits its floor, below its rim
    import trimesh

    hits, _, _ = trimesh.ray.ray_triangle.RayMeshIntersector(mesh).intersects_location(
        [[-0.38, -0.3, 0.9]], [[0, 0, -1]])
    assert hits[:, 2].max() < -0.1
    with pytest.raises(MpgymError, match="accepted: tabletop, ball"):
        builtin_scene("lego")
    torch.manual_seed(0)
