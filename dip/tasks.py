"""A task = a degradation with its parameters: how to make its observation from a clean image, its
operator for the fit, and how it is scored (SR: luminance with a border of `factor` pixels shaved)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from dip import operators as ops, seeds
from dip.image_io import InputError
from dip.metrics import Scorer
from dip.networks import center_crop

TASKS = ("denoise", "sr", "inpaint", "jpeg", "flash")
PAIRED = ("flash",)  # observed as a pair the user gives (dip fit --flash; pipeline: manifest rows with `flash`)
MASKS = ("drop", "text", "box", "file")
MIN_SIZE = 16  # smallest side we accept: every network pads up to its own minimum from there


@dataclass(frozen=True)
class Task:
    name: str
    sigma: float | None = None     # denoise, on the 0–255 scale
    factor: int | None = None      # sr
    mask: str | None = None        # inpaint: drop | text | box | file
    drop: float | None = None      # inpaint drop fraction
    quality: int | None = None     # jpeg

    def __post_init__(self) -> None:
        if self.name not in TASKS:
            raise InputError(f"task: unknown task {self.name!r}; choose one of {', '.join(TASKS)}")
        if self.name == "denoise" and not (self.sigma is not None and self.sigma > 0):
            raise InputError(f"sigma: must be > 0 for denoising, got {self.sigma}")
        if self.name == "sr" and self.factor not in ops.SuperResolve.FACTORS:
            raise InputError(f"factor: SR factor must be one of 2, 4, 8, got {self.factor}")
        if self.name == "inpaint":
            if self.mask not in MASKS:
                raise InputError(f"mask: inpainting needs a mask kind among {', '.join(MASKS)}, got {self.mask!r}")
            if self.mask == "drop" and not (self.drop is not None and 0 < self.drop < 1):
                raise InputError(f"drop: fraction must be in (0, 1), got {self.drop}")
        if self.name == "jpeg" and not (self.quality is not None and 1 <= self.quality <= 95):
            raise InputError(f"quality: JPEG quality must be in 1..95, got {self.quality}")

    def params(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def label(self) -> str:
        """Short name used in tables and file names, e.g. denoise-s25, sr-x4, inpaint-drop0.5."""
        if self.name == "denoise":
            return f"denoise-s{self.sigma:g}"
        if self.name == "sr":
            return f"sr-x{self.factor}"
        if self.name == "jpeg":
            return f"jpeg-q{self.quality}"
        if self.name == "flash":
            return "flash"
        return f"inpaint-drop{self.drop:g}" if self.mask == "drop" else f"inpaint-{self.mask}"

    @property
    def convention(self) -> dict:
        """How results are scored: the SR papers' luminance PSNR with `factor` pixels shaved."""
        return {"y_channel": True, "shave": self.factor} if self.name == "sr" else {"y_channel": False, "shave": 0}

    @property
    def scorer(self) -> Scorer:
        """The convention as a device-side PSNR scorer for the fit's history."""
        return Scorer(**self.convention)

    def crop(self, clean: torch.Tensor) -> torch.Tensor:
        """SR needs sides divisible by the factor: centre-crop the ground truth to that."""
        if self.name != "sr":
            return clean
        h, w = clean.shape[-2:]
        return center_crop(clean, h - h % self.factor, w - w % self.factor)

    def check_size(self, h: int, w: int, source: str) -> None:
        if min(h, w) < MIN_SIZE:
            raise InputError(f"{source}: image is {h}x{w}, smaller than the minimum {MIN_SIZE}x{MIN_SIZE}")

    def check_channels(self, channels: int, source: str) -> None:
        """SR (the Y-channel score, PIL's Lanczos observation) and JPEG need grey or colour; the other tasks
        restore any number of channels (bands, pages)."""
        if self.name in ("sr", "jpeg") and channels not in (1, 3):
            raise InputError(f"{source}: {self.name} needs a greyscale or colour image (1 or 3 channels), this "
                             f"one has {channels}; denoise, inpaint and flash restore any number of channels")

    def make_mask(self, h: int, w: int, generator: torch.Generator, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.mask == "drop":
            return ops.random_drop(h, w, self.drop, generator)
        if self.mask == "text":
            return ops.text_mask(h, w)
        if self.mask == "box":
            return ops.box_mask(h, w)
        if mask is None:
            raise InputError("mask: --mask FILE is needed for a file mask")
        return mask

    def operator(self, mask: torch.Tensor | None = None) -> ops.Operator:
        if self.name == "denoise":
            return ops.Denoise(self.sigma)
        if self.name == "sr":
            return ops.SuperResolve(self.factor)
        if self.name == "jpeg":
            return ops.JpegArtifacts(self.quality)
        if self.name == "flash":
            return ops.Operator()  # the no-flash photograph is the target itself
        if mask is None:
            raise InputError("mask: inpainting needs a mask")
        return ops.Inpaint(mask)

    def degrade(self, clean: torch.Tensor, observation_seed: int, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Observation (and mask for inpainting) of a clean image, reproducible from the observation
        seed alone: it draws from that seed's `observation` stream, which no network stream shares."""
        if self.name == "flash":
            raise InputError("flash: there is nothing to degrade; give the pair with --flash FLASH --observed NOFLASH")
        generator = seeds.generator(observation_seed, "observation")
        if self.name == "inpaint":
            mask = self.make_mask(*clean.shape[-2:], generator, mask)
        return self.operator(mask).observe(clean, generator), mask if self.name == "inpaint" else None


def synthetic_flash_pair(clean: torch.Tensor, observation_seed: int, noise: float = 0.05) -> dict[str, torch.Tensor]:
    """A flash/no-flash pair made from one clean photograph (1×C×H×W in [0, 1]), for tests and the bundled
    example: the flash photograph bright (×1.25) and cold (blue up, red down), noise-free; the no-flash one
    dim (×0.55), warm (red up, blue down) and noisy (Gaussian, `noise` on the 0–1 scale, drawn from the
    observation seed's stream). `reference` is the no-flash photograph without its noise, the ground truth
    a real pair never has. Real pairs differ by more than a per-channel affine map (flash shadows and
    highlights), so this pair is the easy case."""
    channels = clean.shape[1]
    cold = torch.tensor([-0.04, 0.0, 0.06])[:channels].view(1, -1, 1, 1)
    warm = torch.tensor([1.15, 1.0, 0.75])[:channels].view(1, -1, 1, 1)
    reference = (clean * 0.55 * warm).clamp(0, 1)
    generator = seeds.generator(observation_seed, "observation")
    noisy = reference + noise * torch.randn(reference.shape, generator=generator)
    return {"flash": (clean * 1.25 + cold).clamp(0, 1), "noflash": noisy.clamp(0, 1), "reference": reference}
