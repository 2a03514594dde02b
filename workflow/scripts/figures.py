"""One task's figures (dip.pipeline.figures.task_figures): comparison grid, learning curves with each
rule's stop marked, architecture bars; each as PNG and PDF."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd

from dip.image_io import save_figure
from dip.pipeline.figures import task_figures

figures = task_figures(
    snakemake.params.task,
    snakemake.params.shown,
    pd.read_csv(snakemake.input.runs),
    pd.read_csv(snakemake.input.summary),
)
for name, fig in figures.items():
    save_figure(fig, snakemake.output[name])
    save_figure(fig, snakemake.output[f"{name}_pdf"])
