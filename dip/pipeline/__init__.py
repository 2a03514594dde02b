"""What the Snakemake workflow computes after the fits, as functions of data frames and file paths.

Each script in `workflow/scripts/` is a thin wrapper: it sends stderr to its log, reads the rule's declared
inputs and params, calls one function here (or in `dip.paper`, `dip.impedance`, `dip.manifest`) and writes
the outputs atomically (`dip.image_io`). Wildcards reach the scripts as params; rows carry their own keys
(image, task_label, arch, seed), so nothing depends on the order of an input list or on path positions.

| output | script | function |
|---|---|---|
| `results/baselines/{task}/{image}/obs{N}/` | `baselines.py` | `dip.pipeline.baselines.baselines` |
| `results/tables/runs.csv`, `summary.*`, `stopping.*` | `tables.py` | `dip.pipeline.tables.tables` |
| `results/tables/paper_vs_ours.*` | `paper_table.py` | `dip.paper.paper_vs_ours`, `markdown`, `figure` |
| `results/figures/{comparison,curves,architectures}_{task}.png` | `figures.py` | `dip.pipeline.figures.task_figures` |
| `results/figures/detection_gaps.png` | `detection_gaps.py` | `dip.pipeline.figures.detection_gaps` |
| `results/figures/impedance.png`, `results/tables/impedance.md` | `impedance_figure.py` | `dip.impedance` |
"""
