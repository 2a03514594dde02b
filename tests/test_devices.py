import pytest
import torch

from dip.devices import pick_device


@pytest.mark.parametrize("name", ["cuda", "cuda:1", "gpu", "mps", "tpu", "nonsense", "cuda:-1"])
def test_pick_device_refuses_a_device_this_pytorch_cannot_use(name):
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this test is about a machine without CUDA and MPS")  # never taken on CI
    with pytest.raises(ValueError, match=r"available here: cpu \(or auto\)$"):
        pick_device(name)
    assert pick_device("cpu").type == pick_device("auto").type == "cpu"
