"""The noise level the classical JPEG baselines denoise at (dip.pipeline.baselines.jpeg_sigma), calibrated on
the configs' images, never on the held-out crops the defaults are checked on (scripts/defaults_check.py).

JPEG's error is not white noise, but a denoiser given a level proportional to the quantisation tables'
scale (libjpeg's: 5000/q % below quality 50, 200 - 2q % above) is the classical artefact remover the
field compares with. For each quality, each image of the manifests is compressed as `dip degrade` does and
restored by TV, non-local means and CBM3D at σ = k · scale for a grid of k; the table is the median PSNR
gain over the JPEG image per (quality, method, k).

    python scripts/jpeg_sigma.py data/manifest.tsv data/heldout128.tsv
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from dip import cbm3d
from dip import manifest as manifest_io
from dip.image_io import to_array, to_tensor
from dip.pipeline import baselines as b
from dip.tasks import Task


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("manifests", nargs="+")
    p.add_argument("--qualities", nargs="+", type=int, default=[5, 10, 20, 40, 70])
    p.add_argument("--ks", nargs="+", type=float, default=[0.01, 0.015, 0.02, 0.025, 0.03, 0.04])
    p.add_argument("--methods", nargs="+", choices=("tv", "nlm", "cbm3d"), default=["tv", "nlm", "cbm3d"])
    a = p.parse_args(argv)
    known = {"tv": b.total_variation, "nlm": b.non_local_means, "cbm3d": cbm3d.denoise}
    methods = {m: known[m] for m in a.methods if m != "cbm3d" or cbm3d.available()}
    rows = []
    for manifest in a.manifests:
        table = manifest_io.read(manifest)
        for image, row in table[table.role == "clean"].iterrows():
            clean = manifest_io.prepare(manifest_io.load_source(row["path"]), row["crop"], row["resize"])
            for q in a.qualities:
                task = Task("jpeg", quality=q)
                observed = to_array(task.degrade(to_tensor(clean), observation_seed=0)[0])
                base = task.score(observed, clean)["psnr"]
                for k in a.ks:
                    sigma = k * b.jpeg_scale(q) / 255
                    for name, denoise in methods.items():
                        restored = np.clip(denoise(observed, sigma), 0, 1)
                        gain = task.score(restored, clean)["psnr"] - base
                        rows.append({"image": image, "quality": q, "method": name, "k": k, "gain": gain})
            print(image, flush=True)
    df = pd.DataFrame(rows)
    print(
        df.pivot_table(index=["quality", "method"], columns="k", values="gain", aggfunc="median").round(2).to_markdown()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
