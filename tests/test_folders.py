"""An output folder belongs to one running fit (dip.folders): the lock, in one process and between two."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from dip.folders import LOCK, FolderInUse, hold, holder
from dip.request import FitRequest, run_fit

DIP = [sys.executable, "-m", "dip"]


def contents(folder):
    """Every file under `folder` (the lock file too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def png32(tmp_path):
    from conftest import natural_crop

    path = tmp_path / "a.png"
    Image.fromarray(np.round(natural_crop(32) * 255).astype(np.uint8)).save(path)
    return path


def test_a_held_folder_names_its_holder_and_is_left_as_found(tmp_path):
    out = tmp_path / "new" / "run"
    with hold([out]):
        assert (out / LOCK).read_text().startswith(f"{os.getpid()}\n")
        assert holder(out).startswith(f"PID {os.getpid()}: ")
        with pytest.raises(FolderInUse, match=f"^{out}: in use by a running fit \\(PID {os.getpid()}: "):
            with hold([out]):  # flock: a second open file conflicts, in this process too
                pass
    assert holder(out) is None and not (tmp_path / "new").exists()  # the folders it made, removed when empty


def test_a_folder_that_holds_files_keeps_them_and_a_stale_lock_file_is_taken(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "observed.png").write_bytes(b"kept")
    (out / LOCK).write_text("999999999\ndip fit --out run\n")  # left by a killed fit: nobody holds it
    assert holder(out) is None
    with hold([out]):
        assert holder(out).startswith(f"PID {os.getpid()}")
    assert contents(out) == {"observed.png": b"kept"}


def test_run_fit_refuses_a_held_folder_before_reading_or_writing(tmp_path, png32):
    out = tmp_path / "run"
    with hold([out]):
        before = contents(out)
        with pytest.raises(FolderInUse, match=f"^{out}: in use by a running fit"):
            run_fit(FitRequest(task="denoise", sigma=25, image=str(png32), iters=2, threads=1, out=str(out)))
        assert contents(out) == before


def test_a_batch_of_seeds_holds_each_seeds_folder(tmp_path, png32):
    out = tmp_path / "run"
    with hold([out / "seed1"]):
        with pytest.raises(FolderInUse, match=f"^{out / 'seed1'}: in use"):
            run_fit(FitRequest(task="denoise", sigma=25, image=str(png32), seeds=(0, 1), iters=2, out=str(out)))
    assert not out.exists()  # seed0's folder, made and held for the attempt, is gone again


def test_a_second_fit_into_a_running_fits_folder_exits_2_and_a_killed_fit_leaves_it_free(tmp_path, png32):
    out = tmp_path / "run"
    fit = ["fit", "--task", "denoise", "--image", png32, "--threads", 1, "--no-progress", "--out", out]
    # A fit that would run for hours and writes no checkpoint: its folder holds its lock and observed.png.
    first = subprocess.Popen(
        [*DIP, *map(str, fit), "--sigma", "25", "--iters", "1000000", "--checkpoint-every", "100000000"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 180
        while not ((out / "observed.png").exists() and (out / LOCK).exists()) and time.time() < deadline:
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.1)
        before = contents(out)
        assert before[LOCK].decode().startswith(f"{first.pid}\n")
        second = subprocess.run([*DIP, *map(str, fit), "--sigma", "50", "--iters", "2"], capture_output=True, text=True)
        assert second.returncode == 2, second.stderr
        assert second.stderr.startswith(f"dip fit: error: {out}: in use by a running fit (PID {first.pid}: dip fit ")
        assert "--sigma 25" in second.stderr and len(second.stderr.strip().splitlines()) == 1
        assert "Traceback" not in second.stderr
        assert contents(out) == before and first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    third = subprocess.run([*DIP, *map(str, fit), "--sigma", "50", "--iters", "2"], capture_output=True, text=True)
    assert third.returncode == 0, third.stderr
    assert '"sigma": 50.0' in (out / "summary.json").read_text() and not (out / LOCK).exists()
