"""Memory-saving mode: activations recomputed in the backward pass (dip.networks.checkpointed), the same
fit as the plain one, chosen when only it fits (dip.request's memory plan) or asked for (--memory-saving)."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from dip import memory, networks
from dip.cli import main
from dip.fit import FitSettings, fit, fit_batch
from dip.operators import Denoise
from dip.presets import architecture

ARCHS = ["skip", "hourglass-library", "unet", "resnet", "deep_decoder"]


def _zin(name):
    settings = architecture(name).get("settings", {})
    return 2 if settings.get("input") == "meshgrid" else settings.get("input_depth", 32)


@pytest.mark.parametrize("name", ARCHS)
def test_a_checkpointed_network_has_the_plain_ones_parameters_outputs_and_gradients(name):
    spec = architecture(name)["net"]
    plain, saving = (networks.make_network(spec, _zin(name), 3, 0) for _ in range(2))
    saving = networks.checkpointed(saving)
    assert any(isinstance(m, networks.Checkpointed) for m in saving.modules())
    # the same parameters in the same order: optimiser state and checkpoints are lists in this order
    assert [p.shape for p in plain.parameters()] == [p.shape for p in saving.parameters()]
    z = torch.rand(1, _zin(name), 32, 32, generator=torch.Generator().manual_seed(1))
    if name == "deep_decoder":
        z = z[..., :1, :1]
    outs = []
    for net in (plain, saving):
        out = net(z)
        out.square().mean().backward()
        outs.append(out.detach())
    assert torch.equal(outs[0], outs[1])
    for a, b in zip(plain.parameters(), saving.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_recomputation_updates_the_batchnorm_running_statistics_once():
    spec = architecture("skip")["net"]
    plain, saving = (networks.make_network(spec, 32, 3, 0) for _ in range(2))
    saving = networks.checkpointed(saving)
    z = torch.rand(1, 32, 32, 32, generator=torch.Generator().manual_seed(2))
    for _ in range(3):
        for net in (plain, saving):
            net(z).mean().backward()
    norms = [[m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)] for net in (plain, saving)]
    assert len(norms[0]) == len(norms[1]) > 0
    for a, b in zip(*norms):
        assert int(b.num_batches_tracked) == int(a.num_batches_tracked) == 3
        torch.testing.assert_close(a.running_mean, b.running_mean)
        torch.testing.assert_close(a.running_var, b.running_var)


@pytest.mark.parametrize("name", ["skip", "resnet"])
def test_a_checkpointed_fit_has_the_plain_fits_loss_history(name, clean64):
    # same seed: the same weights, z and per-iteration perturbation of z (drawn before the network runs;
    # preserve_rng_state restores torch's random state for the recomputation)
    spec = architecture(name)
    clean = clean64[..., :32, :32]
    settings = FitSettings(iterations=12, check_every=4, ssim_every=10**6, seed=3, **spec.get("settings", {}))
    quiet = dict(checkpoint=None, log=lambda *a: None)
    plain = fit(spec["net"], Denoise(25), clean, settings, **quiet)
    saving = fit(spec["net"], Denoise(25), clean, settings, memory_saving=True, **quiet)
    assert len(plain.history) == 12
    torch.testing.assert_close(
        torch.tensor(plain.history["loss"].to_numpy()), torch.tensor(saving.history["loss"].to_numpy())
    )
    torch.testing.assert_close(plain.image, saving.image)


def test_batched_checkpointed_fits_match_the_plain_batch(clean64):
    clean = clean64[..., :32, :32]
    settings = FitSettings(iterations=8, check_every=4, ssim_every=10**6)
    quiet = dict(checkpoint=None, log=lambda *a: None)
    net = architecture("skip")["net"]
    plain = fit_batch(net, Denoise(25), clean, settings, [0, 1], **quiet)
    saving = fit_batch(net, Denoise(25), clean, settings, [0, 1], memory_saving=True, **quiet)
    for a, b in zip(plain, saving):
        torch.testing.assert_close(
            torch.tensor(a.history["loss"].to_numpy()), torch.tensor(b.history["loss"].to_numpy())
        )


def test_the_estimate_knows_both_modes():
    plain, saving = (memory.estimate("skip", 512, 512, checkpointed=c) for c in (False, True))
    per_pixel = architecture("skip")["activation_bytes_per_pixel"]
    assert saving.activation_bytes == int(512 * 512 * per_pixel * memory.CHECKPOINTED_FACTOR)
    assert saving.bytes < plain.bytes and saving.parameters == plain.parameters


def _dry_run(png, tmp_path, capsys, *extra):
    code = main(
        ["fit", "--task", "denoise", "--sigma", "25", "--image", str(png), "--iters", "100"]
        + ["--dry-run", "--out", str(tmp_path / "out"), *extra]
    )
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _between(fraction, tmp_path, png, monkeypatch):
    """An available memory `fraction` of the way from this fit's memory-saving estimate to its plain one."""
    from dip.request import FitRequest, _resolve

    monkeypatch.setattr(memory, "available_bytes", lambda device: None)
    request = FitRequest(task="denoise", sigma=25, image=str(png), iters=100, out=str(tmp_path / "out"))
    plan = _resolve(request, lambda *a: None).plan
    plain, saving = plan["plain_estimated_mb"] * 2**20, plan["memory_saving_estimated_mb"] * 2**20
    return int(saving + fraction * (plain - saving))


def test_dry_run_says_plain_when_the_plain_fit_fits(tmp_path, png64, capsys, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 64 * 2**30)
    code, out, _ = _dry_run(png64, tmp_path, capsys)
    plan = json.loads(out)
    assert code == 0 and plan["memory_mode"] == "plain"
    assert plan["estimated_peak_mb"] == plan["plain_estimated_mb"] > plan["memory_saving_estimated_mb"] > 0


def test_dry_run_chooses_memory_saving_when_only_it_fits(tmp_path, png64, capsys, monkeypatch):
    have = _between(0.5, tmp_path, png64, monkeypatch)
    monkeypatch.setattr(memory, "available_bytes", lambda device: have)
    code, out, _ = _dry_run(png64, tmp_path, capsys)
    plan = json.loads(out)
    assert code == 0 and plan["memory_mode"] == "checkpointed" and "would not fit" in plan["memory_mode_why"]
    assert plan["estimated_peak_mb"] == plan["memory_saving_estimated_mb"] < plan["available_mb"]
    assert not (tmp_path / "out").exists()


def test_memory_saving_is_forced_by_its_flag(tmp_path, png64, capsys, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 64 * 2**30)
    code, out, _ = _dry_run(png64, tmp_path, capsys, "--memory-saving")
    plan = json.loads(out)
    assert code == 0 and plan["memory_mode"] == "checkpointed" and "--memory-saving" in plan["memory_mode_why"]


def test_a_fit_that_fits_in_neither_mode_is_refused_naming_both(tmp_path, png64, capsys, monkeypatch):
    have = _between(-0.5, tmp_path, png64, monkeypatch)
    monkeypatch.setattr(memory, "available_bytes", lambda device: have)
    code, out, err = _dry_run(png64, tmp_path, capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert str(png64) in err and "memory-saving mode" in err and "available" in err


def test_the_checkpointed_estimate_is_within_a_quarter_of_the_measured_peak():
    measured = memory.measure_peak("skip", 256, checkpointed=True)
    estimated = memory.estimate("skip", 256, 256, checkpointed=True).bytes
    assert abs(estimated - measured) <= 0.25 * measured, (estimated / 2**20, measured / 2**20)


def test_a_photo_too_large_for_either_mode_is_restored_in_as_few_tiles_as_fit(tmp_path, monkeypatch):
    # A 4096x4096 photo to denoise on a machine with 24 GiB: planned (from the file's header alone) as the
    # fewest tiles whose fit the estimate puts within what is available (those of the largest side that
    # fits, a multiple of 32), each as small as that many tiles allow.
    from dip.request import FitRequest, _resolve
    from dip.tiles import tile_starts

    big = tmp_path / "big.png"
    Image.fromarray(np.full((4096, 4096, 3), 128, np.uint8)).save(big)
    have = 24 * 2**30
    monkeypatch.setattr(memory, "available_bytes", lambda device: have)
    request = FitRequest(task="denoise", sigma=25, image=str(big), iters=100, out=str(tmp_path / "out"))
    plan = _resolve(request, lambda *a: None).plan
    side, count = plan["tile"], plan["tiles"]
    assert plan["memory_mode"] == "tiled" and side % 32 == 0 and 1024 <= side < 4096
    largest = max(s for s in range(32, 4096, 32) if memory.estimate("skip", s, s, checkpointed=True).bytes <= have)
    assert count == len(tile_starts(4096, side, 64)) ** 2 == len(tile_starts(4096, largest, 64)) ** 2 > 1
    assert len(tile_starts(4096, side - 32, 64)) ** 2 > count and plan["tile_overlap"] == 64
    assert memory.estimate("skip", side, side, checkpointed=plan["tile_memory_mode"] == "checkpointed").bytes <= have
    assert plan["memory_mode_why"].startswith(f"{plan['tiles']} tiles of {side}x{side}, overlap 64, each fitted")
    assert "24.0 GiB available" in plan["memory_mode_why"] and plan["memory_saving_estimated_mb"] > have / 2**20


def test_a_photo_too_large_for_either_mode_whose_task_cannot_be_tiled_is_refused(tmp_path, capsys, monkeypatch):
    # The same photo for super-resolution (an operator with spatial support): refused before any pixel is
    # fitted, in one line naming the largest image of its aspect whose memory-saving fit would fit, and why
    # tiles do not apply.
    big = tmp_path / "big.png"
    Image.fromarray(np.full((4096, 4096, 3), 128, np.uint8)).save(big)
    have = 24 * 2**30
    monkeypatch.setattr(memory, "available_bytes", lambda device: have)
    code = main(
        ["fit", "--task", "sr", "--factor", "4", "--image", str(big), "--dry-run", "--out", str(tmp_path / "o")]
    )
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and str(big) in err
    assert "the sr task cannot be restored in tiles" in err and "restore_tiled" not in err
    arch = re.search(r"fit of (\S+) needs", err).group(1)
    side, other = map(int, re.search(r"about (\d+)x(\d+) would fit", err).groups())
    assert side == other and side % 32 == 0 and 1024 <= side < 4096
    assert memory.estimate(arch, side, side, checkpointed=True).bytes <= have
    assert memory.estimate(arch, side + 64, side + 64, checkpointed=True).bytes > have


def test_a_memory_saving_fit_says_so_in_its_record_and_a_plain_one_does_not(tmp_path, png64):
    from dip.record import read

    from conftest import run_dip

    common = ["fit", "--task", "denoise", "--sigma", 25, "--arch", "skip-3", "--iters", 2, "--threads", 1,
              "--image", png64]  # fmt: skip
    assert run_dip(*common, "--memory-saving", "--out", tmp_path / "saving").returncode == 0
    assert run_dip(*common, "--out", tmp_path / "plain").returncode == 0
    assert read(tmp_path / "saving" / "summary.json").memory_mode == "checkpointed"
    assert "memory_mode" not in (tmp_path / "plain" / "summary.json").read_text()
