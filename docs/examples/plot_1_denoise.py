"""
Gaussian denoising
==================

Noise of standard deviation σ = 25 (on the 0–255 scale) added to a 64×64 crop of scikit-image's
astronaut photograph, restored by Deep Image Prior: the paper's ``skip`` network fitted to the noisy
image itself, its output averaged over iterations (the EMA), within a budget of 300 iterations,
stopped by the task's default rule (`dip.defaults`: the holdout rule). Non-local means, given
the true σ, is the classical method beside it.
"""

import matplotlib.pyplot as plt
import numpy as np
from skimage import data, transform

from dip import restore
from dip.image_io import to_array, to_tensor
from dip.pipeline.baselines import restore as classical
from dip.pipeline.figures import show_row
from dip.tasks import Task

photo = transform.resize(data.astronaut(), (128, 128), anti_aliasing=True)
clean = to_tensor(photo[4:68, 34:98].astype(np.float32))  # (1, 3, 64, 64) in [0, 1]

task = Task("denoise", sigma=25)
observed, _ = task.degrade(clean, observation_seed=0)  # seeded: the same noise on every run
# The network and settings `dip fit` uses for this task (its paper preset), within a shorter budget:
result = restore(observed, task.operator(), settings={"iterations": 300}, device="cpu")

# %%
# Observed, restored, the classical method and the ground truth, PSNR against the clean image:

noisy, truth = to_array(observed), to_array(clean)
panels = {
    "noisy": noisy,
    "DIP": to_array(result.image),
    "non-local means": np.clip(classical(task, noisy)["nlm"], 0, 1),
    "clean": truth,
}
fig, axes = plt.subplots(1, 4, figsize=(10, 3))
show_row(axes, panels, lambda image: task.score(image, truth)["psnr"])
fig.tight_layout()

# %%
# The same fit from the shell, on the crop saved as a PNG (``dip fit`` writes ``observed.png``,
# ``restored.png``, the fit's history and ``summary.json`` into ``--out``)::
#
#     dip fit --task denoise --sigma 25 --image crop.png --iters 300 --out denoised
