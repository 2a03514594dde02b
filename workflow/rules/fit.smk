rule fit:
    """One Deep Image Prior fit: full budget, every stopping rule recorded, checkpointed so that a
    killed or pre-empted job resumes where it was (rerun with --rerun-incomplete). A fit that keeps
    diverging ends with status 'failed' in summary.json, which the tables list as failed."""
    input:
        unpack(get_fit_inputs),
    output:
        # restored.png is written beside them, except by a fit that failed (status in summary.json).
        summary="results/fits/{task}/{arch}/{image}/seed{seed}/summary.json",
        history="results/fits/{task}/{arch}/{image}/seed{seed}/history.csv",
    params:
        args=fit_args,
    threads: config["threads_per_fit"]
    resources:
        **get_fit_resources(),
        mem_mb=get_fit_mem_mb,
        gpu_mem_mb=get_fit_gpu_mem_mb,
    log:
        "logs/fit/{task}/{arch}/{image}/seed{seed}.log",
    benchmark:
        "benchmarks/fit/{task}/{arch}/{image}/seed{seed}.tsv"
    conda:
        "../envs/dip.yaml"
    shell:
        "dip fit {params.args} --observed {input.observed} --mask {input.mask} --clean {input.clean} "
        "--record-stops --failure-ok --threads {threads} --out $(dirname {output.summary}) 2> {log}"
