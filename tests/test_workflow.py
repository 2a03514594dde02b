"""The Snakemake workflow: lint, dry runs, bad configs, profiles, and the small config end to end."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dip import cbm3d

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def snakemake(*args, cwd=ROOT, timeout=900, env=None):
    return subprocess.run(
        [str(BIN / "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile"), *map(str, args)],
        cwd=cwd,
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_counts(output: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", output, flags=re.M)}


def scratch(folder: Path) -> Path:
    """`folder` with a copy of config/ and data/ in it, so tests never touch the user's results/."""
    shutil.copytree(ROOT / "config", folder / "config")
    shutil.copytree(ROOT / "data", folder / "data")
    return folder


@pytest.fixture
def workdir(tmp_path):
    return scratch(tmp_path)


def expected_fits(config, manifest) -> int:
    """How many fits a config runs: the grid tasks on the clean images with its architectures, the paired
    tasks on the pairs with the paired networks."""
    from dip.presets import PAIRED_ARCHITECTURES
    from dip.tasks import PAIRED

    frame = pd.read_csv(manifest, sep="\t", comment="#", dtype=str).fillna("")
    if config.get("images"):
        frame = frame[frame["id"].isin(config["images"])]
    pairs = int((frame["role"] == "pair").sum())
    fits = 0
    for spec in config["tasks"].values():
        paired = spec["task"] in PAIRED
        fits += (pairs if paired else len(frame) - pairs) * len(PAIRED_ARCHITECTURES if paired else config["archs"])
    return fits * len(config["seeds"])


def write_config(workdir, **changes):
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    config.update(changes)
    path = workdir / "config" / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_lint_is_clean():
    r = snakemake("--lint")
    assert r.returncode == 0, r.stdout + r.stderr


def test_default_dry_run_schedules_one_fit_per_image_task_arch_seed(workdir):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    manifest = pd.read_csv(ROOT / config["manifest"], sep="\t", comment="#", dtype=str).fillna("")
    images = int((manifest["role"] != "pair").sum())  # the grid tasks fit the clean images, not the pairs
    r = snakemake("-n", "--directory", workdir, "--configfile", workdir / "config" / "config.yaml")
    assert r.returncode == 0, r.stderr
    expected = images * len(config["tasks"]) * len(config["archs"]) * len(config["seeds"])
    assert job_counts(r.stdout)["fit"] == expected == expected_fits(config, ROOT / config["manifest"])


def test_a_config_file_replaces_the_default_config_instead_of_extending_it(workdir):
    config = write_config(workdir, tasks={"jpeg-q10": {"task": "jpeg", "quality": 10, "iterations": 5}})
    r = snakemake("-n", "--directory", workdir, "--configfile", config)
    assert r.returncode == 0, r.stderr
    test = yaml.safe_load(config.read_text())
    # Only the named task: config/config.yaml's denoise-s25 and sr-x4 are not merged in.
    fits = job_counts(r.stdout)["fit"]
    assert fits == expected_fits(test, workdir / test["manifest"]) == 1  # one image, one network, one task
    assert "denoise-s25" not in r.stdout and "jpeg-q10" in r.stdout


@pytest.mark.parametrize(
    "change, message",
    [
        ({"manifest": "data/nowhere.tsv"}, "data/nowhere.tsv: manifest not found"),
        (
            {"tasks": {"blur": {"task": "deblur", "sigma": 2, "iterations": 5}}},
            "config: tasks.blur: 'blur' is a required property",
        ),
        (
            {"tasks": {"p": {"task": "denoise", "noise": "poisson", "sigma": 2, "peak": 10, "iterations": 5}}},
            "config: tasks.p.sigma: the entry's task and noise model take no sigma (got 2)",
        ),
        (
            {"tasks": {"p": {"task": "denoise", "noise": "poisson", "peak": 0, "iterations": 5}}},
            "config: tasks.p.peak: 0 is less than or equal to the minimum of 0",
        ),
        ({"tasks": {"b": {"task": "deblur", "blur": "box:3", "sigma": 2, "iterations": 5}}}, "box:3"),
        ({"archs": ["vgg"]}, "config: archs.0: 'vgg' is not one of ['skip', "),
        ({"seeds": [0, "one"]}, "config: seeds.1: 'one' is not of type 'integer'"),
        ({"tasks": {"denoise-s25": {"task": "denoise", "sigma": -25, "iterations": 5}}}, "-25"),
        # A parameter the task does not take (dip.tasks.OPTIONS), and an SR factor below 2.
        (
            {"tasks": {"sr-x4": {"task": "sr", "factor": 4, "sigma": 25, "iterations": 5}}},
            "tasks: 'sr-x4': sigma: the sr task takes no sigma (it takes factor)",
        ),
        ({"tasks": {"sr-x1": {"task": "sr", "factor": 1, "iterations": 5}}}, "tasks.sr-x1.factor: 1 is less than the"),
        # What the schema lets through and the task's parser (dip.tasks.Task.from_spec) refuses.
        (
            {"tasks": {"text": {"task": "inpaint", "mask": "text", "drop": 0.5, "iterations": 5}}},
            "tasks: 'text': drop: a fraction of pixels to drop needs mask: drop, got mask: text",
        ),
        (
            {"tasks": {"b": {"task": "deblur", "blur": "motion:0,30", "sigma": 2, "iterations": 5}}},
            "tasks: 'b': --blur: expected gaussian:SIGMA",
        ),
    ],
)
def test_a_bad_config_fails_before_any_job_naming_the_entry(workdir, change, message):
    r = snakemake("--cores", 1, "--directory", workdir, "--configfile", write_config(workdir, **change))
    assert r.returncode == 2
    assert message in r.stdout + r.stderr
    # The reason in one line, not followed by the whole schema (Snakemake's own validate prints ~480 lines)
    # nor by the Snakefile's traceback.
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0]
    assert "Failed validating" not in r.stdout + r.stderr and 'File "' not in r.stdout + r.stderr
    assert len((r.stdout + r.stderr).splitlines()) < 6
    assert not (workdir / "results").exists()


def test_a_manifest_row_the_schema_refuses_is_named_in_one_line(workdir):
    manifest = workdir / "data" / "manifest.tsv"
    manifest.write_text(manifest.read_text() + "big\tskimage:coins\tclean\t\t\tlarge\tnone\tnone\n")
    r = snakemake("-n", "--directory", workdir, "--configfile", write_config(workdir))
    assert r.returncode == 2
    assert "error: manifest data/manifest.tsv: row 'big', resize: 'large' does not match" in r.stderr
    assert "Failed validating" not in r.stdout + r.stderr and 'File "' not in r.stdout + r.stderr


def test_a_missing_manifest_image_is_named(workdir):
    manifest = workdir / "data" / "manifest.tsv"
    manifest.write_text(manifest.read_text() + "ghost\tghost.png\tclean\t\t\t\tnone\tnone\n")
    r = snakemake("-n", "--directory", workdir, "--configfile", write_config(workdir, images=["ghost"]))
    assert r.returncode != 0 and "ghost.png: file not found" in r.stdout + r.stderr


@pytest.mark.parametrize("device, gpu", [("cuda", True), ("cpu", False)])
def test_the_slurm_profile_dry_run_requests_a_gpu_for_fits_on_cuda_only(workdir, device, gpu):
    config = write_config(workdir, device=device)
    r = snakemake(
        "-n", "--profile", ROOT / "workflow" / "profiles" / "slurm", "--directory", workdir, "--configfile", config
    )
    assert r.returncode == 0, r.stdout + r.stderr
    fit_blocks = [b for b in r.stdout.split("\n\n") if "rule fit:" in b]
    assert fit_blocks and all(bool(re.search(r"resources:.*\bgpu=1", b)) == gpu for b in fit_blocks)


def test_on_a_gpu_the_seeds_of_a_fit_run_as_one_batched_job(workdir):
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    r = snakemake(
        "-n", "-p", "--directory", workdir, "--configfile", write_config(workdir, device="cuda", seeds=[0, 1, 2])
    )
    assert r.returncode == 0, r.stdout + r.stderr
    counts = job_counts(r.stdout)
    assert config["seeds"] == [0]  # one batched job per task, architecture and image
    assert counts["fit_seeds"] == expected_fits(config, workdir / config["manifest"]) and "fit" not in counts
    assert "--seeds 0 1 2" in r.stdout and "seed{seed}" in r.stdout
    # On a CPU, or with an observation per seed, one fit per job as before.
    for change in ({"device": "cpu"}, {"device": "cuda", "vary_observations": True}):
        r = snakemake("-n", "--directory", workdir, "--configfile", write_config(workdir, seeds=[0, 1, 2], **change))
        counts = job_counts(r.stdout)
        fits = expected_fits({**config, "seeds": [0, 1, 2]}, workdir / config["manifest"])
        assert counts["fit"] == fits and "fit_seeds" not in counts


def test_a_batched_job_runs_end_to_end_and_writes_every_seed(workdir):
    config = write_config(
        workdir,
        images=["astronaut"],
        archs=["skip"],
        seeds=[0, 1],
        batch_seeds=True,
        tasks={"denoise-s25": {"task": "denoise", "sigma": 25, "iterations": 6}},
    )
    targets = [f"results/fits/denoise-s25/skip/astronaut/seed{s}/summary.json" for s in (0, 1)]
    r = snakemake(*targets, "--cores", 2, "--directory", workdir, "--configfile", config)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert job_counts(r.stdout + r.stderr)["fit_seeds"] == 1
    summaries = [yaml.safe_load((workdir / t).read_text()) for t in targets]
    assert [s["seed"] for s in summaries] == [0, 1] and all(s["batched_fits"] == 2 for s in summaries)
    assert all((workdir / t).with_name("restored.png").exists() for t in targets)


def test_the_default_profile_dry_run_shows_fit_resources(workdir):
    r = snakemake(
        "-n",
        "--profile",
        ROOT / "workflow" / "profiles" / "default",
        "--directory",
        workdir,
        "--configfile",
        workdir / "config" / "test.yaml",
    )
    assert r.returncode == 0, r.stderr
    fit_blocks = [b for b in r.stdout.split("\n\n") if "rule fit:" in b]
    assert fit_blocks and all(re.search(r"mem_mb=\d+", b) and "runtime=10" in b for b in fit_blocks)


def fit_memory(stdout: str) -> dict[tuple[str, str], set[int]]:
    """mem_mb of every fit job in a dry run's output, by (architecture, image)."""
    found = {}
    for job in re.finditer(r"rule fit:.*?wildcards: ([^\n]*)\n\s*resources: ([^\n]*)", stdout, flags=re.S):
        wildcards = dict(kv.split("=", 1) for kv in job[1].split(", "))
        key = (wildcards["arch"], wildcards["image"])
        found.setdefault(key, set()).add(int(re.search(r"\bmem_mb=(\d+)", job[2])[1]))
    return found


def test_fit_jobs_ask_for_memory_by_image_size(workdir):
    manifest = workdir / "data" / "manifest.tsv"
    rows = manifest.read_text().splitlines()
    # Two sizes: astronaut prepared at 32×32, camera at 96×96 (no global resize in this config).
    rows = [r.replace("\t64\t", "\t96\t") if r.startswith("camera") else r.replace("\t64\t", "\t32\t") for r in rows]
    manifest.write_text("\n".join(rows) + "\n")
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    config.pop("resize")
    config["images"] = ["astronaut", "camera", "coffee-pair"]
    path = workdir / "config" / "sizes.yaml"
    path.write_text(yaml.safe_dump(config))
    r = snakemake("-n", "--directory", workdir, "--configfile", path)
    assert r.returncode == 0, r.stderr
    memory = fit_memory(r.stdout)
    for arch in yaml.safe_load(path.read_text())["archs"]:
        assert min(memory[arch, "camera"]) > max(memory[arch, "astronaut"])
    # A configured mem_mb overrides the estimate.
    config["resources"]["mem_mb"] = 1234
    path.write_text(yaml.safe_dump(config))
    r = snakemake("-n", "--directory", workdir, "--configfile", path)
    assert r.returncode == 0, r.stderr
    assert set().union(*fit_memory(r.stdout).values()) == {1234}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    work = scratch(tmp_path_factory.mktemp("run"))
    r = snakemake("--cores", 2, "--directory", work, "--configfile", work / "config" / "test.yaml")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work


def test_small_config_end_to_end_tables(finished_run):
    config = yaml.safe_load((finished_run / "config" / "test.yaml").read_text())
    runs = pd.read_csv(finished_run / "results" / "tables" / "runs.csv")
    assert len(runs) == expected_fits(config, finished_run / config["manifest"]) and (runs["status"] == "ok").all()
    for column in ("psnr_restored_png", "ssim_restored_png", "psnr_final", "oracle_psnr", "es-wmv_psnr"):
        assert runs[column].notna().all() and (runs[column].abs() < 100).all(), column
    assert runs["config_hash"].notna().all() and runs["git_commit"].notna().all()
    summary = pd.read_csv(finished_run / "results" / "tables" / "summary.csv")
    assert {
        "bicubic",
        "nearest",
        "tv",
        "nlm",
        "biharmonic",
        "jpeg",
        "noflash",
        "richardson_lucy",
        "unsupervised_wiener",
        "blurred",
        "anscombe_tv",
        "anscombe_nlm",
    } <= set(summary["method"])
    # Deblurring and Poisson rows, with the discrepancy rule's image (both observations are noisy).
    for task in ("deblur-gaussian1", "denoise-poisson10"):
        rows = summary[summary["task_label"] == task].set_index("method")
        assert (rows.loc[["DIP (discrepancy rule)"], "psnr_median"] > 0).all() and rows["psnr_mean"].notna().all(), task
    poisson = runs[runs["task_label"] == "denoise-poisson10"]
    assert (poisson["noise"] == "poisson").all() and (poisson["peak"] == 10).all()
    # CBM3D where the optional bm3d extra imports (CI installs it), and no row at all where it does not:
    # Gaussian denoising and JPEG (its artefacts removed at a level set by the quality).
    assert ("cbm3d" in set(summary["method"])) == cbm3d.available()
    assert set(summary.loc[summary["method"] == "cbm3d", "task_label"]) <= {
        "denoise-s25",
        "denoise-s25-holdout",
        "jpeg-q10",
    }
    # The flash task fits the synthetic pair only, with the paired network, scored against its reference.
    flash = runs[runs["task_label"] == "flash"]
    assert list(flash["image"]) == ["coffee-pair"] and list(flash["arch"]) == ["skip-flash"]
    assert flash["setting_input"].tolist() == ["image"] and flash["psnr_restored_png"].notna().all()
    assert "coffee-pair" not in set(runs.loc[runs["task_label"] != "flash", "image"])
    assert "## sr-x4" in (finished_run / "results" / "tables" / "summary.md").read_text()
    # The holdout rule is recorded where pixels are held out, and scored against the twin fit without holdout.
    stopping = pd.read_csv(finished_run / "results" / "tables" / "stopping.csv")
    held = stopping[stopping["task_label"] == "denoise-s25-holdout"]
    assert set(held["rule"]) >= {"holdout", "holdout-vs-full", "es-wmv"} and len(held) > 0
    assert held.loc[held["rule"] == "holdout-vs-full", "median_gap"].notna().all()
    assert "holdout" not in set(stopping.loc[stopping["task_label"] == "denoise-s25", "rule"].dropna())
    assert set(runs.loc[runs["task_label"] == "denoise-s25-holdout", "fit_label"]) == {"denoise-s25-holdout0.1"}


def test_small_config_end_to_end_paper_table(finished_run, tmp_path):
    config = yaml.safe_load((finished_run / "config" / "test.yaml").read_text())
    table = pd.read_csv(finished_run / "results" / "tables" / "paper_vs_ours.csv")
    per_image = table[table["image"] != "(mean)"]
    assert len(per_image) == expected_fits(config, finished_run / config["manifest"]) // len(config["seeds"])
    paper_cells = [f"{c}_{kind}" for c in ("paper_dip", "baseline") for kind in ("published", "derived")]
    assert per_image["ours_restored"].notna().all() and table[paper_cells].isna().all().all()  # not the paper's images
    # Gaussian denoising and JPEG (its artefacts removed at the quality's level): Poisson denoising's
    # baselines are Anscombe + TV/NLM, not CBM3D.
    denoising = table["task"].str.startswith("denoise") & ~table["task"].str.contains("poisson")
    with_cbm3d = denoising | table["task"].str.startswith("jpeg")
    assert table.loc[with_cbm3d, "ours_cbm3d"].notna().all() == cbm3d.available()
    assert table.loc[~with_cbm3d, "ours_cbm3d"].isna().all()
    assert set(table.loc[table["task"] == "sr-x4", "ours_convention"]) == {"Y, shave 4"}
    text = (finished_run / "results" / "tables" / "paper_vs_ours.md").read_text()
    assert "paper DIP (published)" in text and "paper DIP (derived)" in text
    assert (finished_run / "results" / "figures" / "paper_vs_ours.png").stat().st_size > 0
    # With paper numbers for these images: a difference per kind where the conventions agree, a label where
    # not (in a copy of the run, which the module's other tests still read).
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, symlinks=True)
    published = run / "data" / "published_fixture.csv"
    published.write_text(
        "task,dataset,image,method,role,psnr,convention,kind,source\n"
        "denoise-s25,-,astronaut,DIP,dip,20.0,RGB,published,stand-in paper\n"
        "denoise-s25,-,astronaut,DIP,dip,21.0,RGB,derived,stand-in result images\n"
        "denoise-s25,-,astronaut,NLM,baseline,19.0,RGB,derived,stand-in result images\n"
        "sr-x4,-,astronaut,DIP,dip,25.0,RGB,published,stand-in paper\n"
    )
    r = snakemake(
        "results/tables/paper_vs_ours.csv",
        "--cores",
        1,
        "--forcerun",
        "paper_table",
        "--directory",
        run,
        "--configfile",
        run / "config" / "test.yaml",
        "--config",
        f"published={published}",
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    table = pd.read_csv(run / "results" / "tables" / "paper_vs_ours.csv").set_index(["task", "image", "arch"])
    row = table.loc[("denoise-s25", "astronaut", "skip")]
    assert row["difference_published"] == pytest.approx(row["ours_restored"] - 20.0)
    assert row["difference_derived"] == pytest.approx(row["ours_restored"] - 21.0)
    assert row["baseline_derived_method"] == "NLM" and pd.isna(row["baseline_published"])
    sr = table.loc[("sr-x4", "astronaut", "skip")]
    assert pd.isna(sr["difference_published"]) and sr["note"].startswith("conventions differ")
    # A published table without a kind is named before any job.
    published.write_text("task,dataset,image,method,role,psnr,convention,source\n")
    r = snakemake(
        "-n", "--directory", run, "--configfile", run / "config" / "test.yaml", "--config", f"published={published}"
    )
    assert r.returncode != 0 and "no column 'kind'" in r.stdout + r.stderr


def test_a_paper_config_names_a_missing_data_root_before_any_job(workdir):
    r = snakemake(
        "-n",
        "--directory",
        workdir,
        "--configfile",
        workdir / "config" / "paper.yaml",
        env={k: v for k, v in ENV.items() if k != "DIP_DATA_ROOT"},
    )
    assert r.returncode != 0 and "manifest row 'baby'" in r.stdout + r.stderr and "data_root" in r.stdout + r.stderr
    root = workdir / "datasets"
    r = snakemake(
        "-n", "--directory", workdir, "--configfile", workdir / "config" / "paper.yaml", "--config", f"data_root={root}"
    )
    assert r.returncode != 0 and "no such folder" in r.stdout + r.stderr
    # With every file present, the whole paper grid plans: 19 images × 2 factors × 3 seeds.
    from PIL import Image

    for line in (workdir / "data" / "paper" / "sr.tsv").read_text().splitlines()[3:]:
        path = root / line.split("\t")[1].replace("{data_root}/", "")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64)).save(path)
    r = snakemake(
        "-n",
        "--directory",
        workdir,
        "--configfile",
        workdir / "config" / "paper.yaml",
        "--config",
        f"data_root={root}",
        "device=cpu",
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert job_counts(r.stdout)["fit"] == 19 * 2 * 3 and job_counts(r.stdout)["paper_table"] == 1


@pytest.mark.parametrize(
    "name, fits", [("paper_denoise", 9 * 2 * 3), ("paper_restoration", 11 * 3), ("paper_flash", 1 * 3)]
)
def test_every_paper_config_plans_its_fits_from_the_users_copy(workdir, name, fits):
    from PIL import Image

    config = workdir / "config" / f"{name}.yaml"
    r = snakemake(
        "-n", "--directory", workdir, "--configfile", config, env={k: v for k, v in ENV.items() if k != "DIP_DATA_ROOT"}
    )
    assert r.returncode != 0 and "data_root" in r.stdout + r.stderr
    root = workdir / "datasets"
    manifest = pd.read_csv(
        workdir / yaml.safe_load(config.read_text())["manifest"], sep="\t", comment="#", dtype=str
    ).fillna("")
    for column in ("path", "flash"):
        for value in manifest.get(column, []):
            if value:
                path = root / value.replace("{data_root}/", "")
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (64, 64)).save(path)
    r = snakemake("-n", "--directory", workdir, "--configfile", config, "--config", f"data_root={root}", "device=cpu")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert job_counts(r.stdout)["fit"] == fits


def test_small_config_end_to_end_figures_and_report(finished_run):
    figures = finished_run / "results" / "figures"
    config = yaml.safe_load((finished_run / "config" / "test.yaml").read_text())
    for task in config["tasks"]:
        for kind in ("comparison", "curves", "architectures"):
            assert (figures / f"{kind}_{task}.png").stat().st_size > 1000
            assert (figures / f"{task}_{kind}.pdf").exists()
    r = snakemake(
        "--directory",
        finished_run,
        "--configfile",
        finished_run / "config" / "test.yaml",
        "--report",
        finished_run / "results" / "report.html",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (finished_run / "results" / "report.html").stat().st_size > 10_000


def test_a_real_flash_pair_without_ground_truth_is_fitted_shown_and_left_unscored(workdir):
    # The bundled pair without its reference, as a real pair comes: no ground truth anywhere.
    pairs = workdir / "data" / "real_pairs.tsv"
    pairs.write_text("id\tpath\trole\tflash\ncup\tpairs/coffee_noflash.png\tpair\tpairs/coffee_flash.png\n")
    config = write_config(
        workdir,
        manifest=str(pairs),
        images=["cup"],
        published=None,
        tasks={"flash": {"task": "flash", "iterations": 8}},
    )
    text = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({k: v for k, v in text.items() if v is not None and k != "impedance"}))
    r = snakemake("--cores", 2, "--directory", workdir, "--configfile", config)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    runs = pd.read_csv(workdir / "results" / "tables" / "runs.csv")
    assert list(runs["status"]) == ["ok"] and list(runs["arch"]) == ["skip-flash"]
    assert "psnr_restored_png" not in runs and runs["es-wmv_iteration"].notna().all()  # stops kept, unscored
    assert not (workdir / "results" / "images" / "cup").exists()  # no ground truth was made up
    for kind in ("comparison", "curves", "architectures"):
        assert (workdir / "results" / "figures" / f"{kind}_flash.png").stat().st_size > 1000
    assert "## flash" in (workdir / "results" / "tables" / "paper_vs_ours.md").read_text()


def test_a_manifest_mask_is_a_declared_input_of_the_jobs_that_use_it(workdir):
    # A `mask: file` task degrades with the row's mask (rule prepare_mask) and fits with the observation's.
    from PIL import Image

    mask = np.full((512, 512), 255, np.uint8)
    mask[200:320, 150:400] = 0  # a hole over the astronaut's face and suit
    Image.fromarray(mask).save(workdir / "data" / "hole.png")
    manifest = workdir / "data" / "masked.tsv"
    manifest.write_text("id\tpath\tmask\nastro\tskimage:astronaut\thole.png\ncam\tskimage:camera\t\n")
    task = {"inpaint-file": {"task": "inpaint", "mask": "file", "iterations": 4}}
    config = write_config(
        workdir,
        manifest=str(manifest),
        images=["astro"],
        archs=["skip"],
        tasks=task,
        impedance={"image": "astro", "iterations": 5, "archs": ["skip"], "thresholds": [0.1]},
    )
    r = snakemake("--cores", 2, "--directory", workdir, "--configfile", config)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    prepared = np.asarray(Image.open(workdir / "results" / "images" / "astro" / "mask.png"))
    observed = np.asarray(
        Image.open(workdir / "results" / "observations" / "inpaint-file" / "astro" / "obs0" / "mask.png")
    )
    # The degradation binarises the resized mask (bright = known).
    assert prepared.shape == (32, 32) and np.array_equal(prepared > 127, observed > 127)
    assert 0.05 < (observed == 0).mean() < 0.5
    assert pd.read_csv(workdir / "results" / "tables" / "runs.csv")["status"].tolist() == ["ok"]
    # A changed mask reruns what depends on it, and only that.
    mask[200:320, 150:400], mask[40:120, 40:200] = 255, 0
    Image.fromarray(mask).save(workdir / "data" / "hole.png")
    r = snakemake("-n", "--directory", workdir, "--configfile", config)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert {"prepare_mask", "degrade", "fit"} <= set(job_counts(r.stdout)) and "prepare" not in job_counts(r.stdout)
    # An image without a mask in such a task is named before any job.
    r = snakemake(
        "-n",
        "--directory",
        workdir,
        "--configfile",
        write_config(workdir, manifest=str(manifest), images=["astro", "cam"], archs=["skip"], tasks=task),
    )
    assert r.returncode != 0 and "manifest row 'cam' has no mask" in r.stdout + r.stderr


def test_a_flash_task_without_pairs_in_the_manifest_is_named(workdir):
    config = write_config(workdir, images=["astronaut"], tasks={"flash": {"task": "flash", "iterations": 8}})
    r = snakemake("-n", "--directory", workdir, "--configfile", config)
    assert r.returncode != 0 and "tasks: 'flash' has no images" in r.stdout + r.stderr


def test_rerunning_a_finished_run_has_nothing_to_do(finished_run):
    r = snakemake("-n", "--directory", finished_run, "--configfile", finished_run / "config" / "test.yaml")
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr


def test_impedance_target(finished_run):
    r = snakemake(
        "impedance", "--cores", 2, "--directory", finished_run, "--configfile", finished_run / "config" / "test.yaml"
    )
    assert r.returncode == 0, r.stderr[-3000:]
    table = (finished_run / "results" / "tables" / "impedance.md").read_text()
    assert "shuffled pixels" in table and (finished_run / "results" / "figures" / "impedance.png").exists()


def fake_slurm(tmp_path) -> tuple[dict, Path]:
    """The environment that puts the stand-in SLURM commands (tests/fake_slurm/) first, and their state folder."""
    state = tmp_path / "slurm"
    state.mkdir()
    return {
        **ENV,
        "PATH": f"{ROOT / 'tests' / 'fake_slurm'}{os.pathsep}{ENV['PATH']}",
        "FAKE_SLURM_DIR": str(state),
    }, state


def test_the_slurm_profile_submits_only_fits_to_stand_in_slurm_commands(workdir, tmp_path):
    # The stand-ins keep what one real node cannot show: the submission line as a whole, with a partition of
    # the cluster's choosing, and more threads than this machine has. tests/test_slurm.py runs the profile
    # on a real cluster.
    env, state = fake_slurm(tmp_path)
    threads = os.cpu_count() + 1
    config = write_config(
        workdir,
        images=["astronaut"],
        archs=["skip"],
        seeds=[0],
        threads_per_fit=threads,
        tasks={"denoise-s25": {"task": "denoise", "sigma": 25, "iterations": 3}},
    )
    target = "results/fits/denoise-s25/skip/astronaut/seed0/summary.json"
    r = snakemake(
        target,
        "--profile",
        ROOT / "workflow" / "profiles" / "slurm",
        "--workflow-profile",
        "none",
        "--slurm-init-seconds-before-status-checks",
        3,  # the plugin's first status check after 3 s, not its default 40
        "--directory",
        workdir,
        "--configfile",
        config,
        env=env,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (workdir / target).exists()
    submissions = (state / "sbatch.log").read_text().splitlines()
    # prepare and degrade ran here (localrules): only the fit was submitted.
    assert len(submissions) == 1 and "rule_fit" in submissions[0], submissions
    fit = submissions[0]
    # A CPU config's fit asks for no GPU, its config's threads (not capped at this host's cores) and runtime
    # (minutes), and the cluster's default partition (the stand-in sinfo's `gpu*`).
    assert "--gpus" not in fit and "gres" not in fit and f"--cpus-per-task={threads}" in fit and "-t 10" in fit
    assert "-p gpu" in fit
    # The fit's own memory estimate reaches sbatch (the profile sets no mem_mb of its own for fits).
    from dip.memory import job_memory_mb

    test = yaml.safe_load(config.read_text())
    expected = job_memory_mb("skip", 32, 32, 3, device=test["device"], window=test["stopping"]["window"])["mem_mb"]
    assert int(re.search(r"--mem[ =](\d+)", fit)[1]) == expected


@pytest.mark.parametrize(
    "change, message",
    [
        ({"device": "auto"}, "device: auto is decided on this submitting host"),
        ({"threads_per_fit": os.cpu_count() + 1}, "caps every job's threads; add --workflow-profile none"),
    ],
)
def test_a_cluster_run_refuses_what_this_host_would_decide_for_its_jobs(workdir, tmp_path, change, message):
    # Without --workflow-profile none, workflow/profiles/default's `cores: all` (this host's cores) is loaded.
    env, state = fake_slurm(tmp_path)
    r = snakemake(
        "--profile",
        ROOT / "workflow" / "profiles" / "slurm",
        "--directory",
        workdir,
        "--configfile",
        write_config(workdir, **change),
        env=env,
    )
    assert r.returncode != 0 and message in r.stdout + r.stderr
    assert not (workdir / "results").exists() and not (state / "sbatch.log").exists()


def test_the_config_schema_lists_what_the_package_has():
    """The schema's lists equal the registries' names, both ways: a task, mask kind, noise model or
    architecture added to the package and not to the schema (or the other way) fails here."""
    from dip.presets import ARCHITECTURES, PAIRED_ARCHITECTURES
    from dip.tasks import MASKS, NOISES, PAIRED, PARAMETERS, TASKS

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    properties = schema["properties"]["tasks"]["additionalProperties"]["properties"]
    task = properties["task"]["enum"]
    assert task == list(TASKS) and set(PAIRED) <= set(TASKS)
    assert properties["mask"]["enum"] == list(MASKS) and properties["noise"]["enum"] == list(NOISES)
    # Every task parameter is a config key (dip.tasks.Task.from_spec reads the entry).
    assert set(PARAMETERS) <= set(properties)
    archs = schema["properties"]["archs"]["items"]["enum"]
    # Networks fed an image of the user's (flash/no-flash) belong to the paired tasks, not to the grid.
    assert set(archs) == set(ARCHITECTURES) - set(PAIRED_ARCHITECTURES) and PAIRED_ARCHITECTURES
    assert all(ARCHITECTURES[a]["settings"]["input"] == "image" for a in PAIRED_ARCHITECTURES)


def test_the_config_readme_lists_the_registries_names():
    from dip.presets import ARCHITECTURES, PAIRED_ARCHITECTURES
    from dip.tasks import TASKS

    rows = {
        line.split("|")[1].strip(): line.split("|")[2]
        for line in (ROOT / "config" / "README.md").read_text().splitlines()
        if line.startswith("| `")
    }
    archs = re.findall(r"`([^`]+)`", rows["`archs`"])
    assert archs == ["dip.presets.ARCHITECTURES", *(a for a in ARCHITECTURES if a not in PAIRED_ARCHITECTURES)]
    tasks = re.search(r"`task` \(([^)]*)\)", rows["`tasks.<label>`"])[1]
    assert re.findall(r"`([^`]+)`", tasks) == list(TASKS)


def test_the_config_schema_asks_of_each_task_what_the_task_table_does():
    """A configured task degrades a clean image (or fits a flash pair): the schema requires what
    dip.tasks.OPTIONS requires with --image and forbids ({not: {}}) the parameters the task does not take."""
    from dip.tasks import OPTIONS

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    task_schema = schema["properties"]["tasks"]["additionalProperties"]
    # The config's task parameters: `mask` is the kind (drop/text/box/file), the CLI's --drop/--text/--box/--mask;
    # a PSF file (--psf) is the command line's only.
    parameters = {"sigma", "factor", "mask", "drop", "quality", "blur", "noise", "peak"}
    assert parameters <= set(task_schema["properties"])
    as_config = {
        "sigma": "sigma",
        "factor": "factor",
        "quality": "quality",
        "mask": "mask",
        "drop": "drop",
        "text": "mask",
        "box": "mask",
        "flash": None,
        "blur": "blur",
        "psf": None,
        "noise": "noise",
        "peak": "peak",
    }
    conditions = {
        c["if"]["properties"]["task"]["const"]: c["then"]
        for c in task_schema["allOf"]
        if set(c["if"]["properties"]) == {"task"}
    }
    for name, row in OPTIONS.items():
        then = conditions.get(name, {})
        # A requirement met by either of two config parameters is the schema's anyOf of the two.
        # (--mask/--drop/--text/--box all say the config's `mask`, the kind.)
        alternatives = [
            {"mask"} if r.startswith("mask|") else {as_config[o] for o in r.split("|")} - {None}
            for r in row.with_image or ()
        ]
        required = {next(iter(a)) for a in alternatives if len(a) == 1}
        either = [a for a in alternatives if len(a) > 1]
        assert set(then.get("required", [])) == required, name
        assert ([{c["required"][0] for c in then["anyOf"]}] if "anyOf" in then else []) == either, name
        takes = {as_config[o] for o in row.takes} - {None}
        forbidden = {k for k, v in then.get("properties", {}).items() if v == {"not": {}}}
        assert forbidden == parameters - takes, name
    assert task_schema["properties"]["factor"] == {"type": "integer", "minimum": 2}


def test_a_sure_ensemble_or_red_task_plans_its_own_fits_with_the_flags(workdir):
    """`loss: sure`, `ensemble: K` and `red_weight: λ` are task entries like any other (their own rows in
    runs.csv and the tables): their fits get --loss sure / --ensemble K / --red-weight λ, a SURE task skips the deep decoder (its input is
    small, SURE's is the observation), and a SURE task other than denoising is refused before any job."""
    tasks = {
        "denoise-s25": {"task": "denoise", "sigma": 25, "iterations": 5},
        "denoise-s25-sure": {"task": "denoise", "sigma": 25, "iterations": 5, "loss": "sure"},
        "denoise-s25-ens2": {"task": "denoise", "sigma": 25, "iterations": 5, "ensemble": 2},
        "denoise-s25-red": {"task": "denoise", "sigma": 25, "iterations": 5, "red_weight": 0.5},
    }
    config = write_config(workdir, images=["astronaut"], archs=["skip", "deep_decoder"], tasks=tasks)
    r = snakemake("-n", "-p", "--directory", workdir, "--configfile", config)
    assert r.returncode == 0, r.stdout + r.stderr
    fits = [line for line in r.stdout.splitlines() if "dip fit " in line]
    sure = [f for f in fits if "/denoise-s25-sure/" in f]
    ensemble = [f for f in fits if "/denoise-s25-ens2/" in f]
    plain = [f for f in fits if "/denoise-s25/" in f]
    red = [f for f in fits if "/denoise-s25-red/" in f]
    assert len(red) == 2 and all("--red-weight 0.5" in f for f in red)
    assert not any("--red-weight" in f for f in plain + sure + ensemble)
    assert len(sure) == 1 and "--loss sure" in sure[0] and "/skip/" in sure[0]
    assert len(ensemble) == 2 and all("--ensemble 2" in f and "--loss" not in f for f in ensemble)
    assert len(plain) == 2 and not any("--loss" in f or "--ensemble" in f for f in plain)
    bad = write_config(workdir, tasks={"sr-sure": {"task": "sr", "factor": 4, "iterations": 5, "loss": "sure"}})
    r = snakemake("-n", "--directory", workdir, "--configfile", bad)
    assert r.returncode != 0 and "tasks: 'sr-sure': applies to denoising" in r.stdout + r.stderr
    negative = write_config(
        workdir, tasks={"denoise-red": {"task": "denoise", "sigma": 25, "iterations": 5, "red_weight": -1}}
    )
    r = snakemake("-n", "--directory", workdir, "--configfile", negative)
    assert r.returncode != 0 and "config: tasks.denoise-red.red_weight: -1 is less than" in r.stdout + r.stderr


def test_a_config_of_a_manifest_and_tasks_plans_with_the_schemas_defaults(workdir):
    # Every other key has a default in the schema (device auto, seed 0, skip, window 100, SSIM every 100,
    # 60 minutes a fit): a --configfile replaces config/config.yaml, so it must not need them.
    path = workdir / "config" / "minimal.yaml"
    path.write_text(
        yaml.safe_dump(
            {"manifest": "data/manifest.tsv", "tasks": {"d": {"task": "denoise", "sigma": 25, "iterations": 30}}}
        )
    )
    r = snakemake("-n", "-p", "--directory", workdir, "--configfile", path)
    assert r.returncode == 0, r.stderr
    fits = [line for line in r.stdout.splitlines() if "dip fit" in line]
    assert fits and all("--seed 0" in f and "--arch skip" in f and "--window 100" in f for f in fits), fits[:1]
    assert "--ssim-every 100" in fits[0]


def test_seeds_given_on_the_command_line_are_integers(workdir):
    # Snakemake hands `--config seeds=[0,1]` over as strings; the schema asks for integers.
    r = snakemake(
        "-n", "--directory", workdir, "--configfile", workdir / "config" / "test.yaml", "--config", "seeds=[0,1]"
    )
    assert r.returncode == 0, r.stderr
    assert (
        job_counts(r.stdout)["fit"]
        == 2
        * job_counts(snakemake("-n", "--directory", workdir, "--configfile", workdir / "config" / "test.yaml").stdout)[
            "fit"
        ]
    )
