import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from dip.image_io import to_tensor


class AtCall(torch.nn.Module):
    """Wraps a network and, at one forward call (or each of a set of them), hands its output to `action`
    (which may return another output, send a signal or raise): a fault injected at a known iteration of a
    fit."""

    def __init__(self, net: torch.nn.Module, at: int | set[int], action):
        super().__init__()
        self.net, self.at, self.action, self.calls = net, {at} if isinstance(at, int) else at, action, 0

    def forward(self, z):
        self.calls += 1
        out = self.net(z)
        return self.action(out) if self.calls in self.at else out


def natural_crop(size: int = 64) -> np.ndarray:
    """A size×size crop of scikit-image's astronaut (face and suit), area-downsampled ×2."""
    img = data.astronaut()[40 : 40 + 2 * size, 150 : 150 + 2 * size].astype(np.float32) / 255
    return img.reshape(size, 2, size, 2, 3).mean(axis=(1, 3))


@pytest.fixture(scope="session")
def clean64() -> torch.Tensor:
    return to_tensor(natural_crop(64))


@pytest.fixture
def png64(tmp_path, clean64):
    path = tmp_path / "clean.png"
    Image.fromarray(np.round(natural_crop(64) * 255).astype(np.uint8)).save(path)
    return path


# The test files that take longest (real fits, pipeline runs, SLURM jobs waited on), longest first, as
# `pytest --durations 0` measured them. pytest-xdist hands out whole files (--dist loadfile) in the order of
# the collection (--no-loadscope-reorder, pyproject.toml): started first, none of them is left to run alone
# at the end while the other workers idle.
SLOWEST_FILES = [
    "test_slurm.py",
    "test_workflow.py",
    "test_fit.py",
    "test_workflow_stacked.py",
    "test_cli.py",
    "test_golden.py",
    "test_api.py",
    "test_many.py",
    "test_docs_browser.py",
    "test_memory.py",
]


def pytest_collection_modifyitems(config, items):
    rank = {name: at for at, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's own order is kept


def pytest_configure(config):
    # Under pytest-xdist each worker runs its fits on one thread: the workers share the cores.
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


def run_dip(*args) -> subprocess.CompletedProcess:
    """`dip ARGS` run in this process, as `python -m dip ARGS` would run it: its exit code, standard output
    and standard error, as `subprocess.run(..., capture_output=True, text=True)` returns them. A fresh
    interpreter costs seconds (Python and torch start) for a check that takes milliseconds; the tests that
    need a process of their own (signals, a running fit beside another, the console script) still start
    one. What `dip.cli.main` sets for the process (torch's threads from --threads, the warning format) is
    put back afterwards; an exception the command does not handle gives exit code 1 and its traceback, as
    the interpreter would."""
    import contextlib
    import io
    import traceback
    import warnings

    from dip.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    threads, formatwarning = torch.get_num_threads(), warnings.formatwarning
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        try:
            code = main(argv)
        except SystemExit as end:  # argparse's errors, and 128 + a signal
            code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
            if isinstance(end.code, str):
                print(end.code, file=sys.stderr)
        except Exception:  # noqa: BLE001 (the interpreter prints any exception and exits with 1)
            traceback.print_exc()
            code = 1
        finally:
            torch.set_num_threads(threads)
            warnings.formatwarning = formatwarning
    return subprocess.CompletedProcess(["dip", *argv], code or 0, out.getvalue(), err.getvalue())
