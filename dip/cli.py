"""`dip fit` and `dip degrade`: Deep Image Prior from the shell. Bad input is reported as one line
naming the file or option, before any fitting starts and before any output is written."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings

from dip import __version__


def _interrupted_while_starting(signum, frame) -> None:
    # Exits from the handler itself: a KeyboardInterrupt raised inside torch's C++ start-up would reach a
    # pybind11 boundary and abort the process (SIGABRT and a C++ message) instead of ending it in one line.
    os.write(2, b"dip: interrupted by SIGINT while starting\n")
    os._exit(128 + signal.SIGINT)


# Seconds of loading (torch): Ctrl-C meanwhile ends the command with one line and 128 + SIGINT; nothing is
# written yet, and half-loaded modules need no teardown.
_starting = threading.current_thread() is threading.main_thread()
_before = signal.signal(signal.SIGINT, _interrupted_while_starting) if _starting else None
try:
    from dip import many, strict_json
    from dip.image_io import InputError
    from dip.inputs import INPUTS
    from dip.presets import ARCHITECTURES
    from dip.record import printed_line
    from dip.request import LOSSES, OPTIMISERS, PRESETS, DegradeRequest, FitRequest, plan_fit, run_degrade, run_fit
    from dip.stopping import HOLDOUT, RULES
    from dip.tasks import NOISES, OPTIONS, TASKS
finally:
    if _starting:
        signal.signal(signal.SIGINT, _before)


def _takes(option: str, fit: bool = True) -> str:
    """Which tasks take `option`, and when they need it (dip.tasks.OPTIONS), for its --help: with --image or
    --observed for `dip fit` (`fit`), with dip degrade's one clean --image otherwise."""
    uses = []
    for task, row in OPTIONS.items():
        if option not in row.takes:
            continue
        needs = []
        modes = (("--image", row.with_image), ("--observed", row.with_observed)) if fit else (("", row.with_image),)
        for mode, needed in modes:
            for need in (n.split("|") for n in needed or () if option in n.split("|")):
                others = " or ".join(f"--{o}" for o in need if o != option)
                needs.append(
                    f"{'this or ' + others if others else ''} required {'with ' + mode if mode else ''}".strip()
                )
        uses.append(", ".join([task, *needs]))
    return f" [{'; '.join(uses)}]"


def _task_arguments(p: argparse.ArgumentParser, fit: bool) -> None:
    """The task and its degradation, worded for `dip fit` (`fit`) or `dip degrade`."""
    p.add_argument("--task", required=True, choices=TASKS, help="what degraded the image (docs/guide/tasks.md)")
    sigma = "noise std on the 0-255 scale"
    if fit:
        sigma += (
            "; with --observed optional: it picks the sigma >= 50 preset (without it: the sigma 25 preset) "
            "and is the discrepancy rule's noise level"
        )
    p.add_argument("--sigma", type=float, help=sigma + _takes("sigma", fit))
    p.add_argument("--factor", type=int, help="super-resolution factor, an integer >= 2" + _takes("factor", fit))
    p.add_argument("--quality", type=int, help="JPEG quality 1-95" + _takes("quality", fit))
    p.add_argument(
        "--mask",
        help="mask image (bright = known pixel)"
        + (
            "; with --observed, the mask of the observation (--drop/--text/--box then name its kind, which picks "
            "the preset)"
            if fit
            else ""
        )
        + _takes("mask", fit),
    )
    m = p.add_mutually_exclusive_group()
    m.add_argument("--drop", type=float, help="drop this fraction of pixels at random" + _takes("drop", fit))
    m.add_argument("--text", action="store_true", help="text overlay mask" + _takes("text", fit))
    m.add_argument("--box", action="store_true", help="centred box mask" + _takes("box", fit))
    p.add_argument(
        "--blur",
        help="the known blur: gaussian:SIGMA (std in pixels) or motion:LENGTH,ANGLE (pixels, "
        "degrees counter-clockwise from the x axis); borders reflected" + _takes("blur", fit),
    )
    p.add_argument(
        "--psf",
        help="the known blur as a point-spread function file: PNG, TIFF or NPY, one 2-D "
        "kernel of odd sides, non-negative (scaled to sum 1)" + _takes("psf", fit),
    )
    p.add_argument(
        "--noise",
        choices=NOISES,
        help="noise model (default gaussian, level --sigma); poisson: "
        "observation = Poisson(PEAK * x) / PEAK, fitted with the Poisson deviance" + _takes("noise", fit),
    )
    p.add_argument(
        "--peak",
        type=float,
        help="Poisson noise: the expected photon count of a pixel of value 1 "
        "(> 0; required with --noise poisson)" + _takes("peak", fit),
    )
    if fit:
        p.add_argument(
            "--seed", type=int, help="network seed: initial weights, input z, per-iteration perturbations (default 0)"
        )
        p.add_argument(
            "--observation-seed",
            type=int,
            help="seed of the observation's noise or random mask (default: --seed; either way a stream "
            "of its own, never one the network draws from); with --observed, the seed that made it, "
            "recorded as provenance only",
        )
    else:
        p.add_argument(
            "--seed",
            type=int,
            help="seed of the noise or random mask (default 0): the observation dip fit --image --seed S "
            "fits (its observation stream, dip.seeds)",
        )
        p.add_argument("--observation-seed", type=int, help="the same as --seed, which it overrides")


def _reading_arguments(p: argparse.ArgumentParser) -> None:
    """How image files are read (docs/guide/images.md); masks have their own rule."""
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


def _noise_sigma(value: str) -> float | str:
    if value == "estimate":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a noise level (0-255 scale) or 'estimate', got {value!r}") from None


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (the full usage stays behind --help)."""

    commands: dict[str, argparse.ArgumentParser]  # the root's subcommands, by name

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser() -> _OneLineParser:
    root = _OneLineParser(prog="dip", description=__doc__)
    root.add_argument("--version", action="version", version=f"dip {__version__}")
    sub = root.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    root.commands = sub.choices  # name -> its parser, for main's errors

    d = sub.add_parser("degrade", help="make a seeded observation (and mask) from a clean image")
    _task_arguments(d, fit=False)
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
    _task_arguments(f, fit=True)
    _reading_arguments(f)
    f.add_argument(
        "--image",
        nargs="+",
        action=many.OneOrMore,
        help="clean image: degrade it (seeded) and score the restoration against it; several files or "
        "folders: each image into OUT/<name> (docs/guide/many-images.md)",
    )
    f.add_argument(
        "--observed",
        nargs="+",
        action=many.OneOrMore,
        help="a degraded image to restore (no ground truth unless --clean); several files or folders: "
        "each image into OUT/<name>",
    )
    f.add_argument("--clean", help="with --observed: ground truth used only to score")
    f.add_argument("--flash", help="flash: the flash photograph, the network's input (the no-flash one is --observed)")
    f.add_argument(
        "--out",
        required=True,
        help="output folder; may hold {seed}, the network seed (without it, --seeds write OUT/seed{seed}); "
        "with several images, one folder per image: OUT/<file name without suffix>",
    )
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
        "--stack",
        type=_positive,
        default=1,
        metavar="N",
        help="with several images: fit up to N images of the same size and channels at once as one batched "
        "network (every image and network seed one fit, each with its own stopping, backtracking and outputs "
        "in OUT/<name>; worth it on a GPU); default 1, one image after another (docs/scale.md)",
    )
    f.add_argument(
        "--arch",
        default=None,
        help=f"architecture name, one of dip.presets.ARCHITECTURES: {', '.join(ARCHITECTURES)} (default: the "
        "task's paper preset's, but skip for a box mask without --stop: dip.defaults)",
    )
    f.add_argument(
        "--preset",
        choices=PRESETS,
        default="paper",
        help="start from the paper's settings for the task (default) or from the library defaults",
    )
    f.add_argument("--iters", type=int, help="iterations (default: the preset's)")
    f.add_argument("--lr", type=float, help="Adam's learning rate (default: the preset's, 0.01 for most tasks)")
    f.add_argument(
        "--reg-noise-std",
        type=_non_negative,
        help="std of the fresh noise added to the input z at each iteration (default: the preset's, 1/30 for "
        "most tasks; 0 = none)",
    )
    f.add_argument(
        "--input",
        choices=INPUTS,
        help="the network's input z: uniform noise in [0, 0.1) (default), a meshgrid, or an image (the flash "
        "photograph; the observation with --loss sure)",
    )
    f.add_argument("--input-depth", type=int, help="channels of the input z (default: the architecture's, 32 for skip)")
    f.add_argument("--ema", type=float, help="output EMA weight (0 = off; default 0.99)")
    f.add_argument("--optimizer", choices=OPTIMISERS, help="default adam (the paper's)")
    f.add_argument(
        "--tv-weight",
        type=_non_negative,
        help="weight of a total-variation term on the output (default: the preset's; deblurring 1e-3, else 0)",
    )
    f.add_argument(
        "--red-weight",
        type=_non_negative,
        metavar="LAMBDA",
        help="weight of a regularisation-by-denoising term (DeepRED: non-local means tied to the network's "
        "output by ADMM, dip.red); default 0, none",
    )
    f.add_argument(
        "--loss",
        choices=LOSSES,
        default="default",
        help="data term: default (the task's: MSE, or the Poisson deviance) or sure, an unbiased estimate of "
        "the error to the clean image (SURE for Gaussian noise, sigma as for the discrepancy rule; PURE for "
        "Poisson noise); denoising only; the network's input is then the observation (dip.risk)",
    )
    f.add_argument(
        "--ensemble",
        type=_positive,
        default=1,
        metavar="K",
        help="fit K networks (the seed and K-1 seeds derived from it) as one batched network and return "
        "the mean of their restored images, each stopped by its own rule (default 1: one fit)",
    )
    f.add_argument(
        "--ssim-every",
        type=int,
        help="iterations between SSIM scores in history.csv, with a ground truth (default 100)",
    )
    f.add_argument(
        "--stop",
        choices=RULES,
        help="stop at this rule's decision (default: the task's rule, dip.defaults, chosen by measurement: "
        "docs/defaults.md; 'fixed' runs the paper's whole budget); with the EMA on, the variance rules "
        "return the EMA image ema/(1-ema) iterations (its mean lag) after the variance minimum, "
        "discrepancy the same lag after the loss fell to the noise level; es-wmv-paper is ES-WMV as "
        "published, es-wmv the same with a guard against early minima; holdout the image with the least "
        "error on pixels held out of the fit (see --holdout); risk (--loss sure only, its default) the "
        "image where the risk estimate, averaged over 25 iterations, first falls to 0",
    )
    f.add_argument(
        "--record-stops",
        action="store_true",
        help="record every rule; without --stop, run the whole budget and return the task's default rule's image",
    )
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
    f.add_argument(
        "--patience",
        type=_positive,
        help="holdout/es-wmv/es-emv patience P (default: a tenth of the budget for holdout, a fifth for the others)",
    )
    f.add_argument(
        "--device",
        default="auto",
        help="auto | cpu | cuda | cuda:N | mps (one this PyTorch can use "
        "here; anything else is refused, listing what is available)",
    )
    f.add_argument("--threads", type=_positive, help="CPU threads (default: PyTorch's, every core)")
    f.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last memory layout (default off; where it helps: docs/benchmarks.md)",
    )
    f.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast for the network (default off, fp32: bf16 moved the returned image, docs/benchmarks.md)",
    )
    f.add_argument("--compile", action="store_true", help="torch.compile the network (first iterations slower)")
    f.add_argument(
        "--memory-saving",
        action="store_true",
        help="recompute the network's activations in the backward pass instead of keeping them: the same fit "
        "for less memory and more time per iteration (chosen by itself when only it fits; --dry-run says which)",
    )
    f.add_argument(
        "--tile",
        type=int,
        metavar="SIZE",
        help="restore the image in overlapping tiles of SIZE x SIZE pixels (at least 32 and twice --tile-overlap), "
        "each an ordinary fit, blended where they overlap; without it, tiles are chosen by themselves where the "
        "whole image fits in neither mode and the task acts pixel by pixel (denoising, inpainting, JPEG; "
        "--dry-run says which). Finished tiles are kept in OUT/tiles: the same command resumes them",
    )
    f.add_argument(
        "--tile-overlap",
        type=int,
        metavar="PX",
        help=f"pixels neighbouring tiles share (default {FitRequest.tile_overlap})",
    )
    f.add_argument(
        "--checkpoint-every", type=_positive, help="iterations between checkpoints (default: 10%% of the fit)"
    )
    f.add_argument(
        "--no-progress", action="store_true", help="no progress bar; plain lines only (the default off a terminal)"
    )
    f.add_argument(
        "--dry-run",
        action="store_true",
        help="print the memory estimate and a time estimate from a few timed iterations; fit nothing, write nothing",
    )
    f.add_argument(
        "--save-network",
        action="store_true",
        help="keep the fitted network in OUT/network.pt (with --seeds one per seed folder): the weights of the "
        "fit's last iteration, its input z and the architecture, for dip.load_network or --init-from",
    )
    f.add_argument(
        "--init-from",
        metavar="DIR",
        help="start from a saved network (a --save-network output folder or its network.pt): its weights and "
        "input z instead of the seed's; the same architecture, image size and channels",
    )
    f.add_argument(
        "--failure-ok",
        action="store_true",
        help="a fit that keeps diverging writes summary.json with status 'failed' and exits 0",
    )

    sub.add_parser("bench", help="time fit iterations against a reference loop (dip bench --help)")
    return root


class _Signalled(Exception):
    """SIGTERM or SIGINT outside a fit's loop (which saves a checkpoint and raises FitInterrupted)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_signalled(signum, frame):
    raise _Signalled(signum)


def _plan(request: FitRequest) -> dict:
    from dip.fit import FitInterrupted

    try:
        return plan_fit(request)
    except FitInterrupted as err:  # a dry run's few iterations: nothing to save
        raise _Signalled(err.signum) from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # its own parser: python -m dip.bench --help
        from dip.bench import main as bench_main

        return bench_main(argv[1:])
    p = parser()
    args, unknown = p.parse_known_args(argv)
    if unknown:  # named by the subcommand, as its other usage errors are: "dip fit: error: ..."
        p.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, *a, **k: f"dip: warning: {msg}\n"
    # A signal outside a fit's loop (reading, a dry run, writing) ends the command with 128 + the signal and
    # one line, no traceback; inside the loop the fit saves its checkpoint first (dip.fit._catch_termination).
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _raise_signalled) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if args.command == "degrade":
            run_degrade(DegradeRequest.from_namespace(args))
        elif (paths := many.inputs(args)) is not None:  # several images, each its own fit
            return many.main(args, paths)
        elif args.stack > 1:
            raise InputError(
                "--stack: stacks the fits of several images; give several (--image a.png b.png, or a folder)"
            )
        elif args.dry_run:
            print(strict_json.dumps(_plan(FitRequest.from_namespace(args))))
        else:
            request = FitRequest.from_namespace(args)
            for record, (_, out) in zip(run_fit(request), request.outputs()):  # a line per fit
                print(strict_json.dumps(printed_line(record, out)))
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
