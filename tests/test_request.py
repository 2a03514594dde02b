"""dip.request: `dip fit` is an immutable FitRequest run by one Python call that writes the same files and
record."""

import dataclasses
import json

import pytest

from dip import record
from dip.cli import main, parser
from dip.image_io import InputError
from dip.request import DegradeRequest, FitRequest, memory_plan, run_fit

COMMON = ["--task", "denoise", "--sigma", "25", "--arch", "skip-3", "--iters", "12", "--record-stops"]
# What differs between two runs of the same fit: time, and the folder it was written to.
RUN_DEPENDENT = {"seconds", "wall_seconds", "seconds_saved"}


def test_the_python_call_writes_what_the_command_writes(png64, tmp_path, capsys):
    assert main(["fit", *COMMON, "--image", str(png64), "--no-progress", "--out", str(tmp_path / "cli")]) == 0
    printed = json.loads(capsys.readouterr().out)
    request = FitRequest(task="denoise", sigma=25, arch="skip-3", iters=12, record_stops=True,
                         image=str(png64), progress=False, out=str(tmp_path / "py"))  # fmt: skip
    [returned] = run_fit(request, log=lambda line: None)
    cli = json.loads((tmp_path / "cli" / "summary.json").read_text())
    py = json.loads((tmp_path / "py" / "summary.json").read_text())
    assert {k: v for k, v in cli.items() if k not in RUN_DEPENDENT} == {
        k: v for k, v in py.items() if k not in RUN_DEPENDENT
    }
    assert returned == record.read(tmp_path / "py" / "summary.json")
    assert printed["psnr_restored"] == round(returned.psnr_restored, 3)
    assert (tmp_path / "cli" / "restored.png").read_bytes() == (tmp_path / "py" / "restored.png").read_bytes()


def test_the_command_line_parses_into_the_request_a_caller_would_write():
    args = parser().parse_args(["fit", *COMMON, "--image", "x.png", "--out", "o", "--seeds", "3", "1"])
    assert FitRequest.from_namespace(args) == FitRequest(
        task="denoise", sigma=25.0, arch="skip-3", iters=12, record_stops=True, image="x.png", out="o", seeds=(3, 1)
    )
    args = parser().parse_args(["degrade", "--task", "inpaint", "--text", "--image", "x.png", "--out", "o"])
    assert DegradeRequest.from_namespace(args) == DegradeRequest(task="inpaint", text=True, image="x.png", out="o")


def test_a_request_is_immutable_and_lists_its_outputs():
    request = FitRequest(task="denoise", sigma=25, image="x.png", out="runs/s{seed}", seeds=(0, 2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.iters = 5
    assert [(seed, str(out)) for seed, out in request.outputs()] == [(0, "runs/s0"), (2, "runs/s2")]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"window": 0}, "--window: must be an integer > 0"),
        ({"patience": 2.5}, "--patience: expected an integer, got 2.5"),
        ({"tv_weight": -1.0}, "--tv-weight: must be a finite number >= 0"),
        ({"red_weight": float("nan")}, "--red-weight: must be a finite number >= 0"),
        ({"stop": "early"}, "--stop: 'early' is not one of"),
        ({"noise_sigma": "guess"}, "--noise-sigma: a noise level"),
        ({"seeds": (1, 1)}, "--seeds: must be one or more distinct integers"),
        ({"task": "colourise"}, "--task: 'colourise' is not one of"),
        ({"seed": -1}, "--seed: must be >= 0"),
        # Python callers have no argparse in front: a value of the wrong type is refused, not rounded.
        ({"seed": 1.5}, "--seed: expected an integer, got 1.5"),
        ({"seed": True}, "--seed: expected an integer, got True"),
        ({"iters": "20"}, "--iters: expected an integer, got '20'"),
        ({"sigma": "abc"}, "--sigma: expected a number, got 'abc'"),
        ({"seeds": (0.5, 1)}, "--seeds: expected integers"),
        ({"seeds": ()}, "--seeds: must be one or more distinct integers"),
        ({"seed": 2, "seeds": (0, 1)}, "--seed: give one network seed"),
        ({"intensity_range": "0,255"}, "--intensity-range: expected two numbers"),
    ],
)
def test_a_bad_value_is_refused_when_the_request_is_made(changes, message):
    with pytest.raises(InputError, match=message):
        FitRequest(**{"task": "denoise", "sigma": 25, "image": "x.png", "out": "o", **changes})


def test_files_are_checked_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match="missing.png"):
        run_fit(FitRequest(task="denoise", sigma=25, image=str(tmp_path / "missing.png"), out=str(out)))
    assert not out.exists()


def test_the_command_line_refuses_a_seed_beside_seeds(png64, tmp_path, capsys):
    argv = ["fit", *COMMON, "--image", str(png64), "--seed", "2", "--seeds", "0", "1", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "--seed: give one network seed (--seed) or several (--seeds), not both" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_memory_plan_is_the_dry_runs_without_fitting(png64, tmp_path, capsys, monkeypatch):
    # The free memory is read afresh by each plan and moves between two reads: hold it still.
    monkeypatch.setattr("dip.memory.available_bytes", lambda device: 8 * 2**30)
    base = dict(task="denoise", sigma=25, arch="skip-3", iters=12, record_stops=True, image=str(png64),
                out=str(tmp_path / "out"))  # fmt: skip
    plan = memory_plan(FitRequest(**base))
    assert main(["fit", *COMMON, "--image", str(png64), "--dry-run", "--out", str(tmp_path / "out")]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert plan == {key: dry[key] for key in plan} and plan["available_mb"] == 8 * 1024
    assert plan["memory_mode"] == "plain" and plan["estimated_peak_mb"] == plan["plain_estimated_mb"]
    saving = memory_plan(FitRequest(**base, memory_saving=True))
    assert saving["memory_mode"] == "checkpointed"
    assert saving["estimated_peak_mb"] == saving["memory_saving_estimated_mb"] < plan["plain_estimated_mb"]
    assert memory_plan(FitRequest(**{**base, "record_stops": False}, tile=40, tile_overlap=16))["tiles"] == 4
    assert not (tmp_path / "out").exists()
