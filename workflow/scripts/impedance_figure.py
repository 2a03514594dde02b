import sys

sys.stderr = open(snakemake.log[0], "w")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from dip.image_io import atomic_write, save_text
from dip.impedance import TARGETS, iterations_to_reach

archs, thresholds = snakemake.params.archs, snakemake.params.thresholds
frames = {arch: pd.read_csv(path) for arch, path in zip(archs, snakemake.input)}
fig, axes = plt.subplots(1, len(archs), figsize=(4 * len(archs), 3), squeeze=False)
rows = []
for ax, arch in zip(axes[0], archs):
    for target in TARGETS:
        curve = frames[arch][frames[arch]["target"] == target]
        ax.plot(curve["iteration"], curve["mse"], label=target)
        rows.append(
            {
                "arch": arch,
                "target": target,
                **{f"iterations to MSE {t:g}": iterations_to_reach(curve, t) for t in thresholds},
            }
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("MSE to the target")
    ax.set_title(arch, fontsize=9)
axes[0, 0].legend(fontsize=7)
atomic_write(snakemake.output.png, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
atomic_write(snakemake.output.pdf, lambda tmp: fig.savefig(tmp, format="pdf", bbox_inches="tight"))
table = pd.DataFrame(rows)
save_text(
    "# Impedance: iterations needed to reach each MSE (empty: not within the budget)\n\n"
    + table.to_markdown(index=False)
    + "\n",
    snakemake.output.table,
)
