"""
Inpainting: text over an image
==============================

The words "Deep Image Prior" written over a 64×64 crop of scikit-image's coffee photograph: the pixels
under the text are unknown (`dip.operators.text_mask`). Deep Image Prior fits only the known pixels
(`dip.operators.Inpaint`: its loss ignores the masked ones) and the network fills the rest; the paper's
network for this task (``skip-text``: 128 channels on every skip connection), 300 iterations.
Biharmonic inpainting is the classical method.
"""

import matplotlib.pyplot as plt
import numpy as np
from skimage import data, transform

from dip import restore
from dip.image_io import to_array, to_tensor
from dip.pipeline.baselines import restore as classical
from dip.pipeline.figures import show_row
from dip.presets import PAPER, preset_key
from dip.tasks import Task

photo = transform.resize(data.coffee(), (96, 128), anti_aliasing=True)
clean = to_tensor(photo[16:80, 36:100].astype(np.float32))  # (1, 3, 64, 64)

task = Task("inpaint", mask="text")
observed, mask = task.degrade(clean, observation_seed=0)  # mask: (1, 1, 64, 64), 1 = known pixel
arch, settings = PAPER[preset_key(task)]
result = restore(observed, task.operator(mask), arch=arch, settings={**settings, "iterations": 300}, device="cpu")

# %%
# Observed (the unknown pixels black), restored, the classical method and the ground truth:

masked, truth = to_array(observed), to_array(clean)
panels = {
    "observed": masked,
    "DIP": to_array(result.image),
    "biharmonic": np.clip(classical(task, masked, to_array(mask))["biharmonic"], 0, 1),
    "clean": truth,
}
fig, axes = plt.subplots(1, 4, figsize=(10, 3))
show_row(axes, panels, lambda image: task.score(image, truth)["psnr"])
fig.tight_layout()

# %%
# The same fit from the shell (``--mask FILE`` instead of ``--text`` takes a mask of your own: bright =
# known pixel)::
#
#     dip fit --task inpaint --text --image crop.png --iters 300 --out inpainted
