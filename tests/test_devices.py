"""Device names: the ones no machine can use are refused everywhere, a GPU machine included; only CUDA and
MPS on a machine without them depend on the machine."""

import re

import pytest
import torch

from dip.devices import _mps_available, available_devices, pick_device

# Not a device on any machine: not a device type, a malformed or negative index, a CPU index, a CUDA index
# past the last device this machine has (cuda:N with N devices; cuda:0 where there is none).
NEVER_HERE = ["gpu", "tpu", "nonsense", "cpu:x", "cpu:1", "cuda:-1", "cuda:99", f"cuda:{torch.cuda.device_count()}"]
NO_CUDA = not torch.cuda.is_available()


def listing() -> str:
    return re.escape(f"available here: {', '.join(available_devices())} (or auto)") + "$"


@pytest.mark.parametrize("name", NEVER_HERE)
def test_pick_device_refuses_a_device_no_machine_like_this_one_has(name):
    with pytest.raises(ValueError, match=listing()):
        pick_device(name)


@pytest.mark.skipif(not NO_CUDA, reason="about a machine without CUDA; this one has a CUDA device")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_is_refused_where_there_is_none(name):
    with pytest.raises(ValueError, match=r"(built without CUDA|no CUDA device is visible); " + listing()):
        pick_device(name)


@pytest.mark.skipif(_mps_available(), reason="about a machine without MPS; this one has it")
def test_mps_is_refused_where_there_is_none():
    with pytest.raises(ValueError, match=r"MPS is not available .*; " + listing()):
        pick_device("mps")


def test_cpu_is_always_there_and_auto_takes_the_best_device():
    assert pick_device("cpu").type == "cpu" and "cpu" in available_devices()
    want = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    assert pick_device("auto").type == want


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")
def test_every_visible_cuda_device_is_taken():
    for i in range(torch.cuda.device_count()):
        assert pick_device(f"cuda:{i}") == torch.device(f"cuda:{i}")
