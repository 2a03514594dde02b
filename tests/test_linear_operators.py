"""Every linear forward operator of dip.operators is linear, and its transpose as autograd computes it (the
vector-Jacobian product the fit backpropagates through) is its adjoint: <A x, y> = <x, Aᵀ y>, and Aᵀ equals
the transpose of the operator's matrix built column by column. No operator exposes an explicit adjoint;
the loop needs none (dip.operators.Operator)."""

import pytest
import torch

from dip import operators as ops
from dip.seeds import generator


def _drop(h: int, w: int) -> torch.Tensor:
    return ops.random_drop(h, w, 0.5, generator(0, "observation"))


def _held_out(operator: ops.Operator, shape: tuple[int, ...]) -> ops.HeldOut:
    return ops.HeldOut(operator, torch.zeros(shape), 0.3, generator(0, "holdout"))


# (name, operator factory, image shape (N, C, H, W)): the image shapes are small enough for the matrix test.
CASES = [
    ("identity", lambda: ops.Operator(), (1, 2, 6, 7)),
    ("denoise", lambda: ops.Denoise(25), (1, 3, 6, 7)),
    ("jpeg", lambda: ops.JpegArtifacts(40), (1, 3, 6, 7)),
    ("blur-gaussian", lambda: ops.Blur(ops.gaussian_psf(1.6)), (1, 2, 13, 12)),
    ("blur-motion", lambda: ops.Blur(ops.motion_psf(9, 30)), (1, 2, 12, 13)),
    ("sr-x2", lambda: ops.SuperResolve(2), (1, 2, 8, 10)),
    ("sr-x3", lambda: ops.SuperResolve(3), (1, 1, 12, 9)),
    ("sr-x4", lambda: ops.SuperResolve(4), (1, 1, 16, 12)),
    ("inpaint-text", lambda: ops.Inpaint(ops.text_mask(10, 12)), (1, 3, 10, 12)),
    ("restoration-drop", lambda: ops.Inpaint(_drop(9, 11)), (1, 3, 9, 11)),
    ("poisson-blur", lambda: ops.Poisson(10, ops.Blur(ops.motion_psf(4, 90))), (1, 1, 11, 11)),
    ("held-out-blur", lambda: _held_out(ops.Blur(ops.gaussian_psf(1.0)), (1, 2, 10, 10)), (1, 2, 10, 10)),
    ("held-out-sr", lambda: _held_out(ops.SuperResolve(2), (1, 2, 5, 6)), (1, 2, 10, 12)),
    ("held-out-inpaint", lambda: _held_out(ops.Inpaint(_drop(8, 9)), (1, 1, 8, 9)), (1, 1, 8, 9)),
]
IDS = [c[0] for c in CASES]


def _random(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _transpose(operator: ops.Operator, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Aᵀ y by autograd: the gradient of <A x, y> with respect to x (exact for a linear A, at any x)."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((operator(x) * y).sum(), x)
    return grad


@pytest.mark.parametrize("name, make, shape", CASES, ids=IDS)
def test_the_operator_is_linear(name, make, shape):
    operator = make()
    x, y = _random((2, *shape[1:]), 1), _random((2, *shape[1:]), 2)
    a, b = -1.7, 0.6
    combined, separate = operator(a * x + b * y), a * operator(x) + b * operator(y)
    assert combined.dtype == torch.float64
    assert torch.allclose(combined, separate, rtol=0, atol=1e-12 * separate.abs().max().item() + 1e-14)
    # and it is not the zero map: the test would pass trivially
    assert operator(x).abs().max() > 1e-3


@pytest.mark.parametrize("name, make, shape", CASES, ids=IDS)
def test_the_autograd_transpose_is_the_adjoint(name, make, shape):
    operator = make()
    x = _random(shape, 3)
    y = _random(tuple(operator(x).shape), 4)
    at_y = _transpose(operator, _random(shape, 5), y)  # taken at another point: Aᵀ does not depend on it
    left, right = float((operator(x) * y).sum()), float((x * at_y).sum())
    assert left == pytest.approx(right, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("name, make, shape", CASES, ids=IDS)
def test_the_autograd_transpose_is_the_transpose_of_the_operators_matrix(name, make, shape):
    """The matrix of A, one column per basis image e_i (A e_i), against Aᵀ y from autograd."""
    operator = make()
    n = int(torch.tensor(shape).prod())
    basis = torch.eye(n, dtype=torch.float64).view(n, *shape[1:])
    matrix = operator(basis).reshape(n, -1).T  # (M, N): column i is A e_i
    y = _random((1, *operator(basis[:1]).shape[1:]), 6)
    at_y = _transpose(operator, torch.zeros(shape, dtype=torch.float64), y)
    assert torch.allclose(at_y.flatten(), matrix.T @ y.flatten(), rtol=1e-12, atol=1e-12)
    x = _random(shape, 7)
    assert torch.allclose(operator(x).flatten(), matrix @ x.flatten(), rtol=1e-12, atol=1e-12)
