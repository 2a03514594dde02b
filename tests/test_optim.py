import pytest
import torch

from dip.optim import StackedAdam, make_optimiser


def _gradients(steps: int, shape, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(steps)]


@pytest.mark.parametrize("fused", [False, True])
def test_the_stacked_update_is_torch_adams_to_rounding(fused):
    start = torch.randn(1, 5, 7, generator=torch.Generator().manual_seed(1))
    mine, theirs = start.clone().requires_grad_(), start.clone().requires_grad_()
    ours, reference = StackedAdam([mine], lr=0.01, fits=1), torch.optim.Adam([theirs], lr=0.01, fused=fused)
    for grad in _gradients(50, start.shape, 2):
        mine.grad.copy_(grad)
        theirs.grad = grad.clone()
        ours.step(), reference.step()
    assert not torch.equal(mine, start)
    torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)


def test_stacked_fits_each_follow_their_own_adam_and_learning_rate():
    starts = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(3))
    stacked = starts.clone().requires_grad_()
    alone = [starts[b : b + 1].clone().requires_grad_() for b in range(2)]
    opt = StackedAdam([stacked], lr=0.01, fits=2)
    opt.set_lr(1, 0.001)  # fit 1 has backtracked once or twice: its own, lower rate
    singles = [StackedAdam([alone[0]], lr=0.01, fits=1), StackedAdam([alone[1]], lr=0.001, fits=1)]
    for grad in _gradients(30, starts.shape, 4):
        stacked.grad.copy_(grad)
        opt.step()
        for b in range(2):
            alone[b].grad.copy_(grad[b : b + 1])
            singles[b].step()
    for b in range(2):
        torch.testing.assert_close(stacked[b : b + 1], alone[b], rtol=0, atol=0)


def test_a_learning_rate_of_zero_freezes_a_fit():
    p = torch.randn(2, 3).requires_grad_()
    before = p.detach().clone()
    opt = StackedAdam([p], lr=0.1, fits=2)
    opt.set_lr(0, 0.0)
    for grad in _gradients(5, p.shape, 5):
        p.grad.copy_(grad)
        opt.step()
    assert torch.equal(p[0], before[0]) and not torch.equal(p[1], before[1])


def test_a_snapshot_restores_one_fit_and_leaves_the_other():
    p = torch.randn(2, 3).requires_grad_()
    opt = StackedAdam([p], lr=0.1, fits=2)
    p.grad.fill_(1.0)
    opt.step()
    saved = opt.snapshot(0)
    opt.step()
    steps_of_1 = opt.steps[1].item()
    opt.restore(0, saved)
    assert opt.steps.tolist() == [1.0, steps_of_1] and torch.equal(opt.exp_avg[0][0], saved[0])


def test_one_fit_takes_torchs_adam_and_lbfgs_refuses_a_batch():
    one = make_optimiser("adam", [torch.zeros(3, requires_grad=True)], 0.1, 1, torch.device("cpu"))
    assert isinstance(one.opt, torch.optim.Adam) and one.opt.defaults["fused"]
    with pytest.raises(ValueError, match="LBFGS runs one fit"):
        make_optimiser("lbfgs", [torch.zeros(2, 3, requires_grad=True)], 0.1, 2, torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        make_optimiser("sgd", [torch.zeros(3, requires_grad=True)], 0.1, 1, torch.device("cpu"))
