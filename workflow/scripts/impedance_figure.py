"""The impedance figure and table (dip.impedance.figure, reach_table) from every architecture's curves;
each row of the curves names its architecture."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from dip import impedance
from dip.image_io import save_figure, save_text
from dip.pipeline.tables import read_rows

curves, archs = read_rows(snakemake.input.curves), snakemake.params.archs
fig = impedance.figure(curves, archs)
save_figure(fig, snakemake.output.png)
save_figure(fig, snakemake.output.pdf)
table = impedance.reach_table(curves, archs, snakemake.params.thresholds)
save_text(impedance.reach_markdown(table), snakemake.output.table)
