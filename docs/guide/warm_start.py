"""Cold versus warm start on a neighbouring crop (docs/guide/networks.md, "What a warm start saves").

Fits a 64x64 crop of scikit-image's astronaut denoised at sigma 25 from scratch and keeps its network, then
fits the crop SHIFT pixels to the right twice: from scratch, and from the first crop's network. Each crop's
noise is its own draw (observation seeds 1 and 2), as a neighbouring frame's would be. Prints one JSON line
per seed. Usage: python docs/guide/warm_start.py [ITERATIONS] [SEED ...]
"""

import json
import sys
import time

import numpy as np
import torch
from skimage import data

from dip.fit import FitSettings, fit
from dip.image_io import to_tensor
from dip.operators import Denoise
from dip.presets import PAPER
from dip.seeds import generator

SIZE, TOP, LEFT, SHIFT, SIGMA = 64, 80, 200, 12, 25


def crop(left: int) -> torch.Tensor:
    return to_tensor(data.astronaut()[TOP : TOP + SIZE, left : left + SIZE].astype(np.float32) / 255)


def run(iterations: int, seed: int) -> dict:
    arch, values = PAPER["denoise"]
    spec = {"kind": arch}
    settings = FitSettings(**{**values, "iterations": iterations, "seed": seed, "ssim_every": iterations})
    first, second = crop(LEFT), crop(LEFT + SHIFT)
    observed_first = Denoise(SIGMA).observe(first, generator(1, "observation"))
    observed_second = Denoise(SIGMA).observe(second, generator(2, "observation"))
    row = {"seed": seed, "iterations": iterations}
    t0 = time.perf_counter()
    a = fit(spec, Denoise(SIGMA), observed_first, settings, clean=first, keep_network=True)
    row["first_best_ema_psnr"] = round(float(a.history["psnr_ema"].max()), 2)
    cold = fit(spec, Denoise(SIGMA), observed_second, settings, clean=second)
    warm = fit(spec, Denoise(SIGMA), observed_second, settings, clean=second, init=a.network)
    best = cold.history["psnr_ema"]
    target, at = float(best.max()), int(cold.history["iteration"][best.idxmax()])
    reached = warm.history["iteration"][warm.history["psnr_ema"] >= target]
    row |= {
        "cold_best_ema_psnr": round(target, 2),
        "cold_best_iteration": at,
        "warm_best_ema_psnr": round(float(warm.history["psnr_ema"].max()), 2),
        "warm_best_iteration": int(warm.history["iteration"][warm.history["psnr_ema"].idxmax()]),
        "warm_iterations_to_cold_best": int(reached.iloc[0]) if len(reached) else None,
        "warm_psnr_at_iteration_1": round(float(warm.history["psnr_ema"].iloc[0]), 2),
        "cold_psnr_at_iteration_1": round(float(cold.history["psnr_ema"].iloc[0]), 2),
        "seconds": round(time.perf_counter() - t0),
    }
    for k in (50, 100, 200, 400):
        if k <= iterations:
            row[f"cold_psnr_ema_at_{k}"] = round(float(cold.history["psnr_ema"].iloc[k - 1]), 2)
            row[f"warm_psnr_ema_at_{k}"] = round(float(warm.history["psnr_ema"].iloc[k - 1]), 2)
    return row


if __name__ == "__main__":
    torch.set_num_threads(1)
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 800
    for seed in [int(s) for s in sys.argv[2:]] or [0]:
        print(json.dumps(run(iterations, seed)), flush=True)
