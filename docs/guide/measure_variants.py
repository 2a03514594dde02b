"""Measure DIP, DIP + SURE and a DIP ensemble of two on 64×64 crops of scikit-image photographs that no
config uses (docs/guide/variants.md). One JSON line per run on stdout.

    python docs/guide/measure_variants.py IMAGE {plain,sure} [--iters 1500] [--size 64] [--threads 1]

plain: the two members of ensemble_seeds(0, 2) fitted as one batched network (member 0 is the plain fit
of network seed 0), each member's last and best EMA PSNR, and the ensemble's (the mean of the members'
images) at the last iteration and at ES-WMV's images. sure: the same network seed with the SURE data term.
"""

import argparse
import json
import time

import numpy as np
import skimage.data
import torch

from dip import restore
from dip.image_io import to_array
from dip.metrics import psnr
from dip.operators import Denoise
from dip.seeds import ensemble_seeds
from dip.tasks import Task

IMAGES = {
    "microaneurysms": lambda: skimage.data.microaneurysms(),
    "motorcycle_right": lambda: skimage.data.stereo_motorcycle()[1],
}


def crop(name: str, size: int = 64) -> torch.Tensor:
    image = np.asarray(IMAGES[name](), dtype=np.float32) / 255
    image = image[..., None] if image.ndim == 2 else image
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return torch.from_numpy(image[top : top + size, left : left + size].copy()).permute(2, 0, 1)[None]


def score(image: torch.Tensor, clean: torch.Tensor) -> float:
    return round(psnr(to_array(image.clamp(0, 1)), to_array(clean)), 3)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("image", choices=IMAGES)
    p.add_argument("mode", choices=("plain", "sure"))
    p.add_argument("--iters", type=int, default=1500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=64, help="side of the centre crop, pixels")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    clean = crop(a.image, a.size)
    observed, _ = Task("denoise", sigma=25).degrade(clean, 0)
    start = time.time()
    kwargs = dict(arch="skip", settings={"iterations": a.iters}, stop=None, record=["es-wmv"], clean=clean)
    if a.mode == "plain":
        results = restore(observed, Denoise(25), seeds=ensemble_seeds(0, 2), device="cpu", **kwargs)
    else:
        results = [restore(observed, Denoise(25), loss="sure", device="cpu", **kwargs)]
    out = {"image": a.image, "size": a.size, "mode": a.mode, "iterations": a.iters, "observed": score(observed, clean)}
    for k, r in enumerate(results):
        h = r.history
        out[f"member{k}"] = {
            "seed": r.seed,
            "last": score(r.output, clean),
            "ema_last": round(float(h["psnr_ema"].iloc[-1]), 3),
            "ema_best": round(float(h["psnr_ema"].max()), 3),
            "ema_best_iteration": int(h["psnr_ema"].idxmax()) + 1,
            "es_wmv": score(r.rule_images["es-wmv"], clean) if "es-wmv" in r.rule_images else None,
        }
    if len(results) > 1:
        mean = lambda images: torch.stack(images).mean(0)  # noqa: E731
        out["ensemble"] = {
            "last": score(mean([r.output for r in results]), clean),
            "ema_last": score(mean([r.ema for r in results]), clean),
            "es_wmv": score(mean([r.rule_images["es-wmv"] for r in results]), clean)
            if all("es-wmv" in r.rule_images for r in results)
            else None,
        }
    out["seconds"] = round(time.time() - start)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
