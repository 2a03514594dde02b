"""A fitted network kept (dip fit --save-network, restore(save_network=...)), rebuilt (dip.load_network) and
fitted again from (--init-from, restore(init_from=...)): the file, the reproduction of its output, what a
warm start takes from it and what from the seed, refusals, and the fingerprint."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import dip
from dip.fit import FitSettings, fit, fit_batch
from dip.operators import Denoise
from dip.saved_network import FILE, FORMAT, check_init, read_network

from conftest import run_dip

SPEC = {"kind": "skip", "channels_down": [16] * 3, "channels_up": [16] * 3, "channels_skip": [4] * 3}
FAST = dict(iterations=12, check_every=4, ssim_every=1000, input_depth=8, bf16=False, channels_last=False)


run = run_dip  # in this process: most checks here take milliseconds, a fresh interpreter seconds


@pytest.fixture(scope="module")
def observed(clean64):
    return Denoise(25).observe(clean64[..., :32, :32], dip.seeds.generator(0, "observation"))


@pytest.fixture(scope="module")
def saved(observed, tmp_path_factory):
    """A 12-iteration fit kept in a file: (its result, the file)."""
    result = fit(SPEC, Denoise(25), observed, FitSettings(**FAST), keep_network=True)
    path = tmp_path_factory.mktemp("net") / FILE
    result.network.save(path)
    return result, path


def test_the_file_is_a_plain_documented_dict(saved):
    result, path = saved
    payload = torch.load(path, weights_only=True)  # plain tensors and values: no pickled classes
    assert payload["format"] == FORMAT
    assert payload["spec"] == SPEC
    assert (payload["height"], payload["width"], payload["channels"]) == (32, 32, 3)
    assert payload["iteration"] == result.iterations == FAST["iterations"]
    assert payload["seed"] == 0
    assert payload["z"].shape == (1, FAST["input_depth"], 32, 32)
    assert payload["output"].shape == (1, 3, 32, 32)
    assert set(payload["state_dict"]) >= {
        name for name, _ in dip.networks.make_network(SPEC, 8, 3, 0).named_parameters()
    }


def test_the_saved_z_is_the_fits_input(saved):
    from dip.inputs import make_input

    _, path = saved
    z = make_input("noise", FAST["input_depth"], 32, 32, dip.seeds.generator(0, "input"))
    assert torch.equal(read_network(path).z, z)


def test_the_loaded_network_reproduces_the_saved_output_in_training_mode(saved):
    _, path = saved
    module, z = dip.load_network(path.parent)  # a folder names its network.pt
    assert all(m.training for m in module.modules())  # BatchNorm uses the image's own statistics
    with torch.no_grad():
        out = module(z)
    assert out.shape == (1, 3, 32, 32)
    assert torch.allclose(out, read_network(path).output, atol=1e-6)
    # and the saved weights are the fit's: not those its seed draws before fitting
    fresh = dip.networks.make_network(SPEC, 8, 3, 0).train()
    with torch.no_grad():
        assert (fresh(z) - out).abs().max() > 1e-3


def test_a_warm_start_begins_where_the_saved_network_ended(saved, observed):
    """Without perturbation, iteration 1's loss is computed before any step: the saved weights at the saved z."""
    _, path = saved
    init = read_network(path)
    settings = FitSettings(**{**FAST, "iterations": 4, "reg_noise_std": 0.0, "seed": 5})
    warm = fit(SPEC, Denoise(25), observed, settings, init=init)
    expected = float((init.output - observed).square().mean())
    assert warm.history["loss"].iloc[0] == pytest.approx(expected, rel=1e-5)
    cold = fit(SPEC, Denoise(25), observed, settings)
    assert cold.history["loss"].iloc[0] > expected * 1.5, "the 12-iteration fit lowered the loss"


def test_a_warm_start_takes_weights_and_z_from_the_file_and_the_perturbation_from_the_seed(saved, observed):
    _, path = saved
    init = read_network(path)
    settings = FitSettings(**{**FAST, "iterations": 4})
    a, b = (fit(SPEC, Denoise(25), observed, settings, init=init) for _ in range(2))
    other = fit(SPEC, Denoise(25), observed, FitSettings(**{**FAST, "iterations": 4, "seed": 3}), init=init)
    assert a.history["loss"].tolist() == b.history["loss"].tolist()  # reproducible
    assert other.history["loss"].iloc[0] != a.history["loss"].iloc[0]  # another seed's perturbation


def test_batched_fits_keep_and_start_from_networks(saved, observed):
    _, path = saved
    init = read_network(path)
    results = fit_batch(SPEC, Denoise(25), observed, FitSettings(**FAST), [0, 1], keep_network=True, init=init)
    for r in results:
        assert r.network.seed == r.seed and r.network.iteration == FAST["iterations"]
        with torch.no_grad():
            assert torch.allclose(r.network.network()(r.network.z), r.network.output, atol=1e-6)
        assert torch.equal(r.network.z, init.z)
    weights = [torch.cat([v.flatten() for v in r.network.state_dict.values()]) for r in results]
    assert not torch.equal(*weights)  # each seed's own perturbation, each its own weights


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(spec={"kind": "skip"}), "architecture (channels_down"),
        (dict(height=40), "image size 32x32 vs 40x32"),
        (dict(channels=1), "channels 3 vs 1"),
        (dict(z_channels=32), "input depth 8 vs 32"),
    ],
)
def test_a_saved_network_of_another_setup_is_refused_naming_what_differs(saved, change, message):
    _, path = saved
    setup = dict(spec=SPEC, height=32, width=32, channels=3, z_channels=8) | change
    with pytest.raises(ValueError, match="fitted with another setup") as err:
        check_init(read_network(path), **setup)
    assert message in str(err.value)


def test_restore_saves_and_starts_from_networks_and_fingerprints_the_start(saved, observed, tmp_path, monkeypatch):
    _, path = saved
    settings = dict(FAST)
    result = dip.restore(observed, Denoise(), arch=SPEC, settings=settings, stop=None, save_network=tmp_path / "n.pt")
    module, z = dip.load_network(tmp_path / "n.pt")
    with torch.no_grad():
        assert torch.allclose(module(z), result.network.output, atol=1e-6)
    with pytest.raises(ValueError, match=r"save_network: with seeds, name one file per seed with \{seed\}"):
        dip.restore(observed, Denoise(), arch=SPEC, settings=settings, seeds=[0, 1], save_network=tmp_path / "n.pt")
    with pytest.raises(ValueError, match="^init_from: .*fitted with another setup: architecture"):
        dip.restore(observed, Denoise(), arch="skip-3", settings=settings, init_from=path)
    # The checkpoint's fingerprint holds the start's content hash: a resume never mixes two starts.
    seen = {}

    def capture(*args, **kwargs):
        seen.update(kwargs["fingerprint"])
        raise RuntimeError("captured")

    monkeypatch.setattr(dip.api, "fit", capture)
    with pytest.raises(RuntimeError, match="captured"):
        dip.restore(observed, Denoise(), arch=SPEC, settings=settings, init_from=path)
    assert seen["init network"] == read_network(path).sha256
    seen.clear()
    with pytest.raises(RuntimeError, match="captured"):
        dip.restore(observed, Denoise(), arch=SPEC, settings=settings)
    assert "init network" not in seen and seen["observation"]


def test_dip_fit_saves_one_network_per_seed_and_starts_from_one(tmp_path, clean64):
    image = tmp_path / "a.png"
    Image.fromarray(np.round(clean64[0, :, :32, :32].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(image)
    common = ["--task", "denoise", "--sigma", 25, "--image", image, "--iters", 4, "--arch", "skip-3"]
    common += ["--input-depth", 8, "--no-progress", "--threads", 1]
    r = run("fit", *common, "--seeds", 0, 1, "--out", tmp_path / "cold", "--save-network")
    assert r.returncode == 0, r.stderr
    for seed in (0, 1):
        saved = read_network(tmp_path / "cold" / f"seed{seed}")
        assert saved.seed == seed and saved.iteration == 4 and saved.task["name"] == "denoise"
    r = run("fit", *common, "--out", tmp_path / "warm", "--init-from", tmp_path / "cold" / "seed1")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "warm" / FILE).exists()  # kept only when asked
    summary = json.loads((tmp_path / "warm" / "summary.json").read_text())
    assert summary["fingerprint"]["init network"] == read_network(tmp_path / "cold" / "seed1").sha256
    # Another architecture: one line naming what differs, before anything is written.
    other = ["skip-jpeg" if c == "skip-3" else c for c in common]
    r = run("fit", *other, "--out", tmp_path / "bad", "--init-from", tmp_path / "cold" / "seed1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "--init-from: " in r.stderr and "architecture (" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad").exists()
    r = run("fit", *common, "--out", tmp_path / "none", "--init-from", tmp_path / "nothing")
    assert r.returncode == 2 and "no saved network there" in r.stderr and not (tmp_path / "none").exists()
