import numpy as np
import pytest
import torch

from bodies.fit import Camera
from bodies.learned import LearnedConfig, LearnedFitter, train
from bodies.metrics import pa_mpjpe
from bodies.rotations import axis_angle_to_matrix
from mpgym.errors import MpgymError

TINY = LearnedConfig(steps=2, hidden=128, layers=2, iterations=60, batch=32, seed=0)


@pytest.fixture(scope="module")
def model32(model_path):
    from bodies.model import BodyModel

    return BodyModel(model_path)


@pytest.fixture(scope="module")
def held_out(model32):
    """Eight bodies in held-out clip poses, their 2D keypoints (2 px noise) and the camera."""
    from bodies.motion import clip_poses

    g = torch.Generator().manual_seed(0)
    te = clip_poses("test", mirror=False).reshape(-1, 69)
    pose = torch.as_tensor(te[:: len(te) // 8][:8], dtype=torch.float32)
    go = torch.zeros(8, 3)
    go[:, 1] = torch.linspace(-0.5, 0.5, 8)
    with torch.no_grad():
        gt = model32(torch.randn(8, 10, generator=g), pose, go)
    cam = Camera(1000.0, (500.0, 500.0), t=np.array([0.0, -0.3, 4.0]))
    kp = cam.project(gt.joints) + 2.0 * torch.randn(8, 24, 2, generator=g)
    return gt, kp, cam


@pytest.fixture(scope="module")
def tiny_fitter(model32):
    torch.set_num_threads(1)
    return train(model32, TINY)


def test_learns_on_a_small_budget(model32, held_out, tiny_fitter):
    gt, kp, cam = held_out
    untrained = train(model32, LearnedConfig(**{**TINY.__dict__, "iterations": 0}))
    before = pa_mpjpe(untrained.fit(model32, kp, cam).joints, gt.joints).mean()
    r = tiny_fitter.fit(model32, kp, cam)
    after = pa_mpjpe(r.joints, gt.joints).mean()
    assert after < 0.75 * before, (float(before), float(after))  # measured: 206 -> 98 mm
    assert len(r.losses) == TINY.steps and r.losses[-1] < r.losses[0]  # reprojection px falls


def test_checkpoint_round_trip(model32, held_out, tiny_fitter, tmp_path):
    gt, kp, cam = held_out
    path = tiny_fitter.save(tmp_path / "fitter.safetensors")
    loaded = LearnedFitter.load(path)
    assert loaded.config == TINY
    torch.testing.assert_close(
        loaded.fit(model32, kp, cam).joints, tiny_fitter.fit(model32, kp, cam).joints
    )


def test_world_result_follows_the_camera(model32, held_out, tiny_fitter):
    """The same image seen by a camera whose world is rotated by Q gives the rotated body."""
    _, kp, cam = held_out
    Q = axis_angle_to_matrix(torch.tensor([0.2, -0.4, 0.1], dtype=torch.float64)).numpy()
    cam2 = Camera(cam.focal, cam.center, R=cam.R @ Q, t=cam.t)  # R2 x2 + t = R x1 + t
    j1 = tiny_fitter.fit(model32, kp, cam).joints
    j2 = tiny_fitter.fit(model32, kp, cam2).joints
    torch.testing.assert_close(j2, j1 @ torch.as_tensor(Q, dtype=j1.dtype), atol=1e-4, rtol=0)


def test_wrong_model_is_an_error(model32, held_out, tiny_fitter):
    from bodies.model import BodyModel

    _, kp, cam = held_out
    with pytest.raises(MpgymError, match="regresses 10 betas"):
        tiny_fitter.fit(BodyModel(model32.path, num_betas=5), kp, cam)


def test_missing_keypoints_are_ignored(model32, held_out, tiny_fitter):
    gt, kp, cam = held_out
    kp = kp.clone()
    kp[0, [20, 22]] = float("nan")
    r = tiny_fitter.fit(model32, kp, cam)
    assert torch.isfinite(r.vertices).all()
    assert pa_mpjpe(r.joints, gt.joints)[0] < 200.0
    with pytest.raises(MpgymError, match="at least 4"):
        tiny_fitter.fit(model32, torch.full((24, 2), float("nan")), cam)
