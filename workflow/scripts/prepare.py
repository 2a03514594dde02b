"""Manifest row → ground-truth PNG (cropped, resized, sides a multiple of 8)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from dip import manifest
from dip.image_io import save_png, to_tensor

source = snakemake.params.source
image = manifest.prepare(manifest.load_source(source["path"]), source["crop"], source["resize"])
save_png(to_tensor(image), snakemake.output[0])
