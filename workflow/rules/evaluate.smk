rule evaluate:
    """Score one fit from its files: the restored PNG against the ground truth (SR: luminance,
    border shaved), the final and EMA outputs, the oracle iteration, and every stopping rule."""
    input:
        summary="results/fits/{task}/{arch}/{image}/seed{seed}/summary.json",
        history="results/fits/{task}/{arch}/{image}/seed{seed}/history.csv",
        restored="results/fits/{task}/{arch}/{image}/seed{seed}/restored.png",
        clean="results/images/{image}/clean.png",
    output:
        "results/fits/{task}/{arch}/{image}/seed{seed}/metrics.csv",
    params:
        image="{image}",
        task_label="{task}",
    log:
        "logs/evaluate/{task}/{arch}/{image}/seed{seed}.log",
    conda:
        "../envs/dip.yaml"
    script:
        "../scripts/evaluate.py"


rule baselines:
    """Classical baselines per image × task × observation (SR: bicubic, nearest; denoising: TV, non-local
    means; inpainting: biharmonic; JPEG: the observation itself)."""
    input:
        observed="results/observations/{task}/{image}/obs{obs}/observed.png",
        mask="results/observations/{task}/{image}/obs{obs}/mask.png",
        clean="results/images/{image}/clean.png",
    output:
        directory("results/baselines/{task}/{image}/obs{obs}"),
    params:
        spec=get_task_spec,
        image="{image}",
        task_label="{task}",
    log:
        "logs/baselines/{task}/{image}/obs{obs}.log",
    conda:
        "../envs/dip.yaml"
    script:
        "../scripts/baselines.py"
