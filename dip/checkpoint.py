"""A fit's checkpoint belongs to that fit: its fingerprint (every setting, the seeds, and what the caller
knows determines the fit: the task, content hashes of the inputs, the architecture, ...) is recorded in
the checkpoint, and a checkpoint resumes only the fit whose fingerprint it holds."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch


def differences(expected: dict, recorded: dict) -> list[str]:
    """The fingerprint entries (`fingerprint`) whose values differ, one present on one side only too."""
    return [k for k in dict.fromkeys([*expected, *recorded]) if expected.get(k, ...) != recorded.get(k, ...)]


def what_differs(differs: list[str]) -> str:
    """'lr differs', 'sigma, observation differ': the words of a refusal naming fingerprint entries."""
    return f"{', '.join(differs)} {'differs' if len(differs) == 1 else 'differ'}"


class CheckpointMismatch(ValueError):
    """A checkpoint file belongs to another fit: `differs` names the fingerprint entries that differ."""

    def __init__(self, path: Path, differs: list[str], why: str | None = None):
        why = why or f"belongs to another fit ({what_differs(differs)})"
        super().__init__(f"{path}: {why}; delete it or choose another --out")
        self.path, self.differs = path, differs


def fingerprint(s, seeds_: list[int], extra: dict | None = None) -> dict:
    """What determines a fit, as a checkpoint records it: every setting, the network seeds and `extra`
    (what the caller knows: the task, a content hash of the observation, the architecture, ...)."""
    return {**asdict(s), "seeds": list(seeds_), **(extra or {})}


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same answer
        raise CheckpointMismatch(path, [], f"not a readable checkpoint ({type(err).__name__})") from None


def check_checkpoint(path: str | Path, expected: dict) -> bool:
    """Whether a checkpoint of this fit (fingerprint `expected`) exists at `path`; raises CheckpointMismatch
    naming what differs if the file there belongs to another fit (or to a dip that recorded none)."""
    path = Path(path)
    if not path.exists():
        return False
    recorded = read_checkpoint(path).get("fingerprint")
    if recorded is None:
        raise CheckpointMismatch(path, [], "belongs to a fit of an older dip, which recorded no fingerprint")
    differs = differences(expected, recorded)
    if differs:
        raise CheckpointMismatch(path, differs)
    return True
