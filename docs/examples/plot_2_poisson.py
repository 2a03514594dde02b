"""
Poisson denoising
=================

Shot noise: each pixel of a 64×64 crop of scikit-image's camera photograph counts photons, on average
10 for a pixel of value 1 (``peak`` 10), so the noise grows with the brightness. Deep Image Prior fits
the counts through the Poisson likelihood (`dip.operators.Poisson`: its loss is the Poisson deviance,
not the squared error) within a budget of 300 iterations, stopped by the task's
default rule (`dip.defaults`: the holdout rule). The classical method beside it is the Anscombe transform,
which makes the noise about Gaussian, then non-local means, then the exact unbiased inverse transform.
"""

import matplotlib.pyplot as plt
import numpy as np
from skimage import data, transform

from dip import restore
from dip.image_io import to_array, to_tensor
from dip.pipeline.baselines import restore as classical
from dip.pipeline.figures import show_row
from dip.tasks import Task

photo = transform.resize(data.camera(), (128, 128), anti_aliasing=True)
clean = to_tensor(photo[8:72, 36:100, None].astype(np.float32))  # (1, 1, 64, 64), grey

task = Task("denoise", noise="poisson", peak=10)
observed, _ = task.degrade(clean, observation_seed=0)  # counts / peak: may exceed 1, never clipped
# The network and settings `dip fit` uses for this task (its paper preset), within a shorter budget:
result = restore(observed, task.operator(), settings={"iterations": 300}, device="cpu")

# %%
# Observed, restored, the classical method and the ground truth, PSNR against the clean image:

counts, truth = to_array(observed, clip=False), to_array(clean)
panels = {
    "noisy (peak 10)": np.clip(counts, 0, 1),
    "DIP": to_array(result.image),
    "Anscombe + NLM": np.clip(classical(task, counts)["anscombe_nlm"], 0, 1),
    "clean": truth,
}
fig, axes = plt.subplots(1, 4, figsize=(10, 3))
show_row(axes, panels, lambda image: task.score(image, truth)["psnr"])
fig.tight_layout()

# %%
# The same fit from the shell (``dip fit`` writes the observation also as ``observed.tif``, float32, since
# Poisson counts reach above 1)::
#
#     dip fit --task denoise --noise poisson --peak 10 --image crop.png --iters 300 --out denoised
