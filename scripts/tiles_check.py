"""What fitting in tiles costs (docs/scale.md, "Tiles"): the same observation restored whole and in
overlapping tiles (`dip.restore_tiled`), same network seed, same default stopping rule, PSNR against the
clean image; on 128×128 crops at full resolution of scikit-image photographs that no config uses at this
scale, Gaussian noise σ = 25.

    python scripts/tiles_check.py IMAGE [--tile 80 --overlap 32 --threads 1]   # one line of the table (JSON)

Run it once per image (each uses one thread, so two run side by side on two cores).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from skimage import data

from dip import restore
from dip.image_io import to_array, to_tensor
from dip.presets import PAPER, preset_key
from dip.tasks import Task
from dip.tiles import restore_tiled

# (scikit-image photograph, left, top) of each 128×128 crop.
CROPS = {"coffee": ("coffee", 200, 120), "rocket": ("rocket", 260, 170), "chelsea": ("chelsea", 150, 60)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", choices=sorted(CROPS))
    parser.add_argument("--tile", type=int, default=80)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iters", type=int, help="the budget (default: the paper's for denoising)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name, left, top = CROPS[args.image]
    photo = getattr(data, name)()[top : top + 128, left : left + 128]
    clean = to_tensor(photo.astype(np.float32) / 255)
    task = Task("denoise", sigma=25)
    observed, _ = task.degrade(clean, observation_seed=0)
    arch, settings = PAPER[preset_key(task)]
    if args.iters:
        settings = {**settings, "iterations": args.iters}

    def psnr(image: torch.Tensor) -> float:
        return task.score(to_array(image), to_array(clean))["psnr"]

    options = dict(arch=arch, settings={**settings, "seed": args.seed}, device="cpu", log=lambda line: None)
    row = {"image": args.image, "tile": args.tile, "overlap": args.overlap, "seed": args.seed}
    start = time.perf_counter()
    whole = restore(observed, task.operator(), **options)
    row |= {"whole_psnr": psnr(whole.image), "whole_s": time.perf_counter() - start}
    row["whole_iterations"] = whole.iterations
    start = time.perf_counter()
    tiled = restore_tiled(observed, task.operator(), tile=args.tile, overlap=args.overlap, **options)
    row |= {"tiled_psnr": psnr(tiled.image), "tiled_s": time.perf_counter() - start}
    row["tiles"] = len(tiled.tiles)
    row["tile_iterations"] = [t.iterations for t in tiled.tiles]
    row["observed_psnr"] = psnr(observed.clamp(0, 1))
    print(json.dumps(row))


if __name__ == "__main__":
    main()
