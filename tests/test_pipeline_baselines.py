"""dip.pipeline.baselines on a 32×32 crop: each task's methods, what each must achieve, and the scored rows."""

import numpy as np
import pytest

from dip import cbm3d
from dip.image_io import to_array, to_tensor
from dip.metrics import psnr
from dip.pipeline import baselines as b
from dip.tasks import Task

from conftest import natural_crop


def observe(task: Task, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The task's seeded observation of `clean` (H×W×C), and its mask as mask.png holds it (H×W×1)."""
    observed, mask = task.degrade(to_tensor(clean), observation_seed=0)
    return to_array(observed, clip=not task.poisson), None if mask is None else to_array(mask)


@pytest.fixture(scope="module")
def clean():
    return natural_crop(32)


@pytest.mark.parametrize(
    "task, better, than",
    [
        (Task("denoise", sigma=25), ["tv", "nlm"], "noisy"),
        (Task("denoise", noise="poisson", peak=10), ["anscombe_tv", "anscombe_nlm"], "noisy"),
        (Task("deblur", blur="gaussian:1", sigma=2), ["richardson_lucy_10", "unsupervised_wiener"], "blurred"),
        (Task("deblur", blur="gaussian:1", noise="poisson", peak=100), ["richardson_lucy_10"], "blurred"),
    ],
    ids=["denoise", "poisson", "deblur", "deblur-poisson"],
)
def test_each_restoring_baseline_beats_the_observation(clean, task, better, than):
    observed, _ = observe(task, clean)
    images, rows = b.baselines(task, observed, clean, None, "astro", "label", 0)
    scores = rows.set_index("method")["psnr"]
    for method in better:
        assert scores[method] > scores[than] + 0.5, (method, scores.to_dict())
    assert images[than].shape == clean.shape and images[than].dtype == np.float32
    assert ("cbm3d" in images) == (task.name == "denoise" and not task.poisson and cbm3d.available())
    assert ("unsupervised_wiener" in images) == (task.name == "deblur" and not task.poisson)


def test_super_resolution_upsamples_to_the_cropped_ground_truth(clean):
    task = Task("sr", factor=3)  # 32 is not a multiple of 3: the ground truth is centre-cropped to 30×30
    observed, _ = observe(task, to_array(task.crop(to_tensor(clean))))
    assert observed.shape == (10, 10, 3)
    images, rows = b.baselines(task, observed, clean, None, "astro", "sr-x3", 0)
    assert {m: x.shape for m, x in images.items()} == {"bicubic": (30, 30, 3), "nearest": (30, 30, 3)}
    scores = rows.set_index("method")["psnr"]
    assert scores["bicubic"] > scores["nearest"]


def test_inpainting_keeps_the_known_pixels_and_fills_the_others(clean):
    task = Task("inpaint", mask="drop", drop=0.5)
    observed, mask = observe(task, clean)
    restored = b.restore(task, observed, mask)["biharmonic"]
    known = mask[..., 0] > 0.5
    np.testing.assert_allclose(restored[known], observed[known], atol=1e-6)
    assert psnr(np.clip(restored, 0, 1), clean) > psnr(observed, clean) + 5


def test_jpeg_and_flash_baselines_include_the_observation_itself(clean):
    observed, _ = observe(Task("jpeg", quality=10), clean)
    assert b.restore(Task("jpeg", quality=10), observed)["jpeg"] is observed
    # A given JPEG of unknown quality: no level for the denoisers, the observation alone.
    assert set(b.restore(Task("jpeg"), observed)) == {"jpeg"}
    methods = b.restore(Task("flash"), observed)
    assert set(methods) == {"nlm", "noflash"} and methods["noflash"] is observed


@pytest.mark.parametrize("quality", [10, 40])
def test_the_jpeg_baselines_remove_artefacts_at_the_level_the_quality_sets(quality):
    clean = natural_crop(64)
    task = Task("jpeg", quality=quality)
    observed, _ = observe(task, clean)
    methods = b.restore(task, observed)
    assert {"tv", "nlm"} <= set(methods) and ("cbm3d" in methods) == cbm3d.available()
    gains = {m: psnr(np.clip(x, 0, 1), clean) - psnr(observed, clean) for m, x in methods.items() if m != "jpeg"}
    assert max(gains.values()) > 0.2, gains
    # A coarser quantisation, a stronger level: q 10's tables are 4× coarser than q 40's.
    assert b.jpeg_sigma(10, "tv") == pytest.approx(4 * b.jpeg_sigma(40, "tv"))


def test_the_anscombe_inverse_is_unbiased_for_a_constant_image():
    # A denoiser that knows the image is constant (the mean of the stabilised image): the exact unbiased
    # inverse brings it back to the true value, where the algebraic inverse would be biased low at 5 counts.
    rng = np.random.default_rng(np.random.SeedSequence(7))
    peak, value = 10.0, 0.5
    observed = rng.poisson(peak * value, size=(128, 128, 1)) / peak
    restored = b.anscombe(observed, peak, lambda z, sigma: np.full_like(z, z.mean()))
    assert restored.mean() == pytest.approx(value, abs=0.01)
    algebraic = ((2 * np.sqrt(peak * observed + 3 / 8)).mean() / 2) ** 2 - 3 / 8
    assert abs(algebraic / peak - value) > 0.015


def test_rows_carry_their_keys_and_are_unscored_without_a_ground_truth(clean):
    task = Task("denoise", sigma=25)
    observed, _ = observe(task, clean)
    images, rows = b.baselines(task, observed, clean, None, "astro", "denoise-s25", 3)
    assert list(rows.columns) == ["image", "task_label", "task", "observation_seed", "method", "psnr", "ssim"]
    assert rows[["image", "task_label", "task", "observation_seed"]].drop_duplicates().values.tolist() == [
        ["astro", "denoise-s25", "denoise", 3]
    ]
    noisy = rows.set_index("method").loc["noisy"]
    assert noisy["psnr"] == pytest.approx(psnr(np.clip(observed, 0, 1), clean))
    _, unscored = b.baselines(task, observed, None, None, "cup", "denoise-s25", 0)
    assert unscored[["psnr", "ssim"]].isna().all().all() and len(unscored) == len(rows)
    assert all(x.min() >= 0 and x.max() <= 1 for x in images.values())
