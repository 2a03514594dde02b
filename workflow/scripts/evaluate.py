"""One fit's files → one row of runs.csv (dip.record.runs_row: every config value, provenance, metrics, and
per stopping rule the chosen iteration, its PSNR/SSIM, the detection gap to the oracle and the iterations it
saves). A real flash/no-flash pair has no ground truth: its row is unscored."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd

from dip import record
from dip.image_io import atomic_write, read_array

# The fit's folder (its files are this rule's inputs, or were written by the stacked job whose manifest is).
folder = Path(snakemake.params.fit)
fit = record.read(folder / "summary.json")
scored = fit.status == "ok" and hasattr(snakemake.input, "clean")
row = record.runs_row(
    fit,
    image=snakemake.params.image,
    task_label=snakemake.params.task_label,
    history=pd.read_csv(folder / "history.csv") if scored else None,
    restored=read_array(folder / "restored.png") if scored else None,
    clean=read_array(snakemake.input.clean) if scored else None,
)
atomic_write(snakemake.output[0], lambda tmp: pd.DataFrame([row]).to_csv(tmp, index=False))
