import numpy as np
import pytest
import torch

from dip.image_io import to_array
from dip.metrics import Scorer, luminance, psnr, psnr_torch, ssim


def test_psnr_and_ssim_of_identical_images():
    x = np.random.default_rng(0).random((16, 16, 3))
    assert psnr(x, x) == np.inf and ssim(x, x) == pytest.approx(1.0)


def test_device_psnr_equals_skimage(clean64):
    noisy = (clean64 + 0.05 * torch.randn(clean64.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert psnr_torch(noisy, clean64).item() == pytest.approx(psnr(to_array(noisy), to_array(clean64)), abs=1e-3)


def test_luminance_follows_bt601():
    white, black = np.ones((1, 1, 3)), np.zeros((1, 1, 3))
    assert luminance(white)[0, 0] == pytest.approx(235 / 255, abs=1e-3)
    assert luminance(black)[0, 0] == pytest.approx(16 / 255, abs=1e-3)


def test_luminance_matches_scikit_images_ycbcr_on_random_colours():
    """METHOD.md's Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 is scikit-image's Y of YCbCr (on the
    0-255 scale for RGB in [0, 1]) divided by 255: on the host (float64) and on the device (float32)."""
    from skimage.color import rgb2ycbcr

    rgb = np.random.default_rng(0).random((37, 29, 3))
    theirs = rgb2ycbcr(rgb)[..., 0] / 255
    assert np.abs(luminance(rgb) - theirs).max() < 1e-12
    scored = Scorer(y_channel=True).view(torch.from_numpy(rgb).permute(2, 0, 1)[None].float())
    assert scored.shape == (1, 1, 37, 29)
    assert np.abs(scored[0, 0].numpy() - theirs).max() < 1e-6
    # and it is not the mean of the channels, which would also map white and black right
    assert np.abs(rgb.mean(-1) * 219 / 255 + 16 / 255 - theirs).max() > 0.01


def test_sr_convention_shaves_the_border():
    ref = np.full((20, 20, 3), 0.5)
    x = ref.copy()
    x[:4] = 0  # only the shaved border differs
    assert psnr(x, ref, y_channel=True, shave=4) == np.inf
    assert psnr(x, ref, y_channel=True) < 30


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))


@pytest.mark.parametrize("y_channel, shave", [(False, 0), (True, 0), (True, 4), (False, 3)])
def test_device_scorer_equals_skimage_by_convention(clean64, y_channel, shave):
    noisy = (clean64 + 0.05 * torch.randn(clean64.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    device = Scorer(y_channel, shave).psnr(noisy, clean64).item()
    assert device == pytest.approx(psnr(to_array(noisy), to_array(clean64), y_channel, shave), abs=1e-3)
