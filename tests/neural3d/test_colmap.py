"""COLMAP models: readers and writers (text, binary), captures as datasets, undistortion."""

import io
import math
import shutil
import struct

import numpy as np
import pytest
from PIL import Image

from mpgym.errors import MpgymError
from mpgym.fuzz import fuzz_cases, fuzz_loader
from neural3d.cameras import look_at
from neural3d.data.colmap import (
    ColmapCamera,
    ColmapImage,
    ColmapModel,
    ColmapPoint3D,
    SceneNormalization,
    colmap_points,
    distort,
    load_colmap,
    normalization_transform,
    qvec_to_rotmat,
    read_model,
    rotmat_to_qvec,
    undistort_points,
    write_colmap_from_multiview,
    write_model,
)
from neural3d.data.multiview import (
    RenderDatasetConfig,
    check_scene_visible,
    load_split,
    render_dataset,
)

VIEWS = 9  # sorted views 0 and 8 are the test split, 1..7 the train split
TRAIN, TEST = [i for i in range(VIEWS) if i % 8], [0, 8]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A tiny rendered tabletop (9 views, 32x32) with 60 coloured points in [-1, 1]^3."""
    out = tmp_path_factory.mktemp("render") / "tabletop"
    render_dataset(RenderDatasetConfig(out=out, views=VIEWS, val_views=0, test_views=0,
                                       resolution=32, seed=3))
    data = load_split(out, "train")
    rng = np.random.default_rng(0)
    data.points = rng.uniform(-1, 1, (60, 3)).astype(np.float32)
    data.point_colors = (rng.integers(0, 256, (60, 3)) / 255).astype(np.float32)
    return data


@pytest.fixture(scope="module", params=[".bin", ".txt"])
def capture(request, rendered, tmp_path_factory):
    root = tmp_path_factory.mktemp("capture") / f"cap{request.param.replace('.', '_')}"
    write_colmap_from_multiview(rendered, root, ext=request.param)
    return root, request.param


def _hand_model() -> ColmapModel:
    """Two cameras, three images with 2D points (some unmatched), four points with tracks."""
    rng = np.random.default_rng(1)
    m = ColmapModel()
    m.cameras[3] = ColmapCamera(3, "PINHOLE", 40, 30, np.array([35.5, 36.25, 20.0, 15.125]))
    m.cameras[7] = ColmapCamera(7, "OPENCV", 40, 30,
                                np.array([30.0, 31.0, 19.5, 15.5, -0.1, 0.01, 1e-3, -2e-3]))
    for iid, cid in ((1, 3), (5, 7), (9, 3)):
        q = rng.normal(size=4)
        ids = rng.integers(-1, 4, 5)
        m.images[iid] = ColmapImage(iid, q / np.linalg.norm(q), rng.normal(size=3), cid,
                                    f"sub/img_{iid}.png", rng.uniform(0, 30, (5, 2)), ids)
    for pid in (0, 1, 2, 2**40):
        m.points3D[pid] = ColmapPoint3D(pid, rng.normal(size=3),
                                        rng.integers(0, 256, 3).astype(np.uint8), 0.25 * pid % 3,
                                        np.array([1, 5, 9]), rng.integers(0, 5, 3))
    return m


def _assert_models_equal(a: ColmapModel, b: ColmapModel) -> None:
    assert list(a.cameras) == list(b.cameras) and list(a.images) == list(b.images)
    assert list(a.points3D) == list(b.points3D)
    for k, c in a.cameras.items():
        d = b.cameras[k]
        assert (c.id, c.model, c.width, c.height) == (d.id, d.model, d.width, d.height)
        np.testing.assert_array_equal(c.params, d.params)
    for k, im in a.images.items():
        jm = b.images[k]
        assert (im.id, im.camera_id, im.name) == (jm.id, jm.camera_id, jm.name)
        for f in ("qvec", "tvec", "points2D", "point3D_ids"):
            np.testing.assert_array_equal(getattr(im, f), getattr(jm, f))
    for k, p in a.points3D.items():
        q = b.points3D[k]
        assert p.id == q.id and p.error == q.error
        for f in ("xyz", "rgb", "image_ids", "point2D_idxs"):
            np.testing.assert_array_equal(getattr(p, f), getattr(q, f))


# ----------------------------------------------------------------------------- formats


def test_quaternion_round_trip_and_convention():
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.normal(size=4)
        q = q / np.linalg.norm(q) * (1 if q[0] >= 0 else -1)
        r = qvec_to_rotmat(q)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(rotmat_to_qvec(r), q, atol=1e-12)
    # 90 degrees about z: (w, x, y, z) = (cos 45, 0, 0, sin 45) maps x to y
    r = qvec_to_rotmat(np.array([math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)]))
    np.testing.assert_allclose(r @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_written_model_reads_back(capture, rendered):
    root, ext = capture
    assert sorted(p.name for p in (root / "sparse" / "0").iterdir()) == sorted(
        f"{f}{ext}" for f in ("cameras", "images", "points3D"))
    m = read_model(root / "sparse" / "0")
    intr = rendered.intrinsics
    (cam,) = m.cameras.values()
    assert (cam.model, cam.width, cam.height) == ("PINHOLE", 32, 32)
    np.testing.assert_allclose(cam.params, [intr.fx, intr.fy, intr.cx, intr.cy], rtol=1e-12)
    c2w = np.stack([m.images[k].c2w() for k in sorted(m.images)])
    np.testing.assert_allclose(c2w, rendered.c2w, atol=1e-5)
    xyz, rgb = m.points()
    np.testing.assert_array_equal(xyz, rendered.points.astype(np.float64))
    np.testing.assert_array_equal(rgb, np.round(rendered.point_colors * 255))


def test_txt_bin_txt_round_trip_is_exact(tmp_path):
    model = _hand_model()
    write_model(model, tmp_path / "t1", ".txt")
    a = read_model(tmp_path / "t1")
    _assert_models_equal(model, a)
    write_model(a, tmp_path / "b", ".bin")
    b = read_model(tmp_path / "b")
    _assert_models_equal(model, b)
    write_model(b, tmp_path / "t2", ".txt")
    for f in ("cameras", "images", "points3D"):
        assert (tmp_path / "t1" / f"{f}.txt").read_bytes() == (
            tmp_path / "t2" / f"{f}.txt").read_bytes()
    # an image line with no 2D points leaves an empty second line, which must still pair up
    model.images[1].points2D, model.images[1].point3D_ids = np.zeros((0, 2)), np.zeros(0, int)
    write_model(model, tmp_path / "t3", ".txt")
    _assert_models_equal(model, read_model(tmp_path / "t3"))


def test_binary_layout_matches_colmap(tmp_path):
    """Byte layout of a one-camera, one-image, one-point model, packed by hand."""
    m = ColmapModel()
    m.cameras[2] = ColmapCamera(2, "SIMPLE_RADIAL", 64, 48, np.array([50.0, 32.0, 24.0, 0.01]))
    m.images[4] = ColmapImage(4, np.array([1.0, 0, 0, 0]), np.array([0.5, 0, 2]), 2, "a.jpg",
                              np.array([[1.5, 2.5]]), np.array([-1]))
    m.points3D[6] = ColmapPoint3D(6, np.array([1.0, 2, 3]), np.array([10, 20, 30], np.uint8),
                                  0.5, np.array([4]), np.array([0]))
    write_model(m, tmp_path, ".bin")
    assert (tmp_path / "cameras.bin").read_bytes() == struct.pack(
        "<QIiQQ4d", 1, 2, 2, 64, 48, 50.0, 32.0, 24.0, 0.01)
    assert (tmp_path / "images.bin").read_bytes() == struct.pack(
        "<QI7dI", 1, 4, 1, 0, 0, 0, 0.5, 0, 2, 2) + b"a.jpg\0" + struct.pack("<Qddq", 1, 1.5, 2.5,
                                                                           -1)
    assert (tmp_path / "points3D.bin").read_bytes() == struct.pack(
        "<Q Q3d3Bd Q II", 1, 6, 1, 2, 3, 10, 20, 30, 0.5, 1, 4, 0)


# ----------------------------------------------------------------------------- bad models


def _write_text(folder, cameras="1 PINHOLE 8 8 9 9 4 4\n",
                images="1 1 0 0 0 0 0 4 1 a.png\n\n", points=""):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cameras.txt").write_text(cameras)
    (folder / "images.txt").write_text(images)
    (folder / "points3D.txt").write_text(points)
    return folder


@pytest.mark.parametrize("kw, match", [
    ({"cameras": "1 FANCY 8 8 9 9 4 4\n"}, "unknown model 'FANCY'; accepted: SIMPLE_PINHOLE"),
    ({"cameras": "1 PINHOLE 8 8 9 9 4\n"}, "has 3 parameters; that model has 4"),
    ({"cameras": "1 PINHOLE 8 8 9 nan 4 4\n"}, "NaN or infinity"),
    ({"cameras": "1 PINHOLE 0 8 9 9 4 4\n"}, "is 0x8; accepted sides"),
    ({"images": "1 0 0 0 0 0 0 4 1 a.png\n\n"}, "not a finite non-zero rotation"),
    ({"images": "1 1 0 0 0 0 0 4 2 a.png\n\n"}, "refers to camera 2, which is not in"),
    ({"images": "1 1 0 0 0 0 0 4 1 a.png\n1.0 2.0\n"}, "expected \\(X Y POINT3D_ID\\) triples"),
    ({"images": "1 1 0 0 0 0 0 4 1\n\n"}, "expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME"),
    ({"points": "1 0 0 0 300 0 0 0.5\n"}, "colour \\[300, 0, 0\\] out of range"),
    ({"points": "1 0 0 inf 3 0 0 0.5\n"}, "NaN or infinity"),
    ({"points": "1 0 0 0 3 0 0 0.5 1\n"}, "pairs"),
])
def test_bad_text_models_are_refused(tmp_path, kw, match):
    folder = _write_text(tmp_path / "m", **kw)
    with pytest.raises(MpgymError, match=match):
        read_model(folder)


def test_bad_binary_models_are_refused_before_allocating(tmp_path):
    write_model(_hand_model(), tmp_path / "ok", ".bin")
    good = {f: (tmp_path / "ok" / f"{f}.bin").read_bytes() for f in ("cameras", "images",
                                                                     "points3D")}

    def refused(name: str, data: bytes, match: str) -> None:
        folder = tmp_path / "bad"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for f, d in good.items():
            (folder / f"{f}.bin").write_bytes(data if f == name else d)
        with pytest.raises(MpgymError, match=match):
            read_model(folder)

    huge = struct.pack("<Q", 2**62)
    for name, d in good.items():
        refused(name, huge + d[8:], "remain; the file is truncated")  # count: no allocation
        for cut in (0, 5, len(d) // 2, len(d) - 1):
            refused(name, d[:cut], "truncated|no terminating NUL")
        refused(name, d + b"\0", "bytes follow the last record")
    cams = bytearray(good["cameras"])
    cams[12:16] = struct.pack("<i", 99)  # model id of the first camera
    refused("cameras", bytes(cams), "unknown model id 99; accepted: 0 \\(SIMPLE_PINHOLE\\)")
    imgs = bytearray(good["images"])
    imgs[12:44] = struct.pack("<4d", 0, 0, 0, 0)  # the first quaternion
    refused("images", bytes(imgs), "not a finite non-zero rotation")
    imgs = bytearray(good["images"])
    imgs[68:72] = struct.pack("<I", 1234)  # the first image's camera id
    refused("images", bytes(imgs), "refers to camera 1234")
    imgs = bytearray(good["images"])
    imgs[12:20] = struct.pack("<d", float("nan"))
    refused("images", bytes(imgs), "not a finite non-zero rotation")


def test_write_refuses_a_bad_model_without_writing(tmp_path):
    m = _hand_model()
    m.images[5].camera_id = 42
    with pytest.raises(MpgymError, match="refers to camera 42"):
        write_model(m, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    m = _hand_model()
    m.images[5].name = "with space.png"
    with pytest.raises(MpgymError, match="white space"):
        write_model(m, tmp_path / "out", ".txt")
    write_model(m, tmp_path / "out", ".bin")  # binary names may hold spaces
    assert read_model(tmp_path / "out").images[5].name == "with space.png"


# ----------------------------------------------------------------------------- datasets


def test_load_split_on_a_capture_matches_the_original(capture, rendered):
    root, _ = capture
    train, test = load_split(root, "train"), load_split(root, "test")
    t = train.world_transform
    np.testing.assert_array_equal(t, test.world_transform)
    # cameras look exactly at the origin, 4 away: the focus is the origin and the scale 1
    s = np.cbrt(np.linalg.det(t[:3, :3]))
    assert s == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(t[:3, 3], 0, atol=1e-5)
    np.testing.assert_allclose(t[:3, :3] @ t[:3, :3].T, np.eye(3), atol=1e-5)
    r = t[:3, :3] / s
    for data, idx in ((train, TRAIN), (test, TEST)):
        assert len(data) == len(idx) and data.intrinsics == rendered.intrinsics
        np.testing.assert_array_equal(data.images, rendered.images[idx])
        orig = rendered.c2w[idx].astype(np.float64)
        np.testing.assert_allclose(data.c2w[:, :3, :3], r @ orig[:, :3, :3], atol=1e-5)
        np.testing.assert_allclose(data.c2w[:, :3, 3], orig[:, :3, 3] @ t[:3, :3].T + t[:3, 3],
                                   atol=1e-5)
    pts = rendered.points.astype(np.float64) @ t[:3, :3].T + t[:3, 3]
    np.testing.assert_allclose(train.points, pts, atol=1e-5)
    np.testing.assert_allclose(train.point_colors, np.round(rendered.point_colors * 255) / 255,
                               atol=1e-7)
    xyz, rgb = colmap_points(root)
    np.testing.assert_allclose(xyz, train.points, atol=1e-6)
    np.testing.assert_allclose(rgb, train.point_colors, atol=1e-7)
    assert 1.0 < train.scene_box <= 1.1 * math.sqrt(3)  # 97% quantile of points in [-1, 1]^3
    box = train.scene_box
    check_scene_visible(train, np.array([-box, -box, -box, box, box, box]))
    half = load_split(root, "train", downscale=2, max_views=3)
    assert half.images.shape == (3, 16, 16, 4)
    assert half.intrinsics.fx == pytest.approx(rendered.intrinsics.fx / 2)


def test_normalization_centres_scales_and_orients():
    # a half orbit at 30 degrees elevation around (1, 2, 3), radius 10, world z up
    phi = np.linspace(0, np.pi, 12)
    e, centre = math.radians(30), np.array([1.0, 2.0, 3.0])
    eyes = centre + 10 * np.stack([np.cos(e) * np.cos(phi), np.cos(e) * np.sin(phi),
                                   np.full_like(phi, np.sin(e))], -1)
    c2w = np.stack([look_at(p, centre) for p in eyes])
    t = normalization_transform(c2w, SceneNormalization())
    np.testing.assert_allclose(t[:3, :3], 0.4 * np.eye(3), atol=1e-9)  # 4 / 10, z already up
    np.testing.assert_allclose(t[:3, :3] @ centre + t[:3, 3], 0, atol=1e-9)
    t = normalization_transform(c2w, SceneNormalization(center="poses", radius=None))
    np.testing.assert_allclose(t[:3, 3], -eyes.mean(0), atol=1e-9)
    t = normalization_transform(c2w, SceneNormalization("none", "none", None))
    np.testing.assert_array_equal(t, np.eye(4))


def _with_camera(root, tmp_path, camera: ColmapCamera):
    """A copy of the capture ``root`` whose single camera is replaced by ``camera``."""
    out = tmp_path / "cap"
    shutil.copytree(root, out)
    m = read_model(out / "sparse" / "0")
    m.cameras = {camera.id: camera}
    for im in m.images.values():
        im.camera_id = camera.id
    write_model(m, out / "sparse" / "0", ".txt")
    for f in (out / "sparse" / "0").glob("*.bin"):
        f.unlink()
    return out


def test_simple_pinhole_is_read(capture, rendered, tmp_path):
    intr = rendered.intrinsics
    root = _with_camera(capture[0], tmp_path, ColmapCamera(1, "SIMPLE_PINHOLE", 32, 32,
                                                           np.array([30.0, 15.5, 16.5])))
    data = load_split(root, "test")
    assert (data.intrinsics.fx, data.intrinsics.fy, data.intrinsics.cx, data.intrinsics.cy) == (
        30.0, 30.0, 15.5, 16.5)
    np.testing.assert_array_equal(data.images, rendered.images[TEST])
    assert intr.width == data.intrinsics.width


@pytest.mark.parametrize("model, n", [("FULL_OPENCV", 12), ("OPENCV_FISHEYE", 8), ("FOV", 5)])
def test_unsupported_camera_model_is_refused(capture, tmp_path, model, n):
    params = np.r_[20.0, 20.0, 16.0, 16.0, np.zeros(n - 4)]
    root = _with_camera(capture[0], tmp_path, ColmapCamera(1, model, 32, 32, params))
    with pytest.raises(MpgymError, match=f"uses the {model} model; supported: SIMPLE_PINHOLE, "
                                         "PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV"):
        load_split(root, "train")


def test_an_unused_unsupported_camera_is_ignored(capture, tmp_path):
    root = tmp_path / "cap"
    shutil.copytree(capture[0], root)
    m = read_model(root / "sparse" / "0")
    m.cameras[9] = ColmapCamera(9, "OPENCV_FISHEYE", 32, 32, np.r_[20.0, 20, 16, 16, 0, 0, 0, 0])
    write_model(m, root / "sparse" / "0", capture[1])
    assert len(load_split(root, "test")) == 2


def test_missing_image_is_refused(capture, tmp_path):
    root = tmp_path / "cap"
    shutil.copytree(capture[0], root)
    (root / "images" / "frame_00003.png").unlink()
    with pytest.raises(MpgymError, match="lacks 1 of the 9 images .*'frame_00003.png'"):
        load_split(root, "test")  # refused for either split: the capture is incomplete
    shutil.rmtree(root / "images")
    with pytest.raises(MpgymError, match="lacks 9 of the 9 images"):
        load_split(root, "train")


# ----------------------------------------------------------------------------- distortion


K_OPENCV = np.array([-0.25, 0.06, 0.004, -0.003])


def test_distortion_inverse_and_example():
    xd, yd = distort(np.array([0.5]), np.array([0.0]), np.array([0.1, 0, 0, 0]))
    assert (xd[0], yd[0]) == pytest.approx((0.5 * (1 + 0.1 * 0.25), 0.0))
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-0.8, 0.8, (2, 500))
    xd, yd = distort(x, y, K_OPENCV)
    xu, yu = undistort_points(xd, yd, K_OPENCV)
    np.testing.assert_allclose(np.stack([xu, yu]), np.stack([x, y]), atol=1e-9)
    with pytest.raises(MpgymError, match="cannot be inverted"):  # folds back beyond r ~ 0.8
        undistort_points(np.array([1.5]), np.array([0.0]), np.array([-0.5, 0, 0, 0]))


def _pattern(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth checkerboard (and a ramp) in normalised undistorted image coordinates."""
    check = 0.5 + 0.4 * np.tanh(2 * np.sin(12 * x) * np.sin(12 * y))
    return np.stack([check, 0.5 + 0.5 * np.tanh(x), np.full_like(x, 0.3)], -1)


def test_opencv_capture_is_undistorted_to_a_pinhole(tmp_path):
    w, h, fx, fy, cx, cy = 64, 48, 50.0, 52.0, 31.0, 25.0
    # the distorted photo: pixel centres lifted through the inverse distortion to the pattern
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    xu, yu = undistort_points((u - cx) / fx, (v - cy) / fy, K_OPENCV)
    photo = np.concatenate([_pattern(xu, yu), np.ones((h, w, 1))], -1)
    root = tmp_path / "cap"
    m = ColmapModel({1: ColmapCamera(1, "OPENCV", w, h, np.r_[fx, fy, cx, cy, K_OPENCV])})
    for i in (1, 2):
        pose = look_at(np.array([4.0 * math.cos(i), 4.0 * math.sin(i), 1.0]))
        r = (pose[:3, :3] * [1, -1, -1]).T  # OpenGL -> OpenCV, world -> camera
        m.images[i] = ColmapImage(i, rotmat_to_qvec(r), -r @ pose[:3, 3], 1, f"v{i}.png")
        buf = io.BytesIO()
        Image.fromarray((photo * 255).round().astype(np.uint8), "RGBA").save(buf, format="PNG")
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / f"v{i}.png").write_bytes(buf.getvalue())
    write_model(m, root / "sparse", ".bin")  # DIR/sparse/ directly, without 0/
    data = load_split(root, "train")
    intr = data.intrinsics
    assert (intr.width, intr.height, intr.cx, intr.cy) == (w, h, cx, cy)
    assert intr.fx / fx == pytest.approx(intr.fy / fy)  # one zoom factor
    # every output pixel samples inside the photo (no blank border)
    corners_x = (np.array([0, w, 0, w]) - cx) / intr.fx
    corners_y = (np.array([0, 0, h, h]) - cy) / intr.fy
    px, py = distort(corners_x, corners_y, K_OPENCV)
    assert (fx * px + cx >= -1e-6).all() and (fx * px + cx <= w + 1e-6).all()
    assert (fy * py + cy >= -1e-6).all() and (fy * py + cy <= h + 1e-6).all()
    # the undistorted image is the pattern seen by the pinhole camera `intr`
    x, y = (u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy
    expected = _pattern(x, y)
    err = np.abs(data.images[0, ..., :3] - expected)
    assert err.mean() < 0.005 and err.max() < 0.04  # bilinear resampling of a smooth pattern
    naive = np.abs(photo[..., :3] - expected).mean()  # the photo taken as a pinhole image
    assert naive > 5 * err.mean()
    np.testing.assert_array_equal(data.images[0, ..., 3], 1.0)


# ----------------------------------------------------------------------------- fuzzing


def _png(value: int) -> bytes:
    img = np.zeros((8, 8, 4), np.uint8)
    img[..., 0], img[..., 1], img[..., 3] = value, np.arange(8)[:, None] * 30, 255
    buf = io.BytesIO()
    Image.fromarray(img, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


def _capture_seed(ext: str, tmp_path) -> dict[str, bytes]:
    """Three 8x8 views (one PINHOLE, two OPENCV camera) with points and tracks."""
    m = ColmapModel()
    m.cameras[1] = ColmapCamera(1, "PINHOLE", 8, 8, np.array([9.0, 9.0, 4.0, 4.0]))
    m.cameras[2] = ColmapCamera(2, "OPENCV", 8, 8,
                                np.array([9.0, 9.5, 4.0, 4.0, -0.05, 0.01, 0.001, 0.0]))
    for k in range(3):
        pose = look_at(np.array([4 * math.cos(2.0 * k), 4 * math.sin(2.0 * k), 1.0]))
        r = (pose[:3, :3] * [1, -1, -1]).T
        m.images[k + 1] = ColmapImage(k + 1, rotmat_to_qvec(r), -r @ pose[:3, 3], 1 + (k > 0),
                                      f"f{k}.png", np.array([[1.0, 2.0], [3.5, 4.5]]),
                                      np.array([k, -1]))
        m.points3D[k] = ColmapPoint3D(k, np.array([0.1 * k, -0.2, 0.3]),
                                      np.array([10, 20 * k, 30], np.uint8), 0.5,
                                      np.array([k + 1]), np.array([0]))
    write_model(m, tmp_path / "sparse" / "0", ext)
    seeds = {f"sparse/0/{f}{ext}": (tmp_path / "sparse" / "0" / f"{f}{ext}").read_bytes()
             for f in ("cameras", "images", "points3D")}
    seeds.update({f"images/f{k}.png": _png(40 * k) for k in range(3)})
    return seeds


@pytest.mark.parametrize("ext, cases", [(".bin", 200), (".txt", 120)])
def test_fuzz_colmap_capture(tmp_path, ext, cases):
    from neural3d.data.colmap import _fuzz_load

    seeds = _capture_seed(ext, tmp_path / "seed")
    root = tmp_path / "valid"
    for name, data in seeds.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    _fuzz_load(str(root))  # the seed itself loads
    assert len(load_colmap(root, "test")) == 1
    report = fuzz_loader("neural3d.data.colmap:_fuzz_load", seeds, cases=fuzz_cases(cases),
                         entry=".", mutable=tuple(k for k in seeds if k.startswith("sparse")))
    report.assert_ok()
    assert report.refused > 0 and report.ok > 0
