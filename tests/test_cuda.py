"""On a CUDA device: a fit follows the CPU's, and bf16 lands near fp32. Marked `cuda` and skipped, with the
reason, where torch.cuda.is_available() is False (run them alone with ``pytest -m cuda``)."""

import numpy as np
import pytest
import torch

from dip.fit import FitSettings, fit
from dip.image_io import to_array
from dip.metrics import psnr
from dip.operators import Denoise
from dip.seeds import generator

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)"
    ),
]
SKIP = {"kind": "skip"}


def test_a_cuda_fit_follows_the_cpu_fit(clean64, monkeypatch):
    """20 iterations of a 32x32 fit on the CPU and on CUDA, from the same weights and z (both drawn on the
    CPU from the seed). The input perturbation is off: its stream is drawn by each device's own generator
    (Philox on CUDA), which would make them different fits. TF32 is off so that both compute in float32.

    Tolerances: iteration 1's loss comes from the same weights before any step, so only the order of
    float32 sums differs (measured between 1 and 2 CPU threads: 1.9e-7 relative); 1e-4 allows the other
    convolution algorithms of cuDNN. Later iterations drift apart: Adam's first steps move every weight by
    about the learning rate whatever its gradient's size, so a gradient component whose sign differs by
    rounding moves the other way. Between 1 and 2 CPU threads (rounding alone) the losses of these 20
    iterations drifted up to 2.4 % apart and the PSNR 0.19 dB (2-core AMD EPYC, torch 2.13, 2026-12-02);
    the bounds are 4x and about 2.5x that."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    clean = clean64[..., 16:48, 16:48].contiguous()
    observed = Denoise(25).observe(clean, generator(0, "observation"))
    settings = FitSettings(
        iterations=20, check_every=5, ssim_every=1000, reg_noise_std=0.0, bf16=False, channels_last=False
    )
    cpu, cuda = (fit(SKIP, Denoise(25), observed, settings, clean=clean, device=d).history for d in ("cpu", "cuda"))
    a, b = cpu["loss"].to_numpy(), cuda["loss"].to_numpy()
    assert len(b) == 20 and np.isfinite(b).all()
    assert b[0] == pytest.approx(a[0], rel=1e-4)
    assert np.abs(b / a - 1).max() < 0.1, np.abs(b / a - 1)
    assert b[-1] < 0.8 * b[0]  # it fits (the CPU: 0.35 of the first loss)
    assert abs(cpu["psnr"].iloc[-1] - cuda["psnr"].iloc[-1]) < 0.5


def test_bf16_on_cuda_lands_within_1db_of_fp32(clean64):
    """400 iterations of a 64x64 denoising fit (no perturbation, so its PSNR peaks within the budget) in
    fp32 and in bf16 autocast. bf16 keeps 8 bits of mantissa: its fit takes another path, as another seed
    would, and a short fit's best PSNR varies by some tenths of a dB between paths (the README's parity rule,
    0.1 dB, is for 3000-iteration fits over seeds). 1 dB catches a broken bf16 path, not that spread; both
    must beat the noisy image by 3 dB (this fit on the CPU: by more than 4 dB, tests/test_fit.py)."""
    observed = Denoise(25).observe(clean64, generator(0, "observation"))
    noisy = psnr(to_array(observed), to_array(clean64))
    runs = {
        bf16: fit(
            SKIP,
            Denoise(25),
            observed,
            FitSettings(iterations=400, reg_noise_std=0.0, ssim_every=400, bf16=bf16, channels_last=False),
            clean=clean64,
            device="cuda",
        ).history
        for bf16 in (False, True)
    }
    assert not np.array_equal(runs[False]["loss"].to_numpy(), runs[True]["loss"].to_numpy())  # bf16 did run
    best = {bf16: float(h["psnr_ema"].max()) for bf16, h in runs.items()}
    assert min(best.values()) >= noisy + 3, (noisy, best)
    assert abs(best[True] - best[False]) <= 1.0, best
