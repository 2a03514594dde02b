"""Stopping rules that need no ground truth. Each watches the raw network outputs, remembers the
image to return at its chosen iteration (the EMA image when the fit keeps one), and says when it
would stop. All per-iteration work stays on the device: a rule never forces a host sync; `fit`
asks `should_stop` only at its periodic host checks.
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

    def update(self, iteration: int, output: torch.Tensor, keep: torch.Tensor) -> None:
        raise NotImplementedError

    def should_stop(self, iteration: int) -> bool:
        raise NotImplementedError

    def chosen_iteration(self) -> int | None:
        return None if self.best_iteration is None else int(self.best_iteration)

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

    def update(self, iteration: int, output: torch.Tensor, keep: torch.Tensor) -> None:
        if iteration <= self.n:
            self.best_iteration = torch.tensor(iteration)
            self.image = keep.detach().clone()

    def should_stop(self, iteration: int) -> bool:
        return iteration >= self.n


class _MinimumTracker(StoppingRule):
    """Shared logic: track the minimum of a per-iteration statistic and stop after `patience`
    iterations without a new minimum. Minimum and image update branch-free with torch.where."""

    def __init__(self, patience: int, start: int):
        super().__init__()
        if patience <= 0:
            raise ValueError(f"patience must be > 0, got {patience}")
        self.patience, self.start = patience, start
        self.best_value: torch.Tensor | None = None

    def _record(self, iteration: int, value: torch.Tensor, keep: torch.Tensor) -> None:
        self.signal = value
        if iteration < self.start:
            return
        it = torch.tensor(iteration, device=value.device)
        if self.best_value is None:
            self.best_value, self.best_iteration, self.image = value, it, keep.detach().clone()
            return
        better = value < self.best_value
        self.best_value = torch.where(better, value, self.best_value)
        self.best_iteration = torch.where(better, it, self.best_iteration)
        self.image = torch.where(better, keep.detach(), self.image)

    def should_stop(self, iteration: int) -> bool:
        return self.best_iteration is not None and iteration - int(self.best_iteration) >= self.patience


class WindowedVarianceStop(_MinimumTracker):
    """ES-WMV (Wang et al., TMLR 2023): VAR(t) = (1/W) Σ_w ‖x_{t−w} − x̄‖² / N over the last W
    outputs; stop when VAR has not reached a new minimum for `patience` iterations.

    Kept incrementally in float64: with S = Σ x and Q = Σ ‖x‖², VAR = (Q − ‖S‖²/W) / (W·N), so each
    step adds the newest output and removes the oldest, O(N) per iteration.
    """

    name = "es-wmv"

    def __init__(self, window: int = 100, patience: int = 1000):
        super().__init__(patience, start=0)
        self.window = window
        self.buffer: torch.Tensor | None = None
        self.total: torch.Tensor | None = None
        self.total_sq: torch.Tensor | None = None
        self.count = 0

    def update(self, iteration: int, output: torch.Tensor, keep: torch.Tensor) -> None:
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
        self.count += 1
        if self.count < self.window:
            self.signal = torch.full((), float("nan"), device=x.device)
            return
        var = (self.total_sq - self.total.square().sum() / self.window) / (self.window * x.numel())
        self._record(iteration, var.float(), keep)


class ExponentialVarianceStop(_MinimumTracker):
    """ES-EMV (same paper): δ = x − m; m += α·δ; v = (1 − α)(v + α‖δ‖²/N); minimum of v with patience,
    checked from iteration `start` on."""

    name = "es-emv"

    def __init__(self, alpha: float = 0.1, patience: int = 1000, start: int = 100):
        super().__init__(patience, start)
        self.alpha = alpha
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None

    def update(self, iteration: int, output: torch.Tensor, keep: torch.Tensor) -> None:
        x = output.detach().float()
        if self.mean is None:
            self.mean, self.var = x.clone(), torch.zeros((), device=x.device)
        delta = x - self.mean
        self.mean = self.mean + self.alpha * delta
        self.var = (1 - self.alpha) * (self.var + self.alpha * delta.square().mean())
        self._record(iteration, self.var, keep)


def make_rule(name: str, iterations: int, window: int = 100, patience: int = 1000) -> StoppingRule:
    """A rule by name; `window` is ES-WMV's window and the iteration ES-EMV starts checking at."""
    if name == "fixed":
        return FixedStop(iterations)
    if name == "es-wmv":
        return WindowedVarianceStop(window, patience)
    if name == "es-emv":
        return ExponentialVarianceStop(patience=patience, start=window)
    raise ValueError(f"unknown stopping rule {name!r}; choose fixed, es-wmv or es-emv")


RULES = ("fixed", "es-wmv", "es-emv")


def oracle_iteration(history: pd.DataFrame, column: str) -> int:
    """Analysis upper bound, never a stopping rule: the iteration of best PSNR against the ground truth."""
    return int(history.loc[history[column].idxmax(), "iteration"])
