"""Jo, Chun, Choi's DIP-SURE recipe ("Rethinking Deep Image Prior for Denoising", ICCV 2021) on the held-out
crops of docs/defaults.md, against CBM3D of the same observation: is their recipe, rather than the SURE data
term alone (`dip fit --loss sure`), what closes the gap to CBM3D on Gaussian noise?

Their recipe differs from `dip fit --loss sure` in four parts, all taken here as their public code and paper
describe them, written for this script (outside the package: nothing of it is a `dip fit` option):
- the network: a U-net after Self2Self (five stride-2 encoder blocks of 48 channels, a decoder of 96 channels
  with nearest upsampling and concatenated skips, batch norm, softplus, reflection padding, a sigmoid; the
  input concatenated before the last block);
- the input: the observation plus Gaussian noise of a level drawn afresh each iteration, uniformly in
  [0, σ/2] ("eSURE_uniform");
- the divergence: the exact Hutchinson estimate bᵀ(∂f/∂y)b by a second backward pass (not the finite
  difference of dip.risk);
- the optimiser: RAdam at lr 0.1, the rate times 0.9 every 300 iterations, 3000 iterations, and their
  stochastic temporal ensemble, an EMA of the outputs at 0.99 (here bias-corrected from the first
  iteration: their code restarts the average at iterations 10 and 200 where the clean image says so).

Printed per crop: the observation's PSNR, CBM3D's (the `dip.pipeline.baselines` denoiser given the true σ),
the EMA image after the budget (their reported image), the EMA image where the SURE estimate first falls
below 0 (their zero-crossing rule), and the best EMA image of any check (an oracle). The observation is
`dip degrade --seed 0 --exact`'s, the one docs/defaults.md's fits saw; the network seed's streams are
dip.seeds' (weights, perturbation, divergence).

    python scripts/esure_check.py --out results/esure --images coffee rocket --size 64
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from defaults_check import IMAGES, _dip, image_file  # noqa: E402

from dip import cbm3d, seeds  # noqa: E402
from dip.image_io import read_array  # noqa: E402
from dip.metrics import psnr  # noqa: E402

SIGMA = 25 / 255


def _block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3, stride), nn.BatchNorm2d(c_out), nn.Softplus()]


class S2SNet(nn.Module):
    """The Self2Self-style U-net of Jo et al.'s code (its `s2s`): (N, C, H, W) -> (N, C, H, W) in (0, 1);
    H and W multiples of 32."""

    def __init__(self, channels: int, enc: int = 48, dec: int = 96, depth: int = 5):
        super().__init__()
        self.down = nn.ModuleList(
            nn.Sequential(*_block(channels if i == 0 else enc, enc, 2), *_block(enc, enc)) for i in range(depth)
        )
        self.middle = nn.Sequential(*_block(enc, dec))
        self.up = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(dec + enc), *_block(dec + enc, dec), *_block(dec, dec))
            for _ in range(depth - 1)
        )
        last = [*_block(dec + channels, 64), *_block(64, 32), nn.ReflectionPad2d(1), nn.Conv2d(32, channels, 3)]
        self.last = nn.Sequential(*last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for down in self.down:
            skips.append(down(skips[-1]))
        h = self.middle(skips.pop())
        for up in self.up:
            h = up(torch.cat([nn.functional.interpolate(h, scale_factor=2), skips.pop()], 1))
        return torch.sigmoid(self.last(torch.cat([nn.functional.interpolate(h, scale_factor=2), skips.pop()], 1)))


def fit(observed: np.ndarray, clean: np.ndarray, iterations: int, seed: int, check_every: int = 25) -> dict:
    """One fit of the recipe to `observed` (H, W, C in [0, 1]); PSNRs against `clean` at each check."""
    y = torch.from_numpy(observed).permute(2, 0, 1)[None].float().contiguous()
    with seeds.weights_stream(seed):
        net = S2SNet(y.shape[1])
    perturbation, divergence = seeds.generator(seed, "perturbation"), seeds.generator(seed, "divergence")
    optimiser = torch.optim.RAdam(net.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.StepLR(optimiser, step_size=300, gamma=0.9)
    variance, n = SIGMA**2, y.numel()
    ema, weight = torch.zeros_like(y), 0.0
    rows, crossing = [], None
    for it in range(1, iterations + 1):
        level = float(torch.rand((), generator=perturbation)) * SIGMA / 2
        x = (y + level * torch.randn(y.shape, generator=perturbation)).requires_grad_()
        out = net(x)
        probe = torch.randn(y.shape, generator=divergence)
        jb = torch.autograd.grad((probe * out).sum(), x, create_graph=True)[0]
        sure = (out - y).square().mean() - variance + 2 * variance * (probe * jb).sum() / n
        optimiser.zero_grad()
        sure.backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            ema.mul_(0.99).add_(out.detach(), alpha=0.01)
            weight = 0.99 * weight + 0.01
            if crossing is None and float(sure) < 0:
                crossing = (it, psnr(clean, (ema / weight)[0].permute(1, 2, 0).numpy()))
            if it % check_every == 0:
                image = (ema / weight)[0].permute(1, 2, 0).numpy()
                rows.append((it, psnr(clean, image), float(sure)))
    best = max(rows, key=lambda r: r[1])
    return {
        "ste": rows[-1][1],
        "zero_crossing_it": crossing[0] if crossing else None,
        "zero_crossing": crossing[1] if crossing else rows[-1][1],
        "best": best[1],
        "best_it": best[0],
        "history": rows,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--images", nargs="+", choices=list(IMAGES), default=list(IMAGES))
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="network seed (the observation's is 0, as in the docs)")
    p.add_argument("--iters", type=int, default=3000)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    for name in a.images:
        target = a.out / f"{name}{a.size}-seed{a.seed}.json"
        if target.exists():
            print(target.read_text().splitlines()[0])
            continue
        clean_file = image_file(Path("results/heldout64"), name, a.size)
        degraded = a.out / "degraded" / f"{name}{a.size}"
        task = ["--task", "denoise", "--sigma", "25"]
        _dip(["degrade", *task, "--image", str(clean_file), "--seed", "0", "--exact", "--out", str(degraded)],
             degraded.with_suffix(".log"))  # fmt: skip
        clean, observed = read_array(str(clean_file)), read_array(str(degraded / "observed.tif"))
        start = time.perf_counter()
        result = fit(observed, clean, a.iters, a.seed)
        seconds = time.perf_counter() - start
        summary = {
            "image": name,
            "size": a.size,
            "seed": a.seed,
            "iterations": a.iters,
            "observed": psnr(clean, observed),
            "cbm3d": psnr(clean, np.clip(cbm3d.denoise(observed, SIGMA), 0, 1)),
            **{k: v for k, v in result.items() if k != "history"},
            "seconds": round(seconds),
        }
        a.out.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(summary) + "\n" + json.dumps(result["history"]) + "\n")
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
