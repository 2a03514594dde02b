"""CBM3D / BM3D, the paper's strongest denoising baseline (its table: CBM3D 31.42 dB at σ = 25), through
the `bm3d` package of Tampere University (Mäkinen, Azzari, Foi): an optional extra (`pip install
".[bm3d]"`), because its licence is not open source (non-commercial use only, no redistribution; see
docs/install.md). Where it is not installed, or its bundled binary does not load on this platform, `available()`
is False and the pipeline's denoising baselines are those of scikit-image alone.
"""

from __future__ import annotations

import numpy as np


def available() -> bool:
    """Whether `bm3d` imports here (it loads a bundled compiled library: Linux x86-64, macOS, Windows)."""
    try:
        import bm3d  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def denoise(observed: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D estimate of the clean image given the noise's standard deviation, as benchmarks give CBM3D.

    observed: (H, W, C) float in [0, 1]; sigma: the noise's standard deviation on the same [0, 1] scale,
    > 0. Colour (C = 3) is denoised by CBM3D (`bm3d.bm3d_rgb`: block matching on the luminance of an
    opponent colour transform), one channel by BM3D (`bm3d.bm3d`), another channel count by BM3D with
    block matching on its first channel. Returns (H, W, C) float32, not clipped.
    """
    import bm3d

    if observed.ndim != 3:
        raise ValueError(f"observed must be (H, W, C), got shape {observed.shape}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    image = observed.astype(np.float64)
    if image.shape[-1] == 3:
        estimate = bm3d.bm3d_rgb(image, sigma)
    else:
        estimate = bm3d.bm3d(image, sigma)
        estimate = estimate.reshape(image.shape)  # one channel comes back (H, W)
    return np.asarray(estimate, dtype=np.float32)
