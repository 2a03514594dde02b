"""Files of one manifest row (a pair's two photographs, or an inpainting mask) → PNGs cropped and resized
as the row says (sides a multiple of 8, as its ground truth's), each output named as its input; a mask is
read by its meaning (dip.image_io.load_mask: bright or opaque = known) and written as 0/255."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from dip import manifest
from dip.image_io import save_png, to_tensor

for name in snakemake.output.keys():
    image = manifest.prepare(manifest.load_source(snakemake.input[name], mask=name == "mask"), **snakemake.params.row)
    save_png(to_tensor(image), snakemake.output[name])
