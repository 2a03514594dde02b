"""Speed switches of the fit loop, and the defaults measured for each device (see `dip.bench`).

The rule: fp32 (TF32 convolutions on CUDA) stays the default unless bf16 is faster *and* a paired
comparison of the default command's returned image (`scripts/bf16_paired.py`: the same observations and
network seeds in both precisions) puts the 95 % interval of the difference within ±0.1 dB; a layout switch
is on only where it measured faster. What was measured:

- 2-core AVX2 CPU: channels-last no faster (0.172 vs 0.177 s/it at 64², 0.70 vs 0.40 s/it at 128²);
  bf16 autocast 10-70× *slower* (oneDNN emulates it without AVX-512 BF16/AMX).
- 2-core Intel Xeon with AVX-512 BF16 (2026-12-02): bf16 + channels-last 1.69× faster per iteration, and
  over 18 pairs (3 images × 6 seeds, 64², the holdout rule) bf16 − fp32 = −0.114 dB, 95 % interval
  [−0.253, +0.025]: outside the rule (docs/benchmarks.md, "Precision").
- 2-core AMD EPYC with AVX-512 BF16 (2026-11-29, unpaired, two seeds): 1.8× faster at 128², best EMA PSNR
  at 3000 iterations moved by +0.09 and −0.11 dB.
- H100 (an earlier version of the loop): bf16 + channels-last bought nothing at batch 1 with CUDA graphs,
  and moved the best EMA PSNR by −0.26 dB at 1000 iterations (512²).

So every device defaults to fp32 and the contiguous layout; `--bf16` and `--channels-last` switch
them on. CUDA gets cuDNN autotuning, the CPU flushes denormals.
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


def resolve_speed(
    device: torch.device, channels_last: bool | None = None, bf16: bool | None = None, flush_denormal: bool = True
) -> Speed:
    """Fill in the switches left as None with the measured default (off, see above) and set the
    process-wide switches (denormal flushing on the CPU, cuDNN autotuning on CUDA)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    elif device.type == "cpu":
        # Denormals appear as the weights' gradients shrink; flushing them keeps iterations at full speed.
        torch.set_flush_denormal(flush_denormal)
    return Speed(bool(channels_last), bool(bf16))
