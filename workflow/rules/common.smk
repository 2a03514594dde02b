import os
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dip import manifest as manifest_io
from dip.image_io import InputError
from dip.memory import cuda_available, job_memory_mb


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
# Manifests of the paper's datasets read from the user's copy: {data_root}/Set5/baby.png and so on.
DATA_ROOT = config.get("data_root") or os.environ.get(manifest_io.DATA_ROOT_ENV)
try:
    SIZES = manifest_io.check(MANIFEST, MANIFEST_DIR, config.get("resize"), DATA_ROOT)
except InputError as err:
    raise WorkflowError(str(err))

IMAGES = list(MANIFEST.index)
TASKS = list(config["tasks"])
ARCHS = list(config["archs"])
SEEDS = [str(s) for s in config["seeds"]]
# What DIP papers mean by seeds: several network seeds fitted to one fixed observation per image and
# task (observation seed `observation_seed`); `vary_observations: true` gives every network seed an
# observation of its own, drawn with the seed of the same number (a stream of its own all the same).
VARY_OBSERVATIONS = config.get("vary_observations", False)


def observation_seed(seed):
    return str(seed) if VARY_OBSERVATIONS else str(config.get("observation_seed", 0))


OBSERVATION_SEEDS = sorted({observation_seed(s) for s in SEEDS}, key=int)
USE_GPU = config["device"] == "cuda" or (config["device"] == "auto" and cuda_available())
# On a GPU a single small fit leaves most of the device idle: the network seeds of one task, architecture
# and image (one shared observation) run as one batched job (`dip fit --seeds`). CPU runs stay one fit
# per job, which spreads over the cores as well (config `batch_seeds` overrides either way).
_batch = config.get("batch_seeds", "auto")
BATCH_SEEDS = (USE_GPU if _batch == "auto" else bool(_batch)) and not VARY_OBSERVATIONS and len(SEEDS) > 1


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    image=_alternatives(IMAGES),
    task=_alternatives(TASKS),
    arch=_alternatives(set(ARCHS) | set(config.get("impedance", {}).get("archs", []))),
    seed=r"\d+",
    obs=r"\d+",


def get_final_output():
    """What a default run produces: the tables, every figure, per task."""
    return [
        "results/tables/runs.csv",
        "results/tables/summary.md",
        "results/tables/stopping.md",
        "results/tables/paper_vs_ours.md",
        *expand("results/figures/comparison_{task}.png", task=TASKS),
        *expand("results/figures/curves_{task}.png", task=TASKS),
        *expand("results/figures/architectures_{task}.png", task=TASKS),
        "results/figures/detection_gaps.png",
    ]


def get_paper_table_inputs(wildcards):
    """runs.csv, the manifest (for each image's dataset) and, if the config names one, the published table."""
    inputs = {"runs": "results/tables/runs.csv", "manifest": config["manifest"]}
    if config.get("published"):
        inputs["published"] = config["published"]
    return inputs


def get_source(wildcards):
    """The manifest file behind an image (nothing for images bundled with scikit-image)."""
    path = MANIFEST.loc[wildcards.image, "path"]
    return [] if path.startswith("skimage:") else manifest_io.resolve(path, MANIFEST_DIR, DATA_ROOT)


def get_prepare_params(wildcards):
    row = MANIFEST.loc[wildcards.image]
    resize = str(config["resize"]) if config.get("resize") else row["resize"]
    return {"path": manifest_io.resolve(row["path"], MANIFEST_DIR, DATA_ROOT), "crop": row["crop"], "resize": resize,
            "mask": manifest_io.resolve(row["mask"], MANIFEST_DIR, DATA_ROOT) if row["mask"] else ""}


def _observation_dir(wildcards):
    seed = getattr(wildcards, "seed", SEEDS[0])  # a batched job's seeds share one observation
    return f"results/observations/{wildcards.task}/{wildcards.image}/obs{observation_seed(seed)}"


def get_fit_inputs(wildcards):
    """A fit's observation (the one of its network seed's observation seed), mask and ground truth."""
    return {"observed": f"{_observation_dir(wildcards)}/observed.png",
            "mask": f"{_observation_dir(wildcards)}/mask.png",
            "clean": f"results/images/{wildcards.image}/clean.png"}


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
    seed = getattr(wildcards, "seed", None)  # None: a batched job of every seed
    seeds = f"--seed {seed}" if seed is not None else "--seeds " + " ".join(SEEDS)
    args = [task_args(wildcards),
            f"--arch {wildcards.arch}", f"--iters {spec['iterations']}", seeds,
            f"--observation-seed {observation_seed(seed if seed is not None else SEEDS[0])}",
            f"--device {config['device']}", f"--ssim-every {config['ssim_every']}",
            f"--window {config['stopping']['window']}"]
    if "patience" in config["stopping"]:
        args.append(f"--patience {config['stopping']['patience']}")
    for key in ("lr", "reg_noise_std", "holdout"):
        if key in spec:
            args.append(f"--{key.replace('_', '-')} {spec[key]}")
    return " ".join(args)


def fit_seeds_out(wildcards):
    """The output folder pattern of a batched job, `{seed}` left for `dip fit --seeds` to fill per seed."""
    return f"results/fits/{wildcards.task}/{wildcards.arch}/{wildcards.image}/seed{{seed}}"


def get_fit_resources():
    base = {"runtime": config["resources"]["runtime"]}
    return {**base, "gpu": 1} if USE_GPU else base


def _job_memory(wildcards, arch):
    h, w, channels = SIZES[wildcards.image]
    fits = 1 if hasattr(wildcards, "seed") else len(SEEDS)
    return job_memory_mb(arch, h, w, channels, device=config["device"], window=config["stopping"]["window"],
                         margin=config["resources"]["memory_margin"], batch=fits)


def get_fit_mem_mb(wildcards):
    """Host memory of one fit job: `resources.mem_mb` if the config sets it, else the library's estimate
    for this image's size, architecture and number of batched fits (dip.memory) with the configured margin."""
    return config["resources"].get("mem_mb") or _job_memory(wildcards, wildcards.arch)["mem_mb"]


def get_fit_gpu_mem_mb(wildcards):
    """GPU memory hint of one fit job (0 on a CPU run)."""
    return _job_memory(wildcards, wildcards.arch)["gpu_mem_mb"]


def get_figure_inputs(wildcards):
    """Everything one task's figures show: images of the first seed, every history, the tables."""
    first, obs = SEEDS[0], observation_seed(SEEDS[0])
    return {
        "runs": "results/tables/runs.csv",
        "baselines": "results/tables/summary.csv",
        "clean": expand("results/images/{image}/clean.png", image=IMAGES),
        "observed": expand("results/observations/{task}/{image}/obs{obs}/observed.png", task=wildcards.task,
                           image=IMAGES, obs=obs),
        "baseline_dirs": expand("results/baselines/{task}/{image}/obs{obs}", task=wildcards.task,
                                image=IMAGES, obs=obs),
        "summaries": expand("results/fits/{task}/{arch}/{image}/seed{seed}/summary.json", task=wildcards.task, arch=ARCHS, image=IMAGES, seed=first),
        "restored": expand("results/fits/{task}/{arch}/{image}/seed{seed}/restored.png", task=wildcards.task, arch=ARCHS, image=IMAGES, seed=first),
        "histories": expand("results/fits/{task}/{arch}/{image}/seed{seed}/history.csv", task=wildcards.task, arch=ARCHS, image=IMAGES, seed=SEEDS),
    }
