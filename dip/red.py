"""Regularisation by denoising (RED) for Deep Image Prior: DeepRED (Mataev, Elad, Milanfar, "DeepRED: Deep
Image Prior Powered by RED", ICCV Workshops 2019).

RED (Romano, Elad, Milanfar, "The Little Engine that Could: Regularization by Denoising (RED)", SIAM J.
Imaging Sci. 10(4), 2017) adds to an inverse problem the prior λ/2 · xᵀ(x − D(x)), whose gradient is
λ(x − D(x)) for a denoiser D that meets its conditions, so D is used as a black box and never
differentiated. DeepRED splits the image into the network's output f_θ(z) and a variable x tied to it by
ADMM (scaled dual u, penalty μ), each iteration of the fit being:

1. θ: one optimiser step on the data term plus μ · mean((f_θ(z) − (x − u))²);
2. x: one fixed-point step of the RED condition, x ← (λ D(x) + μ (f_θ(z) + u)) / (λ + μ), clipped to [0, 1];
3. u: u ← u + f_θ(z) − x.

D here is scikit-image's non-local means (`denoise_nl_means`, fast mode, 5×5 patches, a 13×13 search
window, h = 0.6 σ_D, patches compared over all channels at once), the denoiser of DeepRED's own
experiments, at their level σ_D = 3/255 and λ = μ = 0.5. D(x) is refreshed at the fit's host checks
(every `FitSettings.check_every` iterations, 25 by default; DeepRED refreshed it every 10) from the x of
that check, and held in between: it runs on the host, and the check is where the loop already waits for
the device. x starts as the fit's first output (not the observation, so that pixels held out of the fit
for the holdout rule stay out of it) and u at 0. The fit returns its EMA image as any fit does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dip.checks import is_number


@dataclass(frozen=True)
class RED:
    """The RED term of a fit (`dip.fit.RunOptions.red`).

    :param weight: λ, the weight of the prior λ/2 · xᵀ(x − D(x)) (> 0).
    :param mu: μ, the ADMM penalty tying x to the network's output (> 0), on the scale of the mean
        squared error over pixels (the data term's).
    :param sigma: σ_D, the noise level the denoiser is given, on the [0, 1] scale (> 0).

    >>> term = RED(weight=0.5)
    >>> term.describe()
    {'red weight': 0.5, 'red mu': 0.5, 'red sigma': 0.011765}
    >>> image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> tuple(term.denoise(image).shape)
    (3, 16, 16)
    """

    weight: float = 0.5
    mu: float = 0.5
    sigma: float = 3 / 255

    def __post_init__(self) -> None:
        for name in ("weight", "mu", "sigma"):
            value = getattr(self, name)
            if not (is_number(value) and 0 < value < np.inf):
                raise ValueError(f"red {name} must be a finite number > 0, got {value!r}")

    def describe(self) -> dict:
        """What a fit's record and checkpoint fingerprint say of the term."""
        return {"red weight": self.weight, "red mu": self.mu, "red sigma": round(self.sigma, 6)}

    def denoise(self, image: torch.Tensor) -> torch.Tensor:
        """D(x): non-local means of one image (C, H, W) in [0, 1], on the host (the baselines' own,
        `dip.pipeline.baselines.non_local_means`, at h = 0.6 σ_D); returns (C, H, W) float32 on the image's
        device."""
        from dip.pipeline.baselines import non_local_means

        array = np.moveaxis(image.detach().float().cpu().numpy(), 0, -1)
        denoised = np.moveaxis(non_local_means(array, self.sigma, h=0.6), -1, 0)
        return torch.from_numpy(np.ascontiguousarray(denoised, dtype=np.float32)).to(image.device)


__all__ = ["RED"]
