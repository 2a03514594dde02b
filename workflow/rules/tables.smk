rule tables:
    """Collect every fit and baseline: runs.csv (one row per fit), summary.csv/.md (mean ± std over
    images and seeds per task × arch × method) and stopping.md (rules against the oracle).
    """
    input:
        runs=expand(
            "results/fits/{task}/{arch}/{image}/seed{seed}/metrics.csv", zip, **grid()
        ),
        baselines=baseline_dirs(),
    output:
        runs=report(
            "results/tables/runs.csv", caption="../report/runs.rst", category="Tables"
        ),
        summary=report(
            "results/tables/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
        ),
        summary_md="results/tables/summary.md",
        stopping=report(
            "results/tables/stopping.csv",
            caption="../report/stopping.rst",
            category="Tables",
        ),
        stopping_md="results/tables/stopping.md",
    log:
        "logs/tables.log",
    conda:
        "../envs/dip.yaml"
    script:
        "../scripts/tables.py"


rule paper_table:
    """Our fits beside the paper's numbers (config `published`; published and derived kept apart), per
    image and dataset mean, with each row's scoring convention; rows whose conventions differ are
    labelled, not compared."""
    input:
        unpack(get_paper_table_inputs),
    output:
        csv=report(
            "results/tables/paper_vs_ours.csv",
            caption="../report/paper.rst",
            category="Tables",
        ),
        md="results/tables/paper_vs_ours.md",
        png=report(
            "results/figures/paper_vs_ours.png",
            caption="../report/paper.rst",
            category="Figures",
        ),
    log:
        "logs/paper_table.log",
    conda:
        "../envs/dip.yaml"
    params:
        channels={image: size[2] for image, size in SIZES.items()},
    script:
        "../scripts/paper_table.py"
