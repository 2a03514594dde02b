"""One fit's files → one row of runs.csv: every config value, provenance, metrics, and per stopping rule
the chosen iteration, its PSNR/SSIM, the detection gap to the oracle and the iterations it saves."""

import json
import sys

sys.stderr = open(snakemake.log[0], "w")

import numpy as np
import pandas as pd

from dip.image_io import atomic_write, read_array, to_array, to_tensor
from dip.metrics import psnr, ssim
from dip.tasks import Task

summary = json.loads(open(snakemake.input.summary).read())
row = {"image": snakemake.params.image}
row.update({k: v for k, v in summary.items() if not isinstance(v, dict)})
# Tables and figures group by the config's task key; the fit's own label (e.g. denoise-s25-holdout0.05)
# stays beside it.
row["fit_label"], row["task_label"] = summary["task_label"], snakemake.params.task_label
row.update({f"setting_{k}": v for k, v in summary["settings"].items()})
row.update({f"version_{k}": v for k, v in summary["versions"].items()})

# A real flash/no-flash pair has no ground truth: its row has the fit's settings, provenance and each rule's
# stop, no scores.
scored = hasattr(snakemake.input, "clean")
if summary["status"] == "ok":
    budget = summary["iterations_budget"]
    for rule, rec in summary["stops"].items():
        row[f"{rule}_iteration"] = rec["iteration"]
        if rule not in ("oracle", "fixed"):
            stop_at = rec["stop_at"] if rec["stopped"] else budget
            row[f"{rule}_saved"] = max(0, budget - stop_at) / budget
            if rec.get("minimum") is not None:
                row[f"{rule}_minimum"] = rec["minimum"]
if summary["status"] == "ok" and scored:
    task = Task.from_params(summary["task"], summary)
    # SR: the ground truth centre-cropped to a multiple of the factor, as the fit restored it.
    clean = to_array(task.crop(to_tensor(read_array(snakemake.input.clean))))
    restored = read_array(snakemake.input.restored)
    # The saved 8-bit PNG is what a user gets: score that file, as the paper's script does.
    row["psnr_restored_png"] = psnr(restored, clean, **task.convention)
    row["ssim_restored_png"] = ssim(restored, clean, **task.convention)
    history = pd.read_csv(snakemake.input.history)
    oracle = summary["stops"]["oracle"]
    # The same rules judged on raw outputs (the ES-WMV paper's setting): raw PSNR at each rule's minimum.
    raw = history.set_index("iteration")["psnr"]
    row["oracle_psnr_raw"] = raw.max()
    for rule, rec in summary["stops"].items():
        judged = rule not in ("oracle", "fixed")  # the ground-truth-free rules, judged against the oracle
        if judged and rec.get("minimum") is not None:
            row[f"{rule}_psnr_raw"] = raw.loc[rec["minimum"]]
            row[f"{rule}_gap_raw"] = row["oracle_psnr_raw"] - row[f"{rule}_psnr_raw"]
        row[f"{rule}_psnr"] = rec.get("psnr", np.nan)
        row[f"{rule}_ssim"] = rec.get("ssim", np.nan)
        if judged:
            row[f"{rule}_gap"] = oracle["psnr"] - rec.get("psnr", np.nan)

atomic_write(snakemake.output[0], lambda tmp: pd.DataFrame([row]).to_csv(tmp, index=False))
