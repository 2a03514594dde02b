"""Histogram of the detection gap (oracle PSNR − rule PSNR) of each stopping rule over all fits."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from dip.image_io import atomic_write
from dip.stopping import RULES

runs = pd.read_csv(snakemake.input[0])
runs = runs[runs["status"] == "ok"]
fig, ax = plt.subplots(figsize=(5, 3))
for rule in (r for r in RULES if r != "fixed"):
    gaps = runs[f"{rule}_gap"].dropna() if f"{rule}_gap" in runs else pd.Series(dtype=float)
    if len(gaps):
        ax.hist(gaps, bins=20, alpha=0.6, label=f"{rule}: median {gaps.median():.2f} dB, worst {gaps.max():.2f} dB")
ax.set_xlabel("detection gap: oracle PSNR − rule PSNR (dB)")
ax.set_ylabel("fits")
ax.legend(fontsize=7)
atomic_write(snakemake.output.png, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
atomic_write(snakemake.output.pdf, lambda tmp: fig.savefig(tmp, format="pdf", bbox_inches="tight"))
