"""One task's figures: comparison grid, learning curves (seeds as a band, stops marked), architecture bars."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dip.image_io import atomic_write, read_array

task = snakemake.wildcards.task
shown = snakemake.params.shown
images, archs, seeds = shown["images"], shown["archs"], shown["seeds"]
# Ground truths and flash photographs by image (a real flash/no-flash pair has no ground truth).
truths = dict(zip([i for i, has in zip(images, shown["ground_truth"]) if has], snakemake.input.clean))
flashes = dict(zip(images, snakemake.input.flash))
runs = pd.read_csv(snakemake.input.runs)
runs = runs[runs["task_label"] == task]
first_seed = int(seeds[0])


def save(fig, png, pdf):
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    atomic_write(pdf, lambda tmp: fig.savefig(tmp, format="pdf", bbox_inches="tight"))
    plt.close(fig)


def show(ax, path, title):
    img = read_array(path)
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=7)
    ax.axis("off")


pdfs = dict(zip(("comparison", "curves", "architectures"), snakemake.output.pdfs))

# Comparison grid: one row per image. The baselines that are the observation itself ("noisy", "jpeg",
# "noflash") are not shown again: their score goes into the observation's title.
OBSERVATION_ITSELF = {"noisy", "jpeg", "noflash", "blurred"}
baseline_methods = sorted(
    p.stem for p in Path(snakemake.input.baseline_dirs[0]).glob("*.png") if p.stem not in OBSERVATION_ITSELF
)
leading = [name for name, present in (("ground truth", truths), ("flash", flashes)) if present] + ["observation"]
cols = len(leading) + len(baseline_methods) + len(archs)
fig, axes = plt.subplots(
    len(images), cols, figsize=(1.6 * cols, 2.0 * len(images)), squeeze=False, layout="constrained"
)


def db(value):
    return f" {value:.2f} dB" if pd.notna(value) else ""


for i, image in enumerate(images):
    bdir = Path(snakemake.input.baseline_dirs[i])
    bmetrics = pd.read_csv(bdir / "metrics.csv").set_index("method")
    itself = [m for m in OBSERVATION_ITSELF if m in bmetrics.index]
    panels = {
        "ground truth": (
            truths.get(image),
            f"{image}: ground truth" if image in truths else f"{image}: no ground truth",
        ),
        "flash": (flashes.get(image), f"{image}: flash (input)"),
        "observation": (
            snakemake.input.observed[i],
            "observation" + (db(bmetrics.loc[itself[0], "psnr"]) if itself else ""),
        ),
    }
    for j, name in enumerate(leading):
        path, title = panels[name]
        if path:
            show(axes[i, j], path, title)
        else:
            axes[i, j].axis("off")
            axes[i, j].set_title(title, fontsize=7)
    for j, method in enumerate(baseline_methods):
        show(axes[i, len(leading) + j], bdir / f"{method}.png", f"{method}{db(bmetrics.loc[method, 'psnr'])}")
    for k, arch in enumerate(archs):
        row = runs[(runs["image"] == image) & (runs["arch"] == arch) & (runs["seed"] == first_seed)]
        ax = axes[i, len(leading) + len(baseline_methods) + k]
        if len(row) and row["status"].iloc[0] == "ok":
            path = snakemake.input.restored[k * len(images) + i]
            show(ax, path, f"DIP {arch}{db(row['psnr_restored_png'].iloc[0]) if 'psnr_restored_png' in row else ''}")
        else:
            ax.axis("off")
            ax.set_title(f"DIP {arch}: failed", fontsize=7)
fig.suptitle(f"{task}: PSNR against the ground truth" if truths else f"{task}: no ground truth, not scored", fontsize=9)
save(fig, snakemake.output.comparison, pdfs["comparison"])

# Learning curves, one panel per image (first seed): the EMA output and the raw output against the
# ground truth, each architecture in its colour, and every rule's kept iteration marked on the EMA curve.
histories = {}
for path in snakemake.input.histories:
    parts = Path(path).parts
    arch, image, seed = parts[-4], parts[-3], parts[-2]
    h = pd.read_csv(path)
    if len(h):
        histories[(arch, image, seed)] = h.set_index("iteration")
MARKERS = {"oracle": "*", "es-wmv": "v", "es-wmv-paper": "<", "es-emv": "^", "discrepancy": "D", "holdout": "s"}
cols = min(3, len(images))
rows_n = -(-len(images) // cols)
fig, axes = plt.subplots(rows_n, cols, figsize=(3.4 * cols, 2.6 * rows_n), squeeze=False, sharex=True)
for ax, image in zip(axes.flat, images):
    for color, arch in zip(plt.cm.tab10.colors, archs):
        h = histories.get((arch, image, f"seed{first_seed}"))
        if h is None:
            continue
        # Without a ground truth (a real flash/no-flash pair) the curve is the fit to the observation.
        raw, curve = ("psnr", "psnr_ema") if "psnr_ema" in h else (None, "psnr_observed")
        if raw:
            ax.plot(h.index, h[raw], color=color, lw=0.6, alpha=0.45, label=f"{arch} raw")
        ax.plot(h.index, h[curve], color=color, lw=1.2, label=f"{arch} EMA" if raw else f"{arch} to the observation")
        row = runs[(runs["image"] == image) & (runs["arch"] == arch) & (runs["seed"] == first_seed)]
        for rule, marker in MARKERS.items():
            column = f"{rule}_iteration"
            if len(row) and column in row and pd.notna(row[column].iloc[0]):
                it = int(row[column].iloc[0])
                ax.scatter(
                    [it],
                    [h.loc[it, curve]],
                    marker=marker,
                    color=color,
                    edgecolor="k",
                    s=36,
                    zorder=3,
                    label=f"{rule}{' (analysis)' if rule == 'oracle' else ''}",
                )
    ax.set_title(image if image in truths else f"{image} (no ground truth)", fontsize=8)
    ax.tick_params(labelsize=6)
for ax in axes.flat[len(images) :]:
    ax.axis("off")
for ax in axes[-1]:
    ax.set_xlabel("iteration", fontsize=7)
for ax in axes[:, 0]:
    ax.set_ylabel("PSNR (dB)", fontsize=7)
handles, labels = axes.flat[0].get_legend_handles_labels()
unique = dict(zip(labels, handles))
# The legend goes under the panels, where it cannot run into the title however many rules there are.
fig.legend(
    unique.values(), unique.keys(), fontsize=6, ncol=min(6, len(unique)), loc="upper center", bbox_to_anchor=(0.5, 0.0)
)
fig.suptitle(f"{task}: PSNR per iteration (seed {first_seed}); markers: the image each rule keeps", fontsize=9, y=1.03)
save(fig, snakemake.output.curves, pdfs["curves"])

# Architecture bars: DIP restored PSNR per architecture, with the best baseline as a line.
ok = runs[runs["status"] == "ok"]
if "psnr_restored_png" not in ok:  # no image of the run has a ground truth: empty bars
    ok = ok.assign(psnr_restored_png=np.nan)
stats = ok.groupby("arch")["psnr_restored_png"].agg(["mean", "std"]).reindex(archs)
fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(archs), 3))
ax.bar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), color="tab:blue", capsize=4)
base = pd.read_csv(snakemake.input.baselines)
base = base[(base["task_label"] == task) & (base["arch"] == "-") & base["psnr_mean"].notna()]
if len(base):
    best = base.loc[base["psnr_mean"].idxmax()]
    ax.axhline(best["psnr_mean"], color="tab:red", ls="--", label=f"best baseline: {best['method']}")
    ax.legend(fontsize=7)
ax.set_ylabel("PSNR (dB)")
ax.set_ylim(bottom=max(0, np.nanmin(stats["mean"].to_numpy()) - 6) if stats["mean"].notna().any() else 0)
ax.set_title(f"{task}: architectures", fontsize=9)
save(fig, snakemake.output.bars, pdfs["architectures"])
