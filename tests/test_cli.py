import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dip.defaults import DEFAULTS
from dip.metrics import psnr

from conftest import run_dip

DIP = [sys.executable, "-m", "dip"]


run = run_dip  # in this process: most checks here take milliseconds, a fresh interpreter seconds


def test_fit_writes_the_four_files(png64, tmp_path):
    out = tmp_path / "run"
    r = run(
        "fit",
        "--task",
        "denoise",
        "--sigma",
        25,
        "--image",
        png64,
        "--iters",
        20,
        "--out",
        out,
        "--record-stops",
        "--threads",
        1,
    )
    assert r.returncode == 0, r.stderr
    assert {"observed.png", "restored.png", "history.csv", "summary.json"} <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "task",
        "arch",
        "seed",
        "iterations",
        "seconds",
        "device",
        "psnr_final",
        "psnr_best",
        "config_hash",
        "git_commit",
        "versions",
    ):
        assert key in summary
    # Without --stop the task's default rule (dip.defaults) is among them, its pixels held out where it is holdout.
    assert set(summary["stops"]) == {"fixed", "es-wmv", "es-wmv-paper", "es-emv", "discrepancy", "oracle"} | {
        DEFAULTS["denoise"].stop
    }
    assert summary["stop"] == DEFAULTS["denoise"].stop and summary["iterations"] == 20  # the whole budget
    assert summary["stops"]["discrepancy"]["target"] == pytest.approx(summary["discrepancy_target"])
    assert 15 < summary["noise_sigma"] < 35 and summary["noise_sigma_source"].startswith("estimated")
    history = pd.read_csv(out / "history.csv")
    assert list(history["iteration"]) == list(range(1, 21))
    assert {"loss", "psnr_observed", "seconds", "psnr", "psnr_ema"} <= set(history.columns)
    assert "iteration 20/20" in r.stderr  # plain progress lines when not on a terminal
    # 20 iterations leave a blurred start, below the noisy observation: said, not hidden behind exit 0.
    assert summary["psnr_restored"] < summary["psnr_observed"]
    assert f"dip fit: {out}: warning: restored.png is {summary['psnr_restored']:.2f} dB" in r.stderr


def test_seeds_fit_as_one_batch_and_write_what_single_fits_write(png64, tmp_path):
    common = [
        "fit",
        "--task",
        "denoise",
        "--sigma",
        25,
        "--image",
        png64,
        "--iters",
        20,
        "--record-stops",
        "--threads",
        1,
        "--no-bf16",
        "--holdout",
        0.1,
    ]
    r = run(*common, "--seeds", 0, 1, "--observation-seed", 0, "--out", tmp_path / "batch" / "s{seed}")
    assert r.returncode == 0, r.stderr
    alone = run(*common, "--seed", 1, "--observation-seed", 0, "--out", tmp_path / "alone")
    assert alone.returncode == 0, alone.stderr
    summaries = [json.loads((tmp_path / "batch" / f"s{seed}" / "summary.json").read_text()) for seed in (0, 1)]
    assert [s["seed"] for s in summaries] == [0, 1] and {s["batched_fits"] for s in summaries} == {2}
    assert summaries[0]["config_hash"] != summaries[1]["config_hash"]
    assert set(summaries[1]["stops"]) == {
        "fixed",
        "es-wmv",
        "es-wmv-paper",
        "es-emv",
        "discrepancy",
        "holdout",
        "oracle",
    }
    # Each batched fit holds out its own seed's pixels, the same ones as when it runs alone.
    batched = pd.read_csv(tmp_path / "batch" / "s1" / "history.csv")
    single = pd.read_csv(tmp_path / "alone" / "history.csv")
    assert len(batched) == 20 and batched["loss"].iloc[0] == pytest.approx(single["loss"].iloc[0], rel=1e-5)
    assert (tmp_path / "batch" / "s1" / "restored.png").exists()
    assert not list((tmp_path / "batch").rglob("checkpoint*"))


def test_stop_ends_the_fit_and_keeps_the_emas_image_after_the_minimum(png64, tmp_path):
    out = tmp_path / "run"
    # EMA 0.8 lags 4 iterations: the kept image is 4 iterations after the variance minimum, and the
    # short patience P = 3 is stretched to those 4. The fit asks its rule every 25 iterations.
    r = run(
        "fit",
        "--task",
        "denoise",
        "--sigma",
        25,
        "--image",
        png64,
        "--iters",
        60,
        "--out",
        out,
        "--stop",
        "es-wmv",
        "--window",
        5,
        "--patience",
        3,
        "--ema",
        0.8,
        "--threads",
        1,
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    stop = summary["stops"]["es-wmv"]
    assert summary["stopped_by"] == "es-wmv" and summary["iterations"] in (25, 50)
    assert summary["iterations_saved"] == 60 - summary["iterations"] and summary["seconds_saved"] > 0
    assert stop["iteration"] == stop["minimum"] + 4 and stop["stop_at"] == stop["minimum"] + 4
    assert summary["iterations"] - 25 < stop["stop_at"] <= summary["iterations"]
    restored = np.asarray(Image.open(out / "restored.png"), dtype=np.float64) / 255
    clean = np.asarray(Image.open(png64), dtype=np.float64) / 255
    assert abs(psnr(restored, clean) - stop["psnr"]) < 0.1  # restored.png is the rule's image


def test_holdout_validates_on_pixels_the_fit_never_saw(png64, tmp_path):
    out = tmp_path / "run"
    # Without the EMA the held-out error of the raw outputs jitters, so a patience of 2 ends the fit at the
    # first check (25): the wiring under test, not a setting to use.
    r = run(
        "fit",
        "--task",
        "denoise",
        "--sigma",
        25,
        "--image",
        png64,
        "--iters",
        60,
        "--out",
        out,
        "--stop",
        "holdout",
        "--patience",
        2,
        "--ema",
        0,
        "--threads",
        1,
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    stop = summary["stops"]["holdout"]
    assert summary["holdout"] == 0.05 and summary["task_label"] == "denoise-s25-holdout0.05"
    assert summary["stopped_by"] == "holdout" and summary["iterations"] == 25 and stop["stop_at"] <= 25
    history = pd.read_csv(out / "history.csv")
    # The kept image is the one with the least held-out error up to the stop, and the stop is P after it.
    signal_ = history.set_index("iteration")["signal_holdout"]
    assert stop["iteration"] == signal_.loc[: stop["stop_at"]].idxmin() and stop["stop_at"] == stop["iteration"] + 2
    restored = np.asarray(Image.open(out / "restored.png"), dtype=np.float64) / 255
    clean = np.asarray(Image.open(png64), dtype=np.float64) / 255
    assert abs(psnr(restored, clean) - stop["psnr"]) < 0.1  # restored.png is the rule's image


@pytest.mark.parametrize(
    "task",
    [
        ["--task", "sr", "--factor", 4],
        ["--task", "inpaint", "--box"],
        ["--task", "inpaint", "--text"],
        ["--task", "jpeg", "--quality", 10],
    ],
)
def test_every_task_runs_from_a_clean_image(png64, tmp_path, task):
    r = run("fit", *task, "--image", png64, "--iters", 3, "--out", tmp_path / "o", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["iterations"] == 3


def test_restoring_a_given_observation_without_ground_truth(png64, tmp_path):
    r = run("degrade", "--task", "inpaint", "--drop", 0.5, "--image", png64, "--out", tmp_path / "d")
    assert r.returncode == 0, r.stderr
    r = run(
        "fit",
        "--task",
        "inpaint",
        "--observed",
        tmp_path / "d" / "observed.png",
        "--mask",
        tmp_path / "d" / "mask.png",
        "--iters",
        3,
        "--out",
        tmp_path / "f",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert "psnr_final" not in summary and summary["iterations"] == 3


def bad_input_cases(tmp_path, png64):
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8)).save(tiny)
    mask = tmp_path / "mask.png"
    Image.new("L", (10, 10), 255).save(mask)
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(png64.read_bytes()[:200])
    base = ["fit", "--image", png64]
    return {
        "missing file": (
            ["fit", "--task", "denoise", "--sigma", 25, "--image", tmp_path / "nope.png"],
            "nope.png: file not found",
        ),
        "truncated": (
            ["fit", "--task", "denoise", "--sigma", 25, "--image", truncated],
            "trunc.png: not a readable image",
        ),
        "too small": (["fit", "--task", "denoise", "--sigma", 25, "--image", tiny], "minimum 16x16"),
        "mask size": ([*base, "--task", "inpaint", "--mask", mask], "mask is 10x10 but the image is 64x64"),
        "sigma": ([*base, "--task", "denoise", "--sigma", -3], "sigma: must be > 0"),
        "factor": ([*base, "--task", "sr", "--factor", 1], "factor: SR factor must be an integer >= 2, got 1"),
        "drop": ([*base, "--task", "inpaint", "--drop", 1.5], "drop: fraction must be in (0, 1)"),
        "iterations": ([*base, "--task", "denoise", "--sigma", 25, "--iters", 0], "--iters: must be an integer > 0"),
        "arch": ([*base, "--task", "denoise", "--sigma", 25, "--arch", "vgg"], "unknown architecture 'vgg'"),
        "seed": ([*base, "--task", "denoise", "--sigma", 25, "--seed", "1.5"], "--seed: invalid int value"),
        "task": ([*base, "--task", "deconvolve"], "invalid choice: 'deconvolve'"),
        "holdout": ([*base, "--task", "denoise", "--sigma", 25, "--holdout", 0.6], "--holdout: the fraction"),
        "holdout off": (
            [*base, "--task", "denoise", "--sigma", 25, "--stop", "holdout", "--holdout", 0],
            "--stop holdout: needs pixels held out",
        ),
        "a folder for one image": (
            ["degrade", "--task", "denoise", "--sigma", 25, "--image", tmp_path],
            f"{tmp_path}: a folder, where one image file is expected",
        ),
        "degrade a flash pair": (
            ["degrade", "--task", "flash", "--image", png64],
            "--task flash: a flash/no-flash pair is photographed, not made from a clean image",
        ),
        "ground truth cropped to the factor": (
            ["fit", "--task", "sr", "--factor", 4, "--observed", tiny, "--clean", png64],
            "ground truth is (3, 64, 64) (C, H, W) but the observation needs (3, 32, 32)",
        ),
        "odd ground truth": (
            ["fit", "--task", "sr", "--factor", 4, "--observed", tiny, "--clean", "ODD"],
            "ground truth is (3, 47, 61) (C, H, W), (3, 44, 60) cropped to the factor but the observation",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "truncated",
        "too small",
        "mask size",
        "sigma",
        "factor",
        "drop",
        "iterations",
        "arch",
        "seed",
        "task",
        "holdout",
        "holdout off",
        "a folder for one image",
        "degrade a flash pair",
        "ground truth cropped to the factor",
        "odd ground truth",
    ],
)
def test_bad_input_is_one_line_naming_the_culprit_and_writes_nothing(case, tmp_path, png64):
    args, message = bad_input_cases(tmp_path, png64)[case]
    Image.new("RGB", (61, 47)).save(tmp_path / "odd.png")
    args = [tmp_path / "odd.png" if a == "ODD" else a for a in args]
    out = tmp_path / "out"
    r = run(*args, "--out", out)
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 2
    assert not out.exists()


def test_a_killed_fit_resumes_and_ends_as_an_uninterrupted_one(png64, tmp_path):
    common = [
        "fit",
        "--task",
        "denoise",
        "--sigma",
        25,
        "--image",
        png64,
        "--iters",
        60,
        "--threads",
        1,
        "--checkpoint-every",
        25,
        "--no-progress",
    ]
    assert run(*common, "--out", tmp_path / "whole").returncode == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen([*DIP, *map(str, common), "--out", str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    r = run(*common, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "resuming from checkpoint" in r.stderr and "at iteration 25" in r.stderr
    a = pd.read_csv(tmp_path / "whole" / "history.csv").drop(columns="seconds")
    b = pd.read_csv(out / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    same = [np.asarray(Image.open(d / "restored.png")) for d in (tmp_path / "whole", out)]
    assert np.array_equal(*same)
    assert not (out / "checkpoint.pt").exists()


def test_sigterm_saves_a_checkpoint(png64, tmp_path):
    out = tmp_path / "term"
    proc = subprocess.Popen(
        [
            *DIP,
            "fit",
            "--task",
            "denoise",
            "--sigma",
            "25",
            "--image",
            str(png64),
            "--iters",
            "400",
            "--out",
            str(out),
            "--threads",
            "1",
            "--no-progress",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    # The first periodic checkpoint (10 % of the fit) shows the loop, and its signal handler, are running.
    while not (out / "checkpoint.pt").exists() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "checkpoint saved at iteration" in err
    assert (out / "checkpoint.pt").exists()


def flash_pair(tmp_path):
    """A synthetic flash/no-flash pair from a 32×32 view of scikit-image's astronaut (see
    dip.tasks.synthetic_flash_pair), and the noise-free no-flash image to score against."""
    from skimage import data

    from dip.image_io import save_png, to_tensor
    from dip.tasks import synthetic_flash_pair

    clean = to_tensor(data.astronaut()[40:168:4, 150:278:4].astype(np.float32) / 255)
    pair = synthetic_flash_pair(clean, observation_seed=0)
    for name, image in pair.items():
        save_png(image, tmp_path / f"{name}.png")
    return {
        "flash": tmp_path / "flash.png",
        "noflash": tmp_path / "noflash.png",
        "noflash_clean": tmp_path / "reference.png",
    }


def test_flash_no_flash_keeps_the_no_flash_light_without_its_noise(tmp_path):
    pair = flash_pair(tmp_path)
    out = tmp_path / "flash"
    r = run(
        "fit",
        "--task",
        "flash",
        "--flash",
        pair["flash"],
        "--observed",
        pair["noflash"],
        "--clean",
        pair["noflash_clean"],
        "--iters",
        120,
        "--threads",
        1,
        "--out",
        out,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["arch"] == "skip-flash" and summary["settings"]["input"] == "image"
    assert summary["settings"]["lr"] == 0.1 and summary["settings"]["reg_noise_std"] == 0
    # Less noisy than the no-flash photograph, and in its colours, not the flash's.
    # Measured +8.9 dB at 120 iterations, +7.5 at 100 and +3.7 at 50 (Intel Xeon, 2026-12-03).
    assert summary["psnr_restored"] >= summary["psnr_observed"] + 4
    restored = np.asarray(Image.open(out / "restored.png"), dtype=np.float32) / 255
    target = np.asarray(Image.open(pair["noflash_clean"]), dtype=np.float32) / 255
    flash = np.asarray(Image.open(pair["flash"]), dtype=np.float32) / 255
    mean = restored.mean(axis=(0, 1))
    assert np.abs(mean - target.mean(axis=(0, 1))).max() < 0.02 < np.abs(mean - flash.mean(axis=(0, 1))).max()


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "--flash: required by the flash task with --observed; give the pair: --flash FLASH --observed NOFLASH"),
        (["--flash", "SMALL"], "the flash image is (3, 32, 32) (C, H, W) but the no-flash image is (3, 64, 64)"),
    ],
)
def test_a_flash_fit_without_its_pair_is_one_line(tmp_path, png64, extra, message):
    Image.new("RGB", (32, 32)).save(tmp_path / "small.png")
    extra = [str(tmp_path / "small.png") if e == "SMALL" else e for e in extra]
    r = run("fit", "--task", "flash", "--observed", png64, *extra, "--iters", 2, "--out", tmp_path / "out")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


# Inputs of every precision and layout (README, "Restore your own image").
def _one_line_refusal(r, out, *fragments):
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("dip fit: error: ") and r.stderr.count("\n") == 1, r.stderr
    for fragment in fragments:
        assert fragment in r.stderr
    assert not out.exists()  # nothing written


def _known(size: int = 32) -> np.ndarray:
    known = np.ones((size, size), bool)
    known[8:20, 10:24] = False
    return known


def test_a_float_tiff_is_restored_into_a_float_tiff_and_scored_at_full_precision(tmp_path):
    import tifffile

    from tests.conftest import natural_crop

    clean = natural_crop(32).mean(axis=-1).astype(np.float32)
    tifffile.imwrite(tmp_path / "clean.tif", clean)
    out = tmp_path / "run"
    r = run(
        "fit",
        "--task",
        "denoise",
        "--sigma",
        25,
        "--image",
        tmp_path / "clean.tif",
        "--iters",
        10,
        "--out",
        out,
        "--threads",
        1,
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    assert {"observed.png", "observed.tif", "restored.png", "restored.tif"} <= {p.name for p in out.iterdir()}
    restored = tifffile.imread(out / "restored.tif")
    assert restored.dtype == np.float32 and restored.shape == (32, 32)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input_precision"]["sample_type"] == "float32"
    assert summary["input_precision"]["full_precision_output"] == ".tif"
    assert summary["psnr_restored"] == pytest.approx(psnr(restored[..., None], clean[..., None]), abs=1e-4)


def test_a_16_bit_input_keeps_its_12_bit_levels_in_the_16_bit_outputs(tmp_path):
    from dip.operators import box_mask
    from tests.conftest import natural_crop

    levels = np.round(natural_crop(32).mean(axis=-1) * 4095).astype(np.uint16)  # a dim signal: 12 of 16 bits
    Image.fromarray(levels).save(tmp_path / "dim.png")
    out = tmp_path / "run"
    r = run(
        "fit",
        "--task",
        "inpaint",
        "--box",
        "--image",
        tmp_path / "dim.png",
        "--iters",
        10,
        "--out",
        out,
        "--threads",
        1,
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    known = box_mask(32, 32)[0, 0].numpy().astype(bool)
    observed = np.asarray(Image.open(out / "observed-16bit.png"))
    np.testing.assert_array_equal(observed[known], levels[known])  # every level of the signal, not ~17
    assert len(np.unique(np.asarray(Image.open(out / "observed.png"))[known])) <= 17
    restored = np.asarray(Image.open(out / "restored-16bit.png"))
    preview = np.asarray(Image.open(out / "restored.png"))
    assert restored.dtype == np.uint16 and preview.dtype == np.uint8
    assert len(np.unique(restored)) > 4 * len(np.unique(preview))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input_precision"]["sample_type"] == "uint16"
    full = psnr(restored[..., None] / 65535, levels[..., None] / 65535)
    assert summary["psnr_restored"] == pytest.approx(full, abs=0.01)


def test_pages_as_channels_restore_a_stack_with_a_0_1_mask(tmp_path):
    import tifffile

    pages = np.stack([np.linspace(0, 1, 32 * 32).reshape(32, 32) ** k for k in (1, 2, 3, 4, 5)]).astype(np.float32)
    tifffile.imwrite(tmp_path / "stack.tif", pages)
    Image.fromarray(_known().astype(np.uint8)).save(tmp_path / "mask01.png")  # 0/1, as NumPy users write it
    out = tmp_path / "run"
    r = run(
        "fit",
        "--task",
        "inpaint",
        "--mask",
        tmp_path / "mask01.png",
        "--image",
        tmp_path / "stack.tif",
        "--pages-as-channels",
        "--iters",
        10,
        "--out",
        out,
        "--threads",
        1,
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    assert tifffile.imread(out / "restored.tif").shape == (5, 32, 32)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "mask.png")) > 127, _known())
    assert json.loads((out / "summary.json").read_text())["input_precision"]["pages"] == 5


@pytest.mark.parametrize("case", ["float-outside", "pages", "none-known", "all-known", "mask-size", "sr-bands"])
def test_inputs_that_cannot_be_read_on_purpose_are_one_line_before_anything_is_written(tmp_path, case):
    import tifffile

    image = tmp_path / "clean.png"
    Image.fromarray((np.linspace(0, 255, 32 * 32).reshape(32, 32)).astype(np.uint8)).save(image)
    extra, expected = [], [str(image)]
    if case == "float-outside":
        image = tmp_path / "counts.tif"
        tifffile.imwrite(image, np.linspace(0, 900, 32 * 32, dtype=np.float32).reshape(32, 32))
        expected = [f"{image}: float values 0..900 outside [0, 1]", "--intensity-range"]
    elif case in ("pages", "sr-bands"):
        image = tmp_path / "stack.tif"
        tifffile.imwrite(image, np.zeros((4, 32, 32), np.float32), photometric="minisblack")
        expected = [f"{image}: 4 pages", "--pages-as-channels"]
        if case == "sr-bands":
            extra, expected = ["--pages-as-channels"], [f"{image}: sr needs a greyscale or colour image"]
    else:
        mask = tmp_path / "mask.png"
        value = {"none-known": 0, "all-known": 1}.get(case, 1)
        Image.new("L", (16, 16) if case == "mask-size" else (32, 32), value).save(mask)
        extra = ["--mask", mask]
        expected = [f"{mask}: mask is 16x16"] if case == "mask-size" else [f"{mask}: every pixel", "bright = known"]
    task = (
        ["--task", "sr", "--factor", 2]
        if case == "sr-bands"
        else ["--task", "inpaint"]
        if "mask" in str(extra)
        else ["--task", "denoise", "--sigma", 25]
    )
    out = tmp_path / "run"
    r = run("fit", *task, "--image", image, *extra, "--iters", 10, "--out", out, "--threads", 1)
    _one_line_refusal(r, out, *expected)


# A fit interrupted by its own signal at a known iteration: the same command, run through a driver that
# sends the signal when the fit's step runs for the `at`-th time (deterministic, unlike a timed kill).
SIGNAL_AT = """
import os, sys
import dip.fit
from dip.cli import main
at, signum = int(sys.argv[1]), int(sys.argv[2])
step, calls = dip.fit.Step.__call__, [0]
def counted(self, *args):
    calls[0] += 1
    if calls[0] == at:
        os.kill(os.getpid(), signum)
    return step(self, *args)
dip.fit.Step.__call__ = counted
sys.exit(main(sys.argv[3:]))
"""


def run_signalled(at: int, signum: int, *args):
    return subprocess.run(
        [sys.executable, "-c", SIGNAL_AT, str(at), str(int(signum)), *map(str, args)], capture_output=True, text=True
    )


def contents(folder):
    """Every file under `folder` with its bytes: what a refused command must leave as it was."""
    return (
        {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        if folder.exists()
        else None
    )


def assert_refused(r, message, out=None, before=None):
    """One line naming the culprit, exit 2, no traceback, and `out` as it was (absent, or `before`)."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    if out is not None:
        assert contents(out) == before


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupting_a_dry_run_exits_128_plus_the_signal_and_mentions_no_checkpoint(png64, tmp_path, signum):
    out = tmp_path / "out"
    r = run_signalled(
        3,
        signum,
        "fit",
        "--task",
        "denoise",
        "--sigma",
        25,
        "--image",
        png64,
        "--out",
        out,
        "--dry-run",
        "--threads",
        1,
    )
    assert r.returncode == 128 + signum, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "checkpoint" not in r.stderr and "interrupted" in r.stderr, r.stderr
    assert r.stdout == "" and not out.exists()


# Checkpoints belong to one fit: a fit of a 64x64 denoising observation stopped by SIGTERM at iteration 27
# keeps the checkpoint of iteration 25; each case reruns it with one thing changed.
# `--stop fixed`: the budget's last image, so that the one change each case makes is the only difference.
BASE_FIT = [
    "fit",
    "--task",
    "denoise",
    "--sigma",
    25,
    "--iters",
    30,
    "--threads",
    1,
    "--stop",
    "fixed",
    "--no-progress",
]


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    from conftest import natural_crop

    folder = tmp_path_factory.mktemp("checkpointed")
    image, other = folder / "clean.png", folder / "other.png"
    Image.fromarray(np.round(natural_crop(64) * 255).astype(np.uint8)).save(image)
    Image.fromarray(np.round(natural_crop(64)[::-1] * 255).astype(np.uint8)).save(other)
    out = folder / "out"
    r = run_signalled(27, signal.SIGTERM, *BASE_FIT, "--image", image, "--out", out)
    assert r.returncode == 128 + signal.SIGTERM and (out / "checkpoint.pt").exists(), r.stderr
    return {"image": image, "other": other, "out": out}


def copy_of(folder, tmp_path):
    import shutil

    return Path(shutil.copytree(folder, tmp_path / "out"))


@pytest.mark.parametrize(
    "change, differs",
    [
        (["--image", "OTHER"], "observation, clean image differ"),
        (["--sigma", 30], "sigma, observation differ"),
        (["--observation-seed", 1], "observation seed, observation differ"),
        (["--iters", 40], "iterations differs"),
        (["--arch", "skip-3"], "arch, network differ"),
        (["--seed", 1], "seed, seeds, observation seed, observation differ"),
        (["--stop", "es-wmv"], "stop, stopping rules differ"),
        (["--lr", 0.02], "lr differs"),
    ],
)
def test_a_checkpoint_of_another_fit_is_refused_naming_what_differs(checkpointed, tmp_path, change, differs):
    out = copy_of(checkpointed["out"], tmp_path)
    before = contents(out)
    change = [checkpointed["other"] if c == "OTHER" else c for c in change]
    options = dict(zip(BASE_FIT[1:-1:2], BASE_FIT[2:-1:2]))  # between "fit" and "--no-progress"
    options.update({"--image": checkpointed["image"], **dict(zip(change[::2], change[1::2]))})
    r = run("fit", *[x for kv in options.items() for x in kv], "--no-progress", "--out", out)
    assert_refused(
        r,
        f"{out / 'checkpoint.pt'}: belongs to another fit ({differs}); delete it or choose another --out",
        out,
        before,
    )


def test_the_same_command_resumes_its_own_checkpoint(checkpointed, tmp_path):
    out = copy_of(checkpointed["out"], tmp_path)
    r = run(*BASE_FIT, "--image", checkpointed["image"], "--out", out)
    assert r.returncode == 0, r.stderr
    assert "resuming from checkpoint" in r.stderr and "at iteration 25" in r.stderr
    assert not (out / "checkpoint.pt").exists() and json.loads((out / "summary.json").read_text())["iterations"] == 30


# Options against the task (dip.tasks.OPTIONS).
def test_a_given_noisy_image_is_restored_without_sigma(png64, tmp_path):
    r = run("degrade", "--task", "denoise", "--sigma", 25, "--image", png64, "--out", tmp_path / "d")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "f"
    r = run(
        "fit",
        "--task",
        "denoise",
        "--observed",
        tmp_path / "d" / "observed.png",
        "--iters",
        3,
        "--out",
        out,
        "--no-progress",
        "--record-stops",
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    held = "-holdout0.05" if DEFAULTS["denoise"].stop == "holdout" else ""
    assert summary["task_label"] == "denoise" + held and "sigma" not in summary
    assert summary["settings"]["reg_noise_std"] == pytest.approx(1 / 30)  # the σ < 50 preset
    assert summary["noise_sigma_source"].startswith("estimated") and 15 < summary["noise_sigma"] < 35


@pytest.mark.parametrize(
    "extra, sigma, source",
    [
        (["--sigma", 25], 25, "given (--sigma)"),
        (["--sigma", 25, "--noise-sigma", 20], 20, "given (--noise-sigma)"),
        (["--sigma", 25, "--noise-sigma", "estimate"], None, "estimated"),
    ],
)
def test_the_discrepancy_rule_uses_the_noise_level_given_with_an_observation(png64, tmp_path, extra, sigma, source):
    run("degrade", "--task", "denoise", "--sigma", 25, "--image", png64, "--out", tmp_path / "d")
    out = tmp_path / "f"
    r = run(
        "fit",
        "--task",
        "denoise",
        "--observed",
        tmp_path / "d" / "observed.png",
        *extra,
        "--iters",
        3,
        "--stop",
        "discrepancy",
        "--out",
        out,
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["noise_sigma_source"].startswith(source)
    if sigma is not None:
        assert summary["noise_sigma"] == pytest.approx(sigma)
    else:
        assert summary["noise_sigma"] != 25 and 15 < summary["noise_sigma"] < 35


def test_a_given_jpeg_is_restored_without_quality(png64, tmp_path):
    r = run("degrade", "--task", "jpeg", "--quality", 10, "--image", png64, "--out", tmp_path / "d")
    assert r.returncode == 0, r.stderr
    r = run(
        "fit",
        "--task",
        "jpeg",
        "--observed",
        tmp_path / "d" / "observed.png",
        "--iters",
        3,
        "--out",
        tmp_path / "f",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "f" / "summary.json").read_text())["task_label"] == "jpeg"


@pytest.mark.parametrize(
    "command, message",
    [
        (
            ["fit", "--task", "inpaint", "--observed", "PNG"],
            "--mask: required by the inpaint task with --observed; give the known pixels with --mask FILE",
        ),
        (["fit", "--task", "inpaint", "--box", "--observed", "PNG"], "give the known pixels with --mask FILE"),
        (["fit", "--task", "denoise", "--image", "PNG"], "--sigma: required by the denoise task with --image"),
        (["fit", "--task", "jpeg", "--image", "PNG"], "--quality: required by the jpeg task with --image"),
        (["fit", "--task", "sr", "--observed", "PNG"], "--factor: required by the sr task with --observed"),
        (
            ["fit", "--task", "inpaint", "--image", "PNG"],
            "required by the inpaint task with --image; choose the mask with --mask FILE, --drop FRACTION, --text or --box",
        ),
        (["degrade", "--task", "denoise", "--image", "PNG"], "--sigma: required by the denoise task with --image"),
        (
            ["fit", "--task", "denoise", "--sigma", 25, "--image", "PNG", "--mask", "PNG"],
            "--mask: the denoise task takes no --mask (it takes --sigma, --noise, --peak)",
        ),
        (
            ["fit", "--task", "sr", "--factor", 2, "--sigma", 25, "--image", "PNG"],
            "--sigma: the sr task takes no --sigma (it takes --factor)",
        ),
        (
            ["fit", "--task", "inpaint", "--box", "--quality", 10, "--image", "PNG"],
            "--quality: the inpaint task takes no --quality",
        ),
        (
            ["fit", "--task", "denoise", "--sigma", 25, "--factor", 2, "--image", "PNG"],
            "--factor: the denoise task takes no --factor",
        ),
        (
            ["fit", "--task", "denoise", "--sigma", 25, "--flash", "PNG", "--observed", "PNG"],
            "--flash: the denoise task takes no --flash",
        ),
        (
            ["fit", "--task", "jpeg", "--quality", 10, "--text", "--image", "PNG"],
            "--text: the jpeg task takes no --text",
        ),
        (
            ["fit", "--task", "sr", "--factor", 2, "--drop", 0.5, "--image", "PNG"],
            "--drop: the sr task takes no --drop",
        ),
        (
            ["fit", "--task", "flash", "--flash", "PNG", "--observed", "PNG", "--sigma", 25],
            "--sigma: the flash task takes no --sigma",
        ),
        (
            ["degrade", "--task", "jpeg", "--quality", 10, "--sigma", 5, "--image", "PNG"],
            "--sigma: the jpeg task takes no --sigma",
        ),
        (
            ["fit", "--task", "denoise", "--sigma", 25, "--image", "PNG", "--clean", "PNG"],
            "--clean: only with --observed",
        ),
    ],
)
def test_options_are_checked_against_the_task(png64, tmp_path, command, message):
    out = tmp_path / "out"
    iters = ["--iters", 3] if command[0] == "fit" else []  # bounded, should a refusal ever not happen
    r = run(*[png64 if c == "PNG" else c for c in command], *iters, "--out", out)
    assert_refused(r, message, out, None)


# Devices: the names no machine like this one can use are refused everywhere (a GPU machine included); only
# CUDA and MPS on a machine without them depend on the machine.
def _device_cases():
    import torch

    from dip.devices import _mps_available

    never = ["gpu", "tpu", "nonsense", "cpu:x", "cuda:-1", f"cuda:{torch.cuda.device_count()}"]
    no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="about a machine without CUDA; this one has it")
    no_mps = pytest.mark.skipif(_mps_available(), reason="about a machine without MPS; this one has it")
    return never + [pytest.param("cuda", marks=no_cuda), pytest.param("mps", marks=no_mps)]


@pytest.mark.parametrize("device", _device_cases())
def test_a_device_pytorch_cannot_use_here_is_one_line_listing_the_available_ones(png64, tmp_path, device):
    from dip.devices import available_devices

    out = tmp_path / "out"
    out.mkdir()
    (out / "observed.png").write_bytes(b"a result of another run")
    before = contents(out)
    r = run("fit", "--task", "denoise", "--sigma", 25, "--image", png64, "--iters", 3, "--out", out, "--device", device)
    assert_refused(r, f"--device {device}: ", out, before)
    assert r.stderr.rstrip().endswith(f"available here: {', '.join(available_devices())} (or auto)"), r.stderr


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_cpu_and_auto_devices_fit(png64, tmp_path, device):
    r = run(
        "fit",
        "--task",
        "denoise",
        "--sigma",
        25,
        "--image",
        png64,
        "--iters",
        3,
        "--out",
        tmp_path / "o",
        "--device",
        device,
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["device"].startswith("cpu")


# Super-resolution by any integer factor >= 2.
def test_sr_by_three_runs_end_to_end(tmp_path):
    from conftest import natural_crop

    image = tmp_path / "clean48.png"
    Image.fromarray(np.round(natural_crop(48) * 255).astype(np.uint8)).save(image)
    out = tmp_path / "sr3"
    r = run("fit", "--task", "sr", "--factor", 3, "--image", image, "--iters", 10, "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task_label"] == "sr-x3" and summary["iterations"] == 10
    assert summary["settings"]["reg_noise_std"] == 0.03  # the x4 preset
    assert Image.open(out / "observed.png").size == (16, 16) and Image.open(out / "restored.png").size == (48, 48)
    assert np.isfinite(summary["psnr_restored"])


@pytest.mark.parametrize("factor", [1, 0, -2])
def test_sr_factors_below_two_are_refused(png64, tmp_path, factor):
    out = tmp_path / "out"
    r = run("fit", "--task", "sr", "--factor", factor, "--image", png64, "--iters", 3, "--out", out)
    assert_refused(r, f"factor: SR factor must be an integer >= 2, got {factor}", out, None)


# What a new user tried next (README, "Restore your own image").
def test_a_finished_fit_takes_only_itself_again(png64, tmp_path):
    out = tmp_path / "out"
    base = ["fit", "--task", "denoise", "--sigma", 25, "--image", png64, "--iters", 3, "--no-progress", "--out", out]
    assert run(*base).returncode == 0
    before = contents(out)
    r = run(*base, "--lr", 0.02)
    assert_refused(
        r, f"{out}: holds the results of another fit (lr differs); delete them or choose another --out", out, before
    )
    assert run(*base).returncode == 0  # the same fit again is its own


@pytest.mark.parametrize(
    "option, value",
    [
        ("--window", 0),
        ("--patience", 0),
        ("--threads", -1),
        ("--checkpoint-every", 0),
        ("--reg-noise-std", -1),
        ("--tv-weight", "inf"),
    ],
)
def test_a_number_out_of_its_range_is_one_line(png64, tmp_path, option, value):
    out = tmp_path / "out"
    r = run(
        "fit",
        "--task",
        "denoise",
        "--sigma",
        25,
        "--image",
        png64,
        "--iters",
        3,
        "--stop",
        "es-wmv",
        option,
        value,
        "--out",
        out,
    )
    assert_refused(r, f"argument {option}:", out, None)
    assert not out.exists()


def test_an_out_that_is_a_file_is_one_line(png64, tmp_path):
    r = run("fit", "--task", "denoise", "--sigma", 25, "--image", png64, "--iters", 3, "--out", png64)
    assert_refused(r, f"--out {png64}: is a file")


def test_the_suggested_intensity_range_reads_the_file_and_others_are_refused(tmp_path):
    import tifffile

    values = (np.random.default_rng(0).random((32, 32)) * 900 - 100.123).astype(np.float32)
    tifffile.imwrite(tmp_path / "counts.tif", values)
    tifffile.imwrite(tmp_path / "int32.tif", (values + 200).astype(np.int32))
    base = ["fit", "--task", "denoise", "--sigma", 25, "--iters", 2, "--no-progress"]
    r = run(*base, "--image", tmp_path / "counts.tif", "--out", tmp_path / "a")
    assert_refused(r, "--intensity-range=LO,HI (e.g. --intensity-range=")
    suggested = r.stderr.split("e.g. ")[1].rstrip(")\n")
    assert run(*base, "--image", tmp_path / "counts.tif", suggested, "--out", tmp_path / "b").returncode == 0
    assert_refused(
        run(*base, "--image", tmp_path / "int32.tif", "--out", tmp_path / "c"),
        "32-bit integer samples; give the values that are 0 and 1 with --intensity-range=LO,HI",
    )
    assert (
        run(*base, "--image", tmp_path / "int32.tif", "--intensity-range=0,1000", "--out", tmp_path / "d").returncode
        == 0
    )
    assert_refused(
        run(*base, "--image", tmp_path / "counts.tif", "--intensity-range=0,inf", "--out", tmp_path / "e"),
        "--intensity-range: LO and HI must be finite",
    )


def test_a_batchs_checkpoint_is_not_a_single_fits(png64, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoint-batch.pt").write_bytes(b"a batch's state")
    before = contents(out)
    r = run("fit", "--task", "denoise", "--sigma", 25, "--image", png64, "--iters", 3, "--out", out)
    assert_refused(r, f"{out / 'checkpoint-batch.pt'}: belongs to another fit (a batch of seeds)", out, before)


def test_an_unknown_option_is_named_by_the_subcommand(png64, tmp_path):
    out = tmp_path / "out"
    r = run("fit", "--task", "denoise", "--image", png64, "--observed-x", "a.png", "--out", out)
    assert r.returncode == 2 and r.stderr == "dip fit: error: unrecognized arguments: --observed-x a.png\n"
    assert not out.exists()
    r = run("degrade", "--task", "denoise", "--image", png64, "--sigmaa", 25, "--out", out)
    assert r.returncode == 2 and r.stderr.startswith("dip degrade: error: unrecognized arguments: --sigmaa")


def test_every_option_of_dip_fit_and_degrade_says_what_it_does():
    from dip.cli import parser

    for name, command in parser().commands.items():
        if name == "bench":  # its own parser (dip.bench)
            continue
        bare = [a.option_strings[0] for a in command._actions if a.option_strings and not a.help]
        assert not bare, f"dip {name}: options without help: {bare}"


def test_dip_degrade_help_speaks_of_its_own_options_only():
    from dip.cli import parser

    text = parser().commands["degrade"].format_help()
    # --exact names dip fit --observed, which reads its file back; nothing else of dip fit's modes
    assert "with --observed" not in text and "network seed" not in text and "discrepancy" not in text
    assert "--observed" in parser().commands["fit"].format_help()
