"""Speed switches of the fit loop, and the defaults measured for each device (see `dip.bench`).

Measured on the 2-core AVX2 CPU we develop on (skip network, 64² and 128²): channels-last was no faster
(0.172 vs 0.177 s/it at 64², 0.70 vs 0.40 s/it at 128²), and bfloat16 autocast was 10–70× *slower*
because without AVX-512 BF16/AMX oneDNN emulates it. So on the CPU both default on only where oneDNN
reports native bf16; on CUDA both default on (tensor cores), with cuDNN autotuning.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Speed:
    channels_last: bool
    bf16: bool


def cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_speed(device: torch.device, channels_last: bool | None = None, bf16: bool | None = None,
                  flush_denormal: bool = True) -> Speed:
    """Fill in the switches left as None with this device's measured default, and set the
    process-wide ones (denormal flushing on CPU, cuDNN autotuning on CUDA)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        native = torch.cuda.is_bf16_supported()
        return Speed(channels_last if channels_last is not None else True, bf16 if bf16 is not None else native)
    if device.type == "cpu":
        # Denormals appear as the weights' gradients shrink; flushing them keeps iterations at full speed.
        torch.set_flush_denormal(flush_denormal)
        native = cpu_has_native_bf16()
        return Speed(channels_last if channels_last is not None else native, bf16 if bf16 is not None else native)
    return Speed(bool(channels_last), bool(bf16))
