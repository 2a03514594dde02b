"""`dip fit` when things go wrong: Ctrl-C while loading, a fit that keeps diverging (--failure-ok, as the
pipeline runs every fit), what a dry run says of the output folder, option names in errors, {seed}."""

import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dip.image_io import InputError
from dip.record import read, runs_row
from dip.request import FitRequest, plan_fit

DIP = [sys.executable, "-m", "dip"]

# `dip fit` whose network outputs NaN from its 31st forward pass on: the first check (25 iterations) is
# good, every later one backtracks until the fit fails.
NAN_NETWORK = """
import sys
import torch
import dip.networks
from dip.cli import main
make = dip.networks.make_network
class NaNs(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0
    def forward(self, z):
        self.calls += 1
        return self.net(z) * (float("nan") if self.calls > 30 else 1.0)
dip.networks.make_network = lambda *args, **kwargs: NaNs(make(*args, **kwargs))
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def png32(tmp_path):
    from conftest import natural_crop

    path = tmp_path / "a.png"
    Image.fromarray(np.round(natural_crop(32) * 255).astype(np.uint8)).save(path)
    return path


def test_ctrl_c_while_loading_is_one_line_and_exit_130(png32, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*DIP, "fit", "--task", "denoise", "--sigma", "25", "--image", str(png32), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)  # the interpreter is up and loading torch (seconds)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert stderr == "dip: interrupted by SIGINT while starting\n" and stdout == ""
    assert not out.exists()


def fit_with_nan_network(png32, out, *extra):
    # A small network (skip-3): the fit runs 175 iterations in all, 25 before the check and 25 on each backtrack.
    args = ["fit", "--task", "denoise", "--sigma", 25, "--image", png32, "--arch", "skip-3", "--iters", 60]
    args += ["--threads", 1, "--out", out]
    return subprocess.run(
        [sys.executable, "-c", NAN_NETWORK, *map(str, args), "--no-progress", *extra], capture_output=True, text=True
    )


def test_a_diverging_fit_exits_2_or_with_failure_ok_0_and_the_tables_count_it_failed(png32, tmp_path):
    from dip.pipeline import tables

    r = fit_with_nan_network(png32, tmp_path / "strict")
    assert r.returncode == 2, r.stderr
    assert "fit diverged at iteration" in r.stderr.splitlines()[-1] and "Traceback" not in r.stderr
    assert read(tmp_path / "strict" / "summary.json").status == "failed"  # the record says why, even so
    # What was computed is kept: the rows of the iterations verified before the failure.
    kept = pd.read_csv(tmp_path / "strict" / "history.csv")
    assert kept["iteration"].tolist() == list(range(1, 26)) and np.isfinite(kept["loss"]).all()

    out = tmp_path / "ok"
    r = fit_with_nan_network(png32, out, "--failure-ok")
    assert r.returncode == 0, r.stderr
    record = read(out / "summary.json")
    assert record.status == "failed" and record.error.startswith("fit diverged at iteration")
    assert "after 5 backtracks" in record.error and f"dip fit: {out}: fit diverged" in r.stderr
    assert len(pd.read_csv(out / "history.csv")) == 25

    # The pipeline's tables (rule `tables`) from this record's runs.csv row beside a fit that ended ok.
    failed = runs_row(record, image="a", task_label="denoise-s25")
    good = {"task_label": "denoise-s25", "arch": record.arch, "image": "b", "seed": 0, "status": "ok"}
    good |= {"psnr_restored_png": 30.0, "ssim_restored_png": 0.9, "psnr_final": 29.0, "ssim_final": 0.8}
    good |= {"oracle_psnr": 31.0, "holdout": 0.0, "fit_label": "denoise-s25"}
    baselines = pd.DataFrame(columns=["image", "task_label", "method", "psnr", "ssim"])
    made = tables.tables(pd.DataFrame([good, failed]), baselines)
    summary = made.summary.set_index(["task_label", "arch", "method"])
    assert summary.loc[("denoise-s25", record.arch, "DIP (restored)"), ["n", "failed"]].tolist() == [1, 1]
    listed = made.summary_md.split("## Failed fits")[1]
    assert "| a " in listed and "fit diverged" in listed


def test_a_dry_run_says_what_the_output_folder_holds(png32, tmp_path):
    from dip.checkpoint import fingerprint
    from dip.request import _identity, _read_inputs, _resolve

    out = tmp_path / "run"
    request = FitRequest(task="denoise", sigma=25, image=str(png32), iters=3, threads=1, out=str(out))
    quiet = lambda message: None  # noqa: E731
    assert plan_fit(request, quiet)["out_state"] == "free"
    job = _resolve(request, quiet)
    _read_inputs(job)
    own = fingerprint(job.settings, job.seeds, _identity(job))
    out.mkdir()
    torch.save({"fingerprint": own | {"sigma": 30.0, "lr": 0.5}}, out / "checkpoint.pt")
    plan = plan_fit(request, quiet)
    assert (
        plan["out_state"]
        == f"{out} holds a checkpoint of another fit (differs in: lr, sigma); the fit would be refused"
    )
    torch.save({"fingerprint": own}, out / "checkpoint.pt")
    assert plan_fit(request, quiet)["out_state"] == f"{out} holds this fit's checkpoint; the fit resumes from it"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"sigma": -3}, "--sigma: must be > 0 for the denoise task, got -3.0"),
        ({"sigma": 25, "lr": -1}, "--lr: must be > 0, got -1.0"),
        ({"sigma": 25, "ema": 1.5}, "--ema: must be in [0, 1), got 1.5"),
        ({"sigma": 25, "window": 0}, "--window: must be an integer > 0, got 0"),
        ({"sigma": 25, "quality": 50}, "--quality: the denoise task takes no --quality"),
    ],
)
def test_errors_of_dip_fit_name_the_option_as_it_is_typed(png32, tmp_path, options, message):
    out = tmp_path / "run"
    with pytest.raises(InputError) as err:
        from dip.request import run_fit

        run_fit(FitRequest(task="denoise", image=str(png32), out=str(out), **options))
    assert str(err.value).startswith(message)
    assert not out.exists()


def test_a_pipeline_configs_task_keeps_naming_its_key():
    from dip.tasks import Task

    with pytest.raises(InputError, match="^sigma: must be > 0"):
        Task.from_spec({"task": "denoise", "sigma": -3})


def test_seed_in_out_names_the_one_seed_of_a_single_fit():
    from pathlib import Path

    assert FitRequest(task="denoise", sigma=25, image="a.png", out="x_{seed}", seed=3).outputs() == [(3, Path("x_3"))]
    assert FitRequest(task="denoise", sigma=25, image="a.png", out="x_{seed}").outputs() == [(0, Path("x_0"))]
    assert FitRequest(task="denoise", sigma=25, image="a.png", out="r{1}", seeds=(4,)).outputs() == [
        (4, Path("r{1}/seed4"))
    ]
    r = subprocess.run([*DIP, "fit", "--help"], capture_output=True, text=True)
    assert "may hold {seed}" in " ".join(r.stdout.split())
