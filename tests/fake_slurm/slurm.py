"""Stand-ins for SLURM's commands, enough for snakemake-executor-plugin-slurm to submit and finish jobs
on this machine: sbatch runs the job at once (synchronously) and records its flags; sacct and squeue report states.
State lives in $FAKE_SLURM_DIR: sbatch.log (one line of flags per submission) and jobs.tsv."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

STATE = Path(os.environ["FAKE_SLURM_DIR"])
JOBS = STATE / "jobs.tsv"


def jobs() -> list[list[str]]:
    return [line.split("\t") for line in JOBS.read_text().splitlines()] if JOBS.exists() else []


def option(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def sbatch(args: list[str]) -> int:
    with open(STATE / "sbatch.log", "a") as log:
        log.write(shlex.join(args) + "\n")
    jobid = str(1000 + len(jobs()))
    name = option(args, "--job-name", "-J") or "job"
    script = option(args, "--wrap")
    if script is None:
        script = sys.stdin.read()
    output = (option(args, "--output", "-o") or str(STATE / "slurm-%j.out")).replace("%j", jobid)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SLURM_JOB_ID": jobid,
        "SLURM_JOBID": jobid,
        "SLURM_CPUS_PER_TASK": option(args, "--cpus-per-task", "-c") or "1",
        "SLURM_JOB_NAME": name,
    }
    with open(output, "w") as out:
        rc = subprocess.run(["sh", "-c", script], env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    with open(JOBS, "a") as table:
        table.write(f"{jobid}\t{name}\t{'COMPLETED' if rc == 0 else 'FAILED'}\n")
    print(jobid)
    return 0


def sacct(args: list[str]) -> int:
    name, ids = option(args, "--name"), option(args, "-j", "--jobs")
    for jobid, jobname, state in jobs():
        if (name and jobname == name) or (ids and jobid in ids.split(",")):
            print(f"{jobid}|{state}" if name else "")
    return 0


def squeue(args: list[str]) -> int:
    name = option(args, "--name")
    for jobid, jobname, state in jobs():
        if jobname == name:
            print(f"{jobid}|{state}")
    return 0


def srun(args: list[str]) -> int:
    while args and args[0].startswith("-"):
        args = args[1:]
    os.execvp(args[0], args)


def main() -> int:
    command, args = sys.argv[1], sys.argv[2:]
    if command == "sbatch":
        return sbatch(args)
    if command == "sacct":
        return sacct(args)
    if command == "squeue":
        return squeue(args)
    if command == "srun":
        return srun(args)
    if command == "sinfo":
        print("PARTITION\ngpu*")
    elif command == "scontrol":
        print("MinJobAge               = 300 sec" if "config" in args else "PartitionName=gpu MaxTime=UNLIMITED")
    elif command in ("sacctmgr", "sshare"):
        print("test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
