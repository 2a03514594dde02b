"""Histogram of the detection gap (oracle PSNR − rule PSNR) of each stopping rule over all fits
(dip.pipeline.figures.detection_gaps)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd

from dip.image_io import save_figure
from dip.pipeline.figures import detection_gaps

fig = detection_gaps(pd.read_csv(snakemake.input.runs))
save_figure(fig, snakemake.output.png)
save_figure(fig, snakemake.output.pdf)
