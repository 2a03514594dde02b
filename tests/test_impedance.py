import torch

from dip.impedance import curves, iterations_to_reach, targets


def test_targets_keep_shape_and_shuffling_keeps_the_pixels(clean64):
    t = targets(clean64, seed=0)
    assert all(x.shape == clean64.shape for x in t.values())
    assert torch.allclose(t["shuffled pixels"].flatten().sort().values, clean64.flatten().sort().values)


def test_skip_fits_the_natural_image_faster_than_shuffled_pixels_and_noise(clean64):
    table = curves({"kind": "skip"}, clean64[..., :32, :32], iterations=150)
    reached = {name: iterations_to_reach(part, 0.01) for name, part in table.groupby("target")}
    assert reached["image"] < 150
    # Never reaching the threshold within the budget (NaN) counts as slower.
    for slow in ("shuffled pixels", "uniform noise"):
        assert not reached[slow] <= reached["image"], reached
