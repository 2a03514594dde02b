"""dip.pipeline.tables on small synthetic rows: the numbers of summary.csv/.md and stopping.csv/.md."""

import numpy as np
import pandas as pd
import pytest

from dip.pipeline import tables as t


def fit(image, arch="skip", task="denoise-s25", seed=0, psnr=20.0, **extra):
    """One runs.csv row of a fit that ended ok, every score derived from `psnr`."""
    return {
        "task_label": task,
        "fit_label": task,
        "arch": arch,
        "image": image,
        "seed": seed,
        "status": "ok",
        "holdout": 0.0,
        "psnr_restored_png": psnr,
        "ssim_restored_png": psnr / 100,
        "psnr_final": psnr - 1,
        "ssim_final": psnr / 100 - 0.01,
        "oracle_psnr": psnr + 1,
        "es-wmv_psnr": psnr - 0.5,
        "es-wmv_gap": 1.5,
        "es-wmv_iteration": 100,
        "es-wmv_saved": 0.5,
        **extra,
    }


@pytest.fixture
def runs():
    rows = [
        fit("a", psnr=20.0, discrepancy_psnr=19.0, discrepancy_ssim=0.5, discrepancy_gap=2.0),
        fit("b", psnr=22.0, discrepancy_psnr=21.0, discrepancy_ssim=0.6, discrepancy_gap=2.0),
        fit("a", task="sr-x4", psnr=25.0, **{"es-wmv_gap": 0.5, "es-wmv_gap_raw": 0.25}),
        fit("b", task="sr-x4", psnr=26.0, **{"es-wmv_gap": 3.5, "es-wmv_gap_raw": 0.75}),
        {"task_label": "denoise-s25", "arch": "skip", "image": "c", "seed": 0, "status": "failed", "error": "diverged"},
    ]
    return pd.DataFrame(rows)


@pytest.fixture
def baselines():
    return pd.DataFrame(
        [
            {"image": i, "task_label": "denoise-s25", "task": "denoise", "method": m, "psnr": p, "ssim": p / 100}
            for i, m, p in [("a", "nlm", 18.0), ("b", "nlm", 24.0), ("a", "noisy", 10.0), ("b", "noisy", 10.0)]
        ]
    )


def test_mean_std_is_the_population_spread_and_empty_without_values():
    assert t.mean_std(pd.Series([20.0, 22.0])) == "21.00 ± 1.00"
    assert t.mean_std(pd.Series([1.0, 2.0, 3.0, np.nan])) == "2.00 ± 0.82"
    assert t.mean_std(pd.Series([np.nan, np.nan])) == ""


def test_summary_aggregates_each_method_over_images_and_counts_failed_fits(runs, baselines):
    summary = t.tables(runs, baselines).summary.set_index(["task_label", "arch", "method"])
    restored = summary.loc[("denoise-s25", "skip", "DIP (restored)")]
    assert restored[["psnr_mean", "psnr_std", "psnr_median", "n", "failed"]].tolist() == [21.0, 1.0, 21.0, 2, 1]
    assert restored["ssim_mean"] == pytest.approx(0.21)
    assert summary.loc[("denoise-s25", "skip", "DIP (last iterate)"), "psnr_mean"] == 20.0
    assert summary.loc[("denoise-s25", "skip", "DIP oracle (analysis)"), "psnr_mean"] == 22.0
    assert np.isnan(summary.loc[("denoise-s25", "skip", "DIP oracle (analysis)"), "ssim_mean"])
    # The discrepancy rule's image where it was recorded (the noisy task), nowhere else.
    assert summary.loc[("denoise-s25", "skip", "DIP (discrepancy rule)"), "psnr_mean"] == 20.0
    assert ("sr-x4", "skip", "DIP (discrepancy rule)") not in summary.index
    nlm = summary.loc[("denoise-s25", "-", "nlm")]
    assert nlm[["psnr_mean", "psnr_std", "psnr_median", "n", "failed"]].tolist() == [21.0, 3.0, 21.0, 2, 0]
    assert summary.loc[("sr-x4", "skip", "DIP (restored)"), "failed"] == 0


def test_summary_markdown_has_a_section_per_task_and_lists_failed_fits(runs, baselines):
    text = t.tables(runs, baselines).summary_md
    assert text.startswith("# Deep Image Prior benchmark")
    denoise = text.split("## denoise-s25")[1].split("## sr-x4")[0]
    restored = next(line for line in denoise.splitlines() if "DIP (restored)" in line)
    cells = [c.strip() for c in restored.strip("|").split("|")]
    assert cells == ["skip", "DIP (restored)", "21.00 ± 1.00", "21", "0.21 ± 0.01", "2"]
    failed = text.split("## Failed fits")[1]
    assert "diverged" in failed and "| c " in failed


def test_stopping_table_judges_each_rule_per_task_and_architecture(runs, baselines):
    stopping = t.tables(runs, baselines).stopping.set_index(["task_label", "rule"])
    sr = stopping.loc[("sr-x4", "es-wmv")]
    assert sr[["median_gap", "worst_gap", "median_gap_raw", "worst_gap_raw", "fits"]].tolist() == [
        2.0,
        3.5,
        0.5,
        0.75,
        2,
    ]
    assert sr["oracle_psnr"] == 26.5 and sr["final_psnr"] == 24.5 and sr["rule_psnr"] == 25.0
    assert sr["median_iteration"] == 100 and sr["median_saved"] == 0.5
    # No raw-output column for the denoising rules: NaN, not an error; no row where a rule was not recorded.
    assert np.isnan(stopping.loc[("denoise-s25", "es-wmv"), "median_gap_raw"])
    assert stopping.loc[("denoise-s25", "discrepancy"), "median_gap"] == 2.0
    assert ("sr-x4", "discrepancy") not in stopping.index
    assert list(t.tables(runs, baselines).stopping.columns) == t.STOPPING_COLUMNS
    text = t.tables(runs, baselines).stopping_md
    assert text.startswith("# Stopping without ground truth") and "| sr-x4 " in text


def test_holdout_vs_full_scores_the_holdout_rule_against_the_twin_fits_oracle():
    full = [fit(i, psnr=p) for i, p in (("a", 20.0), ("b", 22.0))]  # oracle 21 and 23
    held = [
        fit(i, task="denoise-s25-holdout", fit_label="denoise-s25-holdout0.1", holdout=0.1, psnr=p)
        | {"holdout_psnr": p - 2, "holdout_gap": 1.0, "holdout_iteration": 50, "holdout_saved": 0.75}
        for i, p in (("a", 19.0), ("b", 21.0))
    ]
    ok = t.with_holdout_vs_full(pd.DataFrame(full + held))
    # Twin oracles 21 and 23 against the holdout rule's 17 and 19: 4 dB each.
    assert ok["holdout-vs-full_gap"].tolist()[2:] == [4.0, 4.0] and ok["holdout-vs-full_gap"][:2].isna().all()
    stopping = t.stopping_table(t.scored_fits(pd.DataFrame(full + held))).set_index(["task_label", "rule"])
    row = stopping.loc[("denoise-s25-holdout", "holdout-vs-full")]
    assert row["median_gap"] == 4.0 and row["median_iteration"] == 50 and row["median_saved"] == 0.75
    assert ("denoise-s25", "holdout") not in stopping.index


def test_fits_without_a_ground_truth_give_empty_scores_and_no_stopping_rows():
    runs = pd.DataFrame(
        [
            {
                "task_label": "flash",
                "arch": "skip-flash",
                "image": "cup",
                "seed": 0,
                "status": "ok",
                "es-wmv_iteration": 9,
            }
        ]
    )
    baselines = pd.DataFrame(
        [{"image": "cup", "task_label": "flash", "method": "noflash", "psnr": np.nan, "ssim": np.nan}]
    )
    result = t.tables(runs, baselines)
    assert result.stopping.empty and list(result.stopping.columns) == t.STOPPING_COLUMNS
    restored = result.summary.set_index("method").loc["DIP (restored)"]
    assert np.isnan(restored["psnr_mean"]) and restored["n"] == 1
    assert "## flash" in result.summary_md and "Failed fits" not in result.summary_md


def test_rows_are_read_from_every_file_and_baseline_folder(tmp_path, baselines):
    for k, (_, part) in enumerate(baselines.groupby("image")):
        (tmp_path / f"obs{k}").mkdir()
        part.to_csv(tmp_path / f"obs{k}" / "metrics.csv", index=False)
    read = t.read_baselines([tmp_path / "obs0", tmp_path / "obs1"])
    pd.testing.assert_frame_equal(read, baselines.sort_values("image", kind="stable").reset_index(drop=True))
