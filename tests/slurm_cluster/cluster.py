"""A real single-node SLURM cluster on this machine, for the profile's end-to-end tests and CI.

    python3 tests/slurm_cluster/cluster.py start STATE_DIR [--gpus N]   # prints `export SLURM_CONF=...`
    python3 tests/slurm_cluster/cluster.py stop STATE_DIR

Needs Debian's `slurmctld slurmd slurm-client munge` (SLURM 22.05) and root. Everything lives in STATE_DIR:
slurm.conf (the node as `slurmd -C` describes this machine, one partition, cons_tres, no accounting
database, as on many small lab clusters), gres.conf (N stand-in GPUs backed by dummy character devices, so
that `--gpus` jobs are scheduled on a machine without one), a fresh munge key, the daemons' logs and `pids`
(one `name pid` line per daemon); the ports are free ones picked at start. While the cluster runs,
/etc/slurm/slurm.conf links to its slurm.conf (so one cluster per machine). `stop` cancels the cluster's
jobs, stops the daemons by their recorded PIDs and removes the link. Standard library only: CI runs it with
the system's python3 before any virtual environment exists.
"""

import argparse
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
# Where SLURM's commands look for the configuration without SLURM_CONF. The executor plugin runs each job
# through `srun` with the job's SLURM_* variables removed (SLURM_CONF with them), so a job finds its cluster
# only here, as on a real cluster's nodes: the link points into the state folder while the cluster runs.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
PARTITION = "debug"
# squeue answers for a finished job this long; the executor plugin checks at most every 180 s and takes a job
# that squeue no longer lists for one still running, so status by squeue needs MinJobAge above that (SLURM's
# default is 300 s).
MIN_JOB_AGE = 300


class ClusterError(RuntimeError):
    """The cluster could not be started; the message carries the daemons' logs."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line() -> str:
    """This machine as slurmd sees it: `NodeName=... CPUs=... RealMemory=...` (the UpTime line dropped)."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    return next(line for line in out.splitlines() if line.startswith("NodeName="))


def missing_commands() -> list[str]:
    """The daemons and client commands this machine lacks."""
    return [name for name in (*DAEMONS, "sbatch", "sinfo", "scontrol") if shutil.which(name) is None]


def write_config(state: Path, gpus: int) -> Path:
    node = _node_line()
    name = node.split()[0].split("=", 1)[1]
    munge = state / "munge"
    gres = ""
    if gpus:
        devices = [state / "gpu" / f"gpu{i}" for i in range(gpus)]
        devices[0].parent.mkdir(exist_ok=True)
        for device in devices:
            # Character devices (those of /dev/null: harmless to open) as SLURM wants; it then binds each job
            # to its own (CUDA_VISIBLE_DEVICES). Where mknod is not allowed, plain files still let SLURM
            # count and schedule the GPUs.
            try:
                os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            except OSError:
                device.touch()
        (state / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName={name} Name=gpu File={state}/gpu/gpu[0-{gpus - 1}]\n"
        )
        gres = f" Gres=gpu:{gpus}"
    conf = state / "slurm.conf"
    conf.write_text(f"""\
ClusterName=dip-test
SlurmctldHost={name}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge}/munge.socket
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups, no accounting database, no job accounting: what a container and a small lab cluster have.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge={MIN_JOB_AGE}
ReturnToService=2
KillWait=10
GresTypes=gpu
{node} NodeAddr=127.0.0.1{gres} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def _logs(state: Path) -> str:
    parts = []
    for log in ("munged.log", "slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"):
        path = state / log
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-20:]
            parts.append(f"--- {path} (last lines)\n" + "\n".join(tail))
    return "\n".join(parts)


def _spawn(state: Path, name: str, args: list[str], env: dict) -> int:
    """Starts a daemon in the foreground of a session of its own (it outlives this script) and records its PID."""
    out = open(state / f"{name}.out", "w")
    proc = subprocess.Popen(
        args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
    )
    with open(state / "pids", "a") as pids:
        pids.write(f"{name} {proc.pid}\n")
    return proc.pid


def _wait(what: str, ready, timeout: float, state: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.5)
    raise ClusterError(f"SLURM cluster in {state}: {what} not within {timeout:.0f} s\n{_logs(state)}")


def _run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=30)


def start(state: Path, gpus: int = 4, timeout: float = 60) -> dict[str, str]:
    """Starts munged, slurmctld and slurmd with their state in `state` (created; must be empty) and waits
    until the node is idle. Returns the environment variables a client needs (SLURM_CONF).

    :raises ClusterError: a command is missing, not root, or a daemon did not come up (with its log's tail).
    """
    if missing := missing_commands():
        raise ClusterError(
            f"SLURM cluster: {', '.join(missing)} not installed (apt-get install slurmctld slurmd slurm-client munge)"
        )
    if os.geteuid() != 0:
        raise ClusterError("SLURM cluster: must run as root (the daemons and the jobs run as root)")
    state = state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    if any(state.iterdir()):
        raise ClusterError(f"SLURM cluster: {state} is not empty (a cluster of an earlier run? stop it first)")
    # munged refuses a socket directory that others could not reach, and a key readable by others.
    state.chmod(0o755)
    for sub in ("munge", "ctld", "spool"):
        (state / sub).mkdir(mode=0o755)
    key = state / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
        raise ClusterError(
            f"SLURM cluster: {SYSTEM_CONF} exists (-> {SYSTEM_CONF.resolve()}): another cluster "
            "runs on this machine, or one was not stopped (cluster.py stop ITS_STATE_DIR)"
        )
    conf = write_config(state, gpus)
    SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SYSTEM_CONF.symlink_to(conf)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    munge = state / "munge"
    _spawn(
        state,
        "munged",
        [
            "munged",
            "--foreground",
            "--force",
            f"--key-file={key}",
            f"--socket={munge}/munge.socket",
            f"--pid-file={munge}/munged.pid",
            f"--log-file={state}/munged.log",
            f"--seed-file={munge}/munged.seed",
        ],
        env,
    )
    _wait("munged's socket", (munge / "munge.socket").exists, timeout, state)
    _spawn(state, "slurmctld", ["slurmctld", "-D", "-f", str(conf)], env)
    _wait("slurmctld answering", lambda: _run(["scontrol", "ping"], env).stdout.count("UP") >= 1, timeout, state)
    _spawn(state, "slurmd", ["slurmd", "-D", "-f", str(conf)], env)

    def idle():
        states = _run(["sinfo", "-h", "-N", "-o", "%t"], env).stdout.split()
        return bool(states) and all(s == "idle" for s in states)

    _wait("the node idle in sinfo", idle, timeout, state)
    return {"SLURM_CONF": str(conf)}


def _pids(state: Path) -> list[tuple[str, int]]:
    path = state / "pids"
    if not path.exists():
        return []
    return [(name, int(pid)) for name, pid in (line.split() for line in path.read_text().splitlines())]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (a child of this process not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def stop(state: Path, timeout: float = 30) -> None:
    """Cancels the cluster's jobs, then stops its daemons by their recorded PIDs (SIGTERM, then SIGKILL)."""
    state = state.resolve()
    conf = state / "slurm.conf"
    pids = _pids(state)
    if conf.exists() and any(name == "slurmctld" and _alive(pid) for name, pid in pids):
        env = {**os.environ, "SLURM_CONF": str(conf)}
        try:
            jobs = _run(["squeue", "-h", "-o", "%i"], env).stdout.split()
            if jobs:
                _run(["scancel", *jobs], env)
                deadline = time.monotonic() + timeout
                while (
                    _run(
                        ["squeue", "-h", "-t", "PENDING,RUNNING,COMPLETING,SUSPENDED,CONFIGURING", "-o", "%i"], env
                    ).stdout.split()
                    and time.monotonic() < deadline
                ):
                    time.sleep(1)
        except (subprocess.SubprocessError, OSError) as err:
            print(f"stop: could not cancel the cluster's jobs: {err}", file=sys.stderr)
    # slurmd first, munged last: the others authenticate through it while they shut down.
    for name in ("slurmd", "slurmctld", "munged"):
        for _, pid in [p for p in pids if p[0] == name]:
            if _alive(pid):
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
    (state / "pids").unlink(missing_ok=True)
    if SYSTEM_CONF.is_symlink() and SYSTEM_CONF.resolve() == conf:
        SYSTEM_CONF.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("state", type=Path, help="the cluster's folder (configuration, keys, logs, PIDs)")
    parser.add_argument("--gpus", type=int, default=4, help="stand-in GPUs the node advertises (default 4)")
    args = parser.parse_args()
    if args.action == "stop":
        stop(args.state)
        return 0
    try:
        env = start(args.state, gpus=args.gpus)
    except (ClusterError, subprocess.SubprocessError, OSError) as err:
        print(f"cluster.py: error: {err}", file=sys.stderr)
        stop(args.state)
        return 1
    for key, value in env.items():
        print(f"export {key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
