"""Cold versus warm start on a neighbouring crop (docs/guide/networks.md, "What a warm start saves").

Fits a 64x64 crop of scikit-image's astronaut, denoised at sigma 25, from scratch and keeps its network; then
fits the crop SHIFT pixels to the right from scratch, and again from the first crop's network until its EMA
image reaches the cold fit's best PSNR. Each crop's noise is its own draw (observation seeds 1 and 2), as a
neighbouring frame's would be. Prints one JSON line per fit.

Usage: python docs/guide/warm_start.py [ITERATIONS] [SEED ...]
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
from dip.stopping import NEVER, StoppingRule

SIZE, TOP, LEFT, SHIFT, SIGMA = 64, 80, 200, 12, 25


class Reached(StoppingRule):
    """Stops a fit at the first iteration whose EMA image reaches `target` dB against the ground truth (a
    measurement's stopping rule: it reads the ground truth)."""

    name = "reached"

    def __init__(self, clean: torch.Tensor, target: float):
        super().__init__()
        self.clean, self.target = clean, target

    def _update(self, it, output, keep, loss, live) -> None:
        psnr = -10 * torch.log10((keep.clamp(0, 1) - self.clean.to(keep.device)).square().flatten(1).mean(1))
        self.signal = psnr.float()
        hit = live & (psnr >= self.target) & (self.minimum_iteration == NEVER)
        self.minimum_iteration = torch.where(hit, it, self.minimum_iteration)
        self._keep(hit, it, keep)

    def stop_iterations(self) -> list[int | None]:
        return [None if m == NEVER else int(m) for m in self.minimum_iteration.tolist()]


def crop(left: int) -> torch.Tensor:
    return to_tensor(data.astronaut()[TOP : TOP + SIZE, left : left + SIZE].astype(np.float32) / 255)


def best(history) -> tuple[float, int]:
    k = history["psnr_ema"].idxmax()
    return float(history["psnr_ema"][k]), int(history["iteration"][k])


def run(iterations: int, seed: int) -> None:
    arch, values = PAPER["denoise"]
    spec = {"kind": arch}
    settings = FitSettings(**{**values, "iterations": iterations, "seed": seed, "ssim_every": iterations})
    first, second = crop(LEFT), crop(LEFT + SHIFT)
    observed_first = Denoise(SIGMA).observe(first, generator(1, "observation"))
    observed_second = Denoise(SIGMA).observe(second, generator(2, "observation"))

    def report(name: str, result, t0: float, **extra) -> None:
        psnr, at = best(result.history)
        row = {"seed": seed, "fit": name, "iterations": result.iterations, "best_ema_psnr": round(psnr, 3), "at": at}
        row["first_ema_psnr"] = round(float(result.history["psnr_ema"].iloc[0]), 2)
        print(json.dumps(row | extra | {"seconds": round(time.perf_counter() - t0)}), flush=True)

    t0 = time.perf_counter()
    a = fit(spec, Denoise(SIGMA), observed_first, settings, clean=first, keep_network=True)
    report("first crop, cold", a, t0)
    t0 = time.perf_counter()
    cold = fit(spec, Denoise(SIGMA), observed_second, settings, clean=second)
    report("neighbour, cold", cold, t0)
    target, at = best(cold.history)
    t0 = time.perf_counter()
    rule = Reached(second, target)
    warm = fit(
        spec, Denoise(SIGMA), observed_second, settings, clean=second, init=a.network, rules=[rule], stop_on="reached"
    )
    reached = rule.stop_iteration()
    report("neighbour, warm", warm, t0, reached_cold_best_at=reached, saved=None if reached is None else at - reached)


if __name__ == "__main__":
    torch.set_num_threads(1)
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    for seed in [int(s) for s in sys.argv[2:]] or [0]:
        run(iterations, seed)
