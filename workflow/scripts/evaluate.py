"""One fit's files → one row of runs.csv (dip.record.runs_row: every config value, provenance, metrics, and
per stopping rule the chosen iteration, its PSNR/SSIM, the detection gap to the oracle and the iterations it
saves). A real flash/no-flash pair has no ground truth: its row is unscored."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd

from dip import record
from dip.image_io import atomic_write, read_array

fit = record.read(snakemake.input.summary)
scored = fit.status == "ok" and hasattr(snakemake.input, "clean")
row = record.runs_row(
    fit,
    image=snakemake.params.image,
    task_label=snakemake.params.task_label,
    history=pd.read_csv(snakemake.input.history) if scored else None,
    restored=read_array(snakemake.input.restored) if scored else None,
    clean=read_array(snakemake.input.clean) if scored else None,
)
atomic_write(snakemake.output[0], lambda tmp: pd.DataFrame([row]).to_csv(tmp, index=False))
