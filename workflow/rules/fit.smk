if not BATCH_SEEDS:

    rule fit:
        """One Deep Image Prior fit: full budget, every stopping rule recorded, checkpointed so that a
        killed or pre-empted job resumes where it was (rerun with --rerun-incomplete). A fit that keeps
        diverging ends with status 'failed' in summary.json, which the tables list as failed.
        """
        input:
            unpack(get_fit_inputs),
        output:
            # A fit that failed says so in summary.json (status); its restored.png is then the image of
            # its last verified iteration, which the tables do not score.
            summary="results/fits/{task}/{arch}/{image}/seed{seed}/summary.json",
            history="results/fits/{task}/{arch}/{image}/seed{seed}/history.csv",
            restored="results/fits/{task}/{arch}/{image}/seed{seed}/restored.png",
        log:
            "logs/fit/{task}/{arch}/{image}/seed{seed}.log",
        benchmark:
            "benchmarks/fit/{task}/{arch}/{image}/seed{seed}.tsv"
        group:
            get_fit_group
        conda:
            "../envs/dip.yaml"
        threads: config["threads_per_fit"]
        resources:
            **get_fit_resources(),
            mem_mb=get_fit_mem_mb,
            gpu_mem_mb=get_fit_gpu_mem_mb,
        params:
            args=fit_args,
            files=fit_files,
        shell:
            "dip fit {params.args} {params.files} "
            "--record-stops --failure-ok --threads {threads} --out $(dirname {output.summary}) 2> {log}"

else:

    rule fit_seeds:
        """Every network seed of one task, architecture and image as one batched job on the GPU
        (`dip fit --seeds`): the same fits as rule `fit` (own weights, backtracking, rules, outputs per
        seed), stacked into one network so that the device is kept busy."""
        input:
            unpack(get_fit_inputs),
        output:
            summaries=expand(
                "results/fits/{{task}}/{{arch}}/{{image}}/seed{seed}/summary.json",
                seed=SEEDS,
            ),
            histories=expand(
                "results/fits/{{task}}/{{arch}}/{{image}}/seed{seed}/history.csv",
                seed=SEEDS,
            ),
            restored=expand(
                "results/fits/{{task}}/{{arch}}/{{image}}/seed{seed}/restored.png",
                seed=SEEDS,
            ),
        log:
            "logs/fit/{task}/{arch}/{image}/seeds.log",
        benchmark:
            "benchmarks/fit/{task}/{arch}/{image}/seeds.tsv"
        group:
            get_fit_group
        conda:
            "../envs/dip.yaml"
        threads: config["threads_per_fit"]
        resources:
            **get_fit_resources(),
            mem_mb=get_fit_mem_mb,
            gpu_mem_mb=get_fit_gpu_mem_mb,
        params:
            args=fit_args,
            files=fit_files,
            out=fit_seeds_out,
        shell:
            "dip fit {params.args} {params.files} "
            "--record-stops --failure-ok --threads {threads} --out '{params.out}' 2> {log}"


if STACKS:

    rule fit_stack:
        """Up to `stack_images` images of one task, architecture, size and channels, every network seed of
        each, fitted as one batched network (`dip.request.run_stacked`, as `dip fit --stack`): the same fits
        as rule `fit`, each written into its own results/fits folder. The declared output is the job's
        manifest, written last: which fits it made and their status."""
        input:
            get_stack_inputs,
        output:
            "results/stacks/{task}/{arch}/{stack}.json",
        log:
            "logs/fit/{task}/{arch}/{stack}.log",
        benchmark:
            "benchmarks/fit/{task}/{arch}/{stack}.tsv"
        group:
            get_fit_group
        conda:
            "../envs/dip.yaml"
        threads: config["threads_per_fit"]
        resources:
            **get_fit_resources(),
            mem_mb=get_fit_mem_mb,
            gpu_mem_mb=get_fit_gpu_mem_mb,
        params:
            fits=stack_fits,
        script:
            "../scripts/fit_stack.py"
