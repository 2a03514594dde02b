"""Classical baselines of one image × task × observation, scored as DIP is (rule `baselines`).

SR: PIL bicubic and nearest upsampling; Gaussian denoising: TV and non-local means given the true σ, and
CBM3D where the optional bm3d extra is installed; Poisson denoising: the Anscombe transform, TV or
non-local means at the stabilised level, the closed-form unbiased inverse; deblurring: Richardson–Lucy
(50 and 10 iterations) and, with Gaussian noise, unsupervised Wiener, with the task's PSF; inpainting:
biharmonic; JPEG: TV, non-local means and CBM3D of the JPEG image at a level set by the quality
(`jpeg_sigma`); flash/no-flash: non-local means of the no-flash photograph at
scikit-image's noise estimate. The observation itself is a row too ("noisy", "blurred", "noflash").

Images are H×W×C float arrays on the [0, 1] scale (a Poisson observation may exceed 1).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from skimage.restoration import (
    denoise_nl_means,
    denoise_tv_chambolle,
    estimate_sigma,
    inpaint_biharmonic,
    richardson_lucy,
    unsupervised_wiener,
)

from dip import cbm3d
from dip.image_io import to_array, to_tensor
from dip.operators import SuperResolve
from dip.tasks import Task


def _squeeze(x: np.ndarray) -> np.ndarray:
    return x[..., 0] if x.shape[-1] == 1 else x


def _unsqueeze(x: np.ndarray) -> np.ndarray:
    return x[..., None] if x.ndim == 2 else x


def _channel_axis(image: np.ndarray) -> int | None:
    return -1 if image.shape[-1] > 1 else None


def total_variation(image: np.ndarray, weight: float) -> np.ndarray:
    """Chambolle's TV denoising of an H×W×C image at `weight` (the noise level, 0–1 scale)."""
    return _unsqueeze(denoise_tv_chambolle(_squeeze(image), weight=weight, channel_axis=_channel_axis(image)))


def non_local_means(image: np.ndarray, sigma: float, h: float = 0.8) -> np.ndarray:
    """Non-local means of an H×W×C image at noise level `sigma` (0–1 scale), with scikit-image's usual
    strengths (cut-off h · σ, h 0.8 by default; 5×5 patches, search distance 6), in fast mode."""
    restored = denoise_nl_means(
        _squeeze(image),
        h=h * sigma,
        sigma=sigma,
        fast_mode=True,
        patch_size=5,
        patch_distance=6,
        channel_axis=_channel_axis(image),
    )
    return _unsqueeze(restored)


def _per_channel(restore: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> np.ndarray:
    return np.stack([restore(image[..., c]) for c in range(image.shape[-1])], axis=-1)


def deconvolve(observed: np.ndarray, psf: np.ndarray, method: str, iterations: int | None = None) -> np.ndarray:
    """Deconvolution of an H×W×C observation with a 2-D `psf`, each channel alike: `method`
    "richardson_lucy" (`iterations` of it: its early stop is what regularises it) or "unsupervised_wiener"
    (the Gibbs sampler's generator fixed, so that the estimate does not vary between runs). The borders are
    reflected by the PSF's size first (the forward model's boundary; unsupervised Wiener's FFT would
    otherwise wrap the opposite border in) and cropped off after."""
    pad = max(psf.shape)
    padded = np.pad(observed, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    if method == "richardson_lucy":
        restored = _per_channel(lambda c: richardson_lucy(c, psf, num_iter=iterations, clip=False), padded)
    else:
        restored = _per_channel(lambda c: unsupervised_wiener(c, psf, rng=np.random.default_rng(0))[0], padded)
    return restored[pad:-pad, pad:-pad]


def inverse_anscombe(d: np.ndarray) -> np.ndarray:
    """Makitalo & Foi (2011): the closed-form approximation of the exact unbiased inverse of the Anscombe
    transform d = 2·sqrt(Y + 3/8), clamped at 0."""
    d = np.maximum(d, 0.8)  # the approximation holds above the transform of a zero count (2·sqrt(3/8) ≈ 1.22)
    return np.maximum(d**2 / 4 + np.sqrt(1.5) / (4 * d) - 11 / (8 * d**2) + 5 * np.sqrt(1.5) / (8 * d**3) - 1 / 8, 0)


def anscombe(observed: np.ndarray, peak: float, denoise: Callable[[np.ndarray, float], np.ndarray]) -> np.ndarray:
    """Poisson denoising by variance stabilisation: 2·sqrt(Y + 3/8) of the counts Y = peak·y has noise of
    std ≈ 1; it is scaled by its value at y = 1 (so std ≈ 1/scale), denoised by `denoise(image, sigma)` as
    Gaussian noise at that level, scaled back and inverted (`inverse_anscombe`)."""
    scale = 2 * np.sqrt(peak + 3 / 8)
    stabilised = 2 * np.sqrt(peak * observed + 3 / 8) / scale
    return inverse_anscombe(_unsqueeze(denoise(stabilised, 1 / scale)) * scale) / peak


def jpeg_scale(quality: int) -> float:
    """libjpeg's scale of its quantisation tables, in percent, at JPEG `quality` 1–100 (jcparam.c: 5000/q below
    quality 50, 200 − 2q from 50; PIL's quality is libjpeg's): the step of every DCT coefficient grows with it."""
    return 5000 / quality if quality < 50 else 200 - 2 * quality


# σ (0–255 scale) per percent of libjpeg's table scale at which each denoiser removes JPEG artefacts best on
# the median of the configs' ten images (data/manifest.tsv, data/heldout128.tsv) at qualities 5 to 70, the
# same number for every quality (scripts/jpeg_sigma.py; docs/defaults.md): 10/255 for TV and NLM at q 10.
JPEG_STRENGTH = {"tv": 0.02, "nlm": 0.02, "cbm3d": 0.04}


def jpeg_sigma(quality: int, method: str) -> float:
    """The noise level (0–1 scale) `method` ("tv", "nlm" or "cbm3d") is given to remove the artefacts of a
    JPEG of `quality`: `JPEG_STRENGTH[method]` times `jpeg_scale(quality)`, over 255. JPEG's error is not
    white noise; the level is the one that restored the calibration images best, not an estimate of it.

    >>> round(jpeg_sigma(10, "tv") * 255, 1)
    10.0
    """
    return JPEG_STRENGTH[method] * jpeg_scale(quality) / 255


def restore(task: Task, observed: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each baseline's image of `observed` (H×W×C) for `task`, by method name, unclipped. `mask`: the
    observation's mask.png as read (H×W×C, bright = known pixel), which only inpainting uses."""
    if task.name == "deblur":
        psf = task.psf().numpy()
        methods = {
            "richardson_lucy": deconvolve(observed, psf, "richardson_lucy", 50),
            "richardson_lucy_10": deconvolve(observed, psf, "richardson_lucy", 10),
            "blurred": observed,
        }
        if not task.poisson:
            methods["unsupervised_wiener"] = deconvolve(observed, psf, "unsupervised_wiener")
        return methods
    if task.name == "denoise" and task.poisson:
        return {
            "anscombe_tv": anscombe(observed, task.peak, total_variation),
            "anscombe_nlm": anscombe(observed, task.peak, non_local_means),
            "noisy": observed,
        }
    if task.name == "sr":
        sr, low = SuperResolve(task.factor), to_tensor(observed)
        return {m: sr.upsample(low, m)[0].numpy().transpose(1, 2, 0) for m in ("bicubic", "nearest")}
    if task.name == "denoise":
        # Given the true noise level, as benchmarks give CBM3D.
        return {**_denoisers(observed, lambda method: task.sigma / 255), "noisy": observed}
    if task.name == "flash":
        # The no-flash photograph's noise level is unknown: scikit-image's wavelet estimate stands in for sigma.
        sigma = float(np.mean(estimate_sigma(_squeeze(observed), channel_axis=_channel_axis(observed))))
        return {"nlm": non_local_means(observed, sigma), "noflash": observed}
    if task.name == "inpaint":
        known = mask[..., 0] > 0.5
        restored = inpaint_biharmonic(_squeeze(observed), ~known, channel_axis=_channel_axis(observed))
        return {"biharmonic": _unsqueeze(restored)}
    methods = {"jpeg": observed}
    if task.quality is not None:  # a given JPEG of unknown quality: the observation alone
        methods |= _denoisers(observed, lambda method: jpeg_sigma(task.quality, method))
    return methods


def _denoisers(observed: np.ndarray, sigma_of: Callable[[str], float]) -> dict[str, np.ndarray]:
    """TV, non-local means and CBM3D of `observed`, each given the noise level `sigma_of(method)` (0–1
    scale). CBM3D is the optional extra (non-commercial licence): where it is absent, no CBM3D entry."""
    methods = {"tv": total_variation(observed, sigma_of("tv")), "nlm": non_local_means(observed, sigma_of("nlm"))}
    if cbm3d.available():
        methods["cbm3d"] = cbm3d.denoise(observed, sigma_of("cbm3d"))
    return methods


def baselines(
    task: Task,
    observed: np.ndarray,
    clean: np.ndarray | None,
    mask: np.ndarray | None,
    image: str,
    task_label: str,
    observation_seed: int,
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Every baseline of one observation, clipped to [0, 1] as float32 H×W×C, and their metrics.csv: one
    row per method with its keys (`image`, `task_label`: the config's task key, task, `observation_seed`),
    method, psnr and ssim against
    `clean` (the ground truth as read; SR: centre-cropped here to a multiple of the factor), scored with
    the task's convention; NaN without a ground truth (a real flash/no-flash pair)."""
    truth = to_array(task.crop(to_tensor(clean))) if clean is not None else None
    images = {m: np.clip(x, 0, 1).astype(np.float32) for m, x in restore(task, observed, mask).items()}
    keys = {"image": image, "task_label": task_label, "task": task.name, "observation_seed": observation_seed}
    unscored = {"psnr": np.nan, "ssim": np.nan}
    rows = [
        {**keys, "method": method, **(task.score(restored, truth) if truth is not None else unscored)}
        for method, restored in images.items()
    ]
    return images, pd.DataFrame(rows)
