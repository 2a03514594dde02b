import sys

sys.stderr = open(snakemake.log[0], "w")

import torch

from dip.devices import pick_device
from dip.image_io import load_image, save_csv
from dip.impedance import curves
from dip.presets import architecture

torch.set_num_threads(snakemake.threads)
spec = architecture(snakemake.wildcards.arch)
table = curves(
    spec["net"],
    load_image(snakemake.input[0]),
    snakemake.params.iterations,
    device=pick_device(snakemake.params.device),
    settings=spec.get("settings", {}),
)
save_csv(table.assign(arch=snakemake.wildcards.arch), snakemake.output[0])
