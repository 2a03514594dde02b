"""Risk-estimate data terms: SURE (Gaussian noise) and PURE (Poisson noise), each an unbiased estimate of
the mean squared error of the restored image to the unknown clean one, computed from the observation alone.

Deep Image Prior fits ‖f(z) − y‖², whose minimiser is the noisy observation itself: the fit must be stopped
before it reproduces the noise. A risk estimate replaces that data term with one whose expectation is the
error to the clean image, E‖f(y) − x‖²/N, so that fitting it further no longer means fitting the noise
(Jo, Chun, Choi, "Rethinking Deep Image Prior for Denoising", ICCV 2021). Both estimates need the
divergence of the restoring map f with respect to the observation y, Σᵢ ∂fᵢ/∂yᵢ, which for a network is
taken by the Monte-Carlo finite difference of Ramani, Blu, Unser ("Monte-Carlo SURE: a black-box
optimization of regularization parameters for general denoising algorithms", IEEE TIP 17(9), 2008):

    div f(y) ≈ bᵀ (f(y + ε b) − f(y)) / ε,   b ~ N(0, I),

unbiased as ε → 0 (E[bbᵀ] = I), one extra evaluation of f per draw.

How the fit uses them (`dip.fit`, `RunOptions.risk`). f must be a function of y, so the network's input
is the observation itself, as in Jo et al. (the fit's `input` setting "image", the input image y): each
iteration feeds z' = y + reg_noise_std·n as usual (a fresh n from the fit's `perturbation` stream, close
to Jo et al.'s "eSURE", which perturbs the input with extra noise), evaluates f(z') and, in a second
forward pass, f(z' + ε b) with b drawn from the fit's own `divergence` stream (dip.seeds), and
backpropagates the estimate through both passes. The divergence is taken with respect to that input:
∂f/∂y = ∂f/∂z' since z' − y does not depend on y. BatchNorm stays in training mode in both passes, each
normalising with its own batch statistics; that is part of the map f whose divergence is estimated.

Units: images in [0, 1]; σ on that scale (σ₂₅₅/255); the peak P in counts of a pixel of value 1. The
estimates hold for unclipped noise; `dip.operators.Denoise` clips its observation to [0, 1], which biases
SURE where the image is near 0 or 1 (a few percent of the pixels at σ 25 on natural photographs).
"""

from __future__ import annotations

import torch

EPSILON = 1.6e-3
"""The finite difference's step as a fraction of the observation's largest magnitude: ε = 1.6·10⁻³ · max|y|
(about 1.6·10⁻³ for an image in [0, 1]), small enough that f is close to linear over it, large enough that
f(y + εb) − f(y) stays far above float32 rounding."""


def mc_divergence(out: torch.Tensor, out_probed: torch.Tensor, probe: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The Monte-Carlo divergence estimate of each of N maps: Σ probe ⊙ (out_probed − out) / ε per map.

    :param out: f(y), (N, ...).
    :param out_probed: f(y + ε·probe), the shape of `out`.
    :param probe: the probe b, the shape of `out` (N(0, I) draws: E[b bᵀ] = I makes the estimate unbiased
        for a linear f, and first-order accurate otherwise); a weighted probe w ⊙ b estimates Σ wᵢ ∂fᵢ/∂yᵢ.
    :param epsilon: the step ε > 0 in the units of y.
    :returns: a tensor (N,), each map's divergence estimate (a sum over its C·H·W entries).
    """
    return (probe * (out_probed - out)).flatten(1).sum(1) / epsilon


class RiskEstimate:
    """A risk-estimate data term: `loss(out, out_probed, probe, epsilon, observed)` → (N,), each fit's
    estimate of its mean squared error to the clean image. `epsilon(observed)` is the finite difference's
    step; `describe()` what determines it (recorded in the fit's fingerprint and summary.json)."""

    name = "risk"

    def epsilon(self, observed: torch.Tensor) -> float:
        return EPSILON * float(observed.abs().max().clamp_min(1e-6))

    def loss(
        self,
        out: torch.Tensor,
        out_probed: torch.Tensor,
        probe: torch.Tensor,
        epsilon: float,
        observed: torch.Tensor,
    ) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError


class SURE(RiskEstimate):
    """Stein's unbiased risk estimate for y = x + σ n, n ~ N(0, I), with the Monte-Carlo divergence
    (Ramani, Blu, Unser 2008; as a Deep Image Prior loss: Jo, Chun, Choi 2021):

        SURE(y) = ‖y − f(y)‖²/N − σ² + (2σ²/N) · div f(y),   E[SURE] = E‖f(y) − x‖²/N,

    N = C·H·W, div f(y) ≈ bᵀ(f(y + εb) − f(y))/ε (`mc_divergence`).

    :param sigma: the noise's standard deviation in the observation's units (σ₂₅₅/255 for an image in
        [0, 1]), > 0.

    >>> y = torch.zeros(1, 1, 4, 4)
    >>> SURE(0.1).loss(y, y, torch.ones_like(y), 1e-3, y)  # f = 0: the estimate is ‖y‖²/N − σ²
    tensor([-0.0100])
    """

    name = "sure"

    def __init__(self, sigma: float):
        if not sigma > 0:
            raise ValueError(f"SURE needs the noise's standard deviation > 0, got {sigma}")
        self.sigma = float(sigma)

    def loss(self, out, out_probed, probe, epsilon, observed):
        """Each fit's SURE (N,): out, out_probed, probe (N, C, H, W); observed (N or 1, C, H, W)."""
        n = out[0].numel()
        variance = self.sigma**2
        mse = (out - observed).square().flatten(1).mean(1)
        return mse - variance + 2 * variance * mc_divergence(out, out_probed, probe, epsilon) / n

    def describe(self) -> dict:
        return {"loss": "sure", "sure_sigma": self.sigma, "divergence_step": EPSILON}


class PURE(RiskEstimate):
    """The Poisson unbiased risk estimate (Luisier, Vonesch, Blu, Unser, "Fast interscale wavelet denoising
    of Poisson-corrupted images", Signal Processing 90(2), 2010), for dip's Poisson observation
    y = Y/P, Y ~ Poisson(P·x) (`dip.operators.Poisson`, peak P), with the divergence term taken by the
    Monte-Carlo finite difference (as in Jo, Chun, Choi 2021's Poisson variant; Le Montagner, Angelini,
    Olivo-Marin, IEEE TIP 2014).

    Derivation in these units. For a count Yᵢ ~ Poisson(λᵢ), E[λᵢ g(Y)] = E[Yᵢ g(Y − eᵢ)]; with
    yᵢ = Yᵢ/P and xᵢ = λᵢ/P this gives E[xᵢ fᵢ(y)] = E[yᵢ fᵢ(y − eᵢ/P)], and E[yᵢ² − yᵢ/P] = xᵢ². So

        E‖f(y) − x‖² = E[ ‖f(y)‖² − 2 Σᵢ yᵢ fᵢ(y − eᵢ/P) + Σᵢ (yᵢ² − yᵢ/P) ],

    and with fᵢ(y − eᵢ/P) ≈ fᵢ(y) − (1/P) ∂fᵢ/∂yᵢ (exact for an affine f):

        PURE(y) = ‖y − f(y)‖²/N − mean(y)/P + (2/(P·N)) Σᵢ yᵢ ∂fᵢ/∂yᵢ,

    the last sum estimated as (y ⊙ b)ᵀ(f(y + εb) − f(y))/ε (`mc_divergence` with the probe weighted by y).

    :param peak: P > 0, the expected count of a pixel of value 1.
    """

    name = "pure"

    def __init__(self, peak: float):
        if not peak > 0:
            raise ValueError(f"PURE needs the Poisson peak > 0, got {peak}")
        self.peak = float(peak)

    def loss(self, out, out_probed, probe, epsilon, observed):
        """Each fit's PURE (N,): out, out_probed, probe (N, C, H, W); observed (N or 1, C, H, W), y = Y/P."""
        n = out[0].numel()
        observed = observed.expand_as(out)
        mse = (out - observed).square().flatten(1).mean(1)
        weighted = mc_divergence(out, out_probed, probe * observed, epsilon)
        return mse - observed.flatten(1).mean(1) / self.peak + 2 * weighted / (self.peak * n)

    def describe(self) -> dict:
        return {"loss": "pure", "pure_peak": self.peak, "divergence_step": EPSILON}


def check_task(task) -> None:
    """Whether a task (dip.tasks.Task) has a risk estimate here: denoising with Gaussian noise (SURE; its σ
    given or estimated) or Poisson noise of known peak (PURE). Raises ValueError saying why not."""
    if task.name != "denoise":
        raise ValueError(
            f"applies to denoising (SURE for Gaussian noise, PURE for Poisson noise); the {task.name} task's "
            f"data term has no such risk estimate"
        )
    if task.poisson and task.peak is None:
        raise ValueError("PURE needs the Poisson peak (--peak P)")


def takes_the_observation(net: dict) -> bool:
    """Whether a network spec (dip.presets.architecture(name)["net"]) can take the observation as its input,
    as SURE/PURE need: every network but the deep decoder, whose input is smaller than its output."""
    return net.get("kind") != "deep_decoder"


def risk_estimate(operator, sigma: float | None = None) -> RiskEstimate:
    """The risk estimate of a denoising operator: PURE for `dip.operators.Poisson` with the identity
    forward operator (its peak), SURE for Gaussian denoising (`dip.operators.Denoise`, or the base
    `Operator`'s identity) with `sigma` (the observation's units), else ValueError saying why.

    :param operator: the fit's forward operator.
    :param sigma: Gaussian noise's standard deviation in the observation's units; None: `operator.sigma`
        (Denoise's, on the 0–255 scale, divided by 255) if it has one.
    :raises ValueError: an operator other than the identity (SURE and PURE here estimate the risk of a
        denoiser), or Gaussian noise of unknown level.
    """
    from dip.operators import Denoise, Operator, Poisson

    if isinstance(operator, Poisson):
        if type(operator.operator) is not Operator:
            raise ValueError("PURE applies to Poisson denoising (the identity forward operator), not to deblurring")
        return PURE(operator.peak)
    if type(operator) not in (Denoise, Operator):
        raise ValueError(
            f"SURE applies to denoising (Gaussian noise, the identity forward operator); "
            f"{type(operator).__name__} is another forward operator"
        )
    if sigma is None and getattr(operator, "sigma", None) is not None:
        sigma = operator.sigma / 255
    if sigma is None:
        raise ValueError("SURE needs the Gaussian noise's standard deviation (give the noise level)")
    return SURE(sigma)
