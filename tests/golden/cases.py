"""Golden fits: small fixed-seed fits whose histories, stops and images were frozen before the loop's
redesign (issue #22), so that the redesign is checked against what the code did before it.

    python tests/golden/cases.py --write   # regenerate this CPU's files (a deliberate act: say why in the commit)

The numbers depend on the CPU's kernels: PyTorch runs AVX-512 or AVX2 code by what the CPU has, and they
round differently, which the fits' early iterations amplify; so do Intel's and AMD's CPUs of one instruction
set (oneDNN and MKL choose their kernels by the CPU). `NAME.KIND.json` holds the fit as CPUs of KIND
(`cpu_kind()`) compute it: `amd-avx512` was frozen before the redesign; `amd-avx2` (AMD EPYC, 2026-12-02)
and `intel-avx512` (Intel Xeon with AVX-512 BF16, 2026-12-02) from the loop whose `amd-avx512` run the test
held to those files, with the same update as the test replays (`StackedAdam` for single fits).

Each case is a whole fit (the library path, `fit` or `fit_batch`) of a 32×32 crop for 80 iterations (EMA 0.9, so that the rules' kept images lag by 9 iterations and some rules stop), with
ground truth and the stopping rules recorded, so that every per-iteration quantity the loop computes
(loss, PSNRs, rule signals, SSIM, EMA) and every host decision (stops, chosen iterations) is covered.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from dip.fit import FitSettings, fit, fit_batch  # noqa: E402
from dip.image_io import to_tensor  # noqa: E402
from dip.operators import Denoise, HeldOut, Inpaint, SuperResolve, random_drop  # noqa: E402
from dip.seeds import generator  # noqa: E402
from dip.stopping import clipped_noise_mse, make_rule  # noqa: E402

from conftest import natural_crop  # noqa: E402

ITERATIONS = 80


def _settings(**kw) -> FitSettings:
    return FitSettings(**{"iterations": ITERATIONS, "check_every": 20, "ssim_every": 20, "ema": 0.9, **kw})


def _rules(s: FitSettings, observed: torch.Tensor, sigma: float | None = 25) -> list:
    rules = [
        make_rule("es-wmv", s.iterations, window=10, patience=15, ema=s.ema),
        make_rule("es-emv", s.iterations, window=10, patience=15, ema=s.ema),
    ]
    if sigma is not None:
        rules.append(
            make_rule("discrepancy", s.iterations, ema=s.ema, discrepancy=clipped_noise_mse(observed, sigma / 255))
        )
    return rules


def _clean() -> torch.Tensor:
    return to_tensor(natural_crop(64)[::2, ::2].copy())


def case_denoise() -> list:
    clean = _clean()
    observed = Denoise(25).observe(clean, generator(0, "observation"))
    s = _settings(seed=3)
    return [fit({"kind": "skip"}, Denoise(25), observed, s, clean=clean, rules=_rules(s, observed))]


def case_denoise_batch() -> list:
    clean = _clean()
    observed = Denoise(25).observe(clean, generator(0, "observation"))
    s = _settings()
    return fit_batch(
        {"kind": "skip"},
        Denoise(25),
        observed,
        s,
        [0, 1, 2],
        clean=clean,
        rules=[_rules(s, observed) for _ in range(3)],
        stop_on="es-wmv",
    )


def case_inpaint_holdout() -> list:
    clean = _clean()
    mask = random_drop(32, 32, 0.5, generator(1, "observation"))
    observed = Inpaint(mask).observe(clean)
    s = _settings(seed=1)
    held = HeldOut(Inpaint(mask), observed, 0.05, generator(1, "holdout"))
    # The patience these fits were frozen with (a fifth of the budget), whatever the rule's default.
    rule = make_rule("holdout", s.iterations, patience=s.iterations // 5, heldout=(held, observed))
    return [fit({"kind": "skip"}, held, observed, s, clean=clean, rules=[rule], stop_on="holdout")]


def case_sr() -> list:
    clean = _clean()
    observed = SuperResolve(2).observe(clean)
    s = _settings(seed=2, reg_noise_std=0.03)
    return [fit({"kind": "skip"}, SuperResolve(2), observed, s, clean=clean, rules=_rules(s, observed, None))]


CASES = {
    "denoise": case_denoise,
    "denoise_batch": case_denoise_batch,
    "inpaint_holdout": case_inpaint_holdout,
    "sr": case_sr,
}


def record(results: list) -> list[dict]:
    """What is frozen of each fit: its history (but wall times), stops, counters and image statistics."""
    out = []
    for r in results:
        history = r.history.drop(columns="seconds")
        out.append(
            {
                "history": {c: [None if not np.isfinite(v) else float(v) for v in history[c]] for c in history.columns},
                "stops": r.stops,
                "stopped_by": r.stopped_by,
                "iterations": r.iterations,
                "backtracks": r.backtracks,
                "image_mean": float(r.image.mean()),
                "image": [float(v) for v in r.image.flatten()[::37]],
            }
        )
    return out


def cpu_kind() -> str:
    """This CPU's kind of kernels: its vendor and the instruction set PyTorch runs (e.g. ``intel-avx512``).
    Both matter: oneDNN and MKL pick different kernels on Intel and AMD CPUs of the same instruction set."""
    vendors = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    vendor = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("vendor_id")), "unknown")
    return f"{vendors.get(vendor, vendor.lower())}-{torch.backends.cpu.get_cpu_capability().lower()}"


KIND = cpu_kind()


def path(name: str, kind: str = KIND) -> Path:
    """The frozen fit `name` of CPUs of `kind` (this CPU's by default); it may not exist."""
    return HERE / f"{name}.{kind}.json"


def kinds() -> list[str]:
    """The CPU kinds whose fits are frozen here."""
    return sorted({p.name.split(".", 1)[1].removesuffix(".json") for p in HERE.glob("denoise.*.json")})


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    import dip.fit
    from dip.optim import StackedAdam, make_optimiser

    def elementwise_adam(name, params, lr, fits, device, leaves=None):  # as tests/test_golden.py replays
        if name == "adam":
            return StackedAdam(params, lr, fits, leaves)
        return make_optimiser(name, params, lr, fits, device, leaves)

    dip.fit.make_optimiser = elementwise_adam
    for name, case in CASES.items():
        path(name).write_text(json.dumps(record(case()), indent=None))
        print("wrote", path(name))
