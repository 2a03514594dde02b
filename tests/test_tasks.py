"""The task table (dip.tasks.OPTIONS): which options each task takes, and what it needs by mode."""

import re
from pathlib import Path

import pytest
import torch

from dip.image_io import InputError
from dip.tasks import OPTIONS, TASKS, Task, check_options, options_table

ROOT = Path(__file__).resolve().parents[1]


def test_every_task_has_a_row_and_every_requirement_is_an_option_it_takes():
    assert set(OPTIONS) == set(TASKS)
    for name, row in OPTIONS.items():
        for mode in (row.with_image or ()) + row.with_observed:
            assert set(mode.split("|")) <= set(row.takes), name


def test_the_readme_shows_the_table():
    assert options_table() in (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    "task, given, observed, message",
    [
        ("denoise", {}, False, "--sigma: required by the denoise task with --image"),
        (
            "inpaint",
            {},
            True,
            "--mask: required by the inpaint task with --observed; give the known pixels with --mask FILE",
        ),
        ("inpaint", {"drop": 0.5}, True, "--mask: required by the inpaint task with --observed"),
        ("sr", {}, True, "--factor: required by the sr task with --observed"),
        ("flash", {"flash": "f.png"}, False, "--image: the flash task has nothing to degrade"),
        (
            "denoise",
            {"sigma": 25, "mask": "m.png"},
            False,
            "--mask: the denoise task takes no --mask (it takes --sigma, --noise, --peak)",
        ),
        ("deblur", {"sigma": 2}, False, "--blur: required by the deblur task with --image; give the blur with --blur"),
        ("deblur", {"psf": "k.npy"}, False, "--sigma: required by the deblur task with --image; give the noise level"),
        ("deblur", {}, True, "--blur: required by the deblur task with --observed"),
        ("sr", {"factor": 2, "peak": 10}, False, "--peak: the sr task takes no --peak"),
        ("sr", {"factor": 2, "sigma": 25}, True, "--sigma: the sr task takes no --sigma (it takes --factor)"),
        ("inpaint", {"box": True, "quality": 10}, False, "--quality: the inpaint task takes no --quality"),
    ],
)
def test_check_options_names_the_option(task, given, observed, message):
    with pytest.raises(InputError, match=re.escape(message)):
        check_options(task, given, observed)


@pytest.mark.parametrize(
    "task, given, observed",
    [
        ("denoise", {}, True),
        ("denoise", {"sigma": 25}, True),
        ("jpeg", {}, True),
        ("sr", {"factor": 3}, False),
        ("inpaint", {"mask": "m.png"}, True),
        ("inpaint", {"drop": 0.5}, False),
        ("flash", {"flash": "f"}, True),
        ("denoise", {"noise": "poisson", "peak": 10}, False),
        ("deblur", {"psf": "k.npy"}, True),
        ("deblur", {"blur": "gaussian:1", "noise": "poisson", "peak": 10}, False),
    ],
)
def test_check_options_accepts_what_the_task_takes(task, given, observed):
    check_options(task, given, observed)


def test_a_task_without_its_degradation_parameter_fits_but_does_not_degrade():
    for task in (Task("denoise"), Task("jpeg")):
        assert task.label() == task.name
        x = torch.rand(1, 3, 16, 16)
        assert task.operator().loss(x, x) == 0
        with pytest.raises(InputError, match="required by the .* task with --image"):
            task.degrade(x, 0)


@pytest.mark.parametrize(
    "factor, key", [(2, "sr-x2"), (3, "sr-x4"), (4, "sr-x4"), (5, "sr-x8"), (6, "sr-x8"), (8, "sr-x8"), (12, "sr-x8")]
)
def test_every_sr_factor_uses_the_nearest_published_preset(factor, key):
    from dip.presets import PAPER, preset_key

    assert preset_key("sr", factor=factor) == key and key in PAPER
