"""Deblurring with a known blur and Poisson noise: the operators, PSF files, the Poisson data term and its
discrepancy target, and the command line's refusals."""

import json
import math

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from dip import operators as ops
from dip.image_io import InputError, Reading, load_image, load_psf, save_image
from dip.seeds import generator
from dip.tasks import Task

from conftest import run_dip

run = run_dip  # in this process: most checks here take milliseconds, a fresh interpreter seconds


def assert_one_line(r, message, out):
    assert r.returncode == 2, r.stderr
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


# --- operators -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "psf",
    [
        ops.gaussian_psf(1.6),
        ops.gaussian_psf(0.5),
        ops.motion_psf(9, 30),
        ops.motion_psf(4.5, 90),
        ops.motion_psf(1, 0),
    ],
)
def test_psfs_are_odd_non_negative_and_sum_to_one(psf):
    assert psf.dim() == 2 and psf.shape[0] % 2 == 1 and psf.shape[1] % 2 == 1
    assert (psf >= 0).all() and torch.isclose(psf.sum(), torch.tensor(1.0, dtype=torch.float64))
    # centred: the kernel's centre of mass is its middle tap
    ys, xs = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in psf.shape), indexing="ij")
    assert abs(float((psf * ys).sum()) - psf.shape[0] // 2) < 1e-9
    assert abs(float((psf * xs).sum()) - psf.shape[1] // 2) < 1e-9


def test_a_motion_kernel_lies_along_its_angle():
    horizontal, vertical = ops.motion_psf(7, 0), ops.motion_psf(7, 90)
    assert torch.allclose(horizontal, vertical.T, atol=1e-12)
    middle = horizontal.shape[0] // 2
    assert torch.isclose(horizontal[middle].sum(), torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize("psf", [ops.gaussian_psf(1.6), ops.motion_psf(9, 30)])
def test_blur_keeps_the_size_and_a_constant_image_constant(psf):
    blur = ops.Blur(psf, sigma=2)
    x = torch.full((2, 3, 40, 33), 0.37)
    assert torch.allclose(blur(x), x, atol=1e-6)
    y = blur.observe(torch.rand(1, 3, 40, 33), generator(0, "observation"))
    assert y.shape == (1, 3, 40, 33) and 0 <= y.min() and y.max() <= 1


def test_blur_is_a_convolution_and_matches_scipy_inside_the_borders():
    from scipy.signal import convolve2d

    psf = ops.motion_psf(5, 30)
    x = torch.rand(1, 1, 24, 24, dtype=torch.float64)
    r = psf.shape[0] // 2
    ours = ops.Blur(psf).forward(x.float())[0, 0].double().numpy()
    theirs = convolve2d(x[0, 0].numpy(), psf.numpy(), mode="same")
    assert np.allclose(ours[r:-r, r:-r], theirs[r:-r, r:-r], atol=1e-5)


def test_blur_loss_is_per_fit():
    blur = ops.Blur(ops.gaussian_psf(1.0))
    x = torch.rand(3, 1, 16, 16)
    loss = blur.loss(x, blur(x[:1]).expand(3, -1, -1, -1))
    assert loss.shape == (3,) and loss[0] == 0 and (loss[1:] > 0).all()


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.ones(4, 5), "odd sides"),
        (torch.ones(3, 3, 3), "one 2-D kernel"),
        (-torch.ones(3, 3), "non-negative"),
        (torch.zeros(3, 3), "all zero"),
        (torch.full((3, 3), float("nan")), "finite"),
    ],
)
def test_a_psf_that_is_not_a_kernel_is_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        ops.normalise_psf(bad)


# --- Poisson ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("peak", [3, 10, 30])
def test_a_poisson_observation_has_the_mean_and_variance_of_its_rate(peak):
    level = 0.4
    y = ops.Poisson(peak).observe(torch.full((1, 1, 200, 200), level), generator(0, "observation"))
    counts = y * peak
    assert torch.equal(counts, counts.round())  # whole photon counts
    n = counts.numel()
    rate = peak * level
    # mean and variance of the counts within 5 standard errors of the rate
    assert abs(counts.mean().item() - rate) < 5 * math.sqrt(rate / n)
    assert abs(counts.var().item() - rate) < 5 * rate * math.sqrt(2 / n) + 5 * math.sqrt(rate / n)
    assert y.max() > level  # not clipped to the clean range


def test_a_poisson_observation_depends_only_on_its_seed():
    x = torch.rand(1, 3, 16, 16)
    a, b, c = (ops.Poisson(10).observe(x, generator(s, "observation")) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_the_deviance_is_zero_at_the_observation_and_pulls_the_rate_towards_it():
    counts = torch.tensor([0.0, 1.0, 5.0, 12.0])
    assert torch.allclose(ops.poisson_deviance(counts.clamp_min(ops.POISSON_EPS), counts), torch.zeros(4), atol=1e-5)
    rate = torch.tensor([0.5, 3.0, 4.0, 15.0], requires_grad=True)
    deviance = ops.poisson_deviance(rate, counts)
    assert (deviance > 0).all()
    deviance.sum().backward()
    # the gradient's sign sends every rate towards its count
    assert torch.equal(torch.sign(rate.grad), torch.sign(rate.detach() - counts))


def test_the_poisson_loss_is_per_fit_and_least_at_the_truth():
    poisson = ops.Poisson(10, ops.Blur(ops.gaussian_psf(1.0)))
    clean = torch.rand(1, 1, 32, 32) * 0.8 + 0.1
    y = poisson.observe(clean, generator(0, "observation"))
    outputs = torch.cat([clean, (clean + 0.1).clamp(0, 1), torch.full_like(clean, 0.5)])
    loss = poisson.loss(outputs, y.expand(3, -1, -1, -1))
    assert loss.shape == (3,) and loss[0] < loss[1] and loss[0] < loss[2]


@pytest.mark.parametrize("peak", [2, 10, 30, 300])
def test_the_discrepancy_target_is_the_deviance_expected_at_the_truth(peak):
    """On a smooth image (where smoothing the observation barely biases the rate) the target matches the
    mean deviance of the truth against many observations."""
    h = torch.linspace(0.1, 0.9, 64)
    clean = (h[None, :] * torch.ones(64, 1))[None, None]
    poisson = ops.Poisson(peak)
    y = poisson.observe(clean, generator(0, "observation"))
    target = ops.poisson_discrepancy_target(y, peak)
    draws = torch.stack(
        [poisson.loss(clean, poisson.observe(clean, generator(s, "observation")))[0] for s in range(1, 21)]
    )
    assert abs(target - draws.mean().item()) < 0.03 * draws.mean().item() + 0.01
    assert 0.8 < target < 1.2 or peak == 2  # about 1 wherever the rate is large


def test_peak_must_be_positive():
    for peak in (0, -1, float("inf")):
        with pytest.raises(ValueError, match="peak"):
            ops.Poisson(peak)
    with pytest.raises(InputError, match="peak"):
        Task("denoise", noise="poisson", peak=0)


def test_task_labels_and_operators():
    assert Task("deblur", blur="gaussian:1.6", sigma=2).label() == "deblur-gaussian1.6-s2"
    assert Task("deblur", blur="motion:9,30", noise="poisson", peak=30).label() == "deblur-motion9,30-poisson-p30"
    assert Task("denoise", noise="poisson", peak=10).label() == "denoise-poisson-p10"
    assert isinstance(Task("denoise", noise="poisson", peak=10).operator(), ops.Poisson)
    assert isinstance(Task("deblur", blur="motion:9,30", noise="poisson", peak=10).operator().operator, ops.Blur)
    for spec in ("gaussian", "gaussian:0", "gaussian:1,2", "motion:9", "motion:0.5,30", "box:3", "motion:a,b"):
        with pytest.raises(InputError, match="--blur: expected"):
            Task("deblur", blur=spec, sigma=2)


# --- files -----------------------------------------------------------------------------------------------


def test_a_poisson_observation_round_trips_exactly_through_its_float_tiff(tmp_path):
    y = ops.Poisson(5).observe(torch.rand(1, 3, 20, 20) * 0.5 + 0.5, generator(0, "observation"))
    assert y.max() > 1
    written = save_image(y, tmp_path / "observed", exact=True)
    assert written == ["observed.png", "observed.tif"]
    assert torch.equal(load_image(tmp_path / "observed.tif", Reading(above_one=True)), y)
    with pytest.raises(InputError, match="outside \\[0, 1\\]"):  # without the Poisson reading: refused, not clipped
        load_image(tmp_path / "observed.tif")


def test_psf_files_are_read_in_any_scale(tmp_path):
    psf = ops.motion_psf(7, 45)
    np.save(tmp_path / "k.npy", psf.numpy() * 3)
    tifffile.imwrite(tmp_path / "k.tif", (psf.numpy() * 40).astype(np.float32))
    Image.fromarray(np.round(psf.numpy() / psf.max().item() * 255).astype(np.uint8)).save(tmp_path / "k.png")
    for name, atol in (("k.npy", 1e-12), ("k.tif", 1e-7), ("k.png", 2e-3)):
        assert torch.allclose(ops.normalise_psf(torch.from_numpy(load_psf(tmp_path / name))), psf, atol=atol), name


def test_deblur_and_poisson_fit_end_to_end_and_beat_the_observation(png64, tmp_path):
    # A 9-pixel motion blur: the deblurred image needs a few hundred iterations to pass the observation
    # (a one-pixel Gaussian's observation, 26.8 dB, is still ahead of the fit after 60).
    r = run(
        "fit",
        "--task",
        "deblur",
        "--blur",
        "motion:9,30",
        "--sigma",
        2,
        "--image",
        png64,
        "--iters",
        300,
        "--out",
        tmp_path / "b",
        "--no-progress",
        "--record-stops",
        "--stop",
        "fixed",  # the budget's last EMA image, whatever the task's default rule
        "--threads",
        1,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["task_label"] == "deblur-motion9,30-s2" and "discrepancy" in summary["stops"]
    # Measured (2-core AMD EPYC, torch 2.13 CPU, 2026-12-02): observed 22.45 dB, restored (the final EMA)
    # 23.44 dB, best raw output 24.24 dB.
    assert summary["psnr_restored"] > summary["psnr_observed"] + 0.5
    assert summary["psnr_best"] > summary["psnr_observed"] + 1
    r = run(
        "fit",
        "--task",
        "denoise",
        "--noise",
        "poisson",
        "--peak",
        10,
        "--image",
        png64,
        "--iters",
        60,
        "--out",
        tmp_path / "p",
        "--no-progress",
        "--record-stops",
        "--threads",
        1,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert summary["psnr_best"] > summary["psnr_observed"] + 2
    assert summary["stops"]["discrepancy"]["target"] == pytest.approx(summary["discrepancy_target"])
    assert 0.5 < summary["discrepancy_target"] < 1.2
    # The written observation is the one fitted, above 1 included, and --observed reads it back as such.
    observed = tmp_path / "p" / "observed.tif"
    assert tifffile.imread(observed).max() > 1
    r = run(
        "fit",
        "--task",
        "denoise",
        "--noise",
        "poisson",
        "--peak",
        10,
        "--observed",
        observed,
        "--iters",
        3,
        "--out",
        tmp_path / "o",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr


def test_a_psf_file_deblurs_as_the_same_blur_given_by_name(png64, tmp_path):
    np.save(tmp_path / "k.npy", ops.motion_psf(5, 30).numpy())
    for name, blur in (("file", ["--psf", tmp_path / "k.npy"]), ("named", ["--blur", "motion:5,30"])):
        r = run("degrade", "--task", "deblur", *blur, "--sigma", 2, "--image", png64, "--out", tmp_path / name)
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "file" / "observed.png").read_bytes() == (tmp_path / "named" / "observed.png").read_bytes()


@pytest.mark.parametrize(
    "case, message",
    [
        (["--task", "deblur", "--blur", "box:3", "--sigma", 2], "--blur: expected gaussian:SIGMA"),
        (["--task", "deblur", "--blur", "motion:9", "--sigma", 2], "--blur: expected"),
        (["--task", "deblur", "--sigma", 2], "--blur: required by the deblur task with --image"),
        (["--task", "deblur", "--blur", "gaussian:1"], "--sigma: required by the deblur task with --image"),
        (["--task", "deblur", "--blur", "gaussian:1", "--psf", "K", "--sigma", 2], "--psf: a PSF file and --blur"),
        (["--task", "deblur", "--blur", "gaussian:30", "--sigma", 2], "larger than the 64x64 image"),
        (["--task", "deblur", "--blur", "motion:1e6,0", "--sigma", 2], "the PSF would be wider than 8191 pixels"),
        (["--task", "deblur", "--blur", "gaussian:1e300", "--sigma", 2], "the PSF would be wider than 8191 pixels"),
        (["--task", "deblur", "--blur", "motion:100,0", "--sigma", 2], "the PSF is 101x101, larger than the 64x64"),
        (["--task", "denoise", "--noise", "poisson", "--peak", 0], "peak: the Poisson peak"),
        (["--task", "denoise", "--noise", "poisson", "--peak", -5], "must be a finite number > 0, got -5"),
        (["--task", "denoise", "--noise", "poisson"], "--peak: required with --noise poisson"),
        (["--task", "denoise", "--peak", 10, "--sigma", 25], "peak: the Poisson peak needs --noise poisson"),
        (["--task", "denoise", "--noise", "poisson", "--peak", 10, "--sigma", 25], "sigma: Poisson noise has no sigma"),
        (["--task", "sr", "--factor", 2, "--noise", "poisson", "--peak", 10], "--noise: the sr task takes no --noise"),
        (["--task", "denoise", "--sigma", 25, "--blur", "gaussian:1"], "--blur: the denoise task takes no --blur"),
    ],
)
def test_bad_deblur_and_poisson_options_are_one_line(png64, tmp_path, case, message):
    out = tmp_path / "out"
    args = [tmp_path / "k.npy" if c == "K" else c for c in case]
    np.save(tmp_path / "k.npy", np.ones((3, 3)))
    assert_one_line(run("fit", *args, "--image", png64, "--iters", 3, "--out", out), message, out)


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda p: np.save(p.with_suffix(".npy"), np.ones((4, 5))), "odd sides"),
        (lambda p: np.save(p.with_suffix(".npy"), -np.ones((3, 3))), "non-negative"),
        (lambda p: np.save(p.with_suffix(".npy"), np.zeros((3, 3))), "all zero"),
        (lambda p: np.save(p.with_suffix(".npy"), np.ones((3, 3, 3))), "one 2-D kernel"),
        (lambda p: np.save(p.with_suffix(".npy"), np.array(["a", "b", "c"])), "a PSF holds numbers"),
        (lambda p: p.with_suffix(".npy").write_bytes(b"not numpy"), "not a readable NPY file"),
        (
            lambda p: Image.fromarray(np.dstack([np.eye(5, dtype=np.uint8) * 255, np.zeros((5, 5, 2), np.uint8)])).save(
                p.with_suffix(".png")
            ),
            "differing channels",
        ),
        (lambda p: p.with_suffix(".png").write_bytes(b"\x89PNG\r\n\x1a\n broken"), "not a readable image"),
    ],
)
def test_a_psf_file_that_is_not_a_kernel_is_one_line_naming_it(png64, tmp_path, write, message):
    write(tmp_path / "psf")
    path = next(tmp_path.glob("psf.*"))
    out = tmp_path / "out"
    r = run("fit", "--task", "deblur", "--psf", path, "--sigma", 2, "--image", png64, "--iters", 3, "--out", out)
    assert_one_line(r, f"{path}: ", out)
    assert message in r.stderr


def test_an_8_bit_images_poisson_observation_is_written_on_the_0_1_scale(png64, tmp_path):
    r = run("degrade", "--task", "denoise", "--noise", "poisson", "--peak", 30, "--image", png64, "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    observed = load_image(tmp_path / "observed.tif", Reading(above_one=True))
    clean = load_image(png64)
    counts = observed * 30
    assert torch.allclose(counts, counts.round(), atol=1e-4) and abs(observed.mean() - clean.mean()) < 0.02


def test_deblur_seeds_fit_as_one_batch(png64, tmp_path):
    r = run(
        "fit",
        "--task",
        "deblur",
        "--blur",
        "motion:5,30",
        "--noise",
        "poisson",
        "--peak",
        30,
        "--image",
        png64,
        "--iters",
        4,
        "--seeds",
        0,
        1,
        "--out",
        tmp_path / "s{seed}",
        "--no-progress",
        "--stop",
        "fixed",  # no pixels held out: the task label is the task's alone
        "--threads",
        1,
    )
    assert r.returncode == 0, r.stderr
    a, b = (json.loads((tmp_path / f"s{seed}" / "summary.json").read_text()) for seed in (0, 1))
    assert a["task_label"] == b["task_label"] == "deblur-motion5,30-poisson-p30" and a["psnr_final"] != b["psnr_final"]


def test_a_poisson_observation_of_counts_read_in_their_units_is_written_and_read_back_in_them(tmp_path):
    """A 16-bit image read with --intensity-range: its exact observation is in the same units, so that the
    same option reads it back (found by a new-user trial: it was on the [0, 1] scale and read back black)."""
    counts = (np.arange(64 * 64).reshape(64, 64) % 4000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cam12.tif", counts)
    out, fitted = tmp_path / "deg", tmp_path / "fit"
    r = run(
        "degrade",
        "--task",
        "denoise",
        "--noise",
        "poisson",
        "--peak",
        10,
        "--image",
        tmp_path / "cam12.tif",
        "--intensity-range=0,4095",
        "--out",
        out,
    )
    assert r.returncode == 0, r.stderr
    written = tifffile.imread(out / "observed.tif")
    assert written.dtype == np.float32 and abs(written.mean() / counts.mean() - 1) < 0.05  # the counts' units
    r = run(
        "fit",
        "--task",
        "denoise",
        "--noise",
        "poisson",
        "--peak",
        10,
        "--observed",
        out / "observed.tif",
        "--intensity-range=0,4095",
        "--iters",
        2,
        "--threads",
        1,
        "--out",
        fitted,
    )
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(tifffile.imread(fitted / "observed.tif"), written, rtol=1e-6)
