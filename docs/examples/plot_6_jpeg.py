"""
JPEG artefacts
==============

A 64×64 crop of scikit-image's astronaut photograph saved as a JPEG of quality 10: blocks and ringing.
Deep Image Prior fits the JPEG image itself (`dip.operators.JpegArtifacts`: the identity with a squared
error) with the paper's narrow network for this task (``skip-jpeg``), and its early iterations leave the
artefacts out; 400 iterations here. The classical method beside it is total-variation smoothing of the
JPEG image (Chambolle, weight 0.02).
"""

import matplotlib.pyplot as plt
import numpy as np
from skimage import data, transform

from dip import restore
from dip.image_io import to_array, to_tensor
from dip.pipeline.baselines import total_variation
from dip.pipeline.figures import show_row
from dip.tasks import Task

photo = transform.resize(data.astronaut(), (128, 128), anti_aliasing=True)
clean = to_tensor(photo[48:112, 52:116].astype(np.float32))  # (1, 3, 64, 64)

task = Task("jpeg", quality=10)
observed, _ = task.degrade(clean, observation_seed=0)
# The network and settings `dip fit` uses for this task (its paper preset), within a shorter budget:
result = restore(observed, task.operator(), settings={"iterations": 400}, device="cpu")

# %%
# Observed, restored, the classical method and the ground truth, PSNR against the clean image:

jpeg, truth = to_array(observed), to_array(clean)
panels = {
    "JPEG, quality 10": jpeg,
    "DIP": to_array(result.image),
    "total variation": np.clip(total_variation(jpeg, 0.02), 0, 1),
    "clean": truth,
}
fig, axes = plt.subplots(1, 4, figsize=(10, 3))
show_row(axes, panels, lambda image: task.score(image, truth)["psnr"])
fig.tight_layout()

# %%
# The same fit from the shell (a JPEG of your own is ``--observed photo.jpg``, no ``--quality`` needed)::
#
#     dip fit --task jpeg --quality 10 --image crop.png --iters 400 --out deblocked
