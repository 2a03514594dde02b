"""Adam for one fit or B fits stacked into one network, with a learning rate and a step count per fit.

torch.optim.Adam keeps one learning rate and one step count per parameter tensor. When B fits share a
stacked parameter tensor (leading dimension B), each fit still needs its own: a fit that backtracks
lowers only its own learning rate and rewinds only its own step count (Adam's bias correction), and a
fit that has stopped is frozen with a learning rate of 0 while the others go on. The update is
torch.optim.Adam's (default betas and eps, no weight decay), so a single fit follows the same
trajectory up to float rounding (tested). Everything is a device tensor updated in place: a step
never syncs with the host.
"""
from __future__ import annotations

import torch


class FitAdam:
    """Adam over `params`; with `stacked`, dimension 0 of every parameter indexes the fit."""

    def __init__(self, params: list[torch.Tensor], lr: float, fits: int = 1, stacked: bool = False,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if not stacked and fits != 1:
            raise ValueError("unstacked parameters hold exactly one fit")
        self.params, self.fits, self.stacked = list(params), fits, stacked
        self.betas, self.eps = betas, eps
        device = self.params[0].device
        # float64 like torch.optim's Python-float arithmetic for the bias corrections.
        self.lr = torch.full((fits,), float(lr), dtype=torch.float64, device=device)
        self.steps = torch.zeros(fits, dtype=torch.float64, device=device)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _per_fit(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        values = values.to(like.dtype)
        return values.view((self.fits,) + (1,) * (like.dim() - 1)) if self.stacked else values.reshape(())

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        step_size = self.lr / (1 - torch.pow(beta1, self.steps))
        correction2 = (1 - torch.pow(beta2, self.steps)).sqrt()
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            m.lerp_(p.grad, 1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (v.sqrt() / self._per_fit(correction2, p)).add_(self.eps)
            p.sub_(self._per_fit(step_size, p) * m / denom)

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor of the optimiser's state, each indexed by fit along dimension 0 when stacked (and
        whole when not): the moments, the learning rates and the step counts."""
        return [*self.exp_avg, *self.exp_avg_sq, self.lr, self.steps]
