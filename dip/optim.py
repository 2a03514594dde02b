"""The optimisers of a fit, behind one small interface (`FitOptimiser`): step, learning rate of fit b,
and a real copy of fit b's state for backtracking and checkpoints.

One fit uses PyTorch's own optimisers: Adam fused where PyTorch has a fused kernel for the device (one
operation updates every parameter), else foreach; LBFGS as it is. B fits stacked into one network
(`dip.fit.fit_batch`, leading dimension B on every parameter) use `StackedAdam`: torch.optim.Adam keeps
one learning rate and one step count per parameter tensor, while each stacked fit needs its own (a fit
that backtracks lowers only its own rate and rewinds only its own step count, Adam's bias correction, and
a stopped fit is frozen with a rate of 0 while the others go on).
"""

from __future__ import annotations

import copy

import torch

BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which the authors' code uses


class StackedAdam:
    """Adam over parameters whose dimension 0 indexes B fits, with a learning rate and a step count per
    fit as device tensors (B,). The update is torch.optim.Adam's (default betas and eps, no weight decay),
    written with foreach operations: about ten operations per step whatever the number of parameters or
    fits, none of which waits for the host.

    The gradients stay allocated between steps (zeroed, not freed), so that the per-fit views of them are
    made once.

    :param params: the stacked parameters, each (B, ...): leaf tensors, or views (B, ...) of `leaves`.
    :param lr: the initial learning rate of every fit.
    :param fits: B.
    :param leaves: the tensors autograd fills `.grad` of, when `params` are views of them (a
        `dip.networks.Grouped` network's parameters, (B·C, ...), viewed as (B, C, ...)).
    """

    def __init__(self, params: list[torch.Tensor], lr: float, fits: int, leaves: list[torch.Tensor] | None = None):
        self.params, self.fits = list(params), fits
        self.leaves = list(params) if leaves is None else list(leaves)
        for p in self.leaves:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.grads = [p.grad if leaves is None else p.grad.unflatten(0, (fits, -1)) for p in self.leaves]
        device, dtype = self.params[0].device, self.params[0].dtype
        # float64 like torch.optim's Python-float arithmetic for the bias corrections.
        self.lr = torch.full((fits,), float(lr), dtype=torch.float64, device=device)
        self.steps = torch.zeros(fits, dtype=torch.float64, device=device)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        # Per-fit factors, rewritten in place every step and viewed once per parameter's shape, so that a
        # step builds no views.
        self._step_size = torch.zeros(fits, dtype=dtype, device=device)
        self._correction = torch.zeros(fits, dtype=dtype, device=device)
        shapes = [(fits,) + (1,) * (p.dim() - 1) for p in self.params]
        self._step_sizes = [self._step_size.view(s) for s in shapes]
        self._corrections = [self._correction.view(s) for s in shapes]

    def zero_grad(self) -> None:
        torch._foreach_zero_([p.grad for p in self.leaves])

    def step(self, closure=None) -> None:
        """Evaluate `closure` (forward and backward) if given, then update every fit's parameters."""
        if closure is not None:
            closure()
        self._update()

    @torch.no_grad()
    def _update(self) -> None:
        beta1, beta2 = BETAS
        grads = self.grads
        self.steps += 1
        self._step_size.copy_(self.lr / (1 - torch.pow(beta1, self.steps)))
        self._correction.copy_((1 - torch.pow(beta2, self.steps)).sqrt())
        torch._foreach_lerp_(self.exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(self.exp_avg_sq, beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, self._corrections)
        torch._foreach_add_(denom, EPS)
        update = torch._foreach_mul(self.exp_avg, self._step_sizes)
        torch._foreach_div_(update, denom)
        torch._foreach_sub_(self.params, update)

    def tensors(self, b: int) -> list[torch.Tensor]:
        """Fit b's slice of every state tensor: moments, learning rate and step count (views, not copies)."""
        return [t[b] for t in (*self.exp_avg, *self.exp_avg_sq, self.lr, self.steps)]

    def snapshot(self, b: int) -> list[torch.Tensor]:
        return [t.clone() for t in self.tensors(b)]

    def restore(self, b: int, saved: list[torch.Tensor]) -> None:
        for live, value in zip(self.tensors(b), saved):
            live.copy_(value)

    def set_lr(self, b: int, lr: float) -> None:
        self.lr[b] = lr


class TorchOptimiser:
    """One fit's torch.optim optimiser (Adam or LBFGS) behind the same interface as `StackedAdam`."""

    def __init__(self, opt: torch.optim.Optimizer):
        self.opt = opt

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def step(self, closure) -> None:
        if isinstance(self.opt, torch.optim.LBFGS):
            self.opt.step(closure)
        else:
            closure()
            self.opt.step()

    def snapshot(self, b: int = 0) -> dict:
        return copy.deepcopy(self.opt.state_dict())

    def restore(self, b: int, saved: dict) -> None:
        self.opt.load_state_dict(copy.deepcopy(saved))

    def set_lr(self, b: int, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr


def fused_adam_available(device: torch.device) -> bool:
    """Whether PyTorch has a fused Adam kernel for this device (CUDA, CPU and MPS in recent releases)."""
    return device.type in ("cuda", "cpu", "mps")


def make_optimiser(
    name: str,
    params: list[torch.Tensor],
    lr: float,
    fits: int,
    device: torch.device,
    leaves: list[torch.Tensor] | None = None,
):
    """The optimiser of `fits` fits: "adam" (fused or foreach torch.optim.Adam for one fit, `StackedAdam`
    for stacked fits, whose `params` are (B, ...) views of `leaves`) or "lbfgs" (one fit only; one
    function evaluation per iteration). Raises ValueError for another name or LBFGS with stacked fits."""
    if name == "adam":
        if fits > 1:
            return StackedAdam(params, lr, fits, leaves)
        fused = fused_adam_available(device)
        return TorchOptimiser(
            torch.optim.Adam(params, lr=lr, betas=BETAS, eps=EPS, fused=fused or None, foreach=None if fused else True)
        )
    if name == "lbfgs":
        if fits > 1:
            raise ValueError("LBFGS runs one fit at a time; batch Adam fits only")
        return TorchOptimiser(torch.optim.LBFGS(params, lr=lr, max_iter=1))
    raise ValueError(f"unknown optimizer {name!r}; choose adam or lbfgs")
