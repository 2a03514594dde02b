"""The pipeline's `stack_images`: fits of several images as one network per job (a file of its own, so that
pytest-xdist's --dist loadfile runs it beside tests/test_workflow.py's long end-to-end run)."""

import numpy as np
import pandas as pd
import yaml

from tests.test_workflow import job_counts, scratch, snakemake, write_config


def test_stacked_images_give_the_same_runs_in_fewer_fit_jobs(tmp_path):
    """stack_images: 2 on three 32x32 colour images: two jobs (astronaut+chelsea, coffee alone) instead of
    three, every fit in its usual folder, and runs.csv as without stacking (PSNR within the drift of batched
    against single fits, tests/test_fit.py)."""
    runs, counts = {}, {}
    for n in (1, 2):
        workdir = scratch(tmp_path / f"stack{n}")
        config = write_config(
            workdir,
            images=["astronaut", "chelsea", "coffee"],
            archs=["skip"],
            tasks={"denoise-s25": {"task": "denoise", "sigma": 25, "iterations": 6}},
            stack_images=n,
        )
        r = snakemake("results/tables/runs.csv", "--cores", 1, "--directory", workdir, "--configfile", config)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        counts[n] = job_counts(r.stdout + r.stderr)
        runs[n] = pd.read_csv(workdir / "results" / "tables" / "runs.csv").set_index("image").sort_index()
    assert counts[1]["fit"] == 3 and "fit_stack" not in counts[1]
    assert counts[2]["fit_stack"] == 2 and "fit" not in counts[2]
    stacked, alone = runs[2], runs[1]
    assert list(stacked.index) == list(alone.index) == ["astronaut", "chelsea", "coffee"]
    assert set(stacked.columns) == set(alone.columns)
    assert list(stacked["batched_fits"]) == [2, 2, 1] and list(alone["batched_fits"]) == [1, 1, 1]
    assert np.allclose(stacked["psnr_restored"], alone["psnr_restored"], atol=0.5)
    assert list(stacked["psnr_observed"]) == list(alone["psnr_observed"])  # the same observations
    manifest = workdir / "results" / "stacks" / "denoise-s25" / "skip" / "astronaut+chelsea.json"
    assert [f["status"] for f in yaml.safe_load(manifest.read_text())["fits"]] == ["ok", "ok"]
