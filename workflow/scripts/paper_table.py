"""paper_vs_ours.csv/.md/.png: our fits (and our CBM3D, where the bm3d extra is installed) beside the paper's
numbers (data/published), per image and per dataset mean, published and derived kept apart (dip.paper)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import matplotlib

matplotlib.use("Agg")
import pandas as pd

from dip import manifest as manifest_io
from dip import paper
from dip.image_io import save_csv, save_figure, save_text
from dip.pipeline.tables import read_baselines

runs = pd.read_csv(snakemake.input.runs)
dataset = manifest_io.read(snakemake.input.manifest)["dataset"].to_dict()  # "" where the manifest names none
published = (
    paper.read_published(snakemake.input.published)
    if snakemake.input.get("published")
    else paper.check_published(pd.DataFrame(columns=list(paper.REQUIRED)))
)
baselines = read_baselines(snakemake.input.baselines)
table = paper.paper_vs_ours(runs, dataset, snakemake.params.channels, published, baselines)
save_csv(table, snakemake.output.csv)
save_text(paper.markdown(table, published), snakemake.output.md)
save_figure(paper.figure(table), snakemake.output.png)
