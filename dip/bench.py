"""Time Deep Image Prior iterations: the real `fit` path against a plain reference loop.

    python -m dip.bench --arch skip --size 128 --iters 20 --threads 2 [--device cuda] [--reference] [--batch 8] [--json]

The fit path is `dip.fit.fit` itself (forward, loss, backward, Adam, EMA, both ES rules' bookkeeping and
the history against a ground truth); the reference loop is the original notebooks' iteration: fp32,
contiguous layout, and the output pulled to NumPy for PSNR every iteration. Both run the identical
network on the same denoising problem, in this process, one after the other. Prints the median and
spread of seconds per iteration, FLOPs per iteration (torch.utils.flop_counter), achieved GFLOP/s, the
machine's fp32 matmul peak measured now (torch.mm of 2048²), peak memory, and the tensor operations
dispatched per iteration (`ops_per_iteration`; each is about one kernel launch on a GPU) against the
notebook loop's. With --batch N it also times N fits batched into one network by the same loop and
prints their throughput against N single fits and their operations per iteration against one fit's. `graph` says whether the step was replayed as a CUDA graph: not built yet (the loop is split so
that it can be), so it is always false.
"""

from __future__ import annotations

import argparse
import collections
import resource
import statistics
import sys
import time

import numpy as np
import pandas as pd
import torch
from skimage import data
from torch.utils._python_dispatch import TorchDispatchMode

from dip import memory, networks, strict_json
from dip.devices import pick_device
from dip.fit import FitSettings, fit, fit_batch
from dip.image_io import to_array, to_tensor
from dip.inputs import noise_input
from dip.metrics import psnr
from dip.networks import make_network
from dip.operators import Denoise
from dip.presets import architecture
from dip.provenance import device_name
from dip.seeds import generator as stream
from dip.speed import cpu_has_native_bf16, resolve_speed
from dip.stopping import clipped_noise_mse, make_rule


def test_image(size: int) -> torch.Tensor:
    """A size×size crop of scikit-image's astronaut (resized when larger than the image)."""
    from PIL import Image

    img = Image.fromarray(data.astronaut()).resize((max(size, 256), max(size, 256)), Image.LANCZOS)
    arr = np.asarray(img, dtype=np.float32)[:size, :size] / 255
    return to_tensor(arr)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times) / 1e9


def flops_per_iteration(spec: dict, depth: int, size: int, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    net = make_network(spec, depth, 3, 0).to(device).train()
    z = torch.rand(1, depth, *networks.input_size(net, size, size), device=device)
    with FlopCounterMode(display=False) as counter:
        net(z).square().mean().backward()
    return float(counter.get_total_flops())


def per_iteration(elapsed: pd.Series, warmup: int) -> np.ndarray:
    """Seconds of each iteration from a history's cumulative `seconds`, warm-up iterations dropped."""
    return np.diff(np.concatenate([[0.0], elapsed.to_numpy()]))[warmup:]


def time_fit(spec, settings, clean, observed, device, warmup) -> list[float]:
    """Per-iteration seconds of the real fit path, warm-up iterations dropped."""
    rules = [make_rule(name, settings.iterations, ema=settings.ema) for name in ("es-wmv", "es-wmv-paper", "es-emv")]
    result = fit(spec, Denoise(25), observed, settings, clean=clean, rules=rules, device=device)
    seconds = per_iteration(result.history["seconds"], warmup)
    if device.type != "cpu":
        # Asynchronous devices only sync at the loop's host checks: spread each interval's time evenly.
        seconds = np.concatenate(
            [np.full(len(c), c.mean()) for c in np.array_split(seconds, max(1, len(seconds) // settings.check_every))]
        )
    return list(seconds)


class NotebookLoop:
    """The authors' denoising notebook iteration, as the yardstick for speed and for operations per
    iteration: fp32, contiguous layout, torch.optim.Adam with foreach (PyTorch's default on CUDA), the
    output EMA, and the notebook's three PSNRs (output to the observation and to the ground truth, EMA
    image to the ground truth) computed on the host from `.cpu().numpy()` copies every iteration."""

    def __init__(
        self, spec: dict, settings: FitSettings, clean: torch.Tensor, observed: torch.Tensor, device: torch.device
    ):
        self.net = make_network(spec, settings.input_depth, clean.shape[1], settings.seed).to(device).train()
        h, w = clean.shape[-2:]
        self.z = noise_input(
            settings.input_depth, *networks.input_size(self.net, h, w), stream(settings.seed, "input")
        ).to(device)
        self.noise = torch.zeros_like(self.z)
        self.s, self.h, self.w = settings, h, w
        self.observed = observed.to(device)
        self.observed_np, self.clean_np = to_array(observed), to_array(clean)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=settings.lr, foreach=True)
        self.ema = None

    def __call__(self) -> None:
        self.opt.zero_grad()
        out = networks.center_crop(self.net(self.z + self.noise.normal_() * self.s.reg_noise_std), self.h, self.w)
        self.ema = out.detach() if self.ema is None else self.ema * self.s.ema + out.detach() * (1 - self.s.ema)
        torch.nn.functional.mse_loss(out, self.observed).backward()
        out_np, ema_np = out.detach().cpu().numpy()[0], self.ema.cpu().numpy()[0]
        psnr(out_np.transpose(1, 2, 0), self.observed_np), psnr(out_np.transpose(1, 2, 0), self.clean_np)
        psnr(ema_np.transpose(1, 2, 0), self.clean_np)
        self.opt.step()


def time_reference(spec, settings, clean, observed, device, warmup) -> list[float]:
    """Per-iteration seconds of the authors' notebook loop (`NotebookLoop`), warm-up dropped."""
    torch.backends.cudnn.benchmark = False
    torch.set_flush_denormal(False)  # the original code leaves denormals on
    loop, times = NotebookLoop(spec, settings, clean, observed, device), []
    for _ in range(settings.iterations):
        t = time.perf_counter()
        loop()
        _sync(device)
        times.append(time.perf_counter() - t)
    return times[warmup:]


class OpCounter(TorchDispatchMode):
    """Counts the tensor operations dispatched (each about one kernel launch on a GPU) while `counting`."""

    def __init__(self):
        super().__init__()
        self.ops, self.counting = collections.Counter(), False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.counting:
            self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def _rules(names: tuple[str, ...], settings: FitSettings, observed: torch.Tensor) -> list:
    target = clipped_noise_mse(observed, 25 / 255)
    return [make_rule(n, settings.iterations, ema=settings.ema, discrepancy=target) for n in names]


def ops_per_iteration(
    spec: dict,
    size: int,
    fits: int = 1,
    rules: tuple[str, ...] = (),
    iterations: int = 20,
    device: torch.device | str = "cpu",
    images: bool = False,
) -> dict:
    """Operations dispatched per steady-state iteration: by `dip.fit`'s step for `fits` fits (stacked when
    more than one) recording `rules`, against the authors' notebook loop (`NotebookLoop`), on one
    denoising problem with ground truth (`images`: each stacked fit an image of its own, as `dip fit
    --stack` fits several images: the test image shifted, its own observation). The host checks (every
    check_every iterations) are counted apart, per iteration. Returns {"fit": ..., "checks": ...,
    "reference": ..., "ratio": fit / reference}."""
    from dip import fit as loop

    device = torch.device(device)
    clean = test_image(size)
    observed = Denoise(25).observe(clean, stream(0, "observation"))
    stacked_clean, stacked_observed = clean, observed
    if images and fits > 1:
        shifted = [torch.roll(clean, shifts=3 * b, dims=-1) for b in range(fits)]
        stacked_clean = torch.cat(shifted)
        stacked_observed = torch.cat([Denoise(25).observe(x, stream(b, "observation")) for b, x in enumerate(shifted)])
    s = FitSettings(iterations=iterations, ssim_every=10**9, check_every=10)
    counter = OpCounter()
    calls = {"step": 0}
    step_call = loop.Step.__call__

    def counted(step, pos):
        # The first check's chunk warms up (allocations, first-call paths); count the later ones.
        counter.counting = calls["step"] >= s.check_every
        calls["step"] += 1
        step_call(step, pos)
        counter.counting = False

    loop.Step.__call__ = counted
    try:
        with counter:
            if fits == 1:
                fit(spec, Denoise(25), observed, s, clean=clean, rules=_rules(rules, s, observed), device=device)
            else:
                fit_batch(
                    spec,
                    Denoise(25),
                    stacked_observed,
                    s,
                    list(range(fits)),
                    clean=stacked_clean,
                    rules=[_rules(rules, s, stacked_observed[b % len(stacked_observed)][None]) for b in range(fits)],
                    device=device,
                )
    finally:
        loop.Step.__call__ = step_call
    per_step = sum(counter.ops.values()) / (calls["step"] - s.check_every)
    reference = NotebookLoop(spec, s, clean, observed, device)
    for _ in range(3):
        reference()
    ref_counter = OpCounter()
    with ref_counter:
        ref_counter.counting = True
        for _ in range(10):
            reference()
    per_reference = sum(ref_counter.ops.values()) / 10
    return {"fit": per_step, "reference": per_reference, "ratio": per_step / per_reference}


def time_batch(spec, settings, clean, observed, device, warmup, fits: int) -> list[float]:
    """Per-iteration seconds of `fits` fits batched into one network (`dip.fit.fit_batch`, the same loop as
    `fit`, with both ES rules recorded per fit), warm-up dropped."""
    s = FitSettings(**{**vars(settings), "check_every": 1})  # exact per-iteration wall times
    rules = [[make_rule(n, s.iterations, window=100, ema=s.ema) for n in ("es-wmv", "es-emv")] for _ in range(fits)]
    results = fit_batch(spec, Denoise(25), observed, s, list(range(fits)), clean=clean, rules=rules, device=device)
    return list(per_iteration(results[0].history["seconds"], warmup))


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summarise(times: list[float]) -> dict:
    q = np.percentile(times, [10, 90])
    med = statistics.median(times)
    return {"median": med, "p10": float(q[0]), "p90": float(q[1]), "iterations_per_second": 1 / med}


def parser() -> argparse.ArgumentParser:
    """The `dip bench` command line (the documentation's CLI reference is generated from it)."""
    p = argparse.ArgumentParser(prog="dip bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="skip")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--iters", type=int, default=20, help="timed iterations")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=1, help="alternate the timed paths this many times")
    p.add_argument("--threads", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--flush-denormal", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--reference", action="store_true", help="also time the plain reference loop")
    p.add_argument(
        "--parity",
        type=int,
        default=0,
        help="also fit N denoising iterations with the fast and the fp32 path and compare best EMA PSNR",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="--parity: the fits' network seed (the observation stays seed 0's)"
    )
    p.add_argument(
        "--batch",
        type=int,
        default=0,
        help="also time N fits batched into one network (N seeds at once, see dip.fit.fit_batch)",
    )
    p.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--plan" or a.startswith("--plan=") for a in argv):  # planning speed: its own benchmark
        from dip.bench_plan import main as plan_main

        return plan_main(argv)
    p = parser()
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = pick_device(args.device)
    except ValueError as err:
        p.exit(2, f"dip bench: error: --device {args.device}: {err}\n")
    spec = architecture(args.arch)
    depth = spec.get("settings", {}).get("input_depth", 32)
    clean = test_image(args.size)
    observed = Denoise(25).observe(clean, stream(0, "observation"))
    total = args.warmup + args.iters
    fast = FitSettings(
        iterations=total,
        input_depth=depth,
        channels_last=args.channels_last,
        bf16=args.bf16,
        compile=args.compile,
        flush_denormal=args.flush_denormal,
        ssim_every=10**9,
    )
    speed = resolve_speed(device, args.channels_last, args.bf16, args.flush_denormal)
    report = {
        "arch": args.arch,
        "size": args.size,
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "channels_last": speed.channels_last,
        "bf16": speed.bf16,
        "compile": args.compile,
        "graph": False,
        "flush_denormal": args.flush_denormal,
        "timed_iterations": args.iters * args.rounds,
        "warmup_iterations": args.warmup,
        "rounds": args.rounds,
    }
    if args.compile:
        t = time.perf_counter()
        time_fit(spec["net"], FitSettings(**{**vars(fast), "iterations": 2}), clean, observed, device, 0)
        report["compile_seconds"] = time.perf_counter() - t
    # Alternate the paths round by round so that a slow spell of a shared machine hits both alike.
    times, ref_times, batch_times = [], [], []
    for _ in range(args.rounds):
        times += time_fit(spec["net"], fast, clean, observed, device, args.warmup)
        report.setdefault("peak_memory_mb", peak_memory_mb(device))  # the fit path's, before the others run
        # dip.memory's estimate of the same: on a CPU the process's high-water mark holds the process too.
        need = memory.estimate(
            args.arch, args.size, args.size, 3, device=device.type, bf16=speed.bf16, window=100, windowed_rules=2
        )
        report.setdefault(
            "estimated_peak_memory_mb", (need.bytes + (memory.PROCESS_BYTES if device.type == "cpu" else 0)) / 2**20
        )
        if args.reference:
            ref_times += time_reference(spec["net"], fast, clean, observed, device, args.warmup)
        if args.batch:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            batch_times += time_batch(spec["net"], fast, clean, observed, device, args.warmup, args.batch)
            report.setdefault("batch_peak_memory_mb", peak_memory_mb(device))  # on CPU: the process's high-water mark
    stats = summarise(times)
    flops = flops_per_iteration(spec["net"], depth, args.size, device)
    peak = matmul_peak_gflops(device)
    report.update(
        seconds_per_iteration=stats["median"],
        seconds_p10=stats["p10"],
        seconds_p90=stats["p90"],
        iterations_per_second=stats["iterations_per_second"],
        gflops_per_iteration=flops / 1e9,
        achieved_gflops=flops / 1e9 / stats["median"],
        matmul_peak_gflops=peak,
        fraction_of_matmul_peak=flops / 1e9 / stats["median"] / peak,
    )
    if args.reference:
        ref = summarise(ref_times)
        report.update(
            reference_seconds_per_iteration=ref["median"],
            reference_p10=ref["p10"],
            reference_p90=ref["p90"],
            speedup=ref["median"] / stats["median"],
            reference_fraction_of_matmul_peak=flops / 1e9 / ref["median"] / peak,
        )
    if args.batch:
        batch = summarise(batch_times)
        # Throughput in fit-iterations per second: B fits advance one iteration per batched step.
        report.update(
            batch_fits=args.batch,
            batch_seconds_per_iteration=batch["median"],
            batch_fit_iterations_per_second=args.batch / batch["median"],
            batch_speedup_over_single=args.batch * stats["median"] / batch["median"],
        )
    # Operations dispatched per iteration (about one kernel launch each on a GPU), counted on a 32x32
    # problem: the count does not depend on the image size.
    ops = ops_per_iteration(spec["net"], 32, device=device)
    report.update(
        ops_per_iteration=ops["fit"], reference_ops_per_iteration=ops["reference"], ops_ratio_to_reference=ops["ratio"]
    )
    if args.batch:
        batch_ops = ops_per_iteration(spec["net"], 32, fits=args.batch, device=device)["fit"]
        report.update(batch_ops_per_iteration=batch_ops, batch_ops_ratio_to_single=batch_ops / ops["fit"])
    if args.parity:
        best = {}
        for name, cl, bf in (("fast", args.channels_last, args.bf16), ("fp32", False, False)):
            s = FitSettings(
                iterations=args.parity, input_depth=depth, channels_last=cl, bf16=bf, ssim_every=10**9, seed=args.seed
            )
            best[name] = float(
                fit(spec["net"], Denoise(25), observed, s, clean=clean, device=device).history["psnr_ema"].max()
            )
        report.update(
            parity_iterations=args.parity,
            parity_seed=args.seed,
            best_psnr_ema_fast=best["fast"],
            best_psnr_ema_fp32=best["fp32"],
            parity_difference_db=best["fast"] - best["fp32"],
        )
    if args.json:
        print(strict_json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>36}: {value:.4g}" if isinstance(value, float) else f"{key:>36}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
