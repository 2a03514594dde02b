import numpy as np
import pandas as pd
import torch

from dip.impedance import TARGETS, curves, figure, iterations_to_reach, reach_markdown, reach_table, targets


def test_targets_keep_shape_and_shuffling_keeps_the_pixels(clean64):
    t = targets(clean64, seed=0)
    assert all(x.shape == clean64.shape for x in t.values())
    assert torch.allclose(t["shuffled pixels"].flatten().sort().values, clean64.flatten().sort().values)


def test_skip_fits_the_natural_image_faster_than_shuffled_pixels_and_noise(clean64):
    # Measured on this crop (Intel Xeon, 2026-12-03): MSE 0.01 at iteration 25 for the image, 79 for the
    # image with noise, 126 for shuffled pixels, not within 150 for uniform noise.
    table = curves({"kind": "skip"}, clean64[..., :32, :32], iterations=60)
    reached = {name: iterations_to_reach(part, 0.01) for name, part in table.groupby("target")}
    assert reached["image"] < 60
    # Never reaching the threshold within the budget (NaN) counts as slower.
    for slow in ("shuffled pixels", "uniform noise"):
        assert not reached[slow] <= reached["image"], reached


def synthetic_curves() -> pd.DataFrame:
    """Two architectures' long tables: MSE 1/iteration on the image, 4/iteration on every other target."""
    it = np.arange(1, 101)
    return pd.concat(
        [
            pd.DataFrame({"arch": arch, "target": target, "iteration": it, "mse": (1 if target == "image" else 4) / it})
            for arch in ("skip", "deep_decoder")
            for target in TARGETS
        ],
        ignore_index=True,
    )


def test_the_reach_table_gives_the_first_iteration_at_each_mse_per_arch_and_target():
    table = reach_table(synthetic_curves(), ["deep_decoder", "skip"], [0.1, 0.02])
    assert list(table.columns) == ["arch", "target", "iterations to MSE 0.1", "iterations to MSE 0.02"]
    assert table[["arch", "target"]].values.tolist() == [[a, t] for a in ("deep_decoder", "skip") for t in TARGETS]
    image = table[table["target"] == "image"]
    assert (
        image["iterations to MSE 0.1"].tolist() == [10.0, 10.0]
        and image["iterations to MSE 0.02"].tolist() == [50.0] * 2
    )
    noise = table[table["target"] == "uniform noise"]
    assert noise["iterations to MSE 0.1"].tolist() == [40.0] * 2 and noise["iterations to MSE 0.02"].isna().all()
    text = reach_markdown(table)
    assert text.startswith("# Impedance: iterations needed to reach each MSE (empty: not within the budget)")
    last = [cell.strip() for cell in text.splitlines()[-1].strip("|").split("|")]
    assert last == ["skip", "uniform noise", "40", "nan"]


def test_the_figure_has_a_log_log_panel_per_architecture_with_a_curve_per_target():
    fig = figure(synthetic_curves(), ["skip", "deep_decoder"])
    assert [ax.get_title() for ax in fig.axes] == ["skip", "deep_decoder"]
    assert all(ax.get_xscale() == ax.get_yscale() == "log" for ax in fig.axes)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == list(TARGETS)
    assert fig.axes[1].get_lines()[0].get_ydata()[-1] == 0.01
