"""Stopping rules that need no ground truth. Each watches the raw network outputs, remembers the
image to return at its chosen iteration (the EMA image when the fit keeps one), and says when it
would stop.

With an output EMA (weight β) the variance rules keep the EMA image `delay` = β/(1−β) iterations after
the minimum (99 for β = 0.99): that is the EMA's mean lag, so the kept image is an average of outputs
centred on the minimum, where ES-WMV returns the single raw output. Returning the EMA image at the
minimum itself would average outputs from ~100 iterations earlier, before the fit had converged.

One rule object watches B fits at once (the fits stacked by `dip.fit.fit_batch`; B = 1 for one fit):
every statistic, counter and kept image has a leading fit dimension and is updated with one operation
for all fits, on the device, with no host sync. `update` takes the fits' iteration numbers as a device
tensor (B,) and a `live` mask (B,): a fit that has stopped is no longer fed. The host asks
`stop_iterations` only at the loop's periodic checks. `snapshot(b)` / `restore(b, s)` copy one fit's
state out and back (backtracking, checkpoints).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

NEVER = 2**62  # "no minimum (or crossing) yet", as a device integer: no host branch needed


def _column(x: torch.Tensor | float | int, fits: int, device, dtype=None) -> torch.Tensor:
    """A per-fit value as a tensor (fits,): an int or 0-d tensor is the same for every fit."""
    x = torch.as_tensor(x, device=device)
    return (x.reshape(-1) if x.dim() else x.expand(fits)).to(dtype or x.dtype)


class StoppingRule:
    """Base: a rule observes (iterations, outputs, images_to_keep[, losses]) of B fits every iteration.

    State: `best_iteration` (B,) the iteration of the image kept (-1: none yet), `image` (B, ...) that
    image, `signal` (B,) the statistic at the last update (NaN if none), `minimum_iteration` (B,) where
    the statistic was least (NEVER: not yet).
    """

    name = "rule"
    STATE: tuple[str, ...] = ("best_iteration", "image", "signal", "minimum_iteration")
    NEVER = NEVER

    def __init__(self) -> None:
        self.fits = 0  # 0: not started; `start` allocates the state

    def config(self) -> tuple:
        """What must agree between the rules of fits watched as one bank (`bank`)."""
        return (type(self), self.name)

    def join(self, others: list[StoppingRule]) -> None:
        """Take on the fit-specific inputs of the other fits' rules (see `bank`); most rules have none."""

    def start(self, fits: int, image_shape: tuple[int, ...], device: torch.device | str) -> None:
        """Allocate the state of `fits` fits whose images have `image_shape` (without the fit dimension)."""
        self.fits = fits
        self.best_iteration = torch.full((fits,), -1, dtype=torch.long, device=device)
        self.minimum_iteration = torch.full((fits,), NEVER, dtype=torch.long, device=device)
        self.image = torch.zeros((fits, *image_shape), device=device)
        self.signal = torch.full((fits,), float("nan"), device=device)

    def update(
        self,
        iteration,
        output: torch.Tensor,
        keep: torch.Tensor,
        loss: torch.Tensor | None = None,
        live: torch.Tensor | None = None,
    ) -> None:
        """One iteration of B fits: iteration (B,) (or an int for all), raw outputs (B, ...), the images to
        return if this iteration is chosen (B, ...) (the EMA images when the fit keeps one), the losses to
        the observation (B,) and which fits are still running (B,) bool (default: all)."""
        if not self.fits:
            self.start(output.shape[0], tuple(output.shape[1:]), output.device)
        it = _column(iteration, self.fits, output.device, torch.long)
        live = torch.ones(self.fits, dtype=torch.bool, device=output.device) if live is None else live
        loss = None if loss is None else _column(loss.detach(), self.fits, output.device, torch.float64)
        self._update(it, output.detach(), keep.detach(), loss, live)

    def _update(self, it, output, keep, loss, live) -> None:
        raise NotImplementedError

    def _keep(self, take: torch.Tensor, it: torch.Tensor, keep: torch.Tensor) -> None:
        """Where `take` (B,): the kept iteration becomes `it` and the kept image `keep`."""
        self.best_iteration = torch.where(take, it, self.best_iteration)
        self.image = torch.where(take.view(-1, *[1] * (keep.dim() - 1)), keep, self.image)

    # Host side, at the loop's checks (each is a sync: the loop calls them only there).
    def stop_iterations(self) -> list[int | None]:
        """Per fit, the iteration at which the rule ends it (None: not decided)."""
        raise NotImplementedError

    def stop_iteration(self, b: int = 0) -> int | None:
        return self.stop_iterations()[b] if self.fits else None

    def should_stop(self, iteration: int, b: int = 0) -> bool:
        stop = self.stop_iteration(b)
        return stop is not None and iteration >= stop

    def chosen_iteration(self, b: int = 0) -> int | None:
        if not self.fits:
            return None
        chosen = int(self.best_iteration[b])
        return None if chosen < 0 else chosen

    def report(self, last_iteration: int, b: int = 0) -> dict:
        """Where the rule stands for fit b after it ran to `last_iteration`."""
        minimum = int(self.minimum_iteration[b]) if self.fits else NEVER
        return {
            "iteration": self.chosen_iteration(b),
            "minimum": None if minimum == NEVER else minimum,
            "stop_at": self.stop_iteration(b) if self.fits else None,
            "stopped": self.should_stop(last_iteration, b) if self.fits else False,
        }

    def kept_image(self, b: int = 0) -> torch.Tensor | None:
        """Fit b's kept image (1, ...), or None if the rule has chosen none."""
        return None if self.chosen_iteration(b) is None else self.image[b : b + 1]

    def snapshot(self, b: int) -> dict:
        """A real copy of fit b's state."""
        return {k: getattr(self, k)[b].clone() for k in self.STATE}

    def restore(self, b: int, saved: dict) -> None:
        for k in self.STATE:
            getattr(self, k)[b] = saved[k]

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.STATE} if self.fits else {}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


def bank(rules: list[StoppingRule]) -> StoppingRule:
    """One rule object watching every fit of a batch, from the fits' own rules (the same rule with the
    same settings; raises ValueError otherwise). The first object becomes the bank."""
    first = rules[0]
    for r in rules[1:]:
        if r.config() != first.config():
            raise ValueError(
                f"batched fits need the same stopping rules with the same settings: {first.name} differs between fits"
            )
    if len(rules) > 1:
        first.join(rules[1:])
    return first


class FixedStop(StoppingRule):
    """The paper's rule: stop after n iterations, return the image of iteration n."""

    name = "fixed"

    def __init__(self, n: int):
        super().__init__()
        if n <= 0:
            raise ValueError(f"fixed stop needs n > 0, got {n}")
        self.n = n

    def config(self) -> tuple:
        return (*super().config(), self.n)

    def _update(self, it, output, keep, loss, live) -> None:
        self._keep(live & (it <= self.n), it, keep)

    def stop_iterations(self) -> list[int | None]:
        return [self.n] * self.fits


class _MinimumTracker(StoppingRule):
    """Shared logic: track the minimum of a per-iteration statistic, keep the image `delay` iterations
    after it (or the latest one, if the fit ends sooner), and stop once `patience` iterations (and the
    delay) have passed without a new minimum. Branch-free on the device with torch.where."""

    STATE = StoppingRule.STATE + ("best_value",)

    def __init__(self, patience: int, start: int, delay: int = 0):
        super().__init__()
        if patience <= 0:
            raise ValueError(f"patience must be > 0, got {patience}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        self.patience, self.start_at, self.delay = patience, start, delay

    def config(self) -> tuple:
        return (*super().config(), self.start_at, self.delay)  # the patience may differ between fits

    def join(self, others: list[StoppingRule]) -> None:
        super().join(others)
        self.patiences = [self.patience] + [r.patience for r in others]

    def start(self, fits, image_shape, device) -> None:
        super().start(fits, image_shape, device)
        self.best_value = torch.full((fits,), float("inf"), device=device)
        patiences = getattr(self, "patiences", [self.patience] * fits)
        # How long after a minimum the rule still watches (and then stops): the patience, at least the delay.
        self.horizons = [max(p, self.delay) for p in patiences]
        self.horizon = torch.tensor(self.horizons, device=device)

    def _record(
        self,
        it: torch.Tensor,
        value: torch.Tensor,
        keep: torch.Tensor,
        counted: torch.Tensor,
        accept: torch.Tensor | None = None,
    ) -> None:
        """One value of the statistic per fit. Where `counted` is False (the fit stopped, the rule has not
        started or its window is not full) nothing changes; where `accept` is False the value cannot
        become a minimum but the kept image still follows the delay."""
        # Once the rule would have stopped it stays as it was, so a fit that runs on (recording every
        # rule) reports what a fit stopping at this rule would have returned.
        watching = it - self.minimum_iteration <= self.horizon
        better = (value < self.best_value) & watching & counted
        if accept is not None:
            better = better & accept
        self.best_value = torch.where(better, value, self.best_value)
        self.minimum_iteration = torch.where(better, it, self.minimum_iteration)
        self._keep(counted & (it <= self.minimum_iteration + self.delay), it, keep)

    def stop_iterations(self) -> list[int | None]:
        return [None if m == NEVER else m + h for m, h in zip(self.minimum_iteration.tolist(), self.horizons)]


class WindowedVarianceStop(_MinimumTracker):
    """ES-WMV (Wang et al., TMLR 2023): VAR(t) = (1/W) Σ_w ‖x_{t−w} − x̄‖² / N over the last W
    outputs; stop when VAR has not reached a new minimum for `patience` iterations.

    Kept incrementally in float64: with S = Σ x and Q = Σ ‖x‖², VAR = (Q − ‖S‖²/W) / (W·N), so each
    step adds the newest output and removes the oldest, O(N) per iteration; the window is a ring buffer
    (B, W, N) of float32 outputs (exact: outputs are float32), written at each fit's own slot.

    settle: the guard (rule "es-wmv"; None gives the published rule, "es-wmv-paper"). A minimum is
    accepted only while the loss has settled: its mean over the newer half of the window is at most
    `settle` (relative) below its mean over the older half. Early in a fit the outputs can vary little
    for a while (a plateau of the learning phase, before the details are fitted) while the loss is still
    falling fast; the published rule takes that trough as its minimum and stops hundreds of iterations
    before the peak.
    """

    name = "es-wmv"
    STATE = _MinimumTracker.STATE + ("buffer", "total", "total_sq", "count", "losses")

    def __init__(self, window: int = 100, patience: int = 1000, delay: int = 0, settle: float | None = None):
        super().__init__(patience, start=0, delay=delay)
        self.name = "es-wmv-paper" if settle is None else "es-wmv"
        self.window, self.settle = window, settle

    def config(self) -> tuple:
        return (*super().config(), self.window, self.settle)

    def start(self, fits, image_shape, device) -> None:
        super().start(fits, image_shape, device)
        n = int(torch.Size(image_shape).numel())
        self.buffer = torch.zeros(fits, self.window, n, device=device)
        self.total = torch.zeros(fits, n, dtype=torch.float64, device=device)
        self.total_sq = torch.zeros(fits, dtype=torch.float64, device=device)
        self.count = torch.zeros(fits, dtype=torch.long, device=device)
        self.losses = torch.zeros(fits, self.window, dtype=torch.float64, device=device)
        self.fit_index = torch.arange(fits, device=device)
        half = self.window // 2
        # Position k of the window ordered oldest first is slot (k + slot + 1) mod W: the older half is
        # k < W // 2. `ages[j]` is k for slot j when the newest output went to slot 0.
        self.ages = (torch.arange(self.window, device=device) - 1) % self.window
        self.half = half

    def _update(self, it, output, keep, loss, live) -> None:
        if self.settle is not None and loss is None:
            raise ValueError("the guarded es-wmv rule needs the loss of every iteration")
        b, slot = self.fit_index, self.count % self.window
        old32 = self.buffer[b, slot]
        x32 = torch.where(live[:, None], output.reshape(self.fits, -1).float(), old32)
        x, old = x32.double(), old32.double()
        self.total += x - old
        self.total_sq += x.square().sum(1) - old.square().sum(1)
        self.buffer[b, slot] = x32
        accept = None
        if self.settle is not None:
            self.losses[b, slot] = torch.where(live, loss, self.losses[b, slot])
            order = (self.ages[None, :] - slot[:, None]) % self.window  # (B, W): position, oldest first
            older = order < self.half
            older_mean = (self.losses * older).sum(1) / self.half
            newer_mean = (self.losses * ~older).sum(1) / (self.window - self.half)
            accept = older_mean - newer_mean <= self.settle * newer_mean
        self.count += live
        ready = self.count >= self.window
        var = (self.total_sq - self.total.square().sum(1) / self.window) / (self.window * x.shape[1])
        self.signal = torch.where(ready, var.float(), float("nan"))
        self._record(it, var.float(), keep, ready & live, accept)


class ExponentialVarianceStop(_MinimumTracker):
    """ES-EMV (same paper): δ = x − m; m += α·δ; v = (1 − α)(v + α‖δ‖²/N); minimum of v with patience,
    checked from iteration `start` on (m starts at each fit's first output)."""

    name = "es-emv"
    STATE = _MinimumTracker.STATE + ("mean", "var", "seen")

    def __init__(self, alpha: float = 0.1, patience: int = 1000, start: int = 100, delay: int = 0):
        super().__init__(patience, start, delay)
        self.alpha = alpha

    def config(self) -> tuple:
        return (*super().config(), self.alpha)

    def start(self, fits, image_shape, device) -> None:
        super().start(fits, image_shape, device)
        self.mean = torch.zeros(fits, *image_shape, device=device)
        self.var = torch.zeros(fits, device=device)
        self.seen = torch.zeros(fits, dtype=torch.bool, device=device)

    def _update(self, it, output, keep, loss, live) -> None:
        x = output.float()
        shape = (-1,) + (1,) * (x.dim() - 1)
        mean = torch.where(self.seen.view(shape), self.mean, x)
        delta = x - mean
        self.mean = torch.where(live.view(shape), mean + self.alpha * delta, self.mean)
        var = (1 - self.alpha) * (self.var + self.alpha * delta.square().flatten(1).mean(1))
        self.var = torch.where(live, var, self.var)
        self.seen = self.seen | live
        self.signal = self.var
        self._record(it, self.var, keep, live & (it >= self.start_at))


class DiscrepancyStop(StoppingRule):
    """Morozov's discrepancy principle: stop once the loss to the observation, averaged over the last
    `window` iterations, has fallen to `target`, the loss a fit that reproduced the clean image exactly
    would have (`clipped_noise_mse`). A fit that goes on below it is fitting the noise. The kept image is
    the one `delay` iterations after the crossing (the EMA's lag, as for the variance rules).

    target: expected MSE of the observation's noise, on the [0, 1] scale (σ² without clipping). Fits
    watched as one bank (`bank`) keep their own targets (fits of different images, stacked).
    """

    name = "discrepancy"
    STATE = StoppingRule.STATE + ("losses", "count")

    def __init__(self, target: float, window: int = 25, delay: int = 0, start_at: int = 0):
        super().__init__()
        self._check_target(target)
        if window <= 0 or delay < 0 or start_at < 0:
            raise ValueError(f"window must be > 0, delay and start_at >= 0, got {window}, {delay}, {start_at}")
        self.target, self.window, self.delay = float(target), window, delay
        self.start_at = start_at  # no crossing counts before this iteration
        self.targets = [self.target]  # per fit, once joined

    @staticmethod
    def _check_target(target: float) -> None:
        if not target > 0:
            raise ValueError(f"discrepancy target must be > 0, got {target}")

    def config(self) -> tuple:
        return (*super().config(), self.window, self.delay, self.start_at)

    def join(self, others: list[StoppingRule]) -> None:
        self.targets = [*self.targets, *(t for other in others for t in other.targets)]

    def start(self, fits, image_shape, device) -> None:
        super().start(fits, image_shape, device)
        targets = self.targets if len(self.targets) == fits else [self.target] * fits
        self.target_of = torch.tensor(targets, dtype=torch.float64, device=device)
        self.losses = torch.zeros(fits, self.window, dtype=torch.float64, device=device)
        self.count = torch.zeros(fits, dtype=torch.long, device=device)
        self.fit_index = torch.arange(fits, device=device)

    def _update(self, it, output, keep, loss, live) -> None:
        if loss is None:
            raise ValueError("the discrepancy rule needs the loss of every iteration")
        b, slot = self.fit_index, self.count % self.window
        first = self.count == 0
        self.losses[b, slot] = torch.where(live, loss, self.losses[b, slot])
        self.count += live
        ready = self.count >= self.window
        mean = self.losses.mean(1)
        self.signal = torch.where(ready, mean.float(), float("nan"))
        # Branch-free on the device: the first crossing is kept, later ones change nothing.
        crossing = ready & live & (it >= self.start_at) & (mean <= self.target_of) & (self.minimum_iteration == NEVER)
        self.minimum_iteration = torch.where(crossing, it, self.minimum_iteration)
        # The kept image follows the fit from its first iteration until `delay` after the crossing.
        self._keep(live & (first | (ready & (it <= self.minimum_iteration + self.delay))), it, keep)

    def stop_iterations(self) -> list[int | None]:
        return [None if c == NEVER else c + self.delay for c in self.minimum_iteration.tolist()]

    def report(self, last_iteration: int, b: int = 0) -> dict:
        return {**super().report(last_iteration, b), "target": float(self.target_of[b]) if self.fits else self.target}


class RiskStop(DiscrepancyStop):
    """For a fit whose data term is a risk estimate (`dip.risk`: SURE, PURE): stop once the estimate,
    averaged over the last `window` iterations, falls to 0, and keep the image of that iteration.

    The estimate is unbiased for the error of a map that does not depend on the observation, and an error
    is never negative; the fitted network's weights do depend on it, and as the fit goes on the optimiser
    lowers the estimate through its divergence term (the map's divergence with respect to its input turns
    negative) while the image moves away from the clean one. The first time the windowed estimate reaches 0
    it can no longer be an error: past there it measures nothing. It is the discrepancy principle with the
    divergence correction: ‖y − f‖²/N + 2σ²·div f/N ≤ σ² for SURE. No patience (the fit stops at the
    crossing) and no lag (`delay` 0: the kept image is the EMA image of the crossing's iteration).
    Window 25 and delay 0 were chosen among windows 25, 50, 100 and delays 0 to 99 on three held-out
    crops (docs/defaults.md).

    `start_at`: no crossing counts before it. The EMA image begins as the fit's first output and forgets it
    by a factor β per iteration, so until about 3·β/(1 − β) iterations (`make_rule` passes three EMA lags,
    297 at β = 0.99, where β^t ≈ 5 %) it is not yet an average of recent outputs; a small image whose
    estimate falls to 0 earlier (a 32×32 crop with σ over-estimated) would otherwise return a blurred start.
    """

    name = "risk"

    def __init__(self, window: int = 25, delay: int = 0, start_at: int = 0):
        # Target 0: the estimate of a mean squared error, which no image's error can go below.
        super().__init__(0.0, window, delay, start_at)

    @staticmethod
    def _check_target(target: float) -> None:
        pass  # 0 is this rule's target, not a missing noise level


class HoldoutStop(_MinimumTracker):
    """Validation on held-out pixels: the fit holds a random few per cent of the observed pixels out of its
    loss (`dip.operators.HeldOut`), and this rule scores the image the fit would return (the EMA image when
    it keeps one) on them every iteration. Their error is ‖H(x_t) − x‖² + ‖n‖² − 2⟨H(x_t) − x, n⟩ over the
    held-out pixels: the noise term ‖n‖² is the same at every iteration, and since the fit never saw
    those pixels' noise, the cross term stays near zero, so the signal follows the restored image's own
    error there and is least where the image is best. No noise level, no ground truth, no lag: the kept
    image is the very image scored, so `delay` is 0. The rule stops `patience` iterations after the last
    minimum. Applies to every task (the held-out pixels are observed ones). In a batch each fit holds out
    its own pixels: the bank scores each fit with its own operator.
    """

    name = "holdout"

    def __init__(self, operator, observed: torch.Tensor, patience: int = 1000):
        super().__init__(patience, start=0, delay=0)
        if not hasattr(operator, "heldout_error"):
            raise ValueError("the holdout rule needs a fit that holds pixels out of its loss (dip.operators.HeldOut)")
        self.operators, self.observed = [operator], [observed]

    def join(self, others: list[HoldoutStop]) -> None:
        super().join(others)
        self.operators = [r.operators[0] for r in [self, *others]]
        self.observed = [r.observed[0] for r in [self, *others]]

    def start(self, fits, image_shape, device) -> None:
        super().start(fits, image_shape, device)
        self.observed = [o.to(device) for o in self.observed]
        self.operators = [op.to(device) for op in self.operators]

    def _update(self, it, output, keep, loss, live) -> None:
        if len(self.operators) == 1:
            value = self.operators[0].heldout_error(keep, self.observed[0])
        else:
            value = torch.cat(
                [op.heldout_error(keep[b : b + 1], y) for b, (op, y) in enumerate(zip(self.operators, self.observed))]
            )
        value = value.float().reshape(self.fits)
        self.signal = value
        self._record(it, value, keep, live)


def clipped_noise_mse(observed: torch.Tensor, sigma: float) -> float:
    """E[(clip(x + σn, 0, 1) − x)²] averaged over the image, n ~ N(0, 1): the discrepancy a perfect fit
    leaves. x is unknown, so the observation smoothed by a 5×5 Gaussian (σ 1 px) stands in for it; for
    a pixel x with a = −x/σ, b = (1 − x)/σ the expectation is
    σ²·[Φ(b) − Φ(a) − bφ(b) + aφ(a) + a²Φ(a) + b²(1 − Φ(b))]: the unclipped part plus the two clipped tails."""
    import math

    from dip.operators import smoothed

    x = smoothed(observed).clamp(0, 1)
    a, b = -x / sigma, (1 - x) / sigma
    cdf = lambda t: 0.5 * (1 + torch.erf(t / math.sqrt(2)))  # noqa: E731
    pdf = lambda t: torch.exp(-t * t / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    second_moment = cdf(b) - cdf(a) - b * pdf(b) + a * pdf(a) + a * a * cdf(a) + b * b * (1 - cdf(b))
    return float(sigma**2 * second_moment.mean())


def estimate_noise_sigma(observed: torch.Tensor) -> float:
    """The noise level (std, [0, 1] scale) of one noisy image, by scikit-image's wavelet estimator
    (`skimage.restoration.estimate_sigma`, averaged over channels)."""
    from skimage.restoration import estimate_sigma

    image = observed[0].detach().float().cpu().numpy().transpose(1, 2, 0)
    return float(estimate_sigma(image, channel_axis=-1, average_sigmas=True))


def ema_delay(ema: float) -> int:
    """The mean lag, in iterations, of an EMA with weight `ema` (0: no EMA, no lag)."""
    return round(ema / (1 - ema)) if ema else 0


SETTLE = 0.05  # es-wmv's guard: chosen on config/heldout.yaml (64², σ 25) among 0.02, 0.05, 0.1 (docs/guide)


def default_patience(iterations: int, rule: str) -> int | None:
    """How long `rule` waits for a new minimum unless told (`RuleSpec.patience`: a tenth of the budget for
    the holdout rule, a fifth for the variance rules); None for a rule that does not wait. The published 1000
    iterations outlast most of a 3000-iteration fit, so that a rule could save nothing there; the patience
    scales with the budget instead. The holdout rule's was measured on the recorded signals of 73 held-out
    fits (docs/defaults.md): a tenth returned the same image as a fifth on every one of them (a twentieth
    lost up to 0.36 dB on deblurring)."""
    share = RULES[rule].patience
    return None if share is None else max(1, iterations // share)


@dataclass(frozen=True)
class RuleRequest:
    """What `make_rule` was asked for, as each registry entry's `build` takes it: the fit's budget, ES-WMV's
    window (and ES-EMV's start), the variance rules' patience, the kept image's lag behind the minimum
    (`ema_delay`), the discrepancy rule's target loss, the holdout rule's (HeldOut operator, observation) and
    whether the fit's data term is a risk estimate (the risk rule's need)."""

    iterations: int
    window: int
    patience: int | None
    delay: int
    discrepancy: float | None
    heldout: tuple | None
    risk: bool = False


def _discrepancy(r: RuleRequest) -> StoppingRule:
    if r.discrepancy is None:
        raise ValueError("the discrepancy rule needs a noise level: it applies to noisy observations only")
    return DiscrepancyStop(r.discrepancy, delay=r.delay)


def _holdout(r: RuleRequest) -> StoppingRule:
    if r.heldout is None:
        raise ValueError("the holdout rule needs a fit that holds pixels out of its loss (--holdout)")
    return HoldoutStop(*r.heldout, patience=r.patience)


def _risk(r: RuleRequest) -> StoppingRule:
    if not r.risk:
        raise ValueError("the risk rule needs a risk-estimate data term (SURE or PURE: --loss sure)")
    return RiskStop(start_at=3 * r.delay)  # r.delay: the EMA's mean lag (`ema_delay`)


@dataclass(frozen=True)
class Drawing:
    """How the pipeline's figures draw a rule (`dip.pipeline.figures`): `marker` (a matplotlib marker) on
    a learning curve at the iteration the rule keeps, None where that is the curve's end (the fixed
    budget); `color` of its detection-gap histogram; `label` in legends."""

    marker: str | None
    color: str
    label: str


@dataclass(frozen=True)
class RuleSpec:
    """One stopping rule of the registry `RULES`: its class, how `make_rule` builds it from a request, how
    figures draw it, and for a rule that waits for a new minimum, its default patience as the budget's
    share: `patience` 5 waits a fifth of the budget (`default_patience`)."""

    cls: type[StoppingRule]
    build: Callable[[RuleRequest], StoppingRule]
    drawing: Drawing
    patience: int | None = None


# The stopping rules by name (`dip fit --stop NAME`, `dip.restore(stop=NAME)`, summary.json's `stops`): the one
# list of them. Adding a rule: its class above and one entry here.
RULES: dict[str, RuleSpec] = {
    "fixed": RuleSpec(FixedStop, lambda r: FixedStop(r.iterations), Drawing(None, "tab:gray", "fixed")),
    "es-wmv": RuleSpec(
        WindowedVarianceStop,
        lambda r: WindowedVarianceStop(r.window, r.patience, r.delay, settle=SETTLE),
        Drawing("v", "tab:blue", "es-wmv"),
        patience=5,
    ),
    "es-wmv-paper": RuleSpec(
        WindowedVarianceStop,
        lambda r: WindowedVarianceStop(r.window, r.patience, r.delay, settle=None),
        Drawing("<", "tab:orange", "es-wmv-paper"),
        patience=5,
    ),
    "es-emv": RuleSpec(
        ExponentialVarianceStop,
        lambda r: ExponentialVarianceStop(patience=r.patience, start=r.window, delay=r.delay),
        Drawing("^", "tab:green", "es-emv"),
        patience=5,
    ),
    "discrepancy": RuleSpec(DiscrepancyStop, _discrepancy, Drawing("D", "tab:red", "discrepancy")),
    "holdout": RuleSpec(HoldoutStop, _holdout, Drawing("s", "tab:purple", "holdout"), patience=10),
    "risk": RuleSpec(RiskStop, _risk, Drawing("P", "tab:brown", "risk")),
}
# The oracle is drawn beside the rules but is none: it needs the ground truth (`oracle_iteration`).
ORACLE_DRAWING = Drawing("*", "black", "oracle (analysis)")


def drawing(name: str) -> Drawing:
    """How figures draw rule `name`, or the oracle ("oracle"); KeyError for another name."""
    return ORACLE_DRAWING if name == "oracle" else RULES[name].drawing


def make_rule(
    name: str,
    iterations: int,
    window: int = 100,
    patience: int | None = None,
    ema: float = 0.0,
    discrepancy: float | None = None,
    heldout: tuple | None = None,
    risk: bool = False,
) -> StoppingRule:
    """The rule `name` of `RULES`; `window` is ES-WMV's window and the iteration ES-EMV starts checking at;
    `patience` defaults to the rule's `default_patience` (a tenth of the budget for the holdout rule, a
    fifth for the variance rules); `ema` is the fit's output EMA weight,
    which sets how long after the minimum (or crossing) the kept EMA image is taken; `discrepancy`: the
    discrepancy rule's target loss (`clipped_noise_mse`); `heldout`: the holdout rule's (HeldOut operator,
    observation); `risk`: whether the fit's loss is a risk estimate (`dip.risk`), which the risk rule
    needs. Raises ValueError for an unknown name or a rule missing what it needs.

    Outputs that settle until iteration 40 and then grow noisy: ES-WMV finds the minimum of their windowed
    variance and stops `patience` iterations after it.

    >>> rule = make_rule("es-wmv-paper", iterations=100, window=5, patience=10)
    >>> g = torch.Generator().manual_seed(0)
    >>> for t in range(1, 101):
    ...     x = torch.full((1, 1, 4, 4), 0.5) + abs(t - 40) / 400 * torch.randn(1, 1, 4, 4, generator=g)
    ...     rule.update(t, x, x)
    ...     if rule.should_stop(t):
    ...         break
    >>> rule.report(t)
    {'iteration': 42, 'minimum': 42, 'stop_at': 52, 'stopped': True}
    """
    if name not in RULES:
        raise ValueError(f"unknown stopping rule {name!r}; choose one of {', '.join(RULES)}")
    patience = default_patience(iterations, name) if patience is None else patience
    return RULES[name].build(RuleRequest(iterations, window, patience, ema_delay(ema), discrepancy, heldout, risk))


HOLDOUT = 0.05  # the fraction of observed pixels `--stop holdout` holds out unless told (docs/guide/stopping.md: how it was chosen)


def oracle_iteration(history: pd.DataFrame, column: str) -> int:
    """Analysis upper bound, never a stopping rule: the iteration of best PSNR against the ground truth."""
    return int(history.loc[history[column].idxmax(), "iteration"])
