"""The benchmark's tables from the per-fit rows (rule `evaluate`, one `metrics.csv` per fit) and the
per-baseline rows (rule `baselines`, one `metrics.csv` per image × task × observation seed).

- `summary`: PSNR (dB) and SSIM per task × architecture × method, mean, std (ddof 0) and median over
  images and seeds; the DIP rows are the saved restored.png, the last iterate, the discrepancy rule's
  image (noisy observations) and the oracle (an analysis upper bound); baselines have arch "-".
- `stopping`: per task × architecture × rule, the rule's PSNR against the oracle's (gap, dB), the same on
  raw outputs, the iteration it keeps and the fraction of the budget it saves; `holdout-vs-full` scores
  the holdout rule against the oracle of the twin fit that holds nothing out.

Every row carries its own keys (image, task_label, arch, seed, method): nothing depends on file order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

# Rows without a ground truth (a real flash/no-flash pair) have no scores; a run of only such rows has
# not even the columns.
SCORES = ["psnr_restored_png", "ssim_restored_png", "psnr_final", "ssim_final", "oracle_psnr"]
STOPPING_COLUMNS = [
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
SUMMARY_HEADER = [
    "# Deep Image Prior benchmark",
    "",
    "PSNR (dB) and SSIM, mean ± std (and the PSNR's median) over images and seeds. SR: luminance, border of",
    "`factor` px shaved.",
    "DIP (restored) is the saved restored.png (EMA output); the oracle is the best EMA iterate, which needs",
    "the ground truth: the bound of what a stopping rule can return (rules choose among EMA images). In a",
    "fit of a few hundred iterations the EMA still trails the last iterate, which can then score above it.",
    "",
]
STOPPING_HEADER = (
    "# Stopping without ground truth\n\nPSNR (dB) of each rule's image against the oracle peak "
    "(analysis only): with the output EMA on, the EMA image taken the EMA's mean lag (99 iterations at "
    "0.99) after the variance minimum, against the best EMA image; gap = oracle − rule; saved = fraction "
    "of the budget a fit stopping at the rule would not run; *_raw: the raw output at the minimum against "
    "the best raw output (the ES-WMV paper's setting); holdout-vs-full: the holdout rule's image against "
    "the oracle of the same fit without held-out pixels (the twin task), the rule's whole cost.\n\n"
)


@dataclass(frozen=True)
class Tables:
    """What rule `tables` writes: `runs` (runs.csv, one row per fit), `summary` (summary.csv) and its
    Markdown `summary_md`, `stopping` (stopping.csv) and its Markdown `stopping_md`."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    summary_md: str
    stopping: pd.DataFrame
    stopping_md: str


def read_rows(paths: Iterable[str | Path]) -> pd.DataFrame:
    """CSV files of rows with the same meaning (one per fit, say) → one frame, in the files' order."""
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def read_baselines(folders: Iterable[str | Path]) -> pd.DataFrame:
    """The `metrics.csv` of each baseline job's folder (rule `baselines`) → one frame."""
    return read_rows(Path(f) / "metrics.csv" for f in folders)


def tables(runs: pd.DataFrame, baselines: pd.DataFrame) -> Tables:
    """Every table of rule `tables` from the fits' rows (`runs`, evaluate's columns: status, task_label,
    arch, image, seed, psnr_*/ssim_*, {rule}_psnr/_gap/_iteration/...) and the baselines' rows (image,
    task_label, method, psnr, ssim)."""
    ok = scored_fits(runs)
    rows = method_rows(ok, baselines)
    stopping = stopping_table(ok)
    return Tables(runs, summary_table(rows, runs), summary_markdown(rows, runs), stopping, stopping_markdown(stopping))


def scored_fits(runs: pd.DataFrame) -> pd.DataFrame:
    """The fits that ended ok, with every score column (NaN where no image had a ground truth)."""
    return runs[runs["status"] == "ok"].reindex(columns=[*runs.columns, *(c for c in SCORES if c not in runs)])


def method_rows(ok: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """One row per fit (or baseline) and method with its `psnr` and `ssim`: DIP's restored.png, its last
    iterate, the discrepancy rule's image where the observation is noisy (every such fit records it), the
    oracle (no SSIM), and each baseline (arch "-")."""
    dip_rows = pd.concat(
        [
            ok.assign(method=f"DIP {kind}", psnr=ok[f"psnr_{col}"], ssim=ok[f"ssim_{col}"])
            for kind, col in (("(restored)", "restored_png"), ("(last iterate)", "final"))
        ]
    )
    oracle = ok.assign(method="DIP oracle (analysis)", psnr=ok["oracle_psnr"], ssim=float("nan"))
    noisy = ok[ok["discrepancy_psnr"].notna()] if "discrepancy_psnr" in ok else ok.iloc[:0]
    discrepancy = noisy.assign(
        method="DIP (discrepancy rule)", psnr=noisy.get("discrepancy_psnr"), ssim=noisy.get("discrepancy_ssim")
    )
    return pd.concat([dip_rows, discrepancy, oracle, baselines.assign(arch="-")], ignore_index=True)


def mean_std(values: pd.Series) -> str:
    """'mean ± std' (population std, 2 decimals); '' when every value is missing."""
    return f"{values.mean():.2f} ± {values.std(ddof=0):.2f}" if values.notna().any() else ""


def _failed(runs: pd.DataFrame) -> pd.Series:
    """Failed fits per (task_label, arch)."""
    return runs[runs["status"] != "ok"].groupby(["task_label", "arch"]).size().rename("failed")


def summary_table(rows: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """summary.csv: per task_label × arch × method (in order of appearance), psnr_mean/_std/_median,
    ssim_mean/_std, n (rows) and failed (fits of that task and architecture that failed)."""
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
    return summary.merge(_failed(runs), on=["task_label", "arch"], how="left").fillna({"failed": 0})


def summary_markdown(rows: pd.DataFrame, runs: pd.DataFrame) -> str:
    """summary.md: one section per task, PSNR and SSIM as 'mean ± std', the PSNR's median (2 decimals),
    and a section listing the failed fits with their error, if any."""
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
    lines = list(SUMMARY_HEADER)
    for task, part in table.groupby("task", sort=False):
        lines += [f"## {task}", "", part.drop(columns="task").to_markdown(index=False), ""]
    if len(_failed(runs)):
        failed = runs.loc[runs["status"] != "ok", ["task_label", "arch", "image", "seed", "error"]]
        lines += ["## Failed fits", "", failed.to_markdown(index=False), ""]
    return "\n".join(lines)


def with_holdout_vs_full(ok: pd.DataFrame) -> pd.DataFrame:
    """`ok` with the pseudo-rule holdout-vs-full's columns where fits hold pixels out: a fit that holds
    pixels out sees less of the observation than its twin that does not (the same task parameters, image,
    architecture and seed, no holdout); holdout-vs-full scores the holdout rule's image against the twin's
    oracle, i.e. what choosing this rule costs in all, holding out included."""
    if "holdout_gap" not in ok:
        return ok
    ok = ok.copy()
    keys = ["fit_label", "image", "arch", "seed"]
    twin = ok.loc[ok["holdout"].fillna(0) == 0, [*keys, "oracle_psnr"]].drop_duplicates(keys)
    held = ok["holdout"].fillna(0) > 0
    base = ok["fit_label"].str.replace(r"-holdout[0-9.e-]+$", "", regex=True)
    full = ok.assign(fit_label=base)[keys].merge(twin, on=keys, how="left")["oracle_psnr"].to_numpy()
    for col in ("psnr", "iteration", "saved"):
        ok[f"holdout-vs-full_{col}"] = ok[f"holdout_{col}"]
    ok["holdout-vs-full_gap"] = (full - ok["holdout_psnr"]).where(held)
    return ok


def stopping_table(ok: pd.DataFrame) -> pd.DataFrame:
    """stopping.csv: per task_label × arch × rule judged against the oracle (every `{rule}_gap` column),
    the means of the final, oracle and rule PSNR, the median and worst gap (also on raw outputs), the
    median kept iteration and saved fraction, and the fits that had the rule. A rule that does not apply
    to a task (discrepancy on SR) has no row; no fit with a ground truth: no row at all."""
    ok = with_holdout_vs_full(ok)
    rules = [c[: -len("_gap")] for c in ok.columns if c.endswith("_gap")]
    # A rule that never reached a minimum (or crossing) in any fit has no raw-output columns: NaN, not an error.
    missing = [f"{r}_{col}" for r in rules for col in ("gap_raw", "saved", "iteration") if f"{r}_{col}" not in ok]
    ok = ok.reindex(columns=[*ok.columns, *missing])
    per_rule = [
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
    ]
    stopping = pd.concat([pd.DataFrame(columns=STOPPING_COLUMNS), *per_rule], ignore_index=True)
    return stopping[stopping["fits"] > 0]


def stopping_markdown(stopping: pd.DataFrame) -> str:
    """stopping.md: what the columns mean, then the table rounded to 3 decimals."""
    return STOPPING_HEADER + stopping.round(3).to_markdown(index=False) + "\n"
