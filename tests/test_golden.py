"""The golden fits (tests/golden/cases.py), frozen before the loop's redesign, against the loop of now.

The loop may reorder float reductions (a per-fit loss, a fused optimiser), and CPUs of another kind
round differently, so numbers are compared within float-rounding tolerances measured when the goldens
were checked against the redesigned loop (README, "How the code is organised"); every host decision
(which rule stopped, at which iteration, which iteration each rule chose) must be identical.
"""
import json

import numpy as np
import pytest
import torch

from golden import cases

TOLERANCE = {"loss": 1e-3, "psnr": 0.02, "signal": 1e-2, "ssim": 2e-3, "image": 2e-3}  # rel, dB, rel, abs, abs


def _kind(column: str) -> str:
    return ("signal" if column.startswith("signal_") else "psnr" if column.startswith("psnr")
            else "ssim" if column.startswith("ssim") else column)


def _compare(column: str, got: list, want: list) -> float:
    got, want = np.array(got, dtype=float), np.array(want, dtype=float)
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{column}: missing values differ"
    ok = ~np.isnan(want)
    kind = _kind(column)
    if kind == "iteration":
        assert np.array_equal(got, want)
        return 0.0
    diff = np.abs(got[ok] - want[ok])
    if kind in ("loss", "signal"):
        diff = diff / np.maximum(np.abs(want[ok]), 1e-12)
    worst = float(diff.max(initial=0.0))
    assert worst <= TOLERANCE[kind], f"{column}: off by {worst:.3g} (tolerance {TOLERANCE[kind]})"
    return worst


@pytest.mark.parametrize("name", list(cases.CASES))
def test_the_loop_reproduces_the_golden_fits(name):
    torch.set_num_threads(1)
    frozen = json.loads(cases.path(name).read_text())
    now = cases.record(cases.CASES[name]())
    assert len(now) == len(frozen)
    worst = {}
    for fit_now, fit_then in zip(now, frozen):
        assert list(fit_now["history"]) == list(fit_then["history"])
        for column in fit_then["history"]:
            kind = _kind(column)
            worst[kind] = max(worst.get(kind, 0.0), _compare(column, fit_now["history"][column],
                                                             fit_then["history"][column]))
        for key in ("stops", "stopped_by", "iterations", "backtracks"):
            now_value, then_value = fit_now[key], fit_then[key]
            if key == "stops":  # the discrepancy target is a float computed outside the loop
                now_value = {r: {k: v for k, v in d.items() if k != "target"} for r, d in now_value.items()}
                then_value = {r: {k: v for k, v in d.items() if k != "target"} for r, d in then_value.items()}
            assert now_value == then_value, f"{key} differs"
        worst["image"] = max(worst.get("image", 0.0), _compare("image", fit_now["image"], fit_then["image"]))
    print(name, "largest differences:", {k: f"{v:.2g}" for k, v in worst.items()})
