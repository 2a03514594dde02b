"""Classical baselines of one image × task × observation (dip.pipeline.baselines): each method's image,
for the figures, and metrics.csv."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

from dip.image_io import Reading, read_array, save_csv, save_png, to_tensor
from dip.pipeline.baselines import baselines
from dip.tasks import Task

spec, given = snakemake.params.spec, snakemake.input
task = Task.from_params(spec["task"], spec)
images, metrics = baselines(
    task,
    read_array(given.observed, Reading(above_one=task.poisson)),
    # A real flash/no-flash pair has no ground truth: its baselines are saved for the figures, unscored.
    read_array(given.clean) if hasattr(given, "clean") else None,
    read_array(given.mask) if hasattr(given, "mask") else None,
    image=snakemake.params.image,
    task_label=snakemake.params.task_label,
    observation_seed=int(snakemake.params.observation_seed),
)
out = Path(snakemake.output[0])
for method, image in images.items():
    save_png(to_tensor(image), out / f"{method}.png")
save_csv(metrics, out / "metrics.csv")
