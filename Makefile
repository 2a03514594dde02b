# make run: set up and run the default benchmark; make test: set up and run the tests.
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup run report impedance test lint bench bench-gpu docs clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# PyTorch only where none is installed yet: with an NVIDIA driver, the registry's CUDA build; otherwise
	# the CPU build (pinned: an unpinned torch pulls several GB of CUDA packages).
	$(BIN)/python -c "import torch" 2>/dev/null || if command -v nvidia-smi >/dev/null && nvidia-smi >/dev/null 2>&1; \
		then $(BIN)/python -m pip install -q torch; else $(BIN)/python -m pip install -q torch==2.13.0; fi
	$(BIN)/python -m pip install -q -e ".[workflow,test,docs]"
	touch $@

run: setup
	$(BIN)/snakemake --cores all
	$(BIN)/snakemake --report results/report.html

impedance: setup
	$(BIN)/snakemake --cores all impedance

# Speed against the reference loop (docs/benchmarks.md); bench-gpu is the check for a CUDA machine.
bench: setup
	$(BIN)/dip bench --arch skip --size 128 --iters 20 --threads 2 --reference --rounds 3

# The GPU checks of the fit loop: single fits at 128/256/512 against the original-style loop, 8 batched
# 256x256 fits, and the bf16 parity at 1000 iterations.
bench-gpu: setup
	for size in 128 256 512; do $(BIN)/dip bench --device cuda --arch skip --size $$size --iters 50 --warmup 10 --reference --rounds 3 --json; done
	$(BIN)/dip bench --device cuda --arch skip --size 256 --iters 50 --warmup 10 --batch 8 --json
	$(BIN)/dip bench --device cuda --arch skip --size 512 --iters 20 --parity 1000 --bf16 --channels-last --json

test: setup
	$(BIN)/python -m pytest

# Style and the workflow's health: ruff (lint and format), snakefmt, Snakemake's own linter. CI runs it.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check workflow
	$(BIN)/snakemake --lint

# The documentation site (docs/, Sphinx): the gallery's examples run as it builds (a few minutes on 2 cores);
# warnings are errors. Open docs/_build/html/index.html.
docs: setup
	$(BIN)/sphinx-build -W --keep-going -n -b html docs docs/_build/html

clean:
	rm -rf results logs benchmarks .snakemake
