"""Degradations ("physics"): the forward operator H in the loss ‖H(f_θ(z)) − y‖², and how an
observation y is made from a clean image x. Images are tensors (1, C, H, W) in [0, 1]; every random
draw takes an explicit `torch.Generator`, so an observation is reproducible from its seed alone."""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from dip.checks import is_integer
from dip.image_io import from_pil, to_pil


class Operator:
    """A forward operator H: what the fit compares with the observation, ‖H(f_θ(z)) − y‖². The base class
    is the identity with an MSE loss; a task (or your own inverse problem) subclasses it and overrides what
    differs. `dip.restore` fits DIP through any subclass; the loop calls only the methods below.

    `forward(x)`, the one method to write: x is a batch of images (N, C, H, W), float32, on the fit's
    device (N fits stacked, 1 for a single fit; C the image's channels; values about [0, 1], not clipped).
    It returns the predicted observation (N, C, H', W'), float32, on the same device: any H'×W', but the
    same C and the shape of the observation the fit is given. It must be differentiable by autograd
    (torch operations on x, no `.detach()`, NumPy or in-place writes to x): the loop backpropagates
    through it, so no adjoint Hᵀ is needed. A complex result goes out as real numbers (e.g. real and
    imaginary parts side by side along the width).

    `loss(output, observed)`: the data term PER FIT, a tensor of shape (N,) (mean over every dimension but
    the first), not one scalar. The base class: `((forward(output) − observed)²).flatten(1).mean(1)`;
    override it for another noise model (e.g. a Poisson likelihood). The loop sums the N values for
    backward, records each fit's in its history and feeds it to the stopping rules (the discrepancy rule
    compares a window mean of it with the noise's σ²).

    `image_size(observed)`: H×W of the image to restore from an observation; override it when that is not
    the observation's own H'×W' (super-resolution, the masked Fourier example of docs/guide/operators.md).

    `to(device)`: move every tensor the operator holds (a mask, a kernel) to `device` and return self; it is
    called before fitting. The base class holds none.

    `observe(clean, generator)`: only to simulate an observation from a clean image (1, C, H, W) for a
    benchmark, drawing any randomness from `generator`; a fit never calls it.

    `mask`: None, or (1, 1, H', W') of 0/1 where the observation has no value (inpainting); holding pixels
    out for the holdout rule then chooses among the observed ones only.
    """

    mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def observe(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, output: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """The data term of each of N fits: mean squared error of H(output) (N, ...) to the observation
        (N or 1, ...), a tensor (N,)."""
        return self.pointwise_loss(output, observed).flatten(1).mean(1)

    def pointwise_loss(self, output: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """The data term per observed entry, (N, C, H', W'), whose mean over all but the first dimension is
        `loss`: the squared error here. Holding pixels out of the loss (`HeldOut`) averages it over the
        pixels kept, so an operator that overrides `loss` for another noise model overrides this too."""
        return (self.forward(output) - observed).square()

    def to(self, device: torch.device | str) -> Operator:
        return self

    def image_size(self, observed: torch.Tensor) -> tuple[int, int]:
        """H×W of the image to restore from an observation of this operator."""
        return tuple(observed.shape[-2:])


class Denoise(Operator):
    """y = clip(x + σ/255 · n, 0, 1), n ~ N(0, 1).

    sigma: noise standard deviation on the 0–255 scale, > 0 (the paper uses 25 and 50); None when it is
    unknown (a given noisy photograph): the operator then fits (its loss does not use σ) but cannot observe.

    >>> from dip.seeds import generator
    >>> y = Denoise(25).observe(torch.full((1, 3, 8, 8), 0.5), generator(0, "observation"))
    """

    def __init__(self, sigma: float | None = None):
        if sigma is not None and not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma = None if sigma is None else float(sigma)

    def observe(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.sigma is None:
            raise ValueError("sigma: an unknown noise level cannot make an observation")
        noise = torch.randn(clean.shape, generator=generator)
        return (clean + noise * self.sigma / 255).clamp(0, 1)


def lanczos2_taps(factor: int) -> torch.Tensor:
    """The paper's Lanczos-2 taps for downsampling by `factor`: k(x) = 2 sin(πx) sin(πx/2)/(π²x²) (k(0) = 1)
    at x = offset/factor, normalised to sum 1. A low-resolution pixel's centre lies between two
    high-resolution pixels for an even factor and on one for an odd factor, so an even factor samples
    phase 0.5 over 4·factor taps (x = ±(k + 0.5)/factor, the paper's kernel) and an odd factor phase 0
    over 4·factor − 1 taps (x = k/factor, −2·factor < k < 2·factor): either way centred on the low-resolution pixel."""
    n = 4 * factor if factor % 2 == 0 else 4 * factor - 1
    x = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) / factor
    safe = torch.where(x == 0, 1.0, x)
    taps = torch.where(
        x == 0, 1.0, 2 * torch.sin(math.pi * safe) * torch.sin(math.pi * safe / 2) / (math.pi**2 * safe**2)
    )
    return (taps / taps.sum()).float()


class SuperResolve(Operator):
    """y = D_f(k * x): separable Lanczos-2 blur then stride-f subsampling, H/f × W/f.

    factor: any integer >= 2 (the paper uses 2, 4 and 8). The observation itself is the clean image
    resized by 1/factor with PIL's antialiased Lanczos filter, as in the paper; the clean image's sides
    must be multiples of factor.

    >>> SuperResolve(4)(torch.rand(1, 3, 32, 32)).shape
    torch.Size([1, 3, 8, 8])
    """

    MIN_FACTOR = 2

    def __init__(self, factor: int):
        if not is_integer(factor) or factor < self.MIN_FACTOR:
            raise ValueError(f"SR factor must be an integer >= {self.MIN_FACTOR}, got {factor}")
        self.factor = int(factor)
        taps = lanczos2_taps(self.factor)
        self.kernel = (taps[:, None] * taps[None, :])[None, None]
        # Replication padding of (taps - factor)/2 on each side keeps the output exactly H/f × W/f.
        self.pad = (len(taps) - self.factor) // 2

    def to(self, device: torch.device | str) -> SuperResolve:
        self.kernel = self.kernel.to(device)
        return self

    def image_size(self, observed: torch.Tensor) -> tuple[int, int]:
        return observed.shape[-2] * self.factor, observed.shape[-1] * self.factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        x = F.pad(x, (self.pad,) * 4, mode="replicate")
        weight = self.kernel.to(x.dtype).expand(c, 1, -1, -1)
        return F.conv2d(x, weight, stride=self.factor, groups=c)

    def observe(self, clean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        h, w = clean.shape[-2:]
        if h % self.factor or w % self.factor:
            raise ValueError(f"image size {h}x{w} is not a multiple of the SR factor {self.factor}")
        low = to_pil(clean).resize((w // self.factor, h // self.factor), Image.LANCZOS)
        return from_pil(low)

    def upsample(self, low: torch.Tensor, method: str) -> torch.Tensor:
        """Baseline: PIL bicubic or nearest upsampling of the low-resolution image."""
        resample = {"bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[method]
        h, w = low.shape[-2:]
        return from_pil(to_pil(low).resize((w * self.factor, h * self.factor), resample))


class Inpaint(Operator):
    """y = m ⊙ x, with m a binary mask (1 = known pixel); the loss only sees known pixels.

    mask: tensor (1, 1, H, W) of 0/1, the same H×W as the image. Build one with `random_drop`,
    `text_mask`, `box_mask` or `dip.image_io.load_mask`.

    >>> from dip.seeds import generator
    >>> m = random_drop(16, 16, 0.5, generator(0, "observation"))
    >>> Inpaint(m).observe(torch.ones(1, 3, 16, 16)).mean().item() < 1
    True
    """

    def __init__(self, mask: torch.Tensor):
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask: a torch tensor (1, 1, H, W) of 0/1, got {type(mask).__name__}")
        if mask.dim() != 4 or mask.shape[:2] != (1, 1):
            raise ValueError(f"mask must have shape (1, 1, H, W), got {tuple(mask.shape)}")
        if not ((mask == 0) | (mask == 1)).all():  # a 0/255 mask would scale the known pixels
            raise ValueError("mask: values must be 0 (unknown) or 1 (known); dip.image_io.load_mask reads a file")
        self.mask = mask.float()

    def to(self, device: torch.device | str) -> Inpaint:
        self.mask = self.mask.to(device)
        return self

    def _check(self, x: torch.Tensor) -> None:
        if x.shape[-2:] != self.mask.shape[-2:]:
            raise ValueError(f"mask is {tuple(self.mask.shape[-2:])} but the image is {tuple(x.shape[-2:])}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask.to(x.dtype)

    def observe(self, clean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        self._check(clean)
        return self.forward(clean)


def random_drop(h: int, w: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Mask that drops each pixel (all channels) independently with probability `fraction`."""
    if not 0 < fraction < 1:
        raise ValueError(f"drop fraction must be in (0, 1), got {fraction}")
    return (torch.rand(1, 1, h, w, generator=generator) >= fraction).float()


def box_mask(h: int, w: int, size: float = 0.25, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mask with one missing box of `size`·H × `size`·W: centred, or at a random place given a generator."""
    bh, bw = max(1, round(h * size)), max(1, round(w * size))
    if generator is None:
        top, left = (h - bh) // 2, (w - bw) // 2
    else:
        top = int(torch.randint(0, h - bh + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - bw + 1, (1,), generator=generator))
    mask = torch.ones(1, 1, h, w)
    mask[..., top : top + bh, left : left + bw] = 0
    return mask


def text_mask(h: int, w: int, text: str = "Deep Image Prior") -> torch.Tensor:
    """Mask with text written over the image in lines, as in the paper's text-inpainting example."""
    canvas = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(8, h // 8))
    step = max(10, h // 5)
    for row, y in enumerate(range(step // 4, h, step)):
        draw.text((-(row * step) % max(1, w // 3), y), (text + " ") * 4, fill=0, font=font)
    return torch.from_numpy(np.asarray(canvas) > 127).float()[None, None]


class JpegArtifacts(Operator):
    """y = JPEG_q(x) (decoded); the forward operator is the identity.

    quality: JPEG quality 1–95 (PIL's scale); None when it is unknown (a given JPEG): the operator then
    fits but cannot observe.
    """

    def __init__(self, quality: int | None = None):
        if quality is not None and not 1 <= quality <= 95:
            raise ValueError(f"JPEG quality must be in 1..95, got {quality}")
        self.quality = None if quality is None else int(quality)

    def observe(self, clean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.quality is None:
            raise ValueError("quality: an unknown JPEG quality cannot make an observation")
        buffer = io.BytesIO()
        to_pil(clean).save(buffer, format="JPEG", quality=self.quality)
        buffer.seek(0)
        return from_pil(Image.open(buffer))


class HeldOut(Operator):
    """`operator` as a fit sees it when a random `fraction` of the observed pixels (all channels) is held
    out of the loss: the fit never sees them, so their error to the observation measures how well the
    restored image predicts pixels it was not fitted to, plus a noise term that does not change during
    the fit. That is the `holdout` stopping rule's signal (dip.stopping.HoldoutStop), in the spirit of
    the self-validation of Li et al. (2021) for single-image priors.

    Only pixels the observation has are held out (an inpainting mask's missing pixels stay missing).
    generator: the fit's `holdout` stream (dip.seeds), so the network seed fixes which pixels.
    """

    def __init__(self, operator: Operator, observed: torch.Tensor, fraction: float, generator: torch.Generator):
        if not 0 < fraction < 0.5:
            raise ValueError(f"holdout fraction must be in (0, 0.5), got {fraction}")
        h, w = observed.shape[-2:]
        held = (torch.rand(1, 1, h, w, generator=generator) < fraction).float()
        if operator.mask is not None:
            held = held * operator.mask.to(held.device)
        if not held.any():
            raise ValueError(f"holding out {fraction} of a {h}x{w} observation left no pixel to validate on")
        kind = type(operator)
        if kind.loss is not Operator.loss and kind.pointwise_loss is Operator.pointwise_loss:
            # Its own data term would silently become the squared error over the kept pixels.
            raise ValueError(
                f"{kind.__name__} overrides loss but not pointwise_loss: holding pixels out needs the data "
                "term per entry (dip.operators.Operator.pointwise_loss), or choose another stopping rule"
            )
        self.operator, self.fraction, self.held = operator, float(fraction), held

    @property
    def mask(self) -> torch.Tensor | None:
        return self.operator.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.operator.forward(x)

    def image_size(self, observed: torch.Tensor) -> tuple[int, int]:
        return self.operator.image_size(observed)

    def to(self, device: torch.device | str) -> HeldOut:
        self.operator, self.held = self.operator.to(device), self.held.to(device)
        return self

    def _mse_over(self, image: torch.Tensor, observed: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """MSE of H(image) to the observation over the pixels where `pixels` is 1, per image (N,)."""
        return ((self.forward(image) - observed).square() * pixels).flatten(1).mean(1) / pixels.mean()

    def loss(self, output: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """The operator's own data term (`pointwise_loss`: squared error, Poisson deviance) averaged over the
        pixels the fit keeps (the same scale as without holding out)."""
        kept = 1 - self.held
        return (self.operator.pointwise_loss(output, observed) * kept).flatten(1).mean(1) / kept.mean()

    def heldout_error(self, image: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """MSE of H(image) to the observation over the held-out pixels only, per image (N,)."""
        return self._mse_over(image, observed, self.held.to(image.device))


# --- Deblurring with a known blur, and Poisson noise -------------------------------------------------------


def gaussian_psf(sigma: float) -> torch.Tensor:
    """Isotropic Gaussian point-spread function, std `sigma` pixels (> 0): (2⌈3σ⌉+1)² taps, sum 1, float64."""
    if not sigma > 0:
        raise ValueError(f"Gaussian blur sigma must be > 0 pixels, got {sigma}")
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float64) ** 2) / (2 * sigma**2))
    return normalise_psf(taps[:, None] * taps[None, :])


def motion_psf(length: float, angle: float) -> torch.Tensor:
    """Linear motion blur: a segment `length` pixels long (>= 1) at `angle` degrees (counter-clockwise from
    the x axis, rows growing downwards), centred on the kernel's middle tap. The segment is sampled every
    0.05 px and each sample is splatted bilinearly, so fractional lengths and any angle give a smooth
    kernel; (2⌈length/2⌉+1)² taps, sum 1, float64."""
    if not length >= 1:
        raise ValueError(f"motion blur length must be >= 1 pixel, got {length}")
    radius = math.ceil(length / 2)
    size = 2 * radius + 1
    kernel = np.zeros((size, size))
    theta = math.radians(angle)
    for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, max(2, int(round(length * 20)) + 1)):
        x, y = radius + t * math.cos(theta), radius - t * math.sin(theta)
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                if 0 <= y0 + dy < size and 0 <= x0 + dx < size:
                    kernel[y0 + dy, x0 + dx] += wy * wx
    return normalise_psf(torch.from_numpy(kernel))


def normalise_psf(psf: torch.Tensor) -> torch.Tensor:
    """A point-spread function checked and scaled to sum 1 (float64, H×W). Raises ValueError, saying what
    is wrong, unless it is 2-D, of odd sides (so that it has a centre tap), finite, non-negative and not
    all zero."""
    psf = torch.as_tensor(psf, dtype=torch.float64)
    if psf.dim() != 2:
        raise ValueError(f"a PSF is one 2-D kernel, got an array of shape {tuple(psf.shape)}")
    if psf.shape[0] % 2 == 0 or psf.shape[1] % 2 == 0:
        raise ValueError(f"a PSF needs odd sides (a centre tap), got {psf.shape[0]}x{psf.shape[1]}")
    if not torch.isfinite(psf).all() or (psf < 0).any():
        raise ValueError("a PSF must be finite and non-negative")
    if not psf.sum() > 0:
        raise ValueError("a PSF must not be all zero")
    return psf / psf.sum()


def convolve(x: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
    """k ⊛ x with the image's borders reflected (x: (N, C, H, W); psf: (h, w), odd sides, each < the image's
    side): an output the size of x, each channel blurred alike. The PSF is flipped so that this is a
    convolution (a motion kernel points the way it is drawn), not a correlation."""
    ry, rx = psf.shape[0] // 2, psf.shape[1] // 2
    c = x.shape[1]
    weight = psf.flip(0, 1).to(x.dtype).to(x.device).expand(c, 1, -1, -1)
    return F.conv2d(F.pad(x, (rx, rx, ry, ry), mode="reflect"), weight, groups=c)


class Blur(Operator):
    """y = clip(k ⊛ x + σ/255 · n, 0, 1), n ~ N(0, 1): deblurring with a known point-spread function k.

    psf: 2-D kernel of odd sides, non-negative (normalised here to sum 1; `gaussian_psf`, `motion_psf`,
    or a file through `dip.image_io.load_psf`). sigma: noise std on the 0–255 scale (> 0; None: unknown,
    as for a given blurred photograph, which then fits but cannot observe; 0 is not a noise level).

    Boundary: the image's borders are reflected by the kernel's radius before blurring, so the observation
    has the image's size and the loss's forward model is exactly the one that made a simulated observation.
    A real blurred photograph (--observed) was blurred with the scene beyond its frame instead; the
    reflection only approximates that, within a kernel radius of the border.

    >>> from dip.seeds import generator
    >>> Blur(gaussian_psf(1.6), sigma=2).observe(torch.rand(1, 3, 32, 32), generator(0, "observation")).shape
    torch.Size([1, 3, 32, 32])
    """

    def __init__(self, psf: torch.Tensor, sigma: float | None = None):
        if sigma is not None and not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.psf = normalise_psf(psf).float()
        self.sigma = None if sigma is None else float(sigma)

    def to(self, device: torch.device | str) -> Blur:
        self.psf = self.psf.to(device)
        return self

    def check_size(self, h: int, w: int) -> None:
        if self.psf.shape[0] > h or self.psf.shape[1] > w:
            raise ValueError(f"the PSF ({self.psf.shape[0]}x{self.psf.shape[1]}) is larger than the image ({h}x{w})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return convolve(x, self.psf)

    def observe(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.sigma is None:
            raise ValueError("sigma: an unknown noise level cannot make an observation")
        self.check_size(*clean.shape[-2:])
        noise = torch.randn(clean.shape, generator=generator)
        return (self.forward(clean) + noise * self.sigma / 255).clamp(0, 1)


POISSON_EPS = 1e-6  # the least rate, in counts, the deviance takes: log(0) never reaches the gradient


def poisson_deviance(rate: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per-element Poisson deviance 2·[Y·log(Y/λ) − (Y − λ)] of counts Y at rates λ (clamped at POISSON_EPS):
    the negative log-likelihood of λ less its value at the saturated λ = Y, times 2. It is 0 where λ = Y,
    positive elsewhere, and its expectation at the true rate is about 1 for a large rate."""
    rate = rate.clamp_min(POISSON_EPS)
    return 2 * (torch.xlogy(counts, counts) - counts * rate.log() - counts + rate)


class Poisson(Operator):
    """y = Poisson(P · H(x)) / P: shot noise at `peak` P (the expected photon count of a pixel of value 1),
    after the forward operator H (`operator`: default the identity, i.e. denoising; a `Blur` for
    deblurring). y is not clipped: it reaches above 1 where a count exceeds P.

    The data term is the mean Poisson deviance per fit, in counts (`poisson_deviance` of P·H(x) against
    P·y): the negative log-likelihood up to a term that does not depend on x, so its minimiser is the
    maximum-likelihood one, scaled so that the discrepancy rule's target, the deviance's expectation at
    the truth (`poisson_discrepancy_target`), is about 1 wherever the rate is large.

    peak: > 0 (counts).

    >>> from dip.seeds import generator
    >>> y = Poisson(10).observe(torch.full((1, 1, 8, 8), 0.5), generator(0, "observation"))
    >>> bool((y * 10 == (y * 10).round()).all())
    True
    """

    def __init__(self, peak: float, operator: Operator | None = None):
        if not peak > 0 or not math.isfinite(peak):
            raise ValueError(f"the Poisson peak must be a finite number > 0, got {peak}")
        self.peak = float(peak)
        self.operator = operator if operator is not None else Operator()

    @property
    def psf(self) -> torch.Tensor | None:
        return getattr(self.operator, "psf", None)

    def to(self, device: torch.device | str) -> Poisson:
        self.operator = self.operator.to(device)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.operator.forward(x)

    def image_size(self, observed: torch.Tensor) -> tuple[int, int]:
        return self.operator.image_size(observed)

    def loss(self, output: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Mean Poisson deviance (counts) per fit: shape (N,)."""
        return self.pointwise_loss(output, observed).flatten(1).mean(1)

    def pointwise_loss(self, output: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Poisson deviance (counts) per entry, (N, C, H', W')."""
        return poisson_deviance(self.peak * self.forward(output), self.peak * observed)

    def observe(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if hasattr(self.operator, "check_size"):
            self.operator.check_size(*clean.shape[-2:])
        rate = (self.peak * self.forward(clean)).clamp_min(0).double()
        return (torch.poisson(rate, generator=generator) / self.peak).float()


def poisson_discrepancy_target(observed: torch.Tensor, peak: float) -> float:
    """E[D(Y; λ)], Y ~ Poisson(λ), averaged over the image with λ = P·x: the mean deviance a fit that
    reproduced the noise-free observation exactly would leave (the discrepancy rule's target). x is
    unknown, so the observation smoothed by a 5×5 Gaussian (σ 1 px) stands in for it, as for Gaussian
    noise (dip.stopping.clipped_noise_mse). The expectation is exact, a sum over the Poisson pmf, taken on
    a grid of 512 rates (log-spaced) and interpolated between them."""
    x = smoothed(observed).clamp_min(0)
    rates = (peak * x).flatten().cpu().numpy()
    low, high = max(float(rates.min()), 1e-4), max(float(rates.max()), 2e-4)
    grid = np.geomspace(low, high, 512)
    top = int(high + 12 * math.sqrt(high) + 30)
    k = np.arange(top + 1, dtype=np.float64)
    from scipy.special import gammaln, xlogy

    lam = grid[:, None]
    pmf = np.exp(xlogy(k, lam) - lam - gammaln(k + 1))
    deviance = 2 * (xlogy(k, k) - xlogy(k, lam) - k + lam)
    expected = (pmf * deviance).sum(1)
    values = np.interp(np.log(np.clip(rates, low, high)), np.log(grid), expected)
    return float(values.mean())


def smoothed(observed: torch.Tensor) -> torch.Tensor:
    """The observation (1, C, H, W) blurred by a 5×5 Gaussian (σ 1 px, borders replicated), float64: the
    stand-in for the noise-free observation in the discrepancy targets."""
    x = observed.double()
    taps = torch.exp(-(torch.arange(-2, 3, dtype=torch.float64) ** 2) / 2)
    kernel = (taps[:, None] * taps[None, :] / taps.sum() ** 2).to(x.device)
    c = x.shape[1]
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel.expand(c, 1, 5, 5), groups=c)
