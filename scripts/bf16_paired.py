"""Is bf16 a safe default on this CPU? A paired comparison of the default command with and without bf16.

For each (image, network seed) the same observation is restored twice by `dip fit` with the task's default
stopping rule, once in fp32 and once with `--bf16 --channels-last` (the pair whose speed `dip bench`
measures), one thread each. The difference of the returned images' PSNR (bf16 − fp32) is paired by
(image, seed): its mean and 95 % t-interval decide. The rule of `dip/speed.py`: bf16 may become the default
only where the whole interval lies within ±0.1 dB (and `dip bench` measures it faster).

    python scripts/bf16_paired.py run   --out results/bf16 [--seeds 0 1 2 3 4 5] [--size 64] [--jobs 2]
    python scripts/bf16_paired.py table --out results/bf16

Images: 64×64 crops at full resolution of scikit-image's coffee, rocket and immunohistochemistry (the crops of
scripts/defaults_check.py, which no config uses), Gaussian noise σ 25, observation seed 0. A fit whose
summary.json exists is not run again, so `run` resumes.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from defaults_check import IMAGES, image_file  # noqa: E402

PRECISIONS = {"fp32": ["--no-bf16", "--no-channels-last"], "bf16": ["--bf16", "--channels-last"]}


def fit_folder(out: Path, image: str, seed: int, precision: str) -> Path:
    return out / "fits" / f"{image}-seed{seed}-{precision}"


def run(args: argparse.Namespace) -> None:
    jobs = []
    for image in IMAGES:
        path = image_file(args.out, image, args.size)
        for seed in args.seeds:
            for precision, flags in PRECISIONS.items():
                folder = fit_folder(args.out, image, seed, precision)
                if (folder / "summary.json").exists():
                    continue
                jobs.append(
                    ["fit", "--task", "denoise", "--sigma", "25", "--image", str(path), "--seed", str(seed)]
                    + ["--observation-seed", "0", "--threads", "1", "--no-progress", "--out", str(folder), *flags]
                )

    def one(cmd: list[str]) -> None:
        print("dip", " ".join(cmd), flush=True)
        done = subprocess.run([sys.executable, "-m", "dip", *cmd], capture_output=True, text=True, check=False)
        if done.returncode:
            print(done.stderr, file=sys.stderr, flush=True)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(one, jobs))


def table(args: argparse.Namespace) -> None:
    rows = []
    for summary in sorted((args.out / "fits").glob("*/summary.json")):
        s = json.loads(summary.read_text())
        image, seed, precision = summary.parent.name.rsplit("-", 2)
        rows.append(
            {
                "image": image,
                "seed": int(seed.removeprefix("seed")),
                "precision": precision,
                "psnr": s["psnr_restored"],
                "iteration": s["returned_iteration"],
                "iterations": s["iterations"],
                "seconds_per_iteration": s["seconds"] / s["iterations"],
            }
        )
    df = pd.DataFrame(rows)
    wide = df.pivot_table(
        index=["image", "seed"],
        columns="precision",
        values=["psnr", "iteration", "iterations", "seconds_per_iteration"],
    )
    wide = wide.dropna()
    diff = wide["psnr"]["bf16"] - wide["psnr"]["fp32"]
    n = len(diff)
    mean = float(diff.mean())
    half = float(stats.t.ppf(0.975, n - 1) * diff.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    import torch

    from dip.speed import cpu_has_native_bf16

    cpuinfo = Path("/proc/cpuinfo")  # Linux; elsewhere the architecture's name
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    print(
        f"machine: {model or platform.machine()}, torch {torch.__version__}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_native_bf16()}; pairs: {n}"
    )
    shown = wide.copy()
    shown.columns = [f"{value} {precision}" for value, precision in shown.columns]
    print(shown.round(3).to_markdown())
    print()
    print(
        f"bf16 − fp32, returned image's PSNR: mean {mean:+.3f} dB, 95 % interval [{mean - half:+.3f}, {mean + half:+.3f}]"
    )
    print(f"per image (mean): {diff.groupby(level='image').mean().round(3).to_dict()}")
    ratio = wide["seconds_per_iteration"]["fp32"] / wide["seconds_per_iteration"]["bf16"]
    print(f"fp32 / bf16 seconds per iteration: median {float(ratio.median()):.2f} (the fits ran two at a time)")
    inside = abs(mean) + half <= 0.1
    print("decision:", "within ±0.1 dB: bf16 may be the default" if inside else "outside ±0.1 dB: fp32 stays")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["run", "table"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    main()
