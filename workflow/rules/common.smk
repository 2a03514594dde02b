import functools
import os
import re
import sys
from argparse import Namespace
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dip import manifest as manifest_io
from dip import paper
from dip.image_io import InputError
from dip.many import stacks
from dip.memory import cuda_available, job_memory_mb
from dip.presets import PAIRED_ARCHITECTURES, architecture
from dip.risk import check_task as check_risk_task, takes_the_observation
from dip.tasks import OPTIONS as TASK_OPTIONS_OF, PAIRED, TASK_OPTIONS, Task

# `--config seeds=[0,1,2]` reaches the config as Snakemake's strings ("0"); the schema asks for integers.
if isinstance(config.get("seeds"), list):
    config["seeds"] = [
        int(s) if isinstance(s, str) and re.fullmatch(r"-?\d+", s.strip()) else s
        for s in config["seeds"]
    ]


def _refuse(message):
    """Stop reading the workflow on bad input with `message` alone, one line on stderr and exit status 2
    (as `dip` refuses bad input): a WorkflowError raised here would be printed with the Snakefile's
    traceback lines under it.
    """
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _task_lines_first():
    """The task parser's one line for an entry holding an option of another task, which the schema would
    refuse in its own words ("25 should not be valid under {}"); anything else is left to the schema.
    """
    tasks = config.get("tasks")
    for key, spec in tasks.items() if isinstance(tasks, dict) else ():
        if not (isinstance(spec, dict) and spec.get("task") in TASK_OPTIONS_OF):
            continue
        takes = TASK_OPTIONS_OF[spec["task"]].takes
        if any(option in spec and option not in takes for option in TASK_OPTIONS):
            try:
                Task.from_spec(spec, observed=spec["task"] in PAIRED)
            except InputError as err:
                _refuse(f"tasks: {key!r}: {err}")
            except (TypeError, ValueError):
                pass  # a value of the wrong type as well: the schema names it


def _validated(data, schema, what):
    """Snakemake's schema check (which also fills in the schema's defaults), its reason in one line naming
    the key or the manifest's row rather than followed by the whole schema."""
    try:
        validate(data, schema=schema)
    except WorkflowError as err:
        # The schema's ValidationError, raised inside Snakemake's handler.
        reason = err.__context__
        if reason is None or not hasattr(reason, "absolute_path"):
            raise
        where = ".".join(str(key) for key in reason.absolute_path)
        row = re.match(r"Error validating row (\d+)", str(err))
        if row and hasattr(data, "index"):
            where = ", ".join(
                filter(None, [f"row {data.index[int(row.group(1))]!r}", where])
            )
        message = reason.message
        if (
            reason.validator == "not"
            and reason.validator_value == {}
            and reason.absolute_path
        ):
            # The schema's `{not: {}}`: a parameter that the entry's task or noise model does not take.
            key = reason.absolute_path[-1]
            message = f"the entry's task and noise model take no {key} (got {reason.instance!r})"
        _refuse(": ".join(filter(None, [what, where, message])))


_task_lines_first()
_validated(config, "../schemas/config.schema.yaml", "config")

try:
    MANIFEST = manifest_io.read(config["manifest"])
except InputError as err:
    _refuse(str(err))
_validated(
    MANIFEST, "../schemas/manifest.schema.yaml", f"manifest {config['manifest']}"
)
MANIFEST_DIR = Path(config["manifest"]).parent
if config.get("images"):
    unknown = sorted(set(config["images"]) - set(MANIFEST.index))
    if unknown:
        _refuse(f"images: {unknown[0]!r} is not an id of {config['manifest']}")
    MANIFEST = MANIFEST.loc[config["images"]]
# Manifests of the paper's datasets read from the user's copy: {data_root}/Set5/baby.png and so on.
DATA_ROOT = config.get("data_root") or os.environ.get(manifest_io.DATA_ROOT_ENV)
try:
    SIZES = manifest_io.check(MANIFEST, MANIFEST_DIR, config.get("resize"), DATA_ROOT)
except InputError as err:
    _refuse(str(err))

# The published table is checked before any job too (a typo in it would otherwise fail the last job).
if config.get("published"):
    try:
        paper.read_published(config["published"])
    except InputError as err:
        _refuse(str(err))

IMAGES = list(MANIFEST.index)
# Each row as a plain dict, read once: the input functions look rows up per job, and a DataFrame's .loc
# costs as much as the rest of a job's planning.
ROW = MANIFEST.to_dict("index")
TASKS = list(config["tasks"])


def _parse_task(key, spec):
    """A configured task, parsed once (dip.tasks.Task.from_spec): it degrades a clean image, or a paired
    task fits the manifest's pairs as observed. A bad entry fails here, before any job, naming it.
    """
    try:
        task = Task.from_spec(spec, observed=spec["task"] in PAIRED)
        if spec.get("loss") == "sure":
            check_risk_task(task)
    except (InputError, ValueError) as err:
        _refuse(f"tasks: {key!r}: {err}")
    return task


TASK_OF = {key: _parse_task(key, spec) for key, spec in config["tasks"].items()}
TASK_ARGS = {
    key: " ".join(task.cli_args()) for key, task in TASK_OF.items()
}  # once, not per job
ARCHS = list(config["archs"])
SEEDS = [str(s) for s in config["seeds"]]
# Flash/no-flash pairs (role pair) are the paired tasks' images; every other task degrades the clean images.
PAIRS = [image for image in IMAGES if ROW[image]["role"] == "pair"]
_PAIR_SET = set(PAIRS)


def is_paired(task):
    return TASK_OF[task].name in PAIRED


def is_poisson(task):
    """A Poisson observation exceeds 1 where a count exceeds the peak: it travels as a float TIFF
    (observed.tif, exact), beside its 8-bit preview observed.png."""
    return TASK_OF[task].poisson


POISSON_TASKS = [task for task in TASKS if is_poisson(task)]


def images_of(task):
    paired = is_paired(task)
    return [image for image in IMAGES if (image in _PAIR_SET) == paired]


def archs_of(task):
    """The config's architectures; a paired task's networks take the flash photograph as input instead,
    and a `loss: sure` task's the observation (not the deep decoder, whose input is small).
    """
    if is_paired(task):
        return list(PAIRED_ARCHITECTURES)
    if config["tasks"][task].get("loss") == "sure":
        return [a for a in ARCHS if takes_the_observation(architecture(a)["net"])]
    return ARCHS


def has_ground_truth(image):
    """Clean images are their own ground truth; a pair has one only if it is synthetic (`reference`)."""
    return image not in _PAIR_SET or bool(ROW[image]["reference"])


for _task in TASKS:
    if not images_of(_task):
        _refuse(
            f"tasks: {_task!r} has no images: the manifest has no "
            f"{'flash/no-flash pairs (rows of role pair)' if is_paired(_task) else 'clean images'}"
        )
    if TASK_OF[_task].mask == "file":
        for _image in images_of(_task):
            if not ROW[_image]["mask"]:
                _refuse(
                    f"tasks: {_task!r} inpaints with each image's mask file, but manifest row "
                    f"{_image!r} has no mask"
                )


def grid():
    """Every (task, arch, image, seed) the config fits, as keywords of expand(..., zip, **grid())."""
    combos = [
        (t, a, i, s)
        for t in TASKS
        for a in archs_of(t)
        for i in images_of(t)
        for s in SEEDS
    ]
    return dict(zip(("task", "arch", "image", "seed"), map(list, zip(*combos))))


# What DIP papers mean by seeds: several network seeds fitted to one fixed observation per image and
# task (observation seed `observation_seed`); `vary_observations: true` gives every network seed an
# observation of its own, drawn with the seed of the same number (a stream of its own all the same).
VARY_OBSERVATIONS = config.get("vary_observations", False)


def observation_seed(seed):
    return str(seed) if VARY_OBSERVATIONS else str(config.get("observation_seed", 0))


OBSERVATION_SEEDS = sorted({observation_seed(s) for s in SEEDS}, key=int)
USE_GPU = config["device"] == "cuda" or (
    config["device"] == "auto" and cuda_available()
)
# On a GPU a single small fit leaves most of the device idle: the network seeds of one task, architecture
# and image (one shared observation) run as one batched job (`dip fit --seeds`). CPU runs stay one fit
# per job, which spreads over the cores as well. Decided by the config alone (`batch_seeds`; auto: when
# `device: cuda`), never by probing the host that reads this file, so the rules are the same wherever
# the workflow is parsed.
_batch = config.get("batch_seeds", "auto")
BATCH_SEEDS = (
    (config["device"] == "cuda" if _batch == "auto" else bool(_batch))
    and not VARY_OBSERVATIONS
    and len(SEEDS) > 1
)


# `stack_images: N` fits up to N images of one task, architecture, size and channels in one job as one
# batched network (dip.request.run_stacked; every network seed of each image a fit of the batch): rule
# `fit_stack`, whose declared output is a small manifest written last, while each fit is written into its
# usual folder. Stacks are formed once, here (dip.many.stacks: each size's images sorted by id, in chunks of
# N), so that an input function finds an image's stack by a dictionary lookup. Tasks whose fits cannot be
# stacked (the flash pairs, `loss: sure`, ensembles) keep one job per fit.
STACK_IMAGES = config.get("stack_images", 1)


def stackable(task):
    spec = config["tasks"][task]
    return (
        STACK_IMAGES > 1
        and not is_paired(task)
        and spec.get("loss") != "sure"
        and spec.get("ensemble", 1) == 1
    )


STACKS = {
    task: [
        "+".join(stack)
        for stack in stacks(
            {image: SIZES[image] for image in sorted(images_of(task))}, STACK_IMAGES
        )
    ]
    for task in TASKS
    if stackable(task)
}
STACK_OF = {
    (task, image): stack
    for task, named in STACKS.items()
    for stack in named
    for image in stack.split("+")
}


def stack_manifest(task, arch, image):
    """The manifest of the stacked job that fits `image` for `task` and `arch`, or None (not stacked)."""
    stack = STACK_OF.get((task, image))
    return None if stack is None else f"results/stacks/{task}/{arch}/{stack}.json"


def stack_outputs():
    """Every stacked job's manifest."""
    return [
        f"results/stacks/{task}/{arch}/{stack}.json"
        for task, named in STACKS.items()
        for arch in archs_of(task)
        for stack in named
    ]


def check_cluster_run():
    """On a cluster run (this Snakemake submits the fits), nothing about the submitting host may silently
    shape the jobs: `device: auto` would be decided here, and --cores (workflow/profiles/default's
    `cores: all`) caps every job's threads at this host's cores. Checked when the run starts (the executor
    is not known while the Snakefile is read); dry runs and the jobs themselves skip it.
    """
    if workflow.local_exec:
        return
    if config["device"] == "auto":
        raise WorkflowError(
            "device: auto is decided on this submitting host, not on the nodes: set device: cuda "
            "(each fit asks the cluster for a GPU) or cpu, e.g. --config device=cuda"
        )
    cores = workflow.resource_settings.cores
    if cores is not None and cores < config["threads_per_fit"]:
        raise WorkflowError(
            f"threads_per_fit: {config['threads_per_fit']} would be cut to {cores}: --cores {cores} "
            "(workflow/profiles/default's `cores: all`: this host's cores) caps every job's threads; "
            "add --workflow-profile none"
        )


onstart:
    check_cluster_run()


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    image=_alternatives(IMAGES),
    task=_alternatives(TASKS),
    arch=_alternatives(
        {a for t in TASKS for a in archs_of(t)}
        | set(config.get("impedance", {}).get("archs", []))
    ),
    seed=r"\d+",
    obs=r"\d+",
    stack=_alternatives({stack for named in STACKS.values() for stack in named})
    or "(?!)",


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


def baseline_dirs():
    """Every baseline job's folder: each task's images and observation seeds."""
    return [
        f"results/baselines/{task}/{image}/obs{obs}"
        for task in TASKS
        for image in images_of(task)
        for obs in OBSERVATION_SEEDS
    ]


def get_paper_table_inputs(wildcards):
    """runs.csv, the baselines (our CBM3D, where the optional bm3d package is installed), the manifest (for
    each image's dataset) and, if the config names one, the published table."""
    inputs = {
        "runs": "results/tables/runs.csv",
        "baselines": baseline_dirs(),
        "manifest": config["manifest"],
    }
    if config.get("published"):
        inputs["published"] = config["published"]
    return inputs


def _truth_path(image):
    """The manifest file of an image's ground truth: the clean image, or a synthetic pair's reference."""
    row = ROW[image]
    return row["reference"] if row["role"] == "pair" else row["path"]


def _local(path):
    return (
        []
        if path.startswith("skimage:")
        else manifest_io.resolve(path, MANIFEST_DIR, DATA_ROOT)
    )


def _resize(row):
    return str(config["resize"]) if config.get("resize") else row["resize"]


def get_source(wildcards):
    """The manifest file behind an image's ground truth (nothing for images bundled with scikit-image)."""
    return _local(_truth_path(wildcards.image))


def get_prepare_params(wildcards):
    row = ROW[wildcards.image]
    return {
        "path": manifest_io.resolve(
            _truth_path(wildcards.image), MANIFEST_DIR, DATA_ROOT
        ),
        "crop": row["crop"],
        "resize": _resize(row),
    }


def get_pair_sources(wildcards):
    row = ROW[wildcards.image]
    return {"noflash": _local(row["path"]), "flash": _local(row["flash"])}


def get_mask_source(wildcards):
    return _local(ROW[wildcards.image]["mask"])


def get_row_geometry(wildcards):
    """How a row's files are cropped and resized (all of them alike, as its ground truth)."""
    row = ROW[wildcards.image]
    return {"crop": row["crop"], "resize": _resize(row)}


def get_degrade_inputs(wildcards):
    """The ground truth, and for a `mask: file` task the manifest's mask, prepared."""
    inputs = {"clean": f"results/images/{wildcards.image}/clean.png"}
    if TASK_OF[wildcards.task].mask == "file":
        inputs["mask"] = f"results/images/{wildcards.image}/mask.png"
    return inputs


def observation_files(task, image, obs):
    """What a fit of `task` on `image` observes: the degraded image and its mask (mask.png marks known
    pixels), or for a paired task the no-flash photograph and the flash one (the network's input).
    """
    if is_paired(task):
        return {
            "observed": f"results/pairs/{image}/noflash.png",
            "flash": f"results/pairs/{image}/flash.png",
        }
    folder = f"results/observations/{task}/{image}/obs{obs}"
    return {
        "observed": f"{folder}/observed.{'tif' if is_poisson(task) else 'png'}",
        "mask": f"{folder}/mask.png",
        "preview": f"{folder}/observed.png",
    }


def _truth(image):
    return (
        {"clean": f"results/images/{image}/clean.png"}
        if has_ground_truth(image)
        else {}
    )


def get_fit_inputs(wildcards):
    """A fit's observation (the one of its network seed's observation seed; a batched job's seeds share
    one), its mask or flash photograph, and the ground truth if there is one."""
    seed = getattr(wildcards, "seed", SEEDS[0])
    return {
        **observation_files(wildcards.task, wildcards.image, observation_seed(seed)),
        **_truth(wildcards.image),
    }


def get_baseline_inputs(wildcards):
    return {
        **observation_files(wildcards.task, wildcards.image, wildcards.obs),
        **_truth(wildcards.image),
    }


def get_evaluate_inputs(wildcards):
    """The fit's files, or the manifest of the stacked job that wrote them; the ground truth if any."""
    stacked = stack_manifest(wildcards.task, wildcards.arch, wildcards.image)
    if stacked:
        return {"stack": stacked, **_truth(wildcards.image)}
    fit = f"results/fits/{wildcards.task}/{wildcards.arch}/{wildcards.image}/seed{wildcards.seed}"
    return {
        "summary": f"{fit}/summary.json",
        "history": f"{fit}/history.csv",
        "restored": f"{fit}/restored.png",
        **_truth(wildcards.image),
    }


def fit_files(wildcards, input):
    """The `dip fit` file options of a fit's declared inputs, each task option only for a task that takes
    it (dip.tasks.OPTIONS: every observation has a mask.png, only inpainting reads it).
    """
    takes = TASK_OPTIONS_OF[TASK_OF[wildcards.task].name].takes
    return " ".join(
        f"--{name} {getattr(input, name)}"
        for name in ("observed", "mask", "flash", "clean")
        if hasattr(input, name) and (name not in TASK_OPTIONS or name in takes)
    )


def get_task_spec(wildcards):
    """A configured task's entry (parsed and checked as TASK_OF); the baselines read it."""
    return config["tasks"][wildcards.task]


def task_args(wildcards):
    """The `dip` task options of a configured task, e.g. '--task sr --factor 4' (dip.tasks.Task.cli_args).
    A `mask: file` task's mask is a declared input: of `degrade` (the manifest's) and of the fit (the
    observation's mask.png, see observation_files)."""
    return TASK_ARGS[wildcards.task]


def fit_args(wildcards):
    seed = getattr(wildcards, "seed", None)  # None: a batched job of every seed
    seeds = f"--seed {seed}" if seed is not None else "--seeds " + " ".join(SEEDS)
    obs = observation_seed(seed if seed is not None else SEEDS[0])
    return f"{_fit_settings(wildcards)} {seeds} --observation-seed {obs}"


def _fit_settings(wildcards):
    """The `dip fit` options of a task and architecture: what every fit of them shares."""
    spec = config["tasks"][wildcards.task]
    args = [
        task_args(wildcards),
        f"--arch {wildcards.arch}",
        f"--iters {spec['iterations']}",
        f"--device {config['device']}",
        f"--ssim-every {config['ssim_every']}",
        f"--window {config['stopping']['window']}",
    ]
    stop = config["stopping"].get("stop", "default")
    # Without --stop a fit returns its task's default rule's image (dip.defaults).
    if stop != "default":
        args.append(f"--stop {stop}")
    if "patience" in config["stopping"]:
        args.append(f"--patience {config['stopping']['patience']}")
    for key in (
        "lr",
        "reg_noise_std",
        "tv_weight",
        "red_weight",
        "holdout",
        "loss",
        "ensemble",
    ):
        if key in spec:
            args.append(f"--{key.replace('_', '-')} {spec[key]}")
    if TASK_OF[wildcards.task].gaussian_noise:
        # The fit is given its observation and σ (for the preset); the benchmark judges the discrepancy rule
        # as a user who does not know σ runs it, from σ estimated on the observation. (Poisson noise is
        # known from its peak, which the model needs anyway.)
        args.append("--noise-sigma estimate")
    return " ".join(args)


def get_stack_inputs(wildcards):
    """What every fit of a stacked job observes (`get_fit_inputs` of each image and network seed)."""
    return sorted(
        {
            path
            for image in wildcards.stack.split("+")
            for seed in SEEDS
            for path in get_fit_inputs(
                Namespace(task=wildcards.task, image=image, seed=seed)
            ).values()
        }
    )


def stack_fits(wildcards):
    """The `dip fit` options of each fit of a stacked job, one (image, network seed) each: the options rule
    `fit` gives the same fit, into the same folder (workflow/scripts/fit_stack.py stacks them).
    """
    settings = _fit_settings(wildcards)
    fits = []
    for image in wildcards.stack.split("+"):
        for seed in SEEDS:
            one = Namespace(
                task=wildcards.task, arch=wildcards.arch, image=image, seed=seed
            )
            files = fit_files(one, Namespace(**get_fit_inputs(one)))
            out = f"results/fits/{wildcards.task}/{wildcards.arch}/{image}/seed{seed}"
            fits.append(
                f"{settings} --seed {seed} --observation-seed {observation_seed(seed)} {files} --out {out}"
            )
    return fits


def fit_seeds_out(wildcards):
    """The output folder pattern of a batched job, `{seed}` left for `dip fit --seeds` to fill per seed."""
    return (
        f"results/fits/{wildcards.task}/{wildcards.arch}/{wildcards.image}/seed{{seed}}"
    )


# Cluster runs may pack several fits into one submitted job: Snakemake's group "fits", as many fits per job
# as `--group-components fits=N` says (the SLURM profile's `group-components`), so that each job's start-up
# (two Snakemake starts and a torch import, 15-20 s) is paid once for all of them. The SLURM plugin runs a
# job's fits one after the other (one job step at a time): each fit asks for N times its runtime, so that
# the job's limit (Snakemake takes the longest of its fits') covers all N; its CPUs and memory are the sum
# of its fits' (Snakemake's rule for a group), more than one fit at a time uses. On a GPU the job asks for
# one GPU. N is known only once the run's settings are, after this file is read: asked per job.
def fits_per_job():
    return workflow.group_settings.group_components.get("fits", 1)


def get_fit_group(wildcards):
    return "fits" if fits_per_job() > 1 else None


def get_fit_resources():
    runtime = config["resources"]["runtime"]
    base = {"runtime": lambda wildcards: runtime * fits_per_job()}
    if not USE_GPU:
        return base
    # One GPU a fit; in a job of several fits, one GPU that they share. As SLURM's gres, a string, Snakemake
    # asks for it once for the whole job (an integer `gpu` would be summed over the fits).
    return {
        **base,
        "gpu": lambda wildcards: None if fits_per_job() > 1 else 1,
        "gres": lambda wildcards: "gpu:1" if fits_per_job() > 1 else None,
    }


@functools.lru_cache(maxsize=None)
def _job_memory_of(arch, h, w, channels, fits):
    """dip.memory.job_memory_mb of one kind of fit job, computed once per (architecture, size, channels,
    batched fits): planning asks it of every fit job, twice (mem_mb and gpu_mem_mb)."""
    return job_memory_mb(
        arch,
        h,
        w,
        channels,
        device=config["device"],
        window=config["stopping"]["window"],
        margin=config["resources"]["memory_margin"],
        batch=fits,
    )


def _job_memory(wildcards, arch):
    stack = getattr(wildcards, "stack", None)
    images = stack.split("+") if stack else [wildcards.image]
    h, w, channels = SIZES[images[0]]  # a stack's images are of one size
    spec = config["tasks"][wildcards.task]
    # Every batched fit: the images of a stack, the seeds, each one's ensemble members, SURE's second pass.
    fits = (1 if hasattr(wildcards, "seed") else len(SEEDS)) * spec.get("ensemble", 1)
    fits *= len(images)
    fits *= 2 if spec.get("loss") == "sure" else 1
    return _job_memory_of(arch, h, w, channels, fits)


def get_fit_mem_mb(wildcards):
    """Host memory of one fit job: `resources.mem_mb` if the config sets it, else the library's estimate
    for this image's size, architecture and number of batched fits (dip.memory) with the configured margin.
    """
    return (
        config["resources"].get("mem_mb")
        or _job_memory(wildcards, wildcards.arch)["mem_mb"]
    )


def get_fit_gpu_mem_mb(wildcards):
    """GPU memory hint of one fit job (0 on a CPU run)."""
    return _job_memory(wildcards, wildcards.arch)["gpu_mem_mb"]


IMPEDANCE = config.get("impedance", {})


def get_impedance_image(wildcards):
    """The impedance image's ground truth (asked only when the config has an `impedance:` key)."""
    return f"results/images/{IMPEDANCE['image']}/clean.png"


def figure_layout(task):
    """What one task's figures show (dip.pipeline.figures), each file beside its keys: per image its
    ground truth (None without one), flash photograph (None but for a paired task), observation preview
    and baseline folder; per architecture and image the history and restored image of the first network
    seed, the one the figures show.
    """
    first, obs = SEEDS[0], observation_seed(SEEDS[0])
    images = []
    for image in images_of(task):
        seen = observation_files(task, image, obs)
        images.append(
            {
                "image": image,
                "clean": _truth(image).get("clean"),
                "flash": seen.get("flash"),
                "observed": seen.get("preview", seen["observed"]),
                "baselines": f"results/baselines/{task}/{image}/obs{obs}",
            }
        )
    fits = [
        {
            "arch": arch,
            "image": image,
            "history": f"results/fits/{task}/{arch}/{image}/seed{first}/history.csv",
            "restored": f"results/fits/{task}/{arch}/{image}/seed{first}/restored.png",
        }
        for arch in archs_of(task)
        for image in images_of(task)
    ]
    return {"seed": int(first), "archs": archs_of(task), "images": images, "fits": fits}


def get_figure_inputs(wildcards):
    """Every file of the task's figure_layout (a stacked fit's: its job's manifest), and the tables the
    figures score from."""
    shown = figure_layout(wildcards.task)
    images, fits = shown["images"], shown["fits"]
    if wildcards.task in STACKS:
        fits = [
            {"history": manifest, "restored": manifest}
            for manifest in sorted(
                {stack_manifest(wildcards.task, f["arch"], f["image"]) for f in fits}
            )
        ]
    return {
        "runs": "results/tables/runs.csv",
        "summary": "results/tables/summary.csv",
        "clean": [i["clean"] for i in images if i["clean"]],
        "flash": [i["flash"] for i in images if i["flash"]],
        "observed": [i["observed"] for i in images],
        "baseline_dirs": [i["baselines"] for i in images],
        "histories": [f["history"] for f in fits],
        "restored": [f["restored"] for f in fits],
    }


def get_figure_params(wildcards):
    return figure_layout(wildcards.task)
