"""Does backtracking's first-chunk level fire on ordinary fits? Short fits of every paper preset, counted by
their backtracks.

Before a fit's first good check, a PSNR to the observation more than `backtrack_db` (5 dB) below the
untrained network's first output counts as a collapse (`dip.fit._Loop.collapsed`). An ordinary fit's first
iterations only move towards the observation, so none should backtrack there: this script runs the first 50
iterations (two checks) of each task's paper preset on four photographs no config uses (scikit-image's
rocket, immunohistochemistry, chelsea and coffee, centre squares resized to 64×64 and 128×128), network seeds
0 and 1, and at 64×64 every other denoising network too, and prints each fit's backtracks and their total.

    python scripts/first_chunk_check.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from skimage import data, transform

from dip import restore
from dip.image_io import to_tensor
from dip.presets import PAPER, preset_key
from dip.tasks import Task

PHOTOS = {"rocket": data.rocket, "ihc": data.immunohistochemistry, "chelsea": data.chelsea, "coffee": data.coffee}
TASKS = [
    Task("denoise", sigma=25),
    Task("sr", factor=4),
    Task("inpaint", mask="drop", drop=0.5),
    Task("jpeg", quality=10),
    Task("deblur", blur="gaussian:1.6", sigma=2),
    Task("denoise", noise="poisson", peak=10),
]
OTHER_DENOISERS = ["unet", "resnet", "deep_decoder", "hourglass"]


def centre_square(image: np.ndarray, size: int) -> torch.Tensor:
    h, w = image.shape[:2]
    side = min(h, w)
    square = image[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2]
    return to_tensor(transform.resize(square, (size, size), anti_aliasing=True).astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    torch.set_num_threads(parser.parse_args().threads)
    counts = []
    for size in (64, 128):
        for name, load in PHOTOS.items():
            clean = centre_square(load(), size)
            for task in TASKS:
                arch, settings = PAPER[preset_key(task)]
                archs = [arch] + (OTHER_DENOISERS if task.name == "denoise" and size == 64 else [])
                observed, mask = task.degrade(clean, observation_seed=0)
                for a in archs:
                    for seed in (0, 1):
                        start = time.perf_counter()
                        result = restore(
                            observed,
                            task.operator(mask),
                            arch=a,
                            settings={**settings, "iterations": 50, "seed": seed, "ssim_every": 50},
                            stop="fixed",
                            device="cpu",
                        )
                        counts.append(result.backtracks)
                        label = f"{size} {name} {task.name}{'-poisson' if task.poisson else ''} {a} seed {seed}"
                        print(
                            f"{label}: {result.backtracks} backtracks ({time.perf_counter() - start:.1f} s)", flush=True
                        )
    print(f"{len(counts)} fits, {sum(c > 0 for c in counts)} with a backtrack")


if __name__ == "__main__":
    main()
