"""runs.csv, summary.csv/.md and stopping.csv/.md from the per-fit and per-baseline rows (pandas)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

import pandas as pd

from dip.image_io import save_csv, save_text

runs = pd.concat([pd.read_csv(p) for p in snakemake.input.runs], ignore_index=True)
save_csv(runs, snakemake.output.runs)
baselines = pd.concat([pd.read_csv(Path(p) / "metrics.csv") for p in snakemake.input.baselines], ignore_index=True)

# Rows without a ground truth (a real flash/no-flash pair) have no scores; a run of only such rows has
# not even the columns.
SCORES = ["psnr_restored_png", "ssim_restored_png", "psnr_final", "ssim_final", "oracle_psnr"]
ok = runs[runs["status"] == "ok"].reindex(columns=[*runs.columns, *(c for c in SCORES if c not in runs)])
dip_rows = pd.concat(
    [
        ok.assign(method=f"DIP {kind}", psnr=ok[f"psnr_{col}"], ssim=ok[f"ssim_{col}"])
        for kind, col in (("(restored)", "restored_png"), ("(last iterate)", "final"))
    ]
)
oracle = ok.assign(method="DIP oracle (analysis)", psnr=ok["oracle_psnr"], ssim=float("nan"))
# The discrepancy rule's image where the task's observation is noisy (every fit records it then).
noisy = ok[ok["discrepancy_psnr"].notna()] if "discrepancy_psnr" in ok else ok.iloc[:0]
discrepancy = noisy.assign(
    method="DIP (discrepancy rule)", psnr=noisy.get("discrepancy_psnr"), ssim=noisy.get("discrepancy_ssim")
)
rows = pd.concat([dip_rows, discrepancy, oracle, baselines.assign(arch="-")], ignore_index=True)


def mean_std(values: pd.Series) -> str:
    return f"{values.mean():.2f} ± {values.std(ddof=0):.2f}" if values.notna().any() else ""


summary = (
    rows.groupby(["task_label", "arch", "method"], sort=False)
    .agg(
        psnr_mean=("psnr", "mean"),
        psnr_std=("psnr", lambda v: v.std(ddof=0)),
        psnr_median=("psnr", "median"),
        ssim_mean=("ssim", "mean"),
        ssim_std=("ssim", lambda v: v.std(ddof=0)),
        n=("psnr", "size"),
    )
    .reset_index()
)
failed = runs[runs["status"] != "ok"].groupby(["task_label", "arch"]).size().rename("failed")
summary = summary.merge(failed, on=["task_label", "arch"], how="left").fillna({"failed": 0})
save_csv(summary, snakemake.output.summary)

table = (
    rows.groupby(["task_label", "arch", "method"], sort=False)
    .agg(
        PSNR=("psnr", mean_std),
        median=("psnr", lambda v: round(v.median(), 2)),
        SSIM=("ssim", mean_std),
        n=("psnr", "size"),
    )
    .reset_index()
    .rename(columns={"task_label": "task"})
)
lines = [
    "# Deep Image Prior benchmark",
    "",
    "PSNR (dB) and SSIM, mean ± std (and the PSNR's median) over images and seeds. SR: luminance, border of",
    "`factor` px shaved.",
    "DIP (restored) is the saved restored.png (EMA output); the oracle is the best EMA iterate, an",
    "analysis upper bound that needs the ground truth.",
    "",
]
for task, part in table.groupby("task", sort=False):
    lines += [f"## {task}", "", part.drop(columns="task").to_markdown(index=False), ""]
if len(failed):
    lines += [
        "## Failed fits",
        "",
        runs.loc[runs["status"] != "ok", ["task_label", "arch", "image", "seed", "error"]].to_markdown(index=False),
        "",
    ]
save_text("\n".join(lines), snakemake.output.summary_md)

if "holdout_gap" in ok:
    # A fit that holds pixels out sees less of the observation than its twin that does not (the same task
    # parameters, image, architecture and seed, no holdout); "holdout-vs-full" scores the holdout rule's
    # image against the twin's oracle, i.e. what choosing this rule costs in all, holding out included.
    keys = ["fit_label", "image", "arch", "seed"]
    twin = ok.loc[ok["holdout"].fillna(0) == 0, [*keys, "oracle_psnr"]].drop_duplicates(keys)
    held = ok["holdout"].fillna(0) > 0
    base = ok["fit_label"].str.replace(r"-holdout[0-9.e-]+$", "", regex=True)
    full = ok.assign(fit_label=base)[keys].merge(twin, on=keys, how="left")["oracle_psnr"].to_numpy()
    for col in ("psnr", "iteration", "saved"):
        ok[f"holdout-vs-full_{col}"] = ok[f"holdout_{col}"]
    ok["holdout-vs-full_gap"] = (full - ok["holdout_psnr"]).where(held)
rules = [c[: -len("_gap")] for c in ok.columns if c.endswith("_gap")]
# A rule that never reached a minimum (or crossing) in any fit has no raw-output columns: NaN, not an error.
ok = ok.reindex(
    columns=[
        *ok.columns,
        *(f"{r}_{col}" for r in rules for col in ("gap_raw", "saved", "iteration") if f"{r}_{col}" not in ok.columns),
    ]
)
COLUMNS = [
    "task_label",
    "arch",
    "final_psnr",
    "oracle_psnr",
    "rule_psnr",
    "median_gap",
    "worst_gap",
    "median_gap_raw",
    "worst_gap_raw",
    "median_iteration",
    "median_saved",
    "fits",
    "rule",
]
# No rule is judged where no fit has a ground truth (real flash/no-flash pairs only): an empty table.
stopping = pd.concat(
    [pd.DataFrame(columns=COLUMNS)]
    + [
        ok.groupby(["task_label", "arch"])
        .agg(
            final_psnr=("psnr_final", "mean"),
            oracle_psnr=("oracle_psnr", "mean"),
            rule_psnr=(f"{r}_psnr", "mean"),
            median_gap=(f"{r}_gap", "median"),
            worst_gap=(f"{r}_gap", "max"),
            median_gap_raw=(f"{r}_gap_raw", "median"),
            worst_gap_raw=(f"{r}_gap_raw", "max"),
            median_iteration=(f"{r}_iteration", "median"),
            median_saved=(f"{r}_saved", "median"),
            fits=(f"{r}_gap", "count"),
        )
        .reset_index()
        .assign(rule=r)
        for r in rules
    ],
    ignore_index=True,
)
stopping = stopping[stopping["fits"] > 0]  # a rule that does not apply to a task (discrepancy on SR) has no row
save_csv(stopping, snakemake.output.stopping)
save_text(
    "# Stopping without ground truth\n\nPSNR (dB) of each rule's image against the oracle peak "
    "(analysis only): with the output EMA on, the EMA image taken the EMA's mean lag (99 iterations at "
    "0.99) after the variance minimum, against the best EMA image; gap = oracle − rule; saved = fraction "
    "of the budget a fit stopping at the rule would not run; *_raw: the raw output at the minimum against "
    "the best raw output (the ES-WMV paper's setting); holdout-vs-full: the holdout rule's image against "
    "the oracle of the same fit without held-out pixels (the twin task), the rule's whole cost.\n\n"
    + stopping.round(3).to_markdown(index=False)
    + "\n",
    snakemake.output.stopping_md,
)
