"""paper_vs_ours.csv/.md/.png: our fits beside the numbers the paper publishes (data/published), per image
and per dataset mean. A row whose scoring convention differs from the published one is labelled, and a
published cell we have not transcribed stays empty."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from dip import manifest as manifest_io
from dip.image_io import atomic_write, save_csv, save_text

runs = pd.read_csv(snakemake.input.runs)
dataset = manifest_io.read(snakemake.input.manifest)["dataset"]  # "" where the manifest names none
published = (pd.read_csv(snakemake.input.published, dtype={"image": str}).fillna({"image": ""})
             if snakemake.input.get("published") else
             pd.DataFrame(columns=["task", "dataset", "image", "method", "psnr", "convention"]))
channels = snakemake.params.channels

# Rows without a ground truth (a real flash/no-flash pair) have no scores, and a run of only such rows not
# even the columns: their cells stay empty.
ok = runs[runs["status"] == "ok"].reindex(columns=[*runs.columns, *(c for c in ("psnr_restored_png", "oracle_psnr")
                                                                     if c not in runs)])
ok["dataset"] = ok["image"].map(dataset).fillna("").replace("", "-")


def convention(row) -> str:
    """How we score the row: the task's convention (dip.tasks), in the published table's words."""
    if row["task"] == "sr":
        return f"Y, shave {int(row['factor'])}"
    return "RGB" if channels[row["image"]] == 3 else "grey"


ok["ours_convention"] = ok.apply(convention, axis=1)
keys = ["task_label", "dataset", "image", "arch"]
per_image = (ok.groupby(keys).agg(ours_restored=("psnr_restored_png", "mean"), ours_oracle=("oracle_psnr", "mean"),
                                  seeds=("seed", "nunique"), ours_convention=("ours_convention", "first"))
             .reset_index())
# Dataset means over images (of the per-image seed means), as the paper averages.
means = (per_image.groupby(["task_label", "dataset", "arch"])
         .agg(ours_restored=("ours_restored", "mean"), ours_oracle=("ours_oracle", "mean"), seeds=("seeds", "min"),
              images=("image", "nunique"),
              # A mean over images scored differently (RGB and grey) says so: never silently mixed.
              ours_convention=("ours_convention", lambda c: " + ".join(sorted(set(c))))).reset_index()
         .assign(image="(mean)"))
table = pd.concat([per_image.assign(images=1), means], ignore_index=True)

published = published.assign(image=published["image"].replace("", "(mean)"))
dip = published[published["method"] == "DIP"].rename(
    columns={"psnr": "published_dip", "convention": "published_convention", "task": "task_label"})
base = published[~published["method"].str.startswith("DIP")].drop_duplicates(["task", "dataset", "image"]).rename(
    columns={"psnr": "published_baseline", "method": "baseline_method", "task": "task_label"})
table = (table.merge(dip[["task_label", "dataset", "image", "published_dip", "published_convention"]],
                     on=["task_label", "dataset", "image"], how="left")
         .merge(base[["task_label", "dataset", "image", "published_baseline", "baseline_method"]],
                on=["task_label", "dataset", "image"], how="left"))
table["difference"] = table["ours_restored"] - table["published_dip"]
differs = table["published_convention"].notna() & (table["published_convention"] != table["ours_convention"])
mixed = table["ours_convention"].str.contains(" + ", regex=False)
table["note"] = differs.map({True: "conventions differ: not comparable", False: ""})
table.loc[mixed & ~differs, "note"] = "mean over images scored differently"
table.loc[differs, "difference"] = float("nan")  # never a difference across conventions
table = table.sort_values(["task_label", "dataset", "arch", "image"], key=lambda c: c.replace("(mean)", "~"))
columns = ["task_label", "dataset", "image", "arch", "published_dip", "ours_restored", "ours_oracle", "difference",
           "published_baseline", "baseline_method", "seeds", "images", "ours_convention", "published_convention",
           "note"]
table = table[columns].rename(columns={"task_label": "task"})
save_csv(table, snakemake.output.csv)

lines = ["# Paper vs ours", "",
         "PSNR (dB). published: Ulyanov et al., CVPR 2018 (data/published, with the source of each number); "
         "ours: restored.png (the EMA output at the end of the budget) and the oracle (best EMA iterate, analysis "
         "only), mean over seeds, then over images for a dataset mean. difference = ours (restored) − published "
         "DIP, only where both use the same convention. Empty: the paper gives no number there, or we have not "
         "transcribed it.", ""]
for task, part in table.groupby("task", sort=False):
    shown = part.drop(columns="task").round(2)
    shown = shown.astype(object).where(shown.notna(), None)  # empty cells, not "nan"
    lines += [f"## {task}", "", shown.to_markdown(index=False, missingval=""), ""]
save_text("\n".join(lines), snakemake.output.md)

# The figure: per task, published DIP (where given) beside ours, per image and dataset mean.
tasks = list(table["task"].unique())
fig, axes = plt.subplots(len(tasks), 1, figsize=(max(6, 0.6 * len(table) / max(len(tasks), 1) + 3), 3 * len(tasks)),
                         squeeze=False)
for ax, task in zip(axes[:, 0], tasks):
    part = table[table["task"] == task]
    labels = [f"{r.dataset}/{r.image}" + (f" ({r.arch})" if part["arch"].nunique() > 1 else "")
              for r in part.itertuples()]
    x = range(len(part))
    ax.bar([i - 0.2 for i in x], part["published_dip"].fillna(0), width=0.4, label="paper (DIP)", color="0.6")
    ax.bar([i + 0.2 for i in x], part["ours_restored"], width=0.4, label="ours (restored)", color="tab:blue")
    ax.set_xticks(list(x), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("PSNR (dB)")
    low = pd.concat([part["ours_restored"], part["published_dip"]]).dropna()
    if len(low):
        ax.set_ylim(max(0, low.min() - 3), low.max() + 1)
    ax.set_title(task, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
atomic_write(snakemake.output.png, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
