"""The Deep Image Prior loop: fit a randomly initialised network's weights θ so that H(f_θ(z)) matches
the observation y, keep an EMA of the output, and stop by a rule. Ground truth, when given, is used for
the history only, never by the fit.

Every `check_every` iterations the loop talks to the host once: it moves the history recorded on the
device, backtracks if the fit collapsed or went non-finite (restoring weights *and* optimiser state
from real copies, with a lower learning rate), asks the stopping rules, and saves a checkpoint when due.
"""
from __future__ import annotations

import copy
import math
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from dip import networks, seeds
from dip.image_io import atomic_write, to_array
from dip.inputs import input_channels, make_input, perturb
from dip.metrics import Scorer, psnr_torch, ssim
from dip.operators import Operator
from dip.stopping import StoppingRule, make_rule


@dataclass
class FitSettings:
    """What a fit does; `dip.presets` holds the paper's values per task."""

    iterations: int = 3000
    lr: float = 0.01
    reg_noise_std: float = 1 / 30
    input: str = "noise"            # noise | meshgrid
    input_depth: int = 32
    ema: float = 0.99                # 0 switches the output EMA off
    optimizer: str = "adam"          # adam | lbfgs
    tv_weight: float = 0.0
    backtrack_db: float = 5.0        # collapse = PSNR to the observation drops by more than this
    lr_decay_on_backtrack: float = 0.5
    max_backtracks: int = 5
    check_every: int = 25            # host check interval (history flush, backtracking, stopping)
    ssim_every: int = 100
    seed: int = 0                    # the network seed: weights, z, perturbations (see dip.seeds)
    channels_last: bool | None = None  # None: the measured default, off on every device (see dip.speed)
    bf16: bool | None = None
    compile: bool = False
    flush_denormal: bool = True

    def __post_init__(self) -> None:
        for key in ("iterations", "check_every", "ssim_every", "input_depth"):
            if int(getattr(self, key)) <= 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")


class FitFailed(RuntimeError):
    """The fit kept diverging after every allowed backtrack."""


@dataclass
class FitResult:
    image: torch.Tensor             # what to report: the stopping rule's image, else final EMA (or raw)
    output: torch.Tensor            # raw network output of the last iteration
    ema: torch.Tensor | None
    history: pd.DataFrame
    stops: dict[str, dict] = field(default_factory=dict)
    stopped_by: str | None = None
    iterations: int = 0
    backtracks: int = 0
    resumed_from: int | None = None
    rule_images: dict[str, torch.Tensor] = field(default_factory=dict)


def update_ema(ema: torch.Tensor | None, out: torch.Tensor, weight: float) -> torch.Tensor:
    """The output EMA after one more output; with weight 0 (EMA off) it is the output itself."""
    return out if ema is None or not weight else ema * weight + out * (1 - weight)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


class FitInterrupted(Exception):
    """SIGTERM or SIGINT arrived during a fit; its state was saved to the checkpoint (if one was given)
    at the last verified iteration. The CLI turns this into exit code 128 + signal."""

    def __init__(self, signum: int, iteration: int):
        super().__init__(f"interrupted by signal {signum} at iteration {iteration}")
        self.signum, self.iteration = signum, iteration


class FitOutOfMemory(RuntimeError):
    """The device ran out of memory during a fit; the checkpoint (if one was given) holds the last
    verified iteration, `iteration` (0 if none)."""

    def __init__(self, message: str, iteration: int):
        super().__init__(message)
        self.iteration = iteration


def _out_of_memory(err: BaseException) -> bool:
    """torch's out-of-memory errors: CUDA's OutOfMemoryError, the CPU allocator's RuntimeError."""
    return isinstance(err, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(err, RuntimeError) and ("can't allocate memory" in str(err) or "out of memory" in str(err)))


class _Interrupted(Exception):
    pass


@contextmanager
def _catch_termination():
    """Turn SIGTERM/SIGINT into a flag that the loop checks once per iteration."""
    flag = {"signal": None}

    def handler(signum, frame):
        flag["signal"] = signum

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _Progress:
    """A tqdm bar on a terminal; a plain line every tenth of the fit in a log file."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.total, self.enabled, self.next_line = total, enabled, start
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, unit="it", dynamic_ncols=True)

    def update(self, iteration: int, loss: float, psnr_obs: float, psnr_gt: float | None) -> None:
        if not self.enabled:
            return
        info = {"loss": f"{loss:.5f}", "psnr_obs": f"{psnr_obs:.2f}"}
        if psnr_gt is not None and math.isfinite(psnr_gt):
            info["psnr"] = f"{psnr_gt:.2f}"
        if self.bar is not None:
            self.bar.n = iteration
            self.bar.set_postfix(info, refresh=True)
        elif iteration >= self.next_line or iteration == self.total:
            print(f"iteration {iteration}/{self.total} " + " ".join(f"{k} {v}" for k, v in info.items()),
                  file=sys.stderr, flush=True)
            self.next_line = iteration + max(1, self.total // 10)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def fit(
    arch: dict | nn.Module,
    operator: Operator,
    observed: torch.Tensor,
    settings: FitSettings | None = None,
    *,
    clean: torch.Tensor | None = None,
    rules: list[StoppingRule] | None = None,
    stop_on: str | None = None,
    device: str | torch.device = "cpu",
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float = 60.0,
    scorer: Scorer = Scorer(),
    progress: bool = False,
    log=print,
) -> FitResult:
    """Fit Deep Image Prior to `observed` through `operator` and return the restored image and history.

    arch: an architecture spec (see `dip.presets.ARCHITECTURES`) built with weights from settings.seed,
    or a ready nn.Module. rules: stopping rules to track; stop_on: the name of the one that ends the fit
    (None runs the whole budget and only records where each rule would have stopped). checkpoint: a
    file to save full state to every `checkpoint_every` iterations (default: 10% of the fit) or
    `checkpoint_seconds`, whichever comes first, and at SIGTERM/SIGINT; a fit whose checkpoint exists
    resumes from it and ends exactly as an uninterrupted fit would; SIGTERM/SIGINT save it and raise
    FitInterrupted. scorer: how the history scores against `clean` (a task's `scorer`: SR papers score
    luminance with a border shaved).
    """
    s = settings or FitSettings()
    device = torch.device(device)
    rules = list(rules or [])
    if stop_on is not None and stop_on not in {r.name for r in rules}:
        rules.append(make_rule(stop_on, s.iterations, ema=s.ema))
    h, w = operator.image_size(observed)
    channels = observed.shape[1]
    # The network seed's own streams (dip.seeds): none of them is the observation's.
    zin = input_channels(s.input, s.input_depth)
    net = arch if isinstance(arch, nn.Module) else networks.make_network(arch, zin, channels, s.seed)
    zh, zw = networks.input_size(net, h, w)
    z = make_input(s.input, zin, zh, zw, seeds.generator(s.seed, "input")).to(device)
    noise_gen = seeds.generator(s.seed, "perturbation", device)

    from dip.speed import resolve_speed  # speed switches wrap the loop, they do not fork it
    fast = resolve_speed(device, s.channels_last, s.bf16, s.flush_denormal)
    memory_format = torch.channels_last if fast.channels_last else torch.contiguous_format
    # Only the activations take the fast layout (it spreads from z through every convolution); the
    # weights, and so their gradients, stay contiguous, which every optimiser expects (LBFGS flattens
    # gradients with .view(-1)).
    net = net.to(device).train()
    z = z.to(memory_format=memory_format)
    run = torch.compile(net) if s.compile else net
    operator = operator.to(device)
    observed = observed.to(device)
    clean = clean.to(device) if clean is not None else None
    scored_clean = scorer.view(clean) if clean is not None else None  # once, not every iteration
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if fast.bf16 else nullcontext

    def make_optimizer(lr: float) -> torch.optim.Optimizer:
        if s.optimizer == "lbfgs":
            return torch.optim.LBFGS(net.parameters(), lr=lr, max_iter=1)
        if s.optimizer == "adam":
            return torch.optim.Adam(net.parameters(), lr=lr)
        raise ValueError(f"unknown optimizer {s.optimizer!r}; choose adam or lbfgs")

    lr = s.lr
    opt = make_optimizer(lr)
    signalled = [r for r in rules if r.name != "fixed"]  # FixedStop has no statistic to record
    columns = ["loss", "psnr_observed"] + (["psnr", "psnr_ema"] if clean is not None else []) + [
        f"signal_{r.name}" for r in signalled]
    st = {"iteration": 0, "ema": None, "backtracks": 0, "good_psnr": -math.inf,
          "rows": np.zeros((0, len(columns))), "seconds": np.zeros(0), "ssim": {}, "elapsed": 0.0}

    def state() -> dict:
        return copy.deepcopy({"net": net.state_dict(), "opt": opt.state_dict(), "lr": lr, "st": st,
                              "gen": noise_gen.get_state(), "rules": [r.state_dict() for r in rules]})

    def restore(saved: dict) -> None:
        nonlocal opt, lr
        saved = copy.deepcopy(saved)
        net.load_state_dict(saved["net"])
        lr = saved["lr"]
        opt = make_optimizer(lr)
        opt.load_state_dict(saved["opt"])
        st.clear(), st.update(saved["st"])
        noise_gen.set_state(saved["gen"])
        for r, rs in zip(rules, saved["rules"]):
            r.load_state_dict(rs)

    resumed_from = None
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.exists():
        saved = torch.load(ckpt, map_location=device, weights_only=False)
        if saved.get("settings") != asdict(s):
            raise ValueError(f"{ckpt}: checkpoint was written by a fit with other settings; delete it to start over")
        restore(saved["state"])
        resumed_from = st["iteration"]
        log(f"resuming from checkpoint {ckpt} at iteration {resumed_from}")

    def save_checkpoint() -> None:
        if ckpt is not None:
            payload = {"settings": asdict(s), "state": state()}
            atomic_write(ckpt, lambda tmp: torch.save(payload, tmp))

    every = checkpoint_every or max(s.check_every, s.iterations // 10)
    snapshot = state()
    last_ckpt_iter, last_ckpt_time = st["iteration"], time.perf_counter()
    pending, pending_t = [], []
    cache = {}
    bar = _Progress(s.iterations, st["iteration"], progress)
    stopped_by = None
    t0 = time.perf_counter() - st["elapsed"]

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with autocast():
            out = networks.center_crop(run(perturb(z, s.reg_noise_std, noise_gen)), h, w)
        out = out.float().contiguous()
        loss = operator.loss(out, observed)
        if s.tv_weight:
            loss = loss + s.tv_weight * total_variation(out)
        loss.backward()
        cache["out"] = out.detach()
        return loss

    with _catch_termination() as interrupt:
        try:
            while st["iteration"] < s.iterations:
                if interrupt["signal"] is not None:
                    raise _Interrupted
                it = st["iteration"] + 1
                if s.optimizer == "lbfgs":
                    loss = opt.step(closure)
                else:
                    loss = closure()
                    opt.step()
                out = cache["out"]
                st["ema"] = update_ema(st["ema"], out, s.ema)
                keep = st["ema"]
                for r in rules:
                    r.update(it, out, keep, loss.detach())
                row = [loss.detach().float(), psnr_torch(operator(out), observed)]
                if clean is not None:
                    row += [psnr_torch(scorer.view(out), scored_clean), psnr_torch(scorer.view(keep), scored_clean)]
                    if it % s.ssim_every == 0 or it == s.iterations:
                        st["ssim"][it] = tuple(ssim(to_array(x), to_array(clean), scorer.y_channel, scorer.shave)
                                               for x in (out, keep))
                row += [r.signal if r.signal is not None else torch.tensor(float("nan")) for r in signalled]
                pending.append(torch.stack([torch.as_tensor(v, device=device).float() for v in row]))
                pending_t.append(time.perf_counter() - t0)
                st["iteration"] = it
                if it % s.check_every and it != s.iterations:
                    continue
                # Host check: one sync per chunk.
                chunk = torch.stack(pending).cpu().numpy().astype(np.float64)
                pending.clear()
                psnr_obs = chunk[:, 1]
                if not np.isfinite(chunk[:, 0]).all() or (psnr_obs < st["good_psnr"] - s.backtrack_db).any() \
                        or not torch.isfinite(st["ema"]).all():
                    st_backtracks = st["backtracks"] + 1
                    if st_backtracks > s.max_backtracks:
                        raise FitFailed(f"fit diverged at iteration {it} after {s.max_backtracks} backtracks "
                                        f"(learning rate down to {lr:.3g})")
                    restore(snapshot)
                    lr *= s.lr_decay_on_backtrack
                    for group in opt.param_groups:
                        group["lr"] = lr
                    st["backtracks"] = st_backtracks
                    pending_t.clear()
                    log(f"iteration {it}: loss or fit to the observation collapsed; restored iteration "
                        f"{st['iteration']} and lowered the learning rate to {lr:.3g}")
                    snapshot = state()
                    continue
                st["rows"] = np.concatenate([st["rows"], chunk])
                st["seconds"] = np.concatenate([st["seconds"], pending_t])
                pending_t.clear()
                st["good_psnr"] = max(st["good_psnr"], float(psnr_obs.max()))
                st["elapsed"] = time.perf_counter() - t0
                snapshot = state()
                gt_col = columns.index("psnr_ema") if clean is not None else None
                bar.update(it, chunk[-1, 0], chunk[-1, 1], chunk[-1, gt_col] if gt_col else None)
                if stop_on is not None and next(r for r in rules if r.name == stop_on).should_stop(it):
                    stopped_by = stop_on
                    break
                if it - last_ckpt_iter >= every or time.perf_counter() - last_ckpt_time >= checkpoint_seconds:
                    save_checkpoint()
                    last_ckpt_iter, last_ckpt_time = it, time.perf_counter()
        except _Interrupted:
            # Keep only verified iterations: back to the last good chunk boundary, then save.
            restore(snapshot)
            save_checkpoint()
            bar.close()
            log(f"interrupted: checkpoint saved at iteration {st['iteration']}")
            raise FitInterrupted(interrupt["signal"], st["iteration"]) from None
        except (RuntimeError, MemoryError) as err:
            if not _out_of_memory(err):
                raise
            # Keep what was verified: the snapshot of the last good check (a real copy, not the live state).
            bar.close()
            cache.clear()
            saved = 0
            if ckpt is not None and snapshot["st"]["iteration"]:
                atomic_write(ckpt, lambda tmp: torch.save({"settings": asdict(s), "state": snapshot}, tmp))
                saved = snapshot["st"]["iteration"]
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise FitOutOfMemory(f"ran out of memory on {device.type} at iteration {st['iteration'] + 1} ({first})",
                                 saved) from None
    bar.close()

    history = pd.DataFrame(st["rows"], columns=columns)
    history.insert(0, "iteration", np.arange(1, len(history) + 1))
    history["seconds"] = st["seconds"]
    if clean is not None:
        history["ssim"] = history["iteration"].map(lambda i: st["ssim"].get(i, (np.nan, np.nan))[0])
        history["ssim_ema"] = history["iteration"].map(lambda i: st["ssim"].get(i, (np.nan, np.nan))[1])
    stops = {r.name: r.report(st["iteration"]) for r in rules}
    images = {r.name: r.image for r in rules}
    final = cache["out"] if st["iteration"] == len(history) and "out" in cache else None
    image = images[stopped_by] if stopped_by else st["ema"]
    return FitResult(image=image.float().cpu(), output=(final if final is not None else st["ema"]).float().cpu(),
                     ema=st["ema"].float().cpu() if s.ema else None, history=history, stops=stops,
                     stopped_by=stopped_by, iterations=st["iteration"], backtracks=st["backtracks"],
                     resumed_from=resumed_from,
                     rule_images={k: v.float().cpu() for k, v in images.items() if v is not None})
