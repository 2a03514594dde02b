"""`dip.restore` with forward operators of the user's own: the documented example run as written, checkpoint
resume, batched seeds, the ground-truth-free rules, and every mistake in a custom operator as one line."""

import doctest
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

import dip.api
from dip import restore
from dip.checkpoint import CheckpointMismatch
from dip.fit import FitInterrupted
from dip.operators import Inpaint, Operator

ROOT = Path(__file__).resolve().parents[1]
FAST = {"iterations": 40, "check_every": 10, "ssim_every": 1000, "bf16": False, "channels_last": False}


OPERATORS_PAGE = ROOT / "docs" / "guide" / "operators.md"


def documented_example() -> str:
    """The first Python block of docs/guide/operators.md (the masked-Fourier example)."""
    return re.search(r"```python\n(.*?)```", OPERATORS_PAGE.read_text(), flags=re.S).group(1)


def test_the_documented_example_runs_and_dip_beats_the_naive_reconstruction():
    namespace = {}
    exec(compile(documented_example(), "docs/guide/operators.md", "exec"), namespace)  # noqa: S102
    naive, ours = namespace["naive_psnr"], namespace["dip_psnr"]
    assert ours > naive + 1.0, (naive, ours)  # measured: 24.75 → 26.86 dB
    assert namespace["result"].image.shape == (1, 1, 64, 64)


def test_the_docstring_example_runs():
    result = doctest.testmod(dip.api, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


class RandomProjection(Operator):
    """y = A·vec(x) per channel, A (M, H·W) Gaussian / √M: an observation (N, C, 1, M). The class counter
    sends SIGTERM at forward call `interrupt_at` (class-level, so it is no part of the fit's fingerprint)."""

    calls, interrupt_at = 0, None

    def __init__(self, h: int, w: int, m: int, seed: int = 0):
        self.h, self.w = h, w
        self.matrix = torch.randn(m, h * w, generator=torch.Generator().manual_seed(seed)) / m**0.5

    def forward(self, x):
        type(self).calls += 1
        if type(self).calls == type(self).interrupt_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return (x.flatten(2) @ self.matrix.T)[:, :, None, :]

    def image_size(self, observed):
        return self.h, self.w

    def to(self, device):
        self.matrix = self.matrix.to(device)
        return self


@pytest.fixture
def projection():
    RandomProjection.calls, RandomProjection.interrupt_at = 0, None
    clean = torch.from_numpy(np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(1, 1, 32, 32))
    operator = RandomProjection(32, 32, 400)
    return clean, operator, operator(clean)


def test_a_checkpointed_fit_resumes_to_the_identical_result(projection, tmp_path):
    clean, operator, observed = projection
    whole = restore(observed, operator, arch="skip-3", settings=FAST, stop=None, device="cpu", clean=clean)
    checkpoint = tmp_path / "ckpt.pt"
    RandomProjection.calls, RandomProjection.interrupt_at = 0, 25  # mid-fit, after the check at iteration 10
    with pytest.raises(FitInterrupted) as err:
        restore(
            observed,
            operator,
            arch="skip-3",
            settings=FAST,
            stop=None,
            device="cpu",
            clean=clean,
            checkpoint=checkpoint,
        )
    assert 0 < err.value.iteration < FAST["iterations"] and checkpoint.exists()
    RandomProjection.interrupt_at = None
    resumed = restore(
        observed, operator, arch="skip-3", settings=FAST, stop=None, device="cpu", clean=clean, checkpoint=checkpoint
    )
    assert (
        resumed.resumed_from == err.value.iteration and not checkpoint.exists()
    )  # a finished fit removes its checkpoint
    assert torch.equal(resumed.image, whole.image)
    columns = [c for c in whole.history if c != "seconds"]
    assert resumed.history[columns].equals(whole.history[columns])


def test_a_checkpoint_of_another_operator_is_refused(projection, tmp_path):
    clean, operator, observed = projection
    checkpoint = tmp_path / "ckpt.pt"
    RandomProjection.interrupt_at = 25
    with pytest.raises(FitInterrupted):
        restore(observed, operator, arch="skip-3", settings=FAST, stop=None, device="cpu", checkpoint=checkpoint)
    RandomProjection.interrupt_at = None
    other = RandomProjection(32, 32, 400, seed=1)  # another matrix, the same observation
    with pytest.raises(CheckpointMismatch, match="operator differs"):
        restore(observed, other, arch="skip-3", settings=FAST, stop=None, device="cpu", checkpoint=checkpoint)


def test_two_seeds_fit_as_one_batch_through_a_custom_operator(projection):
    clean, operator, observed = projection
    batch = restore(
        observed, operator, arch="skip-3", settings=FAST, stop=None, seeds=[0, 1], device="cpu", clean=clean
    )
    assert [r.seed for r in batch] == [0, 1] and all(r.image.shape == (1, 1, 32, 32) for r in batch)
    assert not torch.equal(batch[0].image, batch[1].image)  # own weights, own input
    for result in batch:
        single = restore(
            observed,
            operator,
            arch="skip-3",
            settings={**FAST, "seed": result.seed},
            stop=None,
            device="cpu",
            clean=clean,
        )
        assert result.history["loss"].iloc[0] == pytest.approx(single.history["loss"].iloc[0], rel=1e-5)
        assert result.history["loss"].iloc[-1] < result.history["loss"].iloc[0] / 2  # it fits


def test_the_ground_truth_free_rules_apply_to_a_custom_operator(projection):
    clean, operator, observed = projection
    noisy = observed + 0.05 * torch.randn(observed.shape, generator=torch.Generator().manual_seed(1))
    result = restore(
        noisy,
        operator,
        arch="skip-3",
        settings=FAST,
        stop="holdout",
        record=["es-wmv", "discrepancy"],
        noise_sigma=0.05,
        device="cpu",
    )
    assert set(result.stops) == {"holdout", "es-wmv", "discrepancy"} and result.stops["discrepancy"][
        "target"
    ] == pytest.approx(0.05**2)
    assert result.history["signal_holdout"].notna().all()
    # Batched, each seed holds out entries of its own: the same rules, fit by fit.
    batch = restore(noisy, operator, arch="skip-3", settings=FAST, stop="holdout", seeds=[0, 1], device="cpu")
    assert all(r.history["signal_holdout"].notna().all() for r in batch)
    assert not batch[0].history["signal_holdout"].equals(batch[1].history["signal_holdout"])


class LeftHalf(Operator):
    def forward(self, x):
        return x[..., : x.shape[-1] // 2]

    def image_size(self, observed):
        return observed.shape[-2], 2 * observed.shape[-1]


class ScalarLoss(LeftHalf):
    def loss(self, output, observed):
        return ((self.forward(output) - observed) ** 2).mean()  # one number for every fit: wrong


class Detached(LeftHalf):
    def forward(self, x):
        return torch.from_numpy(x.detach().numpy()[..., : x.shape[-1] // 2])


class NoSize(LeftHalf):
    def image_size(self, observed):
        return observed.shape[-2:]


class Broken(LeftHalf):
    def forward(self, x):
        raise RuntimeError("shapes do not match\n(a second line of the message)")


class NotAnOperator:
    def forward(self, x):
        return x


@pytest.mark.parametrize(
    "observed, operator, options, error, message",
    [
        (
            torch.rand(1, 1, 16, 8),
            ScalarLoss(),
            {},
            ValueError,
            r"^operator: ScalarLoss.loss returned shape \(\) for 2 fits; it must return one value per fit, shape \(N,\)",
        ),
        (torch.rand(1, 1, 16, 8), Detached(), {}, ValueError, r"^operator: Detached.forward is not differentiable"),
        (
            torch.rand(1, 1, 16, 8),
            NoSize(),
            {},
            ValueError,
            r"returned \(2, 1, 16, 4\), not \(2, 1, 16, 8\).*image_size",
        ),
        (torch.rand(1, 1, 16, 8), Broken(), {}, ValueError, r"^operator: Broken.forward failed.*shapes do not match"),
        (torch.rand(1, 1, 16, 8), object(), {}, TypeError, r"^operator: object has no forward\(x\) method"),
        (torch.rand(1, 1, 16, 8), NotAnOperator(), {}, TypeError, r"^operator: NotAnOperator is not a dip.operators"),
        (torch.rand(16, 8), LeftHalf(), {}, ValueError, r"^observed: must be 4-D \(N, C, H, W\), got shape \(16, 8\)"),
        (np.zeros((1, 1, 16, 8)), LeftHalf(), {}, TypeError, r"^observed: must be a torch.Tensor"),
        (torch.zeros(1, 1, 16, 8, dtype=torch.complex64), LeftHalf(), {}, ValueError, r"^observed: must be a real"),
        (torch.full((1, 1, 16, 8), float("nan")), LeftHalf(), {}, ValueError, r"^observed: holds NaN"),
        (torch.rand(2, 1, 16, 8), LeftHalf(), {}, ValueError, r"^observed: 2 observations for one fit"),
        (torch.rand(3, 1, 16, 8), LeftHalf(), {"seeds": [0, 1]}, ValueError, r"^observed: 3 observations for 2 seeds"),
        (torch.rand(1, 1, 16, 8), LeftHalf(), {"seeds": [0, 0]}, ValueError, r"^seeds: each seed once"),
        (torch.rand(1, 1, 16, 8), LeftHalf(), {"stop": "early"}, ValueError, r"^stop: unknown stopping rule 'early'"),
        (
            torch.rand(1, 1, 16, 8),
            LeftHalf(),
            {"stop": "discrepancy"},
            ValueError,
            r"^noise_sigma: the discrepancy rule",
        ),
        (
            torch.rand(1, 1, 16, 8),
            LeftHalf(),
            {"holdout": 0.6, "stop": "holdout"},
            ValueError,
            r"^holdout: .*\(0, 0.5\)",
        ),
        (
            torch.rand(1, 1, 16, 8),
            LeftHalf(),
            {"settings": {"iters": 5}},
            ValueError,
            r"^settings: unknown field 'iters'",
        ),
        (torch.rand(1, 1, 16, 8), LeftHalf(), {"settings": {"lr": -1}}, ValueError, r"^settings: lr must be > 0"),
        # Counts that are not integers would run another budget (3.5 ran 25 iterations) or fail deep in the loop.
        (
            torch.rand(1, 1, 16, 8),
            LeftHalf(),
            {"settings": {"iterations": 3.5}},
            ValueError,
            r"^settings: iterations must be an integer, got 3.5",
        ),
        (
            torch.rand(1, 1, 16, 8),
            LeftHalf(),
            {"settings": {"iterations": "3"}},
            ValueError,
            r"^settings: iterations must be an integer",
        ),
        (
            torch.rand(1, 1, 16, 8),
            LeftHalf(),
            {"settings": {"check_every": 2.5}},
            ValueError,
            r"^settings: check_every must be an integer",
        ),
        (
            torch.rand(1, 1, 16, 8),
            LeftHalf(),
            {"settings": {"seed": True}},
            ValueError,
            r"^settings: seed must be an integer",
        ),
        (torch.rand(1, 1, 16, 8), LeftHalf(), {"settings": {"seed": -1}}, ValueError, r"^settings: seed must be >= 0"),
        (torch.rand(1, 1, 16, 8), LeftHalf(), {"window": 2.5}, ValueError, r"^window: an integer, got 2.5"),
        (torch.rand(1, 1, 16, 8), LeftHalf(), {"patience": "10"}, ValueError, r"^patience: an integer"),
        (torch.rand(1, 1, 16, 8), LeftHalf(), {"holdout": "0.1", "stop": "holdout"}, ValueError, r"^holdout: a number"),
        (torch.rand(1, 1, 16, 8), LeftHalf(), {"noise_sigma": "0.1"}, ValueError, r"^noise_sigma: a number"),
        (
            torch.rand(1, 1, 16, 8),
            LeftHalf(),
            {"seeds": 3},
            ValueError,
            r"^seeds: a list of non-negative integers, got 3",
        ),
        (
            torch.rand(1, 1, 16, 8),
            LeftHalf(),
            {"checkpoint": "/"},
            ValueError,
            r"^checkpoint: the file .* got the folder /",
        ),
        (
            torch.rand(1, 1, 16, 16),
            Inpaint(torch.zeros(1, 1, 16, 16)),
            {},
            ValueError,
            r"^operator: the Inpaint mask has no known pixel",
        ),
        (torch.rand(1, 1, 16, 8), LeftHalf(), {"arch": "skipp"}, ValueError, r"^unknown architecture 'skipp'"),
        (torch.rand(1, 1, 16, 8), LeftHalf(), {"device": "tpu"}, ValueError, r"available here: cpu"),
        (
            torch.rand(1, 1, 16, 8),
            LeftHalf(),
            {"clean": torch.rand(1, 3, 16, 16)},
            ValueError,
            r"^clean: must be \(1, 1, 16, 16\)",
        ),
    ],
)
def test_every_mistake_is_one_line_before_any_fitting(observed, operator, options, error, message, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("fitted despite the mistake")

    monkeypatch.setattr(dip.api, "fit", no_fit)
    monkeypatch.setattr(dip.api, "fit_batch", no_fit)
    with pytest.raises(error, match=message) as err:
        restore(observed, operator, **{"device": "cpu", **options})
    assert "\n" not in str(err.value)


def test_restore_is_exported_without_importing_torch_at_package_import():
    import subprocess
    import sys

    code = (
        "import sys, dip; assert 'torch' not in sys.modules; from dip import restore; "
        "assert restore is dip.restore and restore.__module__ == 'dip.api'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_numpy_integer_seeds_are_seeds():
    result = restore(torch.rand(1, 1, 16, 8), LeftHalf(), arch="skip-3", settings={"iterations": 2},
                     seeds=list(np.arange(2)), device="cpu")  # fmt: skip
    assert [r.seed for r in result] == [0, 1] and all(type(r.seed) is int for r in result)


@pytest.mark.parametrize("mask", [torch.full((1, 1, 8, 8), 255.0), torch.full((1, 1, 8, 8), 0.5)])
def test_an_inpainting_mask_of_other_values_than_0_and_1_is_refused(mask):
    # A 0/255 mask would multiply the known pixels by 255 and fit that.
    with pytest.raises(ValueError, match="^mask: values must be 0 .unknown. or 1 .known."):
        Inpaint(mask)
