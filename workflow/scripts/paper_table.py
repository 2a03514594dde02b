"""paper_vs_ours.csv/.md/.png: our fits (and our CBM3D, where the bm3d extra is installed) beside the paper's
numbers (data/published), per image and per dataset mean, published and derived kept apart (dip.paper)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd

from dip import manifest as manifest_io
from dip import paper
from dip.image_io import atomic_write, save_csv, save_text

runs = pd.read_csv(snakemake.input.runs)
dataset = manifest_io.read(snakemake.input.manifest)["dataset"].to_dict()  # "" where the manifest names none
published = (
    paper.read_published(snakemake.input.published)
    if snakemake.input.get("published")
    else paper.check_published(pd.DataFrame(columns=list(paper.REQUIRED)))
)

baselines = pd.concat([pd.read_csv(Path(p) / "metrics.csv") for p in snakemake.input.baselines], ignore_index=True)
table = paper.paper_vs_ours(runs, dataset, snakemake.params.channels, published, baselines)
save_csv(table, snakemake.output.csv)
save_text(paper.markdown(table, published), snakemake.output.md)
fig = paper.figure(table)
atomic_write(snakemake.output.png, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
