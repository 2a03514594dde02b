import pytest
import torch

from dip.batch import fit_batch
from dip.fit import FitSettings, fit
from dip.image_io import to_array
from dip.metrics import psnr
from dip.operators import Denoise

# Three scales keep two fits of 150 iterations affordable in a test.
NET = {"kind": "skip", "channels_down": [128] * 3, "channels_up": [128] * 3, "channels_skip": [4] * 3}


def test_batched_fits_match_single_fits(clean64):
    clean = clean64[..., :32, :32]
    observed = Denoise(25).observe(clean, torch.Generator().manual_seed(0))
    noisy = psnr(to_array(observed), to_array(clean))
    # Two paths compared: both pinned to fp32 and the contiguous layout, whatever this CPU defaults to.
    settings = FitSettings(iterations=150, ssim_every=1000, bf16=False, channels_last=False)
    batch = fit_batch(NET, Denoise(25), observed, settings, [0, 1], clean=clean)
    assert batch.ema.shape == (2, 3, 32, 32) and len(batch.history) == 300
    first = batch.history[batch.history["iteration"] == 1].set_index("seed")["loss"]
    assert abs(first[0] - first[1]) > 1e-4  # each fit has its own weights and input
    for seed in (0, 1):
        single = fit(NET, Denoise(25), observed, FitSettings(**{**vars(settings), "seed": seed}),
                     clean=clean).history
        mine = batch.history[batch.history["seed"] == seed]
        # Same weights, input and perturbation: the same first loss. Later iterates drift apart as float
        # sums are ordered differently (as they do between thread counts), so compare the outcome.
        assert mine["loss"].iloc[0] == pytest.approx(single["loss"].iloc[0], rel=1e-5)
        assert mine["psnr"].max() >= noisy + 3
        assert abs(mine["psnr"].max() - single["psnr"].max()) < 0.5
        assert psnr(to_array(batch.ema[seed:seed + 1]), to_array(clean)) == pytest.approx(
            mine["psnr_ema"].iloc[-1], abs=0.05)


def test_a_mismatched_batch_is_refused():
    with pytest.raises(ValueError, match="observed holds 3 images for 2 fits"):
        fit_batch(NET, Denoise(25), torch.rand(3, 3, 16, 16), FitSettings(iterations=1), [0, 1])
