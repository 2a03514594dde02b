"""Reading images (every mode on purpose: float, 16-bit, 1-bit, multi-page and N-band), masks in every
encoding, and outputs at the input's precision."""

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from dip.image_io import (
    InputError,
    Reading,
    describe,
    load_image,
    load_mask,
    peek_size,
    read_array,
    save_image,
    save_png,
    to_tensor,
)

RNG = np.random.default_rng(0)


def gradient(h=32, w=32, channels=1) -> np.ndarray:
    """Values in [0, 1], different in every pixel and channel."""
    base = np.linspace(0, 1, h * w * channels).reshape(h, w, channels)
    return base[..., 0] if channels == 1 else base


def test_float32_tiff_in_unit_range_loads_as_is(tmp_path):
    values = gradient().astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", values)
    x = read_array(tmp_path / "f.tif")
    assert x.shape == (32, 32, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., 0], values)


def test_pillow_mode_f_image_loads_as_is(tmp_path):
    values = gradient().astype(np.float32)
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_array(tmp_path / "f.tif")[..., 0], values)


@pytest.mark.parametrize(
    "bad, what",
    [
        (3.5, r"outside \[0, 1\]"),
        (-0.25, r"outside \[0, 1\]"),
        (np.nan, "NaN or infinite"),
        (np.inf, "NaN or infinite"),
    ],
)
def test_float_outside_unit_range_is_refused_naming_the_file_and_the_option(tmp_path, bad, what):
    values = gradient().astype(np.float32)
    values[3, 4] = bad
    tifffile.imwrite(tmp_path / "f.tif", values)
    with pytest.raises(InputError, match=f"f.tif: .*{what}") as err:
        read_array(tmp_path / "f.tif")
    assert "\n" not in str(err.value)
    if np.isfinite(bad):
        assert "--intensity-range" in str(err.value)


def test_intensity_range_maps_the_files_units_to_unit_range(tmp_path):
    values = (gradient() * 1000 - 100).astype(np.float32)  # e.g. counts of a detector with an offset
    tifffile.imwrite(tmp_path / "f.tif", values)
    x = read_array(tmp_path / "f.tif", Reading(intensity_range=(-100, 900)))
    np.testing.assert_allclose(x[..., 0], gradient(), atol=1e-6)
    with pytest.raises(InputError, match=r"f.tif: values -100\.\.900 outside --intensity-range 0,900"):
        read_array(tmp_path / "f.tif", Reading(intensity_range=(0, 900)))


def _png16(arr: np.ndarray, path) -> None:
    """A 16-bit PNG of any channel count (Pillow writes only greyscale ones)."""
    import imagecodecs

    path.write_bytes(imagecodecs.png_encode((arr if arr.ndim == 3 else arr[..., None]).copy()))


@pytest.mark.parametrize("kind", ["png-grey", "png-rgb", "tiff-grey", "tiff-rgb"])
def test_16_bit_images_keep_every_level_of_a_12_bit_signal(tmp_path, kind):
    channels = 3 if kind.endswith("rgb") else 1
    levels = np.round(gradient(channels=channels) * 4095).astype(np.uint16)  # 12 bits used of 16
    path = tmp_path / ("d.png" if kind.startswith("png") else "d.tif")
    if kind.startswith("png"):
        _png16(levels, path)
    else:
        tifffile.imwrite(path, levels, photometric="rgb" if channels == 3 else "minisblack")
    x = read_array(path)
    assert x.shape == (32, 32, channels)
    np.testing.assert_array_equal(np.round(x * 65535).astype(np.uint16).reshape(levels.shape), levels)
    assert describe(path).sample_type == "uint16"


@pytest.mark.parametrize("kind", ["png", "tiff"])
def test_1_bit_images_read_as_0_and_1(tmp_path, kind):
    bits = RNG.random((32, 32)) > 0.5
    path = tmp_path / f"b.{'png' if kind == 'png' else 'tif'}"
    Image.fromarray(bits).save(path)
    np.testing.assert_array_equal(read_array(path)[..., 0], bits.astype(np.float32))


def test_multi_page_tiff_is_refused_naming_its_pages_and_the_flag(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", RNG.random((5, 32, 32)).astype(np.float32))
    for call in (read_array, peek_size):
        with pytest.raises(InputError, match="stack.tif: 5 pages .*--pages-as-channels"):
            call(tmp_path / "stack.tif")


def test_pages_as_channels_stacks_every_page_in_order(tmp_path):
    pages = RNG.random((5, 32, 40)).astype(np.float32)
    tifffile.imwrite(tmp_path / "stack.tif", pages)
    reading = Reading(pages_as_channels=True)
    x = read_array(tmp_path / "stack.tif", reading)
    np.testing.assert_array_equal(x, pages.transpose(1, 2, 0))
    assert peek_size(tmp_path / "stack.tif", reading) == (32, 40, 5)


def test_pages_of_different_sizes_are_refused_even_with_the_flag(tmp_path):
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tif:
        tif.write(np.zeros((32, 32), np.uint8))
        tif.write(np.zeros((16, 16), np.uint8))
    with pytest.raises(InputError, match="mixed.tif: 2 pages of different sizes"):
        read_array(tmp_path / "mixed.tif", Reading(pages_as_channels=True))


def test_animated_gif_frames_are_never_dropped_silently(tmp_path):
    frames = [Image.new("L", (32, 32), v) for v in (0, 100, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match="a.gif: 3 pages"):
        read_array(tmp_path / "a.gif")
    x = read_array(tmp_path / "a.gif", Reading(pages_as_channels=True))
    assert x.shape[-1] == 9 and x[0, 0, ::3] == pytest.approx([0, 100 / 255, 200 / 255], abs=1e-6)


def test_an_mpo_camera_jpeg_reads_its_photograph_and_says_so(tmp_path):
    photo, preview = Image.new("RGB", (32, 32), (200, 30, 30)), Image.new("RGB", (32, 32), (0, 0, 250))
    photo.save(tmp_path / "c.mpo", format="MPO", save_all=True, append_images=[preview], quality=95)
    assert peek_size(tmp_path / "c.mpo") == (32, 32, 3)
    with pytest.warns(UserWarning, match="c.mpo: the first of the 2 images"):
        x = read_array(tmp_path / "c.mpo")
    assert x[..., 0].mean() > 0.7 and x[..., 2].mean() < 0.3


def test_a_16_bit_pgm_which_pillow_misreads_is_refused(tmp_path):
    (tmp_path / "g.pgm").write_bytes(b"P5\n32 32\n4095\n" + np.arange(1024, dtype=">u2").tobytes())
    for call in (read_array, peek_size):
        with pytest.raises(InputError, match=r"g.pgm: a 16-bit PGM/PPM \(maxval 4095\)"):
            call(tmp_path / "g.pgm")


def test_an_n_band_tiff_is_n_channels(tmp_path):
    bands = RNG.random((32, 32, 5)).astype(np.float32)
    tifffile.imwrite(tmp_path / "bands.tif", bands, photometric="minisblack", planarconfig="contig")
    np.testing.assert_array_equal(read_array(tmp_path / "bands.tif"), bands)
    assert peek_size(tmp_path / "bands.tif") == (32, 32, 5)


def test_rgba_tiff_drops_alpha_with_a_warning(tmp_path):
    rgba = (RNG.random((32, 32, 4)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        x = read_array(tmp_path / "a.tif")
    np.testing.assert_allclose(x, rgba[..., :3] / 255, atol=1e-6)
    assert peek_size(tmp_path / "a.tif") == (32, 32, 3)


def test_negative_integers_are_refused(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", np.full((32, 32), -5, np.int16))
    with pytest.raises(InputError, match="s.tif: .*negative.*--intensity-range"):
        read_array(tmp_path / "s.tif")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_agrees_with_pillow(tmp_path, orientation):
    img = Image.fromarray((RNG.random((20, 30, 3)) * 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(tmp_path / "o.png", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")), dtype=np.float32) / 255
    np.testing.assert_array_equal(read_array(tmp_path / "o.png"), expected)
    assert peek_size(tmp_path / "o.png") == (*expected.shape[:2], 3)


@pytest.mark.parametrize("make", ["grey8", "rgba8", "png16", "float", "stack", "bands", "bits", "palette"])
def test_peek_size_agrees_with_read_array(tmp_path, make):
    path = tmp_path / ("x.tif" if make in ("float", "stack", "bands") else "x.png")
    if make == "grey8":
        Image.new("L", (30, 20)).save(path)
    elif make == "rgba8":
        Image.new("RGBA", (30, 20)).save(path)
    elif make == "png16":
        _png16(np.zeros((20, 30, 3), np.uint16), path)
    elif make == "float":
        tifffile.imwrite(path, np.zeros((20, 30), np.float32))
    elif make == "stack":
        tifffile.imwrite(path, np.zeros((4, 20, 30), np.uint16), photometric="minisblack")
    elif make == "bands":
        tifffile.imwrite(path, np.zeros((20, 30, 6), np.uint8), photometric="minisblack", planarconfig="contig")
    elif make == "bits":
        Image.new("1", (30, 20)).save(path)
    else:
        Image.new("RGB", (30, 20), (200, 10, 10)).convert("P", palette=Image.ADAPTIVE).save(path)
    reading = Reading(pages_as_channels=True)
    with pytest.warns(UserWarning) if make == "rgba8" else _nothing():
        assert peek_size(path, reading) == read_array(path, reading).shape


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# Masks: the same known pixels (a disc and a bar unknown) in every encoding users save.
def _known() -> np.ndarray:
    yy, xx = np.mgrid[:64, :64]
    hole = ((yy - 24) ** 2 + (xx - 40) ** 2 < 100) | ((yy > 44) & (yy < 52) & (xx > 8) & (xx < 56))
    return ~hole


def _write_mask(kind: str, known: np.ndarray, folder):
    path = folder / f"mask-{kind}.{'jpg' if kind == 'jpeg' else 'tif' if kind.endswith('tiff') else 'png'}"
    if kind == "0-1":  # what NumPy users write: Image.fromarray(mask.astype(np.uint8))
        Image.fromarray(known.astype(np.uint8)).save(path)
    elif kind == "0-255":
        Image.fromarray(known.astype(np.uint8) * 255).save(path)
    elif kind == "bool":
        Image.fromarray(known).save(path)
    elif kind == "1-bit-tiff":
        Image.fromarray(known).save(path)
    elif kind == "rgb":
        Image.fromarray(np.repeat(known[..., None].astype(np.uint8) * 255, 3, axis=-1)).save(path)
    elif kind == "jpeg":
        Image.fromarray(known.astype(np.uint8) * 255).save(path, quality=75)
    elif kind == "16-bit":
        Image.fromarray(known.astype(np.uint16) * 65535).save(path)
    elif kind == "float-tiff":
        tifffile.imwrite(path, known.astype(np.float32))
    elif kind == "alpha":  # a photograph with holes punched in its alpha
        rgba = np.concatenate(
            [(RNG.random((64, 64, 3)) * 255).astype(np.uint8), known[..., None].astype(np.uint8) * 255], axis=-1
        )
        Image.fromarray(rgba, mode="RGBA").save(path)
    elif kind == "grey-alpha":
        Image.fromarray(np.stack([np.full((64, 64), 255, np.uint8), known.astype(np.uint8) * 255], -1), mode="LA").save(
            path
        )
    return path


MASK_KINDS = ["0-1", "0-255", "bool", "1-bit-tiff", "rgb", "jpeg", "16-bit", "float-tiff", "alpha", "grey-alpha"]


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_every_mask_encoding_gives_the_same_known_pixels(tmp_path, kind):
    known = _known()
    mask = load_mask(_write_mask(kind, known, tmp_path), (64, 64))
    assert mask.shape == (1, 1, 64, 64) and set(mask.unique().tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(mask[0, 0].numpy().astype(bool), known)


@pytest.mark.parametrize("value", [0, 1, 255])
def test_a_mask_with_no_known_or_no_unknown_pixel_is_refused(tmp_path, value):
    Image.new("L", (64, 64), value).save(tmp_path / "m.png")
    with pytest.raises(InputError, match="m.png: every pixel .*bright = known") as err:
        load_mask(tmp_path / "m.png", (64, 64))
    assert "\n" not in str(err.value)


def test_a_multi_page_mask_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", np.stack([_known(), _known()]).astype(np.uint8))
    with pytest.raises(InputError, match="m.tif: 2 pages"):
        load_mask(tmp_path / "m.tif", (64, 64))


# Outputs at the input's precision.
def test_16_bit_input_writes_a_16_bit_png_beside_the_preview(tmp_path):
    levels = np.round(gradient(channels=3) * 4095).astype(np.uint16)
    _png16(levels, tmp_path / "in.png")
    source = describe(tmp_path / "in.png")
    written = save_image(to_tensor(read_array(tmp_path / "in.png")), tmp_path / "out" / "restored", source)
    assert written == ["restored.png", "restored-16bit.png"]
    np.testing.assert_array_equal(
        read_array(tmp_path / "out" / "restored-16bit.png") * 65535, levels.astype(np.float32)
    )
    assert np.asarray(Image.open(tmp_path / "out" / "restored.png")).dtype == np.uint8


def test_float_input_writes_a_float_tiff_in_the_inputs_units(tmp_path):
    values = (gradient() * 1000 - 100).astype(np.float32)
    tifffile.imwrite(tmp_path / "in.tif", values)
    reading = Reading(intensity_range=(-100, 900))
    source = describe(tmp_path / "in.tif", reading)
    written = save_image(to_tensor(read_array(tmp_path / "in.tif", reading)), tmp_path / "restored", source)
    assert written == ["restored.png", "restored.tif"]
    back = tifffile.imread(tmp_path / "restored.tif")
    assert back.dtype == np.float32 and back.shape == (32, 32)
    np.testing.assert_allclose(back, values, atol=1e-3)


def test_pages_are_written_back_as_pages(tmp_path):
    pages = RNG.random((5, 32, 32)).astype(np.float32)
    tifffile.imwrite(tmp_path / "in.tif", pages)
    reading = Reading(pages_as_channels=True)
    source = describe(tmp_path / "in.tif", reading)
    save_image(to_tensor(read_array(tmp_path / "in.tif", reading)), tmp_path / "restored", source)
    np.testing.assert_allclose(tifffile.imread(tmp_path / "restored.tif"), pages, atol=1e-6)
    preview = np.asarray(Image.open(tmp_path / "restored.png"))
    assert preview.shape == (32, 32)  # an image of 5 channels previews as their mean


def test_8_bit_input_writes_only_the_png(tmp_path, png64):
    written = save_image(to_tensor(read_array(png64)), tmp_path / "out" / "restored", describe(png64))
    assert written == ["restored.png"] and [p.name for p in (tmp_path / "out").iterdir()] == ["restored.png"]


def test_greyscale_stays_one_channel(tmp_path):
    Image.fromarray(np.full((20, 30), 128, np.uint8)).save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png")
    assert x.shape == (1, 1, 20, 30) and x.max().item() == pytest.approx(128 / 255)


def test_rgba_drops_alpha_with_a_warning(tmp_path):
    Image.new("RGBA", (20, 20), (10, 20, 30, 0)).save(tmp_path / "a.png")
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        x = read_array(tmp_path / "a.png")
    assert x.shape == (20, 20, 3) and x[0, 0, 2] == pytest.approx(30 / 255)


def test_palette_becomes_rgb(tmp_path):
    Image.new("RGB", (20, 20), (200, 10, 10)).convert("P", palette=Image.ADAPTIVE).save(tmp_path / "p.png")
    x = read_array(tmp_path / "p.png")
    assert x.shape == (20, 20, 3) and x[0, 0, 0] > 0.7


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    arr = np.full((20, 20), 40000, np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    x = read_array(tmp_path / "d.png")
    assert x.shape == (20, 20, 1) and x[0, 0, 0] == pytest.approx(40000 / 65535, abs=1e-4)


def test_exif_rotation_is_respected(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    x = read_array(tmp_path / "r.jpg")
    assert x.shape == (40, 20, 3)
    assert x[:20].mean() > 0.8 and x[20:].mean() < 0.2  # white ends up on top


def test_missing_and_truncated_files_are_named(tmp_path):
    with pytest.raises(InputError, match="nope.png: file not found"):
        load_image(tmp_path / "nope.png")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="t.png: not a readable image"):
        load_image(tmp_path / "t.png")


def test_mask_of_another_size_is_rejected(tmp_path):
    Image.new("L", (10, 10), 255).save(tmp_path / "m.png")
    with pytest.raises(InputError, match="mask is 10x10 but the image is 20x20"):
        load_mask(tmp_path / "m.png", (20, 20))


def test_save_png_is_atomic_and_leaves_no_temporary(tmp_path, clean64):
    save_png(clean64, tmp_path / "out.png")
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    assert load_image(tmp_path / "out.png").shape == clean64.shape
    assert (tmp_path / "out.png").stat().st_mode & 0o044  # readable by others like any ordinary output


def test_a_narrow_intensity_range_writes_float_not_whole_counts(tmp_path):
    """Counts 0..10 in a 16-bit file: whole numbers would keep 11 levels, fewer than the 8-bit preview."""
    tifffile.imwrite(tmp_path / "counts.tif", (np.arange(32 * 32).reshape(32, 32) % 11).astype(np.uint16))
    source = describe(tmp_path / "counts.tif", Reading(intensity_range=(0, 10)))
    assert source.output_suffix == ".tif" and source.output_type == np.float32
    assert describe(tmp_path / "counts.tif").output_type == np.uint16  # the type's own range: stays 16-bit


def test_an_intensity_range_past_the_integer_type_writes_float(tmp_path):
    Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)).save(tmp_path / "in.png")
    reading = Reading(intensity_range=(-1000, 70000))
    source = describe(tmp_path / "in.png", reading)
    assert source.output_suffix == ".tif" and source.output_type == np.float32
    save_image(to_tensor(read_array(tmp_path / "in.png", reading)), tmp_path / "restored", source)
    np.testing.assert_allclose(
        tifffile.imread(tmp_path / "restored.tif"), np.arange(32 * 32).reshape(32, 32), atol=0.01
    )
