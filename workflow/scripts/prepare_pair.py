"""Manifest pair row → its no-flash and flash photographs as PNG, cropped and resized alike."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from dip import manifest
from dip.image_io import save_png, to_tensor

for name in ("noflash", "flash"):
    image = manifest.prepare(manifest.load_source(snakemake.input[name]), **snakemake.params.pair)
    save_png(to_tensor(image), snakemake.output[name])
