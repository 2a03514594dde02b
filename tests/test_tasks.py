"""The task registry (dip.tasks.OPTIONS): which options each task takes, and what it needs by mode; the one
parser of a task (Task.from_spec, Task.from_options) and the command line it gives (Task.cli_args)."""

import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch
import yaml

from dip.image_io import InputError
from dip.tasks import (
    FILE_OPTIONS,
    OPTIONS,
    PAIRED,
    PARAMETERS,
    TASKS,
    Task,
    _spec_keys,
    check_options,
    options_table,
)

ROOT = Path(__file__).resolve().parents[1]


def test_every_task_has_a_row_and_every_requirement_is_an_option_it_takes():
    assert set(OPTIONS) == set(TASKS)
    for name, row in OPTIONS.items():
        for mode in (row.with_image or ()) + row.with_observed:
            assert set(mode.split("|")) <= set(row.takes), name


def test_the_tasks_guide_shows_the_table():
    assert options_table() in (ROOT / "docs" / "guide" / "tasks.md").read_text()


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

    assert preset_key(Task("sr", factor=factor)) == key and key in PAPER


# One parser (Task.from_spec) for every form a task comes in: a pipeline config's entry, summary.json, the
# command line's options (Task.from_options), and back to the command line (Task.cli_args).
CONFIG_TASKS = [
    (path.name, key, spec)
    for path in sorted((ROOT / "config").glob("*.yaml"))
    for key, spec in yaml.safe_load(path.read_text())["tasks"].items()
]


@pytest.mark.parametrize("config, key, spec", CONFIG_TASKS, ids=[f"{c}:{k}" for c, k, _ in CONFIG_TASKS])
def test_a_configured_task_reads_back_from_the_command_line_the_pipeline_gives_it(config, key, spec):
    from dip.cli import parser
    from dip.request import FitRequest, _task

    task = Task.from_spec(spec, observed=spec["task"] in PAIRED)
    assert task.spec() == {k: v for k, v in spec.items() if k in ("task", *PARAMETERS)}
    files = ["--observed", "o.png", "--flash", "f.png"] if task.name in PAIRED else ["--image", "c.png"]
    files += ["--mask", "m.png"] if task.mask == "file" else []
    args = parser().parse_args(["fit", *task.cli_args(), *files, "--out", "out"])
    assert _task(FitRequest.from_namespace(args)) == task


@pytest.mark.parametrize(
    "spec, cli",
    [
        ({"task": "denoise", "sigma": 25}, "--task denoise --sigma 25"),
        ({"task": "denoise", "noise": "poisson", "peak": 10}, "--task denoise --noise poisson --peak 10"),
        ({"task": "sr", "factor": 4}, "--task sr --factor 4"),
        ({"task": "inpaint", "mask": "drop", "drop": 0.5}, "--task inpaint --drop 0.5"),
        ({"task": "inpaint", "mask": "text"}, "--task inpaint --text"),
        ({"task": "inpaint", "mask": "file"}, "--task inpaint"),  # the file is the caller's --mask
        ({"task": "jpeg", "quality": 10}, "--task jpeg --quality 10"),
        ({"task": "flash"}, "--task flash"),
        ({"task": "deblur", "blur": "motion:9,30", "sigma": 2}, "--task deblur --sigma 2 --blur motion:9,30"),
        ({"task": "deblur", "blur": "file", "sigma": 2}, "--task deblur --sigma 2"),  # the caller's --psf FILE
    ],
)
def test_a_task_gives_its_command_line_and_its_options_read_back_into_it(spec, cli):
    task = Task.from_spec(spec)
    assert " ".join(task.cli_args()) == cli
    # The files: a mask or PSF file where the task has one, a paired task's flash photograph.
    files = {o: "file.png" for o in FILE_OPTIONS if o in task.options()}
    assert Task.from_options(task.name, {**task.options(), **files}, observed=task.name in PAIRED) == task


def test_a_summary_gives_back_its_task_whatever_else_it_holds():
    summary = {"task": "sr", "factor": 4, "task_label": "sr-x4", "arch": "skip", "seed": 0, "settings": {"lr": 0.01}}
    assert Task.from_spec(summary) == Task.from_params("sr", summary) == Task("sr", factor=4)


@pytest.mark.parametrize(
    "spec, observed, message",
    [
        ({"sigma": 25}, None, "task: missing; choose one of denoise, sr, inpaint, jpeg, flash, deblur"),
        ({"task": "blur"}, None, "task: unknown task 'blur'; choose one of"),
        ({"task": "sr", "factor": 4.0}, None, "factor: expected an integer, got 4.0"),
        ({"task": "sr", "factor": True}, None, "factor: expected an integer, got True"),
        ({"task": "denoise", "sigma": "25"}, None, "sigma: expected a number, got '25'"),
        ({"task": "inpaint", "mask": 1}, None, "mask: expected a string, got 1"),
        ({"task": "sr", "factor": 4, "sigma": 25}, None, "sigma: the sr task takes no sigma (it takes factor)"),
        ({"task": "flash", "noise": "poisson"}, None, "noise: the flash task takes no noise (it takes none)"),
        ({"task": "inpaint", "mask": "text", "drop": 0.5}, None, "drop: a fraction of pixels to drop needs mask: drop"),
        ({"task": "sr", "factor": 1}, None, "factor: SR factor must be an integer >= 2, got 1"),
        ({"task": "deblur", "blur": "motion:0,30", "sigma": 2}, None, "--blur: expected gaussian:SIGMA"),
        ({"task": "denoise"}, False, "--sigma: required by the denoise task with --image"),
        ({"task": "flash"}, False, "--image: the flash task has nothing to degrade"),
        ({"task": "sr"}, True, "factor: SR factor must be an integer >= 2, got None"),
        (
            {"task": "inpaint", "mask": "drop", "drop": 0.5},
            True,
            "--mask: required by the inpaint task with --observed",
        ),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_key(spec, observed, message):
    with pytest.raises(InputError, match=re.escape(message)):
        Task.from_spec(spec, observed=observed)


@pytest.mark.parametrize(
    "given, observed, message",
    [
        ({"noise": "poisson"}, False, "--peak: required with --noise poisson"),
        ({"mask": "m.png", "text": True}, False, "--mask: a mask file and --drop/--text/--box exclude each other"),
        ({"sigma": 2, "blur": "gaussian:1", "psf": "k.npy"}, False, "--psf: a PSF file and --blur exclude each other"),
        ({"sigma": 25, "factor": 2}, False, "--factor: the denoise task takes no --factor"),
    ],
)
def test_bad_options_are_one_line_naming_the_option(given, observed, message):
    name = "deblur" if "psf" in given else "inpaint" if "mask" in given else "denoise"
    with pytest.raises(InputError, match=re.escape(message)):
        Task.from_options(name, given, observed)


def test_with_an_observation_a_mask_file_and_a_switch_give_the_masks_kind():
    given = {"mask": "m.png", "text": True}
    assert Task.from_options("inpaint", given, observed=True) == Task("inpaint", mask="text")
    assert Task.from_options("inpaint", {"mask": "m.png"}, observed=True) == Task("inpaint", mask="file")


def test_the_registry_gives_the_tasks_and_the_paired_ones():
    assert TASKS == tuple(OPTIONS) and PAIRED == ("flash",)
    # Every spec key is a parameter of Task, and every parameter is some task's.
    assert set(PARAMETERS) == {f.name for f in fields(Task)} - {"name"}
    assert set(PARAMETERS) == {k for name in TASKS for k in _spec_keys(name)}


def test_every_task_option_is_an_argument_of_both_commands():
    # dip.request reads the given options by TASK_OPTIONS' names: one missing from a parser would read as not given.
    from dip.cli import parser
    from dip.tasks import TASK_OPTIONS

    commands = parser()._subparsers._group_actions[0].choices
    # dip degrade: the options of the tasks that have something to degrade (a flash pair has not).
    degradable = {o for name, row in OPTIONS.items() if row.with_image is not None for o in row.takes}
    for command, options in (("fit", set(TASK_OPTIONS)), ("degrade", degradable)):
        assert options <= {action.dest for action in commands[command]._actions}, command
    # ... and the requests they parse into carry each one as a field of that name.
    from dataclasses import fields as fields_of

    from dip.request import DegradeRequest, FitRequest

    assert set(TASK_OPTIONS) <= {f.name for f in fields_of(FitRequest)}
    assert degradable <= {f.name for f in fields_of(DegradeRequest)}


def test_every_task_has_the_papers_settings():
    from dip.presets import PAPER, preset_key

    configured = [Task.from_spec(spec) for _, _, spec in CONFIG_TASKS]
    assert {task.name for task in configured} == set(TASKS)
    assert all(preset_key(task) in PAPER for task in configured)
