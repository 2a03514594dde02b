"""The devices a fit can run on, named the way PyTorch names them."""

from __future__ import annotations

import torch


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def available_devices() -> list[str]:
    """The devices this PyTorch can use here: cpu, cuda:N for each CUDA device, mps."""
    cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return ["cpu", *cuda, *(["mps"] if _mps_available() else [])]


def pick_device(name: str = "auto") -> torch.device:
    """The torch device `name` names ("auto": CUDA, else MPS, else the CPU). Raises ValueError, one line
    listing the available devices, for a name PyTorch cannot use here (no CUDA in this build or no such
    CUDA device, no MPS, a TPU, a typo), before anything touches the device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is not None and device.index in (None, 0) and device.type == "cpu":
        return device
    if (
        device is not None
        and device.type == "cuda"
        and torch.cuda.is_available()
        and (device.index is None or device.index < torch.cuda.device_count())
    ):
        return device
    if device is not None and device.type == "mps" and device.index in (None, 0) and _mps_available():
        return device
    if device is not None and device.type == "cuda":
        why = (
            "this PyTorch is built without CUDA"
            if not torch.backends.cuda.is_built()
            else "no CUDA device is visible"
            if not torch.cuda.is_available()
            else f"there are {torch.cuda.device_count()} CUDA devices"
        )
    elif device is not None and device.type == "mps":
        why = (
            "MPS is not available ("
            + (
                "not built into this PyTorch"
                if not torch.backends.mps.is_built()
                else "this machine has no usable Metal device"
            )
            + ")"
        )
    else:
        why = "not a device this program runs on"
    raise ValueError(f"{why}; available here: {', '.join(available_devices())} (or auto)")
