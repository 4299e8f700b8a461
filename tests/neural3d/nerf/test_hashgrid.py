import itertools

import pytest
import torch

from neural3d.nerf._reference import hash_encode_reference
from neural3d.nerf.hashgrid import hash_encode, level_layout

BACKENDS = ["torch", "numba"]
LAYOUT = level_layout(4, 10, 4, 24)  # 2 dense levels (5^3, 8^3 <= 1024), 2 hashed


def _table(layout, F=2, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(layout.total_rows, F, generator=g, dtype=dtype)


def test_layout_matches_paper_growth():
    lay = level_layout(16, 19, 16, 2048)
    assert lay.resolutions[0] == 16 and lay.resolutions[-1] == 2048
    assert lay.growth_factor == pytest.approx((2048 / 16) ** (1 / 15), rel=1e-3)
    assert lay.num_dense == sum((n + 1) ** 3 <= 2**19 for n in lay.resolutions)
    assert level_layout(2, 10, 4, 16).offsets == (0, 125, 1149)
    assert LAYOUT.num_dense == 2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("F", [1, 2, 4])
def test_fast_path_matches_reference_float64(backend, F):
    x = torch.rand(300, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x[:5] = torch.tensor([[0.0, 0, 0], [1, 1, 1], [1, 0, 0.5], [0.25, 0.5, 0.75], [-0.1, 1.2, 0.5]])
    t1 = _table(LAYOUT, F).requires_grad_()
    t2 = t1.detach().clone().requires_grad_()
    a = hash_encode(x, t1, LAYOUT, backend=backend)
    b = hash_encode_reference(x, t2, LAYOUT)
    torch.testing.assert_close(a, b)
    g = torch.randn_like(a)
    a.backward(g)
    b.backward(g)
    torch.testing.assert_close(t1.grad, t2.grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_path_float32_paper_layout(backend):
    lay = level_layout(16, 19, 16, 2048)
    x = torch.rand(2000, 3, generator=torch.Generator().manual_seed(2))
    t = _table(lay, dtype=torch.float32) * 1e-2
    a = hash_encode(x, t, lay, backend=backend)
    b = hash_encode_reference(x, t, lay)
    # fine levels put x * 2048 in float32: positions agree to ~1e-4 cells
    torch.testing.assert_close(a, b, atol=5e-5, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    lay = level_layout(2, 6, 2, 6)  # 27 dense rows + 64 hashed rows: a small Jacobian
    assert lay.num_dense == 1
    x = torch.rand(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    t = _table(lay).requires_grad_()
    assert torch.autograd.gradcheck(lambda tab: hash_encode(x, tab, lay, backend=backend), (t,))


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_at_grid_corners(backend):
    t = _table(LAYOUT)
    for level, n in enumerate(LAYOUT.resolutions):
        ijk = torch.tensor(list(itertools.product([0, 1, n - 1, n], repeat=3)), dtype=torch.long)
        x = ijk.double() / n
        out = hash_encode(x, t, LAYOUT, backend=backend)[:, 2 * level : 2 * level + 2]
        i, j, k = ijk.unbind(-1)
        if level < LAYOUT.num_dense:
            row = i + j * (n + 1) + k * (n + 1) ** 2
        else:
            row = (i ^ (j * 2654435761) ^ (k * 805459861)) % 2**LAYOUT.log2_table_size
        torch.testing.assert_close(out, t[LAYOUT.offsets[level] + row])


@pytest.mark.parametrize("backend", BACKENDS)
def test_continuous_across_cells(backend):
    t = _table(LAYOUT)
    n = LAYOUT.resolutions[-1]
    g = torch.Generator().manual_seed(4)
    x = torch.rand(200, 3, dtype=torch.float64, generator=g)
    x[:, 0] = (torch.randint(1, n, (200,), generator=g).double()) / n  # on a cell face
    for eps in (1e-6, 1e-9):
        lo = hash_encode(x - torch.tensor([eps, 0, 0]), t, LAYOUT, backend=backend)
        hi = hash_encode(x + torch.tensor([eps, 0, 0]), t, LAYOUT, backend=backend)
        # Lipschitz: |d out| <= |table| * 2 * eps * n per level
        assert (hi - lo).abs().max() < 10 * eps * n * t.abs().max()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path_matches_cpu_reference():
    x = torch.rand(500, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    t = _table(LAYOUT).requires_grad_()
    tc = t.detach().cuda().requires_grad_()
    a = hash_encode(x.cuda(), tc, LAYOUT)  # auto picks the torch backend on CUDA
    b = hash_encode_reference(x, t, LAYOUT)
    torch.testing.assert_close(a.cpu(), b)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(tc.grad.cpu(), t.grad)


@pytest.mark.parametrize("F", [1, 2, 3])
def test_numba_blocks_threads_and_level_order_do_not_change_results(F):
    """The kernel's work split (point blocks, threads, the backward's level deal) is invisible.

    Calls the kernels directly (``F = 2`` goes through the complex-pair kernels): 37 points (not
    a multiple of the block), one and three threads, levels dealt in two different orders, and
    buffers full of NaN (the kernels must overwrite every value, not accumulate into it) unless
    told the gradient buffer is zero already.
    """
    pytest.importorskip("numba")
    import numpy as np

    from neural3d.nerf import _hashgrid_numba as k
    from neural3d.nerf.hashgrid import _flat, _layout_arrays, _level_order

    x = torch.rand(37, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    t = _table(LAYOUT, F)
    t_ref = t.clone().requires_grad_()
    ref = hash_encode_reference(x, t_ref, LAYOUT)
    g = torch.randn_like(ref)
    ref.backward(g)
    lay = _layout_arrays(LAYOUT, np.float64)
    orders = [_level_order(LAYOUT), np.arange(LAYOUT.num_levels)[::-1].copy()]
    cases = [(1, 16, orders[0], False), (3, 16, orders[1], False), (3, 5, orders[0], True)]
    for threads, block, order, zeroed in cases:
        out = np.full((37, LAYOUT.num_levels * F), np.nan)
        grad = np.zeros(t.shape) if zeroed else np.full(t.shape, np.nan)
        xn, tn, gn = x.numpy(), _flat(t.numpy()), _flat(grad)
        if F == 2:
            k.forward_pairs(xn, tn, *lay, out, threads, block)
            gc = _flat(g.numpy().reshape(-1, 2)).reshape(37, -1)
            k.backward_pairs(xn, gc, *lay, order, gn, zeroed, threads, block)
        else:
            k.forward(xn, tn, F, *lay, out, threads, block)
            k.backward(xn, g.numpy(), F, *lay, order, gn, zeroed, threads, block)
        torch.testing.assert_close(torch.from_numpy(out), ref.detach())
        torch.testing.assert_close(torch.from_numpy(grad), t_ref.grad)


def test_numba_gradient_on_paper_layout_matches_torch():
    """Backward at full size (49 MB gradient in fresh huge-page memory) equals the torch path."""
    pytest.importorskip("numba")
    lay = level_layout(16, 19, 16, 2048)
    x = torch.rand(3000, 3, generator=torch.Generator().manual_seed(7))
    g = torch.randn(3000, 32, generator=torch.Generator().manual_seed(8))
    grads = []
    for backend in ("numba", "torch"):
        t = (_table(lay, dtype=torch.float32) * 1e-2).requires_grad_()
        hash_encode(x, t, lay, backend=backend).backward(g)
        grads.append(t.grad)
    assert grads[0].shape == grads[1].shape and grads[0].dtype == torch.float32
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_zeros_hugepages():
    """Large buffers come zeroed from a fresh mapping (Linux); small ones from torch.empty."""
    import sys

    from neural3d.nerf.hashgrid import _zeros_hugepages

    big, zeroed = _zeros_hugepages((1 << 20, 2), torch.float32)  # 8 MB
    assert big.shape == (1 << 20, 2) and big.dtype == torch.float32
    assert zeroed or not sys.platform.startswith("linux")
    if zeroed:
        assert bool((big == 0).all())
    big[123, 1] = 5.0  # writable
    assert big[123, 1].item() == 5.0
    small, zeroed_small = _zeros_hugepages((10, 2), torch.float64)
    assert small.shape == (10, 2) and small.dtype == torch.float64 and not zeroed_small


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("F", [1, 2])
def test_empty_and_tiny_batches(backend, F):
    """0, 1 and 2 points (fewer than the numba kernel's threads or block) match the reference."""
    t = _table(LAYOUT, F).requires_grad_()
    for n in (0, 1, 2):
        x = torch.rand(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
        out = hash_encode(x, t, LAYOUT, backend=backend)
        assert out.shape == (n, LAYOUT.num_levels * F)
        out.sum().backward()
        t_ref = t.detach().clone().requires_grad_()
        hash_encode_reference(x, t_ref, LAYOUT).sum().backward()
        torch.testing.assert_close(out, hash_encode_reference(x, t.detach(), LAYOUT))
        torch.testing.assert_close(t.grad, t_ref.grad)
        t.grad = None


def test_small_calls_run_on_one_thread_and_restore_the_count():
    numba = pytest.importorskip("numba")
    from neural3d.nerf.hashgrid import _kernel_threads

    have = numba.get_num_threads()
    with _kernel_threads(10) as n:
        assert n == 1 and numba.get_num_threads() == 1
    assert numba.get_num_threads() == have
    with _kernel_threads(10**9) as n:
        assert n == have and numba.get_num_threads() == have
