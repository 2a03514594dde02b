"""One architecture's impedance curves (dip.impedance.curves): its MSE to the image, the image plus
noise, shuffled pixels and uniform noise per iteration, as a long table with the architecture's name."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import torch

from dip.devices import pick_device
from dip.image_io import load_image, save_csv
from dip.impedance import curves
from dip.presets import architecture

torch.set_num_threads(snakemake.threads)
arch = snakemake.params.arch
spec = architecture(arch)
table = curves(
    spec["net"],
    load_image(snakemake.input.image),
    snakemake.params.iterations,
    device=pick_device(snakemake.params.device),
    settings=spec.get("settings", {}),
)
save_csv(table.assign(arch=arch), snakemake.output.curves)
