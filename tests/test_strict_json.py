"""Every JSON the project writes is strict (no NaN, no Infinity), and older summaries with Infinity read."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dip.record import FitRecord, read, write
from dip.strict_json import decode, dumps, encode, loads_strict

ROOT = Path(__file__).resolve().parents[1]


def test_non_finite_numbers_are_null_with_a_note_and_read_back_as_they_were():
    data = {
        "psnr_observed": float("inf"),
        "loss": float("nan"),
        "low": -math.inf,
        "ssim": np.float32(0.5),
        "stops": {"oracle": {"psnr": math.inf}},
        "curve": [1.0, math.nan, math.inf],
        "count": 3,
    }
    text = dumps(data)
    strict = loads_strict(text)
    assert strict["psnr_observed"] is None
    assert strict["psnr_observed_note"] == "inf: the image equals the reference (zero error)"
    assert strict["loss_note"] == "nan" and strict["low_note"] == "-inf" and strict["ssim"] == 0.5
    assert strict["stops"]["oracle"] == {"psnr": None, "psnr_note": "inf: the image equals the reference (zero error)"}
    assert strict["curve"] == [1.0, None, None] and strict["curve_note"] == "[1]=nan, [2]=inf"
    back = decode(strict)
    assert back["psnr_observed"] == math.inf and math.isnan(back["loss"]) and back["low"] == -math.inf
    assert back["curve"][2] == math.inf and math.isnan(back["curve"][1]) and back["count"] == 3
    assert "psnr_observed_note" not in back and back["stops"]["oracle"]["psnr"] == math.inf


def test_the_strict_parser_refuses_what_jq_refuses_and_dumps_never_writes_it():
    for text in ('{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}'):
        with pytest.raises(ValueError, match="not strict JSON"):
            loads_strict(text)
    with pytest.raises(ValueError, match="already taken"):
        encode({"psnr": math.inf, "psnr_note": "mine"})


def test_a_record_with_an_infinite_score_is_written_strictly_and_read_back_equal(tmp_path):
    record = FitRecord(
        task="denoise", task_label="denoise-s25", arch="skip", seed=0, observation_seed=0, iterations_budget=3
    )
    record.psnr_observed = math.inf
    write(record, tmp_path / "summary.json")
    assert loads_strict((tmp_path / "summary.json").read_text())["psnr_observed"] is None
    assert read(tmp_path / "summary.json") == record


def test_an_older_summary_holding_infinity_still_reads(tmp_path):
    record = FitRecord(
        task="denoise", task_label="denoise-s25", arch="skip", seed=0, observation_seed=0, iterations_budget=3
    )
    older = json.dumps(record.to_json() | {"psnr_observed": math.inf})  # Python's json wrote Infinity
    assert "Infinity" in older
    (tmp_path / "summary.json").write_text(older)
    assert read(tmp_path / "summary.json").psnr_observed == math.inf


def test_every_json_writer_of_the_project_goes_through_strict_json():
    """json.dump/json.dumps anywhere else in dip/ or workflow/ would write NaN or Infinity as Python does."""
    allowed = {"dip/strict_json.py", "dip/provenance.py"}  # provenance: a hash's input, never written
    files = [*ROOT.glob("dip/**/*.py"), *ROOT.glob("workflow/**/*.py"), *ROOT.glob("workflow/**/*.smk")]
    writers = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in files
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"(?<![\w.])json\.dumps?\(", line) and str(p.relative_to(ROOT)) not in allowed
    ]
    assert files and writers == []


def test_a_fit_whose_observation_is_its_ground_truth_writes_strict_json(tmp_path):
    """The printed line and summary.json of a fit with an infinite score parse as strict JSON."""
    from conftest import natural_crop

    image = tmp_path / "a.png"
    Image.fromarray(np.round(natural_crop(32) * 255).astype(np.uint8)).save(image)
    out = tmp_path / "run"
    args = ["fit", "--task", "denoise", "--sigma", "25", "--observed", image, "--clean", image, "--iters", "2"]
    r = subprocess.run(
        [sys.executable, "-m", "dip", *map(str, args), "--threads", "1", "--no-progress", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    line = loads_strict(r.stdout)
    assert line["psnr_observed"] is None and line["psnr_observed_note"].startswith("inf: ")
    assert line["psnr_restored"] < 100
    summary = loads_strict((out / "summary.json").read_text())
    assert summary["psnr_observed"] is None and summary["ssim_observed"] == pytest.approx(1.0)
    assert read(out / "summary.json").psnr_observed == math.inf
