"""
Super-resolution ×4
===================

A 64×64 crop of scikit-image's cat photograph (chelsea) shrunk to 16×16 with PIL's Lanczos filter, as
the paper does, and enlarged 4× again. Deep Image Prior fits a 64×64 image whose Lanczos-2 downsampling
(`dip.operators.SuperResolve`) matches the 16×16 observation, for 300 iterations; bicubic
interpolation is the classical method. SR papers score the luminance with a border of 4 pixels shaved,
and so do the PSNRs in the figure titles.
"""

import matplotlib.pyplot as plt
import numpy as np
from skimage import data, transform

from dip import restore
from dip.image_io import to_array, to_tensor
from dip.pipeline.baselines import restore as classical
from dip.tasks import Task

photo = transform.resize(data.chelsea(), (96, 144), anti_aliasing=True)
clean = to_tensor(photo[6:70, 44:108].astype(np.float32))  # (1, 3, 64, 64)

task = Task("sr", factor=4)
observed, _ = task.degrade(clean, observation_seed=0)  # (1, 3, 16, 16)
# The network and settings `dip fit` uses for this task (its paper preset), within a shorter budget:
result = restore(observed, task.operator(), settings={"iterations": 300}, device="cpu")

# %%
# The low-resolution observation (shown enlarged, pixel for pixel), bicubic, DIP and the ground truth:

low, truth = to_array(observed), to_array(clean)
panels = {
    "bicubic": np.clip(classical(task, low)["bicubic"], 0, 1),
    "DIP": to_array(result.image),
    "clean": truth,
}
fig, axes = plt.subplots(1, 4, figsize=(10, 3))
axes[0].imshow(low, interpolation="nearest")
axes[0].set_title("observed\n16×16")
axes[0].axis("off")
for ax, (name, image) in zip(axes[1:], panels.items()):
    ax.imshow(image)
    ax.set_title(name if name == "clean" else f"{name}\n{task.score(image, truth)['psnr']:.2f} dB")
    ax.axis("off")
fig.tight_layout()

# %%
# The same fit from the shell (``--image`` is the high-resolution ground truth, which ``dip fit``
# shrinks; a low-resolution photograph of your own is ``--observed``)::
#
#     dip fit --task sr --factor 4 --image crop.png --iters 300 --out enlarged
