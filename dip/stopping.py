"""Stopping rules that need no ground truth. Each watches the raw network outputs, remembers the
image to return at its chosen iteration (the EMA image when the fit keeps one), and says when it
would stop.

With an output EMA (weight β) the variance rules keep the EMA image `delay` = β/(1−β) iterations after
the minimum (99 for β = 0.99): that is the EMA's mean lag, so the kept image is an average of outputs
centred on the minimum, where ES-WMV returns the single raw output. Returning the EMA image at the
minimum itself would average outputs from ~100 iterations earlier, before the fit had converged.

All per-iteration work stays on the device: a rule never forces a host sync; `fit` asks `should_stop`
only at its periodic host checks.
"""
from __future__ import annotations

import pandas as pd
import torch


class StoppingRule:
    """Base: a rule observes (iteration, output, image_to_keep) every iteration."""

    name = "rule"

    def __init__(self) -> None:
        self.best_iteration: torch.Tensor | None = None  # device scalar: iteration of the chosen image
        self.image: torch.Tensor | None = None           # the image kept at that iteration
        self.signal: torch.Tensor | None = None          # the statistic at the last update (NaN if none)
        self.minimum_iteration: torch.Tensor | None = None  # device scalar: where the statistic was least

    def update(self, iteration: int, output: torch.Tensor, keep: torch.Tensor,
               loss: torch.Tensor | None = None) -> None:
        """One iteration: its raw output, the image to return if this iteration is chosen (the EMA image
        when the fit keeps one) and its loss to the observation (a device scalar)."""
        raise NotImplementedError

    NEVER = 2 ** 62  # "no minimum (or crossing) yet", as a device integer: no host branch needed

    def should_stop(self, iteration: int) -> bool:
        stop = self.stop_iteration()
        return stop is not None and iteration >= stop

    def chosen_iteration(self) -> int | None:
        return None if self.best_iteration is None else int(self.best_iteration)

    def stop_iteration(self) -> int | None:
        """The iteration at which the rule ends a fit (the fit checks it every `check_every` iterations)."""
        raise NotImplementedError

    def report(self, last_iteration: int) -> dict:
        """Where the rule stands after a fit that ran to `last_iteration`."""
        minimum = None if self.minimum_iteration is None else int(self.minimum_iteration)
        minimum = None if minimum == self.NEVER else minimum
        return {"iteration": self.chosen_iteration(), "minimum": minimum, "stop_at": self.stop_iteration(),
                "stopped": self.should_stop(last_iteration)}

    def state_dict(self) -> dict:
        return {k: v for k, v in vars(self).items()}

    def load_state_dict(self, state: dict) -> None:
        vars(self).update(state)


class FixedStop(StoppingRule):
    """The paper's rule: stop after n iterations, return the image of iteration n."""

    name = "fixed"

    def __init__(self, n: int):
        super().__init__()
        if n <= 0:
            raise ValueError(f"fixed stop needs n > 0, got {n}")
        self.n = n

    def update(self, iteration: int, output: torch.Tensor, keep: torch.Tensor, loss=None) -> None:
        if iteration <= self.n:
            self.best_iteration = torch.tensor(iteration)
            self.image = keep.detach().clone()

    def stop_iteration(self) -> int | None:
        return self.n


class _MinimumTracker(StoppingRule):
    """Shared logic: track the minimum of a per-iteration statistic, keep the image `delay` iterations
    after it (or the latest one, if the fit ends sooner), and stop once `patience` iterations (and the
    delay) have passed without a new minimum. Branch-free on the device with torch.where."""

    def __init__(self, patience: int, start: int, delay: int = 0):
        super().__init__()
        if patience <= 0:
            raise ValueError(f"patience must be > 0, got {patience}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        self.patience, self.start, self.delay = patience, start, delay
        self.best_value: torch.Tensor | None = None

    def _record(self, iteration: int, value: torch.Tensor, keep: torch.Tensor,
                accept: torch.Tensor | bool = True) -> None:
        """One value of the statistic; `accept` False (a device bool) keeps it from becoming a minimum."""
        self.signal = value
        if iteration < self.start:
            return
        it = torch.tensor(iteration, device=value.device)
        if self.best_value is None:
            self.best_value = torch.tensor(float("inf"), device=value.device)
            self.minimum_iteration = torch.tensor(self.NEVER, device=value.device)
            self.best_iteration, self.image = it, keep.detach().clone()
        # Once the rule would have stopped it stays as it was, so a fit that runs on (recording every
        # rule) reports what a fit stopping at this rule would have returned.
        live = it - self.minimum_iteration <= max(self.patience, self.delay)
        better = (value < self.best_value) & live & accept
        self.best_value = torch.where(better, value, self.best_value)
        self.minimum_iteration = torch.where(better, it, self.minimum_iteration)
        take = it <= self.minimum_iteration + self.delay
        self.best_iteration = torch.where(take, it, self.best_iteration)
        self.image = torch.where(take, keep.detach(), self.image)

    def stop_iteration(self) -> int | None:
        minimum = None if self.minimum_iteration is None else int(self.minimum_iteration)
        return None if minimum in (None, self.NEVER) else minimum + max(self.patience, self.delay)


class WindowedVarianceStop(_MinimumTracker):
    """ES-WMV (Wang et al., TMLR 2023): VAR(t) = (1/W) Σ_w ‖x_{t−w} − x̄‖² / N over the last W
    outputs; stop when VAR has not reached a new minimum for `patience` iterations.

    Kept incrementally in float64: with S = Σ x and Q = Σ ‖x‖², VAR = (Q − ‖S‖²/W) / (W·N), so each
    step adds the newest output and removes the oldest, O(N) per iteration.

    settle: the guard (rule "es-wmv"; None gives the published rule, "es-wmv-paper"). A minimum is
    accepted only while the loss has settled: its mean over the newer half of the window is at most
    `settle` (relative) below its mean over the older half. Early in a fit the outputs can vary little
    for a while (a plateau of the learning phase, before the details are fitted) while the loss is still
    falling fast; the published rule takes that trough as its minimum and stops hundreds of iterations
    before the peak.
    """

    name = "es-wmv"

    def __init__(self, window: int = 100, patience: int = 1000, delay: int = 0, settle: float | None = None):
        super().__init__(patience, start=0, delay=delay)
        self.name = "es-wmv-paper" if settle is None else "es-wmv"
        self.window, self.settle = window, settle
        self.losses: torch.Tensor | None = None
        self.buffer: torch.Tensor | None = None
        self.total: torch.Tensor | None = None
        self.total_sq: torch.Tensor | None = None
        self.count = 0

    def update(self, iteration: int, output: torch.Tensor, keep: torch.Tensor, loss=None) -> None:
        x = output.detach().reshape(-1).double()
        if self.buffer is None:
            # Outputs are float32: storing them as such is exact and halves the window's memory.
            self.buffer = torch.zeros(self.window, x.numel(), dtype=torch.float32, device=x.device)
            self.total = torch.zeros_like(x)
            self.total_sq = torch.zeros((), dtype=torch.float64, device=x.device)
        slot = self.count % self.window
        old = self.buffer[slot].double()
        self.total += x - old
        self.total_sq += x.square().sum() - old.square().sum()
        self.buffer[slot] = x
        accept = True
        if self.settle is not None:
            if loss is None:
                raise ValueError("the guarded es-wmv rule needs the loss of every iteration")
            if self.losses is None:
                self.losses = torch.zeros(self.window, dtype=torch.float64, device=x.device)
            self.losses[slot] = loss.detach().double().reshape(())
            ordered = torch.roll(self.losses, -(slot + 1))  # oldest first
            half = self.window // 2
            older, newer = ordered[:half].mean(), ordered[half:].mean()
            accept = older - newer <= self.settle * newer
        self.count += 1
        if self.count < self.window:
            self.signal = torch.full((), float("nan"), device=x.device)
            return
        var = (self.total_sq - self.total.square().sum() / self.window) / (self.window * x.numel())
        self._record(iteration, var.float(), keep, accept)


class ExponentialVarianceStop(_MinimumTracker):
    """ES-EMV (same paper): δ = x − m; m += α·δ; v = (1 − α)(v + α‖δ‖²/N); minimum of v with patience,
    checked from iteration `start` on."""

    name = "es-emv"

    def __init__(self, alpha: float = 0.1, patience: int = 1000, start: int = 100, delay: int = 0):
        super().__init__(patience, start, delay)
        self.alpha = alpha
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None

    def update(self, iteration: int, output: torch.Tensor, keep: torch.Tensor, loss=None) -> None:
        x = output.detach().float()
        if self.mean is None:
            self.mean, self.var = x.clone(), torch.zeros((), device=x.device)
        delta = x - self.mean
        self.mean = self.mean + self.alpha * delta
        self.var = (1 - self.alpha) * (self.var + self.alpha * delta.square().mean())
        self._record(iteration, self.var, keep)


class DiscrepancyStop(StoppingRule):
    """Morozov's discrepancy principle: stop once the loss to the observation, averaged over the last
    `window` iterations, has fallen to `target`, the loss a fit that reproduced the clean image exactly
    would have (`clipped_noise_mse`). A fit that goes on below it is fitting the noise. The kept image is
    the one `delay` iterations after the crossing (the EMA's lag, as for the variance rules).

    target: expected MSE of the observation's noise, on the [0, 1] scale (σ² without clipping).
    """

    name = "discrepancy"

    def __init__(self, target: float, window: int = 25, delay: int = 0):
        super().__init__()
        if not target > 0:
            raise ValueError(f"discrepancy target must be > 0, got {target}")
        if window <= 0 or delay < 0:
            raise ValueError(f"window must be > 0 and delay >= 0, got {window}, {delay}")
        self.target, self.window, self.delay = float(target), window, delay
        self.losses: torch.Tensor | None = None
        self.crossed: torch.Tensor | None = None
        self.count = 0

    def update(self, iteration: int, output: torch.Tensor, keep: torch.Tensor, loss=None) -> None:
        if loss is None:
            raise ValueError("the discrepancy rule needs the loss of every iteration")
        loss = loss.detach().double().reshape(())
        if self.losses is None:
            self.losses = torch.zeros(self.window, dtype=torch.float64, device=loss.device)
            self.crossed = torch.tensor(self.NEVER, device=loss.device)
            self.best_iteration, self.image = torch.tensor(iteration, device=loss.device), keep.detach().clone()
        self.losses[self.count % self.window] = loss
        self.count += 1
        if self.count < self.window:
            self.signal = torch.full((), float("nan"), device=loss.device)
            return
        mean = self.losses.mean()
        self.signal = mean.float()
        it = torch.tensor(iteration, device=loss.device)
        # Branch-free on the device: the first crossing is kept, later ones change nothing.
        self.crossed = torch.where((mean <= self.target) & (self.crossed == self.NEVER), it, self.crossed)
        take = it <= self.crossed + self.delay
        self.best_iteration = torch.where(take, it, self.best_iteration)
        self.image = torch.where(take, keep.detach(), self.image)
        self.minimum_iteration = self.crossed

    def stop_iteration(self) -> int | None:
        crossed = None if self.crossed is None else int(self.crossed)
        return None if crossed in (None, self.NEVER) else crossed + self.delay

    def report(self, last_iteration: int) -> dict:
        return {**super().report(last_iteration), "target": self.target}


class HoldoutStop(_MinimumTracker):
    """Validation on held-out pixels: the fit holds a random few per cent of the observed pixels out of its
    loss (`dip.operators.HeldOut`), and this rule scores the image the fit would return (the EMA image when
    it keeps one) on them every iteration. Their error is ‖H(x_t) − x‖² + ‖n‖² − 2⟨H(x_t) − x, n⟩ over the
    held-out pixels: the noise term ‖n‖² is the same at every iteration, and since the fit never saw
    those pixels' noise, the cross term stays near zero, so the signal follows the restored image's own
    error there and is least where the image is best. No noise level, no ground truth, no lag: the kept
    image is the very image scored, so `delay` is 0. The rule stops `patience` iterations after the last
    minimum. Applies to every task (the held-out pixels are observed ones).
    """

    name = "holdout"

    def __init__(self, operator, observed: torch.Tensor, patience: int = 1000):
        super().__init__(patience, start=0, delay=0)
        if not hasattr(operator, "heldout_error"):
            raise ValueError("the holdout rule needs a fit that holds pixels out of its loss (dip.operators.HeldOut)")
        self.operator, self.observed = operator, observed

    def update(self, iteration: int, output: torch.Tensor, keep: torch.Tensor, loss=None) -> None:
        if self.observed.device != keep.device:  # once, on the first iteration on an accelerator
            self.observed = self.observed.to(keep.device)
        self._record(iteration, self.operator.heldout_error(keep.detach(), self.observed).float(), keep)

    # The operator and observation are the fit's, not the rule's state: backtracking and checkpoints
    # save and restore only what the rule learnt.
    def state_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if k not in ("operator", "observed")}


def clipped_noise_mse(observed: torch.Tensor, sigma: float) -> float:
    """E[(clip(x + σn, 0, 1) − x)²] averaged over the image, n ~ N(0, 1): the discrepancy a perfect fit
    leaves. x is unknown, so the observation smoothed by a 5×5 Gaussian (σ 1 px) stands in for it; for
    a pixel x with a = −x/σ, b = (1 − x)/σ the expectation is
    σ²·[Φ(b) − Φ(a) − bφ(b) + aφ(a) + a²Φ(a) + b²(1 − Φ(b))]: the unclipped part plus the two clipped tails."""
    import math

    import torch.nn.functional as F

    x = observed.double()
    taps = torch.exp(-torch.arange(-2, 3, dtype=torch.float64) ** 2 / 2)
    kernel = (taps[:, None] * taps[None, :] / taps.sum() ** 2).to(x.device)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel.expand(c, 1, 5, 5), groups=c).clamp(0, 1)
    a, b = -x / sigma, (1 - x) / sigma
    cdf = lambda t: 0.5 * (1 + torch.erf(t / math.sqrt(2)))  # noqa: E731
    pdf = lambda t: torch.exp(-t * t / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    second_moment = cdf(b) - cdf(a) - b * pdf(b) + a * pdf(a) + a * a * cdf(a) + b * b * (1 - cdf(b))
    return float(sigma ** 2 * second_moment.mean())


def estimate_noise_sigma(observed: torch.Tensor) -> float:
    """The noise level (std, [0, 1] scale) of one noisy image, by scikit-image's wavelet estimator
    (`skimage.restoration.estimate_sigma`, averaged over channels)."""
    from skimage.restoration import estimate_sigma

    image = observed[0].detach().float().cpu().numpy().transpose(1, 2, 0)
    return float(estimate_sigma(image, channel_axis=-1, average_sigmas=True))


def ema_delay(ema: float) -> int:
    """The mean lag, in iterations, of an EMA with weight `ema` (0: no EMA, no lag)."""
    return round(ema / (1 - ema)) if ema else 0


SETTLE = 0.05  # es-wmv's guard: chosen on config/heldout.yaml (64², σ 25) among 0.02, 0.05, 0.1 (README)

def default_patience(iterations: int) -> int:
    """A fifth of the budget: the published 1000 iterations outlast most of a 3000-iteration fit, so that a
    rule could save nothing there; the patience scales with the budget instead."""
    return max(1, iterations // 5)


def make_rule(name: str, iterations: int, window: int = 100, patience: int | None = None, ema: float = 0.0,
              discrepancy: float | None = None, heldout: tuple | None = None) -> StoppingRule:
    """A rule by name; `window` is ES-WMV's window and the iteration ES-EMV starts checking at; `patience`
    defaults to a fifth of the budget (`default_patience`); `ema` is
    the fit's output EMA weight, which sets how long after the minimum (or crossing) the kept EMA image is
    taken; `discrepancy`: the discrepancy rule's target loss (`clipped_noise_mse`); `heldout`: the holdout
    rule's (HeldOut operator, observation)."""
    if name == "discrepancy":
        if discrepancy is None:
            raise ValueError("the discrepancy rule needs a noise level: it applies to noisy observations only")
        return DiscrepancyStop(discrepancy, delay=ema_delay(ema))
    patience = default_patience(iterations) if patience is None else patience
    if name == "holdout":
        if heldout is None:
            raise ValueError("the holdout rule needs a fit that holds pixels out of its loss (--holdout)")
        return HoldoutStop(*heldout, patience=patience)
    if name == "fixed":
        return FixedStop(iterations)
    if name in ("es-wmv", "es-wmv-paper"):
        return WindowedVarianceStop(window, patience, ema_delay(ema), settle=SETTLE if name == "es-wmv" else None)
    if name == "es-emv":
        return ExponentialVarianceStop(patience=patience, start=window, delay=ema_delay(ema))
    raise ValueError(f"unknown stopping rule {name!r}; choose one of {', '.join(RULES)}")


RULES = ("fixed", "es-wmv", "es-wmv-paper", "es-emv", "discrepancy", "holdout")
HOLDOUT = 0.05  # the fraction of observed pixels `--stop holdout` holds out unless told (README: how it was chosen)


def oracle_iteration(history: pd.DataFrame, column: str) -> int:
    """Analysis upper bound, never a stopping rule: the iteration of best PSNR against the ground truth."""
    return int(history.loc[history[column].idxmax(), "iteration"])
