"""Several images in one `dip fit` (dip.many): each image its own fit in OUT/<name>."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dip.image_io import InputError
from dip.many import images, requests
from dip.record import read
from dip.request import FitRequest
from dip.strict_json import loads_strict

DIP = [sys.executable, "-m", "dip"]


def save(path, size=32, flip=False):
    from conftest import natural_crop

    pixels = natural_crop(size)[::-1] if flip else natural_crop(size)
    Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(path)
    return path


def test_a_folder_gives_its_images_sorted_and_files_stay_in_the_order_given(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("b.PNG", "a.jpg", "c.tif", "notes.txt", ".hidden.png"):
        (photos / name).write_bytes(b"")
    (photos / "sub.png").mkdir()
    assert [p.name for p in images([photos])] == ["a.jpg", "b.PNG", "c.tif"]
    assert [p.name for p in images([photos / "c.tif", photos / "a.jpg"])] == ["c.tif", "a.jpg"]


@pytest.mark.parametrize(
    "given, message",
    [
        (["a.png", "other/a.tif"], "--image: {t}/a.png and {t}/other/a.tif have the same name 'a'"),
        (["a.png", "nope.png"], "{t}/nope.png: file not found"),
        (["empty"], "--image {t}/empty: the folder holds no images"),
    ],
)
def test_inputs_that_cannot_be_a_batch_are_one_line_before_anything_else(tmp_path, given, message):
    (tmp_path / "other").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "other" / "a.tif").write_bytes(b"")
    with pytest.raises(InputError) as err:
        images([tmp_path / g for g in given])
    assert str(err.value).startswith(message.format(t=tmp_path))


def test_each_image_gets_the_request_of_one_image_in_its_own_folder():
    base = FitRequest(task="denoise", sigma=25, observed="x.png", out="runs", lr=0.02, seeds=(0, 1))
    a, b = requests(base, [Path("p/a.png"), Path("q/b.tif")])
    assert (a.observed, a.out, b.observed, b.out) == ("p/a.png", "runs/a", "q/b.tif", "runs/b")
    assert a.lr == 0.02 and a.seeds == (0, 1) and not a.progress and a.image is None


def test_several_images_each_restored_a_failing_one_reported_and_the_exit_status_2(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    save(photos / "a.png")
    save(photos / "b.png", flip=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photos / "tiny.png")  # below the 16x16 minimum
    out = tmp_path / "run"
    args = ["fit", "--task", "denoise", "--sigma", 25, "--image", photos, "--iters", 2, "--threads", 1, "--out", out]
    r = subprocess.run([*DIP, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    lines = [loads_strict(line) for line in r.stdout.splitlines()]
    assert [line["image"] for line in lines] == [str(photos / "a.png"), str(photos / "b.png")]
    assert [line["out"] for line in lines] == [str(out / "a"), str(out / "b")]
    # The line a single fit prints (the rule that chose the image and its iteration), plus image and status.
    assert all(line["returned_by"] and line["iteration"] == 2 and line["status"] == "ok" for line in lines)
    for name in ("a", "b"):
        record = read(out / name / "summary.json")
        assert record.status == "ok" and record.source == str(photos / f"{name}.png") and record.iterations == 2
        assert (out / name / "restored.png").exists()
    err = r.stderr.splitlines()
    assert err[0].startswith("[1/3] a.png: ") and "dB" in err[0] and str(out / "a") in err[0]
    assert err[1].startswith("[2/3] b.png: ")
    assert err[2] == f"[3/3] tiny.png: failed: {photos / 'tiny.png'}: image is 8x8, smaller than the minimum 16x16"
    assert err[3] == "dip fit: 3 images: 2 restored, 1 failed (tiny.png)" and len(err) == 4
    assert "iteration" not in r.stderr  # one progress line per image, not per iteration
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]  # nothing of tiny.png, no lock left


def test_a_dry_run_of_several_images_plans_each_and_writes_nothing(tmp_path):
    a, b = save(tmp_path / "a.png"), save(tmp_path / "b.png", size=48)
    out = tmp_path / "run"
    args = ["fit", "--task", "denoise", "--sigma", 25, "--image", a, b, "--iters", 2, "--threads", 1, "--out", out]
    r = subprocess.run([*DIP, *map(str, args), "--dry-run"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    plans = [loads_strict(line) for line in r.stdout.splitlines()]
    assert [(p["image"], p["height"], p["out"], p["out_state"]) for p in plans] == [
        (str(a), 32, str(out / "a"), "free"),
        (str(b), 48, str(out / "b"), "free"),
    ]
    assert not out.exists()


def test_options_wrong_for_every_image_refuse_the_command_in_one_line(tmp_path):
    a, b = save(tmp_path / "a.png"), save(tmp_path / "b.png")
    out = tmp_path / "run"
    args = ["fit", "--task", "denoise", "--sigma", -3, "--image", a, b, "--out", out]
    r = subprocess.run([*DIP, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr == "dip fit: error: --sigma: must be > 0 for the denoise task, got -3.0\n"
    assert r.stdout == "" and not out.exists()


def test_a_batch_holds_its_out_folder_and_refuses_a_held_one_before_fitting(tmp_path):
    from dip.folders import FolderInUse, hold
    from dip.many import restore_many

    a, b = save(tmp_path / "a.png"), save(tmp_path / "b.png", flip=True)
    out = tmp_path / "run"
    with hold([out]):
        with pytest.raises(FolderInUse, match=f"^{out}: in use by a running fit"):
            restore_many(FitRequest(task="denoise", sigma=25, image=str(a), iters=2, out=str(out)), [a, b])
        assert [p.name for p in out.iterdir()] == [".dip.lock"]
