rule figures:
    """Per task: comparison grid, learning curves with stops marked, architecture bar chart (PNG + PDF)."""
    input:
        unpack(get_figure_inputs),
    output:
        comparison=report(
            "results/figures/comparison_{task}.png",
            caption="../report/comparison.rst",
            category="Figures",
            subcategory="{task}",
        ),
        curves=report(
            "results/figures/curves_{task}.png",
            caption="../report/curves.rst",
            category="Figures",
            subcategory="{task}",
        ),
        architectures=report(
            "results/figures/architectures_{task}.png",
            caption="../report/architectures.rst",
            category="Figures",
            subcategory="{task}",
        ),
        comparison_pdf="results/figures/{task}_comparison.pdf",
        curves_pdf="results/figures/{task}_curves.pdf",
        architectures_pdf="results/figures/{task}_architectures.pdf",
    log:
        "logs/figures/{task}.log",
    conda:
        "../envs/dip.yaml"
    params:
        task="{task}",
        shown=get_figure_params,
    script:
        "../scripts/figures.py"


rule detection_gaps:
    """Histogram of each stopping rule's detection gap over every fit of the benchmark."""
    input:
        runs="results/tables/runs.csv",
    output:
        png=report(
            "results/figures/detection_gaps.png",
            caption="../report/gaps.rst",
            category="Figures",
        ),
        pdf="results/figures/detection_gaps.pdf",
    log:
        "logs/figures/detection_gaps.log",
    conda:
        "../envs/dip.yaml"
    script:
        "../scripts/detection_gaps.py"
