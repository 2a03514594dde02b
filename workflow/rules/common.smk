import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dip import manifest as manifest_io
from dip.image_io import InputError


validate(config, schema="../schemas/config.schema.yaml")

try:
    MANIFEST = manifest_io.read(config["manifest"])
except InputError as err:
    raise WorkflowError(str(err))
validate(MANIFEST, schema="../schemas/manifest.schema.yaml")
MANIFEST_DIR = Path(config["manifest"]).parent
if config.get("images"):
    unknown = sorted(set(config["images"]) - set(MANIFEST.index))
    if unknown:
        raise WorkflowError(f"images: {unknown[0]!r} is not an id of {config['manifest']}")
    MANIFEST = MANIFEST.loc[config["images"]]
try:
    manifest_io.check(MANIFEST, MANIFEST_DIR)
except InputError as err:
    raise WorkflowError(str(err))

IMAGES = list(MANIFEST.index)
TASKS = list(config["tasks"])
ARCHS = list(config["archs"])
SEEDS = [str(s) for s in config["seeds"]]
USE_GPU = config["device"] == "cuda"


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    image=_alternatives(IMAGES),
    task=_alternatives(TASKS),
    arch=_alternatives(set(ARCHS) | set(config.get("impedance", {}).get("archs", []))),
    seed=r"\d+",


def get_final_output():
    """What a default run produces: the tables, every figure, per task."""
    return [
        "results/tables/runs.csv",
        "results/tables/summary.md",
        "results/tables/stopping.md",
        *expand("results/figures/comparison_{task}.png", task=TASKS),
        *expand("results/figures/curves_{task}.png", task=TASKS),
        *expand("results/figures/architectures_{task}.png", task=TASKS),
        "results/figures/detection_gaps.png",
    ]


def get_source(wildcards):
    """The manifest file behind an image (nothing for images bundled with scikit-image)."""
    path = MANIFEST.loc[wildcards.image, "path"]
    return [] if path.startswith("skimage:") else manifest_io.resolve(path, MANIFEST_DIR)


def get_prepare_params(wildcards):
    row = MANIFEST.loc[wildcards.image]
    resize = str(config["resize"]) if config.get("resize") else row["resize"]
    return {"path": manifest_io.resolve(row["path"], MANIFEST_DIR), "crop": row["crop"], "resize": resize,
            "mask": manifest_io.resolve(row["mask"], MANIFEST_DIR) if row["mask"] else ""}


def get_task_spec(wildcards):
    return config["tasks"][wildcards.task]


def task_args(wildcards):
    """The `dip` task options of a configured task, e.g. '--task sr --factor 4'."""
    spec = config["tasks"][wildcards.task]
    args = ["--task", spec["task"]]
    for key in ("sigma", "factor", "quality", "drop"):
        if key in spec:
            args += [f"--{key}", str(spec[key])]
    if spec.get("mask") in ("text", "box"):
        args.append(f"--{spec['mask']}")
    if spec.get("mask") == "file":
        args += ["--mask", f"results/images/{wildcards.image}/mask.png"]
    return " ".join(args)


def fit_args(wildcards):
    spec = config["tasks"][wildcards.task]
    args = [task_args(wildcards),
            f"--arch {wildcards.arch}", f"--iters {spec['iterations']}", f"--seed {wildcards.seed}",
            f"--device {config['device']}", f"--ssim-every {config['ssim_every']}",
            f"--window {config['stopping']['window']}", f"--patience {config['stopping']['patience']}"]
    for key in ("lr", "reg_noise_std"):
        if key in spec:
            args.append(f"--{key.replace('_', '-')} {spec[key]}")
    return " ".join(args)


def get_fit_resources():
    base = {"mem_mb": config["resources"]["mem_mb"], "runtime": config["resources"]["runtime"]}
    return {**base, "gpu": 1} if USE_GPU else base


def get_figure_inputs(wildcards):
    """Everything one task's figures show: images of the first seed, every history, the tables."""
    first = SEEDS[0]
    obs = "results/observations/{task}/{image}/seed{seed}/observed.png"
    return {
        "runs": "results/tables/runs.csv",
        "baselines": "results/tables/summary.csv",
        "clean": expand("results/images/{image}/clean.png", image=IMAGES),
        "observed": expand(obs, task=wildcards.task, image=IMAGES, seed=first),
        "baseline_dirs": expand("results/baselines/{task}/{image}/seed{seed}", task=wildcards.task,
                                image=IMAGES, seed=first),
        "summaries": expand("results/fits/{task}/{arch}/{image}/seed{seed}/summary.json", task=wildcards.task, arch=ARCHS, image=IMAGES, seed=first),
        "histories": expand("results/fits/{task}/{arch}/{image}/seed{seed}/history.csv", task=wildcards.task, arch=ARCHS, image=IMAGES, seed=SEEDS),
    }
