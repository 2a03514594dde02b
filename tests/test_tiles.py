"""dip.tiles: the tile grid, seamless blending, operators cut with the image, refusals, a real tiled fit, a
folder of finished tiles; `dip fit` in tiles: --tile, the automatic choice, resuming, refusals."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dip import api, memory, tiles
from dip.fit import FitResult
from dip.image_io import InputError
from dip.operators import Blur, Denoise, Inpaint, Poisson, SuperResolve, gaussian_psf, random_drop
from dip.request import FitRequest, _resolve, run_fit
from dip.seeds import generator


@pytest.mark.parametrize("size,tile,overlap", [(100, 64, 16), (64, 64, 8), (50, 64, 8), (1000, 256, 64), (257, 128, 0)])
def test_the_tiles_cover_every_pixel_and_overlap_by_at_least_the_overlap(size, tile, overlap):
    starts = tiles.tile_starts(size, tile, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert starts[-1] + min(tile, size) == size  # the last tile is flush with the far edge
    for a, b in zip(starts, starts[1:]):
        assert a + tile - b >= overlap  # neighbours share at least the overlap: no gap
    assert len(starts) == 1 or len(starts) == -(-(size - tile) // (tile - overlap)) + 1


def test_an_overlap_above_half_a_tile_is_refused():
    with pytest.raises(InputError, match="overlap"):
        tiles.tile_starts(100, 64, 40)


def _result(image):
    """A FitResult of one iteration whose image is `image`."""
    return FitResult(image, image, None, pd.DataFrame({"iteration": [1], "seconds": [0.5]}), iterations=1)


def _echo(monkeypatch, calls):
    """dip.restore replaced by one that returns the tile's observation as its image, recording each call."""

    def restore(observed, operator, **options):
        calls.append((observed.shape, operator, options))
        return _result(observed.clone())

    monkeypatch.setattr(api, "restore", restore)


def test_tiles_that_agree_blend_into_the_same_image_without_seams(monkeypatch):
    calls = []
    _echo(monkeypatch, calls)
    observed = torch.rand(1, 3, 70, 100, generator=torch.Generator().manual_seed(0))
    result = tiles.restore_tiled(observed, Denoise(25), tile=48, overlap=12, stop="fixed")
    assert len(result.tiles) == len(calls) == len(tiles.tile_starts(70, 48, 12)) * len(tiles.tile_starts(100, 48, 12))
    torch.testing.assert_close(result.image, observed, rtol=0, atol=1e-6)
    assert all(shape[-2:] == (48, 48) and options == {"stop": "fixed", "clean": None} for shape, _, options in calls)


def test_tiles_that_differ_are_blended_by_ramps_over_the_overlap(monkeypatch):
    # Two tiles side by side, one returning 0 and one returning 1: across their overlap the blend rises
    # monotonically from 0 to 1, and outside it each tile's value is kept.
    values = iter([0.0, 1.0])
    monkeypatch.setattr(
        api, "restore", lambda observed, operator, **o: _result(torch.full_like(observed, next(values)))
    )
    result = tiles.restore_tiled(torch.zeros(1, 1, 32, 56), Denoise(25), tile=32, overlap=8)
    row = result.image[0, 0, 16]
    assert torch.all(row[:24] == 0) and torch.all(row[32:] == 1)
    assert torch.all(row[24:32].diff() > 0)


def test_an_inpainting_mask_is_cut_with_each_tile(monkeypatch):
    calls = []
    _echo(monkeypatch, calls)
    mask = random_drop(40, 60, 0.5, generator(0, "observation"))
    tiles.restore_tiled(torch.rand(1, 3, 40, 60), Inpaint(mask), tile=40, overlap=10)
    lefts = tiles.tile_starts(60, 40, 10)
    for (_, operator, _), left in zip(calls, lefts):
        assert torch.equal(operator.mask, mask[..., :, left : left + 40])


@pytest.mark.parametrize("operator", [Blur(gaussian_psf(1.6)), SuperResolve(4), Poisson(10, Blur(gaussian_psf(1.0)))])
def test_an_operator_with_spatial_support_is_refused_before_any_fit(operator, monkeypatch):
    calls = []
    _echo(monkeypatch, calls)
    with pytest.raises(InputError, match="pixel by pixel") as err:
        tiles.restore_tiled(torch.rand(1, 3, 64, 64), operator, tile=32, overlap=8)
    assert calls == [] and len(str(err.value).splitlines()) == 1


def test_options_of_one_fit_are_refused():
    with pytest.raises(InputError, match="seeds"):
        tiles.restore_tiled(torch.rand(1, 3, 64, 64), Denoise(25), tile=32, overlap=8, seeds=[0, 1])


def test_a_real_tiled_fit_restores_every_pixel():
    clean = torch.rand(1, 3, 40, 72, generator=torch.Generator().manual_seed(1))
    observed = Denoise(25).observe(clean, generator(0, "observation"))
    result = tiles.restore_tiled(
        observed, Denoise(25), tile=40, overlap=8, settings={"iterations": 3}, stop="fixed", device="cpu", clean=clean
    )
    assert result.image.shape == clean.shape and torch.isfinite(result.image).all()
    assert [(t.top, t.left) for t in result.tiles] == [(0, 0), (0, 32)]
    assert all(t.result.iterations == 3 and "psnr" in t.result.history for t in result.tiles)


def test_a_folder_keeps_each_finished_tile_and_a_second_call_loads_them(monkeypatch, tmp_path):
    calls = []
    _echo(monkeypatch, calls)
    observed = torch.rand(1, 3, 40, 60, generator=torch.Generator().manual_seed(2))
    first = tiles.restore_tiled(observed, Denoise(25), tile=40, overlap=10, folder=tmp_path, stop="fixed")
    files = sorted(tmp_path.glob("r*-c*.npz"))
    assert len(calls) == len(first.tiles) == len(files) == 2 and (tmp_path / tiles.MANIFEST).exists()
    written = [f.stat().st_mtime_ns for f in files]

    def refit(*args, **kwargs):
        raise AssertionError("a finished tile was fitted again")

    monkeypatch.setattr(api, "restore", refit)
    lines = []
    again = tiles.restore_tiled(
        observed, Denoise(25), tile=40, overlap=10, folder=tmp_path, stop="fixed", log=lines.append
    )
    torch.testing.assert_close(again.image, first.image, rtol=0, atol=0)
    assert [f.stat().st_mtime_ns for f in files] == written and all("finished before" in line for line in lines)
    assert [t.summary() for t in again.tiles] == [t.summary() for t in first.tiles]
    assert all(t.result is None and t.history is not None for t in again.tiles)


def test_a_folder_holding_another_restorations_tiles_is_refused_before_any_fit(monkeypatch, tmp_path):
    calls = []
    _echo(monkeypatch, calls)
    observed = torch.rand(1, 3, 40, 60, generator=torch.Generator().manual_seed(2))
    tiles.restore_tiled(observed, Denoise(25), tile=40, overlap=10, folder=tmp_path, stop="fixed")
    calls.clear()
    with pytest.raises(InputError, match="another restoration") as err:
        tiles.restore_tiled(observed, Denoise(25), tile=40, overlap=10, folder=tmp_path, stop="es-wmv")
    assert calls == [] and "stop differs" in str(err.value) and len(str(err.value).splitlines()) == 1


# dip fit in tiles: --tile, the automatic choice, resuming, refusals.


def _image(path, height, width):
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_dip_fit_restores_in_tiles_of_the_size_asked(tmp_path):
    small, out = _image(tmp_path / "small.png", 64, 80), tmp_path / "out"
    args = ["--task", "denoise", "--sigma", "25", "--image", small, "--tile", "48", "--tile-overlap", "16"]
    r = subprocess.run(
        [sys.executable, "-m", "dip", "fit", *map(str, args), "--iters", "3", "--threads", "1", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert Image.open(out / "restored.png").size == (80, 64) and (out / "observed.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    count = len(tiles.tile_starts(64, 48, 16)) * len(tiles.tile_starts(80, 48, 16))
    assert summary["memory_mode"] == "tiled" and (summary["tile"], summary["tile_overlap"]) == (48, 16)
    assert len(summary["tiles"]) == count == 4 and summary["iterations"] == 3 * count
    assert {(t["top"], t["left"], t["height"], t["width"]) for t in summary["tiles"]} == {
        (0, 0, 48, 48), (0, 32, 48, 48), (16, 0, 48, 48), (16, 32, 48, 48)
    }  # fmt: skip
    assert all(t["iterations"] == 3 and t["returned_iteration"] >= 1 for t in summary["tiles"])
    assert summary["psnr_restored"] > 0 and summary["psnr_observed"] > 0  # the blend scored against the image
    assert sorted(pd.read_csv(out / "history.csv")["tile"].unique()) == [1, 2, 3, 4]
    printed = json.loads(r.stdout)
    assert printed["tiles"] == 4 and printed["returned_by"] == "tiles" and "psnr_restored" in printed
    assert r.stderr.count("tile ") == 4 and "tile 3/4: rows 16-63, columns 0-47" in r.stderr


def test_a_rerun_loads_the_finished_tiles_instead_of_fitting_them(tmp_path, monkeypatch):
    small, out = _image(tmp_path / "small.png", 64, 80), tmp_path / "out"
    request = FitRequest(task="denoise", sigma=25, image=str(small), tile=48, tile_overlap=16, iters=2, threads=1,
                         progress=False, out=str(out))  # fmt: skip
    [first] = run_fit(request, lambda line: None)
    restored = (out / "restored.png").read_bytes()
    files = sorted((out / "tiles").glob("*.npz"))
    written = [f.stat().st_mtime_ns for f in files]
    (out / "restored.png").unlink()

    def refit(*args, **kwargs):
        raise AssertionError("a finished tile was fitted again")

    monkeypatch.setattr(api, "restore", refit)
    [again] = run_fit(request, lambda line: None)
    assert (out / "restored.png").read_bytes() == restored and len(files) == 4
    assert [f.stat().st_mtime_ns for f in files] == written
    assert again.tiles == first.tiles and again.psnr_restored == first.psnr_restored
    # Another command into the same folder does not take those tiles: one line, before anything is fitted.
    (out / "summary.json").unlink()
    with pytest.raises(InputError, match="tiles of another restoration.*iterations differs"):
        run_fit(replace(request, iters=3), lambda line: None)


def test_tiles_are_chosen_by_themselves_where_the_whole_image_does_not_fit(tmp_path, monkeypatch):
    image, out = _image(tmp_path / "photo.png", 96, 96), tmp_path / "out"
    request = FitRequest(task="denoise", sigma=25, image=str(image), tile_overlap=16, iters=2, threads=1,
                         progress=False, out=str(out))  # fmt: skip
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)
    whole = _resolve(request, lambda line: None).plan
    have = whole["memory_saving_estimated_mb"] * 2**20 - 2**20  # the whole image's fit fits in neither mode
    monkeypatch.setattr(memory, "available_bytes", lambda device: have)
    plan = _resolve(request, lambda line: None).plan
    assert plan["memory_mode"] == "tiled" and plan["tile"] == 64 and plan["tiles"] == 4  # 96 would be the whole
    assert plan["estimated_peak_mb"] < whole["memory_saving_estimated_mb"]
    why = plan["memory_mode_why"]
    assert why.startswith("4 tiles of 64x64, overlap 16, each fitted")
    assert f"{whole['plain_estimated_mb'] / 1024:.1f} GiB" in why and f"{have / 2**30:.1f} GiB available" in why
    [record] = run_fit(request, lambda line: None)
    assert record.memory_mode == "tiled" and record.tile == 64 and len(record.tiles) == 4
    assert Image.open(out / "restored.png").size == (96, 96)


def test_a_task_that_cannot_be_tiled_is_refused_saying_so(tmp_path):
    image = _image(tmp_path / "photo.png", 64, 64)
    request = FitRequest(task="sr", factor=4, image=str(image), tile=32, tile_overlap=8, out=str(tmp_path / "out"))
    with pytest.raises(InputError, match="^--tile: the sr task cannot be restored in tiles"):
        run_fit(request, lambda line: None)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "changes, option",
    [
        ({"seeds": (0, 1)}, "--seeds"),
        ({"ensemble": 2}, "--ensemble"),
        ({"save_network": True}, "--save-network"),
        ({"init_from": "network.pt"}, "--init-from"),
        ({"record_stops": True}, "--record-stops"),
        ({"stop": "discrepancy"}, "--stop discrepancy"),
        ({"stop": "es-wmv", "holdout": 0.1}, "--holdout"),
    ],
)
def test_what_a_tiled_fit_does_not_take_is_refused_in_one_line_before_anything_is_written(tmp_path, changes, option):
    image = _image(tmp_path / "photo.png", 64, 64)
    request = FitRequest(task="denoise", sigma=25, image=str(image), tile=32, tile_overlap=8, out=str(tmp_path / "out"))
    with pytest.raises(InputError) as err:
        run_fit(replace(request, **changes), lambda line: None)
    message = str(err.value)
    assert message.startswith(f"{option}: not taken by a tiled fit (--tile 32)") and len(message.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"tile": 16}, "--tile: must be at least 32"),
        ({"tile": 64, "tile_overlap": 40}, r"--tile: must be at least 32 and at least twice --tile-overlap \(40\)"),
        ({"tile_overlap": -1}, "--tile-overlap: must be an integer >= 0"),
        ({"tile": 48.0}, "--tile: expected an integer"),
    ],
)
def test_a_bad_tile_is_refused_when_the_request_is_made(changes, message):
    with pytest.raises(InputError, match=message):
        FitRequest(**{"task": "denoise", "sigma": 25, "image": "x.png", "out": "o", **changes})


def test_a_dry_run_plans_the_tiles_times_one_and_writes_nothing(tmp_path, capsys):
    from dip.cli import main

    small, out = _image(tmp_path / "small.png", 64, 80), tmp_path / "out"
    args = ["fit", "--task", "denoise", "--sigma", "25", "--image", str(small), "--tile", "48", "--tile-overlap", "16"]
    assert main([*args, "--iters", "300", "--threads", "1", "--dry-run", "--out", str(out)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["memory_mode"], plan["tile"], plan["tile_overlap"], plan["tiles"]) == ("tiled", 48, 16, 4)
    assert plan["memory_mode_why"].startswith("asked (--tile 48): 4 tiles of 48x48, overlap 16, each fitted")
    assert plan["tile_memory_mode"] in ("plain", "checkpointed") and plan["out_state"] == "free"
    # the tiles are fitted in turn: four times one tile's iterations (both numbers rounded as printed)
    rounding = 0.05 + 0.00005 * 300 * 4 / 60
    assert plan["estimated_minutes"] == pytest.approx(plan["seconds_per_iteration"] * 300 * 4 / 60, abs=rounding)
    assert not out.exists()
