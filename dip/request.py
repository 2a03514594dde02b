"""`dip fit` and `dip degrade` as Python calls: an immutable request, checked whole before anything is read
fitted or written, run into the same files and the same `FitRecord` the command line writes.

Example (the command line's ``dip fit --task denoise --sigma 25 --image clean.png --out out``)::

    from dip.request import FitRequest, run_fit

    [record] = run_fit(FitRequest(task="denoise", sigma=25, image="clean.png", out="out"))
    print(record.psnr_restored)      # out/summary.json holds the same record (dip.record.read)

Bad input raises `dip.image_io.InputError` (a ValueError) with one line naming the file or option, before
any fitting and before any output is written.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from dip import __version__
from dip.checks import is_integer, is_number, python_scalar
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
    save_png,
    to_array,
)
from dip.inputs import INPUTS
from dip.presets import PAPER, architecture, preset_key
from dip.provenance import config_hash, device_name, git_commit, package_versions
from dip.record import FitRecord, StopRecord, write
from dip.risk import takes_the_observation
from dip.seeds import SCHEME, ensemble_seeds
from dip.stopping import HOLDOUT, RULES, make_rule, oracle_iteration
from dip.tasks import NOISES, TASK_OPTIONS, TASKS, Task

PRESETS = ("paper", "none")
LOSSES = ("default", "sure")
OPTIMISERS = ("adam", "lbfgs")


@dataclass(frozen=True)
class TaskRequest:
    """The task and how input files are read: what `dip fit` and `dip degrade` share. Field names are the
    command line's option names with ``_`` for ``-`` (`--observation-seed` is `observation_seed`); the
    docs/guide/tasks.md and `dip fit --help` describe each."""

    task: str
    out: str
    image: str | None = None
    sigma: float | None = None  # Gaussian noise std, 0-255 scale
    factor: int | None = None
    quality: int | None = None
    mask: str | None = None
    drop: float | None = None
    text: bool = False
    box: bool = False
    blur: str | None = None
    psf: str | None = None
    noise: str | None = None
    peak: float | None = None  # Poisson: expected count of a pixel of value 1
    seed: int | None = None  # None: 0, or with `seeds` the first of them
    observation_seed: int | None = None
    intensity_range: tuple[float, float] | None = None
    pages_as_channels: bool = False

    def __post_init__(self) -> None:
        _check_types(self)
        _as_floats(self, ("sigma", "drop", "peak"))
        if self.intensity_range is not None:
            object.__setattr__(self, "intensity_range", tuple(float(v) for v in self.intensity_range))
        _choice("task", self.task, TASKS)
        _choice("noise", self.noise, NOISES)
        for name in ("seed", "observation_seed"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InputError(f"--{name.replace('_', '-')}: must be >= 0, got {value}")
        if self.drop is not None and (self.text or self.box) or (self.text and self.box):
            raise InputError("--drop/--text/--box: give at most one mask kind")

    @classmethod
    def from_namespace(cls, args: Any) -> TaskRequest:
        """The request an argparse Namespace holds (options not given, None, take the field's default)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None})

    @property
    def reading(self) -> Reading:
        return Reading(self.intensity_range, self.pages_as_channels)

    @property
    def the_observation_seed(self) -> int:
        return (self.seed or 0) if self.observation_seed is None else self.observation_seed


@dataclass(frozen=True)
class DegradeRequest(TaskRequest):
    """`dip degrade`: a seeded observation (and mask) of the clean `image`, written to `out`."""

    always_mask: bool = False
    exact: bool = False


@dataclass(frozen=True)
class FitRequest(TaskRequest):
    """`dip fit`: restore `observed` (or a seeded observation of the clean `image`) with Deep Image Prior.

    Settings left None take the task's paper preset (`preset="paper"`) or the library's defaults
    (`preset="none"`); `seeds` fits several network seeds at once, stacked, each into ``out/seed{seed}``
    (or `out` with ``{seed}`` in it, which a single fit formats with its one seed too). Raises InputError
    (one line naming the option) for a value out of range; files are checked when the request runs.
    """

    observed: str | None = None
    clean: str | None = None
    flash: str | None = None
    seeds: tuple[int, ...] | None = None
    arch: str | None = None
    preset: str = "paper"
    iters: int | None = None
    lr: float | None = None
    reg_noise_std: float | None = None
    input: str | None = None
    input_depth: int | None = None
    ema: float | None = None
    optimizer: str | None = None
    tv_weight: float | None = None
    red_weight: float | None = None  # DeepRED's λ (dip.red); None or 0: no RED term
    ssim_every: int | None = None
    stop: str | None = None
    record_stops: bool = False
    holdout: float | None = None
    noise_sigma: float | str | None = None  # 0-255 scale, or "estimate"
    window: int = 100
    patience: int | None = None
    device: str = "auto"
    threads: int | None = None
    channels_last: bool | None = None
    bf16: bool | None = None
    compile: bool = False
    memory_saving: bool = False  # always recompute activations (else only when the plain fit would not fit)
    checkpoint_every: int | None = None
    progress: bool = True
    failure_ok: bool = False
    save_network: bool = False  # keep each fit's network in its folder (dip.saved_network)
    init_from: str | None = None  # start from a saved network: a network.pt or a folder holding one
    loss: str = "default"  # default | sure (SURE, or PURE for Poisson noise: dip.risk)
    ensemble: int = 1  # fits averaged per network seed (dip.seeds.ensemble_seeds)
    tile: int | None = None  # fit in tiles of this side (dip.tiles); None: only when the whole image does not fit
    tile_overlap: int = 64  # pixels neighbouring tiles share

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("loss", self.loss, LOSSES)
        if not (is_integer(self.ensemble) and self.ensemble >= 1):
            raise InputError(f"--ensemble: must be an integer >= 1, got {self.ensemble!r}")
        _as_floats(self, ("lr", "reg_noise_std", "ema", "tv_weight", "red_weight", "holdout"))
        if not isinstance(self.noise_sigma, str):
            _as_floats(self, ("noise_sigma",))
        if self.seeds is not None:
            object.__setattr__(self, "seeds", tuple(self.seeds))
        _choice("preset", self.preset, PRESETS)
        _choice("input", self.input, INPUTS)
        _choice("optimizer", self.optimizer, OPTIMISERS)
        _choice("stop", self.stop, RULES)
        for name in ("window", "patience", "threads", "checkpoint_every", "iters", "input_depth", "ssim_every"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value > 0):
                raise InputError(f"--{name.replace('_', '-')}: must be an integer > 0, got {value}")
        for name in ("reg_noise_std", "tv_weight", "red_weight"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < math.inf:
                raise InputError(f"--{name.replace('_', '-')}: must be a finite number >= 0, got {value}")
        if self.seeds is not None and (
            not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0
        ):
            raise InputError(f"--seeds: must be one or more distinct integers >= 0, got {list(self.seeds)}")
        if self.seeds is not None and self.seed is not None:
            raise InputError("--seed: give one network seed (--seed) or several (--seeds), not both")
        if self.tile_overlap < 0:
            raise InputError(f"--tile-overlap: must be an integer >= 0, got {self.tile_overlap}")
        if self.tile is not None and self.tile < max(32, 2 * self.tile_overlap):
            raise InputError(
                f"--tile: must be at least 32 and at least twice --tile-overlap ({self.tile_overlap}), got {self.tile}"
            )

    @classmethod
    def from_namespace(cls, args: Any) -> FitRequest:
        request = super().from_namespace(args)
        return replace(request, progress=not getattr(args, "no_progress", False))

    def outputs(self) -> list[tuple[int, Path]]:
        """(network seed, output folder) of each fit the request runs."""
        if "{seed}" in self.out:  # one seed too: --out 'x_{seed}' --seed 3 is x_3
            return [(seed, Path(self.out.replace("{seed}", str(seed)))) for seed in self.seeds or (self.seed or 0,)]
        if not self.seeds:
            return [(self.seed or 0, Path(self.out))]
        return [(seed, Path(self.out) / f"seed{seed}") for seed in self.seeds]


# The type each field takes, checked when a request is made (Python callers have no argparse in front).
_INTEGERS = ("seed", "observation_seed", "factor", "quality", "iters", "input_depth", "ssim_every", "window",
             "patience", "threads", "checkpoint_every", "tile", "tile_overlap")  # fmt: skip
_NUMBERS = ("sigma", "drop", "peak", "lr", "reg_noise_std", "ema", "tv_weight", "red_weight", "holdout")
_TEXTS = ("task", "out", "image", "observed", "clean", "flash", "mask", "blur", "psf", "noise", "arch", "preset",
          "input", "optimizer", "stop", "device", "init_from", "loss")  # fmt: skip


def _check_types(request: TaskRequest) -> None:
    """One line naming the option whose value is of the wrong type (a bool is no number here)."""

    for names, ok, what in (
        (_INTEGERS, is_integer, "an integer"),
        (_NUMBERS, is_number, "a number"),
        (_TEXTS, lambda v: isinstance(v, str), "a string"),
    ):
        for name in names:
            value = getattr(request, name, None)
            if value is not None and not ok(value):
                raise InputError(f"--{name.replace('_', '-')}: expected {what}, got {value!r}")
    seeds = getattr(request, "seeds", None)
    if seeds is not None and (
        isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable) or not all(is_integer(v) for v in seeds)
    ):
        raise InputError(f"--seeds: expected integers, got {seeds!r}")
    pair = request.intensity_range
    if pair is not None and not (
        isinstance(pair, (tuple, list)) and len(pair) == 2 and all(is_number(v) for v in pair)
    ):
        raise InputError(f"--intensity-range: expected two numbers (LO, HI), got {pair!r}")
    noise_sigma = getattr(request, "noise_sigma", None)
    if noise_sigma is not None and not (is_number(noise_sigma) or noise_sigma == "estimate"):
        raise InputError(f"--noise-sigma: a noise level (0-255 scale) or 'estimate', got {noise_sigma!r}")
    # NumPy scalars as the Python numbers they hold: one record and one config hash whatever made the value.
    for name in (*_INTEGERS, *_NUMBERS, "noise_sigma", "ensemble"):
        if hasattr(request, name):
            object.__setattr__(request, name, python_scalar(getattr(request, name)))
    if seeds is not None:
        object.__setattr__(request, "seeds", tuple(python_scalar(v) for v in seeds))


def _as_floats(request: TaskRequest, names: tuple[str, ...]) -> None:
    """Numbers given as ints (sigma=25) become the floats the command line parses (25.0): the same request,
    the same record and config hash."""
    for name in names:
        value = getattr(request, name)
        if isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(request, name, float(value))


def _choice(option: str, value: Any, choices: tuple) -> None:
    if value is not None and value not in choices:
        raise InputError(f"--{option.replace('_', '-')}: {value!r} is not one of {', '.join(map(str, choices))}")


def log_line(message: str) -> None:
    """The default log: one plain line on stderr."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# The task and its inputs (shared by dip fit and dip degrade)


def _given_task_options(request: TaskRequest) -> dict:
    """The task options (dip.tasks.TASK_OPTIONS) the request gives."""
    values = {name: getattr(request, name, None) for name in TASK_OPTIONS}
    return {name: value for name, value in values.items() if value is not None and value is not False}


def _task(request: TaskRequest) -> Task:
    """The task the request describes, checked against the task's options (dip.tasks.Task.from_options)."""
    return Task.from_options(
        request.task, _given_task_options(request), observed=bool(getattr(request, "observed", None))
    )


def _load_psf(path: str | None):
    """--psf FILE as a normalised kernel tensor (float64), None without one, or one line naming the file."""
    if not path:
        return None
    import torch

    from dip.image_io import load_psf
    from dip.operators import normalise_psf

    try:
        return normalise_psf(torch.from_numpy(load_psf(path)))
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None


def _check_psf_size(request: TaskRequest, task: Task, psf, h: int, w: int) -> None:
    """deblur: the PSF must fit in the image (its borders are reflected by the kernel's radius)."""
    if task.name != "deblur":
        return
    from dip.tasks import parse_blur, psf_side

    kind, values = parse_blur(task.blur)
    kh, kw = (psf_side(kind, values),) * 2 if psf is None else psf.shape[-2:]  # sized before it is built
    if kh > h or kw > w:
        given = request.psf or f"--blur {request.blur}"
        raise InputError(f"{given}: the PSF is {kh}x{kw}, larger than the {h}x{w} image")


def _warn_if_made_at_8_bits(task: Task, path: str, source: Source) -> None:
    """SR's observation (PIL's Lanczos resize) and JPEG's are made from an 8-bit image: say so when the
    clean image `source` holds more, since its observation then keeps less than the file."""
    if task.name in ("sr", "jpeg") and source.sample_type not in ("uint8", "bool"):
        warnings.warn(
            f"{path}: the {task.name} observation is made from the image at 8 bits ({source.sample_type} "
            f"samples); its full-precision files hold that 8-bit observation",
            stacklevel=2,
        )


def run_degrade(request: DegradeRequest) -> None:
    """Write `request.out`/observed.png (and mask.png, and the exact observation as observed.tif where
    asked or where Poisson noise makes it exceed 1)."""
    import torch

    r = request
    if r.task == "flash":  # _task would ask for --flash/--observed, which dip degrade does not take
        raise InputError(
            "--task flash: a flash/no-flash pair is photographed, not made from a clean image; "
            "fit a pair with dip fit --task flash --flash FLASH --observed NOFLASH"
        )
    task = _task(r)
    psf = _load_psf(r.psf)
    clean = task.crop(load_image(r.image, r.reading))
    task.check_size(*clean.shape[-2:], r.image)
    task.check_channels(clean.shape[1], r.image)
    _check_psf_size(r, task, psf, *clean.shape[-2:])
    source = describe(r.image, r.reading)
    _warn_if_made_at_8_bits(task, r.image, source)
    mask = load_mask(r.mask, clean.shape[-2:]) if r.mask else None
    observed, mask = task.degrade(clean, r.the_observation_seed, mask, psf)
    if mask is None and r.always_mask:
        mask = torch.ones(1, 1, *clean.shape[-2:])
    save_image(observed, Path(r.out) / "observed", source, exact=task.poisson or r.exact)
    if mask is not None:
        save_png(mask, Path(r.out) / "mask.png")


# ---------------------------------------------------------------------------------------------------------
# dip fit: a request is resolved and checked into a _Job (nothing written), then run, then recorded.


@dataclass
class _Job:
    """Everything one `dip fit` decided before fitting: the resolved request and what it implies."""

    request: FitRequest
    task: Task
    psf: Any
    device: Any
    targets: list[tuple[int, Path]]  # (network seed, output folder) per fit
    arch: str
    settings: Any  # dip.fit.FitSettings
    rule_names: list[str]
    plan: dict  # memory plan
    log: Callable[[str], None] = log_line
    clean: Any = None
    observed: Any = None
    mask: Any = None
    input_image: Any = None
    source: Source | None = None
    init: Any = None  # dip.saved_network.SavedNetwork of --init-from
    members: dict[int, list[int]] | None = None  # per target seed, the network seeds its fits use
    risk: Any = None  # dip.risk.RiskEstimate of --loss sure
    full_budget: bool = False  # --record-stops without --stop: the whole budget, the default rule's image

    @property
    def seeds(self) -> list[int]:
        return [seed for seed, _ in self.targets]

    @property
    def fitted(self) -> list[int]:
        """The network seed of every fit run, in order: each target's ensemble members (itself alone
        without --ensemble)."""
        return [m for seed in self.seeds for m in (self.members or {}).get(seed, [seed])]

    @property
    def batched(self) -> bool:
        return len(self.fitted) > 1

    @property
    def tiled(self) -> bool:
        """Whether the image is restored in tiles (dip.tiles), as the memory plan decided."""
        return self.plan.get("memory_mode") == "tiled"

    @property
    def checkpoint(self) -> Path:
        return self.targets[0][1] / ("checkpoint-batch.pt" if self.batched else "checkpoint.pt")


def plan_fit(request: FitRequest, log: Callable[[str], None] = log_line) -> dict:
    """`dip fit --dry-run`: the memory estimate and a time estimate from a few timed iterations on the real
    observation, and what the output folder holds (`out_state`: free, this fit's checkpoint, another fit's
    checkpoint or results and what differs, or in use by a running fit). Fits nothing, writes nothing."""
    import statistics

    from dip import folders
    from dip.checkpoint import fingerprint
    from dip.fit import FitSettings, fit, fit_batch

    job = _resolve(request, log)
    _read_inputs(job)
    timed, warmup = 5, 2
    # Checked every iteration to time each one; its first outputs are nothing to judge a collapse by, and the
    # trial's own lines (progress, backtracks) are not the plan's, so neither reaches the user.
    trial = FitSettings(
        **{**asdict(job.settings), "iterations": timed + warmup, "check_every": 1, "backtrack_db": None}
    )
    net, operator = architecture(job.arch)["net"], job.task.operator(job.mask, job.psf)
    observed, input_image, risk = job.observed, job.input_image, _risk(job)[0]
    mode, fits = job.plan["memory_mode"], 1
    if job.tiled:  # timed on the first tile, in the mode each tile's fit will run in; the tiles run in turn
        from dip.tiles import crop_operator

        h, w = (min(job.plan["tile"], side) for side in observed.shape[-2:])
        operator = crop_operator(operator, 0, 0, h, w)
        observed = observed[..., :h, :w]
        input_image = None if input_image is None else input_image[..., :h, :w]
        mode, fits = job.plan["tile_memory_mode"], job.plan["tiles"]
    options = dict(
        device=job.device,
        input_image=input_image,
        log=lambda line: None,
        risk=risk,
        red=_red(job.request),
        memory_saving=mode == "checkpointed",  # timed in the mode the fit will run in
    )
    if job.batched:  # the batch as it will run: one network of every seed's fit
        result = fit_batch(net, operator, observed, trial, job.fitted, **options)[0]
    else:
        result = fit(net, operator, observed, trial, **options)
    seconds = result.history["seconds"]
    per_iteration = statistics.median(seconds.diff().iloc[warmup:])
    whole = fingerprint(job.settings, job.fitted, _identity(job))
    outs = [out for _, out in job.targets]
    out_state = folders.describe(job.checkpoint, whole, outs, batch=job.batched)
    if job.tiled and not out_state.endswith("would be refused"):
        out_state = _tiles_state(outs[0] / "tiles", whole, job.plan["tiles"]) or out_state
    return {
        "arch": job.arch,
        "iterations": job.settings.iterations,
        "fits": len(job.targets),  # with several seeds, timed as the batch they run in
        **job.plan,
        "device": device_name(job.device),
        "seconds_per_iteration": round(per_iteration, 4),  # of one tile's fit, tiled
        "estimated_minutes": round(per_iteration * job.settings.iterations * fits / 60, 1),
        "out": str(outs[0]) if len(outs) == 1 else [str(out) for out in outs],
        "out_state": out_state,
        "stop": job.request.stop,  # the rule that chooses the returned image (the task's default without --stop)
        "holdout": job.request.holdout or 0.0,
        "full_budget": job.full_budget or job.request.stop == "fixed",
    }


def memory_plan(request: FitRequest) -> dict:
    """The memory mode `dip fit` would fit the request in, and why: the memory fields of `--dry-run`
    (``memory_mode``, ``memory_mode_why``, ``estimated_peak_mb``, the plain and memory-saving estimates in MB,
    the tiles if tiled), from the files' headers only: nothing is read, fitted or timed.

    :param request: the command's request.
    :raises InputError: what `dip fit` would refuse (in one line) before fitting.
    """
    return dict(_resolve(request, lambda line: None).plan)


def _tiles_state(folder: Path, whole: dict, count: int) -> str | None:
    """What a dry run says of a tiled fit's OUT/tiles: another fit's tiles (refused), or how many of this
    fit's tiles are finished (resumed); None where it holds none."""
    from dip.tiles import check_folder

    try:
        done = check_folder(folder, whole)
    except InputError as err:
        return f"{err}; the fit would be refused"
    return f"{folder} holds {done} of {count} tiles of this fit; the fit resumes from them" if done else None


def run_fit(request: FitRequest, log: Callable[[str], None] = log_line) -> list[FitRecord]:
    """Run `request` as `dip fit` does: check everything, fit, and write each fit's observed, restored and
    history files and its summary.json. Returns the records written, one per network seed.

    :raises InputError: bad input (one line, before anything is written), an output folder in use by a
        running fit (dip.folders: the folders are held while the fit runs) or holding another fit's
        files, a fit that keeps diverging (unless `failure_ok`; its summary.json then says so), or too
        little memory.
    :raises SystemExit: 128 + the signal after SIGTERM/SIGINT (the checkpoint is saved first).
    """
    from dip.folders import hold

    with hold(out for _, out in _seed_outputs(request)):  # before anything is read or written
        return _run_fit(request, log)


def _run_fit(request: FitRequest, log: Callable[[str], None]) -> list[FitRecord]:
    from dip.fit import fit, fit_batch

    job = _resolve(request, log)
    _read_inputs(job)
    if job.tiled:
        return _run_tiled(job)
    operators, rules, identity, records = _prepare(job)
    _write_observations(job)
    options = _run_options(job, identity)
    net = architecture(job.arch)["net"]
    start = time.perf_counter()

    def run() -> list:
        if job.batched:
            return _ensembles(
                job, fit_batch(net, operators, job.observed, job.settings, job.fitted, rules=rules, **options)
            )
        return [fit(net, operators[0], job.observed, job.settings, rules=rules[0], **options)]

    results = _running(job, request.image or request.observed, job.checkpoint, run)
    return _finish(job, records, results, start)


def _running(job: _Job, name: str, checkpoint: Path, run: Callable[[], list]) -> list:
    """`run()`'s results (the fits of `job`, or of a stack led by it): a signal ends the command with 128 +
    the signal (the checkpoint saved), running out of memory is one line naming `name` and the checkpoint
    kept, and a single fit that kept diverging is its FitFailed as its result."""
    from dip.fit import FitFailed, FitInterrupted, FitOutOfMemory

    try:
        return run()
    except FitInterrupted as err:
        raise SystemExit(128 + err.signum) from None
    except FitOutOfMemory as err:
        kept = f"; the checkpoint of iteration {err.iteration} is kept in {checkpoint.parent}" if err.iteration else ""
        raise InputError(
            f"{name}: {err} (estimated {job.plan['estimated_peak_mb']} MB){kept}; resize or crop the "
            f"image, choose a smaller architecture (--arch), or use another device"
        ) from None
    except FitFailed as err:
        return [err]


def run_stacked(requests: list[FitRequest], log: Callable[[str], None] = log_line) -> list[list[FitRecord]]:
    """Run several requests' fits as one batched network (`dip.fit.fit_batch`), one member per (image,
    network seed): each request is resolved, read, checked and recorded as `run_fit` does it, its files
    written into its own folders, and its fits keep their own weights, backtracking, stopping rules and
    record (which says, in `stack`, with which images it was fitted). The stack's checkpoint,
    ``checkpoint-stack.pt``, is in the first fit's folder; rerunning the same stack resumes from it.

    :param requests: requests for images of one size and channel count that differ only in their files,
        output folders and seeds (the same task, architecture and settings); one request is `run_fit`.
    :returns: each request's records, in order.
    :raises InputError: as `run_fit`, and one line, before anything is read or written, for requests that
        cannot be stacked (`_check_stack`: tiles, --ensemble, --loss sure, flash, LBFGS, different tasks,
        settings or sizes) or a stack too large for the device's memory.
    """
    from dip.folders import hold

    if len(requests) == 1:
        return [run_fit(requests[0], log)]
    with hold(out for r in requests for _, out in _seed_outputs(r)):
        return _run_stacked(requests, log)


def _run_stacked(requests: list[FitRequest], log: Callable[[str], None]) -> list[list[FitRecord]]:
    from dip import folders
    from dip.checkpoint import fingerprint
    from dip.fit import fit_batch

    jobs = [_resolve(r, log) for r in requests]
    fitted = [seed for job in jobs for seed in job.fitted]
    plan = _check_stack(jobs, len(fitted))
    for job in jobs:
        _read_inputs(job)
        job.plan = plan  # the stack's: its mode (plain or memory-saving) is every fit's
    prepared = [_prepare(job) for job in jobs]
    names = [str(job.request.image or job.request.observed) for job in jobs]
    identity = {
        "stack": names,
        **{f"{name}: {key}": value for name, (*_, own, _) in zip(names, prepared) for key, value in own.items()},
    }
    checkpoint = jobs[0].targets[0][1] / "checkpoint-stack.pt"
    folders.check(checkpoint, fingerprint(jobs[0].settings, fitted, identity), [], batch=True)
    for *_, records in prepared:
        for record in records.values():
            record.batched_fits, record.stack = len(fitted), names
    for job in jobs:
        _write_observations(job)
    clean = None if jobs[0].clean is None else _per_fit([job.clean for job in jobs], jobs)
    options = {**_run_options(jobs[0], identity), "checkpoint": checkpoint, "clean": clean}
    net = architecture(jobs[0].arch)["net"]
    observed = _per_fit([job.observed for job in jobs], jobs)
    operators = [op for ops, *_ in prepared for op in ops]
    if all(job.mask is None for job in jobs) and not jobs[0].request.holdout:
        operators = operators[:1]  # it holds nothing of an image: one call gives every fit's data term
    rules = [fit_rules for _, rules, *_ in prepared for fit_rules in rules]
    log(f"stacked: {len(fitted)} fits of {len(jobs)} images ({', '.join(names)}) as one network")
    start = time.perf_counter()

    def run() -> list:
        return fit_batch(net, operators, observed, jobs[0].settings, fitted, rules=rules, **options)

    results = _running(jobs[0], ", ".join(names), checkpoint, run)
    done, failures, at = [], [], 0
    for job, (*_, records) in zip(jobs, prepared):
        mine, at = results[at : at + len(job.fitted)], at + len(job.fitted)
        try:
            done.append(_finish(job, records, mine, start))
        except InputError as err:  # a failed fit: the others' files are written all the same
            done.append([records[seed] for seed in job.seeds])
            failures.append(str(err))
    checkpoint.unlink(missing_ok=True)
    if failures:
        raise InputError("; ".join(failures))
    return done


def _per_fit(images: list, jobs: list[_Job]):
    """Each job's image (1, C, H, W) once per fit of the job, as one (B, C, H, W) tensor."""
    import torch

    return torch.cat([image.expand(len(job.fitted), -1, -1, -1) for image, job in zip(images, jobs)])


# What may differ between the requests of one stack: each image's files, folders and seeds.
_PER_IMAGE = {"image": None, "observed": None, "clean": None, "mask": None, "out": "", "seed": None,
              "seeds": None, "observation_seed": None}  # fmt: skip


def _check_stack(jobs: list[_Job], fits: int) -> dict:
    """Refuse, in one line before anything is read, requests whose fits cannot be one batched network; the
    memory plan of the stack's `fits` fits (plain or memory-saving, never tiled)."""
    first = jobs[0]
    refused = [
        (
            "--ensemble",
            first.request.ensemble > 1,
            "each image's members are averaged apart; fit ensembles with --stack 1",
        ),
        ("--loss sure", first.request.loss == "sure", "each image's noise level and divergence step are its own"),
        ("--task flash", first.task.name == "flash", "each image's network input is its own flash photograph"),
        ("--optimizer", first.settings.optimizer != "adam", "batched fits use Adam"),
    ]
    for option, given, reason in refused:
        if given:
            raise InputError(f"{option}: not taken by stacked fits (--stack): {reason}")
    size = _fit_size(first.request, first.task)[:3]
    for job in jobs:
        name = job.request.image or job.request.observed
        if job.tiled:
            raise InputError(
                f"--stack: {name} would be restored in tiles ({job.plan['memory_mode_why']}); fit it alone"
            )
        if _fit_size(job.request, job.task)[:3] != size:
            raise InputError(
                f"--stack: {name} is {'x'.join(map(str, _fit_size(job.request, job.task)[:3]))} (H x W x C), "
                f"{first.request.image or first.request.observed} {'x'.join(map(str, size))}: a stack holds images "
                f"of one size"
            )
        if replace(job.request, **_PER_IMAGE) != replace(first.request, **_PER_IMAGE) or (
            job.arch,
            replace(job.settings, seed=0),
            job.rule_names,
        ) != (first.arch, replace(first.settings, seed=0), first.rule_names):
            raise InputError(
                f"--stack: {name} is not fitted as {first.request.image or first.request.observed} is; a stack holds one task, architecture and settings"
            )
    if len({job.request.clean is not None or job.request.image is not None for job in jobs}) > 1:
        raise InputError("--stack: some images have a ground truth and others not; stack them apart")
    try:
        plan = _memory_plan(first, fits)
    except InputError:
        plan = {"memory_mode": "tiled"}
    if plan["memory_mode"] == "tiled":
        h, w, _ = size
        raise InputError(
            f"--stack: {fits} fits of {h}x{w} need more memory together than {first.device.type} has; "
            f"give a smaller --stack"
        )
    return plan


def _prepare(job: _Job) -> tuple[list, list[list], dict, dict[int, FitRecord]]:
    """What a read job needs before its fits run, all checked before anything is written: each fit's
    operator and rules, the fit's identity (`_identity`; the output folders checked against it) and each
    network seed's record as far as it is known before fitting."""
    job.init = _read_init(job)
    operators, rules, noise = _rules(job)
    job.risk, risk_info = _risk(job)
    noise = {**noise, **risk_info}
    identity, recorded = _check_out(job)
    records = {seed: _record(job, seed, noise, recorded) for seed in job.seeds}
    return operators, rules, identity, records


def _write_observations(job: _Job) -> None:
    """The observation (and mask) in every output folder of the job, before fitting."""
    for _, out in job.targets:
        save_image(job.observed, out / "observed", job.source, exact=job.task.poisson)
        if job.mask is not None:
            save_png(job.mask, out / "mask.png")


def _run_tiled(job: _Job) -> list[FitRecord]:
    """A tiled fit (dip.tiles.restore_tiled): the observation written as usual, then each tile restored by
    an ordinary fit (`dip.restore`) whose image is kept in OUT/tiles as it finishes (a rerun of the same
    command loads the finished tiles and resumes the interrupted one from its checkpoint), then the blend
    written as restored, every tile's history in one history.csv (a `tile` column, 1 for the first tile),
    and summary.json listing the tiles."""
    from dip.checkpoint import CheckpointMismatch
    from dip.fit import FitFailed, FitInterrupted, FitOutOfMemory
    from dip.tiles import check_folder, restore_tiled

    r, plan = job.request, job.plan
    [(seed, out)] = job.targets
    job.risk, noise = _risk(job)
    _, recorded = _check_out(job)
    folder = out / "tiles"
    check_folder(folder, recorded)  # before anything is written
    record = _record(job, seed, noise, recorded)
    _write_observations(job)
    options = dict(
        arch=job.arch,
        settings=job.settings,
        stop=r.stop,
        device=job.device,
        holdout=r.holdout or None,
        window=r.window,
        patience=r.patience,
        progress=r.progress,
        loss=r.loss,
        red_weight=r.red_weight or 0.0,
        noise_sigma=noise["noise_sigma"] / 255 if "noise_sigma" in noise else None,  # --loss sure's σ, once
        memory_saving=plan["tile_memory_mode"] == "checkpointed",
        checkpoint_every=r.checkpoint_every,
    )
    start = time.perf_counter()
    try:
        result = restore_tiled(
            job.observed,
            job.task.operator(job.mask, job.psf),
            tile=plan["tile"],
            overlap=plan["tile_overlap"],
            clean=job.clean,
            log=job.log,
            folder=folder,
            identity=recorded,
            **options,
        )
    except FitInterrupted as err:
        raise SystemExit(128 + err.signum) from None
    except FitOutOfMemory as err:
        raise InputError(
            f"{r.image or r.observed}: {err} in a tile's fit (estimated {plan['estimated_peak_mb']} MB); the "
            f"finished tiles are kept in {folder}; choose a smaller --tile or another device (--device)"
        ) from None
    except CheckpointMismatch as err:
        raise InputError(str(err)) from None
    except FitFailed as err:
        record.status, record.error, record.seconds = "failed", f"a tile's fit failed: {err}", 0.0
        record.wall_seconds = time.perf_counter() - start
        save_csv(_empty_history(), out / "history.csv")
        write(record, out / "summary.json")
        if not r.failure_ok:
            raise InputError(f"{out}: {record.error}; the finished tiles are kept in {folder}") from None
        job.log(f"dip fit: {out}: {record.error}")
        return [record]
    _complete_tiled(record, result, job, start)
    save_csv(_tiles_history(result.tiles), out / "history.csv")
    save_image(result.image, out / "restored", job.source)
    write(record, out / "summary.json")
    return [record]


def _complete_tiled(record: FitRecord, result, job: _Job, start: float) -> None:
    """Fill `record` from a finished tiled restoration (a dip.tiles.TiledResult): its tiles, their iterations
    and seconds summed, and (with a ground truth) the scores of the blended image and of the observation."""
    record.tiles = [tile.summary() for tile in result.tiles]
    record.iterations = sum(tile.iterations for tile in result.tiles)
    record.seconds = sum(tile.seconds for tile in result.tiles)
    record.wall_seconds = time.perf_counter() - start
    # restored.png is the tiles' blend: each tile's own rule and iteration are in `tiles`.
    record.stop, record.returned_by, record.returned_iteration = job.request.stop, "tiles", None
    if job.clean is None:
        return
    truth = to_array(job.clean)
    record.set_scores("restored", job.task.score(to_array(result.image), truth))
    record.set_scores("observed", job.task.score(to_array(job.observed), truth))


def _tiles_history(tiles: list):
    """One history of every tile's fit, each row's tile (1, 2, ... in the order of `tiles`) first; a tile
    kept without its history has no rows."""
    import pandas as pd

    frames = [t.history.assign(tile=n) for n, t in enumerate(tiles, 1) if t.history is not None]
    if not frames:
        return _empty_history()
    history = pd.concat(frames, ignore_index=True)
    return history[["tile"] + [c for c in history.columns if c != "tile"]]


def _resolve(request: FitRequest, log: Callable[[str], None]) -> _Job:
    """The request with every default decided (seeds, holdout, stopping rule), its task, settings, rules and
    memory plan, all checked; reads only file headers."""
    r = request
    if bool(r.image) == bool(r.observed):
        raise InputError("give exactly one of --image (clean, degraded here) or --observed (already degraded)")
    device = _device(r.device)
    task = _task(r)
    psf = _load_psf(r.psf)
    targets = _seed_outputs(r)
    observation_seed = r.seeds[0] if r.seeds and r.observation_seed is None else r.observation_seed
    r, full_budget = _default_stop(r, task)
    holdout = HOLDOUT if r.holdout is None and r.stop == "holdout" else r.holdout
    r = replace(r, observation_seed=observation_seed, holdout=holdout)
    _check_variants(r, task)
    arch_name, settings = _settings(r, task, seed=targets[0][0])
    if r.seeds and settings.optimizer != "adam":
        raise InputError("--seeds: batched fits use Adam; fit LBFGS seeds one at a time")
    if r.loss == "sure" and not takes_the_observation(architecture(arch_name)["net"]):
        raise InputError(f"--arch {arch_name}: takes a small input, not the observation that --loss sure feeds it")
    if r.ensemble > 1 and settings.optimizer != "adam":
        raise InputError("--ensemble: its members are fitted as one batched network, with Adam; not with LBFGS")
    if r.threads:
        import torch

        torch.set_num_threads(r.threads)
    names = _rule_names(r, task)
    job = _Job(r, task, psf, device, targets, arch_name, settings, names, plan={}, log=log, full_budget=full_budget)
    job.members = {seed: ensemble_seeds(seed, r.ensemble) for seed, _ in targets}
    job.plan = _memory_plan(job)
    if job.tiled:
        _check_tiled(job)
    return job


def _default_stop(r: FitRequest, task: Task) -> tuple[FitRequest, bool]:
    """Without --stop, the task's default (dip.defaults): its rule, unless --iters says otherwise its budget
    for the image's size, and unless --arch does its network; with --record-stops the fit then runs the
    whole budget and returns the default rule's image. Returns the request with `stop` decided and whether
    the fit runs its whole budget."""
    if r.stop is not None:
        return r, False
    from dip.defaults import for_task

    default = for_task(task, r.loss)
    iters, arch = r.iters, r.arch
    if r.preset == "paper":
        if iters is None and default.iterations is not None:
            # A budget that grows with the image is read from the file's header (as the memory plan is).
            iters = default.budget(*_fit_size(r, task)[:2]) if default.grows_above else default.iterations
        arch = arch or default.archs.get(preset_key(task))
    return replace(r, stop=default.stop, iters=iters, arch=arch), r.record_stops


def _seed_outputs(r: FitRequest) -> list[tuple[int, Path]]:
    """FitRequest.outputs, checked: a folder may not be a file."""
    outputs = r.outputs()
    if Path(r.out).is_file() or any(out.is_file() for _, out in outputs):
        raise InputError(f"--out {r.out}: is a file; give a folder")
    return outputs


def _device(name: str):
    """The device `name` names, checked before anything is read or written."""
    from dip.devices import pick_device

    try:
        return pick_device(name)
    except ValueError as err:
        raise InputError(f"--device {name}: {err}") from None


def _settings(r: FitRequest, task: Task, seed: int):
    """The architecture's name and the FitSettings: the preset's, the architecture's own, then the request's."""
    from dip.fit import FitSettings

    key = preset_key(task)
    arch_name, values = PAPER[key] if r.preset == "paper" else ("skip", {})
    arch_name = r.arch or arch_name
    try:
        values = {**values, **architecture(arch_name).get("settings", {})}
    except ValueError as err:
        raise InputError(f"--arch: {err}") from None
    overrides = {
        "iterations": r.iters,
        "lr": r.lr,
        "reg_noise_std": r.reg_noise_std,
        "input": r.input,
        "input_depth": r.input_depth,
        "ema": r.ema,
        "optimizer": r.optimizer,
        "tv_weight": r.tv_weight,
        "ssim_every": r.ssim_every,
        "seed": seed,
        "channels_last": r.channels_last,
        "bf16": r.bf16,
        "compile": r.compile or None,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    if r.loss == "sure":  # SURE/PURE differentiate f with respect to y: the network's input is y itself
        if r.input not in (None, "image"):
            raise InputError(f"--input {r.input}: with --loss sure the network's input is the observation itself")
        values["input"] = "image"
    if values.get("input") == "image" and task.name != "flash" and r.loss != "sure":
        # The observation is the input, as with --loss sure: it must have the restored image's size.
        if task.name == "sr":
            raise InputError(
                "--input image: the network's input would be the observation, which super-resolution makes "
                "smaller than the image; choose noise or meshgrid"
            )
        if not takes_the_observation(architecture(arch_name)["net"]):
            raise InputError(f"--input image: the {arch_name} network's input is smaller than its output")
    known = {f.name for f in fields(FitSettings)}
    try:
        return arch_name, FitSettings(**{k: v for k, v in values.items() if k in known})
    except ValueError as err:  # "lr must be > 0, got -1.0": the setting's option is --lr
        key, must, rest = str(err).partition(" must ")
        option = {"iterations": "iters"}.get(key, key).replace("_", "-")
        raise InputError(f"--{option}: must {rest}" if must and key in overrides else str(err)) from None


def _rule_names(r: FitRequest, task: Task) -> list[str]:
    """The rules to run: `stop`'s, or every applicable one with `record_stops`. The discrepancy rule
    applies to noisy observations: denoising, or any task given a noise sigma; the risk rule to a
    risk-estimate data term (--loss sure)."""
    if r.noise_sigma not in (None, "estimate") and not r.noise_sigma > 0:
        raise InputError(f"--noise-sigma: must be > 0, got {r.noise_sigma}")
    noisy = (task.name in ("denoise", "deblur") or r.noise_sigma is not None) and r.loss != "sure"
    if r.stop == "discrepancy" and r.loss == "sure":
        raise InputError(
            "--stop discrepancy: compares the MSE to the observation with the noise level; with --loss sure "
            "the data term estimates the error to the clean image instead"
        )
    risk = r.loss == "sure"
    if r.stop == "risk" and not risk:
        raise InputError("--stop risk: watches a risk-estimate data term; give --loss sure (SURE or PURE)")
    if task.poisson and r.noise_sigma is not None:
        raise InputError("--noise-sigma: Poisson noise has no sigma; its discrepancy target comes from --peak")
    if r.stop == "discrepancy" and not noisy:
        raise InputError(
            f"--stop discrepancy: applies to noisy observations (denoising, or give --noise-sigma); "
            f"the {task.name} task's observation has no noise level"
        )
    if r.holdout is not None and not 0 <= r.holdout < 0.5:
        raise InputError(f"--holdout: the fraction of pixels to hold out must be in [0, 0.5), got {r.holdout}")
    held = bool(r.holdout)
    if r.stop == "holdout" and not held:
        raise InputError("--stop holdout: needs pixels held out (--holdout > 0)")
    return [
        n
        for n in RULES
        if (r.record_stops or n == r.stop)
        and (n != "discrepancy" or noisy)
        and (n != "holdout" or held)
        and (n != "risk" or risk)
    ]


def _fit_size(r: FitRequest, task: Task) -> tuple[int, int, int, str]:
    """(H, W, channels) of the image the fit restores, and the file it comes from, read from the file's
    header only: a fit too large for the machine is refused before any pixel is decoded."""
    source = r.image or r.observed
    h, w, channels = peek_size(source, r.reading)
    task.check_channels(channels, source)
    if r.image:
        factor = task.factor or 1
        return h - h % factor, w - w % factor, channels, source
    if task.name == "sr":
        return h * task.factor, w * task.factor, channels, source
    return h, w, channels, source


def _memory_plan(job: _Job, fits: int | None = None) -> dict:
    """The fit's estimated peak memory against what the device has, and the mode it runs in: plain, or
    memory-saving (activations recomputed in the backward pass, dip.networks.checkpointed) when asked
    (--memory-saving) or when only that fits, or tiled (dip.tiles) when asked (--tile) or when neither fits
    and the task's operator can be cut into tiles (`_tile_plan`); one line if nothing fits. `fits`: the
    batched fits of one network if not the job's own (a stack of several images' fits, `run_stacked`)."""
    from dip import memory
    from dip.speed import resolve_speed

    r, s = job.request, job.settings
    h, w, channels, source = _fit_size(r, job.task)
    # Every fit of the batch (ensemble members too); SURE/PURE's second forward pass keeps its activations.
    batch = (fits or len(job.fitted)) * (2 if r.loss == "sure" else 1)
    bf16 = resolve_speed(job.device, s.channels_last, s.bf16, s.flush_denormal).bf16
    windowed = sum(name.startswith("es-wmv") for name in job.rule_names)

    def estimate(height: int, width: int, checkpointed: bool):
        return memory.estimate(
            job.arch,
            height,
            width,
            channels,
            batch=batch,
            device=job.device.type,
            bf16=bf16,
            window=r.window if windowed else None,
            windowed_rules=windowed,
            checkpointed=checkpointed,
        )

    plain, saving = estimate(h, w, False), estimate(h, w, True)
    have = memory.available_bytes(job.device)
    gib = f"plain {plain.gib:.1f} GiB, memory-saving {saving.gib:.1f} GiB"
    free = "unknown" if have is None else f"{have / 2**30:.1f} GiB"
    whole = {
        "height": h,
        "width": w,
        "channels": channels,
        "plain_estimated_mb": round(plain.bytes / 2**20),
        "memory_saving_estimated_mb": round(saving.bytes / 2**20),
        "available_mb": None if have is None else round(have / 2**20),
    }

    def refuse(instead: str):
        fits = f"{batch} batched fits" if batch > 1 else "fit"
        # The largest image of the same aspect that would fit in memory-saving mode (sides to 32 pixels).
        k = next((k for k in range(63, 0, -1) if estimate(h * k // 64, w * k // 64, True).bytes <= have), 0)
        largest = f"{h * k // 64 // 32 * 32}x{w * k // 64 // 32 * 32}"
        raise InputError(
            f"{source}: a {h}x{w} {fits} of {job.arch} needs about {plain.gib:.1f} GiB on {job.device.type}, "
            f"{saving.gib:.1f} GiB in memory-saving mode, but {have / 2**30:.1f} GiB is available (about "
            f"{largest} would fit); resize or crop the image, choose a smaller architecture (--arch) or use "
            f"another device (--device); {instead}"
        )

    if r.tile is not None or (have is not None and saving.bytes > have):  # asked, or the whole does not fit
        return _tile_plan(job, estimate, have, whole, f"{gib}, {free} available", refuse)
    mode, chosen = _fit_mode(r.memory_saving, plain, saving, have)
    asked = "asked (--memory-saving); " if r.memory_saving else ""
    fits = "the plain fit would not fit: " if mode == "checkpointed" and not r.memory_saving else ""
    why = f"{asked}{fits}{gib}, {free} available"
    return {
        **whole,
        "memory_mode": mode,
        "memory_mode_why": why,
        "estimated_peak_mb": round(chosen.bytes / 2**20),
    }


def _fit_mode(asked: bool, plain, saving, have: int | None) -> tuple[str, Any]:
    """The mode one fit runs in and its estimate: memory-saving ("checkpointed") when asked (--memory-saving)
    or when the plain fit's estimate exceeds what is available, else plain."""
    if asked or (have is not None and plain.bytes > have):
        return "checkpointed", saving
    return "plain", plain


def _tile_plan(job: _Job, estimate: Callable, have: int | None, whole: dict, whole_why: str, refuse: Callable):
    """The tiled plan: tiles of --tile, or as few tiles as fit: the largest side (a multiple of 32, at least
    32 and twice the overlap, below the image's longer side) whose fit fits, then the smallest side that
    cuts the image into as many tiles (less of the image fitted twice, the same number of fits); each tile
    fitted plainly if it can, else in memory-saving mode. Without --tile, the side of the tiles an earlier
    run of this command left in OUT/tiles comes first, so that a rerun resumes them. One line where the
    task cannot be tiled or no tile fits (`refuse`)."""
    from dip.tiles import recorded_tile, tile_starts

    r, h, w = job.request, whole["height"], whole["width"]
    overlap = r.tile_overlap
    cannot = _untileable(job)
    if cannot and r.tile is not None:
        raise InputError(f"--tile: {cannot}")
    if cannot:
        refuse(cannot)
    smallest = max(32, -(-2 * overlap // 32) * 32)
    sides = [r.tile] if r.tile is not None else list(range(max(h, w) // 32 * 32, smallest - 1, -32))
    kept = recorded_tile(job.targets[0][1] / "tiles")
    resumed = r.tile is None and kept is not None and kept[1] == overlap and smallest <= kept[0] < max(h, w)
    sides = [kept[0], *sides] if resumed else sides

    def count(side: int) -> int:
        return len(tile_starts(h, side, overlap)) * len(tile_starts(w, side, overlap))

    for side in sides:
        if r.tile is None and not resumed:  # as many tiles as the largest side that fits, each no larger
            side = next(s for s in range(smallest, side + 1, 32) if count(s) == count(side))
        th, tw = min(side, h), min(side, w)
        plain, saving = estimate(th, tw, False), estimate(th, tw, True)
        if have is None or saving.bytes <= have:
            break
        resumed = False  # the earlier run's side does not fit now
    else:
        if r.tile is not None:
            raise InputError(
                f"--tile {r.tile}: a {th}x{tw} tile's fit of {job.arch} needs about {plain.gib:.1f} GiB on "
                f"{job.device.type}, {saving.gib:.1f} GiB in memory-saving mode, but {have / 2**30:.1f} GiB is "
                f"available; choose a smaller --tile"
            )
        refuse(f"no tiling fits either (tiles are at least {smallest}x{smallest} with --tile-overlap {overlap})")
    mode, chosen = _fit_mode(r.memory_saving, plain, saving, have)
    how = "plainly" if mode == "plain" else "in memory-saving mode" + (" (--memory-saving)" if r.memory_saving else "")
    tiles = f"{count(side)} tiles of {th}x{tw}, overlap {overlap}, each fitted {how} ({chosen.gib:.1f} GiB)"
    if r.tile is not None:
        why = f"asked (--tile {r.tile}): {tiles}; the whole image: {whole_why}"
    else:
        resuming = ", the side of the tiles already in the output folder" if resumed else ""
        why = f"{tiles}{resuming}: the whole image would need {whole_why}"
    return {
        **whole,
        "memory_mode": "tiled",
        "memory_mode_why": why,
        "estimated_peak_mb": round(chosen.bytes / 2**20),
        "tile": side,
        "tile_overlap": overlap,
        "tiles": count(side),
        "tile_memory_mode": mode,
    }


def _untileable(job: _Job) -> str | None:
    """Why the task cannot be restored in tiles (dip.tiles.can_tile: its operator must act pixel by pixel),
    or None where it can."""
    from dip.tiles import can_tile

    task = job.task
    if task.name == "flash":
        return "the flash task cannot be restored in tiles (the flash photograph is its network's input)"
    if job.settings.input == "image":
        return "a fit whose network's input is the observation (--input image, --loss sure) is not cut into tiles"
    if task.name == "inpaint" or can_tile(task.operator(None, job.psf)):  # inpainting's mask is cut per tile
        return None
    return f"the {task.name} task cannot be restored in tiles (its operator does not act pixel by pixel)"


def _check_tiled(job: _Job) -> None:
    """A tiled fit (dip.tiles: each tile an ordinary fit of one network, `dip.restore`) takes neither what
    belongs to one fit of the whole image nor a rule that cannot stop a tile's fit: one line naming the
    option."""
    r = job.request
    refused = [
        ("--seeds", len(job.seeds) > 1, "each tile is one fit of one network seed; give one seed"),
        ("--ensemble", r.ensemble > 1, "each tile is one fit of one network"),
        ("--save-network", r.save_network, "each tile has its own network, and none is kept"),
        ("--init-from", r.init_from, "each tile's network starts from the seed, not from a saved network"),
        ("--record-stops", r.record_stops, "each tile's fit stops by its own rule and records no other"),
        (
            "--stop discrepancy",
            "discrepancy" in job.rule_names,
            "its target, the clipped noise's expected error, is not what a tile's fit takes; choose another rule",
        ),
        ("--holdout", r.holdout and r.stop != "holdout", "a tile's fit holds pixels out only for --stop holdout"),
    ]
    why = f"--tile {r.tile}" if r.tile is not None else "the whole image does not fit in memory"
    for option, given, reason in refused:
        if given:
            raise InputError(f"{option}: not taken by a tiled fit ({why}): {reason}")


def _read_inputs(job: _Job) -> None:
    """Read and check every input file (job.clean, observed, mask, input_image, source) before anything is
    fitted or written."""
    r, task = job.request, job.task
    if r.image and r.clean:
        raise InputError("--clean: only with --observed (with --image the image itself is the ground truth)")
    reading = r.reading
    observed_reading = Reading(r.intensity_range, r.pages_as_channels, above_one=r.noise == "poisson")
    if r.image:
        job.clean = task.crop(load_image(r.image, reading))
        task.check_size(*job.clean.shape[-2:], r.image)
        _check_psf_size(r, task, job.psf, *job.clean.shape[-2:])
        mask = load_mask(r.mask, job.clean.shape[-2:]) if r.mask else None
        job.observed, job.mask = task.degrade(job.clean, r.the_observation_seed, mask, job.psf)
    else:
        job.observed = load_image(r.observed, observed_reading)
        if task.name == "inpaint":  # check_options made sure there is a --mask
            job.mask = load_mask(r.mask, job.observed.shape[-2:])
        size = task.operator(job.mask, job.psf).image_size(job.observed)
        task.check_size(*size, r.observed)
        _check_psf_size(r, task, job.psf, *size)
        if r.clean:
            read = load_image(r.clean, reading)
            job.clean = task.crop(read)
            if tuple(job.clean.shape[-3:]) != (job.observed.shape[1], *size):
                cropped = (
                    "" if read.shape == job.clean.shape else f", {tuple(job.clean.shape[-3:])} cropped to the factor"
                )
                raise InputError(
                    f"{r.clean}: ground truth is {tuple(read.shape[-3:])} (C, H, W){cropped} but the "
                    f"observation needs {(job.observed.shape[1], *size)}"
                )
    job.input_image = _flash_image(r, task, job.observed)
    if job.settings.input == "image" and task.name != "flash":  # --loss sure sets it (dip.risk needs it)
        job.input_image = job.observed  # the network's input is the observation itself
    job.source = describe(r.image or r.observed, reading)
    if r.image:
        _warn_if_made_at_8_bits(task, r.image, job.source)


def _flash_image(r: FitRequest, task: Task, observed):
    """flash: the flash photograph (the network's input), the same size as the no-flash observation
    (check_options has made sure that the pair was given, and that no other task has one)."""
    if task.name != "flash":
        return None
    flash = load_image(r.flash, r.reading)
    if flash.shape[-2:] != observed.shape[-2:] or flash.shape[1] != observed.shape[1]:
        raise InputError(
            f"{r.flash}: the flash image is {tuple(flash.shape[1:])} (C, H, W) but the no-flash "
            f"image is {tuple(observed.shape[1:])}"
        )
    return flash


def _noise_level(r: FitRequest) -> tuple[float | None, str]:
    """The discrepancy rule's noise level (0-255 scale; None: estimate it from the observation) and where
    it comes from: `noise_sigma` (a number, or 'estimate'); else with `observed` the denoising task's
    `sigma`, the user's own statement of the noise; else (with `image`, the benchmark's case of a user who
    does not know σ) the estimate."""
    if r.noise_sigma not in (None, "estimate"):
        return r.noise_sigma, "given (--noise-sigma)"
    if r.noise_sigma is None and r.observed and r.sigma is not None:
        return r.sigma, "given (--sigma)"
    return None, "estimated (skimage.restoration.estimate_sigma)"


def _check_variants(r: FitRequest, task: Task) -> None:
    """--loss sure applies to denoising with a noise model whose level is known or can be estimated:
    Gaussian (σ given or estimated, see `_risk`) or Poisson with its --peak; anything else is one line."""
    if r.loss != "sure":
        return
    from dip.risk import check_task

    try:
        check_task(task)
    except ValueError as err:
        raise InputError(f"--loss sure: {err}") from None
    if r.holdout:
        raise InputError("--holdout: pixels held out of a SURE/PURE loss would still be the network's input")


def _risk(job: _Job) -> tuple[Any, dict]:
    """The SURE/PURE data term of --loss sure (None otherwise) and what the record says of its noise level:
    Poisson noise's comes from --peak; Gaussian noise's σ as the discrepancy rule takes it (`_noise_level`:
    --noise-sigma, with --observed the task's --sigma, else estimated from the observation with
    skimage.restoration.estimate_sigma)."""
    from dip.risk import PURE, SURE
    from dip.stopping import estimate_noise_sigma

    r, task = job.request, job.task
    if r.loss != "sure":
        return None, {}
    if task.poisson:
        return PURE(task.peak), {"noise_model": "poisson"}
    given, source = _noise_level(r)
    sigma = given / 255 if given is not None else estimate_noise_sigma(job.observed)
    if not sigma > 0:
        raise InputError(
            f"--loss sure: the noise level estimated from {r.observed or r.image} is 0; give --noise-sigma"
        )
    return SURE(sigma), {"noise_sigma": sigma * 255, "noise_sigma_source": source, "noise_model": "gaussian"}


def _red(r: FitRequest):
    """The DeepRED term of --red-weight (dip.red.RED), None without one."""
    from dip.red import RED

    return RED(weight=r.red_weight) if r.red_weight else None


def _ensembles(job: _Job, results: list) -> list:
    """The batched fits' results, one per target: each target's ensemble members averaged (`ensemble`),
    or its own fit without --ensemble."""
    k = job.request.ensemble
    if k == 1:
        return results
    from dip.fit import ensemble

    return [ensemble(results[i : i + k]) for i in range(0, len(results), k)]


def _rules(job: _Job) -> tuple[list, list[list], dict]:
    """Each fit's forward operator and stopping rules (their own objects: rules keep state), and what the
    discrepancy rule's target came from (estimated once: the fits share the observation). With a holdout
    each fit holds out its own pixels, drawn from its network seed's `holdout` stream."""
    from dip.operators import HeldOut, poisson_discrepancy_target
    from dip.seeds import generator
    from dip.stopping import clipped_noise_mse, estimate_noise_sigma

    r, s, observed = job.request, job.settings, job.observed
    operator = job.task.operator(job.mask, job.psf)
    try:
        operators = [
            HeldOut(operator, observed, r.holdout, generator(seed, "holdout")) if r.holdout else operator
            for seed in job.fitted
        ]
    except ValueError as err:
        raise InputError(f"--holdout: {err}") from None
    target, info = None, {}
    if "discrepancy" in job.rule_names and job.task.poisson:
        target = poisson_discrepancy_target(observed, r.peak)
        info = {"discrepancy_target": target, "noise_model": "poisson"}
    elif "discrepancy" in job.rule_names:
        given, source = _noise_level(r)
        sigma = given / 255 if given is not None else estimate_noise_sigma(observed)
        target = clipped_noise_mse(observed, sigma)
        info = {"noise_sigma": sigma * 255, "noise_sigma_source": source, "discrepancy_target": target}
    rules = [
        [
            make_rule(
                n,
                s.iterations,
                r.window,
                r.patience,
                s.ema,
                discrepancy=target,
                heldout=(op, observed),
                risk=r.loss == "sure",
            )
            for n in job.rule_names
        ]
        for op in operators
    ]
    return operators, rules, info


def _identity(job: _Job) -> dict:
    """What determines this request's fit besides its settings and network seeds (dip.checkpoint.fingerprint),
    by readable names: the task and its parameters, the observation seed, a content hash of every image the
    fit reads (absent: not given), the network, the stopping setup, the seed scheme and the package version.
    A checkpoint in the output folder resumes only the fit with the same fingerprint."""
    from dip.provenance import content_hash
    from dip.saved_network import init_identity

    r, task = job.request, job.task
    images = {
        "observation": job.observed,
        "clean image": job.clean,
        "mask pixels": job.mask,
        "flash image": job.input_image,
        "psf": job.psf,
    }
    return {
        "task": task.name,
        **{k: v for k, v in task.params().items() if k != "name"},
        "observation seed": r.the_observation_seed,
        **{name: content_hash(image) for name, image in images.items() if image is not None},
        "arch": job.arch,
        "network": architecture(job.arch)["net"],
        "stop": r.stop,
        "stopping rules": job.rule_names,
        "window": r.window,
        "patience": r.patience,
        "holdout": r.holdout,
        "noise sigma": None if task.poisson else _noise_level(r)[0],
        "seed scheme": SCHEME,
        "version": __version__,
        **init_identity(job.init),
        # Only where they differ from a plain fit, so that a plain fit's fingerprint is what it was.
        **(job.risk.describe() if job.risk is not None else {}),
        **(_red(r).describe() if r.red_weight else {}),
        **({"ensemble": job.request.ensemble} if job.request.ensemble > 1 else {}),
        **({"tile": job.plan["tile"], "tile overlap": job.plan["tile_overlap"]} if job.tiled else {}),
    }


def _read_init(job: _Job):
    """--init-from: the saved network, checked against this fit (one line naming what differs)."""
    from dip.saved_network import read_init

    r = job.request
    if not r.init_from:
        return None
    size = job.task.operator(job.mask, job.psf).image_size(job.observed)
    try:
        return read_init(r.init_from, architecture(job.arch)["net"], *size, job.observed.shape[1], job.settings)
    except ValueError as err:
        raise InputError(f"--init-from: {err}") from None


def _check_out(job: _Job) -> tuple[dict, dict]:
    """Refuse output folders holding another fit's checkpoint or results (dip.folders.check), before
    anything is written. Returns the fit's identity (see _identity) and its whole fingerprint as
    summary.json records it."""
    from dip import folders
    from dip.checkpoint import fingerprint

    identity = _identity(job)
    whole = fingerprint(job.settings, job.fitted, identity)
    outs = [out for _, out in job.targets]
    return identity, folders.check(job.checkpoint, whole, outs, batch=job.batched)


def _record(job: _Job, seed: int, noise: dict, recorded: dict) -> FitRecord:
    """Fit `seed`'s record as far as it is known before fitting: what is fitted and where it came from."""

    r, task = job.request, job.task
    settings = asdict(replace(job.settings, seed=seed))
    config = {
        "task": task.params(),
        "arch": job.arch,
        "network": architecture(job.arch)["net"],
        "settings": settings,
        "observation_seed": r.the_observation_seed,
        "seed_scheme": SCHEME,
        "stop": r.stop,
        "window": r.window,
        "patience": r.patience,
        **({"holdout": r.holdout} if r.holdout else {}),
        **({"init network": job.init.sha256} if job.init is not None else {}),  # a warm start is another fit
        **({"loss": r.loss} if r.loss != "default" else {}),
        **(_red(r).describe() if r.red_weight else {}),
        **({"ensemble": r.ensemble} if r.ensemble > 1 else {}),
        **({"tile": job.plan["tile"], "tile_overlap": job.plan["tile_overlap"]} if job.tiled else {}),
    }
    variant = (
        ("-sure" if r.loss == "sure" else "")
        + (f"-red{r.red_weight:g}" if r.red_weight else "")
        + (f"-ensemble{r.ensemble}" if r.ensemble > 1 else "")
    )
    return FitRecord(
        task=task.name,
        task_label=task.label() + (f"-holdout{r.holdout:g}" if r.holdout else "") + variant,
        task_params={k: v for k, v in task.params().items() if k != "name"},
        arch=job.arch,
        preset=r.preset,
        seed=seed,
        observation_seed=r.the_observation_seed,
        seed_scheme=SCHEME,
        iterations_budget=job.settings.iterations,
        stop_window=r.window,
        stop_patience=_patience(r, job.settings.iterations),
        holdout=r.holdout or 0.0,
        settings=settings,
        source=r.image or r.observed,
        device=device_name(job.device),
        batched_fits=len(job.fitted),
        loss=r.loss,
        red_weight=r.red_weight or 0.0,
        ensemble=r.ensemble,
        config_hash=config_hash(config),
        git_commit=git_commit(),
        versions=package_versions(),
        input_precision=job.source.record(),
        fingerprint=recorded,
        **({k: job.plan[k] for k in ("memory_mode", "tile", "tile_overlap")} if job.tiled else {}),
        # Memory-saving mode (recomputed activations) changes nothing of the fit but its time and memory.
        **({"memory_mode": "checkpointed"} if job.plan.get("memory_mode") == "checkpointed" else {}),
        **noise,
    )


def _run_options(job: _Job, identity: dict) -> dict:
    """dip.fit.RunOptions of the request."""
    r = job.request
    return dict(
        clean=job.clean,
        stop_on=r.stop if r.stop != "fixed" else None,
        full_budget=job.full_budget,
        device=job.device,
        checkpoint=job.checkpoint,
        checkpoint_every=r.checkpoint_every,
        progress=r.progress,
        log=job.log,
        scorer=job.task.scorer,
        input_image=job.input_image,
        fingerprint=identity,
        init=job.init,
        keep_network=r.save_network,
        memory_saving=job.plan["memory_mode"] == "checkpointed",
        risk=job.risk,
        red=_red(r),
    )


def _finish(job: _Job, records: dict[int, FitRecord], results: list, start: float) -> list[FitRecord]:
    """Write each fit's files and record; a failed fit's record says why (and keeps its last verified
    image, which is not a result). Raises InputError naming the failures unless `failure_ok`."""
    from dip.fit import FitFailed

    failures = []
    for (seed, out), result in zip(job.targets, results):
        record = records[seed]
        error = str(result) if isinstance(result, FitFailed) else result.error
        if error:
            record.status, record.error, record.seconds = "failed", error, time.perf_counter() - start
            # The rows it verified before failing (a batched fit's result has them, a single fit's FitFailed too).
            save_csv(_empty_history() if result.history is None else result.history, out / "history.csv")
            if result.image is not None:
                save_image(result.image, out / "restored", job.source)
            write(record, out / "summary.json")
            failures.append(f"{out}: {error}")
            continue
        _complete(record, result, job, start)
        save_csv(result.history, out / "history.csv")
        save_image(result.image, out / "restored", job.source)
        if result.network is not None:  # --save-network
            result.network.task = job.task.params()
            result.network.save(out / "network.pt")
        write(record, out / "summary.json")
        _below_observation(record, out, job.log)
    job.checkpoint.unlink(missing_ok=True)
    if failures and not job.request.failure_ok:
        raise InputError("; ".join(failures))
    for failure in failures:
        job.log(f"dip fit: {failure}")
    return [records[seed] for seed in job.seeds]


def _below_observation(record: FitRecord, out: Path, log: Callable[[str], None]) -> None:
    """Where a ground truth shows the returned image to be worse than the observation itself (a budget too
    short for the image, or a fit that over-fitted), say so on the log: the fit ran as asked, exit 0."""
    restored, observed = record.psnr_restored, record.psnr_observed
    if restored is not None and observed is not None and restored < observed:
        log(
            f"dip fit: {out}: warning: restored.png is {restored:.2f} dB against the clean image, below the "
            f"observation's {observed:.2f} dB: too few iterations for this image, or over-fitted "
            f"(docs/troubleshooting.md)"
        )


def _patience(r: FitRequest, iterations: int) -> int | None:
    """The patience of the rule that stops the fit: `--patience`, or that rule's default (None for a rule
    that does not wait)."""
    from dip.stopping import default_patience

    return r.patience or default_patience(iterations, r.stop)


def _empty_history():
    import pandas as pd

    return pd.DataFrame(columns=["iteration", "loss", "psnr_observed", "seconds"])


def _complete(record: FitRecord, result, job: _Job, start: float) -> None:
    """Fill `record` from a finished fit: how it ran, and (with a ground truth) its scores on the float
    images, each rule's image and the oracle."""
    history, s, task = result.history, job.settings, job.task
    record.iterations = result.iterations
    record.seconds = float(history["seconds"].max())  # cumulative; an ensemble's stacks its members'

    record.wall_seconds = time.perf_counter() - start
    record.backtracks, record.resumed_from, record.stopped_by = (
        result.backtracks,
        result.resumed_from,
        result.stopped_by,
    )
    record.stop, record.returned_by, record.returned_iteration = (
        job.request.stop,
        result.returned_by or "fixed",
        result.returned_iteration,
    )
    # What stopping saved against the fixed budget: the iterations not run, and their time at this fit's pace.
    record.iterations_saved = s.iterations - result.iterations
    record.seconds_saved = record.iterations_saved * record.seconds / max(result.iterations, 1)
    record.stops = {name: StopRecord.from_json(rec) for name, rec in result.stops.items()}
    truth = None if job.clean is None else to_array(job.clean)  # once: every image is scored against it

    def scores(image) -> dict:
        return task.score(to_array(image), truth)

    if result.members:
        record.ensemble_members = {
            str(m.seed): _member(m, scores if truth is not None else None, s.ema) for m in result.members
        }
        if truth is not None:
            psnrs = [m["psnr_restored"] for m in record.ensemble_members.values()]
            record.psnr_members_mean = sum(psnrs) / len(psnrs)
    if truth is None:
        return

    ema = "psnr_ema" if s.ema else "psnr"
    record.set_scores("final", scores(result.output))
    if result.ema is not None:
        record.set_scores("ema_final", scores(result.ema))
    record.set_scores("restored", scores(result.image))
    if task.name != "sr":
        record.set_scores("observed", scores(job.observed))
    for name, image in result.rule_images.items():
        rule = scores(image)
        record.stops[name].psnr, record.stops[name].ssim = rule["psnr"], rule["ssim"]
    if result.members:  # the ensemble's image is not tracked per iteration: no best iterate, no oracle
        return
    record.psnr_best = float(history["psnr"].max())
    record.psnr_best_iteration = oracle_iteration(history, "psnr")
    record.psnr_ema_best = float(history[ema].max())
    best = oracle_iteration(history, ema)
    record.stops["oracle"] = StopRecord(best, psnr=float(history.loc[best - 1, ema]), analysis_only=True)


def _member(result, scores, ema: float) -> dict:
    """One ensemble member's entry in the record: how it ran and, with a ground truth (`scores`), the PSNR
    of its restored image, last EMA image and best EMA iterate."""
    entry = {"iterations": result.iterations, "stopped_by": result.stopped_by, "backtracks": result.backtracks}
    if result.error:
        entry["error"] = result.error
    if scores is not None and not result.error:
        column = "psnr_ema" if ema else "psnr"
        entry["psnr_restored"] = scores(result.image)["psnr"]
        entry["psnr_final"] = scores(result.output)["psnr"]
        if result.ema is not None:
            entry["psnr_ema_final"] = scores(result.ema)["psnr"]
        entry["psnr_ema_best"] = float(result.history[column].max())
        entry["stops"] = {name: scores(image)["psnr"] for name, image in result.rule_images.items()}
    return entry
