"""Manifest row → ground-truth PNG (cropped, resized, sides a multiple of 8) and its mask, if any."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

from dip import manifest
from dip.image_io import read_array, save_png, to_tensor

source = snakemake.params.source
image = manifest.prepare(manifest.load_source(source["path"]), source["crop"], source["resize"])
save_png(to_tensor(image), snakemake.output[0])
if source["mask"]:
    mask = manifest.prepare(read_array(source["mask"]), source["crop"], source["resize"])
    save_png(to_tensor(mask), Path(snakemake.output[0]).with_name("mask.png"))
