"""The paper's impedance experiment (Figure 2): how fast a network fits a natural image compared with
the same image plus noise, its pixels shuffled, and uniform noise. H is the identity, the loss is the MSE
to the target, no input perturbation and no EMA, so the history's `loss` column is the curve to plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from dip.fit import FitSettings, fit
from dip.operators import Denoise, Operator
from dip.seeds import generator

TARGETS = ("image", "image + noise", "shuffled pixels", "uniform noise")


def targets(clean: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """The four targets, drawn one after the other from the `observation` stream of `seed`."""
    gen = generator(seed, "observation")
    c, h, w = clean.shape[1:]
    order = torch.randperm(h * w, generator=gen)
    shuffled = clean.reshape(1, c, h * w)[..., order].reshape(1, c, h, w)
    return {
        "image": clean,
        "image + noise": Denoise(25).observe(clean, gen),
        "shuffled pixels": shuffled,
        "uniform noise": torch.rand(clean.shape, generator=gen),
    }


def curves(arch: dict, clean: torch.Tensor, iterations: int, seed: int = 0, **fit_options) -> pd.DataFrame:
    """Long table: target, iteration, mse."""
    settings = FitSettings(
        iterations=iterations, reg_noise_std=0.0, ema=0.0, seed=seed, **fit_options.pop("settings", {})
    )
    frames = []
    for name, target in targets(clean, seed).items():
        history = fit(arch, Operator(), target, settings, **fit_options).history
        frames.append(pd.DataFrame({"target": name, "iteration": history["iteration"], "mse": history["loss"]}))
    return pd.concat(frames, ignore_index=True)


def iterations_to_reach(curve: pd.DataFrame, threshold: float) -> float:
    """First iteration whose MSE is at or below `threshold` (NaN if never within the budget)."""
    hit = curve.loc[curve["mse"] <= threshold, "iteration"]
    return float(hit.iloc[0]) if len(hit) else np.nan


def reach_table(curves: pd.DataFrame, archs: list[str], thresholds: list[float]) -> pd.DataFrame:
    """Iterations each architecture needs to reach each MSE on each target (NaN: not within the budget),
    one row per arch × target in the order of `archs` and TARGETS, from the long table of every
    architecture's `curves` (columns arch, target, iteration, mse)."""
    rows = []
    for arch in archs:
        for target in TARGETS:
            curve = curves[(curves["arch"] == arch) & (curves["target"] == target)]
            reach = {f"iterations to MSE {t:g}": iterations_to_reach(curve, t) for t in thresholds}
            rows.append({"arch": arch, "target": target, **reach})
    return pd.DataFrame(rows)


def reach_markdown(table: pd.DataFrame) -> str:
    """impedance.md: `reach_table` under a title saying what an empty cell means."""
    title = "# Impedance: iterations needed to reach each MSE (empty: not within the budget)"
    return f"{title}\n\n{table.to_markdown(index=False)}\n"


def figure(curves: pd.DataFrame, archs: list[str]) -> Figure:
    """One panel per architecture: the MSE to each target per iteration, both axes logarithmic (the
    paper's Figure 2), from the same long table as `reach_table`."""
    fig = Figure(figsize=(4 * len(archs), 3))
    axes = fig.subplots(1, len(archs), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        for target in TARGETS:
            curve = curves[(curves["arch"] == arch) & (curves["target"] == target)]
            ax.plot(curve["iteration"], curve["mse"], label=target)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("MSE to the target")
        ax.set_title(arch, fontsize=9)
    axes[0, 0].legend(fontsize=7)
    return fig
