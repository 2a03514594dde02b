"""CBM3D/BM3D, the optional denoising baseline (dip.cbm3d, the `bm3d` extra), and the pipeline's baselines
script with and without it."""

import os
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from dip import cbm3d
from dip.image_io import save_png, to_tensor
from dip.metrics import psnr
from dip.operators import Denoise
from dip.seeds import generator
from tests.conftest import natural_crop

ROOT = Path(__file__).resolve().parents[1]
SIGMA = 25


@pytest.fixture
def bm3d_installed():
    """The tests that run bm3d itself. Without the extra they are skipped with the reason, except where the
    environment asks for it (CI installs the extra and sets DIP_REQUIRE_BM3D=1, so they never skip there)."""
    if not cbm3d.available():
        if os.environ.get("DIP_REQUIRE_BM3D"):
            pytest.fail("DIP_REQUIRE_BM3D is set but bm3d does not import: pip install -e '.[bm3d]'")
        pytest.skip("the optional bm3d extra is not installed (pip install -e '.[bm3d]')")


@pytest.fixture
def without_bm3d(monkeypatch):
    """bm3d made unimportable, as on a machine without the extra (None in sys.modules: ImportError)."""
    monkeypatch.setitem(sys.modules, "bm3d", None)


def noisy(clean: np.ndarray) -> np.ndarray:
    observed = Denoise(SIGMA).observe(to_tensor(clean), generator(0, "observation"))
    return observed[0].numpy().transpose(1, 2, 0)


@pytest.mark.parametrize("channels", [3, 1])
def test_cbm3d_beats_the_noisy_input_by_a_margin(bm3d_installed, channels):
    clean = natural_crop(64)
    clean = clean if channels == 3 else clean.mean(-1, keepdims=True)
    observed = noisy(clean)
    estimate = cbm3d.denoise(observed, SIGMA / 255)
    assert estimate.shape == clean.shape and estimate.dtype == np.float32
    before, after = psnr(observed, clean), psnr(np.clip(estimate, 0, 1), clean)
    assert after > before + 6, (before, after)  # BM3D's usual gain at σ 25 is 8-10 dB


def test_without_the_extra_cbm3d_is_absent_and_says_so(without_bm3d):
    assert not cbm3d.available()
    with pytest.raises(ImportError):
        cbm3d.denoise(np.zeros((8, 8, 1), np.float32), 0.1)


def run_baselines(tmp_path: Path, monkeypatch) -> pd.DataFrame:
    """workflow/scripts/baselines.py for denoising σ 25 on a 64×64 crop, as Snakemake runs it (a stand-in
    `snakemake` object); its metrics.csv."""
    clean = natural_crop(64)
    save_png(to_tensor(clean), tmp_path / "clean.png")
    save_png(to_tensor(noisy(clean)), tmp_path / "observed.png")
    out = tmp_path / "baselines"
    stand_in = SimpleNamespace(
        input=SimpleNamespace(clean=str(tmp_path / "clean.png"), observed=str(tmp_path / "observed.png")),
        output=[str(out)],
        log=[str(tmp_path / "baselines.log")],
        wildcards=SimpleNamespace(obs="0"),
        params=SimpleNamespace(
            spec={"task": "denoise", "sigma": SIGMA}, image="crop", task_label="denoise-s25", observation_seed="0"
        ),
    )
    monkeypatch.setattr(sys, "stderr", sys.stderr)  # the script sends stderr to its log; put it back after
    runpy.run_path(str(ROOT / "workflow" / "scripts" / "baselines.py"), init_globals={"snakemake": stand_in})
    return pd.read_csv(out / "metrics.csv").set_index("method")


def test_the_pipeline_baselines_include_cbm3d_where_installed(bm3d_installed, tmp_path, monkeypatch):
    metrics = run_baselines(tmp_path, monkeypatch)
    assert {"tv", "nlm", "noisy", "cbm3d"} <= set(metrics.index)
    assert metrics.at["cbm3d", "psnr"] > metrics.at["noisy", "psnr"] + 6
    assert metrics.at["cbm3d", "psnr"] > metrics.at["nlm", "psnr"]  # the paper's strongest baseline
    assert (tmp_path / "baselines" / "cbm3d.png").stat().st_size > 0


def test_the_pipeline_baselines_run_without_the_extra(without_bm3d, tmp_path, monkeypatch):
    metrics = run_baselines(tmp_path, monkeypatch)
    assert set(metrics.index) == {"tv", "nlm", "noisy"} and metrics["psnr"].notna().all()
    assert not (tmp_path / "baselines" / "cbm3d.png").exists()


def test_cbm3d_refuses_a_bad_call(bm3d_installed):
    with pytest.raises(ValueError, match="sigma must be > 0"):
        cbm3d.denoise(np.zeros((8, 8, 3), np.float32), 0)
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        cbm3d.denoise(np.zeros((8, 8), np.float32), 0.1)
