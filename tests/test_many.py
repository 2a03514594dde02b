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
    # Two iterations leave each image below its observation: each fit says so, in its own line.
    warned = [line for line in r.stderr.splitlines() if ": warning: restored.png is " in line]
    assert [line.split(": warning")[0] for line in warned] == [f"dip fit: {out / 'a'}", f"dip fit: {out / 'b'}"]
    err = [line for line in r.stderr.splitlines() if line not in warned]
    assert err[0].startswith("[1/3] a.png: ") and "dB" in err[0] and str(out / "a") in err[0]
    assert err[1].startswith("[2/3] b.png: ")
    assert err[2] == f"[3/3] tiny.png: failed: {photos / 'tiny.png'}: image is 8x8, smaller than the minimum 16x16"
    assert err[3] == "dip fit: 3 images: 2 restored, 1 failed (tiny.png)" and len(err) == 4
    assert not any("iteration" in line for line in err)  # one progress line per image, not per iteration
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]  # nothing of tiny.png, no lock left


@pytest.mark.parametrize("out", ["run", "run_{seed}"])
def test_with_seeds_each_printed_line_names_its_own_seeds_folder(tmp_path, out):
    from conftest import run_dip

    a, b = save(tmp_path / "a.png"), save(tmp_path / "b.png", flip=True)
    base = str(tmp_path / out)
    r = run_dip("fit", "--task", "denoise", "--sigma", 25, "--arch", "skip-3", "--image", a, b, "--seeds", 0, 1,
                "--iters", 2, "--threads", 1, "--out", base)  # fmt: skip
    assert r.returncode == 0, r.stderr
    folders = [loads_strict(line)["out"] for line in r.stdout.splitlines()]
    if "{seed}" in out:
        expected = [str(tmp_path / f"run_{seed}" / name) for name in "ab" for seed in (0, 1)]
    else:
        expected = [str(tmp_path / "run" / name / f"seed{seed}") for name in "ab" for seed in (0, 1)]
    assert folders == expected and all((Path(f) / "summary.json").exists() for f in folders)
    progress = [line for line in r.stderr.splitlines() if line.startswith("[")]
    assert len(progress) == 2 and all("the best of 2 seeds" in line and "{seed}" not in line for line in progress)
    assert all(any(f in line for f in expected) for line in progress)


def test_a_dry_run_of_a_stack_plans_the_memory_of_the_whole_stack(tmp_path):
    from conftest import run_dip

    a, b, c = save(tmp_path / "a.png"), save(tmp_path / "b.png", flip=True), save(tmp_path / "c.png", size=48)
    common = ["fit", "--task", "denoise", "--sigma", 25, "--arch", "skip-3", "--iters", 2, "--threads", 1,
              "--seeds", 0, 1, "--out", tmp_path / "run", "--dry-run"]  # fmt: skip
    alone = [loads_strict(line) for line in run_dip(*common, "--image", a, b, c).stdout.splitlines()]
    r = run_dip(*common, "--image", a, b, c, "--stack", 2)
    assert r.returncode == 0, r.stderr
    plans = {Path(p["image"]).name: p for p in map(loads_strict, r.stdout.splitlines())}
    for name in ("a.png", "b.png"):
        assert plans[name]["fits"] == 4 and plans[name]["stack"] == [str(a), str(b)]
        assert plans[name]["plain_estimated_mb"] > alone[0]["plain_estimated_mb"]
        assert plans[name]["estimated_minutes"] is None
    assert plans["c.png"]["fits"] == 2 and "stack" not in plans["c.png"]  # alone in its size
    assert not (tmp_path / "run").exists()


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


# --stack: several images' fits as one batched network (dip.request.run_stacked).
STACKED = dict(task="denoise", sigma=25, arch="skip-3", iters=40, record_stops=True, seeds=(0, 1), progress=False)
# What differs between a stacked fit's record and the same fit's unstacked: time, and how it was batched.
RUN_DEPENDENT = {"seconds", "wall_seconds", "seconds_saved", "batched_fits", "stack"}


@pytest.fixture(scope="module")
def two_images(tmp_path_factory):
    """Two different 32x32 images, fitted stacked (--stack 2, two seeds each: four fits in one network)
    and one after another."""
    from dip.many import restore_many

    folder = tmp_path_factory.mktemp("stack")
    a, b = save(folder / "a.png"), save(folder / "b.png", flip=True)
    for name, stack in (("stacked", 2), ("alone", 1)):
        base = FitRequest(image=str(a), out=str(folder / name), **STACKED)
        restore_many(base, [a, b], log=lambda line: None, stack=stack)
    return folder, a, b


def test_stacked_fits_are_the_fits_of_each_image_alone_in_the_same_places(two_images):
    import pandas as pd

    folder, a, b = two_images
    for name in ("a", "b"):
        for seed in (0, 1):
            stacked, alone = folder / "stacked" / name / f"seed{seed}", folder / "alone" / name / f"seed{seed}"
            assert sorted(p.name for p in stacked.iterdir()) == sorted(p.name for p in alone.iterdir())
            mine, theirs = read(stacked / "summary.json"), read(alone / "summary.json")
            assert mine.stack == [str(a), str(b)] and mine.batched_fits == 4 and theirs.stack is None
            mine_json, their_json = mine.to_json(), theirs.to_json()
            differ = {k for k in {*mine_json, *their_json} if mine_json.get(k) != their_json.get(k)}
            assert differ <= RUN_DEPENDENT | {"stops", "psnr_restored", "ssim_restored", "psnr_final", "ssim_final",
                                              "psnr_ema_final", "ssim_ema_final", "psnr_best", "psnr_ema_best"}  # fmt: skip
            assert mine.fingerprint == theirs.fingerprint and mine.config_hash == theirs.config_hash
            assert mine.stops["discrepancy"].target == theirs.stops["discrepancy"].target  # each image's own
            # The tolerance of batched against single fits (tests/test_fit.py): the same first loss, the outcome
            # within float rounding's drift.
            ours, single = pd.read_csv(stacked / "history.csv"), pd.read_csv(alone / "history.csv")
            assert ours["loss"].iloc[0] == pytest.approx(single["loss"].iloc[0], rel=1e-5)
            assert len(ours) == len(single) == 40
            assert abs(ours["psnr"].max() - single["psnr"].max()) < 0.5
            assert abs(mine.psnr_restored - theirs.psnr_restored) < 0.5
    # The two images are fitted to their own observations: not the same fit twice.
    first = [read(folder / "stacked" / n / "seed0" / "summary.json").psnr_observed for n in ("a", "b")]
    assert first[0] != first[1]
    assert not list((folder / "stacked").rglob("checkpoint*.pt"))  # a finished stack leaves no checkpoint


def test_an_interrupted_stack_resumes_from_its_checkpoint(two_images, tmp_path, monkeypatch):
    import os
    import signal

    import pandas as pd

    import dip.fit
    from dip.many import restore_many

    folder, a, b = two_images
    base = FitRequest(image=str(a), out=str(tmp_path / "run"), checkpoint_every=25, **STACKED)
    step, calls = dip.fit.Step.__call__, [0]

    def interrupted(self, *args):
        calls[0] += 1
        if calls[0] == 30:  # after the check at iteration 25
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, *args)

    monkeypatch.setattr(dip.fit.Step, "__call__", interrupted)
    with pytest.raises(SystemExit) as end:
        restore_many(base, [a, b], log=lambda line: None, stack=2)
    assert end.value.code == 128 + signal.SIGTERM
    checkpoint = tmp_path / "run" / "a" / "seed0" / "checkpoint-stack.pt"
    assert checkpoint.exists() and not (tmp_path / "run" / "b" / "seed0" / "summary.json").exists()
    monkeypatch.setattr(dip.fit.Step, "__call__", step)
    outcomes = restore_many(base, [a, b], log=lambda line: None, stack=2)
    assert [len(o.records) for o in outcomes] == [2, 2] and not checkpoint.exists()
    for name in ("a", "b"):
        for seed in (0, 1):
            record = read(tmp_path / "run" / name / f"seed{seed}" / "summary.json")
            assert record.resumed_from == 25 and record.iterations == 40
            resumed = pd.read_csv(tmp_path / "run" / name / f"seed{seed}" / "history.csv")
            straight = pd.read_csv(folder / "stacked" / name / f"seed{seed}" / "history.csv")
            assert np.allclose(resumed["loss"], straight["loss"], rtol=1e-6, atol=0)


def test_images_of_another_size_are_stacked_apart_and_said_so(tmp_path):
    from dip.many import restore_many

    a, c, b = save(tmp_path / "a.png"), save(tmp_path / "c.png", size=48), save(tmp_path / "b.png", flip=True)
    lines = []
    base = FitRequest(task="denoise", sigma=25, arch="skip-3", iters=2, image=str(a), out=str(tmp_path / "run"))
    outcomes = restore_many(base, [a, c, b], log=lines.append, stack=2)
    assert [o.image.name for o in outcomes] == ["a.png", "b.png", "c.png"]
    assert (
        "--stack 2: images of different sizes or channel counts are stacked apart: [a.png, b.png] 32x32x3; [c.png] 48x48x3"
        in lines
    )
    assert [o.records[0].stack for o in outcomes] == [[str(a), str(b)], [str(a), str(b)], None]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ensemble", 2], "--ensemble: not taken by stacked fits (--stack): "),
        (["--loss", "sure"], "--loss sure: not taken by stacked fits (--stack): "),
        (["--optimizer", "lbfgs"], "--optimizer: not taken by stacked fits (--stack): batched fits use Adam"),
        (["--tile", 32, "--tile-overlap", 8], "would be restored in tiles"),
    ],
)
def test_what_cannot_be_stacked_is_refused_in_one_line_before_anything_is_written(tmp_path, extra, message):
    from conftest import run_dip

    a, b = save(tmp_path / "a.png"), save(tmp_path / "b.png", flip=True)
    out = tmp_path / "run"
    r = run_dip(
        "fit", "--task", "denoise", "--sigma", 25, "--image", a, b, "--iters", 2, "--out", out, "--stack", 2, *extra
    )
    assert r.returncode == 2 and r.stderr.startswith("dip fit: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr and not out.exists()


def test_stack_with_one_image_is_refused_in_one_line(tmp_path):
    from conftest import run_dip

    out = tmp_path / "run"
    r = run_dip(
        "fit", "--task", "denoise", "--sigma", 25, "--image", save(tmp_path / "a.png"), "--out", out, "--stack", 2
    )
    assert r.returncode == 2 and r.stderr == (
        "dip fit: error: --stack: stacks the fits of several images; give several (--image a.png b.png, or a folder)\n"
    )
    assert not out.exists()
