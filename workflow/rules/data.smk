rule prepare:
    """Load a manifest image, crop/resize it, write the ground truth PNG (and its mask, if any)."""
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
