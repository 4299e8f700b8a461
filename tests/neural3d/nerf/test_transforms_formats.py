"""transforms.json layouts: NeRF-synthetic split files, nerfstudio and Instant-NGP single files."""

import json
import math
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from mpgym.errors import MpgymError
from neural3d.cameras import look_at
from neural3d.data.multiview import load_split


def _png(path, value, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((size[1], size[0], 4), np.uint8)
    img[..., 0], img[..., 3] = value, 255
    Image.fromarray(img, "RGBA").save(path)


def _pose(k):
    """A camera on a circle of radius 4 at height 1, looking at the origin (4x4 list)."""
    a = 0.7 * k
    return look_at(np.array([4 * math.cos(a), 4 * math.sin(a), 1.0])).tolist()


def _expected_dir(c2w, fx, fy, cx, cy, i, j):
    """Unit direction through pixel (column i, row j), by hand: OpenGL camera, -z forward."""
    d = np.array([(i + 0.5 - cx) / fx, -(j + 0.5 - cy) / fy, -1.0])
    d = np.asarray(c2w)[:3, :3] @ d
    return d / np.linalg.norm(d)


def _write(root, name, meta):
    (root / name).write_text(json.dumps(meta))


def test_blender_split_files(tmp_path):
    angle = 0.6911112070083618
    _write(tmp_path, "transforms_train.json", {"camera_angle_x": angle, "frames": [
        {"file_path": f"./train/r_{k}", "transform_matrix": _pose(k)} for k in range(2)]})
    _write(tmp_path, "transforms_test.json", {"camera_angle_x": angle, "frames": [
        {"file_path": "./test/r_0", "transform_matrix": _pose(5)}]})
    for k in range(2):
        _png(tmp_path / "train" / f"r_{k}.png", 10 * k)
    _png(tmp_path / "test" / "r_0.png", 99)
    train, test = load_split(tmp_path, "train"), load_split(tmp_path, "test")
    f = 0.5 * 8 / math.tan(angle / 2)
    assert (train.intrinsics.fx, train.intrinsics.fy) == pytest.approx((f, f))
    assert (train.intrinsics.cx, train.intrinsics.cy) == (4.0, 4.0)
    assert len(train) == 2 and len(test) == 1 and train.cameras is None
    assert train.scene_box is None and train.applied_transform is None
    np.testing.assert_allclose(test.c2w[0], _pose(5), atol=1e-6)  # poses as given
    o, d = train.rays()
    assert d.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(d[1, 2, 5].numpy(), _expected_dir(_pose(1), f, f, 4, 4, 5, 2),
                               atol=1e-5)
    np.testing.assert_allclose(o[1, 0, 0].numpy(), np.asarray(_pose(1))[:3, 3], atol=1e-6)
    assert test.images[0, 0, 0, 0] == pytest.approx(99 / 255)


def _nerfstudio(root):
    """Nine frames in a shuffled order; frame 3 has its own intrinsics; w, h twice the files."""
    order = [5, 1, 9, 3, 2, 8, 4, 7, 6]
    frames = []
    for k in order:
        fr = {"file_path": f"images/frame_{k:05d}.png", "transform_matrix": _pose(k)}
        if k == 3:
            fr.update(fl_x=30.0, fl_y=32.0, cx=7.0, cy=9.0)
        frames.append(fr)
        _png(root / "images" / f"frame_{k:05d}.png", k)
    applied = [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 0]]
    _write(root, "transforms.json", {"camera_model": "OPENCV", "fl_x": 20.0, "fl_y": 24.0,
                                     "cx": 8.0, "cy": 6.0, "w": 16, "h": 16, "k1": 0.0,
                                     "applied_transform": applied, "frames": frames})


def test_nerfstudio_single_file_holds_out_every_8th_frame(tmp_path):
    _nerfstudio(tmp_path)
    train, test = load_split(tmp_path, "train"), load_split(tmp_path, "test")
    # sorted by name: frame 1 (index 0) and frame 9 (index 8) are the test views
    assert [f.name for f in test.files] == ["frame_00001.png", "frame_00009.png"]
    assert [f.name for f in train.files] == [f"frame_{k:05d}.png" for k in range(2, 9)]
    assert [f.name for f in load_split(tmp_path, "val").files] == [f.name for f in test.files]
    np.testing.assert_allclose(train.c2w[0], _pose(2), atol=1e-6)  # poses not transformed
    np.testing.assert_allclose(train.applied_transform,
                               [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 0], [0, 0, 0, 1]])
    # scene intrinsics describe 16x16 images; the files are 8x8: everything halves
    cam = test.camera(0)
    assert (cam.width, cam.fx, cam.fy, cam.cx, cam.cy) == (8, 10.0, 12.0, 4.0, 3.0)
    assert test.cameras is None  # both test views share the scene's intrinsics
    # frame 3 (train index 1) has its own focal length and principal point
    assert train.cameras is not None
    own = train.camera(1)
    assert (own.fx, own.fy, own.cx, own.cy) == (15.0, 16.0, 3.5, 4.5)
    assert train.camera(0) == cam
    o, d = train.rays()
    np.testing.assert_allclose(d[1, 6, 2].numpy(), _expected_dir(_pose(3), 15, 16, 3.5, 4.5, 2, 6),
                               atol=1e-5)
    np.testing.assert_allclose(d[0, 6, 2].numpy(), _expected_dir(_pose(2), 10, 12, 4, 3, 2, 6),
                               atol=1e-5)
    # a JSON file given directly reads the same way
    assert [f.name for f in load_split(tmp_path / "transforms.json", "test").files] == [
        "frame_00001.png", "frame_00009.png"]


def test_instant_ngp_scale_offset_and_aabb_scale(tmp_path):
    frames = [{"file_path": f"img/{k}.png", "transform_matrix": _pose(k)} for k in range(3)]
    for k in range(3):
        _png(tmp_path / "img" / f"{k}.png", k)
    _write(tmp_path, "transforms.json", {"camera_angle_x": 1.0, "aabb_scale": 4, "scale": 0.5,
                                         "offset": [0.5, 0.6, 0.7], "frames": frames})
    train = load_split(tmp_path, "train")
    assert [f.name for f in train.files] == ["1.png", "2.png"]
    for c2w, k in zip(train.c2w, (1, 2), strict=True):
        p = np.asarray(_pose(k))
        # Instant-NGP: p * scale + offset; minus its cube centre 0.5
        np.testing.assert_allclose(c2w[:3, 3], p[:3, 3] * 0.5 + np.array([0.0, 0.1, 0.2]),
                                   atol=1e-6)
        np.testing.assert_allclose(c2w[:3, :3], p[:3, :3], atol=1e-6)  # rotation kept
    assert train.scene_box == 2.0  # aabb_scale 4 around the cube centre: [-2, 2]^3
    assert train.intrinsics.fx == pytest.approx(4 / math.tan(0.5))
    # only aabb_scale (colmap2nerf): Instant-NGP's defaults scale 0.33, offset 0.5
    _write(tmp_path, "transforms.json", {"camera_angle_x": 1.0, "aabb_scale": 16,
                                         "frames": frames})
    train = load_split(tmp_path, "train")
    np.testing.assert_allclose(train.c2w[0][:3, 3], np.asarray(_pose(1))[:3, 3] * 0.33, atol=1e-6)
    assert train.scene_box == 8.0
    # an explicit aabb is fitted into the unit cube around 0.5
    _write(tmp_path, "transforms.json", {"camera_angle_x": 1.0, "frames": frames,
                                         "aabb": [[-1, -2, -3], [3, 2, 1]]})
    train = load_split(tmp_path, "train")
    center = np.array([1.0, 0.0, -1.0])
    np.testing.assert_allclose(train.c2w[0][:3, 3], (np.asarray(_pose(1))[:3, 3] - center) / 4,
                               atol=1e-6)
    assert train.scene_box == 0.5


def _minimal(root, **scene):
    for k in range(2):
        _png(root / f"{k}.png", k)
    frames = [{"file_path": f"{k}.png", "transform_matrix": _pose(k)} for k in range(2)]
    _write(root, "transforms.json", {"camera_angle_x": 0.7, "frames": frames, **scene})
    return frames


@pytest.mark.parametrize("scene, message", [
    ({"fl_x": -3.0}, "transforms.json: field 'fl_x' is -3.0; expected a finite number > 0"),
    ({"fl_x": "12"}, "'fl_x'"),
    ({"w": 0}, "'w' is 0"),
    ({"h": True}, "'h' is True"),
    ({"camera_angle_x": 4.0}, "camera_angle_x"),
    ({"scale": 0}, "'scale'"),
    ({"aabb_scale": float("nan")}, "'aabb_scale'"),
    ({"offset": [1, 2]}, "'offset'"),
    ({"aabb": [[0, 0, 0], [0, 1, 1]]}, "'aabb'"),
    ({"applied_transform": [[1, 0, 0]]}, "applied_transform"),
    ({"fl_x": 1e-300}, "perpendicular"),  # finite, positive, but rays would be infinite
    ({"camera_angle_x": 3.1415926}, "perpendicular"),
    ({"scale": 1e308}, "float32"),
])
def test_bad_scene_keys_are_refused(tmp_path, scene, message):
    _minimal(tmp_path, **scene)
    with pytest.raises(MpgymError, match=message):
        load_split(tmp_path, "train")


@pytest.mark.parametrize("edit, message", [
    (lambda f: f[1].__setitem__("transform_matrix", [[float("inf")] * 4] * 4), "NaN or infinity"),
    (lambda f: f[1].__setitem__("transform_matrix", [[0.0] * 4] * 4), "singular"),
    (lambda f: f[1].__setitem__("transform_matrix", [[1e30, 0, 0, 0], [0, 1, 0, 0],
                                                     [0, 0, 1, 0], [0, 0, 0, 1]]), "badly scaled"),
    (lambda f: f[1].__setitem__("transform_matrix", "eye"), "not numeric"),
    (lambda f: f[1].__setitem__("fl_x", 0), "frames\\[1\\].*'fl_x'"),
    (lambda f: f.__setitem__(1, ["not", "a", "frame"]), "frames\\[1\\] has no 'file_path'"),
])
def test_bad_frames_are_refused(tmp_path, edit, message):
    frames = _minimal(tmp_path)
    edit(frames)
    _write(tmp_path, "transforms.json", {"camera_angle_x": 0.7, "frames": frames})
    with pytest.raises(MpgymError, match=message):
        load_split(tmp_path, "train")


def test_single_frame_and_unreadable_json(tmp_path):
    _png(tmp_path / "0.png", 0)
    _write(tmp_path, "transforms.json", {"camera_angle_x": 0.7, "frames": [
        {"file_path": "0.png", "transform_matrix": _pose(0)}]})
    with pytest.raises(MpgymError, match="at least 2 frames"):
        load_split(tmp_path, "test")
    (tmp_path / "transforms.json").write_bytes(b"\xff\xfe{\x00")
    with pytest.raises(MpgymError, match="not valid JSON"):
        load_split(tmp_path, "train")
    (tmp_path / "transforms.json").write_text("[" * 100_000)
    with pytest.raises(MpgymError, match="not valid JSON"):
        load_split(tmp_path, "train")


def test_truncated_png_names_the_file(tmp_path):
    _minimal(tmp_path)
    data = (tmp_path / "1.png").read_bytes()
    (tmp_path / "1.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MpgymError, match="1.png is not a readable image"):
        load_split(tmp_path, "train")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    _minimal(tmp_path)
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 6, 0, 0, 0)  # 1e10 RGBA pixels declared
    bomb = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"")) + \
        _chunk(b"IEND", b"")
    (tmp_path / "1.png").write_bytes(bomb)
    with pytest.raises(MpgymError, match="decompression-bomb limit"):
        load_split(tmp_path, "train")


def test_downscale_scales_per_view_intrinsics(tmp_path):
    _nerfstudio(tmp_path)
    half = load_split(tmp_path, "train", downscale=2)
    assert half.images.shape == (7, 4, 4, 4)
    own = half.camera(1)
    assert (own.width, own.fx, own.fy, own.cx, own.cy) == (4, 7.5, 8.0, 1.75, 2.25)
    with pytest.raises(MpgymError, match="downscale"):
        load_split(tmp_path, "train", downscale=0)
    with pytest.raises(MpgymError, match="no pixel"):
        load_split(tmp_path, "train", downscale=16)
    assert torch.isfinite(half.rays()[1]).all()
