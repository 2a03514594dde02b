import re

import numpy as np
import pytest
from PIL import Image

from dip import manifest
from dip.image_io import InputError

HEADER = "id\tpath\trole\tmask\tcrop\tresize\tsource\tlicence\n"


def write(tmp_path, rows):
    path = tmp_path / "manifest.tsv"
    path.write_text(HEADER + "".join("\t".join(r) + "\n" for r in rows))
    return path


def test_default_manifest_reads_and_checks():
    frame = manifest.read("data/manifest.tsv")
    assert len(frame) >= 6 and frame.index.is_unique
    manifest.check(frame, manifest.Path("data"))


def test_duplicate_ids_are_named(tmp_path):
    path = write(tmp_path, [["a", "skimage:camera", "", "", "", "", "", ""]] * 2)
    with pytest.raises(InputError, match="duplicate id 'a'"):
        manifest.read(path)


def test_an_empty_manifest_is_rejected(tmp_path):
    with pytest.raises(InputError, match="manifest has no images"):
        manifest.read(write(tmp_path, []))


def test_a_mask_of_another_size_is_named(tmp_path):
    Image.new("RGB", (40, 40)).save(tmp_path / "img.png")
    mask = Image.new("L", (32, 32), 255)
    mask.paste(0, (8, 8, 16, 16))  # a mask with a hole: one without any is refused for that
    mask.save(tmp_path / "mask.png")
    frame = manifest.read(write(tmp_path, [["x", "img.png", "clean", "mask.png", "", "", "", ""]]))
    with pytest.raises(InputError, match="manifest row 'x': mask mask.png is 32x32 but the image is 40x40"):
        manifest.check(frame, tmp_path)


def test_a_too_small_image_says_the_minimum(tmp_path):
    Image.new("RGB", (12, 40)).save(tmp_path / "small.png")
    frame = manifest.read(write(tmp_path, [["s", "small.png", "", "", "", "", "", ""]]))
    with pytest.raises(InputError, match="smaller than the minimum 16x16"):
        manifest.check(frame, tmp_path)


def test_an_unknown_bundled_image_is_named(tmp_path):
    frame = manifest.read(write(tmp_path, [["u", "skimage:unicorn", "", "", "", "", "", ""]]))
    with pytest.raises(InputError, match="skimage:unicorn"):
        manifest.check(frame, tmp_path)


def test_prepare_crops_resizes_and_keeps_multiples_of_eight():
    arr = np.random.default_rng(0).random((100, 90, 3)).astype(np.float32)
    out = manifest.prepare(arr, crop="5,5,70,60", resize="37x45")
    assert out.shape == (40, 32, 3) and out.min() >= 0 and out.max() <= 1


def test_paths_under_the_data_root_resolve_against_the_users_copy(tmp_path):
    from dip.manifest import check, read

    (tmp_path / "root" / "Set5").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(tmp_path / "root" / "Set5" / "baby.png")
    manifest = tmp_path / "set5.tsv"
    manifest.write_text("id\tpath\tdataset\nbaby\t{data_root}/Set5/baby.png\tSet5\n")
    frame = read(manifest)
    assert frame.loc["baby", "dataset"] == "Set5"
    assert check(frame, tmp_path, data_root=str(tmp_path / "root")) == {"baby": (32, 40, 3)}
    with pytest.raises(
        InputError, match="manifest row 'baby': .*give it with --config data_root=DIR or .*DIP_DATA_ROOT"
    ):
        check(frame, tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"manifest row 'baby': .*empty/Set5/baby.png: file not found \(looked under"):
        check(frame, tmp_path, data_root=str(tmp_path / "empty"))
    with pytest.raises(InputError, match="data_root .*nowhere: no such folder"):
        check(frame, tmp_path, data_root=str(tmp_path / "nowhere"))


def write_pairs(tmp_path, rows):
    path = tmp_path / "pairs.tsv"
    path.write_text("id\tpath\trole\tflash\treference\n" + "".join("\t".join(r) + "\n" for r in rows))
    return manifest.read(path)


def test_a_pair_row_checks_its_flash_and_reference_photographs(tmp_path):
    for name, size in (("noflash", 40), ("flash", 40), ("small", 32)):
        Image.new("RGB", (size, size)).save(tmp_path / f"{name}.png")
    Image.new("L", (40, 40)).save(tmp_path / "grey.png")
    good = write_pairs(tmp_path, [["p", "noflash.png", "pair", "flash.png", "noflash.png"]])
    assert manifest.check(good, tmp_path) == {"p": (40, 40, 3)}
    cases = [
        (["p", "noflash.png", "pair", "", ""], "manifest row 'p': a pair row (role pair) needs its flash photograph"),
        (["c", "noflash.png", "clean", "flash.png", ""], "manifest row 'c': a pair row (role pair) needs"),
        (["c", "noflash.png", "", "", "flash.png"], "manifest row 'c': `reference` is the ground truth of a pair row"),
        (
            ["p", "noflash.png", "pair", "small.png", ""],
            "manifest row 'p': flash small.png is 32x32x3 but the image is 40x40x3",
        ),
        (
            ["p", "noflash.png", "pair", "flash.png", "grey.png"],
            "reference grey.png is 40x40x1 but the image is 40x40x3",
        ),
        (["p", "noflash.png", "pair", "ghost.png", ""], "ghost.png: file not found"),
        (["p", "noflash.png", "observed", "", ""], "role must be clean or pair, got 'observed'"),
    ]
    for row, message in cases:
        with pytest.raises(InputError, match=re.escape(message)):
            manifest.check(write_pairs(tmp_path, [row]), tmp_path)


def test_the_bundled_synthetic_pair_is_what_its_script_makes(tmp_path):
    # data/pairs/*.png are the output of data/pairs/make_pair.py (dip.tasks.synthetic_flash_pair, seed 0).
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = (root / "data" / "pairs" / "make_pair.py").read_text()
    (tmp_path / "make_pair.py").write_text(script)
    r = subprocess.run([sys.executable, tmp_path / "make_pair.py"], capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stderr
    for name in ("flash", "noflash", "reference"):
        made = np.asarray(Image.open(tmp_path / f"coffee_{name}.png"))
        shipped = np.asarray(Image.open(root / "data" / "pairs" / f"coffee_{name}.png"))
        assert np.array_equal(made, shipped), name
    flash, noflash, reference = (
        np.asarray(Image.open(tmp_path / f"coffee_{n}.png"), dtype=np.float32) / 255
        for n in ("flash", "noflash", "reference")
    )
    # Bright and cold against dim and warm; the noise is the no-flash photograph's alone.
    assert flash.mean() > 1.8 * reference.mean() and reference[..., 0].mean() > reference[..., 2].mean() * 1.3
    assert 0.03 < np.std(noflash - reference) < 0.06


def test_a_mask_is_read_by_its_meaning_and_an_n_band_image_is_named(tmp_path):
    import tifffile

    Image.new("RGB", (40, 40)).save(tmp_path / "img.png")
    known = np.ones((40, 40), np.uint8)
    known[10:20, 10:30] = 0
    Image.fromarray(known).save(tmp_path / "mask01.png")  # 0/1: half the old reader saw no known pixel
    Image.new("L", (40, 40), 255).save(tmp_path / "full.png")
    tifffile.imwrite(
        tmp_path / "bands.tif", np.zeros((40, 40, 5), np.uint8), photometric="minisblack", planarconfig="contig"
    )
    np.testing.assert_array_equal(manifest.load_source(str(tmp_path / "mask01.png"), mask=True)[..., 0], known)
    frame = manifest.read(write(tmp_path, [["x", "img.png", "clean", "mask01.png", "", "", "", ""]]))
    assert manifest.check(frame, tmp_path)["x"] == (40, 40, 3)
    frame = manifest.read(write(tmp_path, [["x", "img.png", "clean", "full.png", "", "", "", ""]]))
    with pytest.raises(InputError, match="full.png: every pixel has the same value"):
        manifest.check(frame, tmp_path)
    frame = manifest.read(write(tmp_path, [["b", "bands.tif", "clean", "", "", "", "", ""]]))
    with pytest.raises(InputError, match="manifest row 'b': bands.tif has 5 channels"):
        manifest.check(frame, tmp_path)


@pytest.mark.parametrize("crop", ["20,20,40,40", "0,0,100,100", "-1,0,10,10", "0,0,0,10"])
def test_a_crop_window_not_inside_the_image_is_refused(crop):
    # NumPy's slicing would cut the window to the image: a 24x24 image where 40x40 was asked for.
    with pytest.raises(ValueError, match=f"crop {crop}: the window is not inside the 48x48 image"):
        manifest.prepare(np.zeros((48, 48, 3), np.float32), crop=crop)


def test_a_comma_separated_manifest_is_named_as_such(tmp_path):
    path = tmp_path / "images.tsv"
    path.write_text("id,path\ncamera,skimage:camera\n")
    with pytest.raises(
        InputError, match=r"header names the columns id and path, got: id,path \(it reads as one column"
    ):
        manifest.read(path)
