"""How long the pipeline takes to plan: `dip bench --plan N [N ...]` writes a synthetic manifest of N
random 64×64 colour images in a temporary folder and times `snakemake -n` of the workflow on it (two
tasks, two architectures, three network seeds, the CPU), printing plan seconds against job count per N.

The workflow is planned as a user plans it: a fresh `snakemake` process, so the seconds include starting
Python, importing the package and reading the manifest (opening each image once), then Snakemake's DAG.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dip import strict_json

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
CONFIG = """manifest: {manifest}
device: cpu
threads_per_fit: 1
seeds: [0, 1, 2]
ssim_every: 100
stopping:
  window: 100
  patience: 200
tasks:
  denoise-s25: {{task: denoise, sigma: 25, iterations: 600}}
  sr-x4: {{task: sr, factor: 4, iterations: 600}}
archs: [skip, deep_decoder]
resources:
  runtime: 60
"""


def write_manifest(folder: Path, n: int, seed: int = 0) -> Path:
    """`n` random SIZE×SIZE colour PNGs in `folder` and the manifest listing them; returns its path."""
    from dip.seeds import stream_seed

    rng = np.random.default_rng(stream_seed(seed, "observation"))  # the pixels are an observation of nothing
    rows = ["id\tpath\trole"]
    for i in range(n):
        name = f"img{i:05d}"
        pixels = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{name}.png")
        rows.append(f"{name}\t{name}.png\tclean")
    manifest = folder / "manifest.tsv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def plan(n: int, snakemake: str | None = None) -> dict:
    """Time `snakemake -n` on a synthetic manifest of `n` images; returns n, jobs, fits and seconds.

    :raises RuntimeError: snakemake failed (its last lines in the message)."""
    snakemake = snakemake or str(Path(sys.executable).parent / "snakemake")
    with tempfile.TemporaryDirectory(prefix="dip-plan-") as tmp:
        folder = Path(tmp)
        manifest = write_manifest(folder, n)
        config = folder / "config.yaml"
        config.write_text(CONFIG.format(manifest=manifest))
        cmd = [snakemake, "-s", str(ROOT / "workflow" / "Snakefile"), "-n", "--configfile", str(config)]
        cmd += ["--workflow-profile", "none", "--quiet", "rules"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        out = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, env={**os.environ})
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds (user + system) of snakemake: what the plan costs whatever else shares the machine
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if out.returncode:
        raise RuntimeError(f"snakemake -n failed on {n} images: {(out.stdout + out.stderr)[-2000:]}")
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", out.stdout + out.stderr, flags=re.M)}
    return {
        "images": n,
        "jobs": counts.get("total", 0),
        "fits": counts.get("fit", 0),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dip bench --plan", description=__doc__.split("\n\n")[0])
    p.add_argument("--plan", type=int, nargs="+", required=True, metavar="N", help="numbers of images")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if any(n < 1 for n in args.plan):
        p.error("--plan: each N must be at least 1")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = [plan(n) for n in args.plan]
    if args.json:
        print(strict_json.dumps({"load_before": load, "rows": rows}))
        return 0
    print(f"load average before: {load:.2f}; plan s: wall clock, cpu s: snakemake's user + system seconds")
    print(f"{'images':>7} {'jobs':>7} {'fits':>6} {'plan s':>7} {'cpu s':>7} {'ms/job':>7}")
    for r in rows:
        print(
            f"{r['images']:>7} {r['jobs']:>7} {r['fits']:>6} {r['seconds']:>7.1f} {r['cpu_seconds']:>7.1f} {1000 * r['seconds'] / max(r['jobs'], 1):>7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
