rule prepare:
    """Load a manifest image's ground truth (a clean image, or a synthetic pair's reference), crop/resize it,
    write it as PNG (and its mask, if any)."""
    input:
        get_source,
    output:
        "results/images/{image}/clean.png",
    params:
        source=get_prepare_params,
    log:
        "logs/prepare/{image}.log",
    conda:
        "../envs/dip.yaml"
    script:
        "../scripts/prepare.py"


rule degrade:
    """Observation of a ground truth for one task from an observation seed; mask.png marks known pixels
    (all but inpainting)."""
    input:
        "results/images/{image}/clean.png",
    output:
        observed="results/observations/{task}/{image}/obs{obs}/observed.png",
        mask="results/observations/{task}/{image}/obs{obs}/mask.png",
    params:
        task=task_args,
    log:
        "logs/degrade/{task}/{image}/obs{obs}.log",
    conda:
        "../envs/dip.yaml"
    shell:
        "dip degrade {params.task} --observation-seed {wildcards.obs} --image {input} "
        "--out $(dirname {output.observed}) --always-mask 2> {log}"


rule prepare_pair:
    """A flash/no-flash pair of the manifest (role pair), cropped and resized as one."""
    input:
        unpack(get_pair_sources),
    output:
        noflash="results/pairs/{image}/noflash.png",
        flash="results/pairs/{image}/flash.png",
    params:
        pair=get_pair_params,
    log:
        "logs/prepare/{image}-pair.log",
    conda:
        "../envs/dip.yaml"
    script:
        "../scripts/prepare_pair.py"
