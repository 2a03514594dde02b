"""
Restoration: half the pixels missing
====================================

Half the pixels of a 64×64 crop of scikit-image's rocket photograph dropped at random (the paper's
"restoration" experiment; `dip.operators.random_drop`, drawn from the observation seed). Deep Image
Prior fits the known half with the ``skip`` network for 300 iterations at learning rate 0.01 (the
paper's notebook runs 11000 iterations at 0.001). Biharmonic inpainting is the classical method.
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

photo = transform.resize(data.rocket(), (64, 96), anti_aliasing=True)
clean = to_tensor(photo[:, 16:80].astype(np.float32))  # (1, 3, 64, 64)

task = Task("inpaint", mask="drop", drop=0.5)
observed, mask = task.degrade(clean, observation_seed=0)
arch, settings = PAPER[preset_key(task)]
settings = {**settings, "iterations": 300, "lr": 0.01}  # a short budget needs the larger step
result = restore(observed, task.operator(mask), arch=arch, settings=settings, device="cpu")

# %%
# Observed (the missing pixels black), restored, the classical method and the ground truth:

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
# The same fit from the shell::
#
#     dip fit --task inpaint --drop 0.5 --image crop.png --iters 300 --lr 0.01 --out restored
