"""dip.checks: one meaning of "an integer" and "a number" for every input check, NumPy's scalars included,
and a value from NumPy makes the same request, record and fit as the Python number it holds."""

import numpy as np
import pytest

from dip import operators as ops
from dip.api import restore
from dip.checks import is_integer, is_number, python_scalar
from dip.fit import FitSettings
from dip.image_io import InputError
from dip.red import RED
from dip.request import FitRequest
from dip.tasks import Task


@pytest.mark.parametrize("value", [3, np.int64(3), np.uint8(3), np.int32(-1)])
def test_integers_of_python_and_numpy_are_integers_and_numbers(value):
    assert is_integer(value) and is_number(value)


@pytest.mark.parametrize(
    "value", [3.0, np.float32(3), "3", None, True, np.bool_(True), [3], 3 + 0j, np.timedelta64(3, "s")]
)
def test_anything_else_is_no_integer(value):
    assert not is_integer(value)


@pytest.mark.parametrize("value", ["0.5", None, False, [0.5], 1j, np.array([0.5])])
def test_a_bool_a_text_or_an_array_is_no_number(value):
    assert not is_number(value)


def test_numpy_scalars_become_python_numbers_and_nothing_else_changes():
    assert type(python_scalar(np.int64(3))) is int and type(python_scalar(np.float32(0.5))) is float
    assert type(python_scalar(np.longdouble(25))) is float
    array = np.array([1, 2])
    assert python_scalar(array) is array and python_scalar("3") == "3"


def test_a_request_made_from_numpy_values_is_the_request_made_from_python_ones():
    python = FitRequest(task="denoise", sigma=25, iters=12, image="x.png", out="o", seeds=(0, 1), lr=0.01)
    numpy = FitRequest(task="denoise", sigma=np.float64(25), iters=np.int64(12), image="x.png", out="o",
                       seeds=tuple(np.arange(2)), lr=np.float64(0.01))  # fmt: skip
    assert numpy == python
    assert all(type(s) is int for s in numpy.seeds) and type(numpy.iters) is int


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: FitRequest(task="denoise", sigma=25, image="x.png", out="o", ensemble=2.0), "--ensemble: must be"),
        (lambda: Task.from_spec({"task": "sr", "factor": 4.0}), "factor: expected an integer, got 4.0"),
        (lambda: ops.SuperResolve(True), "SR factor must be an integer"),
        (lambda: FitSettings(iterations=np.float64(10)), "iterations must be an integer"),
        (lambda: RED(weight=True), "red weight must be a finite number"),
    ],
)
def test_every_check_refuses_what_the_predicates_refuse(make, message):
    with pytest.raises((InputError, ValueError), match=message):
        make()


def test_a_task_made_from_numpy_values_is_the_task_made_from_python_ones():
    task = Task("sr", factor=np.int64(4))
    assert task == Task("sr", factor=4) and type(task.factor) is int
    assert type(Task("denoise", sigma=np.longdouble(25)).sigma) is float


def test_numpy_integers_are_accepted_where_python_ones_are():
    assert Task.from_spec({"task": "sr", "factor": np.int64(4)}).factor == 4
    assert ops.SuperResolve(np.int64(2)).factor == 2
    assert FitSettings(iterations=np.int64(10)).iterations == 10
    assert FitRequest(task="denoise", sigma=25, image="x.png", out="o", ensemble=np.int64(2)).ensemble == 2


def test_restore_takes_numpy_seeds_and_a_numpy_red_weight():
    observed = torch_rand()
    result = restore(observed, ops.Denoise(), arch="skip-3", settings={"iterations": 2}, device="cpu",
                     seeds=np.array([0, 1]), red_weight=np.float64(0.5), stop="fixed")  # fmt: skip
    # One result per seed, their seeds Python integers, as with seeds=[0, 1].
    assert [r.seed for r in result] == [0, 1] and all(type(r.seed) is int for r in result)
    assert all(r.image.shape == (1, 1, 16, 16) for r in result)


def torch_rand():
    import torch

    return torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
