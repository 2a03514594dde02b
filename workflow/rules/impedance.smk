rule impedance_fit:
    """Fit one architecture to the image, image + noise, shuffled pixels and uniform noise."""
    input:
        image=get_impedance_image,
    output:
        curves="results/impedance/{arch}.csv",
    log:
        "logs/impedance/{arch}.log",
    benchmark:
        "benchmarks/impedance/{arch}.tsv"
    conda:
        "../envs/dip.yaml"
    threads: config["threads_per_fit"]
    resources:
        **get_fit_resources(),
    params:
        arch="{arch}",
        iterations=IMPEDANCE.get("iterations"),
        device=config["device"],
    script:
        "../scripts/impedance_fit.py"


rule impedance:
    """Target of its own (`snakemake impedance`): loss curves on a log axis and iterations to reach each MSE."""
    input:
        curves=expand("results/impedance/{arch}.csv", arch=IMPEDANCE.get("archs", [])),
    output:
        png=report(
            "results/figures/impedance.png",
            caption="../report/impedance.rst",
            category="Impedance",
        ),
        pdf="results/figures/impedance.pdf",
        table="results/tables/impedance.md",
    log:
        "logs/impedance/figure.log",
    conda:
        "../envs/dip.yaml"
    params:
        archs=IMPEDANCE.get("archs", []),
        thresholds=IMPEDANCE.get("thresholds", [0.01, 0.002]),
    script:
        "../scripts/impedance_figure.py"
