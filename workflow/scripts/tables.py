"""runs.csv, summary.csv/.md and stopping.csv/.md from the per-fit and per-baseline rows
(dip.pipeline.tables)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from dip.image_io import save_csv, save_text
from dip.pipeline.tables import read_baselines, read_rows, tables

result = tables(read_rows(snakemake.input.runs), read_baselines(snakemake.input.baselines))
save_csv(result.runs, snakemake.output.runs)
save_csv(result.summary, snakemake.output.summary)
save_text(result.summary_md, snakemake.output.summary_md)
save_csv(result.stopping, snakemake.output.stopping)
save_text(result.stopping_md, snakemake.output.stopping_md)
