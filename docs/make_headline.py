"""Make the documentation's headline picture, docs/_static/headline.png, from real fits.

Row 1: Gaussian denoising (σ = 25) of a 128×128 crop of scikit-image's astronaut photograph: noisy | DIP |
the best classical denoiser here (CBM3D where the optional bm3d extra is installed, otherwise non-local
means, both given the true σ) | clean. Row 2: super-resolution ×4 of the same crop: bicubic | DIP | clean.
PSNR in every title (SR: luminance, 4 pixels shaved, as the SR papers score); the figure is stamped with
the command that made it, the machine's torch and the fits' wall time.

    python docs/make_headline.py --threads 2          # several minutes on a 2-core CPU
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from skimage import data, transform

from dip import restore
from dip.image_io import atomic_write, to_array, to_tensor
from dip.pipeline import baselines
from dip.tasks import Task

OUT = Path(__file__).resolve().parent / "_static" / "headline.png"


def crop() -> torch.Tensor:
    """The astronaut's face and shoulder, 128×128 (the 512×512 photograph halved, anti-aliased, then cropped)."""
    half = transform.resize(data.astronaut(), (256, 256), anti_aliasing=True)
    return to_tensor(half[10:138, 70:198].astype(np.float32))


def fit(task: Task, clean: torch.Tensor, iterations: int, threads: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The observation (observation seed 0) and DIP's restoration (network seed 0, the paper's skip network,
    the task's default stopping rule within a budget of `iterations`)."""
    observed, _ = task.degrade(clean, observation_seed=0)
    start = time.perf_counter()
    result = restore(
        observed,
        task.operator(),
        arch="skip",
        settings={"iterations": iterations, "reg_noise_std": 1 / 30 if task.name == "denoise" else 0.03},
        stop="default",  # each task's default rule (dip.defaults), as `dip fit` without --stop
        device="cpu",
        clean=clean,
    )
    return to_array(observed), to_array(result.image), time.perf_counter() - start


def shrink(path: Path) -> None:
    """Rewrite the PNG with a 256-colour adaptive palette: a third of the size, no visible change (it is
    committed, and every clone carries it)."""
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    atomic_write(path, lambda tmp: small.save(tmp, format="PNG", optimize=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=1500, help="iterations of each fit (default 1500)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    clean_t = crop()
    clean = to_array(clean_t)

    denoise = Task("denoise", sigma=25)
    noisy, dip_dn, seconds_dn = fit(denoise, clean_t, args.iters, args.threads)
    classical = baselines.restore(denoise, noisy)
    best = "cbm3d" if "cbm3d" in classical else "nlm"
    classical_dn = np.clip(classical[best], 0, 1)

    sr = Task("sr", factor=4)
    low, dip_sr, seconds_sr = fit(sr, clean_t, args.iters, args.threads)
    bicubic = np.clip(baselines.restore(sr, low)["bicubic"], 0, 1)

    def titled(task: Task, name: str, image: np.ndarray) -> str:
        return f"{name}\n{task.score(image, clean)['psnr']:.2f} dB"

    rows = [
        [
            (titled(denoise, "noisy, σ = 25", noisy), noisy),
            (titled(denoise, "DIP", dip_dn), dip_dn),
            (titled(denoise, "CBM3D" if best == "cbm3d" else "non-local means", classical_dn), classical_dn),
            ("clean", clean),
        ],
        [
            (titled(sr, "×4: bicubic", bicubic), bicubic),
            (titled(sr, "DIP", dip_sr), dip_sr),
            ("clean", clean),
            None,
        ],
    ]
    fig, axes = plt.subplots(2, 4, figsize=(10, 6.3))
    for row, panels in zip(axes, rows):
        for ax, panel in zip(row, panels):
            ax.axis("off")
            if panel is not None:
                ax.imshow(panel[1], interpolation="nearest")
                ax.set_title(panel[0], fontsize=10)
    command = "python docs/make_headline.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    fig.text(
        0.5,
        0.01,
        f"{command.strip()}: astronaut (scikit-image), 128×128; skip network, default stopping rules, budget "
        f"{args.iters} iterations, seed 0; "
        f"SR PSNR on luminance\ntorch {torch.__version__} CPU, {args.threads} thread(s), {platform.machine()}; "
        f"fits {seconds_dn:.0f} s + {seconds_sr:.0f} s",
        ha="center",
        fontsize=7,
        color="0.3",
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    atomic_write(args.out, lambda path: fig.savefig(path, dpi=80, format="png"))
    shrink(args.out)
    print(f"{args.out}: denoise {seconds_dn:.0f} s, SR {seconds_sr:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
