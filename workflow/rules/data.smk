rule prepare:
    """Load a manifest image's ground truth (a clean image, or a synthetic pair's reference), crop/resize it,
    write it as PNG."""
    input:
        get_source,
    output:
        "results/images/{image}/clean.png",
    log:
        "logs/prepare/{image}.log",
    conda:
        "../envs/dip.yaml"
    params:
        source=get_prepare_params,
    script:
        "../scripts/prepare.py"


rule prepare_mask:
    """A manifest row's inpainting mask (for `mask: file` tasks), cropped and resized as its image."""
    input:
        mask=get_mask_source,
    output:
        mask="results/images/{image}/mask.png",
    log:
        "logs/prepare/{image}-mask.log",
    conda:
        "../envs/dip.yaml"
    params:
        row=get_row_geometry,
    script:
        "../scripts/prepare_files.py"


rule degrade:
    """Observation of a ground truth for one task from an observation seed; mask.png marks known pixels
    (all but inpainting; a `mask: file` task degrades with the manifest's mask). Poisson tasks: rule
    degrade_exact."""
    input:
        unpack(get_degrade_inputs),
    output:
        observed="results/observations/{task}/{image}/obs{obs}/observed.png",
        mask="results/observations/{task}/{image}/obs{obs}/mask.png",
    log:
        "logs/degrade/{task}/{image}/obs{obs}.log",
    wildcard_constraints:
        task=_alternatives([task for task in TASKS if task not in POISSON_TASKS])
        or "(?!)",
    conda:
        "../envs/dip.yaml"
    params:
        task=task_args,
        mask=lambda wildcards, input: (
            f"--mask {input.mask}" if hasattr(input, "mask") else ""
        ),
    shell:
        "dip degrade {params.task} {params.mask} --observation-seed {wildcards.obs} --image {input.clean} "
        "--out $(dirname {output.observed}) --always-mask 2> {log}"


rule degrade_exact:
    """A Poisson task's observation, which exceeds 1 where a count exceeds the peak: exact in observed.tif
    (float32, what the fit and the baselines read), with its preview observed.png (clipped, for figures).
    """
    input:
        unpack(get_degrade_inputs),
    output:
        observed="results/observations/{task}/{image}/obs{obs}/observed.tif",
        preview="results/observations/{task}/{image}/obs{obs}/observed.png",
        mask="results/observations/{task}/{image}/obs{obs}/mask.png",
    log:
        "logs/degrade/{task}/{image}/obs{obs}.log",
    wildcard_constraints:
        task=_alternatives(POISSON_TASKS) or "(?!)",
    conda:
        "../envs/dip.yaml"
    params:
        task=task_args,
    shell:
        "dip degrade {params.task} --observation-seed {wildcards.obs} --image {input.clean} "
        "--out $(dirname {output.observed}) --always-mask --exact 2> {log}"


rule prepare_pair:
    """A flash/no-flash pair of the manifest (role pair), cropped and resized as one."""
    input:
        unpack(get_pair_sources),
    output:
        noflash="results/pairs/{image}/noflash.png",
        flash="results/pairs/{image}/flash.png",
    log:
        "logs/prepare/{image}-pair.log",
    conda:
        "../envs/dip.yaml"
    params:
        row=get_row_geometry,
    script:
        "../scripts/prepare_files.py"
