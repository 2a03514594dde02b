"""An output folder belongs to one fit.

- While a fit runs, it holds its folder: `hold` takes an exclusive `fcntl.flock` lock on ``OUT/.dip.lock``
  (which names the fit's PID and command line). A second fit into a held folder is refused with one line
  naming the folder and the running fit, before it writes anything. The operating system releases the lock
  when the process ends, however it ends: a killed fit never leaves a folder locked (the file may remain;
  it is reused).
- A folder that holds another fit's checkpoint or results takes no other fit (`check`): the fingerprint
  recorded in the checkpoint or in summary.json (dip.checkpoint) must be this fit's.

Locks are advisory and local: they hold between processes of one machine (and on network file systems
that implement flock), not between machines that share a folder without it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dip.image_io import InputError

LOCK = ".dip.lock"


class FolderInUse(InputError):
    """The output folder is held by a running fit: `folder`, and `holder` ("PID 123: dip fit ...")."""

    def __init__(self, folder: Path, holder: str):
        super().__init__(f"{folder}: in use by a running fit ({holder}); wait for it to end or choose another --out")
        self.folder, self.holder = folder, holder


class FolderTaken(InputError):
    """The output folder holds another fit's `kind` ("checkpoint" or "results"); `differs` names the
    fingerprint entries that differ (empty: the other fit recorded none, or is of the other kind)."""

    def __init__(self, message: str, folder: Path, kind: str, differs: list[str]):
        super().__init__(message)
        self.folder, self.kind, self.differs = folder, kind, differs


def command_line() -> str:
    """This process's command line as a user typed it (``dip fit ...``; ``python -m dip`` reads as dip)."""
    argv = list(sys.argv) or ["python"]
    name = Path(argv[0]).name or "python"
    if name == "__main__.py":
        name = Path(argv[0]).parent.name
    return shlex.join([name, *argv[1:]])


@contextmanager
def hold(folders: Iterable[str | Path]) -> Iterator[None]:
    """Hold each folder (created if need be) for the duration of the block; on leaving it, remove the lock
    files and the folders this call created if they are left empty (a refused fit leaves nothing behind).

    :raises FolderInUse: a folder is held by another fit (or by another `hold` of this process); the
        folders taken so far are released first.
    :raises InputError: a folder cannot be created.
    """
    held: list[tuple[Path, int, list[Path]]] = []
    try:
        for folder in dict.fromkeys(Path(f) for f in folders):
            held.append(_lock(folder))
        yield
    finally:
        for folder, fd, created in reversed(held):
            (folder / LOCK).unlink(missing_ok=True)  # before the release: a waiter then finds no file to take
            os.close(fd)
            for made in reversed(created):  # deepest first; a folder holding anything stays
                try:
                    made.rmdir()
                except OSError:
                    break


def holder(folder: str | Path) -> str | None:
    """Who holds `folder` now ("PID 123: dip fit ..."), or None if no running fit does. Takes nothing."""
    path = Path(folder) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe(path)
    finally:
        os.close(fd)  # also releases the shared lock, if taken
    return None


def _lock(folder: Path) -> tuple[Path, int, list[Path]]:
    created = [p for p in reversed([folder, *folder.parents]) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"--out {folder}: cannot create the folder ({err.strerror or err})") from None
    path = folder / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderInUse(folder, _describe(path)) from None
        # The last holder may have removed the file between our open and our lock: lock the file on disk.
        try:
            ours = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            ours = False
        if ours:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n{command_line()}\n".encode())
    return folder, fd, created


def _describe(path: Path) -> str:
    """'PID 123: dip fit ...' from a lock file (its holder may not have written it yet)."""
    try:
        pid, _, command = path.read_text().partition("\n")
    except OSError:
        pid, command = "", ""
    return f"PID {pid}: {command.strip()}" if pid.strip().isdigit() else "PID unknown yet"


def check(checkpoint: Path, whole: dict, outs: list[Path], batch: bool) -> dict:
    """Refuse folders holding another fit's checkpoint or results, before anything is written.

    :param checkpoint: where this fit's checkpoint would be.
    :param whole: this fit's fingerprint (dip.checkpoint.fingerprint).
    :param outs: every output folder of the fit (one per network seed).
    :param batch: whether the fit is a batch of seeds (its checkpoint is checkpoint-batch.pt).
    :returns: the fingerprint as summary.json records it (values JSON cannot hold as their text).
    :raises FolderTaken: one line naming the file or folder and what differs.
    """
    from dip.checkpoint import CheckpointMismatch, check_checkpoint
    from dip.strict_json import decode, dumps

    recorded = decode(json.loads(dumps(whole, default=str)))

    try:
        check_checkpoint(checkpoint, whole)
    except CheckpointMismatch as err:
        raise FolderTaken(str(err), checkpoint.parent, "checkpoint", err.differs) from None
    for out in outs:
        _check_finished_fit(out / "summary.json", recorded)
        other = out / ("checkpoint-batch.pt" if not batch else "checkpoint.pt")
        if other.exists():  # the other kind of run's checkpoint: never this fit's
            kind = "a batch of seeds" if not batch else "one seed"
            raise FolderTaken(
                f"{other}: belongs to another fit ({kind}); delete it or choose another --out", out, "checkpoint", []
            )
    return recorded


def _check_finished_fit(summary: Path, recorded: dict) -> None:
    """A folder holding a finished fit's results takes only that fit again (the same fingerprint, as a
    checkpoint records it): another fit there is one line naming what differs, before anything is written."""
    if not summary.exists():
        return
    from dip.checkpoint import differences, what_differs
    from dip.record import read

    try:
        theirs = read(summary).fingerprint or None
    except (OSError, ValueError):
        theirs = None
    if theirs is None:
        raise FolderTaken(
            f"{summary.parent}: holds the results of another fit (its summary.json records no "
            f"fingerprint); delete them or choose another --out",
            summary.parent,
            "results",
            [],
        )
    differs = differences(recorded, theirs)
    if differs:
        raise FolderTaken(
            f"{summary.parent}: holds the results of another fit ({what_differs(differs)}); delete "
            f"them or choose another --out",
            summary.parent,
            "results",
            differs,
        )


def describe(checkpoint: Path, whole: dict, outs: list[Path], batch: bool) -> str:
    """What a dry run says of the output folders: in use, holding another fit's checkpoint or results
    (and what differs), holding this fit's checkpoint (it resumes) or results (replaced), or "free"."""
    for out in outs:
        running = holder(out)
        if running:
            return f"{out} is in use by a running fit ({running}); the fit would be refused"
    try:
        check(checkpoint, whole, outs, batch)
    except FolderTaken as err:
        what = {"checkpoint": "a checkpoint", "results": "the results"}[err.kind]
        differs = f" (differs in: {', '.join(err.differs)})" if err.differs else ""
        return f"{err.folder} holds {what} of another fit{differs}; the fit would be refused"
    if checkpoint.exists():
        return f"{checkpoint.parent} holds this fit's checkpoint; the fit resumes from it"
    done = [out for out in outs if (out / "summary.json").exists()]
    return f"{done[0]} holds this fit's results; the fit would replace them" if done else "free"
