"""Learning tests on problems with a known answer, at fixed small step budgets."""

import numpy as np
import pytest
import torch

from neural3d.implicit.igr import IGRConfig, fit_igr, load_igr
from neural3d.implicit.losses import clamped_l1
from neural3d.implicit.networks import IGRNet


def test_geometric_init_is_roughly_a_sphere():
    """SAL's init: negative at the centre, growing radially (Softplus(0) offsets shrink r)."""
    torch.manual_seed(0)
    for num_freqs in (0, 4):
        net = IGRNet(256, 4, 2, radius=0.3, num_freqs=num_freqs)
        u = torch.nn.functional.normalize(torch.randn(500, 3), dim=-1)
        with torch.no_grad():
            assert net(torch.zeros(1, 3)).item() < 0
            assert (net(0.1 * u) < 0).float().mean() > 0.95
            assert (net(1.0 * u) > 0).float().mean() > 0.95
            assert net(0.6 * u).mean() > net(0.3 * u).mean() > net(0.1 * u).mean()


def test_clamped_l1_example():
    assert clamped_l1(torch.tensor([0.5]), torch.tensor([0.05]), 0.1).item() == pytest.approx(0.05)


def test_igr_fits_a_sphere_and_checkpoint_roundtrip(tmp_run):
    rng = np.random.default_rng(0)
    n = rng.normal(size=(2000, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    pts = 0.35 * n
    cfg = IGRConfig(width=32, depth=3, skip=2, num_freqs=0, iterations=150, batch_size=256,
                    lr=5e-3)
    res = fit_igr(pts, n, cfg, run=tmp_run, progress_bar=False)
    with torch.no_grad():
        x = torch.from_numpy(pts[:200])
        assert res.model(x).abs().mean() < 0.01
        assert res.model(torch.zeros(1, 3)).item() < -0.2  # inside, roughly -0.35
    model, cfg2 = load_igr(tmp_run.path)
    assert cfg2 == cfg
    with torch.no_grad():
        assert torch.equal(model(x), res.model(x))
    assert len(tmp_run.metrics.column("loss")) >= 2


def test_igr_rejects_bad_points():
    from mpgym import MpgymError

    with pytest.raises(MpgymError, match=r"\(N, 3\)"):
        fit_igr(np.zeros((10, 2)))
    with pytest.raises(MpgymError, match="NaN"):
        fit_igr(np.full((10, 3), np.nan))
