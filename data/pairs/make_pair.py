"""Writes the bundled synthetic flash/no-flash pair (coffee_flash.png, coffee_noflash.png and the noise-free
coffee_reference.png) from scikit-image's coffee photograph, 128×128, observation seed 0:
    python data/pairs/make_pair.py
See dip.tasks.synthetic_flash_pair for how the pair is made."""

from pathlib import Path

from dip import manifest
from dip.image_io import save_png, to_tensor
from dip.tasks import synthetic_flash_pair

here = Path(__file__).parent
clean = to_tensor(manifest.prepare(manifest.load_source("skimage:coffee"), "100,0,400,400", "128"))
for name, image in synthetic_flash_pair(clean, observation_seed=0).items():
    save_png(image, here / f"coffee_{name}.png")
