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
images, archs, seeds = snakemake.params.images, snakemake.params.archs, snakemake.params.seeds
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

# Comparison grid: one row per image.
baseline_methods = sorted(p.stem for p in Path(snakemake.input.baseline_dirs[0]).glob("*.png"))
cols = 2 + len(baseline_methods) + len(archs)
fig, axes = plt.subplots(len(images), cols, figsize=(1.6 * cols, 1.7 * len(images)), squeeze=False)
for i, image in enumerate(images):
    bdir = Path(snakemake.input.baseline_dirs[i])
    bmetrics = pd.read_csv(bdir / "metrics.csv").set_index("method")
    show(axes[i, 0], snakemake.input.clean[i], f"{image}\nground truth")
    show(axes[i, 1], snakemake.input.observed[i], "observation")
    for j, method in enumerate(baseline_methods):
        show(axes[i, 2 + j], bdir / f"{method}.png", f"{method} {bmetrics.loc[method, 'psnr']:.2f} dB")
    for k, arch in enumerate(archs):
        row = runs[(runs["image"] == image) & (runs["arch"] == arch) & (runs["seed"] == first_seed)]
        ax = axes[i, 2 + len(baseline_methods) + k]
        if len(row) and row["status"].iloc[0] == "ok":
            path = Path(snakemake.input.summaries[k * len(images) + i]).with_name("restored.png")
            show(ax, path, f"DIP {arch} {row['psnr_restored_png'].iloc[0]:.2f} dB")
        else:
            ax.axis("off")
            ax.set_title(f"DIP {arch}: failed", fontsize=7)
fig.suptitle(f"{task}: PSNR against the ground truth", fontsize=9)
save(fig, snakemake.output.comparison, pdfs["comparison"])

# Learning curves: per architecture, mean over images, band = spread over seeds; stops marked.
histories = {}
for path in snakemake.input.histories:
    parts = Path(path).parts
    arch, image, seed = parts[-4], parts[-3], parts[-2]
    h = pd.read_csv(path)
    if len(h) and "psnr_ema" in h:
        histories[(arch, image, seed)] = h.set_index("iteration")
fig, ax = plt.subplots(figsize=(6, 3.6))
for color, arch in zip(plt.cm.tab10.colors, archs):
    per_seed = []
    for seed in seeds:
        curves = [histories[(arch, im, f"seed{seed}")]["psnr_ema"] for im in images if (arch, im, f"seed{seed}") in histories]
        if curves:
            per_seed.append(pd.concat(curves, axis=1).mean(axis=1))
    if not per_seed:
        continue
    stack = pd.concat(per_seed, axis=1)
    mean = stack.mean(axis=1)
    ax.plot(mean.index, mean, color=color, label=f"{arch} (EMA output)")
    if stack.shape[1] > 1:
        ax.fill_between(mean.index, stack.min(axis=1), stack.max(axis=1), color=color, alpha=0.25)
    sub = runs[(runs["arch"] == arch) & (runs["status"] == "ok")]
    for rule, marker in (("oracle", "*"), ("es-wmv", "v"), ("es-wmv-paper", "<"), ("es-emv", "^"),
                         ("discrepancy", "D")):
        if f"{rule}_iteration" in sub:
            its = sub[f"{rule}_iteration"].dropna().astype(int)
            ax.scatter(its, mean.reindex(its).values, marker=marker, color=color, edgecolor="k", s=40, zorder=3,
                       label=f"{arch} {rule}{' peak (analysis)' if rule == 'oracle' else ' stop'}")
ax.set_xlabel("iteration")
ax.set_ylabel("PSNR (dB), mean over images")
ax.set_title(f"{task}: learning curves (band: spread over seeds)", fontsize=9)
ax.legend(fontsize=6, ncol=2)
save(fig, snakemake.output.curves, pdfs["curves"])

# Architecture bars: DIP restored PSNR per architecture, with the best baseline as a line.
ok = runs[runs["status"] == "ok"]
stats = ok.groupby("arch")["psnr_restored_png"].agg(["mean", "std"]).reindex(archs)
fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(archs), 3))
ax.bar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), color="tab:blue", capsize=4)
base = pd.read_csv(snakemake.input.baselines)
base = base[(base["task_label"] == task) & (base["arch"] == "-")]
if len(base):
    best = base.loc[base["psnr_mean"].idxmax()]
    ax.axhline(best["psnr_mean"], color="tab:red", ls="--", label=f"best baseline: {best['method']}")
    ax.legend(fontsize=7)
ax.set_ylabel("PSNR (dB)")
ax.set_ylim(bottom=max(0, np.nanmin(stats["mean"].to_numpy()) - 6) if stats["mean"].notna().any() else 0)
ax.set_title(f"{task}: architectures", fontsize=9)
save(fig, snakemake.output.bars, pdfs["architectures"])
