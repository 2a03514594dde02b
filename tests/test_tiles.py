"""dip.tiles: the tile grid, seamless blending, operators cut with the image, refusals, a real tiled fit, a
folder of finished tiles."""

import pandas as pd
import pytest
import torch

from dip import api, tiles
from dip.fit import FitResult
from dip.image_io import InputError
from dip.operators import Blur, Denoise, Inpaint, Poisson, SuperResolve, gaussian_psf, random_drop
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
