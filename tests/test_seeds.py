import itertools
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from dip import seeds
from dip.cli import main
from dip.fit import FitSettings, fit
from dip.inputs import noise_input
from dip.operators import Denoise
from dip.tasks import Task

SMALL = {"kind": "skip", "channels_down": [8] * 3, "channels_up": [8] * 3, "channels_skip": [2] * 3}


def box_muller_from_uniforms(z: torch.Tensor, count: int) -> np.ndarray:
    """The Gaussians torch's CPU sampler would make from the uniforms behind z ~ U(0, 0.1): per block
    of 16 uniforms u, n[j] = √(−2 ln(1 − u[j])) cos(2π u[j+8]), n[j+8] = the same with sin."""
    u = (z.flatten()[: math.ceil(count / 16) * 16].double() / 0.1).numpy().reshape(-1, 16)
    radius = np.sqrt(-2 * np.log1p(-u[:, :8]))
    theta = 2 * np.pi * u[:, 8:]
    return np.concatenate([radius * np.cos(theta), radius * np.sin(theta)], axis=1).reshape(-1)[:count]


def noise_correlation(clean: torch.Tensor, observed: torch.Tensor, z: torch.Tensor) -> float:
    noise = ((observed - clean) * 255 / 25).flatten().double().numpy()
    unclipped = (observed.flatten() > 0) & (observed.flatten() < 1)
    predicted = box_muller_from_uniforms(z, clean.numel())
    return float(np.corrcoef(noise[unclipped.numpy()], predicted[unclipped.numpy()])[0, 1])


def test_the_reconstruction_finds_noise_drawn_from_the_stream_of_z(clean64):
    # The control: the way the noise leaked before (two generators seeded alike) is caught.
    z = noise_input(32, 64, 64, torch.Generator().manual_seed(0))
    observed = Denoise(25).observe(clean64, torch.Generator().manual_seed(0))
    assert noise_correlation(clean64, observed, z) > 0.99


@pytest.mark.parametrize("seed", range(5))
def test_the_observation_noise_cannot_be_predicted_from_z(clean64, seed):
    # The CLI's default: observation seed = network seed. z is drawn as `fit` draws it.
    observed, _ = Task("denoise", sigma=25).degrade(clean64, seed)
    z = noise_input(32, 64, 64, seeds.generator(seed, "input"))
    assert abs(noise_correlation(clean64, observed, z)) < 0.05


@pytest.mark.parametrize("seed", range(5))
def test_one_seed_gives_four_different_streams(seed):
    first = {p: torch.rand(8, generator=seeds.generator(seed, p)) for p in seeds.PURPOSES}
    for a, b in itertools.combinations(seeds.PURPOSES, 2):
        assert not torch.equal(first[a], first[b]), (a, b)
    # torch's CPU generator keeps 32 bits of its seed: the streams must differ there too.
    low = {seeds.stream_seed(seed, p) & 0xFFFFFFFF for p in seeds.PURPOSES}
    assert len(low) == len(seeds.PURPOSES)
    # The network's initial weights come from the weights stream, and leave the global generator alone.
    before = torch.random.get_rng_state()
    with seeds.weights_stream(seed):
        assert torch.equal(torch.rand(8), first["weights"])
    assert torch.equal(torch.random.get_rng_state(), before)


def test_no_two_seeds_share_a_stream():
    drawn = {(s, p): seeds.stream_seed(s, p) for s in range(20) for p in seeds.PURPOSES}
    assert len(set(drawn.values())) == len(drawn)


def test_an_unknown_purpose_or_negative_seed_is_refused():
    with pytest.raises(ValueError, match="unknown random stream"):
        seeds.stream_seed(0, "noise")
    with pytest.raises(ValueError, match=">= 0"):
        seeds.stream_seed(-1, "input")


def test_the_network_seed_alone_fixes_weights_input_and_perturbations(clean64):
    clean = clean64[..., :32, :32]
    task = Task("denoise", sigma=25)
    a, _ = task.degrade(clean, 0)
    b, _ = task.degrade(clean, 1)
    assert not torch.equal(a, b)
    first = {}
    for obs, observed in (("a", a), ("b", b)):
        for seed in (0, 1):
            # One iteration: the output recorded is that of the initial weights on the first perturbed z.
            result = fit(SMALL, Denoise(25), observed, FitSettings(iterations=1, seed=seed, ssim_every=10))
            first[obs, seed] = result.output
    assert torch.equal(first["a", 0], first["b", 0]) and torch.equal(first["a", 1], first["b", 1])
    assert not torch.equal(first["a", 0], first["a", 1])


def test_the_observation_is_the_same_for_every_network_seed(tmp_path, png64):
    observed = {}
    for seed in (0, 1, 2):
        out = tmp_path / f"seed{seed}"
        assert (
            main(
                [
                    "fit",
                    "--task",
                    "denoise",
                    "--sigma",
                    "25",
                    "--image",
                    str(png64),
                    "--seed",
                    str(seed),
                    "--observation-seed",
                    "7",
                    "--iters",
                    "1",
                    "--arch",
                    "skip-3",
                    "--no-progress",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        observed[seed] = np.asarray(Image.open(out / "observed.png"))
        summary = json.loads((out / "summary.json").read_text())
        assert (summary["seed"], summary["observation_seed"], summary["seed_scheme"]) == (seed, 7, seeds.SCHEME)
    assert np.array_equal(observed[0], observed[1]) and np.array_equal(observed[0], observed[2])
    # `dip degrade` draws the very same observation from the observation seed.
    assert (
        main(
            [
                "degrade",
                "--task",
                "denoise",
                "--sigma",
                "25",
                "--image",
                str(png64),
                "--observation-seed",
                "7",
                "--out",
                str(tmp_path / "degraded"),
            ]
        )
        == 0
    )
    assert np.array_equal(np.asarray(Image.open(tmp_path / "degraded" / "observed.png")), observed[0])


def test_a_negative_seed_is_one_line_error(tmp_path, png64, capsys):
    code = main(
        [
            "fit",
            "--task",
            "denoise",
            "--sigma",
            "25",
            "--image",
            str(png64),
            "--observation-seed",
            "-1",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2 and "--observation-seed: must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
