"""Where a result came from: config hash, code commit, package versions, device."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def config_hash(config: dict) -> str:
    """First 12 hex digits of the SHA-256 of the config as canonical JSON."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def content_hash(tensor) -> str:
    """First 16 hex digits of the SHA-256 of a tensor's shape and float32 values: the same pixels, the same hash."""
    import numpy as np

    values = np.ascontiguousarray(tensor.detach().cpu().float().numpy())
    return hashlib.sha256(repr(values.shape).encode() + values.tobytes()).hexdigest()[:16]


def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        commit = out.stdout.strip()
        if out.returncode or not commit:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", str(here)], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("torch", "numpy", "scikit-image", "pandas", "pillow"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "missing"
    return versions


def device_name(device) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return device.type
