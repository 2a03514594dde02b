"""How much memory a fit needs, known before fitting, and how much the device has.

A fit's extra memory (beyond the Python process with torch loaded) is modelled as::

    bytes = RUNTIME_BYTES                                       (what the first forward/backward pass sets up:
                                                                oneDNN and autograd workspaces)
          + P · 4 B · PARAMETER_COPIES                          (weights, their gradients, Adam's two moments,
                                                                and the copies kept for backtracking and checkpoints)
          + H·W · B · activation_bytes_per_pixel                (everything the forward and backward pass keep,
                                                                z and its perturbation included; B fits at once)
          + H·W · B · C · 4 B · (W_es + 2) · RULE_COPIES         (ES-WMV's window of the last W_es outputs and its
                                                                running sums, live and in the backtracking copy;
                                                                only when the rule is recorded)

The activation coefficient is each architecture's own, in its entry of dip.presets.ARCHITECTURES (the
registry of architectures), measured once per architecture, fp32 on a CPU, as the growth of the
peak resident memory of short fits between 128×128 and 256×256 (`python -m dip.memory`, which prints
them with the two peaks they come from); RUNTIME_BYTES and PARAMETER_COPIES are the least-squares line
through the eleven architectures' remaining peak at 128² against their parameter bytes (residuals
within 50 MB). The estimate is checked against measured peaks at 128² and 256² in the tests
(within 25 %); below that the runtime's share dominates and varies between runs (218 MB estimated
against 141–263 MB measured at 64²), and the tests ask for 75 % to 200 % of the measured peak.
Not measured, allowances only: CUDA's caching allocator rounding blocks up
(DEVICE_FACTOR; no GPU was at hand when this was written) and bf16 autocast's extra copies
(BF16_FACTOR).
"""

from __future__ import annotations

import functools
import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from dip import strict_json

RUNTIME_BYTES = 59 * 2**20
PARAMETER_COPIES = 15  # measured (refitted after the loop split); what it holds: param, grad, Adam's exp_avg and
# exp_avg_sq, the backtracking copy (param, both moments) and, while a check replaces it,
# the next one, plus allocator slack
RULE_COPIES = 2  # the live ES-WMV window and its copy in the backtracking snapshot
DEVICE_FACTOR = {"cpu": 1.0, "cuda": 1.15, "mps": 1.15}  # allowance: allocator rounding on GPUs
BF16_FACTOR = 1.3  # allowance: autocast keeps bf16 copies of activations beside the fp32 ones
# Memory-saving mode (dip.networks.checkpointed: activations recomputed in the backward pass) keeps this
# share of the plain mode's activation memory: the largest ratio of the two modes' measured activation
# slopes over the architectures calibrated (`python -m dip.memory --checkpointed`, see docs/scale.md).
CHECKPOINTED_FACTOR = 0.833  # skip: 7360.8 against 8840.8 B/px (see docs/scale.md)
PROCESS_BYTES = 400 * 2**20  # a `dip fit` process with torch, scikit-image and pandas loaded (380 MB measured)


@dataclass(frozen=True)
class Estimate:
    bytes: int
    parameters: int
    activation_bytes: int
    rule_bytes: int

    @property
    def gib(self) -> float:
        return self.bytes / 2**30


def estimate(
    arch: str,
    h: int,
    w: int,
    channels: int = 3,
    *,
    batch: int = 1,
    device: str = "cpu",
    bf16: bool = False,
    window: int | None = None,
    windowed_rules: int = 1,
    checkpointed: bool = False,
) -> Estimate:
    """Estimated extra peak memory of `batch` fits of architecture `arch` on an h×w image with
    `channels` channels; `window`: ES-WMV's window when that rule is recorded (None: not recorded),
    `windowed_rules` how many such rules keep a window each (es-wmv and es-wmv-paper); `checkpointed`:
    in memory-saving mode (activations times CHECKPOINTED_FACTOR)."""
    from dip.inputs import input_channels
    from dip.presets import architecture

    spec = architecture(arch)
    settings = spec.get("settings", {})
    zin = input_channels(settings.get("input", "noise"), settings.get("input_depth", 32))
    params = parameter_count(spec["net"], zin, channels)
    per_pixel = spec["activation_bytes_per_pixel"]
    factor = DEVICE_FACTOR.get(torch.device(device).type, 1.0) * (BF16_FACTOR if bf16 else 1.0)
    factor *= CHECKPOINTED_FACTOR if checkpointed else 1.0
    activations = int(h * w * batch * per_pixel * factor)
    rules = int(h * w * batch * channels * 4 * (window + 2) * RULE_COPIES * windowed_rules) if window else 0
    param_bytes = params * 4 * PARAMETER_COPIES * batch
    return Estimate(RUNTIME_BYTES + param_bytes + activations + rules, params, activations, rules)


def parameter_count(net: dict, in_channels: int, out_channels: int) -> int:
    """Trainable parameters of the network spec `net` (dip.networks.make_network) taking `in_channels`
    input channels to `out_channels` outputs. Built once per distinct (spec, channels), on the meta
    device (no weights allocated or drawn), and remembered: a pipeline plans thousands of fits of a
    handful of networks, and building one (tens of thousands of layer constructions for the deepest)
    costs tens of milliseconds."""
    return _parameter_count(strict_json.dumps(net, sort_keys=True), int(in_channels), int(out_channels))


@functools.cache
def _parameter_count(net: str, in_channels: int, out_channels: int) -> int:
    # keyed by the spec's canonical JSON: a dict is not hashable, and equal specs must share an entry
    from dip.networks import count_parameters, make_network

    with torch.device("meta"):
        return count_parameters(make_network(json.loads(net), in_channels, out_channels, 0))


def job_memory_mb(
    arch: str,
    h: int,
    w: int,
    channels: int = 3,
    *,
    device: str = "cpu",
    window: int | None = None,
    windowed_rules: int = 2,
    margin: float = 1.5,
    batch: int = 1,
) -> dict[str, int]:
    """What a pipeline job fitting this image should ask for: host memory (`mem_mb`: the process plus,
    on a CPU, the fit's estimate, times `margin`) and a GPU memory hint (`gpu_mem_mb`, 0 on a CPU).
    The pipeline records every rule, both windowed ES-WMV variants included."""
    gpu = device == "cuda" or (device == "auto" and cuda_available())
    need = estimate(
        arch, h, w, channels, batch=batch, device="cuda" if gpu else "cpu", window=window, windowed_rules=windowed_rules
    ).bytes
    host = PROCESS_BYTES + (0 if gpu else need)
    return {"mem_mb": int(host * margin / 2**20) + 1, "gpu_mem_mb": int(need * margin / 2**20) + 1 if gpu else 0}


def cuda_available() -> bool:
    return torch.cuda.is_available()


def available_bytes(device: str | torch.device) -> int | None:
    """Memory a new fit can still take on `device`: free CUDA memory, or on a CPU the kernel's
    MemAvailable, capped by the cgroup's limit (containers, SLURM jobs). None where unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def _resident_bytes() -> int:
    """Current resident memory of this process (Linux /proc; else the high-water mark)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return _peak_bytes()


def _peak_bytes() -> int:
    """The resident high-water mark: Linux's VmHWM (which `_reset_peak` can reset), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _reset_peak() -> None:
    """Start the high-water mark afresh (Linux: writing 5 to clear_refs), so that a transient before the
    fit (imports, the first allocations of a fresh process) is not counted as the fit's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _measure_here(arch: str, size: int, iterations: int, window: int | None, checkpointed: bool = False) -> int:
    """Extra peak memory of a short fit in this (fresh) process: high-water mark minus the resident
    memory just before the fit started."""
    from dip.fit import FitSettings, fit
    from dip.operators import Denoise
    from dip.presets import architecture
    from dip.seeds import generator
    from dip.stopping import make_rule

    torch.set_num_threads(1)
    spec = architecture(arch)
    clean = torch.rand(1, 3, size, size, generator=generator(0, "observation"))
    settings = FitSettings(
        iterations=iterations,
        check_every=1,
        ssim_every=10**6,
        bf16=False,
        channels_last=False,
        **spec.get("settings", {}),
    )
    rules = [make_rule("es-wmv", iterations, window=window)] if window else []
    _reset_peak()
    before = _resident_bytes()
    fit(spec["net"], Denoise(25), clean, settings, rules=rules, checkpoint=None, memory_saving=checkpointed)
    return _peak_bytes() - before


def measure_peak(
    arch: str, size: int, iterations: int = 3, window: int | None = None, checkpointed: bool = False
) -> int:
    """Extra peak memory (bytes) of a short CPU fit of `arch` at size×size, measured in a fresh process;
    `checkpointed`: in memory-saving mode (activations recomputed in the backward pass)."""
    code = (
        "from dip.memory import _measure_here; "
        f"print(_measure_here({arch!r}, {size}, {iterations}, {window!r}, {checkpointed!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def calibrate(archs: list[str], sizes: tuple[int, int] = (128, 256)) -> dict[str, dict]:
    """Activation bytes per pixel of each architecture: the slope of the measured extra peak between
    two sizes (the parameters' and the runtime's shares do not grow with the image, so the slope is
    the activations' alone)."""
    table = {}
    for arch in archs:
        small, large = (measure_peak(arch, s) for s in sizes)
        slope = (large - small) / (sizes[1] ** 2 - sizes[0] ** 2)
        table[arch] = {"bytes_per_pixel": round(slope, 1), f"peak_{sizes[0]}": small, f"peak_{sizes[1]}": large}
    return table


def calibrate_checkpointed(archs: list[str], sizes: tuple[int, int] = (128, 256)) -> dict[str, dict]:
    """Each architecture's activation slope (as `calibrate`) in memory-saving mode beside the plain one,
    and their ratio: CHECKPOINTED_FACTOR is the largest ratio measured."""
    table = {}
    for arch in archs:
        slopes = {}
        for mode in (False, True):
            small, large = (measure_peak(arch, s, checkpointed=mode) for s in sizes)
            slopes[mode] = (large - small) / (sizes[1] ** 2 - sizes[0] ** 2)
        table[arch] = {
            "plain_bytes_per_pixel": round(slopes[False], 1),
            "checkpointed_bytes_per_pixel": round(slopes[True], 1),
            "ratio": round(slopes[True] / slopes[False], 3),
        }
        print(arch, table[arch], file=sys.stderr, flush=True)
    return table


if __name__ == "__main__":
    from dip.presets import ARCHITECTURES

    args = sys.argv[1:]
    if args[:1] == ["--checkpointed"]:
        print(strict_json.dumps(calibrate_checkpointed(args[1:] or list(ARCHITECTURES)), indent=1))
    else:
        print(strict_json.dumps(calibrate(args or list(ARCHITECTURES)), indent=1))
