"""The variants of a fit from the command line: --loss sure (SURE/PURE, dip.risk) and --ensemble K."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dip import seeds
from dip.cli import main
from dip.defaults import DEFAULTS
from dip.fit import FitSettings, ensemble, fit_batch
from dip.metrics import psnr
from dip.operators import Denoise

SMALL = {"kind": "skip", "channels_down": [8] * 3, "channels_up": [8] * 3, "channels_skip": [2] * 3}
FAST = ["--arch", "skip-3", "--iters", "4", "--threads", "1", "--no-progress", "--ssim-every", "2"]


@pytest.fixture
def png32(tmp_path, clean64):
    path = tmp_path / "clean32.png"
    Image.fromarray(np.round(clean64[0, :, :32, :32].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)
    return path


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("seed", [0, 7, 123456])
def test_ensemble_seeds_start_at_the_seed_and_are_distinct_streams(seed):
    members = seeds.ensemble_seeds(seed, 4)
    assert members[0] == seed and len(set(members)) == 4 and members == seeds.ensemble_seeds(seed, 4)
    assert seeds.ensemble_seeds(seed, 2) == members[:2] and seeds.ensemble_seeds(seed, 1) == [seed]
    # No two generators with the same number: every (member, purpose) stream seed differs, in 32 bits too.
    drawn = [seeds.stream_seed(m, p) & 0xFFFFFFFF for m in members for p in seeds.PURPOSES]
    assert len(set(drawn)) == len(drawn)
    with pytest.raises(ValueError):
        seeds.ensemble_seeds(seed, 0)


def test_an_ensemble_is_the_mean_of_its_members_images(clean64):
    clean = clean64[..., :32, :32]
    observed = Denoise(25).observe(clean, seeds.generator(0, "observation"))
    members = fit_batch(SMALL, Denoise(25), observed, FitSettings(iterations=4), seeds.ensemble_seeds(0, 2))
    both = ensemble(members)
    assert torch.equal(both.image, (members[0].image + members[1].image) / 2)
    assert torch.equal(both.ema, (members[0].ema + members[1].ema) / 2)
    assert not torch.equal(members[0].image, members[1].image)  # two fits, not one twice
    assert list(both.history["seed"].unique()) == [m.seed for m in members] and len(both.history) == 8
    with pytest.raises(ValueError, match="two or more"):
        ensemble(members[:1])


def test_dip_fit_ensemble_writes_the_mean_and_records_the_members(png32, tmp_path, capsys):
    members = seeds.ensemble_seeds(3, 2)
    common = ["fit", "--task", "denoise", "--sigma", "25", "--image", str(png32), "--observation-seed", "0", *FAST]
    assert main([*common, "--seed", "3", "--ensemble", "2", "--out", str(tmp_path / "ens")]) == 0
    # The same two fits as a batch of seeds, each written on its own.
    seeds_args = ["--seeds", *map(str, members), "--out", str(tmp_path / "s{seed}")]
    assert main([*common, *seeds_args]) == 0
    capsys.readouterr()
    record = _summary(tmp_path / "ens")
    alone = {m: _summary(tmp_path / f"s{m}") for m in members}
    held = "-holdout0.05" if DEFAULTS["denoise"].stop == "holdout" else ""  # the task's default rule holds pixels out
    assert record["ensemble"] == 2 and record["task_label"] == f"denoise-s25{held}-ensemble2"
    assert record["batched_fits"] == 2
    assert list(record["ensemble_members"]) == [str(m) for m in members]
    for m in members:
        assert record["ensemble_members"][str(m)]["psnr_restored"] == pytest.approx(alone[m]["psnr_restored"])
    assert record["psnr_members_mean"] == pytest.approx(np.mean([alone[m]["psnr_restored"] for m in members]))
    # The restored image written is the mean of the members' (8-bit files: within a grey level).
    images = [np.asarray(Image.open(tmp_path / f"s{m}" / "restored.png"), dtype=np.float64) for m in members]
    written = np.asarray(Image.open(tmp_path / "ens" / "restored.png"), dtype=np.float64)
    assert np.abs(written - np.mean(images, axis=0)).max() <= 1.0
    clean = np.asarray(Image.open(png32), dtype=np.float64) / 255
    assert psnr(written / 255, clean) == pytest.approx(record["psnr_restored"], abs=0.1)


def test_dip_fit_loss_sure_records_the_estimate_and_its_noise_level(png32, tmp_path, capsys):
    out = tmp_path / "sure"
    args = ["fit", "--task", "denoise", "--sigma", "25", "--image", str(png32), "--loss", "sure", "--out", str(out)]
    assert main([*args, *FAST, "--record-stops"]) == 0
    capsys.readouterr()
    record = _summary(out)
    assert record["loss"] == "sure" and record["task_label"] == "denoise-s25-sure"
    assert record["settings"]["input"] == "image"  # the network's input is the observation
    assert record["noise_sigma_source"].startswith("estimated") and 10 < record["noise_sigma"] < 40
    assert record["fingerprint"]["sure_sigma"] == pytest.approx(record["noise_sigma"] / 255)
    assert "discrepancy" not in record["stops"]  # that rule reads an MSE data term, which SURE is not
    assert record["stop"] == "risk" and "risk" in record["stops"]  # SURE's default: its estimate reaching 0
    # Given σ with a given observation: that σ, and said so.
    given = tmp_path / "given"
    observed = ["fit", "--task", "denoise", "--sigma", "25", "--observed", str(out / "observed.png"), "--loss", "sure"]
    assert main([*observed, *FAST, "--out", str(given)]) == 0
    record = _summary(given)
    assert record["noise_sigma"] == 25 and record["noise_sigma_source"] == "given (--sigma)"


@pytest.mark.parametrize(
    "task, message",
    [
        (["--task", "sr", "--factor", "4"], "--loss sure: applies to denoising"),
        (["--task", "inpaint", "--drop", "0.5"], "--loss sure: applies to denoising"),
        (["--task", "jpeg", "--quality", "10"], "--loss sure: applies to denoising"),
        (["--task", "deblur", "--blur", "gaussian:1", "--sigma", "2"], "--loss sure: applies to denoising"),
        (["--task", "denoise", "--sigma", "25", "--stop", "discrepancy"], "--stop discrepancy"),
        (["--task", "denoise", "--sigma", "25", "--arch", "deep_decoder"], "--arch deep_decoder"),
        # The risk rule without a risk estimate to watch (the only case without --loss sure).
        (["--task", "denoise", "--sigma", "25", "--stop", "risk", "--loss", "default"], "--stop risk"),
    ],
)
def test_loss_sure_where_no_risk_estimate_applies_is_one_line(png32, tmp_path, capsys, task, message):
    out = tmp_path / "refused"
    loss = [] if "--loss" in task else ["--loss", "sure"]
    assert main(["fit", *task, "--image", str(png32), *loss, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # refused before anything is written


def test_dip_fit_input_image_feeds_the_observation_or_says_in_one_line_why_not(png32, tmp_path, capsys):
    # The plain data term with the network's input the observation (as --loss sure has it).
    out = tmp_path / "image"
    args = ["fit", "--task", "denoise", "--sigma", "25", "--image", str(png32), "--input", "image", "--out", str(out)]
    assert main([*args, *FAST]) == 0
    capsys.readouterr()
    record = _summary(out)
    assert record["settings"]["input"] == "image" and record["loss"] == "default"
    for task, message in [
        (["--task", "sr", "--factor", "4"], "--input image: the network's input would be the observation"),
        (["--task", "denoise", "--sigma", "25", "--arch", "deep_decoder"], "--input image: the deep_decoder"),
    ]:
        refused = tmp_path / "refused"
        assert main(["fit", *task, "--image", str(png32), "--input", "image", "--out", str(refused)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and not refused.exists()
