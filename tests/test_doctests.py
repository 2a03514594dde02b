"""Every docstring example in the package runs and passes: each public module below holds at least one
(a module whose examples were never collected would otherwise pass with nothing tried), and a module that
gains an example must join the list."""

import doctest
import importlib
from pathlib import Path

import pytest

import dip

# The public modules with examples: the degradations, the tasks, the metrics, image files, the stopping
# rules, restore, the fit record, saved networks, the risk estimates, strict JSON, tiles and stacks of images, the
# classical baselines, the task defaults, the input checks' type predicates.
WITH_EXAMPLES = [
    "dip.operators",
    "dip.tasks",
    "dip.metrics",
    "dip.image_io",
    "dip.stopping",
    "dip.api",
    "dip.record",
    "dip.saved_network",
    "dip.risk",
    "dip.red",
    "dip.strict_json",
    "dip.tiles",
    "dip.many",
    "dip.pipeline.baselines",
    "dip.defaults",
    "dip.checks",
]


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_the_modules_examples_run_and_pass(name):
    result = doctest.testmod(importlib.import_module(name), raise_on_error=False, report=True)
    assert result.attempted > 0, f"{name}: no docstring example was collected"
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"


def test_every_module_with_an_example_is_in_the_list():
    root = Path(dip.__file__).parent
    with_examples = {
        ".".join(("dip", *path.relative_to(root).with_suffix("").parts))
        for path in root.rglob("*.py")
        if ">>>" in path.read_text()
    }
    assert with_examples == set(WITH_EXAMPLES)
