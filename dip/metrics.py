"""Image quality against a ground truth, through scikit-image. Images are NumPy arrays H×W×C in [0, 1]."""
from __future__ import annotations

import numpy as np
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Y of ITU-R BT.601 on [0, 1]: (16 + 65.481 R + 128.553 G + 24.966 B) / 255, the SR papers' Y."""
    if rgb.shape[-1] == 1:
        return rgb[..., 0]
    return rgb2ycbcr(rgb)[..., 0] / 255.0


def _prepare(x: np.ndarray, ref: np.ndarray, y_channel: bool, shave: int) -> tuple[np.ndarray, np.ndarray]:
    if x.shape != ref.shape:
        raise ValueError(f"image shapes differ: {x.shape} vs {ref.shape}")
    x, ref = np.clip(x.astype(np.float64), 0, 1), ref.astype(np.float64)
    if y_channel:
        x, ref = luminance(x), luminance(ref)
    if shave:
        x, ref = x[shave:-shave, shave:-shave], ref[shave:-shave, shave:-shave]
    return x, ref


def psnr(x: np.ndarray, ref: np.ndarray, y_channel: bool = False, shave: int = 0) -> float:
    """PSNR in dB, data range 1. The SR convention is y_channel=True, shave=factor."""
    x, ref = _prepare(x, ref, y_channel, shave)
    return float(peak_signal_noise_ratio(ref, x, data_range=1.0))


def ssim(x: np.ndarray, ref: np.ndarray, y_channel: bool = False, shave: int = 0) -> float:
    """SSIM, data range 1, channels along the last axis (skimage's default Gaussian-free 7×7 window)."""
    x, ref = _prepare(x, ref, y_channel, shave)
    channel_axis = -1 if x.ndim == 3 else None
    return float(structural_similarity(ref, x, data_range=1.0, channel_axis=channel_axis))
