"""The Snakemake workflow: lint, dry runs, bad configs, profiles, and the small config end to end."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def snakemake(*args, cwd=ROOT, timeout=900, env=None):
    return subprocess.run([str(BIN / "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile"), *map(str, args)],
                          cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", output, flags=re.M)}


@pytest.fixture
def workdir(tmp_path):
    """A scratch copy of config/ and data/, so tests never touch the user's results/."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "data", tmp_path / "data")
    return tmp_path


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
    images = len(pd.read_csv(ROOT / config["manifest"], sep="\t"))
    r = snakemake("-n", "--directory", workdir, "--configfile", workdir / "config" / "config.yaml")
    assert r.returncode == 0, r.stderr
    expected = images * len(config["tasks"]) * len(config["archs"]) * len(config["seeds"])
    assert job_counts(r.stdout)["fit"] == expected


def test_a_config_file_replaces_the_default_config_instead_of_extending_it(workdir):
    config = write_config(workdir, tasks={"jpeg-q10": {"task": "jpeg", "quality": 10, "iterations": 5}})
    r = snakemake("-n", "--directory", workdir, "--configfile", config)
    assert r.returncode == 0, r.stderr
    test = yaml.safe_load(config.read_text())
    # Only the named task: config/config.yaml's denoise-s25 and sr-x4 are not merged in.
    assert job_counts(r.stdout)["fit"] == len(test["images"]) * len(test["archs"]) * len(test["seeds"])
    assert "denoise-s25" not in r.stdout and "jpeg-q10" in r.stdout


@pytest.mark.parametrize("change, message", [
    ({"manifest": "data/nowhere.tsv"}, "data/nowhere.tsv: manifest not found"),
    ({"tasks": {"blur": {"task": "deblur", "iterations": 5}}}, "deblur"),
    ({"archs": ["vgg"]}, "vgg"),
    ({"tasks": {"denoise-s25": {"task": "denoise", "sigma": -25, "iterations": 5}}}, "-25"),
])
def test_a_bad_config_fails_before_any_job_naming_the_entry(workdir, change, message):
    r = snakemake("--cores", 1, "--directory", workdir, "--configfile", write_config(workdir, **change))
    assert r.returncode != 0
    assert message in r.stdout + r.stderr
    assert not (workdir / "results").exists()


def test_a_missing_manifest_image_is_named(workdir):
    manifest = workdir / "data" / "manifest.tsv"
    manifest.write_text(manifest.read_text() + "ghost\tghost.png\tclean\t\t\t\tnone\tnone\n")
    r = snakemake("-n", "--directory", workdir, "--configfile", write_config(workdir, images=["ghost"]))
    assert r.returncode != 0 and "ghost.png: file not found" in r.stdout + r.stderr


def test_the_slurm_profile_dry_run_requests_a_gpu_for_fits(workdir):
    config = write_config(workdir, device="cuda")
    r = snakemake("-n", "--profile", ROOT / "workflow" / "profiles" / "slurm", "--directory", workdir,
                  "--configfile", config)
    assert r.returncode == 0, r.stdout + r.stderr
    fit_blocks = [b for b in r.stdout.split("\n\n") if "rule fit:" in b]
    assert fit_blocks and all(re.search(r"resources:.*gpu=1", b) for b in fit_blocks)


def test_the_default_profile_dry_run_shows_fit_resources(workdir):
    r = snakemake("-n", "--profile", ROOT / "workflow" / "profiles" / "default", "--directory", workdir,
                  "--configfile", workdir / "config" / "test.yaml")
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
    rows = [r.replace("\t64\t", "\t96\t") if r.startswith("camera") else r.replace("\t64\t", "\t32\t")
            for r in rows]
    manifest.write_text("\n".join(rows) + "\n")
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    config.pop("resize")
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
    work = tmp_path_factory.mktemp("run")
    shutil.copytree(ROOT / "config", work / "config")
    shutil.copytree(ROOT / "data", work / "data")
    r = snakemake("--cores", 2, "--directory", work, "--configfile", work / "config" / "test.yaml")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work


def test_small_config_end_to_end_tables(finished_run):
    config = yaml.safe_load((finished_run / "config" / "test.yaml").read_text())
    runs = pd.read_csv(finished_run / "results" / "tables" / "runs.csv")
    n = len(config["images"]) * len(config["tasks"]) * len(config["archs"]) * len(config["seeds"])
    assert len(runs) == n and (runs["status"] == "ok").all()
    for column in ("psnr_restored_png", "ssim_restored_png", "psnr_final", "oracle_psnr", "es-wmv_psnr"):
        assert runs[column].notna().all() and (runs[column].abs() < 100).all(), column
    assert runs["config_hash"].notna().all() and runs["git_commit"].notna().all()
    summary = pd.read_csv(finished_run / "results" / "tables" / "summary.csv")
    assert {"bicubic", "nearest", "tv", "nlm", "biharmonic", "jpeg"} <= set(summary["method"])
    assert "## sr-x4" in (finished_run / "results" / "tables" / "summary.md").read_text()


def test_small_config_end_to_end_figures_and_report(finished_run):
    figures = finished_run / "results" / "figures"
    config = yaml.safe_load((finished_run / "config" / "test.yaml").read_text())
    for task in config["tasks"]:
        for kind in ("comparison", "curves", "architectures"):
            assert (figures / f"{kind}_{task}.png").stat().st_size > 1000
            assert (figures / f"{task}_{kind}.pdf").exists()
    r = snakemake("--directory", finished_run, "--configfile", finished_run / "config" / "test.yaml",
                  "--report", finished_run / "results" / "report.html")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (finished_run / "results" / "report.html").stat().st_size > 10_000


def test_rerunning_a_finished_run_has_nothing_to_do(finished_run):
    r = snakemake("-n", "--directory", finished_run, "--configfile", finished_run / "config" / "test.yaml")
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr


def test_impedance_target(finished_run):
    r = snakemake("impedance", "--cores", 2, "--directory", finished_run, "--configfile",
                  finished_run / "config" / "test.yaml")
    assert r.returncode == 0, r.stderr[-3000:]
    table = (finished_run / "results" / "tables" / "impedance.md").read_text()
    assert "shuffled pixels" in table and (finished_run / "results" / "figures" / "impedance.png").exists()


def test_the_slurm_profile_submits_fits_with_a_gpu_to_stand_in_slurm_commands(workdir, tmp_path):
    state = tmp_path / "slurm"
    state.mkdir()
    config = write_config(workdir, images=["astronaut"], archs=["skip"], seeds=[0],
                          tasks={"denoise-s25": {"task": "denoise", "sigma": 25, "iterations": 3}})
    env = {**ENV, "PATH": f"{ROOT / 'tests' / 'fake_slurm'}{os.pathsep}{ENV['PATH']}", "FAKE_SLURM_DIR": str(state)}
    target = "results/fits/denoise-s25/skip/astronaut/seed0/summary.json"
    r = snakemake(target, "--profile", ROOT / "workflow" / "profiles" / "slurm", "--directory", workdir,
                  "--configfile", config, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (workdir / target).exists()
    submissions = (state / "sbatch.log").read_text().splitlines()
    fits = [line for line in submissions if "rule_fit" in line]
    others = [line for line in submissions if "rule_fit" not in line]
    assert len(fits) == 1 and others
    assert "--gpus=1" in fits[0] and "--cpus-per-task=4" in fits[0] and "-p gpu" in fits[0]
    assert all("--gpus" not in line for line in others)
    # The fit's own memory estimate reaches sbatch (the profile sets no mem_mb of its own for fits).
    from dip.memory import job_memory_mb

    test = yaml.safe_load(config.read_text())
    expected = job_memory_mb("skip", 32, 32, 3, device=test["device"], window=test["stopping"]["window"])["mem_mb"]
    assert int(re.search(r"--mem[ =](\d+)", fits[0])[1]) == expected
