import pytest
import torch

from neural3d.image_metrics import mse_to_psnr, psnr, ssim


def test_psnr_known_values():
    assert psnr(torch.full((2, 2, 3), 0.1), torch.zeros(2, 2, 3)) == pytest.approx(20.0)
    assert mse_to_psnr(1e-3) == pytest.approx(30.0)


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    a = torch.rand(40, 48, 3, generator=g)
    b = (a + 0.1 * torch.randn(40, 48, 3, generator=g)).clamp(0, 1)
    ref = structural_similarity(a.numpy(), b.numpy(), channel_axis=-1, data_range=1.0,
                                gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-6)
    assert ssim(a, a) == pytest.approx(1.0)
