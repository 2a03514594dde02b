"""A task = a degradation with its parameters: how to make its observation from a clean image, its
operator for the fit, and how it is scored (SR: luminance with a border of `factor` pixels shaved)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import get_type_hints

import numpy as np
import torch

from dip import operators as ops
from dip import seeds
from dip.checks import is_integer, is_number, python_scalar
from dip.image_io import MIN_SIZE, InputError
from dip.metrics import Scorer, psnr, ssim
from dip.networks import center_crop

MASKS = ("drop", "text", "box", "file")
NOISES = ("gaussian", "poisson")
BLURS = ("gaussian", "motion", "file")


@dataclass(frozen=True)
class TaskOptions:
    """The command-line options of one task (`dip fit`, `dip degrade`; a pipeline config's task keys
    follow it, see workflow/schemas/config.schema.yaml). takes: the options it uses; any other task
    option is refused. with_image: those it needs to degrade a clean image (--image, dip degrade, the
    pipeline); with_observed: those it needs to restore a given observation (--observed). "a|b" is met
    by either option. with_image None: the task has nothing to degrade (a pair is observed as given)."""

    takes: tuple[str, ...]
    with_image: tuple[str, ...] | None
    with_observed: tuple[str, ...]


# The tasks by name (`dip fit --task NAME`, a pipeline config's `task:`) and the options each takes: the one
# list of them. Adding a task: a row here, its parameters (if new) as fields of Task and in its methods below,
# and its name in workflow/schemas/config.schema.yaml (tests/test_workflow.py checks the schema against this).
OPTIONS: dict[str, TaskOptions] = {
    # σ only makes the noise; a given noisy image is fitted without it (σ then picks the preset and is
    # the discrepancy rule's noise level).
    # With --noise poisson the noise level is --peak instead (checked in Task: --sigma and --peak exclude
    # each other, and --peak needs --noise poisson).
    "denoise": TaskOptions(("sigma", "noise", "peak"), ("sigma|peak",), ()),
    # The factor sizes the restored image in either mode.
    "sr": TaskOptions(("factor",), ("factor",), ("factor",)),
    # A given observation needs its mask file; --drop/--text/--box then only name its kind (the preset).
    "inpaint": TaskOptions(("mask", "drop", "text", "box"), ("mask|drop|text|box",), ("mask",)),
    "jpeg": TaskOptions(("quality",), ("quality",), ()),
    "flash": TaskOptions(("flash",), None, ("flash",)),
    # The blur is needed in either mode; the noise level only to make an observation, as for denoising.
    "deblur": TaskOptions(("blur", "psf", "sigma", "noise", "peak"), ("blur|psf", "sigma|peak"), ("blur|psf",)),
}
TASKS = tuple(OPTIONS)
# Observed as a pair the user gives, nothing to degrade (dip fit --flash; pipeline: manifest rows of role pair).
PAIRED = tuple(name for name, row in OPTIONS.items() if row.with_image is None)
TASK_OPTIONS = tuple(dict.fromkeys(o for row in OPTIONS.values() for o in row.takes))
# Options that name a file, given apart from a task's parameters (a task records a file mask or PSF as "file").
FILE_OPTIONS = ("mask", "psf", "flash")
_HOW = {
    "sigma": "give the noise level with --sigma S (0-255 scale)",
    "factor": "give the factor with --factor K (an integer >= 2)",
    "quality": "give the JPEG quality with --quality Q (1-95)",
    "mask": "give the known pixels with --mask FILE",
    "mask|drop|text|box": "choose the mask with --mask FILE, --drop FRACTION, --text or --box",
    "flash": "give the pair: --flash FLASH --observed NOFLASH",
    "sigma|peak": "give the noise level with --sigma S (0-255 scale), or --noise poisson --peak P",
    "blur|psf": "give the blur with --blur gaussian:SIGMA, --blur motion:LENGTH,ANGLE or --psf FILE",
}


def _flags(options) -> str:
    return ", ".join(" or ".join(f"--{o}" for o in option.split("|")) for option in options) or "none"


def check_options(task: str, given: Mapping, observed: bool | None) -> None:
    """Refuse, in one line naming the option, a task option the task does not take, and a missing one it
    needs in this mode (observed: restoring a given observation, False: degrading a clean image, None:
    no mode, only what it takes is checked). given: option name (as in TASK_OPTIONS) -> value, for the
    options the user gave."""
    row = OPTIONS[task]
    for name in given:
        if name not in row.takes:
            raise InputError(f"--{name}: the {task} task takes no --{name} (it takes {_flags(row.takes)})")
    if observed is None:
        return
    needed = row.with_observed if observed else row.with_image
    if needed is None:
        raise InputError(f"--image: the {task} task has nothing to degrade; {_HOW[row.with_observed[0]]}")
    for option in needed:
        if not any(o in given for o in option.split("|")):
            mode = "--observed" if observed else "--image"
            raise InputError(f"--{option.split('|')[0]}: required by the {task} task with {mode}; {_HOW[option]}")


def options_table() -> str:
    """OPTIONS as the Markdown table of docs/guide/tasks.md."""
    lines = ["| task | takes | required with `--image` | required with `--observed` |", "|---|---|---|---|"]
    for task, row in OPTIONS.items():
        image = "— (nothing to degrade)" if row.with_image is None else _flags(row.with_image)
        lines.append(f"| {task} | {_flags(row.takes)} | {image} | {_flags(row.with_observed)} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Task:
    """A task and its parameters. sigma (denoise) and quality (jpeg) may be None for a given observation:
    such a task fits, but `degrade` refuses it (see OPTIONS)."""

    name: str
    sigma: float | None = None  # denoise, on the 0–255 scale
    factor: int | None = None  # sr, an integer >= 2
    mask: str | None = None  # inpaint: drop | text | box | file
    drop: float | None = None  # inpaint drop fraction
    quality: int | None = None  # jpeg
    blur: str | None = None  # deblur: gaussian:SIGMA, motion:LENGTH,ANGLE or file (the PSF given apart)
    noise: str | None = None  # denoise, deblur: gaussian (None) or poisson
    peak: float | None = None  # Poisson noise: the expected count of a pixel of value 1

    def __post_init__(self) -> None:
        if self.name not in TASKS:
            raise InputError(f"task: unknown task {self.name!r}; choose one of {', '.join(TASKS)}")
        # NumPy scalars as the Python numbers they hold: one spec, record and config hash whatever made them.
        for key in PARAMETERS:
            object.__setattr__(self, key, python_scalar(getattr(self, key)))
        if self.name in ("denoise", "deblur") and self.sigma is not None and not self.sigma > 0:
            raise InputError(f"sigma: must be > 0 for the {self.name} task, got {self.sigma}")
        if self.noise not in (None, *NOISES):
            raise InputError(f"noise: choose one of {', '.join(NOISES)}, got {self.noise!r}")
        if self.peak is not None and self.noise != "poisson":
            raise InputError(
                f"peak: the Poisson peak needs --noise poisson (the {self.noise or 'gaussian'} noise level is --sigma)"
            )
        if self.noise == "poisson":
            if self.sigma is not None:
                raise InputError("sigma: Poisson noise has no sigma; its level is --peak P")
            if self.peak is not None and not (0 < self.peak < float("inf")):
                raise InputError(
                    f"peak: the Poisson peak (expected count of a pixel of value 1) must be a "
                    f"finite number > 0, got {self.peak}"
                )
        if self.name == "deblur":
            parse_blur(self.blur)
        if self.name == "sr" and (not is_integer(self.factor) or self.factor < ops.SuperResolve.MIN_FACTOR):
            raise InputError(
                f"factor: SR factor must be an integer >= {ops.SuperResolve.MIN_FACTOR}, got {self.factor}"
            )
        if self.name == "inpaint":
            if self.mask not in MASKS:
                raise InputError(f"mask: inpainting needs a mask kind among {', '.join(MASKS)}, got {self.mask!r}")
            if self.mask == "drop" and not (self.drop is not None and 0 < self.drop < 1):
                raise InputError(f"drop: fraction must be in (0, 1), got {self.drop}")
        if self.name == "jpeg" and self.quality is not None and not 1 <= self.quality <= 95:
            raise InputError(f"quality: JPEG quality must be in 1..95, got {self.quality}")

    def params(self) -> dict:
        """The name and the parameters that are set (summary.json's config hash reads this)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def spec(self) -> dict:
        """The task as a spec, the form `from_spec` reads: {"task": name, parameter: value, ...} (a pipeline
        config's task entry, summary.json's task keys)."""
        return {"task": self.name, **{k: v for k, v in self.params().items() if k != "name"}}

    @classmethod
    def from_spec(cls, spec: Mapping, observed: bool | None = None) -> Task:
        """The one parser of a task: the task a spec describes (a pipeline config's task entry, summary.json,
        `dip fit`'s options through `from_options`), checked. spec: "task" (a name of OPTIONS) and its
        parameters, the fields of Task under their names (mask: its kind; blur: "file" for a PSF given as
        a file); other keys (a config's iterations, a summary's results) are not the task's and are left.
        observed: also check that the parameters suffice to restore a given observation (True) or to
        degrade a clean image (False); None: only that the task takes them. Raises InputError, one line
        naming the key: a missing or unknown task, a value of the wrong type or out of range, a parameter
        the task does not take."""
        name = spec.get("task")
        if name not in OPTIONS:
            what = "missing" if name is None else f"unknown task {name!r}"
            raise InputError(f"task: {what}; choose one of {', '.join(TASKS)}")
        values = {k: _typed(k, spec[k]) for k in PARAMETERS if spec.get(k) is not None}
        takes = _spec_keys(name)
        for key in values:
            if key not in takes:
                raise InputError(f"{key}: the {name} task takes no {key} (it takes {', '.join(takes) or 'none'})")
        if "drop" in values and values.get("mask") != "drop":
            raise InputError(f"drop: a fraction of pixels to drop needs mask: drop, got mask: {values.get('mask')}")
        task = cls(name, **values)
        if observed is not None:
            check_options(name, task.options(), observed)
        return task

    @classmethod
    def from_params(cls, name: str, params: Mapping) -> Task:
        """The task `name` with its parameters taken from `params` (a config's task entry, a summary.json),
        whatever else it holds: `from_spec` with `name` as the task."""
        return cls.from_spec({**params, "task": name})

    @classmethod
    def from_options(cls, name: str, given: Mapping, observed: bool) -> Task:
        """The task that `dip fit` / `dip degrade` options describe, checked against the task (OPTIONS) in
        its mode (observed: --observed, else --image). given: option name (TASK_OPTIONS) -> value for the
        options the user gave (a switch: True; --mask/--psf/--flash: the file). Raises InputError naming
        the option. The inverse of `options`."""
        if given.get("noise") == "poisson" and "peak" not in given and "peak" in OPTIONS[name].takes:
            raise InputError("--peak: required with --noise poisson (the expected count of a pixel of value 1)")
        check_options(name, given, observed)
        spec = {"task": name, **{k: v for k, v in given.items() if k in PARAMETERS and k not in FILE_OPTIONS}}
        if name == "inpaint":
            # A mask file with --drop/--text/--box: with --observed, the file is the observation's mask and
            # the switch names its kind (the preset); a clean image is masked by one or the other.
            spec["mask"] = next((kind for kind in MASKS if kind in given and kind != "file"), "file")
            if spec["mask"] != "file" and "mask" in given and not observed:
                raise InputError("--mask: a mask file and --drop/--text/--box exclude each other with --image")
        if "blur" in given and "psf" in given:
            raise InputError("--psf: a PSF file and --blur exclude each other; give one")
        if "psf" in given:
            spec["blur"] = "file"
        try:
            return cls.from_spec(spec)
        except InputError as err:  # from_spec names a spec's key ("sigma: ..."); here it is an option
            key, colon, rest = str(err).partition(":")
            raise InputError(f"--{key}:{rest}" if colon and key in (*PARAMETERS, "task") else str(err)) from None

    def options(self) -> dict:
        """The task's parameters as `dip fit` options (TASK_OPTIONS names → value): an inpainting mask's kind
        is its switch (--text, --box: True) or --drop; a mask or PSF given as a file, and a paired task's
        flash photograph, are "file" under --mask / --psf / --flash (the path is the caller's)."""
        given = {}
        for key, value in self.params().items():
            if key == "mask":
                given.update({"text": True} if value == "text" else {"box": True} if value == "box" else {})
                given.update({"mask": "file"} if value == "file" else {})
            elif key == "blur" and value == "file":
                given["psf"] = "file"
            elif key != "name":
                given[key] = value
        return {**given, "flash": "file"} if self.name in PAIRED else given

    def cli_args(self) -> list[str]:
        """The `dip fit` / `dip degrade` arguments of this task, e.g. ['--task', 'sr', '--factor', '4'] (what
        the pipeline passes; `from_options` reads them back into this task). Files (--mask, --psf, --flash)
        are the caller's to add."""
        args = ["--task", self.name]
        for option, value in self.options().items():
            if option not in FILE_OPTIONS:
                args += [f"--{option}"] if value is True else [f"--{option}", str(value)]
        return args

    @property
    def poisson(self) -> bool:
        return self.noise == "poisson"

    @property
    def gaussian_noise(self) -> bool:
        """Whether the observation is noisy with Gaussian noise of level σ (denoise, deblur; not Poisson)."""
        return "noise" in OPTIONS[self.name].takes and not self.poisson

    def _noise_label(self) -> str:
        if self.poisson:
            return "" if self.peak is None else f"-p{self.peak:g}"
        return "" if self.sigma is None else f"-s{self.sigma:g}"

    def label(self) -> str:
        """Short name used in tables and file names, e.g. denoise-s25, sr-x4, inpaint-drop0.5.

        >>> Task("denoise", sigma=25).label(), Task("sr", factor=4).label()
        ('denoise-s25', 'sr-x4')
        >>> Task("sr", factor=4).operator()(torch.rand(1, 3, 32, 32)).shape  # the fit's forward operator
        torch.Size([1, 3, 8, 8])
        """
        if self.name == "denoise":
            return "denoise" + ("-poisson" if self.poisson else "") + self._noise_label()
        if self.name == "deblur":
            kind, values = parse_blur(self.blur)
            blur = "psf" if kind == "file" else f"{kind}{','.join(f'{v:g}' for v in values)}"
            return f"deblur-{blur}" + ("-poisson" if self.poisson else "") + self._noise_label()
        if self.name == "sr":
            return f"sr-x{self.factor}"
        if self.name == "jpeg":
            return "jpeg" if self.quality is None else f"jpeg-q{self.quality}"
        if self.name == "flash":
            return "flash"
        return f"inpaint-drop{self.drop:g}" if self.mask == "drop" else f"inpaint-{self.mask}"

    @property
    def convention(self) -> dict:
        """How results are scored: the SR papers' luminance PSNR with `factor` pixels shaved."""
        return {"y_channel": True, "shave": self.factor} if self.name == "sr" else {"y_channel": False, "shave": 0}

    def score(self, image: np.ndarray, clean: np.ndarray) -> dict[str, float]:
        """PSNR (dB) and SSIM of `image` against `clean` (H×W×C float arrays in [0, 1]) under the task's
        convention, through scikit-image (dip.metrics): {"psnr": ..., "ssim": ...}."""
        return {"psnr": psnr(image, clean, **self.convention), "ssim": ssim(image, clean, **self.convention)}

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
            raise InputError(
                f"{source}: {self.name} needs a greyscale or colour image (1 or 3 channels), this "
                f"one has {channels}; denoise, inpaint and flash restore any number of channels"
            )

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

    def operator(self, mask: torch.Tensor | None = None, psf: torch.Tensor | None = None) -> ops.Operator:
        if self.name == "deblur":
            blur = ops.Blur(self.psf(psf), None if self.poisson else self.sigma)
            return ops.Poisson(self.peak, blur) if self.poisson and self.peak else blur
        if self.name == "denoise" and self.poisson:
            return ops.Poisson(self.peak) if self.peak else ops.Operator()
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

    def psf(self, given: torch.Tensor | None = None) -> torch.Tensor:
        """deblur: the PSF of --blur, or `given` (from --psf FILE, dip.image_io.load_psf), normalised."""
        kind, values = parse_blur(self.blur)
        if kind == "gaussian":
            return ops.gaussian_psf(*values)
        if kind == "motion":
            return ops.motion_psf(*values)
        if given is None:
            raise InputError("psf: --psf FILE is needed for a blur given as a file")
        return ops.normalise_psf(given)

    def degrade(
        self,
        clean: torch.Tensor,
        observation_seed: int,
        mask: torch.Tensor | None = None,
        psf: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Observation (and mask for inpainting) of a clean image, reproducible from the observation
        seed alone: it draws from that seed's `observation` stream, which no network stream shares."""
        check_options(self.name, self.options(), observed=False)
        generator = seeds.generator(observation_seed, "observation")
        if self.name == "inpaint":
            mask = self.make_mask(*clean.shape[-2:], generator, mask)
        operator = self.operator(mask, psf)
        if hasattr(operator, "psf") and operator.psf is not None:
            kh, kw = operator.psf.shape
            if kh > clean.shape[-2] or kw > clean.shape[-1]:
                raise InputError(
                    f"psf: the PSF ({kh}x{kw}) is larger than the image ({clean.shape[-2]}x{clean.shape[-1]})"
                )
        return operator.observe(clean, generator), mask if self.name == "inpaint" else None


PARAMETERS = tuple(f.name for f in fields(Task) if f.name != "name")  # a spec's keys besides "task"
_TYPES = {name: hint.__args__[0] for name, hint in get_type_hints(Task).items() if name in PARAMETERS}


def _spec_keys(task: str) -> tuple[str, ...]:
    """The spec keys (PARAMETERS) a task takes: its options (OPTIONS) as parameters, --text/--box/--mask being
    the mask's kind and --psf the blur's ("file"); --flash names a file only."""
    as_key = {"text": "mask", "box": "mask", "psf": "blur", "flash": None}
    return tuple(k for k in dict.fromkeys(as_key.get(o, o) for o in OPTIONS[task].takes) if k)


def _typed(key: str, value):
    """A spec's `value` of parameter `key` if it has the field's type (an int is a number; a bool is
    neither), else InputError naming the key."""
    kind = _TYPES[key]
    ok = {float: is_number, int: is_integer}.get(kind, lambda v: isinstance(v, kind))(value)
    if not ok:
        what = {float: "a number", int: "an integer", str: "a string"}[kind]
        raise InputError(f"{key}: expected {what}, got {value!r}")
    return value


def parse_blur(spec: str | None) -> tuple[str, tuple[float, ...]]:
    """A --blur value → (kind, numbers): "gaussian:SIGMA" (pixels, > 0) → ("gaussian", (σ,)),
    "motion:LENGTH,ANGLE" (pixels >= 1, degrees) → ("motion", (length, angle)); "file" (a --psf FILE)
    → ("file", ()). Raises InputError naming --blur for anything else."""
    if spec == "file":
        return "file", ()
    kind, _, numbers = (spec or "").partition(":")
    try:
        values = tuple(float(v) for v in numbers.split(","))
    except ValueError:
        values = ()
    ok = {
        "gaussian": len(values) == 1 and values[0] > 0,
        "motion": len(values) == 2 and values[0] >= 1 and all(map(math.isfinite, values)),
    }
    if not ok.get(kind, False) or not all(map(math.isfinite, values)):
        raise InputError(
            f"--blur: expected gaussian:SIGMA (pixels > 0) or motion:LENGTH,ANGLE (length >= 1 "
            f"pixel, angle in degrees), got {spec!r}"
        )
    side = psf_side(kind, values)
    if side > MAX_PSF_SIDE:  # refused before a kernel of that size is built
        raise InputError(
            f"--blur: the PSF would be wider than {MAX_PSF_SIDE} pixels, larger than any image; got {spec!r}"
        )
    return kind, values


MAX_PSF_SIDE = 8191  # wider than the largest image dip fits (36 megapixels are refused before fitting)


def psf_side(kind: str, values: tuple[float, ...]) -> int:
    """The side of the kernel `dip.operators.gaussian_psf` / `motion_psf` build for a parsed --blur."""
    if kind == "gaussian":
        return 2 * max(1, math.ceil(3 * values[0])) + 1
    return 2 * math.ceil(values[0] / 2) + 1


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
