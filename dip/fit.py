"""The Deep Image Prior loop: fit a randomly initialised network's weights θ so that H(f_θ(z)) matches
the observation y, keep an EMA of the output, and stop by a rule. Ground truth, when given, is used for
the history only, never by the fit.

Two halves, read top to bottom:

- `Step` is everything done every iteration, on the device, for B fits at once (B = 1 for `fit`):
  input perturbation, forward, each fit's loss, backward, optimiser step, output EMA, the stopping
  rules' running statistics, and each fit's history row written into a preallocated device buffer.
  Every per-fit quantity (iteration counter, live flag, EMA, rule state, learning rate, step count) is
  a tensor with a leading fit dimension updated by one operation for all fits, so the step never waits
  for the host and dispatches about as many operations for B fits as for one.
- `_Loop` is the host loop. Every `check_every` iterations it reads the buffer once (the one sync point,
  marked "Host check") and does what needs the host, per fit: backtracking when a fit collapsed or went
  non-finite (restoring weights, optimiser, EMA, rule state and generator from real copies, with a
  lower learning rate), stopping decisions, SSIM, progress and checkpoints.

`fit_batch` runs B fits of one architecture and image size as one network whose layers hold the B fits
as channel groups (`dip.networks.Grouped`): each fit backtracks, stops and is checkpointed on its own
and is frozen (learning rate 0, EMA and rules held) once it has stopped or failed.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from dip import networks, seeds
from dip.checkpoint import check_checkpoint, fingerprint, read_checkpoint
from dip.checks import is_integer, is_number
from dip.image_io import atomic_write, to_array
from dip.inputs import input_channels, make_input
from dip.metrics import Scorer, psnr_per_image, ssim
from dip.operators import HeldOut, Operator
from dip.optim import make_optimiser
from dip.red import RED
from dip.risk import RiskEstimate
from dip.saved_network import SavedNetwork, check_init, from_weights
from dip.stopping import StoppingRule, bank, make_rule


@dataclass
class FitSettings:
    """What a fit does; `dip.presets` holds the paper's values per task."""

    iterations: int = 3000
    lr: float = 0.01
    reg_noise_std: float = 1 / 30
    input: str = "noise"  # noise | meshgrid | image (flash/no-flash: fit's input_image is z)
    input_depth: int = 32
    ema: float = 0.99  # 0 switches the output EMA off
    optimizer: str = "adam"  # adam | lbfgs
    tv_weight: float = 0.0
    backtrack_db: float | None = 5.0  # collapse = PSNR to the observation drops by more than this below the
    #                                   last good check's level (its median, `_Loop.level`); None:
    #                                   only a non-finite loss backtracks (the flash preset, see dip.presets)
    lr_decay_on_backtrack: float = 0.5
    max_backtracks: int = 5  # backtracks in a row (no good check between them) after which the fit fails
    check_every: int = 25  # host check interval (history flush, backtracking, stopping)
    ssim_every: int = 100
    seed: int = 0  # the network seed: weights, z, perturbations (see dip.seeds)
    channels_last: bool | None = None  # None: the measured default, off on every device (see dip.speed)
    bf16: bool | None = None
    compile: bool = False
    flush_denormal: bool = True

    def __post_init__(self) -> None:
        # A count given as 3.5 or "3" must not become another budget or a TypeError deep in the loop.
        for key in ("iterations", "check_every", "ssim_every", "input_depth", "seed", "max_backtracks"):
            value = getattr(self, key)
            if not is_integer(value):
                raise ValueError(f"{key} must be an integer, got {value!r}")
            setattr(self, key, int(value))
        for key in ("iterations", "check_every", "ssim_every", "input_depth"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        for key in ("lr", "reg_noise_std", "ema", "tv_weight", "lr_decay_on_backtrack"):
            value = getattr(self, key)
            if not is_number(value):
                raise ValueError(f"{key} must be a number, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")


@dataclass
class RunOptions:
    """How a fit (or a batch of fits) runs, apart from what it fits: `fit` and `fit_batch` take these as
    keyword arguments. checkpoint: a file to save full state to every `checkpoint_every` iterations
    (default: 10% of the fit) or `checkpoint_seconds`, whichever comes first, and at SIGTERM/SIGINT.
    scorer: how the history scores against the ground truth. input_image: the network's input when
    settings.input is "image" (flash/no-flash). fingerprint: what else determines the fit (see
    `fingerprint`), recorded in the checkpoint: a checkpoint resumes only the fit whose fingerprint it
    holds, and another one raises CheckpointMismatch. init: a saved network (dip.saved_network) to start
    every fit from, its weights and its z instead of the seed's (the perturbation stays the seed's); the
    caller puts its content hash in the fingerprint. keep_network: each FitResult's `network` holds the
    weights the fit ended with (dip.saved_network.SavedNetwork; needs an architecture spec). risk: a risk-estimate data term (`dip.risk.SURE`,
    `dip.risk.PURE`) in place of the operator's loss; it needs settings.input "image" with the observation
    as input_image (the estimate's divergence is taken with respect to the network's input) and costs a
    second forward pass per iteration. red: a regularisation-by-denoising term (`dip.red.RED`, DeepRED) added
    to the data term, with its ADMM variables x and u kept per fit."""

    device: str | torch.device = "cpu"
    checkpoint: str | Path | None = None
    checkpoint_every: int | None = None
    checkpoint_seconds: float = 60.0
    scorer: Scorer = field(default_factory=Scorer)
    input_image: torch.Tensor | None = None
    progress: bool = False
    log: object = print
    fingerprint: dict | None = None
    init: SavedNetwork | None = None
    keep_network: bool = False
    memory_saving: bool = False  # recompute activations in the backward pass (dip.networks.checkpointed):
    #                              the same fit for less memory and a second forward pass per iteration
    risk: RiskEstimate | None = None
    red: RED | None = None
    # Run the whole budget even where `stop_on` decides earlier (every rule recorded over the budget); the
    # image returned is still the one `stop_on` would have returned had it stopped the fit.
    full_budget: bool = False


@dataclass
class FitResult:
    image: torch.Tensor  # what to report: the stopping rule's image, else final EMA (or raw)
    output: torch.Tensor  # raw network output of the last iteration
    ema: torch.Tensor | None
    history: pd.DataFrame
    stops: dict[str, dict] = field(default_factory=dict)
    stopped_by: str | None = None
    iterations: int = 0
    backtracks: int = 0
    resumed_from: int | None = None
    rule_images: dict[str, torch.Tensor] = field(default_factory=dict)
    seed: int = 0
    error: str | None = None  # batched fits only: why this fit failed (a single fit raises FitFailed)
    returned_by: str | None = None  # the rule whose image `image` is (None: the last EMA image)
    returned_iteration: int = 0  # the iteration of `image`
    network: SavedNetwork | None = None  # with keep_network: the weights and z at the fit's last iteration
    members: list[FitResult] = field(default_factory=list)  # an ensemble's (see `ensemble`); else empty


def ensemble(members: list[FitResult]) -> FitResult:
    """The ensemble of several fits of one observation (different network seeds, e.g.
    `dip.seeds.ensemble_seeds`, fitted with `fit_batch`): its image, last output, EMA and each rule's image
    are the means of the members' (each member stopped by its own rule), as the paper's "two runs
    averaged". The history stacks the members' histories, a `seed` column first; each rule's report keeps
    the latest member's iteration and decision (the ensemble's image exists once every member's does);
    `members` holds the members' own results. A member that failed fails the ensemble (`error`).

    :param members: two or more FitResults of images of one shape.
    :returns: a FitResult whose `seed` is the first member's.
    """
    if len(members) < 2:
        raise ValueError(f"an ensemble averages two or more fits, got {len(members)}")
    first = members[0]
    failed = [f"member seed {m.seed}: {m.error}" for m in members if m.error]

    def mean(images):
        return torch.stack([x for x in images]).mean(0)

    histories = [m.history.assign(seed=m.seed) for m in members]
    history = pd.concat(histories, ignore_index=True)
    history = history[["seed"] + [c for c in history.columns if c != "seed"]]
    common = [name for name in first.rule_images if all(name in m.rule_images for m in members)]
    stops = {}
    for name in first.stops:
        reports = [m.stops.get(name, {}) for m in members]
        latest = [r.get("iteration") for r in reports]
        decided = [r.get("stop_at") for r in reports]
        stops[name] = {
            **reports[0],
            "iteration": None if None in latest else max(latest),
            "minimum": None,
            "stop_at": None if None in decided else max(decided),
            "stopped": all(r.get("stopped", False) for r in reports),
        }
    return FitResult(
        image=mean(m.image for m in members),
        output=mean(m.output for m in members),
        ema=None if any(m.ema is None for m in members) else mean(m.ema for m in members),
        history=history,
        stops=stops,
        stopped_by=first.stopped_by if len({m.stopped_by for m in members}) == 1 else None,
        iterations=max(m.iterations for m in members),
        backtracks=sum(m.backtracks for m in members),
        resumed_from=first.resumed_from,
        rule_images={name: mean(m.rule_images[name] for m in members) for name in common},
        seed=first.seed,
        error="; ".join(failed) or None,
        returned_by=first.returned_by if len({m.returned_by for m in members}) == 1 else None,
        returned_iteration=max(m.returned_iteration for m in members),
        members=list(members),
    )


def fit(
    arch: dict | nn.Module,
    operator: Operator,
    observed: torch.Tensor,
    settings: FitSettings | None = None,
    *,
    clean: torch.Tensor | None = None,
    rules: list[StoppingRule] | None = None,
    stop_on: str | None = None,
    **options,
) -> FitResult:
    """Fit Deep Image Prior to `observed` through `operator` and return the restored image and history.

    arch: an architecture spec (see `dip.presets.ARCHITECTURES`) built with weights from settings.seed,
    or a ready nn.Module. rules: stopping rules to track; stop_on: the name of the one that ends the fit
    (None runs the whole budget and only records where each rule would have stopped). options:
    `RunOptions` (device, checkpoint, scorer, input_image, progress, log, fingerprint). A fit whose
    checkpoint exists resumes from it and ends exactly as an uninterrupted fit would (a checkpoint of
    another fit raises CheckpointMismatch); SIGTERM/SIGINT save it and raise FitInterrupted. Raises
    FitFailed if the fit keeps diverging.
    """
    s = settings or FitSettings()
    o = RunOptions(**options)
    problem = _Problem([operator], observed, clean, o.scorer, o.input_image, o.risk, o.red)
    rules_ = [_prepare_rules(rules, stop_on, s, operator, observed)]
    return _fits(arch, problem, s, [s.seed], rules_, stop_on, o, raise_failure=True)[0]


def fit_batch(
    arch: dict,
    operator: Operator | list[Operator],
    observed: torch.Tensor,
    settings: FitSettings,
    seeds_: list[int],
    *,
    clean: torch.Tensor | None = None,
    rules: list[list[StoppingRule]] | None = None,
    stop_on: str | None = None,
    **options,
) -> list[FitResult]:
    """`len(seeds_)` fits of one architecture and image size as one batched network, through the same loop
    as `fit`: fit b draws its weights, z and perturbations from `seeds_[b]` (settings.seed is ignored) and
    backtracks, stops, records its rules and is checkpointed on its own. observed (and clean): one image
    (1, C, H, W) shared by all fits, or one per fit (B, C, H, W); operator: one, or one per fit (e.g. one
    mask per image). rules: one list per fit. A fit that keeps diverging is frozen and returned with
    `error` set; the others go on. options: as for `fit` (`RunOptions`)."""
    n = len(seeds_)
    if observed.shape[0] not in (1, n):
        raise ValueError(f"observed holds {observed.shape[0]} images for {n} fits; give 1 or {n}")
    operators = list(operator) if isinstance(operator, (list, tuple)) else [operator]
    if len(operators) not in (1, n):
        raise ValueError(f"{len(operators)} operators for {n} fits; give 1 or {n}")
    rules = rules or [[] for _ in seeds_]
    if len(rules) != n:
        raise ValueError(f"{len(rules)} rule lists for {n} fits")
    o = RunOptions(**options)
    problem = _Problem(operators, observed, clean, o.scorer, o.input_image, o.risk, o.red)
    rules = [
        _prepare_rules(r, stop_on, settings, operators[b % len(operators)], observed[b % len(observed)][None])
        for b, r in enumerate(rules)
    ]
    return _fits(arch, problem, settings, list(seeds_), rules, stop_on, o, raise_failure=False)


def _fits(
    arch, problem: _Problem, s: FitSettings, seeds_: list[int], rules, stop_on, o: RunOptions, raise_failure: bool
) -> list[FitResult]:
    """Build the step of len(seeds_) fits and run the loop until each has ended; one FitResult per fit."""
    if o.keep_network and not isinstance(arch, dict):
        raise ValueError("keep_network: a network is kept from an architecture spec, not a ready module")
    step = Step(arch, problem, s, seeds_, rules, torch.device(o.device), init=o.init, memory_saving=o.memory_saving)
    tracks = [_Track(seed=seed, lr=s.lr) for seed in seeds_]
    extra = {
        **(o.fingerprint or {}),
        **(o.risk.describe() if o.risk is not None else {}),
        **(o.red.describe() if o.red is not None else {}),
    }
    _Loop(step, tracks, stop_on, o, raise_failure, fingerprint(s, seeds_, extra)).run()
    results = [_result(step, b, t, s, stop_on if o.full_budget else None) for b, t in enumerate(tracks)]
    for b, (t, result) in enumerate(zip(tracks, results)):
        if o.keep_network and t.error is None:
            # The weights of the fit's last verified iteration (where it ended), without the EMA's (and RED's) slots.
            weights = t.saved["tensors"][: len(step.params)]
            size = (step.h, step.w, problem.observed.shape[1])
            result.network = from_weights(arch, weights, step.z[b : b + 1], *size, t.saved["iteration"], t.seed)
    return results


def _prepare_rules(
    rules: list[StoppingRule], stop_on: str | None, s: FitSettings, operator: Operator, observed: torch.Tensor
) -> list[StoppingRule]:
    rules = list(rules or [])
    if stop_on is not None and stop_on not in {r.name for r in rules}:
        heldout = (operator, observed) if isinstance(operator, HeldOut) else None
        rules.append(make_rule(stop_on, s.iterations, ema=s.ema, heldout=heldout))
    return rules


class FitFailed(RuntimeError):
    """The fit kept diverging after every allowed backtrack; `image` is its EMA image (raw output with the
    EMA off) at the last verified check and `history` its rows up to that check (a `FitResult.history`), so
    that what was computed is not lost."""

    def __init__(self, message: str, image: torch.Tensor | None = None, history: pd.DataFrame | None = None):
        super().__init__(message)
        self.image, self.history = image, history


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


@dataclass
class _Problem:
    """What the fits are fitted to: each fit's forward operator (one shared, or one per fit), the
    observation(s), the ground truth for the history, how it is scored, the network's input image
    when settings.input is "image", and the risk-estimate data term replacing the operators' loss (if any)."""

    operators: list[Operator]
    observed: torch.Tensor
    clean: torch.Tensor | None
    scorer: Scorer
    input_image: torch.Tensor | None = None
    risk: RiskEstimate | None = None
    red: RED | None = None

    def __post_init__(self) -> None:
        if self.risk is None:
            return
        image = self.input_image
        if image is None or tuple(image.shape[1:]) != tuple(self.observed.shape[1:]):
            raise ValueError(
                "a risk-estimate data term (SURE/PURE) needs the observation as the network's input "
                "(settings.input 'image', input_image = the observation)"
            )


def _network_input(
    s: FitSettings, size: tuple[int, int], channels: int, seeds_: list[int], image: torch.Tensor | None
) -> torch.Tensor:
    """z of every fit (B, channels, H, W): drawn from each fit's own `input` stream (dip.seeds), or the
    given input image (flash/no-flash)."""
    if s.input == "image":
        if image is None or tuple(image.shape[-2:]) != tuple(size):
            raise ValueError(f"input 'image' needs an input_image of {size[0]}x{size[1]} pixels")
        return image.expand(len(seeds_), -1, -1, -1).float()
    return torch.cat([make_input(s.input, channels, *size, seeds.generator(seed, "input")) for seed in seeds_])


class Step:
    """One iteration of B fits, all on the device, every per-fit quantity a tensor with a leading fit
    dimension updated with one operation for all fits (no host sync, no tensor built on the host, buffers
    updated in place): perturb z, forward, loss per fit (+ TV), backward, optimiser step, output EMA, the
    rules' running statistics, and the history row of every fit written into `history[pos]`.

    The host changes it only at checks: `load` (backtracking, resuming), `set_lr`, `freeze`."""

    def __init__(
        self,
        arch: dict | nn.Module,
        problem: _Problem,
        s: FitSettings,
        seeds_: list[int],
        rules: list[list[StoppingRule]],
        device: torch.device,
        init: SavedNetwork | None = None,
        memory_saving: bool = False,
    ):
        self.s, self.fits, self.device, self.scorer = s, len(seeds_), device, problem.scorer
        self.init = init
        self.memory_saving = memory_saving
        self.stacked = self.fits > 1
        self.h, self.w = problem.operators[0].image_size(problem.observed[:1])
        channels = problem.observed.shape[1]
        from dip.speed import resolve_speed  # speed switches wrap the step, they do not fork it

        fast = resolve_speed(device, s.channels_last and not self.stacked, s.bf16, s.flush_denormal)
        self.autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if fast.bf16 else nullcontext
        zin = (
            problem.input_image.shape[1]
            if s.input == "image" and problem.input_image is not None
            else input_channels(s.input, s.input_depth)
        )
        if problem.risk is not None and s.input != "image":
            raise ValueError("a risk-estimate data term (SURE/PURE) needs settings.input 'image' (the observation)")
        self.risk, self.red = problem.risk, problem.red
        net = self._network(arch, seeds_, zin, channels)
        self._inputs(net, problem, seeds_, zin, torch.channels_last if fast.channels_last else torch.contiguous_format)
        self._targets(problem)
        self.rules = _banks(rules, self.fits)
        for r in self.rules:
            r.start(self.fits, (channels, self.h, self.w), device)
        self.signalled = [r for r in self.rules if r.name != "fixed"]  # fixed has no statistic
        # Each fit's weights: the parameters, or for stacked fits their (B, ...) views.
        self.params = net.per_fit() if self.stacked else list(net.parameters())
        self.opt = make_optimiser(
            s.optimizer, self.params, s.lr, self.fits, device, leaves=list(net.parameters()) if self.stacked else None
        )
        self._buffers(channels)

    def _inputs(self, net: nn.Module, problem: _Problem, seeds_: list[int], zin: int, layout) -> None:
        """z, and the buffer each fit's own stream (dip.seeds) draws its perturbation into, in its own slice."""
        size = networks.input_size(net, h=self.h, w=self.w)
        if self.init is not None:  # the saved network's z (its shape checked by check_init), every fit the same
            z = self.init.z.expand(self.fits, -1, -1, -1)
        else:
            z = _network_input(self.s, size, zin, seeds_, problem.input_image)
        self.z = z.float().to(self.device).contiguous().to(memory_format=layout)
        self.noise = [seeds.generator(seed, "perturbation", self.device) for seed in seeds_]
        self.z_noise = torch.zeros(self.z.shape, device=self.device)  # contiguous: the draw's order is the layout's
        self.z_noise_slices = [self.z_noise[b : b + 1] for b in range(self.fits)]
        if problem.risk is not None:
            # The divergence's probes b, one per fit from its own stream, and the finite difference's step.
            self.probes = [seeds.generator(seed, "divergence", self.device) for seed in seeds_]
            self.probe = torch.zeros(self.z.shape, device=self.device)
            self.probe_slices = [self.probe[b : b + 1] for b in range(self.fits)]
            self.epsilon = problem.risk.epsilon(problem.observed)

    def _targets(self, problem: _Problem) -> None:
        """The operators (one per fit), the observation and the ground truth on the device."""
        operators = [op.to(self.device) for op in problem.operators]
        self.operators = operators * (self.fits if len(operators) == 1 else 1)
        self.shared_operator = operators[0] if len(operators) == 1 else None
        self.observed = problem.observed.to(self.device).expand(self.fits, -1, -1, -1)
        clean = problem.clean
        self.clean = None if clean is None else clean.to(self.device).expand(self.fits, -1, -1, -1)
        self.scored_clean = None if clean is None else self.scorer.view(self.clean)  # once, not every iteration

    def _buffers(self, channels: int) -> None:
        """What the step writes in place: the history rows of a chunk, the output, the EMA, each fit's
        iteration counter and whether it is live."""
        self.columns = (
            ["loss", "psnr_observed"]
            + (["psnr", "psnr_ema"] if self.clean is not None else [])
            + [f"signal_{r.name}" for r in self.signalled]
        )
        device = self.device
        self.history = torch.zeros(self.s.check_every, self.fits, len(self.columns), device=device)
        self.out = torch.zeros(self.fits, channels, self.h, self.w, device=device)
        self.ema = torch.zeros_like(self.out)
        self.iteration = torch.zeros(self.fits, dtype=torch.long, device=device)  # each fit's, on the device
        self.live = torch.ones(self.fits, dtype=torch.bool, device=device)
        if self.red is not None:  # DeepRED's ADMM variables x and u, and the denoiser's last D(x) (dip.red)
            self.red_x, self.red_u, self.red_dx = (torch.zeros_like(self.out) for _ in range(3))

    def _network(self, arch: dict | nn.Module, seeds_: list[int], zin: int, channels: int) -> nn.Module:
        """The fits' network, on the device, in training mode; sets `self.forward`. With `init` every fit
        starts from the saved network's weights instead of those its seed draws."""
        if self.init is not None:
            if not isinstance(arch, dict):
                raise ValueError("init: a saved network starts a fit of an architecture spec, not a ready module")
            check_init(self.init, arch, self.h, self.w, channels, zin)  # one line naming what differs
        build = (lambda seed: self.init.network()) if self.init is not None else None
        if build is None and isinstance(arch, dict):
            build = lambda seed: networks.make_network(arch, zin, channels, seed)
        if self.stacked:
            if not isinstance(arch, dict):
                raise ValueError("batched fits build their networks from an architecture spec, not a module")
            # B networks, each with the weights `make_network` draws for its seed, run as one (channel groups).
            net = networks.Grouped([build(seed) for seed in seeds_])
            if self.memory_saving:
                net = networks.checkpointed(net)
            self.forward = net = net.to(self.device).train()
            return net
        # Only the activations take the fast layout (it spreads from z through every convolution); the
        # weights, and so their gradients, stay contiguous, which every optimiser expects (LBFGS flattens
        # gradients with .view(-1)).
        net = arch if isinstance(arch, nn.Module) else build(seeds_[0])
        if self.memory_saving:  # a module given as `arch` is changed in place (its parameters stay its own)
            net = networks.checkpointed(net)
        net = net.to(self.device).train()
        self.forward = torch.compile(net) if self.s.compile else net
        return net

    def _data_term(self, out: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
        """Each fit's loss (B,): one call of a shared operator, else one per fit; with a risk estimate, the
        estimate, from a second forward pass at the input zs + ε·b (dip.risk)."""
        if self.risk is not None:
            for g, draw in zip(self.probes, self.probe_slices):
                torch.randn(draw.shape, generator=g, out=draw)
            with self.autocast():
                probed = networks.center_crop(self.forward(zs + self.epsilon * self.probe), self.h, self.w)
            probe = networks.center_crop(self.probe, self.h, self.w)
            losses = self.risk.loss(out, probed.float(), probe, self.epsilon, self.observed)
        elif self.shared_operator is not None:
            losses = self.shared_operator.loss(out, self.observed)
        else:
            losses = torch.cat(
                [op.loss(out[b : b + 1], self.observed[b : b + 1]) for b, op in enumerate(self.operators)]
            )
        if losses.shape != (self.fits,):
            raise ValueError(
                f"the forward operator's loss must give one value per fit, shape ({self.fits},); "
                f"got {tuple(losses.shape)}"
            )
        if self.red is not None:  # μ · mean((f − (x − u))²); at a fit's first iteration x is not set yet
            tied = (out - (self.red_x - self.red_u)).square().flatten(1).mean(1)
            losses = losses + self.red.mu * torch.where(self.iteration > 1, tied, 0.0)
        return losses + self.s.tv_weight * total_variation(out) if self.s.tv_weight else losses

    def _closure(self) -> torch.Tensor:
        self.opt.zero_grad()
        zs = self.z
        if self.s.reg_noise_std:
            for g, draw in zip(self.noise, self.z_noise_slices):
                torch.randn(draw.shape, generator=g, out=draw)
            zs = self.z + self.s.reg_noise_std * self.z_noise
        with self.autocast():
            out = networks.center_crop(self.forward(zs), self.h, self.w)
        out = out.float().contiguous()
        losses = self._data_term(out, zs)
        total = losses.sum()  # each fit's weights get exactly the gradient of its own loss
        total.backward()
        self.out, self.losses = out.detach(), losses.detach()
        return total

    def __call__(self, pos: int) -> None:
        """One iteration of every live fit (frozen fits compute but keep their state); history row `pos`."""
        live = self.live
        self.iteration += live
        self.opt.step(self._closure)
        out, it = self.out, self.iteration
        # The EMA starts at a fit's first output and then moves by 1 - ema; a frozen fit's stays.
        weight = torch.where(it == 1, 1.0, 1 - self.s.ema if self.s.ema else 1.0).view(-1, 1, 1, 1)
        self.ema.copy_(torch.where(live.view(-1, 1, 1, 1), torch.lerp(self.ema, out, weight), self.ema))
        if self.red is not None:
            self._red_step(out, it, live)
        for r in self.rules:
            r.update(it, out, self.ema, self.losses, live)
        predicted = (
            self.shared_operator(out)
            if self.shared_operator is not None
            else torch.cat([op(out[b : b + 1]) for b, op in enumerate(self.operators)])
        )
        row = [self.losses.float(), psnr_per_image(predicted, self.observed)]
        if self.clean is not None:
            row += [
                psnr_per_image(self.scorer.view(out), self.scored_clean),
                psnr_per_image(self.scorer.view(self.ema), self.scored_clean),
            ]
        row += [r.signal for r in self.signalled]
        self.history[pos] = torch.stack(row, 1)

    def _red_step(self, out: torch.Tensor, it: torch.Tensor, live: torch.Tensor) -> None:
        """DeepRED's x and u steps (dip.red) for every live fit; at its first iteration D(x) starts as its
        output and u at 0, so that x becomes the output itself."""
        red, first = self.red, (it == 1).view(-1, 1, 1, 1)
        dx = torch.where(first, out, self.red_dx)
        u = torch.where(first, 0.0, self.red_u)
        x_new = ((red.weight * dx + red.mu * (out + u)) / (red.weight + red.mu)).clamp(0, 1)
        keep = live.view(-1, 1, 1, 1)
        self.red_u.copy_(torch.where(keep, u + out - x_new, self.red_u))
        self.red_x.copy_(torch.where(keep, x_new, self.red_x))
        self.red_dx.copy_(torch.where(keep, dx, self.red_dx))

    def refresh_red(self, b: int) -> None:
        """D(x) of fit b from its x now (host: the denoiser runs on the CPU), held until its next check."""
        if self.red is not None:
            self.red_dx[b].copy_(self.red.denoise(self.red_x[b]))

    # Fit b's state: weights, optimiser state, EMA and RED's x, u and D(x) (slice b of each stacked tensor),
    # its rules' state, its perturbation generator and its iteration.
    def _weights(self, b: int) -> list[torch.Tensor]:
        red = [self.red_x[b], self.red_u[b], self.red_dx[b]] if self.red is not None else []
        return ([p[b] for p in self.params] if self.stacked else self.params) + [self.ema[b]] + red

    def save(self, b: int, iteration: int) -> dict:
        """A real copy of fit b's state at `iteration` (no history: a rewind never goes past the last good
        check): what backtracking restores and what a checkpoint holds."""
        with torch.no_grad():
            return {
                "iteration": iteration,
                "tensors": [t.detach().clone() for t in self._weights(b)],
                "optimizer": self.opt.snapshot(b),
                "rules": [r.snapshot(b) for r in self.rules],
                "generator": self.noise[b].get_state(),
                **({"probe_generator": self.probes[b].get_state()} if self.risk is not None else {}),
            }

    def load(self, b: int, saved: dict, streams: bool = True) -> None:
        """Fit b back to `saved`; `streams` False leaves its perturbation and probe streams where they are."""
        with torch.no_grad():
            for live, value in zip(self._weights(b), saved["tensors"]):
                live.copy_(value)
            self.opt.restore(b, saved["optimizer"])
            for r, state in zip(self.rules, saved["rules"]):
                r.restore(b, state)
            self.iteration[b] = saved["iteration"]
        if not streams:
            return
        self.noise[b].set_state(saved["generator"])
        if self.risk is not None:
            self.probes[b].set_state(saved["probe_generator"])

    def set_lr(self, b: int, lr: float) -> None:
        self.opt.set_lr(b, lr)

    def freeze(self, b: int) -> None:
        """Fit b stops changing: no update (learning rate 0), EMA held; its rules are no longer fed."""
        self.set_lr(b, 0.0)
        self.live[b] = False


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation of each image (N, C, H, W): mean absolute vertical plus horizontal
    difference, a tensor (N,)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1) + (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(
        1
    ).mean(1)


def _banks(rules: list[list[StoppingRule]], fits: int) -> list[StoppingRule]:
    """The fits' rules as one rule object per rule name watching every fit (dip.stopping.bank)."""
    if len(rules) != fits or len({len(r) for r in rules}) > 1:
        raise ValueError(f"{len(rules)} rule lists for {fits} fits, each fit needs the same rules")
    return [bank([fit_rules[k] for fit_rules in rules]) for k in range(len(rules[0]))]


@dataclass
class _Track:
    """The host's record of one fit: counters, the verified history, and its state at the last good check."""

    seed: int
    lr: float
    iteration: int = 0
    backtracks: int = 0
    in_a_row: int = 0  # backtracks since the last good check
    good_psnr: float = -math.inf  # the last good chunk's level (`_Loop.level`): a collapse is 5 dB below it
    last_psnr: float = math.nan  # the PSNR to the observation of the last good chunk's last iteration
    rows: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    ssim: dict = field(default_factory=dict)
    live: bool = True
    stopped_by: str | None = None
    error: str | None = None
    resumed_from: int | None = None
    output: torch.Tensor | None = None  # raw output and EMA when the fit ended
    ema: torch.Tensor | None = None
    saved: dict | None = None  # Step.save at the last good check
    previous: dict | None = None  # Step.save at the good check before it (never in a checkpoint)


class _Loop:
    """The host loop over `step` until every fit has ended: by its budget, its rule, or failure."""

    def __init__(
        self,
        step: Step,
        tracks: list[_Track],
        stop_on: str | None,
        o: RunOptions,
        raise_failure: bool,
        fingerprint_: dict,
    ):
        self.step, self.tracks, self.s, self.stop_on, self.o = step, tracks, step.s, stop_on, o
        self.raise_failure, self.fingerprint = raise_failure, fingerprint_
        self.ckpt = Path(o.checkpoint) if o.checkpoint else None
        self.every = o.checkpoint_every or max(self.s.check_every, self.s.iterations // 10)

    def first(self) -> int:
        return min(t.iteration for t in self.tracks)

    def run(self) -> None:
        self.t0 = time.perf_counter() - self.start()
        self.last_ckpt = (self.first(), time.perf_counter())
        self.bar = _Progress(self.s.iterations, self.first(), self.o.progress)
        pos, times = 0, []
        with _catch_termination() as interrupt:
            try:
                while any(t.live for t in self.tracks):
                    if interrupt["signal"] is not None:
                        raise _Interrupted
                    # Device: one step of every live fit, history row `pos` (no sync).
                    for t in self.tracks:
                        t.iteration += t.live
                    self.step(pos)
                    times.append(time.perf_counter() - self.t0)
                    pos += 1
                    if any(
                        t.live and (t.iteration % self.s.check_every == 0 or t.iteration == self.s.iterations)
                        for t in self.tracks
                    ):
                        self.host_check(pos, times)
                        pos, times = 0, []
            except _Interrupted:
                self.interrupted(interrupt["signal"])
            except (RuntimeError, MemoryError) as err:
                if not _out_of_memory(err):
                    raise
                self.out_of_memory(err)
        self.bar.close()

    def start(self) -> float:
        """Resume every fit from the checkpoint, if there is one of this fit, or save each fit's start;
        returns the seconds already spent."""
        step, tracks = self.step, self.tracks
        if self.ckpt is None or not check_checkpoint(self.ckpt, self.fingerprint):
            for b, t in enumerate(tracks):
                self.save_state(b, t)
            return 0.0
        payload = read_checkpoint(self.ckpt, step.device)
        for b, (t, saved) in enumerate(zip(tracks, payload["tracks"])):
            vars(t).update(saved)
            step.load(b, t.saved)
            t.resumed_from = t.iteration
            if not t.live:
                step.freeze(b)
        self.o.log(f"resuming from checkpoint {self.ckpt} at iteration {self.first()}")
        return payload["elapsed"]

    def host_check(self, pos: int, times: list[float]) -> None:
        """Host check: the one sync point of a chunk. Every live fit backtracks or keeps its chunk and may
        stop; then progress and, when due, a checkpoint."""
        step = self.step
        rows = step.history[:pos].cpu().numpy().astype(np.float64)
        ema_ok = torch.isfinite(step.ema).flatten(1).all(1).cpu().tolist()
        for b, t in enumerate(self.tracks):
            if not t.live:
                continue
            chunk = rows[:, b]
            if self.collapsed(t, chunk) or not ema_ok[b]:
                self.backtrack(b, t, chunk)
            else:
                self.keep(b, t, chunk, times)
        shown = next((t for t in self.tracks if t.rows), None)
        if shown is not None:
            last = shown.rows[-1][-1]
            gt = step.columns.index("psnr_ema") if "psnr_ema" in step.columns else None
            self.bar.update(max(t.iteration for t in self.tracks), last[0], last[1], last[gt] if gt else None)
        it, (last_it, last_time) = self.first(), self.last_ckpt
        if any(t.live for t in self.tracks) and (
            it - last_it >= self.every or time.perf_counter() - last_time >= self.o.checkpoint_seconds
        ):
            self.save_checkpoint()
            self.last_ckpt = (it, time.perf_counter())

    def collapsed(self, t: _Track, chunk: np.ndarray) -> bool:
        """Whether a chunk's rows (iterations × (loss, PSNR to the observation, ...)) failed: a loss that is
        not finite, or the PSNR to the observation more than `backtrack_db` below the level of the last good
        chunk, or falling by more than that from one iteration to the next (the authors' test, which also
        catches a fit that collapses within its first chunk at one step). Before the first good chunk the
        level is the chunk's first iteration (the untrained network's output): a fit whose output saturates
        within its first chunk over several steps, each less than `backtrack_db`, is caught too."""
        if not np.isfinite(chunk[:, 0]).all():
            return True
        if self.s.backtrack_db is None:
            return False
        psnr, db = chunk[:, 1], self.s.backtrack_db
        steps = np.diff(np.concatenate([[t.last_psnr], psnr]))  # NaN before the first good chunk: no step
        level = t.good_psnr if t.good_psnr > -math.inf else psnr[0]
        return bool((psnr < level - db).any() or (steps < -db).any())

    @classmethod
    def levels(cls, rows: list[np.ndarray]) -> tuple[float, float]:
        """What a collapse is measured from after the last of the kept chunks `rows`: its level and its last
        iteration's PSNR to the observation (nothing before the first good chunk)."""
        if not rows:
            return -math.inf, math.nan
        return cls.level(rows[-1]), float(rows[-1][-1, 1])

    @staticmethod
    def level(chunk: np.ndarray) -> float:
        """The level a collapse is measured from: a good chunk's median PSNR to the observation. Not its best
        single iteration: late in a fit that matches its observation to 45-50 dB (SR, deblurring), the input
        perturbation alone moves single iterations by 5 dB."""
        return float(np.median(chunk[:, 1]))

    def backtrack(self, b: int, t: _Track, chunk: np.ndarray) -> None:
        """Fit b's chunk diverged (loss not finite, fit to the observation collapsed, EMA not finite): back to
        its last good check with a lower learning rate, or, past max_backtracks in a row, the fit fails. Only
        backtracks in a row count: a long fit that collapses now and then but goes on between is no
        diverging one, and failing it would throw its image away.

        Where the first run from the last good check failed at its first iteration, the output of that
        check's own state, the check came as the collapse began (its last iterations falling, each still
        above the bound): from its state every retry fails the same way whatever the learning rate, so the
        fit goes back to the check before it, and that check's chunk leaves the history. A retry that fails
        at its first iteration proves nothing of the state, whose first output passed once (a fault from
        outside the fit, as a network that returns NaN from some call on): it keeps its verified rows."""
        step, s = self.step, self.s
        first_run = t.in_a_row == 0
        t.backtracks += 1
        t.in_a_row += 1
        if first_run and t.previous is not None and self.collapsed(t, chunk[:1]):
            keep = t.previous["iteration"]
            t.rows.pop()  # the one chunk between the two checks
            del t.seconds[keep:]
            t.ssim = {at: value for at, value in t.ssim.items() if at <= keep}
            t.saved, t.previous = t.previous, None
            t.good_psnr, t.last_psnr = self.levels(t.rows)
        # The weights, Adam and the rules go back; the input perturbations go on, as in the authors' loop. Drawn
        # again, the same draws would give the same first output from the same weights, and a chunk that
        # failed on it would fail again at every learning rate.
        step.load(b, t.saved, streams=False)
        failed_at, t.iteration = t.iteration, t.saved["iteration"]
        if t.in_a_row > s.max_backtracks:
            t.error = (
                f"fit diverged at iteration {failed_at} after {s.max_backtracks} backtracks in a row "
                f"(learning rate down to {t.lr:.3g})"
            )
            if self.raise_failure:
                raise FitFailed(t.error, step.ema[b : b + 1].float().cpu(), _history(step, t))
            _end(step, b, t)
            return
        t.lr *= s.lr_decay_on_backtrack
        step.set_lr(b, t.lr)
        self.o.log(
            f"{'' if step.fits == 1 else f'seed {t.seed}: '}iteration {failed_at}: loss or fit to the observation "
            f"collapsed; restored iteration {t.iteration} and lowered the learning rate to {t.lr:.3g}"
        )
        self.save_state(b, t)

    def save_state(self, b: int, t: _Track) -> None:
        """Fit b's state now as its last good check's (`Step.save`). The copy it replaces is let go first: at
        most two copies at once."""
        t.saved = None
        t.saved = self.step.save(b, t.iteration)

    def keep(self, b: int, t: _Track, chunk: np.ndarray, times: list[float]) -> None:
        """Fit b's chunk is good: keep its rows, score SSIM when due, save the state, and end the fit if its
        rule says stop or its budget is spent."""
        step, s = self.step, self.s
        t.rows.append(chunk)
        t.seconds += times
        (t.good_psnr, t.last_psnr), t.in_a_row = self.levels(t.rows), 0
        if step.clean is not None and (
            t.iteration // s.ssim_every > (t.iteration - len(chunk)) // s.ssim_every or t.iteration == s.iterations
        ):
            # SSIM (scikit-image, on the host) at the check that reaches each multiple of ssim_every.
            clean = to_array(step.clean[b : b + 1])
            t.ssim[t.iteration] = tuple(
                ssim(to_array(x[b : b + 1]), clean, step.scorer.y_channel, step.scorer.shave)
                for x in (step.out, step.ema)
            )
        t.previous = t.saved
        step.refresh_red(b)  # before the save: a resumed or backtracked fit restarts from the same D(x)
        self.save_state(b, t)
        rule = next((r for r in step.rules if r.name == self.stop_on), None)
        if rule is not None and not self.o.full_budget and rule.should_stop(t.iteration, b):
            t.stopped_by = self.stop_on
            _end(step, b, t)
        elif t.iteration >= s.iterations:
            _end(step, b, t)

    def save_checkpoint(self) -> None:
        if self.ckpt is not None:
            state = {
                "fingerprint": self.fingerprint,
                "elapsed": time.perf_counter() - self.t0,
                "tracks": [{k: v for k, v in vars(t).items() if k != "previous"} for t in self.tracks],
            }
            atomic_write(self.ckpt, lambda tmp: torch.save(state, tmp))

    def interrupted(self, signum: int) -> None:
        # Keep only verified iterations: the checkpoint holds every fit's state at its last good check.
        _rewind_to_verified(self.tracks)
        self.save_checkpoint()
        self.bar.close()
        if self.ckpt is not None:
            self.o.log(f"interrupted: checkpoint saved at iteration {self.first()}")
        raise FitInterrupted(signum, self.first()) from None

    def out_of_memory(self, err: BaseException) -> None:
        self.bar.close()
        self.step.out = self.step.losses = None
        failed_at = max(t.iteration for t in self.tracks)
        verified = min(t.saved["iteration"] for t in self.tracks)
        if self.ckpt is not None and verified:
            _rewind_to_verified(self.tracks)
            self.save_checkpoint()
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FitOutOfMemory(
            f"ran out of memory on {self.step.device.type} at iteration {failed_at} ({first})",
            verified if self.ckpt else 0,
        ) from None


def _end(step: Step, b: int, t: _Track) -> None:
    t.live = False
    t.output, t.ema = step.out[b : b + 1].clone(), step.ema[b : b + 1].clone()
    step.freeze(b)


def _history(step: Step, t: _Track) -> pd.DataFrame:
    """A fit's verified rows (the chunks it kept), one per iteration from 1, with the cumulative seconds and,
    with a ground truth, the SSIM where it was scored."""
    rows = np.concatenate(t.rows) if t.rows else np.zeros((0, len(step.columns)))
    history = pd.DataFrame(rows, columns=step.columns)
    history.insert(0, "iteration", np.arange(1, len(history) + 1))
    history["seconds"] = t.seconds
    if step.clean is not None:
        for k, column in enumerate(("ssim", "ssim_ema")):
            history[column] = history["iteration"].map(lambda i, k=k: t.ssim.get(i, (np.nan, np.nan))[k])
    return history


def _result(step: Step, b: int, t: _Track, s: FitSettings, recorded_stop: str | None = None) -> FitResult:
    """Fit b's result. recorded_stop: with `RunOptions.full_budget`, the rule whose image is returned if it
    would have stopped the fit (a rule that would have stopped takes no later minimum, so its kept image is
    the one a stopping run returns); otherwise the last EMA image, as when a rule never decides."""
    history = _history(step, t)
    rules = step.rules
    images = {r.name: r.kept_image(b) for r in rules if r.kept_image(b) is not None}
    ema = t.ema if t.ema is not None else step.ema[b : b + 1]
    returned = t.stopped_by
    if returned is None and recorded_stop is not None and recorded_stop in images:
        rule = next(r for r in rules if r.name == recorded_stop)
        returned = recorded_stop if rule.should_stop(t.iteration, b) else None
    image = images[returned] if returned else ema
    return FitResult(
        image=image.float().cpu(),
        output=(t.output if t.output is not None else ema).float().cpu(),
        ema=ema.float().cpu() if s.ema else None,
        history=history,
        stops={r.name: r.report(t.iteration, b) for r in rules},
        stopped_by=t.stopped_by,
        iterations=t.iteration,
        backtracks=t.backtracks,
        resumed_from=t.resumed_from,
        rule_images={k: v.float().cpu() for k, v in images.items()},
        seed=t.seed,
        error=t.error,
        returned_by=returned,
        returned_iteration=next(r for r in rules if r.name == returned).chosen_iteration(b)
        if returned
        else t.iteration,
    )


def _rewind_to_verified(tracks: list[_Track]) -> None:
    """Every running fit back to its last good check, whose state `t.saved` is what a checkpoint keeps."""
    for t in tracks:
        if t.live:
            t.iteration = t.saved["iteration"]


def _out_of_memory(err: BaseException) -> bool:
    """torch's out-of-memory errors: CUDA's OutOfMemoryError, the CPU allocator's RuntimeError."""
    return isinstance(err, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(err, RuntimeError) and ("can't allocate memory" in str(err) or "out of memory" in str(err))
    )


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
            print(
                f"iteration {iteration}/{self.total} " + " ".join(f"{k} {v}" for k, v in info.items()),
                file=sys.stderr,
                flush=True,
            )
            self.next_line = iteration + max(1, self.total // 10)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
