"""dip.record: the fit record is summary.json's schema, read back whole, and flattened into runs.csv rows."""

import doctest
import json
import math

import numpy as np
import pandas as pd
import pytest

from dip import record
from dip.record import FitRecord, StopRecord


def test_the_docstring_example_runs():
    result = doctest.testmod(record, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


def a_record(**changes) -> FitRecord:
    values = dict(
        task="sr",
        task_label="sr-x4",
        task_params={"factor": 4},
        arch="skip",
        seed=2,
        observation_seed=0,
        iterations_budget=100,
        settings={"lr": 0.01, "iterations": 100},
        versions={"torch": "2.13.0"},
        fingerprint={"arch": "skip", "seeds": [2]},
        iterations=80,
        psnr_restored=25.0,
        ssim_restored=0.7,
        stops={
            "es-wmv": StopRecord(iteration=40, minimum=30, stop_at=80, stopped=True, psnr=24.0, ssim=0.6),
            "discrepancy": StopRecord(iteration=None, target=0.01),
            "oracle": StopRecord(iteration=50, psnr=26.5, analysis_only=True),
        },
    )
    return FitRecord(**{**values, **changes})


def test_a_record_survives_summary_json(tmp_path):
    path = tmp_path / "summary.json"
    record.write(a_record(), path)
    assert record.read(path) == a_record()


def test_summary_json_keeps_the_flat_layout_older_folders_have(tmp_path):
    path = tmp_path / "summary.json"
    record.write(a_record(), path)
    data = json.loads(path.read_text())
    # Task parameters and scores at the top level, optional fields that do not apply left out.
    assert data["task"] == "sr" and data["factor"] == 4 and "task_params" not in data
    assert data["psnr_restored"] == 25.0 and "psnr_observed" not in data and "error" not in data
    assert data["stops"]["oracle"] == {"iteration": 50, "psnr": 26.5, "analysis_only": True}
    assert data["stops"]["discrepancy"] == {"iteration": None, "minimum": None, "stop_at": None, "stopped": False,
                                            "target": 0.01}  # fmt: skip
    # A reader tells "not resumed" from "unknown": these stay even when None.
    assert data["resumed_from"] is None and "stopped_by" in data


def test_a_file_that_is_not_a_summary_is_named(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"task": "denoise"}))
    with pytest.raises(ValueError, match="summary.json: not a dip fit summary"):
        record.read(path)


def test_a_runs_row_without_ground_truth_has_the_stops_and_no_scores():
    row = record.runs_row(a_record(), image="baboon", task_label="sr-x4-config")
    assert row["image"] == "baboon" and row["task_label"] == "sr-x4-config" and row["fit_label"] == "sr-x4"
    assert row["setting_lr"] == 0.01 and row["version_torch"] == "2.13.0" and row["factor"] == 4
    assert row["es-wmv_iteration"] == 40 and row["es-wmv_minimum"] == 30
    assert row["es-wmv_saved"] == pytest.approx(0.2)  # stopped at 80 of 100
    assert row["discrepancy_saved"] == 0  # never stopped: ran the whole budget
    assert not any(k.endswith(("_psnr", "_gap", "_png")) for k in row)


def test_a_scored_runs_row_judges_each_rule_against_the_oracle():
    rng = np.random.default_rng(0)
    clean = rng.random((16, 16, 3)).astype(np.float32)
    restored = np.clip(clean + 0.01, 0, 1)
    history = pd.DataFrame({"iteration": np.arange(1, 101), "psnr": np.linspace(10, 30, 100)})
    fit = a_record(task="denoise", task_label="denoise-s25", task_params={"sigma": 25.0})
    row = record.runs_row(fit, "img", "denoise-s25", history=history, restored=restored, clean=clean)
    assert row["psnr_restored_png"] == pytest.approx(40.0, abs=0.1)  # a 0.01 offset almost everywhere
    assert row["oracle_psnr_raw"] == 30.0
    assert row["es-wmv_psnr_raw"] == history.set_index("iteration")["psnr"][30]
    assert row["es-wmv_gap"] == pytest.approx(26.5 - 24.0) and math.isnan(row["discrepancy_psnr"])


def test_a_failed_fit_row_is_unscored():
    fit = a_record(status="failed", error="diverged", stops={})
    row = record.runs_row(fit, "img", "sr-x4", clean=np.zeros((4, 4, 3)))
    assert row["status"] == "failed" and row["error"] == "diverged" and "psnr_restored_png" not in row
