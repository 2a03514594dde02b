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
    """Seeded observation of a ground truth for one task; mask.png marks known pixels (all but inpainting)."""
    input:
        "results/images/{image}/clean.png",
    output:
        observed="results/observations/{task}/{image}/seed{seed}/observed.png",
        mask="results/observations/{task}/{image}/seed{seed}/mask.png",
    params:
        task=task_args,
    log:
        "logs/degrade/{task}/{image}/seed{seed}.log",
    conda:
        "../envs/dip.yaml"
    shell:
        "dip degrade {params.task} --seed {wildcards.seed} --image {input} "
        "--out $(dirname {output.observed}) --always-mask 2> {log}"
