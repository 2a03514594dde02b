rule evaluate:
    """Score one fit from its files: the restored PNG against the ground truth (SR: luminance,
    border shaved), the final and EMA outputs, the oracle iteration, and every stopping rule. A real
    flash/no-flash pair has no ground truth: its row keeps the fit's provenance and stops, unscored.
    """
    input:
        unpack(get_evaluate_inputs),
    output:
        "results/fits/{task}/{arch}/{image}/seed{seed}/metrics.csv",
    log:
        "logs/evaluate/{task}/{arch}/{image}/seed{seed}.log",
    conda:
        "../envs/dip.yaml"
    params:
        image="{image}",
        task_label="{task}",
        fit="results/fits/{task}/{arch}/{image}/seed{seed}",
    script:
        "../scripts/evaluate.py"


rule baselines:
    """Classical baselines per image × task × observation (SR: bicubic, nearest; denoising: TV, non-local
    means; inpainting: biharmonic; JPEG: the observation itself, and TV, non-local means and CBM3D of it at a
    level set by the quality; flash/no-flash: the no-flash photograph and
    non-local means on it at scikit-image's noise estimate)."""
    input:
        unpack(get_baseline_inputs),
    output:
        directory("results/baselines/{task}/{image}/obs{obs}"),
    log:
        "logs/baselines/{task}/{image}/obs{obs}.log",
    conda:
        "../envs/dip.yaml"
    params:
        spec=get_task_spec,
        image="{image}",
        task_label="{task}",
        observation_seed="{obs}",
    script:
        "../scripts/baselines.py"
