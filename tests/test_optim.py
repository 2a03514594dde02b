import pytest
import torch

from dip.optim import FitAdam


def _gradients(steps: int, shape, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(steps)]


def test_one_fit_follows_torch_adam():
    start = torch.randn(5, 7, generator=torch.Generator().manual_seed(1))
    mine, theirs = start.clone().requires_grad_(), start.clone().requires_grad_()
    ours, reference = FitAdam([mine], lr=0.01), torch.optim.Adam([theirs], lr=0.01)
    for grad in _gradients(50, start.shape, 2):
        mine.grad, theirs.grad = grad.clone(), grad.clone()
        ours.step(), reference.step()
    assert not torch.equal(mine, start)
    torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)


def test_stacked_fits_each_follow_their_own_adam_and_learning_rate():
    starts = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(3))
    stacked = starts.clone().requires_grad_()
    alone = [starts[b].clone().requires_grad_() for b in range(2)]
    opt = FitAdam([stacked], lr=0.01, fits=2, stacked=True)
    opt.lr[1] = 0.001  # fit 1 has backtracked once or twice: its own, lower rate
    singles = [FitAdam([alone[0]], lr=0.01), FitAdam([alone[1]], lr=0.001)]
    grads = _gradients(30, starts.shape, 4)
    for grad in grads:
        stacked.grad = grad.clone()
        opt.step()
        for b in range(2):
            alone[b].grad = grad[b].clone()
            singles[b].step()
    for b in range(2):
        torch.testing.assert_close(stacked[b], alone[b], rtol=0, atol=0)


def test_a_learning_rate_of_zero_freezes_a_fit():
    p = torch.randn(2, 3).requires_grad_()
    before = p.detach().clone()
    opt = FitAdam([p], lr=0.1, fits=2, stacked=True)
    opt.lr[0] = 0.0
    for grad in _gradients(5, p.shape, 5):
        p.grad = grad
        opt.step()
    assert torch.equal(p[0], before[0]) and not torch.equal(p[1], before[1])


def test_several_fits_need_stacked_parameters():
    with pytest.raises(ValueError, match="exactly one fit"):
        FitAdam([torch.zeros(3, requires_grad=True)], lr=0.1, fits=2)
