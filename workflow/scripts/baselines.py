"""Classical baselines for one image × task × observation, each scored as DIP is; images saved for the figures."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

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
from dip.image_io import Reading, atomic_write, read_array, save_png, to_array, to_tensor
from dip.metrics import psnr, ssim
from dip.operators import SuperResolve
from dip.tasks import Task

spec = snakemake.params.spec
task = Task.from_params(spec["task"], spec)
# A real flash/no-flash pair has no ground truth: its baselines are saved for the figures, unscored.
# SR: the ground truth centre-cropped to a multiple of the factor (the prepared images are multiples of 8 only).
clean = to_array(task.crop(to_tensor(read_array(snakemake.input.clean)))) if hasattr(snakemake.input, "clean") else None
observed = read_array(snakemake.input.observed, Reading(above_one=task.poisson))
channel_axis = -1 if observed.shape[-1] > 1 else None


def squeeze(x):
    return x[..., 0] if x.shape[-1] == 1 else x


def unsqueeze(x):
    return x[..., None] if x.ndim == 2 else x


def nlm(sigma):
    """Non-local means at noise level `sigma` (0–1 scale), with scikit-image's usual strengths."""
    return unsqueeze(
        denoise_nl_means(
            squeeze(observed),
            h=0.8 * sigma,
            sigma=sigma,
            fast_mode=True,
            patch_size=5,
            patch_distance=6,
            channel_axis=channel_axis,
        )
    )


def per_channel(restore, image):
    return np.stack([restore(image[..., c]) for c in range(image.shape[-1])], axis=-1)


def deconvolve(method, psf, iterations=None):
    """Deconvolution with the fit's PSF, each channel alike. The observation's borders are reflected by
    the PSF's size first (the forward model's boundary; unsupervised Wiener's FFT would otherwise wrap
    the opposite border in) and cropped off after."""
    pad = max(psf.shape)
    padded = np.pad(observed, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    if method == "richardson_lucy":
        # Its early stop is what regularises it: the table shows two (scikit-image's default, 50, and 10).
        restored = per_channel(lambda c: richardson_lucy(c, psf, num_iter=iterations, clip=False), padded)
    else:
        # The Gibbs sampler's own generator, fixed: the estimate must not vary between runs.
        restored = per_channel(lambda c: unsupervised_wiener(c, psf, rng=np.random.default_rng(0))[0], padded)
    return restored[pad:-pad, pad:-pad]


# Makitalo & Foi (2011): the closed-form approximation of the exact unbiased inverse of the Anscombe transform.
def inverse_anscombe(d):
    d = np.maximum(d, 0.8)  # the approximation holds above the transform of a zero count (2·sqrt(3/8) ≈ 1.22)
    return np.maximum(d**2 / 4 + np.sqrt(1.5) / (4 * d) - 11 / (8 * d**2) + 5 * np.sqrt(1.5) / (8 * d**3) - 1 / 8, 0)


def anscombe(denoise):
    """Poisson denoising by variance stabilisation: 2·sqrt(Y + 3/8) of the counts Y = P·y has noise of
    std ≈ 1; it is scaled by its value at y = 1 (so std ≈ 1/scale), denoised as Gaussian noise at that
    level, scaled back and inverted (inverse_anscombe)."""
    scale = 2 * np.sqrt(task.peak + 3 / 8)
    stabilised = 2 * np.sqrt(task.peak * observed + 3 / 8) / scale
    return inverse_anscombe(unsqueeze(denoise(stabilised, 1 / scale)) * scale) / task.peak


if task.name == "deblur":
    psf = task.psf().numpy()
    methods = {
        "richardson_lucy": deconvolve("richardson_lucy", psf, 50),
        "richardson_lucy_10": deconvolve("richardson_lucy", psf, 10),
        "blurred": observed,
    }
    if not task.poisson:
        methods["unsupervised_wiener"] = deconvolve("unsupervised_wiener", psf)
elif task.name == "denoise" and task.poisson:
    methods = {
        "anscombe_tv": anscombe(lambda z, s: denoise_tv_chambolle(squeeze(z), weight=s, channel_axis=channel_axis)),
        "anscombe_nlm": anscombe(
            lambda z, s: denoise_nl_means(
                squeeze(z),
                h=0.8 * s,
                sigma=s,
                fast_mode=True,
                patch_size=5,
                patch_distance=6,
                channel_axis=channel_axis,
            )
        ),
        "noisy": observed,
    }
elif task.name == "sr":
    sr = SuperResolve(task.factor)
    low = to_tensor(observed)
    methods = {m: sr.upsample(low, m)[0].numpy().transpose(1, 2, 0) for m in ("bicubic", "nearest")}
elif task.name == "denoise":
    sigma = task.sigma / 255
    methods = {
        # Given the true noise level, as benchmarks give CBM3D; strengths are scikit-image's usual choices.
        "tv": unsqueeze(denoise_tv_chambolle(squeeze(observed), weight=sigma, channel_axis=channel_axis)),
        "nlm": nlm(sigma),
        "noisy": observed,
    }
    if cbm3d.available():  # the optional extra (non-commercial licence): absent, the table has no CBM3D row
        methods["cbm3d"] = cbm3d.denoise(observed, sigma)
elif task.name == "flash":
    # The no-flash photograph's noise level is unknown: scikit-image's wavelet estimate stands in for sigma.
    methods = {
        "nlm": nlm(float(np.mean(estimate_sigma(squeeze(observed), channel_axis=channel_axis)))),
        "noflash": observed,
    }
elif task.name == "inpaint":
    mask = read_array(snakemake.input.mask)[..., 0] > 0.5
    methods = {"biharmonic": unsqueeze(inpaint_biharmonic(squeeze(observed), ~mask, channel_axis=channel_axis))}
else:
    methods = {"jpeg": observed}

out = Path(snakemake.output[0])
out.mkdir(parents=True, exist_ok=True)
rows = []
for method, image in methods.items():
    image = np.clip(image, 0, 1).astype(np.float32)
    save_png(to_tensor(image), out / f"{method}.png")
    rows.append(
        {
            "image": snakemake.params.image,
            "task_label": snakemake.params.task_label,
            "task": task.name,
            "observation_seed": int(snakemake.wildcards.obs),
            "method": method,
            "psnr": psnr(image, clean, **task.convention) if clean is not None else np.nan,
            "ssim": ssim(image, clean, **task.convention) if clean is not None else np.nan,
        }
    )
atomic_write(out / "metrics.csv", lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
