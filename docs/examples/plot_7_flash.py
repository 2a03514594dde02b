"""
Flash / no-flash
================

Two photographs of one scene: a noisy one taken without flash, and a clean one taken with flash, whose
light and colours differ. Deep Image Prior takes the flash photograph as the network's *input* (instead of
random noise) and fits the no-flash photograph: the result has the no-flash light with the flash
photograph's detail. The pair ships with dip (``data/pairs``: made from scikit-image's coffee photograph,
with its noise-free reference); a 64×64 centre of it, the paper's network for this task
(``skip-flash``) and settings (learning rate 0.1, no EMA), 300 iterations. Non-local means of the no-flash
photograph, at scikit-image's estimate of its noise level, is the classical method.

`dip.restore` has no option for a flash photograph as the network's input; such a fit goes through
`dip.fit.fit`.
"""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from dip.fit import FitSettings, fit
from dip.image_io import load_image, to_array
from dip.operators import Operator
from dip.pipeline.baselines import restore as classical
from dip.presets import ARCHITECTURES, PAPER
from dip.tasks import Task

# The pair ships in the repository's data/pairs: run this from the repository's root (or from docs/examples).
pairs = next(p for p in (Path("data/pairs"), Path("../../data/pairs")) if p.is_dir())
flash, noflash, reference = (
    load_image(pairs / f"coffee_{name}.png")[..., 32:96, 32:96] for name in ("flash", "noflash", "reference")
)

arch, settings = PAPER["flash"]
network = ARCHITECTURES[arch]
settings = FitSettings(**{**network["settings"], **settings, "iterations": 300})
result = fit(network["net"], Operator(), noflash, settings, input_image=flash, clean=reference, device="cpu")

# %%
# The two photographs, restored, the classical method and the noise-free reference:

task, truth, observed = Task("flash"), to_array(reference), to_array(noflash)
panels = {
    "flash (input)": to_array(flash),
    "no flash": observed,
    "DIP": to_array(result.image),
    "non-local means": np.clip(classical(task, observed)["nlm"], 0, 1),
    "reference": truth,
}
fig, axes = plt.subplots(1, 5, figsize=(12, 3))
for ax, (name, image) in zip(axes, panels.items()):
    ax.imshow(image)
    scored = name not in ("reference", "flash (input)")
    ax.set_title(f"{name}\n{task.score(image, truth)['psnr']:.2f} dB" if scored else name)
    ax.axis("off")
fig.tight_layout()

# %%
# The same fit from the shell, on the whole 128×128 pair (``--clean`` only scores)::
#
#     dip fit --task flash --flash data/pairs/coffee_flash.png --observed data/pairs/coffee_noflash.png \
#         --clean data/pairs/coffee_reference.png --iters 300 --out flash
