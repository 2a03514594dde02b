"""dip.pipeline.figures on tiny files: panels, titles, markers and bars that follow from known rows."""

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from matplotlib.markers import MarkerStyle

from dip.image_io import save_figure, save_png, to_tensor
from dip.pipeline import figures as f
from dip.stopping import drawing

ARCHS = ["skip", "deep_decoder"]


def png(path, value):
    save_png(to_tensor(np.full((8, 8, 3), value, np.float32)), path)
    return str(path)


def history(path, ema=True):
    it = np.arange(1, 21)
    columns = {"iteration": it, "psnr": 10 + it / 2, "psnr_ema": 10 + it} if ema else {"iteration": it}
    pd.DataFrame({**columns, "psnr_observed": 30 - it}).to_csv(path, index=False)
    return str(path)


def shown_image(tmp_path, image, clean=True, flash=False, methods=("noisy", "nlm", "tv")):
    folder = tmp_path / "baselines" / image
    folder.mkdir(parents=True)
    scores = {"noisy": 20.0, "nlm": 25.0, "tv": 24.0, "noflash": np.nan}
    rows = [{"image": image, "method": m, "psnr": scores[m] if clean else np.nan} for m in methods]
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)
    for m in methods:
        png(folder / f"{m}.png", 0.5)
    return {
        "image": image,
        "clean": png(tmp_path / f"{image}-clean.png", 0.4) if clean else None,
        "flash": png(tmp_path / f"{image}-flash.png", 0.9) if flash else None,
        "observed": png(tmp_path / f"{image}-observed.png", 0.3),
        "baselines": str(folder),
    }


def run_row(image, arch, status="ok", task="denoise-s25", **scores):
    return {"task_label": task, "image": image, "arch": arch, "seed": 0, "status": status, **scores}


@pytest.fixture
def task(tmp_path):
    images = [shown_image(tmp_path, i) for i in ("a", "b")]
    fits = [
        {
            "arch": arch,
            "image": i,
            "history": history(tmp_path / f"{arch}-{i}.csv"),
            "restored": png(tmp_path / f"{arch}-{i}.png", 0.4),
        }
        for arch in ARCHS
        for i in ("a", "b")
    ]
    runs = pd.DataFrame(
        [
            run_row("a", "skip", psnr_restored_png=28.0, oracle_iteration=10, **{"es-wmv_iteration": 15}),
            run_row("b", "skip", psnr_restored_png=30.0, oracle_iteration=12, **{"es-wmv_iteration": 16}),
            run_row("a", "deep_decoder", psnr_restored_png=26.0, oracle_iteration=8),
            run_row("b", "deep_decoder", status="failed"),
            run_row("a", "skip", task="sr-x4", psnr_restored_png=99.0),  # another task: not shown
        ]
    )
    summary = pd.DataFrame(
        [
            {"task_label": "denoise-s25", "arch": "-", "method": "nlm", "psnr_mean": 25.0},
            {"task_label": "denoise-s25", "arch": "-", "method": "tv", "psnr_mean": 24.0},
            {"task_label": "sr-x4", "arch": "-", "method": "bicubic", "psnr_mean": 40.0},
        ]
    )
    return images, fits, runs, summary


def shown(archs, images, fits):
    return {"seed": 0, "archs": archs, "images": images, "fits": fits}


def titles(fig):
    return [ax.get_title() for ax in fig.axes]


def test_the_comparison_grid_has_a_panel_per_image_and_column_titled_with_its_score(task):
    images, fits, runs, summary = task
    fig = f.task_figures("denoise-s25", shown(ARCHS, images, fits), runs, summary)["comparison"]
    # Per image: ground truth, observation, nlm, tv (noisy is the observation itself), two networks.
    assert len(fig.axes) == 2 * 6
    assert titles(fig)[:6] == [
        "a: ground truth",
        "observation 20.00 dB",
        "nlm 25.00 dB",
        "tv 24.00 dB",
        "DIP skip 28.00 dB",
        "DIP deep_decoder 26.00 dB",
    ]
    assert titles(fig)[10:] == ["DIP skip 30.00 dB", "DIP deep_decoder: failed"]
    assert fig._suptitle.get_text() == "denoise-s25: PSNR against the ground truth"


def test_learning_curves_mark_each_rules_iteration_as_its_drawing_says(task):
    images, fits, runs, summary = task
    fig = f.task_figures("denoise-s25", shown(ARCHS, images, fits), runs, summary)["curves"]
    assert len(fig.axes) == 2  # one panel per image, no empty one
    marks = [(c.get_label(), c.get_offsets().tolist()) for c in fig.axes[0].collections]
    # The EMA curve is 10 + iteration: skip's oracle iteration 10 sits at 20 dB, its es-wmv's 15 at 25 dB;
    # deep_decoder recorded only its oracle.
    assert marks == [
        ("oracle (analysis)", [[10.0, 20.0]]),
        ("es-wmv", [[15.0, 25.0]]),
        ("oracle (analysis)", [[8.0, 18.0]]),
    ]
    for collection, rule in zip(fig.axes[0].collections, ("oracle", "es-wmv")):
        style = MarkerStyle(drawing(rule).marker)
        expected = style.get_path().transformed(style.get_transform()).vertices
        np.testing.assert_allclose(collection.get_paths()[0].vertices, expected)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["skip raw", "skip EMA", "oracle (analysis)", "es-wmv", "deep_decoder raw", "deep_decoder EMA"]


def test_architecture_bars_show_the_mean_restored_psnr_and_the_best_baseline(task):
    images, fits, runs, summary = task
    fig = f.task_figures("denoise-s25", shown(ARCHS, images, fits), runs, summary)["architectures"]
    ax = fig.axes[0]
    assert [bar.get_height() for bar in ax.patches] == [29.0, 26.0]  # the failed fit and the other task left out
    best = ax.get_lines()[-1]
    assert best.get_ydata()[0] == 25.0 and ax.get_legend().get_texts()[0].get_text() == "best baseline: nlm"


def test_without_a_ground_truth_the_figures_say_so_and_plot_the_fit_to_the_observation(tmp_path):
    images = [shown_image(tmp_path, "cup", clean=False, flash=True, methods=("noflash", "nlm"))]
    fits = [
        {
            "arch": "skip-flash",
            "image": "cup",
            "history": history(tmp_path / "h.csv", ema=False),
            "restored": png(tmp_path / "r.png", 0.4),
        }
    ]
    runs = pd.DataFrame([run_row("cup", "skip-flash", task="flash", **{"es-wmv_iteration": 5})])
    summary = pd.DataFrame(columns=["task_label", "arch", "method", "psnr_mean"])
    figs = f.task_figures("flash", shown(["skip-flash"], images, fits), runs, summary)
    # No ground-truth column at all (no image has one), the flash photograph first.
    assert titles(figs["comparison"]) == [
        "cup: flash (input)",
        "observation",
        "nlm",
        "DIP skip-flash",
    ]
    assert figs["comparison"]._suptitle.get_text() == "flash: no ground truth, not scored"
    curves = figs["curves"].axes[0]
    assert curves.get_title() == "cup (no ground truth)"
    assert [line.get_label() for line in curves.get_lines()] == ["skip-flash to the observation"]
    assert curves.collections[0].get_offsets().tolist() == [[5.0, 25.0]]  # on the curve 30 - iteration
    assert np.isnan(figs["architectures"].axes[0].patches[0].get_height())


def test_detection_gaps_histogram_each_rule_in_its_colour_with_median_and_worst():
    runs = pd.DataFrame(
        {
            "status": ["ok", "ok", "ok", "failed"],
            "es-wmv_gap": [0.5, 1.0, 2.0, 9.0],
            "discrepancy_gap": [3.0, np.nan, 3.0, 9.0],
        }
    )
    ax = f.detection_gaps(runs).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["es-wmv: median 1.00 dB, worst 2.00 dB", "discrepancy: median 3.00 dB, worst 3.00 dB"]
    colours = [mcolors.to_hex(c.patches[0].get_facecolor(), keep_alpha=False) for c in ax.containers]
    assert colours == [mcolors.to_hex(drawing(r).color) for r in ("es-wmv", "discrepancy")]


def test_a_figure_is_saved_as_png_and_pdf(tmp_path, task):
    images, fits, runs, summary = task
    fig = f.task_figures("denoise-s25", shown(ARCHS, images, fits), runs, summary)["architectures"]
    save_figure(fig, tmp_path / "bars.png")
    save_figure(fig, tmp_path / "bars.pdf")
    assert (tmp_path / "bars.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "bars.pdf").read_bytes()[:5] == b"%PDF-"
    assert not list(tmp_path.glob(".bars*"))  # no temporary file left behind
