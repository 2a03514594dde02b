"""
Your own forward operator
=========================

Any inverse problem whose forward model you can write in PyTorch is fitted by `dip.restore`. Here a
64×64 image is observed through 15 % of its Fourier coefficients, denser towards the lowest frequencies,
as an accelerated MRI scan samples them. Subclass `dip.operators.Operator`, write ``forward`` in torch
operations (autograd backpropagates through it: no adjoint needed) and, since the observation is not
the image's shape, ``image_size``; ``to`` moves the tensors it holds to the fit's device. 400
iterations of the ``skip`` network; the naive reconstruction beside it is the zero-filled inverse
transform.
"""

import matplotlib.pyplot as plt
import torch
from skimage import data, transform

from dip import restore
from dip.metrics import psnr
from dip.operators import Operator


class MaskedFourier(Operator):
    """y = M ⊙ F(x): the orthonormal 2-D DFT of each channel, kept where the 0/1 mask M (H, W) is 1.
    Real and imaginary parts side by side along the width: (N, C, H, W) -> (N, C, H, 2W)."""

    def __init__(self, kept: torch.Tensor):
        self.kept = kept

    def forward(self, x):
        k = torch.fft.fft2(x, norm="ortho") * self.kept
        return torch.cat([k.real, k.imag], dim=-1)

    def image_size(self, observed):  # the image is H x W, the observation H x 2W
        return observed.shape[-2], observed.shape[-1] // 2

    def to(self, device):
        self.kept = self.kept.to(device)
        return self

    def zero_filled(self, observed):
        """The naive reconstruction: the inverse DFT with zeros at the frequencies not observed."""
        w = observed.shape[-1] // 2
        return torch.fft.ifft2(torch.complex(observed[..., :w], observed[..., w:]), norm="ortho").real


image = transform.resize(data.camera(), (64, 64), anti_aliasing=True)  # grey, floats in [0, 1]
clean = torch.from_numpy(image).float()[None, None]  # (1, 1, 64, 64)
f = torch.fft.fftfreq(64)
radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()  # cycles per pixel
density = (1 - radius / radius.max()) ** 4  # denser towards low frequencies
draw = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
kept = ((draw < 0.15 * density / density.mean()) | (radius < 0.05)).float()  # ~15 %, every lowest one

operator = MaskedFourier(kept)
observed = operator(clean)  # (1, 1, 64, 128)
result = restore(observed, operator, settings={"iterations": 400}, device="cpu")

# %%
# The frequencies kept, the zero-filled reconstruction, DIP and the ground truth:

panels = {
    "zero-filled": operator.zero_filled(observed)[0, 0].clamp(0, 1).numpy(),
    "DIP": result.image[0, 0].numpy(),
    "clean": image,
}
fig, axes = plt.subplots(1, 4, figsize=(10, 3))
axes[0].imshow(torch.fft.fftshift(kept).numpy(), cmap="gray")
axes[0].set_title(f"kept frequencies\n{kept.mean():.0%}")
axes[0].axis("off")
for ax, (name, shown) in zip(axes[1:], panels.items()):
    ax.imshow(shown, cmap="gray", vmin=0, vmax=1)
    ax.set_title(name if name == "clean" else f"{name}\n{psnr(shown, image):.2f} dB")
    ax.axis("off")
fig.tight_layout()

# %%
# There is no ``dip fit`` command for an operator of your own: `dip.restore` is its one entry point, with
# every feature of the loop (stopping rules, checkpoints, batched seeds; see its docstring). The same
# network and settings for a built-in task from the shell would be, e.g.::
#
#     dip fit --task denoise --sigma 25 --image crop.png --iters 400 --out denoised
