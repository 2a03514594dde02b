"""Classical baselines for one image × task × observation, each scored as DIP is; images saved for the figures."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

import numpy as np
import pandas as pd
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, estimate_sigma, inpaint_biharmonic

from dip import cbm3d
from dip.image_io import atomic_write, read_array, save_png, to_array, to_tensor
from dip.metrics import psnr, ssim
from dip.operators import SuperResolve
from dip.tasks import Task

spec = snakemake.params.spec
task = Task(spec["task"], sigma=spec.get("sigma"), factor=spec.get("factor"), mask=spec.get("mask"),
            drop=spec.get("drop"), quality=spec.get("quality"))
# A real flash/no-flash pair has no ground truth: its baselines are saved for the figures, unscored.
# SR: the ground truth centre-cropped to a multiple of the factor (the prepared images are multiples of 8 only).
clean = to_array(task.crop(to_tensor(read_array(snakemake.input.clean)))) if hasattr(snakemake.input, "clean") else None
observed = read_array(snakemake.input.observed)
channel_axis = -1 if observed.shape[-1] > 1 else None


def squeeze(x):
    return x[..., 0] if x.shape[-1] == 1 else x


def unsqueeze(x):
    return x[..., None] if x.ndim == 2 else x


def nlm(sigma):
    """Non-local means at noise level `sigma` (0–1 scale), with scikit-image's usual strengths."""
    return unsqueeze(denoise_nl_means(squeeze(observed), h=0.8 * sigma, sigma=sigma, fast_mode=True,
                                      patch_size=5, patch_distance=6, channel_axis=channel_axis))


if task.name == "sr":
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
    methods = {"nlm": nlm(float(np.mean(estimate_sigma(squeeze(observed), channel_axis=channel_axis)))),
               "noflash": observed}
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
    rows.append({"image": snakemake.params.image, "task_label": snakemake.params.task_label, "task": task.name,
                 "observation_seed": int(snakemake.wildcards.obs), "method": method,
                 "psnr": psnr(image, clean, **task.convention) if clean is not None else np.nan,
                 "ssim": ssim(image, clean, **task.convention) if clean is not None else np.nan})
atomic_write(out / "metrics.csv", lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
