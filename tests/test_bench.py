import subprocess
import sys

import torch

from dip.bench import ops_per_iteration
from dip.fit import FitSettings, fit
from dip.operators import Denoise
from dip.strict_json import loads_strict

# The default skip network's structure at a width of 8: operations are counted per dispatch, so the counts are
# the default network's (the same layers in the same order) at a fraction of the arithmetic.
SKIP = {"kind": "skip", "channels_down": [8] * 5, "channels_up": [8] * 5, "channels_skip": [4] * 5}


def test_bench_prints_the_promised_json():
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dip",
            "bench",
            "--size",
            "32",
            "--iters",
            "3",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--reference",
            "--batch",
            "2",
            "--rounds",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    report = loads_strict(r.stdout)  # strict: no NaN or Infinity (dip.strict_json)
    for key in (
        "seconds_per_iteration",
        "reference_seconds_per_iteration",
        "speedup",
        "gflops_per_iteration",
        "peak_memory_mb",
        "estimated_peak_memory_mb",
        "device",
        "matmul_peak_gflops",
    ):
        assert key in report
    assert report["seconds_per_iteration"] > 0 and report["gflops_per_iteration"] > 0.1
    assert report["timed_iterations"] == 6 and report["batch_fits"] == 2
    assert report["batch_fit_iterations_per_second"] > 0 and report["batch_peak_memory_mb"] > 0
    assert report["ops_per_iteration"] > 100 and report["reference_ops_per_iteration"] > 100
    assert report["batch_ops_per_iteration"] > 100
    # On a CPU both are the process's high-water mark: the estimate adds the loaded process to the fit's share.
    assert 0.5 < report["estimated_peak_memory_mb"] / report["peak_memory_mb"] < 2


ALL_RULES = ("es-wmv", "es-wmv-paper", "es-emv", "discrepancy")


def test_the_step_dispatches_fewer_operations_than_the_notebook_loop_and_batches_cost_little_more():
    """The loop issue's targets: at default settings (no rule recorded) a fit dispatches at most 0.8x the
    operations per iteration of the authors' notebook loop with foreach Adam, and 4 stacked fits at most
    1.25x one fit's; with every rule recorded (the pipeline's --record-stops) the numbers are printed."""
    torch.set_num_threads(1)
    one = ops_per_iteration(SKIP, 32)
    four = ops_per_iteration(SKIP, 32, fits=4)
    one_all, four_all = (ops_per_iteration(SKIP, 32, fits=n, rules=ALL_RULES)["fit"] for n in (1, 4))
    print(
        f"ops per iteration: notebook loop {one['reference']:.0f}; dip fit {one['fit']:.0f} "
        f"({one['ratio']:.2f}x), 4 stacked {four['fit']:.0f} ({four['fit'] / one['fit']:.2f}x one fit); "
        f"recording all four rules: {one_all:.0f}, 4 stacked {four_all:.0f}"
    )
    assert one["ratio"] <= 0.8
    assert four["fit"] <= 1.25 * one["fit"]
    assert four_all <= 1.25 * one_all  # the rules are vectorised over fits too


def test_eight_stacked_fits_of_different_images_cost_little_more_than_one_fit():
    """`dip fit --stack`: 8 fits of 8 different images (their own observations and ground truths, one shared
    denoising operator) as one network dispatch at most 1.25x the operations per iteration of one fit, with
    no rule recorded and with the pipeline's four (the discrepancy rule keeps each image's own target)."""
    torch.set_num_threads(1)
    for rules in ((), ALL_RULES):
        one = ops_per_iteration(SKIP, 32, rules=rules)["fit"]
        eight = ops_per_iteration(SKIP, 32, fits=8, rules=rules, images=True)["fit"]
        print(
            f"ops per iteration, rules {rules or 'none'}: one fit {one:.0f}, 8 images stacked {eight:.0f} ({eight / one:.2f}x)"
        )
        assert eight <= 1.25 * one


def test_speed_switches_keep_quality(clean64):
    """channels-last + bf16 autocast against the fp32 path, same seed: best EMA PSNR within 0.2 dB."""
    clean = clean64[..., :32, :32]
    observed = Denoise(25).observe(clean, torch.Generator().manual_seed(0))
    best = {}
    for name, fast in (("fast", True), ("fp32", False)):
        settings = FitSettings(iterations=60, channels_last=fast, bf16=fast, ssim_every=1000)
        # Three scales keep the emulated bf16 of CPUs without native support affordable in a test.
        net = {"kind": "skip", "channels_down": [128] * 3, "channels_up": [128] * 3, "channels_skip": [4] * 3}
        best[name] = fit(net, Denoise(25), observed, settings, clean=clean).history["psnr_ema"].max()
    assert abs(best["fast"] - best["fp32"]) <= 0.2, best


def test_bench_refuses_a_device_pytorch_cannot_use_here_in_one_line():
    import pytest

    if torch.cuda.is_available():
        pytest.skip("this test is about a machine without CUDA")  # never taken on CI
    r = subprocess.run([sys.executable, "-m", "dip", "bench", "--device", "cuda"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--device cuda: " in r.stderr, r.stderr
    assert "available here: cpu" in r.stderr and "Traceback" not in r.stderr
