"""Image quality against a ground truth, through scikit-image. Images are NumPy arrays H×W×C in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

# ITU-R BT.601 luminance of RGB in [0, 1], the SR papers' Y: (16 + 65.481 R + 128.553 G + 24.966 B) / 255.
BT601_Y = (65.481, 128.553, 24.966)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Y of ITU-R BT.601 (BT601_Y) of an H×W×3 array in [0, 1]; a one-channel image is its own Y.

    >>> white = np.ones((1, 1, 3))
    >>> round(float(luminance(white)[0, 0]) * 255, 6)  # 16 + 219: the top of BT.601's studio range
    235.0
    """
    if rgb.shape[-1] == 1:
        return rgb[..., 0]
    return (16 + rgb @ np.asarray(BT601_Y, dtype=rgb.dtype)) / 255


@dataclass(frozen=True)
class Scorer:
    """PSNR on the device by a task's convention (SR: luminance, border of `shave` px removed), for the
    per-iteration history; it equals `psnr` of scikit-image to float precision (tested)."""

    y_channel: bool = False
    shave: int = 0

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """What is scored of images (N, C, H, W): Y of RGB (if asked), border shaved."""
        if self.y_channel and x.shape[1] == 3:
            weights = torch.tensor(BT601_Y, device=x.device, dtype=torch.float32).view(1, 3, 1, 1)
            x = (16 + (x.float().clamp(0, 1) * weights).sum(1, keepdim=True)) / 255
        s = self.shave
        return x[..., s : x.shape[-2] - s, s : x.shape[-1] - s] if s else x

    def psnr(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """PSNR (data range 1) of x against ref, both in the raw image space; a 0-d device tensor."""
        return psnr_torch(self.view(x), self.view(ref))


def psnr_torch(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """PSNR (data range 1) on the device, x clipped to [0, 1]; no host sync."""
    return -10 * torch.log10(torch.mean((x.float().clamp(0, 1) - ref.float()) ** 2))


def psnr_per_image(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """PSNR (data range 1) of each of N images (N, ...) against ref (N or 1, ...), x clipped to [0, 1]:
    a device tensor (N,), no host sync."""
    return -10 * torch.log10((x.float().clamp(0, 1) - ref.float()).square().flatten(1).mean(1))


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
    """PSNR in dB, data range 1. The SR convention is y_channel=True, shave=factor.

    >>> ref = np.full((8, 8, 3), 0.5)
    >>> round(psnr(ref + 0.1, ref), 2)  # MSE 0.01
    20.0
    >>> psnr(ref, ref)  # no error: infinite, without NumPy's division warning
    inf
    """
    x, ref = _prepare(x, ref, y_channel, shave)
    with np.errstate(divide="ignore"):  # an image equal to its reference: inf, which the records note
        return float(peak_signal_noise_ratio(ref, x, data_range=1.0))


def ssim(x: np.ndarray, ref: np.ndarray, y_channel: bool = False, shave: int = 0) -> float:
    """SSIM, data range 1, channels along the last axis (skimage's default Gaussian-free 7×7 window)."""
    x, ref = _prepare(x, ref, y_channel, shave)
    channel_axis = -1 if x.ndim == 3 else None
    return float(structural_similarity(ref, x, data_range=1.0, channel_axis=channel_axis))
