"""What a large image costs in each memory mode (docs/scale.md, "Large images measured"): a short `dip fit`
of one photograph, Gaussian noise σ = 25, in a fresh process per mode, timed per iteration and measured for
its peak resident memory (the process's high-water mark, `/usr/bin/time`'s "maximum resident set size"),
beside `dip.memory`'s estimate of the same fit (`dip.request.memory_plan`: the memory fields of `--dry-run`).

    python scripts/large_check.py --size 1024 --modes plain memory-saving tiled --iters 4
    python scripts/large_check.py --size 2048 --modes auto --iters 2      # what `dip fit` chooses itself

The photograph is scikit-image's `retina` (1411×1411, colour) resized to SIZE×SIZE (Lanczos): the time and
memory of a fit do not depend on the pixels, only on the size and channels. A few iterations measure
memory and speed only, never quality (docs/scale.md gives the tiles' cost in dB, measured on whole fits).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

# The options that ask for a memory mode ("auto": none, `dip fit` decides).
MODES = {
    "auto": [],
    "plain": [],
    "memory-saving": ["--memory-saving"],
    "tiled": None,  # --tile SIDE, from --tile
}


def photograph(size: int, folder: Path) -> Path:
    from PIL import Image
    from skimage import data

    path = folder / f"retina{size}.png"
    Image.fromarray(data.retina()).resize((size, size), Image.Resampling.LANCZOS).save(path)
    return path


def _dip(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["/usr/bin/time", "-f", "maxrss_kb=%M", sys.executable, "-m", "dip", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def measure(image: Path, mode: str, iters: int, threads: int, tile: int, folder: Path) -> dict:
    from dip.request import FitRequest, memory_plan

    options = ["--tile", str(tile)] if mode == "tiled" else MODES[mode]
    common = ["fit", "--task", "denoise", "--sigma", "25", "--image", str(image), "--threads", str(threads), *options]
    out = folder / mode
    asked = {"tile": tile} if mode == "tiled" else {"memory_saving": mode == "memory-saving"}
    plan = memory_plan(FitRequest(task="denoise", sigma=25, image=str(image), out=str(out), **asked))
    run = _dip([*common, "--iters", str(iters), "--stop", "fixed", "--no-progress", "--out", str(out)])
    row = {
        "size": image.stem,
        "mode": plan.get("memory_mode"),
        "why": plan.get("memory_mode_why"),
        "estimated_mb": plan.get("estimated_peak_mb"),
        "exit": run.returncode,
    }
    rss = [line for line in run.stderr.splitlines() if line.startswith("maxrss_kb=")]
    row["peak_mb"] = round(int(rss[-1].split("=")[1]) / 1024) if rss else None
    if run.returncode != 0:
        row["error"] = run.stderr.strip().splitlines()[-2:]
        return row
    summary = json.loads((out / "summary.json").read_text())
    row["tiles"] = len(summary["tiles"]) if summary.get("tiles") else None
    if summary.get("memory_mode") == "tiled":
        # The tiles' fits one after another: their seconds and iterations summed.
        row["s_per_iteration"] = summary["seconds"] / summary["iterations"]
    else:
        # The median step between iterations after the first (which pays for the first touch of memory).
        steps = pd.read_csv(out / "history.csv")["seconds"].diff().dropna()
        row["s_per_iteration"] = float(np.median(steps)) if len(steps) else summary["seconds"]
    row["wall_s"] = summary.get("wall_seconds")
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=["plain", "memory-saving", "tiled"])
    p.add_argument("--iters", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tile", type=int, default=544, help="the tile side of mode 'tiled'")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        image = photograph(a.size, Path(tmp))
        for mode in a.modes:
            print(json.dumps(measure(image, mode, a.iters, a.threads, a.tile, Path(tmp))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
