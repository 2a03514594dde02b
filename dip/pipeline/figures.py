"""The benchmark's figures (rules `figures` and `detection_gaps`), as matplotlib Figures for the caller to
save (`dip.image_io.save_figure`); built without pyplot, so no backend or global figure state is involved.
How a stopping rule is drawn (marker, colour, label) is its registry entry's (`dip.stopping.drawing`).

One task's figures take what they show as explicit records (the workflow's `get_figure_params`):
`images`, one dict per image in display order with its files: `image` (id), `clean` (ground truth, or
None), `flash` (a paired task's flash photograph, or None), `observed` (the observation's 8-bit preview)
and `baselines` (the baseline job's folder: `{method}.png` and metrics.csv); `fits`, one dict per
architecture × image fitted with the shown network seed: `arch`, `image`, `history` (history.csv) and
`restored` (restored.png). The scores come from runs.csv rows, matched on their own image, arch and seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dip.image_io import read_array
from dip.stopping import RULES, drawing

# Baselines that are the observation itself: not shown again, their score goes into the observation's title.
OBSERVATION_ITSELF = {"noisy", "jpeg", "noflash", "blurred"}


def _db(value: float) -> str:
    return f" {value:.2f} dB" if pd.notna(value) else ""


def _show(ax: Axes, path: str | Path, title: str) -> None:
    img = read_array(path)
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def _blank(ax: Axes, title: str) -> None:
    ax.axis("off")
    ax.set_title(title, fontsize=7)


def show_row(axes, panels: dict[str, np.ndarray], psnr, reference: str = "clean") -> None:
    """Draw images side by side, each titled with its name and its PSNR but the reference (the ground truth):
    the comparison the documentation's gallery and headline picture show.

    :param axes: one matplotlib Axes per panel (e.g. a row of `plt.subplots`); extra axes are left alone.
    :param panels: name -> image (H, W, C) or (H, W) in [0, 1], in display order; one channel is drawn grey.
    :param psnr: a callable giving an image's PSNR in dB against the ground truth
        (e.g. ``lambda x: task.score(x, truth)["psnr"]``).
    :param reference: the panel drawn without a score.
    """
    for ax, (name, image) in zip(axes, panels.items()):
        grey = image.ndim == 2 or image.shape[-1] == 1
        ax.imshow(image.reshape(image.shape[:2]) if grey else image, cmap="gray" if grey else None, vmin=0, vmax=1)
        ax.set_title(name if name == reference else f"{name}\n{psnr(image):.2f} dB")
        ax.axis("off")


def _fit_row(runs: pd.DataFrame, image: str, arch: str, seed: int) -> pd.DataFrame:
    """The runs.csv row of one fit (empty if it is missing)."""
    return runs[(runs["image"] == image) & (runs["arch"] == arch) & (runs["seed"] == seed)]


def task_figures(task: str, shown: dict, runs: pd.DataFrame, summary: pd.DataFrame) -> dict[str, Figure]:
    """One task's three figures, by name: "comparison" (`comparison_grid`), "curves" (`learning_curves`),
    "architectures" (`architecture_bars`). `task` is the config's task key (runs' task_label); `shown`
    holds `seed` (the network seed whose images and curves are shown), `archs` (in display order),
    `images` and `fits` (this module's docstring); `runs` is every fit's row (runs.csv), `summary`
    summary.csv."""
    runs = runs[runs["task_label"] == task]
    seed, archs, images, fits = shown["seed"], shown["archs"], shown["images"], shown["fits"]
    return {
        "comparison": comparison_grid(task, seed, archs, images, fits, runs),
        "curves": learning_curves(task, seed, archs, images, fits, runs),
        "architectures": architecture_bars(task, archs, runs, summary),
    }


def comparison_grid(
    task: str, seed: int, archs: list[str], images: list[dict], fits: list[dict], runs: pd.DataFrame
) -> Figure:
    """One row per image: its ground truth (and a paired task's flash photograph), the observation, each
    baseline (but those that are the observation itself) and each architecture's restored image of `seed`,
    titled with the PSNR against the ground truth (none where there is none)."""
    truths = {shown["image"] for shown in images if shown["clean"]}
    leading = ["ground truth"] * bool(truths) + ["flash"] * any(s["flash"] for s in images) + ["observation"]
    first = pd.read_csv(Path(images[0]["baselines"]) / "metrics.csv")["method"]
    methods = sorted(m for m in first if m not in OBSERVATION_ITSELF)
    restored = {(f["arch"], f["image"]): f["restored"] for f in fits}
    cols = len(leading) + len(methods) + len(archs)
    fig = Figure(figsize=(1.6 * cols, 2.0 * len(images)), layout="constrained")
    axes = fig.subplots(len(images), cols, squeeze=False)
    for row, shown in zip(axes, images):
        scores = pd.read_csv(Path(shown["baselines"]) / "metrics.csv").set_index("method")
        _leading_panels(row[: len(leading)], leading, shown, scores)
        for ax, method in zip(row[len(leading) :], methods):
            _show(ax, Path(shown["baselines"]) / f"{method}.png", f"{method}{_db(scores.loc[method, 'psnr'])}")
        for ax, arch in zip(row[len(leading) + len(methods) :], archs):
            fit = _fit_row(runs, shown["image"], arch, seed)
            if len(fit) and fit["status"].iloc[0] == "ok":
                score = _db(fit["psnr_restored_png"].iloc[0]) if "psnr_restored_png" in fit else ""
                _show(ax, restored[(arch, shown["image"])], f"DIP {arch}{score}")
            else:
                _blank(ax, f"DIP {arch}: failed")
    scored = f"{task}: PSNR against the ground truth" if truths else f"{task}: no ground truth, not scored"
    fig.suptitle(scored, fontsize=9)
    return fig


def _leading_panels(axes, leading: list[str], shown: dict, scores: pd.DataFrame) -> None:
    """An image's ground truth (or a note that it has none), flash photograph and observation, the
    observation titled with its own score (the row of the baseline that is the observation)."""
    image = shown["image"]
    itself = [m for m in OBSERVATION_ITSELF if m in scores.index]
    panels = {
        "ground truth": (shown["clean"], f"{image}: ground truth" if shown["clean"] else f"{image}: no ground truth"),
        "flash": (shown["flash"], f"{image}: flash (input)"),
        "observation": (shown["observed"], "observation" + (_db(scores.loc[itself[0], "psnr"]) if itself else "")),
    }
    for ax, name in zip(axes, leading):
        path, title = panels[name]
        if path:
            _show(ax, path, title)
        else:
            _blank(ax, title)


def learning_curves(
    task: str, seed: int, archs: list[str], images: list[dict], fits: list[dict], runs: pd.DataFrame
) -> Figure:
    """One panel per image (network seed `seed`): PSNR (dB) per iteration of the EMA output and the raw
    output against the ground truth, each architecture in its colour, and each rule's kept iteration
    (runs' `{rule}_iteration`) marked on the EMA curve as the rule's drawing says; without a ground truth
    the curve is the fit to the observation."""
    histories = {(f["arch"], f["image"]): pd.read_csv(f["history"]) for f in fits}
    cols = min(3, len(images))
    rows_n = -(-len(images) // cols)
    fig = Figure(figsize=(3.4 * cols, 2.6 * rows_n))
    axes = fig.subplots(rows_n, cols, squeeze=False, sharex=True)
    for ax, shown in zip(axes.flat, images):
        for color, arch in zip(colormaps["tab10"].colors, archs):
            history = histories.get((arch, shown["image"]))
            if history is not None and len(history):
                _curve(ax, history.set_index("iteration"), arch, color, _fit_row(runs, shown["image"], arch, seed))
        ax.set_title(shown["image"] if shown["clean"] else f"{shown['image']} (no ground truth)", fontsize=8)
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
        unique.values(),
        unique.keys(),
        fontsize=6,
        ncol=min(6, len(unique)),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
    )
    fig.suptitle(f"{task}: PSNR per iteration (seed {seed}); markers: the image each rule keeps", fontsize=9, y=1.03)
    return fig


def _curve(ax: Axes, history: pd.DataFrame, arch: str, color, fit: pd.DataFrame) -> None:
    """One architecture's curves in one panel, with the iteration each rule (and the oracle) keeps."""
    raw, curve = ("psnr", "psnr_ema") if "psnr_ema" in history else (None, "psnr_observed")
    if raw:
        ax.plot(history.index, history[raw], color=color, lw=0.6, alpha=0.45, label=f"{arch} raw")
    ax.plot(
        history.index, history[curve], color=color, lw=1.2, label=f"{arch} EMA" if raw else f"{arch} to the observation"
    )
    for name in ("oracle", *RULES):
        style, column = drawing(name), f"{name}_iteration"
        if style.marker is None or not len(fit) or column not in fit or pd.isna(fit[column].iloc[0]):
            continue
        it = int(fit[column].iloc[0])
        ax.scatter(
            [it],
            [history.loc[it, curve]],
            marker=style.marker,
            color=color,
            edgecolor="k",
            s=36,
            zorder=3,
            label=style.label,
        )


def architecture_bars(task: str, archs: list[str], runs: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """DIP's restored PSNR (dB) per architecture, mean ± std over images and seeds of the fits that ended
    ok, with the best baseline's mean (summary.csv rows of arch "-") as a dashed line."""
    ok = runs[runs["status"] == "ok"]
    if "psnr_restored_png" not in ok:  # no image of the run has a ground truth: empty bars
        ok = ok.assign(psnr_restored_png=np.nan)
    stats = ok.groupby("arch")["psnr_restored_png"].agg(["mean", "std"]).reindex(archs)
    fig = Figure(figsize=(1.2 + 0.9 * len(archs), 3))
    ax = fig.subplots()
    ax.bar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), color="tab:blue", capsize=4)
    base = summary[(summary["task_label"] == task) & (summary["arch"] == "-") & summary["psnr_mean"].notna()]
    if len(base):
        best = base.loc[base["psnr_mean"].idxmax()]
        ax.axhline(best["psnr_mean"], color="tab:red", ls="--", label=f"best baseline: {best['method']}")
        ax.legend(fontsize=7)
    ax.set_ylabel("PSNR (dB)")
    ax.set_ylim(bottom=max(0, np.nanmin(stats["mean"].to_numpy()) - 6) if stats["mean"].notna().any() else 0)
    ax.set_title(f"{task}: architectures", fontsize=9)
    return fig


def detection_gaps(runs: pd.DataFrame) -> Figure:
    """Histogram of each rule's detection gap (runs' `{rule}_gap`: oracle PSNR − rule PSNR, dB) over the
    fits that ended ok, in the rule's colour, with its median and worst gap in the legend."""
    runs = runs[runs["status"] == "ok"]
    fig = Figure(figsize=(5, 3))
    ax = fig.subplots()
    for name in RULES:
        gaps = runs[f"{name}_gap"].dropna() if f"{name}_gap" in runs else pd.Series(dtype=float)
        if len(gaps):
            style = drawing(name)
            label = f"{style.label}: median {gaps.median():.2f} dB, worst {gaps.max():.2f} dB"
            ax.hist(gaps, bins=20, alpha=0.6, color=style.color, label=label)
    ax.set_xlabel("detection gap: oracle PSNR − rule PSNR (dB)")
    ax.set_ylabel("fits")
    ax.legend(fontsize=7)
    return fig
