"""The SLURM profile on a real single-node SLURM cluster (tests/slurm_cluster/cluster.py): real sbatch,
squeue, scancel and requeue, no accounting database. CI (.ci/run) starts the cluster and exports SLURM_CONF;
elsewhere these tests start one of their own where SLURM is installed, run as root and no other cluster is
configured on the machine, and are skipped otherwise (never under CI=true: there they fail)."""

import os
import re
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest
import yaml
from slurm_cluster.cluster import SYSTEM_CONF, ClusterError, missing_commands, start, stop
from test_workflow import BIN, ENV, ROOT, scratch, snakemake, write_config

from dip.memory import job_memory_mb

pytestmark = pytest.mark.slurm

# The README's command; status checks every few seconds instead of the plugin's first 40 s (squeue stays the
# status command: the cluster's MinJobAge, 300 s, is far above 3 × 3 s).
PROFILE = (
    "--profile",
    ROOT / "workflow" / "profiles" / "slurm",
    "--workflow-profile",
    "none",
    "--slurm-init-seconds-before-status-checks",
    3,
)
SMALL = dict(
    images=["astronaut"],
    archs=["skip", "deep_decoder"],
    seeds=[0],
    threads_per_fit=1,
    tasks={
        "denoise-s25": {"task": "denoise", "sigma": 25, "iterations": 12},
        "sr-x4": {"task": "sr", "factor": 4, "iterations": 12},
    },
)
# Fits that are still running when cancelled: a checkpoint every 10 % (10 iterations) and at SIGTERM, and
# seconds of fitting left after the first (about 0.1 s an iteration on one core).
LONG_ITERATIONS = 100
LONG = dict(
    SMALL,
    archs=["skip"],
    tasks={name: {**spec, "iterations": LONG_ITERATIONS} for name, spec in SMALL["tasks"].items()},
)
# What every run here makes: the tables, from fits, scores and baselines (figures run on the submitting host
# like the tables do; tests/test_workflow.py makes them).
TABLES = "results/tables/runs.csv"
# Columns of the tables that differ between two runs of the same fits: times, and where a fit resumed.
VOLATILE = re.compile(r"seconds|resumed_from")


def _why_not_here() -> str | None:
    """Why this machine cannot start a test cluster (None: it can)."""
    if missing := missing_commands():
        return f"SLURM is not installed ({', '.join(missing)} missing)"
    if os.geteuid() != 0:
        return "the test cluster's daemons and jobs run as root"
    if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
        return f"{SYSTEM_CONF} configures a cluster of this machine's own: no test jobs go to it"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The environment of the test cluster's clients: CI's (SLURM_CONF of a cluster.py state folder), or one
    started for this module and stopped after it."""
    conf = os.environ.get("SLURM_CONF")
    if conf and (Path(conf).parent / "pids").exists():
        env = {**ENV, "SLURM_CONF": conf}
        nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], env=env, capture_output=True, text=True)
        assert nodes.returncode == 0 and nodes.stdout.split(), f"the cluster of {conf} does not answer: {nodes.stderr}"
        yield env
        return
    if why := _why_not_here():
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(f"no SLURM test cluster: {why}")
    state = tmp_path_factory.mktemp("slurm-cluster")
    try:
        env = {**ENV, **start(state)}
    except ClusterError as err:
        stop(state)
        pytest.fail(str(err))
    yield env
    stop(state)


def slurm(env, *args) -> str:
    r = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{args}: {r.stderr}"
    return r.stdout


def show_job(env, jobid: str) -> dict[str, str]:
    """`scontrol show job -d` as a dict (jobs stay listed for the cluster's MinJobAge after they end)."""
    record = slurm(env, "scontrol", "show", "job", "-d", "--oneliner", jobid)
    return dict(token.split("=", 1) for token in record.split() if "=" in token)


def submissions(output: str) -> list[tuple[str, str]]:
    """(SLURM job id, rule and wildcards) of every job Snakemake submitted, in order."""
    return [
        (m[1], m[2])
        for m in re.finditer(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/(\S+)/\d+\.log\)", output)
    ]


def megabytes(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([KMGT]?)", value).groups()
    return float(number) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2, "": 1}[unit]


def launch(work: Path, *args, env) -> subprocess.Popen:
    """Snakemake in the background, its output in work/snakemake.out (read when it has ended)."""
    out = open(work / "snakemake.out", "w")
    return subprocess.Popen(
        [str(BIN / "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(work), *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def finish(proc: subprocess.Popen, work: Path, timeout: float = 900) -> str:
    proc.wait(timeout=timeout)
    return (work / "snakemake.out").read_text()


def assert_same_tables(run: Path, reference: Path) -> None:
    """Every table of `run` equals the reference run's, but for times and where fits resumed."""
    tables = sorted(p.name for p in (reference / "results" / "tables").iterdir())
    assert tables == sorted(p.name for p in (run / "results" / "tables").iterdir()) and "runs.csv" in tables
    for name in tables:
        ours, theirs = run / "results" / "tables" / name, reference / "results" / "tables" / name
        if name.endswith(".csv"):
            a, b = pd.read_csv(ours), pd.read_csv(theirs)
            keep = [c for c in b.columns if not VOLATILE.search(c)]
            # The bm3d library's CBM3D is not bit-reproducible from one run to the next (1e-6 relative
            # measured on one image): its numbers are compared to that; everything else exactly.
            bm3d_rows = b["method"].eq("cbm3d") if "method" in b else pd.Series(False, index=b.index)
            bm3d_cols = [c for c in keep if "cbm3d" in c]
            exact = [c for c in keep if c not in bm3d_cols]
            pd.testing.assert_frame_equal(
                a.loc[~bm3d_rows, exact], b.loc[~bm3d_rows, exact], check_exact=True, obj=name
            )
            pd.testing.assert_frame_equal(a[keep], b[keep], check_exact=False, rtol=1e-5, obj=name)
        else:
            assert ours.read_text() == theirs.read_text(), name


def local_run(tmp_path_factory, name: str, **config):
    """A local run of `config` started in the background (the reference a cluster run must equal)."""
    work = scratch(tmp_path_factory.mktemp(name))
    path = write_config(work, **config)
    return work, path, launch(work, TABLES, "--cores", 2, "--configfile", path, env=ENV)


class SmallRuns(NamedTuple):
    cluster: Path  # the cluster run's folder
    local: Path
    output: str  # the cluster run's Snakemake output
    grouped: Path  # two fits to a job
    grouped_output: str
    grouped_returncode: int


@pytest.fixture(scope="module")
def small_runs(cluster, tmp_path_factory) -> SmallRuns:
    """The small config through the cluster, the same config with two fits to a job (the profile's
    `group-components`, given on the command line) and the same config run locally, all three at the same
    time (the cluster runs wait on squeue most of their time)."""
    local, _, proc = local_run(tmp_path_factory, "local", **SMALL)
    grouped = scratch(tmp_path_factory.mktemp("grouped"))
    config = write_config(grouped, **SMALL)
    grouped_proc = launch(
        grouped, TABLES, *PROFILE, "--group-components", "fits=2", "--configfile", config, env=cluster
    )
    work = scratch(tmp_path_factory.mktemp("cluster"))
    start_time = time.monotonic()
    r = snakemake(TABLES, *PROFILE, "--directory", work, "--configfile", write_config(work, **SMALL), env=cluster)
    seconds = time.monotonic() - start_time
    assert finish(proc, local) and proc.returncode == 0, (local / "snakemake.out").read_text()[-3000:]
    grouped_output = finish(grouped_proc, grouped)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(f"cluster run of the small config: {seconds:.0f} s")
    return SmallRuns(work, local, r.stdout + r.stderr, grouped, grouped_output, grouped_proc.returncode)


def test_the_profile_submits_each_fit_with_its_own_resources_and_runs_the_rest_here(cluster, small_runs):
    work, output = small_runs.cluster, small_runs.output
    jobs = submissions(output)
    fits = len(SMALL["archs"]) * len(SMALL["tasks"])
    # Only the fits went through sbatch; preparing, degrading, scoring and the tables ran here.
    assert len(jobs) == fits and all(rule.startswith("rule_fit/") for _, rule in jobs), jobs
    assert re.search(r"^localrule degrade:", output, flags=re.M) and re.search(
        r"^localrule tables:", output, flags=re.M
    )
    config = yaml.safe_load((work / "config" / "bad.yaml").read_text())
    for jobid, rule in jobs:
        job = show_job(cluster, jobid)
        task, rest = rule.split("/")[1].split("_", 1)  # {task}_{arch}_{image}_{seed}; arch may hold "_"
        arch = rest.rsplit("_", 2)[0]
        assert job["JobState"] == "COMPLETED" and job["Comment"].startswith("rule_fit_wildcards_"), job
        # What the config and the fit's memory estimate ask for, as SLURM granted it.
        assert int(job["NumCPUs"]) == config["threads_per_fit"]
        expected = job_memory_mb(arch, 32, 32, 3, device="cpu", window=config["stopping"]["window"])["mem_mb"]
        assert megabytes(job["MinMemoryNode"]) == expected, (arch, job["MinMemoryNode"])
        assert job["TimeLimit"] == f"00:{config['resources']['runtime']:02d}:00"
        assert "gpu" not in " ".join(f"{k}={v}" for k, v in job.items() if k != "Comment"), job  # a CPU config
    # The two architectures' estimates differ, and each job got its own.
    assert len({show_job(cluster, jobid)["MinMemoryNode"] for jobid, _ in jobs}) == 2


def test_the_cluster_run_tables_equal_a_local_runs(small_runs):
    work, local = small_runs.cluster, small_runs.local
    assert_same_tables(work, local)
    runs = pd.read_csv(work / "results" / "tables" / "runs.csv")
    assert len(runs) == 4 and (runs["status"] == "ok").all() and runs["resumed_from"].isna().all()


def test_grouped_fits_go_several_to_a_job_and_give_the_same_tables(cluster, small_runs):
    # The profile's `group-components`, given on the command line: the four fits of the small config in two
    # jobs, each asking for the sum of its fits' CPUs and memory estimates and for both fits' runtimes.
    local, work, output = small_runs.local, small_runs.grouped, small_runs.grouped_output
    returncode = small_runs.grouped_returncode
    assert returncode == 0, output[-3000:]
    jobs = submissions(output)
    assert len(jobs) == 2 and all(rule.startswith("group_fit") for _, rule in jobs), jobs
    settings = yaml.safe_load((work / "config" / "bad.yaml").read_text())
    window = settings["stopping"]["window"]
    estimate = {arch: job_memory_mb(arch, 32, 32, 3, device="cpu", window=window)["mem_mb"] for arch in SMALL["archs"]}
    fits = [estimate[arch] for _ in SMALL["tasks"] for arch in SMALL["archs"]]
    pairs = {a + b for i, a in enumerate(fits) for b in fits[i + 1 :]}
    granted = []
    for jobid, _ in jobs:
        job = show_job(cluster, jobid)
        assert job["JobState"] == "COMPLETED" and int(job["NumCPUs"]) == 2 * settings["threads_per_fit"], job
        assert job["TimeLimit"] == f"00:{2 * settings['resources']['runtime']:02d}:00", job  # its fits in turn
        granted.append(megabytes(job["MinMemoryNode"]))
    # Two fits a job, whichever two: each job's memory is the sum of two fits' estimates, and all four are there.
    assert set(granted) <= pairs and sum(granted) == sum(fits), (granted, estimate)
    assert_same_tables(work, local)


def _fit_jobs(env) -> dict[str, tuple[str, str]]:
    """Task label → (job id, state) of the cluster's fit jobs that are queued or running."""
    jobs = {}
    for line in slurm(env, "squeue", "-h", "-o", "%i|%T|%k").splitlines():
        jobid, state, comment = line.split("|")
        if m := re.match(r"rule_fit_wildcards_([^_]+)_", comment):
            jobs[m[1]] = (jobid, state)
        elif comment.startswith("rule_fits"):  # a job of several fits (group "fits"): no wildcards in it
            jobs[f"job {jobid}"] = (jobid, state)
    return jobs


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The long config run locally, uninterrupted, started in the background: (its folder, its process)."""
    local, _, proc = local_run(tmp_path_factory, "uninterrupted", **LONG)
    return local, proc


def long_fits(work: Path) -> dict[str, Path]:
    return {task: work / "results" / "fits" / task / "skip" / "astronaut" / "seed0" for task in LONG["tasks"]}


def wait_for_running_fits(env, run, work: Path, jobs: int, fits: int = 2) -> dict[str, tuple[str, str]]:
    """The cluster's fit jobs, once `jobs` of them run and `fits` fits of the long config are past a
    checkpoint."""
    deadline = time.monotonic() + 600
    while True:
        running = _fit_jobs(env)
        if (
            len(running) == jobs
            and all(state == "RUNNING" for _, state in running.values())
            and sum((fit / "checkpoint.pt").exists() for fit in long_fits(work).values()) >= fits
        ):
            return running
        assert run.poll() is None and time.monotonic() < deadline, (work / "snakemake.out").read_text()[-3000:]
        time.sleep(0.5)


def assert_resumed_as_uninterrupted(work: Path, uninterrupted, resumed: set[str] | None = None) -> None:
    """The fits of `resumed` (default: every fit) resumed from their checkpoints, and every fit ended as the
    uninterrupted run's: histories, images, tables."""
    local, reference = uninterrupted
    for task, fit in long_fits(work).items():
        summary = yaml.safe_load((fit / "summary.json").read_text())
        if resumed is None or task in resumed:
            assert summary["resumed_from"] > 0, (task, summary["resumed_from"])
        assert summary["iterations"] == LONG_ITERATIONS and not (fit / "checkpoint.pt").exists(), task
    assert finish(reference, local) and reference.returncode == 0, (local / "snakemake.out").read_text()[-3000:]
    for task, fit in long_fits(work).items():
        twin = local / fit.relative_to(work)
        history, twin_history = (pd.read_csv(f / "history.csv").drop(columns="seconds") for f in (fit, twin))
        pd.testing.assert_frame_equal(history, twin_history, check_exact=True, obj=task)
        assert (fit / "restored.png").read_bytes() == (twin / "restored.png").read_bytes(), task
    assert_same_tables(work, local)


def test_a_cancelled_and_a_requeued_fit_resume_from_their_checkpoints(cluster, uninterrupted, tmp_path_factory):
    work = scratch(tmp_path_factory.mktemp("faults"))
    run = launch(work, TABLES, *PROFILE, "--configfile", write_config(work, **LONG), env=cluster)
    jobs = wait_for_running_fits(cluster, run, work, jobs=2)
    cancelled, requeued = jobs["denoise-s25"][0], jobs["sr-x4"][0]
    slurm(cluster, "scancel", cancelled)
    slurm(cluster, "scontrol", "requeue", requeued)
    # SLURM holds a requeued job back for two minutes (its BeginTime); let it start again at once.
    deadline = time.monotonic() + 600
    while show_job(cluster, requeued)["JobState"] != "PENDING":
        assert time.monotonic() < deadline, show_job(cluster, requeued)
        time.sleep(0.5)
    slurm(cluster, "scontrol", "update", f"JobId={requeued}", "StartTime=now")
    output = finish(run, work)
    assert run.returncode == 0, output[-3000:]
    # The cancelled fit failed, was submitted again (the profile's retries) and resumed; the requeued one
    # started again under its own job id and resumed.
    by_fit = {}
    for jobid, rule in submissions(output):
        by_fit.setdefault(rule.split("/")[1].split("_")[0], []).append(jobid)
    assert by_fit["denoise-s25"][0] == cancelled and len(by_fit["denoise-s25"]) == 2, by_fit
    assert f"SLURM-job '{cancelled}' failed, SLURM status is: 'CANCELLED'" in output
    assert by_fit["sr-x4"] == [requeued] and show_job(cluster, requeued)["Restarts"] == "1"
    assert show_job(cluster, requeued)["JobState"] == "COMPLETED"
    assert_resumed_as_uninterrupted(work, uninterrupted)


def test_a_cancelled_job_of_several_fits_resumes_its_fit(cluster, uninterrupted, tmp_path_factory):
    # Both long fits in one job (`--group-components fits=2`), whose fits run one after the other; cancelled
    # once the running one is past a checkpoint: the job is submitted again as a whole, that fit resumes from
    # its checkpoint, and both end as uninterrupted fits do.
    work = scratch(tmp_path_factory.mktemp("grouped-faults"))
    config = write_config(work, **LONG)
    run = launch(work, TABLES, *PROFILE, "--group-components", "fits=2", "--configfile", config, env=cluster)
    [(cancelled, _)] = wait_for_running_fits(cluster, run, work, jobs=1, fits=1).values()
    started = {task for task, fit in long_fits(work).items() if (fit / "checkpoint.pt").exists()}
    slurm(cluster, "scancel", cancelled)
    output = finish(run, work)
    assert run.returncode == 0, output[-3000:]
    jobs = submissions(output)
    assert len(jobs) == 2 and jobs[0][0] == cancelled and all(rule.startswith("group_fit") for _, rule in jobs), jobs
    assert_resumed_as_uninterrupted(work, uninterrupted, resumed=started)


def test_a_fit_that_fails_for_good_shows_its_log_in_snakemakes_error(cluster, tmp_path_factory):
    work = scratch(tmp_path_factory.mktemp("failing"))
    config = write_config(work, **dict(SMALL, archs=["skip"], tasks={"denoise-s25": SMALL["tasks"]["denoise-s25"]}))
    observed = "results/observations/denoise-s25/astronaut/obs0/observed.png"
    r = snakemake(observed, *PROFILE, "--directory", work, "--configfile", config, env=cluster)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (work / observed).write_bytes(b"not a PNG: the file was damaged after it was written")
    # No retries: a damaged input fails every attempt alike.
    r = snakemake(
        "results/fits/denoise-s25/skip/astronaut/seed0/summary.json",
        *PROFILE,
        "--retries",
        0,
        "--directory",
        work,
        "--configfile",
        config,
        env=cluster,
    )
    output = r.stdout + r.stderr
    assert r.returncode != 0
    [(jobid, rule)] = submissions(output)
    assert show_job(cluster, jobid)["JobState"] == "FAILED"
    log = (work / "logs" / "fit" / "denoise-s25" / "skip" / "astronaut" / "seed0.log").read_text().strip()
    last = log.splitlines()[-1]
    assert last.startswith("dip fit: error: ") and "observed.png" in last
    assert f"SLURM-job '{jobid}' failed" in output and last in output  # the log's last line, in the error


def test_a_node_with_several_gpus_runs_gpu_fits_side_by_side(cluster, tmp_path_factory):
    # No GPU here: the fits run on the CPU, yet each asks SLURM for one of the node's four stand-in GPUs, as
    # a `device: cuda` fit does (rule fit's gpu=1). Run as a user would forget to: with the default workflow
    # profile and its local GPU cap (gpu=1) loaded, which must not make the fits wait for one another.
    work = scratch(tmp_path_factory.mktemp("gpus"))
    config = write_config(work, **dict(SMALL, tasks={"denoise-s25": SMALL["tasks"]["denoise-s25"]}))
    targets = [f"results/fits/denoise-s25/{arch}/astronaut/seed0/summary.json" for arch in SMALL["archs"]]
    r = snakemake(
        *targets,
        "--profile",
        ROOT / "workflow" / "profiles" / "slurm",
        "--slurm-init-seconds-before-status-checks",
        3,
        "--set-resources",
        "fit:gpu=1",
        "--directory",
        work,
        "--configfile",
        config,
        env=cluster,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "workflow specific profile" in r.stderr  # workflow/profiles/default was loaded
    jobs = [show_job(cluster, jobid) for jobid, _ in submissions(r.stdout + r.stderr)]
    assert len(jobs) == 2 and all(job["JobState"] == "COMPLETED" for job in jobs)
    # Each job held one of the node's GPUs (SLURM never hands one GPU to two jobs) ...
    assert all(job["TresPerJob"] == "gres:gpu:1" and job["JOB_GRES"] == "gpu:1" for job in jobs), jobs
    # ... at the same time.
    (start_a, end_a), (start_b, end_b) = ((job["StartTime"], job["EndTime"]) for job in jobs)
    assert start_a < end_b and start_b < end_a, [(job["StartTime"], job["EndTime"]) for job in jobs]
