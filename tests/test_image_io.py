import numpy as np
import pytest
from PIL import Image

from dip.image_io import InputError, load_image, load_mask, read_array, save_png


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
