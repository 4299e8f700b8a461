"""The motion GIF: camera geometry and the frames written."""

from __future__ import annotations

import numpy as np
import pytest

from bodies.motion.dataset import Motion
from bodies.motion.render import look_at, save_motion_gif
from mpgym.errors import MpgymError


def test_look_at_puts_the_target_on_the_optical_axis_with_y_down():
    eye, target = np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.5, 0.0])
    R, t = look_at(eye, target)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    X = R @ target + t
    np.testing.assert_allclose(X[:2], 0.0, atol=1e-12)
    assert X[2] == pytest.approx(np.linalg.norm(target - eye))
    above = R @ (target + np.array([0.0, 1.0, 0.0])) + t
    assert above[1] < 0  # world up is image up (camera y points down)


def test_gif_has_one_frame_per_output_tick_and_two_panels(tmp_path):
    from PIL import Image

    T = 30
    m = Motion(
        label="still",
        fps=30.0,
        global_orient=np.zeros((T, 3)),
        body_pose=np.zeros((T, 23, 3)),
        transl=np.tile([0.0, 0.95, 0.0], (T, 1)) + np.linspace(0, 1, T)[:, None] * [0, 0, 1],
    )
    path = save_motion_gif(tmp_path / "m.gif", [m, m[:10]], titles=["a", "b"], size=64)
    im = Image.open(path)
    assert im.size == (128, 64)
    assert im.n_frames == 15  # 1 s at 15 fps
    frame = np.asarray(im.convert("RGB"))
    assert (frame < 200).any(axis=-1).sum() > 100  # a body is drawn
    assert not list(tmp_path.glob("*.partial*"))


def test_gif_refuses_other_suffixes(tmp_path):
    with pytest.raises(MpgymError, match="gif"):
        save_motion_gif(tmp_path / "m.png", [])
