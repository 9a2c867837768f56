# The two set-up-and-go commands: `make demo` (the main job; output in runs/demo) and `make test` (the whole suite).
# Both create .venv on first use. torch is pinned to the CPU wheel that lies on disk on our machines;
# on a GPU machine install your CUDA build of torch first and `pip install -e '.[dev]'`.
# `make figures` reruns the demo into figures/, the run the README embeds (for maintainers, after a recipe change);
# `make walkthroughs` executes every walkthrough on the world and refreshes their executed copies in walkthroughs/executed/.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo test figures walkthroughs
setup: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/lcal demo

figures: setup
	$(VENV)/bin/lcal demo --out figures

test: setup
	tools/check.sh

walkthroughs: setup
	$(VENV)/bin/lcal batch walkthroughs/world.yaml --out runs/walkthroughs
	mkdir -p walkthroughs/executed
	for nb in walkthroughs/*.ipynb; do cp runs/walkthroughs/$$(basename $$nb .ipynb)/$$(basename $$nb) walkthroughs/executed/; done
