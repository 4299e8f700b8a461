import pytest
import torch

from bodies import lbs as L
from bodies._reference import lbs_reference
from bodies.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rot6d,
    quaternion_to_matrix,
    rot6d_to_matrix,
)
from bodies.skeleton import PARENTS

needs_numba = pytest.mark.skipif(L._numba_kernel() is None, reason="needs numba")


def _random_model(V=300, J=24, S=10, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    vt = torch.randn(V, 3, generator=g, dtype=dtype)
    sd = torch.randn(V, 3, S, generator=g, dtype=dtype) * 0.05
    pd = torch.randn(9 * (J - 1), V * 3, generator=g, dtype=dtype) * 0.01
    Jr = torch.rand(J, V, generator=g, dtype=dtype)
    Jr /= Jr.sum(1, keepdim=True)
    W = torch.rand(V, J, generator=g, dtype=dtype) ** 4
    W /= W.sum(1, keepdim=True)
    return vt, sd, pd, Jr, torch.tensor(PARENTS), W


def test_rodrigues_quarter_turn_and_zero():
    R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, torch.pi / 2]))
    torch.testing.assert_close(R @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(axis_angle_to_matrix(torch.zeros(3)), torch.eye(3))


def test_rodrigues_gradient_finite_at_zero():
    r = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    R = axis_angle_to_matrix(r)
    (R * torch.arange(9.0, dtype=torch.float64).reshape(3, 3)).sum().backward()
    assert torch.isfinite(r.grad).all()
    # d/dr of R at 0 is the skew map: sum(M * [r]_x) -> (M21 - M12, M02 - M20, M10 - M01)
    torch.testing.assert_close(
        r.grad, torch.tensor([7.0 - 5.0, 2.0 - 6.0, 3.0 - 1.0], dtype=torch.float64)
    )
    assert torch.autograd.gradcheck(
        axis_angle_to_matrix, (torch.randn(4, 3, dtype=torch.float64, requires_grad=True),)
    )


@pytest.mark.parametrize("batch", [(), (2,), (1, 2)])
def test_rotation_round_trips(batch):
    g = torch.Generator().manual_seed(1)
    r = torch.randn(*batch, 3, generator=g, dtype=torch.float64)
    r = (
        r
        / r.norm(dim=-1, keepdim=True)
        * torch.rand(*batch, 1, generator=g, dtype=torch.float64)
        * 3.0
    )
    R = axis_angle_to_matrix(r)
    torch.testing.assert_close(matrix_to_axis_angle(R), r)
    torch.testing.assert_close(quaternion_to_matrix(matrix_to_quaternion(R)), R)
    torch.testing.assert_close(rot6d_to_matrix(matrix_to_rot6d(R)), R)
    torch.testing.assert_close(
        R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(R)
    )


BACKENDS = ["torch", pytest.param("compiled", marks=needs_numba)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_rest_pose_returns_template(backend):
    vt, sd, pd, Jr, par, W = _random_model()
    v, j = L.lbs(
        torch.zeros(2, 10, dtype=torch.float64),
        torch.zeros(2, 72, dtype=torch.float64),
        vt,
        sd,
        pd,
        Jr,
        par,
        W,
        backend=backend,
    )
    torch.testing.assert_close(v, vt.expand(2, -1, -1))
    torch.testing.assert_close(j, (Jr @ vt).expand(2, -1, -1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_joint_moves_only_its_subtree(backend):
    vt, sd, pd, Jr, par, W = _random_model()
    pose = torch.zeros(1, 72, dtype=torch.float64)
    pose[0, 18 * 3 + 1] = 1.0  # left elbow
    zeros = torch.zeros(1, 10, dtype=torch.float64)
    _, j = L.lbs(zeros, pose, vt, sd, pd, Jr, par, W, backend=backend)
    j0 = Jr @ vt
    moved = (j[0] - j0).norm(dim=-1) > 1e-9
    assert moved.nonzero().flatten().tolist() == [20, 22]  # left wrist and hand


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_fast_equals_reference_and_smplx(dtype, tol, backend):
    smplx_lbs = pytest.importorskip("smplx.lbs").lbs
    vt, sd, pd, Jr, par, W = (x.to(dtype) if x.is_floating_point() else x for x in _random_model())
    g = torch.Generator().manual_seed(3)
    betas = torch.randn(5, 10, generator=g).to(dtype)
    pose = (torch.randn(5, 72, generator=g) * 0.6).to(dtype)
    v, j = L.lbs(betas, pose, vt, sd, pd, Jr, par, W, backend=backend)
    vr, jr = lbs_reference(betas, pose, vt, sd, pd, Jr, par, W)
    vs, js = smplx_lbs(betas, pose, vt, sd, pd, Jr, par, W)
    torch.testing.assert_close(v, vr, atol=tol, rtol=0)
    torch.testing.assert_close(j, jr, atol=tol, rtol=0)
    torch.testing.assert_close(v, vs, atol=max(tol, 1e-7), rtol=0)
    torch.testing.assert_close(j, js, atol=max(tol, 1e-7), rtol=0)


def test_skin_chunking_is_invisible():
    g = torch.Generator().manual_seed(4)
    v = torch.randn(10, 50, 3, generator=g, dtype=torch.float64)
    W = torch.rand(50, 24, generator=g, dtype=torch.float64)
    A = torch.randn(10, 24, 3, 4, generator=g, dtype=torch.float64)
    expect = torch.einsum("vk,bkij,bvj->bvi", W, A[..., :3], v) + torch.einsum(
        "vk,bki->bvi", W, A[..., 3]
    )
    for chunk in (1, 3, 32):
        torch.testing.assert_close(L.skin(v, W, A, chunk=chunk), expect)


def test_lbs_gradcheck_tiny():
    vt, sd, pd, Jr, par, W = _random_model(V=12)
    betas = torch.randn(1, 10, dtype=torch.float64, requires_grad=True)
    pose = (torch.randn(1, 72, dtype=torch.float64) * 0.5).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda b, p: L.lbs(b, p, vt, sd, pd, Jr, par, W)[0], (betas, pose)
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("B,chunk", [(1, 64), (3, 64), (12, 64), (12, 5), (70, 64)])
def test_every_lbs_path_equals_reference(B, chunk, backend):
    """Batch 1 (matrix-vector joints), B < S (regressed joints), one chunk, several chunks
    (fused blend shapes + skinning sub-chunks), with and without the cached joint basis."""
    vt, sd, pd, Jr, par, W = _random_model()
    g = torch.Generator().manual_seed(B)
    betas = torch.randn(B, 10, generator=g, dtype=torch.float64)
    pose = torch.randn(B, 72, generator=g, dtype=torch.float64) * 0.6
    vr, jr = lbs_reference(betas, pose, vt, sd, pd, Jr, par, W)
    basis, jm = L.joint_shape_basis(Jr, vt, sd), L.joint_major_weights(W)
    for jb, jmw in ((None, None), (basis, None), (None, jm), (basis, jm)):
        v, j = L.lbs(
            betas, pose, vt, sd, pd, Jr, par, W, joint_basis=jb, joint_major=jmw, chunk=chunk,
            backend=backend,
        )
        torch.testing.assert_close(v, vr, atol=1e-10, rtol=0)
        torch.testing.assert_close(j, jr, atol=1e-10, rtol=0)


def test_chunked_lbs_gradients_match_single_chunk():
    vt, sd, pd, Jr, par, W = _random_model(V=30)
    g = torch.Generator().manual_seed(5)
    b0 = torch.randn(7, 10, generator=g, dtype=torch.float64)
    p0 = torch.randn(7, 72, generator=g, dtype=torch.float64) * 0.5
    grads = []
    for chunk in (64, 3):
        b, p = b0.clone().requires_grad_(), p0.clone().requires_grad_()
        v, j = L.lbs(b, p, vt, sd, pd, Jr, par, W, chunk=chunk)
        (v.pow(2).sum() + j.sum()).backward()
        grads.append((b.grad, p.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


def test_auto_backend_keeps_gradients_and_compiles_without_them():
    vt, sd, pd, Jr, par, W = _random_model(V=40)
    betas = torch.randn(3, 10, dtype=torch.float64, requires_grad=True)
    pose = torch.randn(3, 72, dtype=torch.float64) * 0.5
    v, _ = L.lbs(betas, pose, vt, sd, pd, Jr, par, W)
    assert v.requires_grad  # a gradient is needed: the torch path served
    with torch.no_grad():
        v2, _ = L.lbs(betas, pose, vt, sd, pd, Jr, par, W)
    torch.testing.assert_close(v2, v.detach(), atol=1e-12, rtol=0)
    if L._numba_kernel() is not None:
        with pytest.raises(ValueError, match="backend 'compiled' needs"):
            L.lbs(betas, pose, vt, sd, pd, Jr, par, W, backend="compiled")
    with pytest.raises(ValueError, match="unknown backend"):
        L.lbs(betas, pose, vt, sd, pd, Jr, par, W, backend="cuda")


@needs_numba
def test_compiled_rejects_a_parent_after_its_child():
    vt, sd, pd, Jr, par, W = _random_model(V=20)
    bad = par.clone()
    bad[1] = 5
    z = torch.zeros(1, 10, dtype=torch.float64)
    with pytest.raises(ValueError, match="after its parent"):
        L.lbs(
            z, torch.zeros(1, 72, dtype=torch.float64), vt, sd, pd, Jr, bad, W, backend="compiled"
        )


@needs_numba
def test_compiled_keeps_no_hidden_state_between_calls():
    """Weights edited in place are seen by the next call (no module-level cache to go stale);
    the joint-major copy a caller passes is what the kernel reads."""
    vt, sd, pd, Jr, par, W = _random_model(V=30)
    betas = torch.zeros(2, 10, dtype=torch.float64)
    pose = torch.randn(2, 72, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    args = (betas, pose, vt, sd, pd, Jr, par)
    v_old, _ = L.lbs(*args, W, backend="compiled")
    jm_old = L.joint_major_weights(W)
    W[:, 0] += 1.0
    W /= W.sum(1, keepdim=True)
    v, _ = L.lbs(*args, W, backend="compiled")
    vr, _ = lbs_reference(*args, W)
    torch.testing.assert_close(v, vr, atol=1e-10, rtol=0)
    v, _ = L.lbs(*args, W, backend="compiled", joint_major=jm_old)  # the caller's copy rules
    torch.testing.assert_close(v, v_old, atol=1e-10, rtol=0)


def test_body_model_owns_its_joint_major_weights(model_path):
    from bodies.model import BodyModel

    model = BodyModel(model_path, dtype=torch.float64)
    assert model.lbs_weights_jm.shape == model.lbs_weights.t().shape
    assert model.lbs_weights_jm.is_contiguous()
    assert "lbs_weights_jm" not in model.state_dict()  # derived, not saved
    pose = 0.3 * torch.randn(3, 69, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(body_pose=pose)
        full = torch.cat([torch.zeros(3, 3, dtype=torch.float64), pose], 1)
        v, _ = L.lbs(
            torch.zeros(3, 10, dtype=torch.float64), full, model.v_template, model.shapedirs,
            model.posedirs, model.J_regressor, model.parents, model.lbs_weights,
        )
    torch.testing.assert_close(out.vertices, v, atol=1e-12, rtol=0)


@needs_numba
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_compiled_is_independent_of_thread_count(threads):
    vt, sd, pd, Jr, par, W = _random_model(V=50)
    g = torch.Generator().manual_seed(8)
    betas = torch.randn(37, 10, generator=g, dtype=torch.float64)
    pose = torch.randn(37, 72, generator=g, dtype=torch.float64) * 0.5
    vr, jr = lbs_reference(betas, pose, vt, sd, pd, Jr, par, W)
    have = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        v, j = L.lbs(betas, pose, vt, sd, pd, Jr, par, W, backend="compiled", chunk=4)
    finally:
        torch.set_num_threads(have)
    torch.testing.assert_close(v, vr, atol=1e-10, rtol=0)
    torch.testing.assert_close(j, jr, atol=1e-10, rtol=0)
