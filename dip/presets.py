"""Named architectures and the paper's per-task settings, in one place, so that a table row saying
"paper preset" means exactly these values (from the authors' notebooks; see docs/guide/tasks.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dip.tasks import Task

# The architectures by name (`dip fit --arch NAME`, a pipeline config's `archs`): the one list of them. Each:
# "net", the network spec ("kind" is a builder in dip.networks); "settings", fit settings the network needs
# (optional); "activation_bytes_per_pixel", its memory coefficient for dip.memory's estimate: bytes of peak
# memory per image pixel of one fit, measured with `python -m dip.memory` (fp32, 2-core Xeon with AVX-512,
# torch 2.13, 1 thread, no ES rule, 3 iterations). Adding an architecture: one entry here (measure its
# coefficient with `python -m dip.memory NAME`) and its name in workflow/schemas/config.schema.yaml's `archs`
# (tests/test_workflow.py checks the two agree).
ARCHITECTURES: dict[str, dict] = {
    # The paper's default: 5 scales, 128 channels down/up, 4 skip channels, bilinear upsampling.
    # Its coefficient is the slope between 512² and 1024² of whole `dip fit` runs with a ground truth
    # (scripts/large_check.py, docs/scale.md): 11 % above the 128²→256² slope (8,308), which under-estimated
    # the large images the estimate decides about. The others' are the 128²→256² slopes.
    "skip": {"net": {"kind": "skip"}, "activation_bytes_per_pixel": 9194.7},
    # No skip connections: the paper's best choice for large holes.
    "hourglass": {"net": {"kind": "hourglass"}, "activation_bytes_per_pixel": 8010.4},
    # Depth-limited variants of the architecture ablation.
    "hourglass-3": {"net": {"kind": "hourglass", "scales": 3}, "activation_bytes_per_pixel": 9066.8},
    "skip-3": {
        "net": {"kind": "skip", "channels_down": [128] * 3, "channels_up": [128] * 3, "channels_skip": [4] * 3},
        "activation_bytes_per_pixel": 9088.5,
    },
    # JPEG artefacts notebook (snail): narrow shallow scales, skips only at the two deepest.
    "skip-jpeg": {
        "net": {
            "kind": "skip",
            "channels_down": [8, 16, 32, 64, 128],
            "channels_up": [8, 16, 32, 64, 128],
            "channels_skip": [0, 0, 0, 4, 4],
        },
        "settings": {"input_depth": 3},
        "activation_bytes_per_pixel": 1474.8,
    },
    # Text inpainting notebook (kate): 128 skip channels, nearest upsampling.
    "skip-text": {
        "net": {"kind": "skip", "channels_skip": [128] * 5, "upsample": "nearest"},
        "activation_bytes_per_pixel": 12012.4,
    },
    # Large-hole inpainting notebook (vase): no skips, nearest upsampling, meshgrid input.
    "hourglass-vase": {
        "net": {"kind": "hourglass", "upsample": "nearest"},
        "settings": {"input": "meshgrid"},
        "activation_bytes_per_pixel": 8224.8,
    },
    # Library inpainting notebook: six scales, 5×5 down filters, no 1×1 up convs, 1-channel input.
    "hourglass-library": {
        "net": {
            "kind": "skip",
            "channels_down": [16, 32, 64, 128, 128, 128],
            "channels_up": [16, 32, 64, 128, 128, 128],
            "channels_skip": [0] * 6,
            "filter_down": 5,
            "filter_up": 3,
            "upsample": "nearest",
            "need_1x1_up": False,
        },
        "settings": {"input_depth": 1, "reg_noise_std": 0.0},
        "activation_bytes_per_pixel": 1171.7,
    },
    # Flash/no-flash notebook: the default skip network, nearest upsampling at the two finest scales, the
    # flash photograph as its input. Its coefficient is not measured (dip.memory's calibration fits noise
    # inputs): the largest measured one, skip-text's, as an allowance.
    "skip-flash": {
        "net": {"kind": "skip", "upsample": ["nearest", "nearest", "bilinear", "bilinear", "bilinear"]},
        "settings": {"input": "image", "input_depth": 3},
        "activation_bytes_per_pixel": 12012.4,
    },
    "unet": {"net": {"kind": "unet", "feature_scale": 8}, "activation_bytes_per_pixel": 1936.5},
    "resnet": {"net": {"kind": "resnet", "blocks": 8, "channels": 32}, "activation_bytes_per_pixel": 10313.7},
    # Beyond the paper: Deep Decoder with k = 64 channels and 5 upsampling layers.
    "deep_decoder": {
        "net": {"kind": "deep_decoder", "layers": 5},
        "settings": {"input_depth": 64},
        "activation_bytes_per_pixel": 2608.0,
    },
}

# Networks whose input is an image of the user's (the flash photograph): the paired tasks' networks.
PAIRED_ARCHITECTURES = tuple(a for a, spec in ARCHITECTURES.items() if spec.get("settings", {}).get("input") == "image")

# task key -> (architecture, fit settings) of the authors' notebooks.
PAPER: dict[str, tuple[str, dict]] = {
    "denoise": ("skip", {"iterations": 3000, "reg_noise_std": 1 / 30, "lr": 0.01}),
    "denoise-sigma50": ("skip", {"iterations": 3000, "reg_noise_std": 1 / 20, "lr": 0.01}),
    "sr-x2": ("skip", {"iterations": 2000, "reg_noise_std": 0.03, "lr": 0.01}),
    "sr-x4": ("skip", {"iterations": 2000, "reg_noise_std": 0.03, "lr": 0.01}),
    "sr-x8": ("skip", {"iterations": 4000, "reg_noise_std": 0.05, "lr": 0.01}),
    "jpeg": ("skip-jpeg", {"iterations": 2400, "reg_noise_std": 1 / 30, "lr": 0.01}),
    "inpaint-text": ("skip-text", {"iterations": 6000, "reg_noise_std": 0.03, "lr": 0.01}),
    "inpaint-box": ("hourglass-vase", {"iterations": 5000, "reg_noise_std": 0.03, "lr": 0.01}),
    "inpaint-file": ("hourglass-library", {"iterations": 3000, "lr": 0.01}),
    # Restoration notebook (50 % of pixels missing): the paper's table comes from its whole budget, 11000
    # iterations at lr 0.001; what shorter budgets give is in docs/validation.md.
    "inpaint-drop": ("skip", {"iterations": 11000, "reg_noise_std": 0.03, "lr": 0.001}),
    # No input perturbation; the returned image is the last output (the notebook keeps no EMA). The notebook
    # does not backtrack either, and its fits at lr 0.1 spike: a spike is how a fit leaves a poor minimum
    # (the notebook's "stuck at a reddish image"), so only a non-finite loss backtracks here. Measured on the
    # bundled pair (128x128, seed 0): 29.7 dB with collapse backtracking, 38.9 dB without.
    "flash": ("skip-flash", {"iterations": 600, "reg_noise_std": 0.0, "lr": 0.1, "ema": 0.0, "backtrack_db": None}),
    # Beyond the paper: deblurring with a known blur (docs/guide/tasks.md: how chosen).
    # Measured on two images outside every config (docs/guide/tasks.md): without the TV
    # term the fit fills the blur's near-null space with detail the observation does not constrain.
    "deblur": ("unet", {"iterations": 1500, "reg_noise_std": 1 / 30, "lr": 0.01, "tv_weight": 1e-3}),
}


def preset_key(task: Task) -> str:
    """The PAPER key for a task (dip.tasks.Task): denoise σ >= 50 has its own reg noise (no σ, as for a
    given noisy photograph: the σ = 25 preset); SR ×2, ×4, ×8 are the paper's, and another factor takes
    the nearest published one above it (×3 → ×4's settings, ×5 and more → ×8's)."""
    if task.name == "denoise":
        return "denoise-sigma50" if task.sigma is not None and task.sigma >= 50 else "denoise"
    if task.name == "sr":
        factor = task.factor
        return f"sr-x{factor}" if factor in (2, 4, 8) else "sr-x4" if factor <= 4 else "sr-x8"
    if task.name == "inpaint":
        return f"inpaint-{task.mask}"
    return task.name


def architecture(name: str) -> dict:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]
