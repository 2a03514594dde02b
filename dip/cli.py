"""`dip fit` and `dip degrade`: Deep Image Prior from the shell. Bad input is reported as one line
naming the file or option, before any fitting starts and before any output is written."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import warnings
from dataclasses import asdict, fields
from pathlib import Path

import pandas as pd

from dip import __version__
from dip.image_io import (
    InputError,
    Reading,
    Source,
    describe,
    load_image,
    load_mask,
    peek_size,
    save_csv,
    save_image,
    save_json,
    save_png,
    to_array,
)
from dip.inputs import INPUTS
from dip.metrics import psnr, ssim
from dip.presets import ARCHITECTURES, PAPER, architecture, preset_key
from dip.provenance import config_hash, device_name, git_commit, package_versions
from dip.seeds import SCHEME
from dip.stopping import HOLDOUT, RULES, make_rule, oracle_iteration
from dip.tasks import NOISES, OPTIONS, TASK_OPTIONS, TASKS, Task


def _takes(option: str) -> str:
    """Which tasks take `option`, and when they need it (dip.tasks.OPTIONS), for its --help."""
    uses = []
    for task, row in OPTIONS.items():
        if option not in row.takes:
            continue
        needs = []
        for mode, needed in (("--image", row.with_image), ("--observed", row.with_observed)):
            for need in (n.split("|") for n in needed or () if option in n.split("|")):
                others = " or ".join(f"--{o}" for o in need if o != option)
                needs.append(f"{'this or ' + others if others else ''} required with {mode}".lstrip())
        uses.append(", ".join([task, *needs]))
    return f" [{'; '.join(uses)}]"


def _task_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument(
        "--sigma",
        type=float,
        help="noise std on the 0-255 scale; with --observed optional: it picks "
        "the sigma >= 50 preset (without it: the sigma 25 preset) and is the discrepancy rule's noise "
        "level" + _takes("sigma"),
    )
    p.add_argument("--factor", type=int, help="super-resolution factor, an integer >= 2" + _takes("factor"))
    p.add_argument("--quality", type=int, help="JPEG quality 1-95" + _takes("quality"))
    p.add_argument(
        "--mask",
        help="mask image (bright = known pixel); with --observed, the mask of the "
        "observation (--drop/--text/--box then name its kind, which picks the preset)" + _takes("mask"),
    )
    m = p.add_mutually_exclusive_group()
    m.add_argument("--drop", type=float, help="drop this fraction of pixels at random" + _takes("drop"))
    m.add_argument("--text", action="store_true", help="text overlay mask" + _takes("text"))
    m.add_argument("--box", action="store_true", help="centred box mask" + _takes("box"))
    p.add_argument(
        "--blur",
        help="the known blur: gaussian:SIGMA (std in pixels) or motion:LENGTH,ANGLE (pixels, "
        "degrees counter-clockwise from the x axis); borders reflected" + _takes("blur"),
    )
    p.add_argument(
        "--psf",
        help="the known blur as a point-spread function file: PNG, TIFF or NPY, one 2-D "
        "kernel of odd sides, non-negative (scaled to sum 1)" + _takes("psf"),
    )
    p.add_argument(
        "--noise",
        choices=NOISES,
        help="noise model (default gaussian, level --sigma); poisson: "
        "observation = Poisson(PEAK * x) / PEAK, fitted with the Poisson deviance" + _takes("noise"),
    )
    p.add_argument(
        "--peak",
        type=float,
        help="Poisson noise: the expected photon count of a pixel of value 1 "
        "(> 0; required with --noise poisson)" + _takes("peak"),
    )
    p.add_argument(
        "--seed", type=int, default=0, help="network seed: initial weights, input z, per-iteration perturbations"
    )
    p.add_argument(
        "--observation-seed",
        type=int,
        help="seed of the observation's noise or random mask (default: --seed; either way a stream "
        "of its own, never one the network draws from); with --observed, the seed that made it, "
        "recorded as provenance only",
    )


def _reading_arguments(p: argparse.ArgumentParser) -> None:
    """How image files are read (README, "Restore your own image"); masks have their own rule."""
    p.add_argument(
        "--intensity-range",
        type=_intensity_range,
        metavar="LO,HI",
        help="the file values read as 0 and 1 (default: the sample type's range for integers, as is "
        "for floats, which must then lie in [0, 1]); outputs are written back in the same units",
    )
    p.add_argument(
        "--pages-as-channels",
        action="store_true",
        help="read every page of a multi-page file (a z-stack, a hyperspectral cube) as channels; "
        "without it such a file is refused",
    )


def _positive(text: str) -> int:
    """An argparse type: an integer > 0 (window, patience, threads, checkpoint interval)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer > 0, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _non_negative(text: str) -> float:
    """An argparse type: a finite number >= 0 (input perturbation, TV weight)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {value}")
    return value


def _intensity_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers), got {text!r}") from None
    return low, high  # LO < HI is Reading's check


def _reading(args: argparse.Namespace, observed: bool = False) -> Reading:
    """How input files are read; `observed`: the observation's (a Poisson one may exceed 1)."""
    return Reading(args.intensity_range, args.pages_as_channels, above_one=observed and args.noise == "poisson")


def _observation_seed(args: argparse.Namespace) -> int:
    return args.seed if args.observation_seed is None else args.observation_seed


def _check_seeds(args: argparse.Namespace) -> None:
    for name in ("seed", "observation_seed"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise InputError(f"--{name.replace('_', '-')}: must be >= 0, got {value}")


def _given_task_options(args: argparse.Namespace) -> dict:
    """The task options (dip.tasks.TASK_OPTIONS) given on the command line."""
    values = {name: getattr(args, name, None) for name in TASK_OPTIONS}
    return {name: value for name, value in values.items() if value is not None and value is not False}


def _task(args: argparse.Namespace) -> Task:
    """The task the options describe, checked against the task (dip.tasks.Task.from_options); a --psf file
    is read here, into args.psf_kernel."""
    task = Task.from_options(args.task, _given_task_options(args), observed=bool(getattr(args, "observed", None)))
    args.psf_kernel = _load_psf(args.psf) if args.psf else None
    return task


def _load_psf(path: str):
    """--psf FILE as a normalised kernel tensor (float64), or one line naming the file."""
    import torch

    from dip.image_io import load_psf
    from dip.operators import normalise_psf

    try:
        return normalise_psf(torch.from_numpy(load_psf(path)))
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None


def _operator(args, task: Task, mask=None):
    """The task's forward operator, with --psf's kernel for a blur given as a file."""
    return task.operator(mask, getattr(args, "psf_kernel", None))


def _noise_sigma(value: str) -> float | str:
    if value == "estimate":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a noise level (0-255 scale) or 'estimate', got {value!r}") from None


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (the full usage stays behind --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    root = _OneLineParser(prog="dip", description=__doc__)
    root.add_argument("--version", action="version", version=f"dip {__version__}")
    sub = root.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)

    d = sub.add_parser("degrade", help="make a seeded observation (and mask) from a clean image")
    _task_arguments(d)
    _reading_arguments(d)
    d.add_argument("--image", required=True, help="clean image")
    d.add_argument("--out", required=True, help="output folder: observed.png [, mask.png]")
    d.add_argument(
        "--always-mask",
        action="store_true",
        help="write mask.png for every task (all pixels known except for inpainting)",
    )
    d.add_argument(
        "--exact",
        action="store_true",
        help="write the observation's values also as observed.tif "
        "(float32, unclipped, as dip fit --observed reads it back); always done for Poisson noise, "
        "whose observation reaches above 1",
    )

    f = sub.add_parser("fit", help="restore an image with Deep Image Prior")
    _task_arguments(f)
    _reading_arguments(f)
    f.add_argument("--image", help="clean image: degrade it (seeded) and score the restoration against it")
    f.add_argument("--observed", help="a degraded image to restore (no ground truth unless --clean)")
    f.add_argument("--clean", help="with --observed: ground truth used only to score")
    f.add_argument("--flash", help="flash: the flash photograph, the network's input (the no-flash one is --observed)")
    f.add_argument("--out", required=True, help="output folder (with --seeds: may hold {seed}; default OUT/seed{seed})")
    f.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="fit these network seeds at once, stacked into one batched network (one process, one "
        "device; worth it on a GPU), each with its own backtracking, stopping and outputs; the "
        "observation is shared (--observation-seed, default the first seed)",
    )
    f.add_argument(
        "--arch",
        default=None,
        help=f"architecture name, one of dip.presets.ARCHITECTURES: {', '.join(ARCHITECTURES)} (default: the "
        "task's paper preset)",
    )
    f.add_argument(
        "--preset",
        choices=["paper", "none"],
        default="paper",
        help="start from the paper's settings for the task (default) or from the library defaults",
    )
    f.add_argument("--iters", type=int, help="iterations (default: the preset's)")
    f.add_argument("--lr", type=float)
    f.add_argument("--reg-noise-std", type=_non_negative)
    f.add_argument("--input", choices=INPUTS)
    f.add_argument("--input-depth", type=int)
    f.add_argument("--ema", type=float, help="output EMA weight (0 = off; default 0.99)")
    f.add_argument("--optimizer", choices=["adam", "lbfgs"])
    f.add_argument("--tv-weight", type=_non_negative)
    f.add_argument("--ssim-every", type=int)
    f.add_argument(
        "--stop",
        choices=RULES,
        help="stop at this rule's decision; with the EMA on, the variance rules "
        "return the EMA image ema/(1-ema) iterations (its mean lag) after the variance minimum, "
        "discrepancy the same lag after the loss fell to the noise level; es-wmv-paper is ES-WMV as "
        "published, es-wmv the same with a guard against early minima; holdout the image with the least "
        "error on pixels held out of the fit (see --holdout)",
    )
    f.add_argument("--record-stops", action="store_true", help="run the full budget, record every rule")
    f.add_argument(
        "--holdout",
        type=float,
        help="hold this fraction of the observed pixels out of the loss (drawn "
        "from the network seed) and validate on them: the holdout rule (default with --stop holdout: "
        f"{HOLDOUT}; otherwise 0, nothing held out)",
    )
    f.add_argument(
        "--noise-sigma",
        type=_noise_sigma,
        help="discrepancy rule: the observation's noise std on the "
        "0-255 scale, or 'estimate' (skimage's estimate_sigma); default: with --observed the denoising "
        "task's --sigma if given, otherwise estimated. Makes any task's observation count as noisy",
    )
    f.add_argument("--window", type=_positive, default=100, help="es-wmv window W; es-emv starts checking after W")
    f.add_argument("--patience", type=_positive, help="es-wmv/es-emv patience P (default: a fifth of the budget)")
    f.add_argument(
        "--device",
        default="auto",
        help="auto | cpu | cuda | cuda:N | mps (one this PyTorch can use "
        "here; anything else is refused, listing what is available)",
    )
    f.add_argument("--threads", type=_positive, help="CPU threads")
    f.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    f.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    f.add_argument("--compile", action="store_true")
    f.add_argument(
        "--checkpoint-every", type=_positive, help="iterations between checkpoints (default: 10%% of the fit)"
    )
    f.add_argument("--no-progress", action="store_true")
    f.add_argument(
        "--dry-run",
        action="store_true",
        help="print the memory estimate and a time estimate from a few timed iterations; fit nothing, write nothing",
    )
    f.add_argument(
        "--failure-ok",
        action="store_true",
        help="a fit that keeps diverging writes summary.json with status 'failed' and exits 0",
    )

    sub.add_parser("bench", help="time fit iterations against a reference loop (dip bench --help)")
    return root


def _warn_if_made_at_8_bits(task: Task, path: str, source: Source) -> None:
    """SR's observation (PIL's Lanczos resize) and JPEG's are made from an 8-bit image: say so when the
    clean image `source` holds more, since its observation then keeps less than the file."""
    if task.name in ("sr", "jpeg") and source.sample_type not in ("uint8", "bool"):
        warnings.warn(
            f"{path}: the {task.name} observation is made from the image at 8 bits ({source.sample_type} "
            f"samples); its full-precision files hold that 8-bit observation",
            stacklevel=2,
        )


def _load_inputs(args, task: Task):
    """Read and check every input file before anything is fitted or written."""
    clean = mask = None
    if args.image and args.clean:
        raise InputError("--clean: only with --observed (with --image the image itself is the ground truth)")
    if args.image:
        clean = task.crop(load_image(args.image, _reading(args)))
        task.check_size(*clean.shape[-2:], args.image)
        _check_psf_size(args, task, *clean.shape[-2:])
    else:
        observed = load_image(args.observed, _reading(args, observed=True))
        if task.name == "inpaint":  # check_options made sure there is a --mask
            mask = load_mask(args.mask, observed.shape[-2:])
        size = _operator(args, task, mask).image_size(observed)
        task.check_size(*size, args.observed)
        _check_psf_size(args, task, *size)
        if args.clean:
            clean = task.crop(load_image(args.clean, _reading(args)))
            if tuple(clean.shape[-3:]) != (observed.shape[1], *size):
                raise InputError(
                    f"{args.clean}: ground truth is {tuple(clean.shape[-3:])} (C, H, W) but the "
                    f"observation needs {(observed.shape[1], *size)}"
                )
        return clean, observed, mask
    if args.mask:
        mask = load_mask(args.mask, clean.shape[-2:])
    observed, mask = task.degrade(clean, _observation_seed(args), mask, getattr(args, "psf_kernel", None))
    return clean, observed, mask


def _check_psf_size(args, task: Task, h: int, w: int) -> None:
    """deblur: the PSF must fit in the image (its borders are reflected by the kernel's radius)."""
    if task.name != "deblur":
        return
    from dip.tasks import parse_blur, psf_side

    kind, values = parse_blur(task.blur)
    given = getattr(args, "psf_kernel", None)
    kh, kw = (psf_side(kind, values),) * 2 if given is None else given.shape[-2:]  # sized before it is built
    if kh > h or kw > w:
        raise InputError(f"{args.psf or '--blur ' + args.blur}: the PSF is {kh}x{kw}, larger than the {h}x{w} image")


def _input_image(args, task: Task, observed):
    """flash: the flash photograph (the network's input), the same size as the no-flash observation
    (check_options has made sure that the pair was given, and that no other task has one)."""
    if task.name != "flash":
        return None
    flash = load_image(args.flash, _reading(args))
    if flash.shape[-2:] != observed.shape[-2:] or flash.shape[1] != observed.shape[1]:
        raise InputError(
            f"{args.flash}: the flash image is {tuple(flash.shape[1:])} (C, H, W) but the no-flash "
            f"image is {tuple(observed.shape[1:])}"
        )
    return flash


def _settings(args, task: Task) -> tuple[str, dict]:
    from dip.fit import FitSettings

    key = preset_key(task)
    arch_name, values = PAPER[key] if args.preset == "paper" else ("skip", {})
    arch_name = args.arch or arch_name
    try:
        values = {**values, **architecture(arch_name).get("settings", {})}
    except ValueError as err:
        raise InputError(f"--arch: {err}") from None
    overrides = {
        "iterations": args.iters,
        "lr": args.lr,
        "reg_noise_std": args.reg_noise_std,
        "input": args.input,
        "input_depth": args.input_depth,
        "ema": args.ema,
        "optimizer": args.optimizer,
        "tv_weight": args.tv_weight,
        "ssim_every": args.ssim_every,
        "seed": args.seed,
        "channels_last": args.channels_last,
        "bf16": args.bf16,
        "compile": args.compile or None,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key_, value in values.items():
        if key_ in ("iterations", "input_depth", "ssim_every") and value <= 0:
            raise InputError(f"--{key_.replace('_', '-')}: must be > 0, got {value}")
    known = {f.name for f in fields(FitSettings)}
    return arch_name, {k: v for k, v in values.items() if k in known}


def _fit_size(args, task: Task) -> tuple[int, int, int, str]:
    """(H, W, channels) of the image the fit restores, and the file it comes from, read from the file's
    header only: a fit too large for the machine is refused before any pixel is decoded."""
    source = args.image or args.observed
    h, w, channels = peek_size(source, _reading(args))
    task.check_channels(channels, source)
    if args.image:
        factor = task.factor or 1
        return h - h % factor, w - w % factor, channels, source
    if task.name == "sr":
        return h * task.factor, w * task.factor, channels, source
    return h, w, channels, source


def _rule_names(args, task: Task) -> list[str]:
    """The rules to run: `--stop`'s, or every applicable one with --record-stops. The discrepancy rule
    applies to noisy observations: denoising, or any task given --noise-sigma."""
    if args.noise_sigma not in (None, "estimate") and not args.noise_sigma > 0:
        raise InputError(f"--noise-sigma: must be > 0, got {args.noise_sigma}")
    noisy = task.name in ("denoise", "deblur") or args.noise_sigma is not None
    if task.poisson and args.noise_sigma is not None:
        raise InputError("--noise-sigma: Poisson noise has no sigma; its discrepancy target comes from --peak")
    if args.stop == "discrepancy" and not noisy:
        raise InputError(
            f"--stop discrepancy: applies to noisy observations (denoising, or give --noise-sigma); "
            f"the {task.name} task's observation has no noise level"
        )
    if args.holdout is None and args.stop == "holdout":
        args.holdout = HOLDOUT
    if args.holdout is not None and not 0 <= args.holdout < 0.5:
        raise InputError(f"--holdout: the fraction of pixels to hold out must be in [0, 0.5), got {args.holdout}")
    held = bool(args.holdout)
    if args.stop == "holdout" and not held:
        raise InputError("--stop holdout: needs pixels held out (--holdout > 0)")
    return [
        n
        for n in RULES
        if (args.record_stops or n == args.stop) and (n != "discrepancy" or noisy) and (n != "holdout" or held)
    ]


def _operators(args, task: Task, mask, observed, seeds_: list[int]) -> list:
    """Each fit's forward operator: the task's, or (--holdout) the task's with that fit's own held-out pixels,
    drawn from its network seed's `holdout` stream."""
    from dip.operators import HeldOut
    from dip.seeds import generator

    if not args.holdout:
        return [_operator(args, task, mask)] * len(seeds_)
    try:
        return [
            HeldOut(_operator(args, task, mask), observed, args.holdout, generator(seed, "holdout")) for seed in seeds_
        ]
    except ValueError as err:
        raise InputError(f"--holdout: {err}") from None


def _noise_level(args) -> tuple[float | None, str]:
    """The discrepancy rule's noise level (0-255 scale; None: estimate it from the observation) and where
    it comes from: --noise-sigma (a number, or 'estimate'); else with --observed the denoising task's
    --sigma, the user's own statement of the noise; else (with --image, the benchmark's case of a user who
    does not know σ) the estimate."""
    if args.noise_sigma not in (None, "estimate"):
        return args.noise_sigma, "given (--noise-sigma)"
    if args.noise_sigma is None and args.observed and args.sigma is not None:
        return args.sigma, "given (--sigma)"
    return None, "estimated (skimage.restoration.estimate_sigma)"


def _make_rules(args, names: list[str], settings, observed, operators: list) -> tuple[list[list], dict]:
    """The stopping rules of each fit (their own objects: rules keep state; one fit per operator), and what
    the discrepancy rule's target came from (estimated once: the fits share the observation)."""
    from dip.operators import poisson_discrepancy_target
    from dip.stopping import clipped_noise_mse, default_patience, estimate_noise_sigma

    target, info = None, {}
    if "discrepancy" in names and args.noise == "poisson":
        target = poisson_discrepancy_target(observed, args.peak)
        info = {"discrepancy_target": target, "noise_model": "poisson"}
    elif "discrepancy" in names:
        given, source = _noise_level(args)
        sigma = given / 255 if given is not None else estimate_noise_sigma(observed)
        target = clipped_noise_mse(observed, sigma)
        info = {"noise_sigma": sigma * 255, "noise_sigma_source": source, "discrepancy_target": target}
    if args.patience is None:
        args.patience = default_patience(settings.iterations)
    rules = [
        [
            make_rule(
                n,
                settings.iterations,
                args.window,
                args.patience,
                settings.ema,
                discrepancy=target,
                heldout=(op, observed),
            )
            for n in names
        ]
        for op in operators
    ]
    return rules, info


def _memory_plan(args, task: Task, arch_name: str, settings, device, rules: list[str], batch: int = 1) -> dict:
    """The fit's estimated peak memory against what the device has; one line and exit 2 if it cannot fit."""
    from dip import memory
    from dip.speed import resolve_speed

    h, w, channels, source = _fit_size(args, task)
    bf16 = resolve_speed(device, settings.channels_last, settings.bf16, settings.flush_denormal).bf16
    windowed = sum(name.startswith("es-wmv") for name in rules)
    need = memory.estimate(
        arch_name,
        h,
        w,
        channels,
        batch=batch,
        device=device.type,
        bf16=bf16,
        window=args.window if windowed else None,
        windowed_rules=windowed,
    )
    have = memory.available_bytes(device)
    if have is not None and need.bytes > have:
        fits = f"{batch} batched fits" if batch > 1 else "fit"
        raise InputError(
            f"{source}: a {h}x{w} {fits} of {arch_name} needs about {need.gib:.1f} GiB on {device.type} "
            f"but {have / 2**30:.1f} GiB is available; resize or crop the image, choose a smaller "
            f"architecture (--arch), or use another device (--device)"
        )
    return {
        "height": h,
        "width": w,
        "channels": channels,
        "estimated_peak_mb": round(need.bytes / 2**20),
        "available_mb": None if have is None else round(have / 2**20),
    }


def _dry_run(args, task: Task, arch_name: str, settings, device, plan: dict) -> dict:
    """A few timed iterations on the real observation, then the whole fit's time from their median."""
    import statistics

    from dip.fit import FitSettings, fit

    clean, observed, mask = _load_inputs(args, task)
    timed, warmup = 5, 2
    trial = FitSettings(**{**asdict(settings), "iterations": timed + warmup, "check_every": 1})
    seconds = fit(
        architecture(arch_name)["net"],
        _operator(args, task, mask),
        observed,
        trial,
        device=device,
        input_image=_input_image(args, task, observed),
        log=_log,
    ).history["seconds"]
    per_iteration = statistics.median(seconds.diff().iloc[warmup:])
    return {
        "arch": arch_name,
        "iterations": settings.iterations,
        **plan,
        "device": device_name(device),
        "seconds_per_iteration": round(per_iteration, 4),
        "estimated_minutes": round(per_iteration * settings.iterations / 60, 1),
    }


def _scores(image, clean, task: Task) -> dict:
    a, b = to_array(image), to_array(clean)
    return {"psnr": psnr(a, b, **task.convention), "ssim": ssim(a, b, **task.convention)}


def _seed_outputs(args) -> list[tuple[int, Path]]:
    """(network seed, output folder) of each fit this command runs."""
    if Path(args.out.replace("{seed}", "0")).is_file() or Path(args.out).is_file():
        raise InputError(f"--out {args.out}: is a file; give a folder")
    if not args.seeds:
        return [(args.seed, Path(args.out))]
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise InputError(f"--seeds: must be distinct and >= 0, got {args.seeds}")
    if "{seed}" in args.out:
        return [(seed, Path(args.out.format(seed=seed))) for seed in args.seeds]
    return [(seed, Path(args.out) / f"seed{seed}") for seed in args.seeds]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _device(name: str):
    """The device --device names, checked before anything is read or written."""
    from dip.devices import pick_device

    try:
        return pick_device(name)
    except ValueError as err:
        raise InputError(f"--device {name}: {err}") from None


def _fingerprint(args, task: Task, arch_name: str, rules: list[str], images: dict) -> dict:
    """What determines this command's fit besides its settings and network seeds (dip.checkpoint.fingerprint),
    by readable names: the task and its parameters, the observation seed, a content hash of every image the
    fit reads (None: not given), the network, the stopping setup, the seed scheme and the package version.
    A checkpoint in --out resumes only the fit with the same fingerprint."""
    from dip.provenance import content_hash

    return {
        "task": task.name,
        **{k: v for k, v in task.params().items() if k != "name"},
        "observation seed": _observation_seed(args),
        **{name: content_hash(image) for name, image in images.items() if image is not None},
        "arch": arch_name,
        "network": architecture(arch_name)["net"],
        "stop": args.stop,
        "stopping rules": rules,
        "window": args.window,
        "patience": args.patience,
        "holdout": args.holdout,
        "noise sigma": None if task.poisson else _noise_level(args)[0],
        "seed scheme": SCHEME,
        "version": __version__,
    }


def _check_finished_fit(summary: Path, identity: dict) -> None:
    """A folder holding a finished fit's results takes only that fit again (the same fingerprint, as a
    checkpoint records it): another fit there is one line naming what differs, before anything is written."""
    if not summary.exists():
        return
    try:
        recorded = json.loads(summary.read_text()).get("fingerprint")
    except (OSError, ValueError):
        recorded = None
    if recorded is None:
        raise InputError(
            f"{summary.parent}: holds the results of another fit (its summary.json records no "
            f"fingerprint); delete them or choose another --out"
        )
    from dip.checkpoint import differences, what_differs

    differs = differences(identity, recorded)
    if differs:
        raise InputError(
            f"{summary.parent}: holds the results of another fit ({what_differs(differs)}); delete "
            f"them or choose another --out"
        )


class _Signalled(Exception):
    """SIGTERM or SIGINT outside a fit's loop (which saves a checkpoint and raises FitInterrupted)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_signalled(signum, frame):
    raise _Signalled(signum)


def run_fit(args) -> dict:
    _check_seeds(args)
    if bool(args.image) == bool(getattr(args, "observed", None)):
        raise InputError("give exactly one of --image (clean, degraded here) or --observed (already degraded)")
    device = _device(args.device)
    task = _task(args)
    targets = _seed_outputs(args)
    if args.seeds and args.observation_seed is None:
        args.observation_seed = args.seeds[0]
    args.seed = targets[0][0]
    arch_name, values = _settings(args, task)

    import torch

    from dip.checkpoint import CheckpointMismatch, check_checkpoint, fingerprint
    from dip.fit import FitFailed, FitInterrupted, FitOutOfMemory, FitSettings, fit, fit_batch

    try:
        settings = FitSettings(**values)
    except ValueError as err:
        raise InputError(str(err)) from None
    if args.seeds and settings.optimizer != "adam":
        raise InputError("--seeds: batched fits use Adam; fit LBFGS seeds one at a time")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = _rule_names(args, task)
    plan = _memory_plan(args, task, arch_name, settings, device, names, batch=len(targets))
    if args.dry_run:
        try:
            return _dry_run(args, task, arch_name, settings, device, plan)
        except FitInterrupted as err:
            raise _Signalled(err.signum) from None
    clean, observed, mask = _load_inputs(args, task)
    input_image = _input_image(args, task, observed)
    operators = _operators(args, task, mask, observed, [seed for seed, _ in targets])
    rules, noise = _make_rules(args, names, settings, observed, operators)
    source = describe(args.image or args.observed, _reading(args))
    if args.image:
        _warn_if_made_at_8_bits(task, args.image, source)
    # Whether a checkpoint in --out is this fit's is decided before anything is written there.
    checkpoint = targets[0][1] / ("checkpoint.pt" if not args.seeds else "checkpoint-batch.pt")
    identity = _fingerprint(
        args,
        task,
        arch_name,
        names,
        {
            "observation": observed,
            "clean image": clean,
            "mask pixels": mask,
            "flash image": input_image,
            "psf": getattr(args, "psf_kernel", None),
        },
    )
    whole = fingerprint(settings, [seed for seed, _ in targets], identity)
    try:
        check_checkpoint(checkpoint, whole)
    except CheckpointMismatch as err:
        raise InputError(str(err)) from None
    recorded = json.loads(json.dumps(whole, default=str))  # as summary.json holds it
    for _, out in targets:
        _check_finished_fit(out / "summary.json", recorded)
        other = out / ("checkpoint-batch.pt" if not args.seeds else "checkpoint.pt")
        if other.exists():  # the other kind of run's checkpoint: never this fit's
            raise InputError(
                f"{other}: belongs to another fit ({'a batch of seeds' if not args.seeds else 'one seed'}"
                f"); delete it or choose another --out"
            )
    summaries = {}
    for seed, out in targets:
        seed_settings = FitSettings(**{**asdict(settings), "seed": seed})
        config = {
            "task": task.params(),
            "arch": arch_name,
            "network": architecture(arch_name)["net"],
            "settings": asdict(seed_settings),
            "observation_seed": _observation_seed(args),
            "seed_scheme": SCHEME,
            "stop": args.stop,
            "window": args.window,
            "patience": args.patience,
            **({"holdout": args.holdout} if args.holdout else {}),
        }
        summaries[seed] = {
            "task": task.name,
            "task_label": task.label() + (f"-holdout{args.holdout:g}" if args.holdout else ""),
            **{k: v for k, v in task.params().items() if k != "name"},
            "arch": arch_name,
            "preset": args.preset,
            "seed": seed,
            "observation_seed": _observation_seed(args),
            "seed_scheme": SCHEME,
            "iterations_budget": settings.iterations,
            "stop_window": args.window,
            "stop_patience": args.patience,
            "holdout": args.holdout or 0.0,
            "settings": asdict(seed_settings),
            "source": args.image or args.observed,
            "device": device_name(device),
            "batched_fits": len(targets),
            "config_hash": config_hash(config),
            "git_commit": git_commit(),
            "versions": package_versions(),
            "input_precision": source.record(),
            **noise,
            "status": "ok",
            "fingerprint": recorded,
        }
        save_image(observed, out / "observed", source, exact=task.poisson)
        if mask is not None:
            save_png(mask, out / "mask.png")
    start = time.perf_counter()
    options = dict(
        clean=clean,
        stop_on=args.stop if args.stop != "fixed" else None,
        device=device,
        checkpoint=checkpoint,
        checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress,
        log=_log,
        scorer=task.scorer,
        input_image=input_image,
        fingerprint=identity,
    )
    try:
        if args.seeds:
            results = fit_batch(
                architecture(arch_name)["net"],
                operators,
                observed,
                settings,
                [seed for seed, _ in targets],
                rules=rules,
                **options,
            )
        else:
            results = [fit(architecture(arch_name)["net"], operators[0], observed, settings, rules=rules[0], **options)]
    except FitInterrupted as err:
        raise SystemExit(128 + err.signum) from None
    except FitOutOfMemory as err:
        kept = f"; the checkpoint of iteration {err.iteration} is kept in {checkpoint.parent}" if err.iteration else ""
        raise InputError(
            f"{summaries[targets[0][0]]['source']}: {err} (estimated {plan['estimated_peak_mb']} MB)"
            f"{kept}; resize or crop the image, choose a smaller architecture (--arch), or use another "
            f"device"
        ) from None
    except FitFailed as err:
        results = [err]
    failures = []
    for (seed, out), result in zip(targets, results):
        summary = summaries[seed]
        error = str(result) if isinstance(result, FitFailed) else result.error
        if error:
            summary.update(status="failed", error=error, seconds=time.perf_counter() - start)
            save_csv(pd.DataFrame(columns=["iteration", "loss", "psnr_observed", "seconds"]), out / "history.csv")
            # The image of the last verified iteration: not a result (the status says so), but what was computed.
            last = result.image
            if last is not None:
                save_image(last, out / "restored", source)
            save_json(summary, out / "summary.json")
            failures.append(f"{out}: {error}")
            continue
        _write_fit(result, summary, out, settings, clean, observed, task, start, source)
    checkpoint.unlink(missing_ok=True)
    if failures and not args.failure_ok:
        raise InputError("; ".join(failures))
    for failure in failures:
        print(f"dip fit: {failure}", file=sys.stderr)
    return summaries[targets[0][0]]


def _write_fit(result, summary: dict, out: Path, settings, clean, observed, task: Task, start: float, source) -> None:
    """One fit's outputs: history.csv, restored.png (and the full-precision restored file of a 16-bit or float
    `source`) and summary.json (scores, on the float images, when there is a ground truth)."""
    history = result.history
    summary.update(
        iterations=result.iterations,
        seconds=float(history["seconds"].iloc[-1]),
        wall_seconds=time.perf_counter() - start,
        backtracks=result.backtracks,
        resumed_from=result.resumed_from,
        stopped_by=result.stopped_by,
    )
    # What stopping saved against the fixed budget: the iterations not run, and their time at this fit's pace.
    saved = settings.iterations - result.iterations
    summary.update(iterations_saved=saved, seconds_saved=saved * summary["seconds"] / max(result.iterations, 1))
    stops = {name: dict(rec) for name, rec in result.stops.items()}
    if clean is not None:
        ema = "psnr_ema" if settings.ema else "psnr"
        summary.update({f"{k}_final": v for k, v in _scores(result.output, clean, task).items()})
        if result.ema is not None:
            summary.update({f"{k}_ema_final": v for k, v in _scores(result.ema, clean, task).items()})
        summary.update({f"{k}_restored": v for k, v in _scores(result.image, clean, task).items()})
        summary.update(
            psnr_best=float(history["psnr"].max()),
            psnr_best_iteration=oracle_iteration(history, "psnr"),
            psnr_ema_best=float(history[ema].max()),
        )
        if task.name != "sr":
            summary.update({f"{k}_observed": v for k, v in _scores(observed, clean, task).items()})
        for name, image in result.rule_images.items():
            stops[name].update(_scores(image, clean, task))
        best = oracle_iteration(history, ema)
        stops["oracle"] = {"iteration": best, "psnr": float(history.loc[best - 1, ema]), "analysis_only": True}
    summary["stops"] = stops
    save_csv(history, out / "history.csv")
    save_image(result.image, out / "restored", source)
    save_json(summary, out / "summary.json")


def run_degrade(args) -> None:
    import torch

    _check_seeds(args)
    task = _task(args)
    clean = task.crop(load_image(args.image, _reading(args)))
    task.check_size(*clean.shape[-2:], args.image)
    task.check_channels(clean.shape[1], args.image)
    _check_psf_size(args, task, *clean.shape[-2:])
    source = describe(args.image, _reading(args))
    _warn_if_made_at_8_bits(task, args.image, source)
    mask = load_mask(args.mask, clean.shape[-2:]) if args.mask else None
    observed, mask = task.degrade(clean, _observation_seed(args), mask, args.psf_kernel)
    if mask is None and args.always_mask:
        mask = torch.ones(1, 1, *clean.shape[-2:])
    save_image(observed, Path(args.out) / "observed", source, exact=task.poisson or args.exact)
    if mask is not None:
        save_png(mask, Path(args.out) / "mask.png")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # its own parser: python -m dip.bench --help
        from dip.bench import main as bench_main

        return bench_main(argv[1:])
    args = parser().parse_args(argv)
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, *a, **k: f"dip: warning: {msg}\n"
    # A signal outside a fit's loop (reading, a dry run, writing) ends the command with 128 + the signal and
    # one line, no traceback; inside the loop the fit saves its checkpoint first (dip.fit._catch_termination).
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _raise_signalled) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if args.command == "degrade":
            run_degrade(args)
        else:
            summary = run_fit(args)
            if args.dry_run:
                print(json.dumps(summary))
            else:
                keys = [k for k in ("psnr_observed", "psnr_restored", "psnr_ema_best") if k in summary]
                print(json.dumps({k: round(summary[k], 3) for k in keys} | {"out": args.out}))
    except InputError as err:
        print(f"dip {args.command}: error: {err}", file=sys.stderr)
        return 2
    except _Signalled as err:
        dry = " (--dry-run: nothing written)" if getattr(args, "dry_run", False) else ""
        print(f"dip {args.command}: interrupted by {signal.Signals(err.signum).name}{dry}", file=sys.stderr)
        return 128 + err.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
