"""Several fits of one architecture and image size at once, for GPUs that a single small fit leaves idle.

The B networks keep their own weights (each drawn from its own seed, as `fit` draws them), stacked
along a new leading dimension with `torch.func.stack_module_state`; `vmap` over `functional_call` runs
all of them as one batched network, so each layer is one (grouped) kernel for the whole batch. The loss
is the sum of the per-fit losses and Adam works element-wise, so every fit gets exactly the gradient
and update it would get alone. Each iteration does what `fit` does (input perturbation from the fit's
own generator, Adam, output EMA, history on the device); backtracking, stopping rules and checkpoints
stay with `fit`, one fit per process.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.func import functional_call, replace_all_batch_norm_modules_, stack_module_state, vmap

from dip import networks
from dip.fit import FitSettings, update_ema
from dip.metrics import psnr_torch
from dip.networks import make_network
from dip.seeds import generator as stream
from dip.inputs import input_channels, make_input, perturb
from dip.operators import Operator
from dip.speed import resolve_speed


@dataclass
class BatchResult:
    ema: torch.Tensor        # (B, C, H, W): each fit's EMA output (raw output when the EMA is off)
    output: torch.Tensor     # (B, C, H, W): each fit's last raw output
    history: pd.DataFrame    # per fit and iteration: fit, seed, iteration, loss, psnr_observed[, psnr, psnr_ema]


def _per_fit_psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return torch.stack([psnr_torch(a, b) for a, b in zip(x, ref)])


def fit_batch(arch: dict, operator: Operator, observed: torch.Tensor, settings: FitSettings, seeds: list[int], *,
              clean: torch.Tensor | None = None, device: str | torch.device = "cpu") -> BatchResult:
    """Fit len(seeds) networks at once. observed (and clean): one image (1, C, H, W) shared by all fits,
    or one per fit (B, C, H, W). settings.seed is ignored: fit b uses seeds[b] for weights, z and noise."""
    s, device, n = settings, torch.device(device), len(seeds)
    if observed.shape[0] not in (1, n):
        raise ValueError(f"observed holds {observed.shape[0]} images for {n} fits; give 1 or {n}")
    h, w = operator.image_size(observed[:1])
    zin = input_channels(s.input, s.input_depth)
    nets = [make_network(arch, zin, observed.shape[1], seed).to(device).train() for seed in seeds]
    # Running statistics are never used (DIP stays in train mode) and cannot be updated in place under vmap.
    for net in nets:
        replace_all_batch_norm_modules_(net)
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")
    zh, zw = networks.input_size(nets[0], h, w)
    z = torch.stack([make_input(s.input, zin, zh, zw, stream(seed, "input")) for seed in seeds])
    z = z.to(device)
    noise_gens = [stream(seed, "perturbation", device) for seed in seeds]
    fast = resolve_speed(device, False, s.bf16, s.flush_denormal)  # channels-last does not survive vmap
    operator = operator.to(device)
    observed = observed.to(device).expand(n, -1, -1, -1)
    clean = clean.to(device).expand(n, -1, -1, -1) if clean is not None else None

    def one(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))

    forward = vmap(one)
    opt = torch.optim.Adam(params.values(), lr=s.lr)
    ema, pending, rows, seconds = None, [], [], []
    t0 = time.perf_counter()
    for it in range(1, s.iterations + 1):
        opt.zero_grad(set_to_none=True)
        zs = torch.stack([perturb(z[b], s.reg_noise_std, g) for b, g in enumerate(noise_gens)])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast.bf16):
            out = forward(params, buffers, zs)[:, 0]
        out = networks.center_crop(out.float(), h, w)
        losses = torch.stack([operator.loss(out[b:b + 1], observed[b:b + 1]) for b in range(n)])
        losses.sum().backward()
        opt.step()
        out = out.detach()
        ema = update_ema(ema, out, s.ema)
        row = [losses.detach(), _per_fit_psnr(torch.cat([operator(out[b:b + 1]) for b in range(n)]), observed)]
        if clean is not None:
            row += [_per_fit_psnr(out, clean), _per_fit_psnr(ema, clean)]
        pending.append(torch.stack(row, 1))
        if it % s.check_every == 0 or it == s.iterations:
            # One host sync per chunk, as in `fit`, so the recorded seconds are true wall time.
            rows.append(torch.stack(pending).cpu())
            pending.clear()
            seconds.append((it, time.perf_counter() - t0))
    values = torch.cat(rows).numpy().astype(np.float64)  # (iterations, fits, columns)
    columns = ["loss", "psnr_observed"] + (["psnr", "psnr_ema"] if clean is not None else [])
    its = np.arange(1, s.iterations + 1)
    checks, times = zip(*seconds)
    elapsed = np.interp(its, (0,) + checks, (0.0,) + times)  # wall time is known at host syncs only
    history = pd.concat([pd.DataFrame({"fit": b, "seed": seed, "iteration": its, **dict(zip(columns, values[:, b].T)),
                                       "seconds": elapsed}) for b, seed in enumerate(seeds)], ignore_index=True)
    return BatchResult(ema=ema.cpu(), output=out.cpu(), history=history)
