"""DeepRED (dip.red): the denoiser, the ADMM steps of x and u, a fit's RED state through a checkpoint and a
kept network, and the option in `dip fit`, `dip.restore` and the record."""

import json
import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import dip
from dip.checkpoint import CheckpointMismatch
from dip.fit import FitInterrupted, FitSettings, Step, fit, fit_batch
from dip.image_io import read_array
from dip.metrics import psnr
from dip.operators import Denoise
from dip.red import RED

from conftest import run_dip

SPEC = {"kind": "skip", "channels_down": [16] * 3, "channels_up": [16] * 3, "channels_skip": [4] * 3}
FAST = dict(iterations=40, check_every=10, ssim_every=1000, input_depth=8, bf16=False, channels_last=False)


@pytest.fixture(scope="module")
def observed32(clean64):
    clean = clean64[..., :32, :32]
    return clean, Denoise(25).observe(clean, dip.seeds.generator(0, "observation"))


@pytest.mark.parametrize("channels", [1, 3])
def test_the_denoiser_removes_noise_and_keeps_the_shape(clean64, channels):
    clean = clean64[0, :channels]
    noisy = (clean + 25 / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    denoised = RED(sigma=25 / 255).denoise(noisy)
    assert denoised.shape == clean.shape and denoised.dtype == torch.float32
    gain = psnr(denoised.numpy(), clean.numpy()) - psnr(noisy.numpy(), clean.numpy())
    assert gain > 3


@pytest.mark.parametrize("name, value", [("weight", 0.0), ("mu", -1.0), ("sigma", float("nan")), ("weight", True)])
def test_a_term_out_of_range_is_refused_in_one_line(name, value):
    with pytest.raises(ValueError, match=f"red {name} must be a finite number > 0"):
        RED(**{name: value})


def test_x_and_u_take_deepreds_steps_and_a_frozen_fit_keeps_them():
    term = RED(weight=0.5, mu=0.25)
    state = SimpleNamespace(red=term, red_x=torch.zeros(2, 1, 2, 2), red_u=torch.zeros(2, 1, 2, 2))
    state.red_dx = torch.zeros(2, 1, 2, 2)
    live = torch.tensor([True, False])
    first = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    Step._red_step(state, first, torch.tensor([1, 1]), live)
    # First iteration: x and D(x) start as the output, u at 0; the frozen fit's stay as they were.
    assert torch.equal(state.red_x[0], first[0]) and torch.equal(state.red_dx[0], first[0])
    assert torch.equal(state.red_u, torch.zeros(2, 1, 2, 2)) and torch.equal(state.red_x[1], torch.zeros(1, 2, 2))
    state.red_dx[0] = 0.1  # D(x) as a host check left it
    out = first + 0.3
    Step._red_step(state, out, torch.tensor([2, 2]), live)
    x = ((0.5 * 0.1 + 0.25 * (out[0] + 0)) / 0.75).clamp(0, 1)
    assert torch.allclose(state.red_x[0], x) and torch.allclose(state.red_u[0], out[0] - x)
    assert torch.equal(state.red_x[1], torch.zeros(1, 2, 2)) and torch.equal(state.red_u[1], torch.zeros(1, 2, 2))


def test_the_term_changes_the_fit_and_its_fingerprint(observed32):
    clean, observed = observed32
    plain = fit(SPEC, Denoise(25), observed, FitSettings(**FAST), clean=clean)
    red = fit(SPEC, Denoise(25), observed, FitSettings(**FAST), clean=clean, red=RED())
    again = fit(SPEC, Denoise(25), observed, FitSettings(**FAST), clean=clean, red=RED())
    assert torch.equal(red.image, again.image)
    # The first iteration has no x yet: the same loss; from the second on the tie to x − u adds to it.
    assert red.history["loss"].iloc[0] == plain.history["loss"].iloc[0]
    assert (red.history["loss"].iloc[1:] != plain.history["loss"].iloc[1:]).all()
    assert not torch.allclose(red.image, plain.image)


def send_sigterm(loss):
    os.kill(os.getpid(), signal.SIGTERM)
    return loss


class InterruptAt(Denoise):
    def __init__(self, sigma, at):
        super().__init__(sigma)
        self.at, self.calls = at, 0

    def loss(self, output, observed):
        self.calls += 1
        loss = super().loss(output, observed)
        return send_sigterm(loss) if self.calls == self.at else loss


def test_a_red_fit_resumes_from_its_checkpoint_as_if_never_stopped(observed32, tmp_path):
    # x, u and D(x) are part of a fit's saved state: a resumed fit continues from the same ones.
    clean, observed = observed32
    settings, ckpt = FitSettings(**FAST), tmp_path / "red.pt"
    options = dict(clean=clean, red=RED(), log=lambda m: None)
    with pytest.raises(FitInterrupted):
        fit_batch(SPEC, InterruptAt(25, at=25), observed, settings, [0, 1], checkpoint=ckpt, **options)
    resumed = fit_batch(SPEC, Denoise(25), observed, settings, [0, 1], checkpoint=ckpt, **options)
    straight = fit_batch(SPEC, Denoise(25), observed, settings, [0, 1], **options)
    for a, b in zip(resumed, straight):
        assert a.resumed_from == 20
        assert a.history.drop(columns="seconds").equals(b.history.drop(columns="seconds"))
        assert torch.equal(a.image, b.image)
    other = tmp_path / "other.pt"
    with pytest.raises(FitInterrupted):
        fit_batch(SPEC, InterruptAt(25, at=25), observed, settings, [0, 1], checkpoint=other, **options)
    with pytest.raises(CheckpointMismatch, match="red weight differs"):
        fit_batch(SPEC, Denoise(25), observed, settings, [0, 1], checkpoint=other, **{**options, "red": RED(0.25)})


def test_a_kept_network_holds_the_weights_alone(observed32):
    _, observed = observed32
    result = fit(SPEC, Denoise(25), observed, FitSettings(**FAST), red=RED(), keep_network=True)
    rebuilt = result.network.network()
    assert len(list(rebuilt.parameters())) == len(list(dip.networks.make_network(SPEC, 8, 3, 0).parameters()))


def test_dip_fit_and_restore_take_a_red_weight_and_record_it(png64, tmp_path, observed32):
    common = ["--task", "denoise", "--sigma", "25", "--image", png64, "--iters", "12", "--no-progress"]
    done = run_dip("fit", *common, "--red-weight", "0.5", "--out", tmp_path / "red")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "red" / "summary.json").read_text())
    assert summary["red_weight"] == 0.5 and summary["task_label"].endswith("-red0.5")
    assert summary["fingerprint"]["red weight"] == 0.5
    plain = run_dip("fit", *common, "--out", tmp_path / "plain")
    assert plain.returncode == 0, plain.stderr
    assert json.loads((tmp_path / "plain" / "summary.json").read_text())["red_weight"] == 0.0
    assert not np.array_equal(
        read_array(tmp_path / "red" / "restored.png"), read_array(tmp_path / "plain" / "restored.png")
    )
    refused = run_dip("fit", *common, "--red-weight", "-1", "--out", tmp_path / "bad")
    assert refused.returncode == 2 and "--red-weight" in refused.stderr and not (tmp_path / "bad").exists()
    _, observed = observed32
    with pytest.raises(ValueError, match="red_weight: must be a finite number >= 0"):
        dip.restore(observed, Denoise(25), red_weight=float("inf"))
