# lit-nn — every target sets up .venv first (a no-op when pyproject.toml has not changed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.install-stamp
WORKERS ?= 2     # sweep worker processes (one CPU thread each)

.PHONY: help install train train-rnn test test-kernels test-slow test-gpu lint ui server lab figures bench notebooks jupyter \
        compare-optimizers compare-depth compare-activations compare-models compare-rnn-cells clean \
        compare-optimizers-tuned compare-depth-tuned compare-activations-tuned compare-linear

help:                     ## this list: every target and what it does
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /\1|/' | awk -F'|' '{printf "  %-20s %s\n", $$1, $$2}'

install: $(STAMP)          ## create .venv and install lit-nn into it (a no-op until pyproject.toml changes)

# pip (not uv/poetry): on the project machines torch/torchvision resolve from local disk.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

train: install            ## the default run: CNN on MNIST (embedded sample offline)
	$(BIN)/lit-nn fit -c experiments/mnist_cnn.yaml

train-rnn: install        ## char-RNN on the embedded corpus (Python's pydoc topics), then `lit-nn generate`
	$(BIN)/lit-nn fit -c experiments/char_rnn.yaml

lab: install              ## every fundamentals lab, one MLflow run each in experiment 'lab'
	$(BIN)/lit-nn lab all

compare-optimizers: install  ## sgd, momentum, adagrad, rmsprop, adadelta, adam, adamw on the MLP
	$(BIN)/lit-nn sweep experiments/compare_optimizers.yaml --workers $(WORKERS) $(ARGS)

compare-depth: install    ## MLP depth 0-3
	$(BIN)/lit-nn sweep experiments/compare_depth.yaml --workers $(WORKERS) $(ARGS)

compare-activations: install  ## sigmoid, tanh, relu, leaky_relu, selu, gelu
	$(BIN)/lit-nn sweep experiments/compare_activations.yaml --workers $(WORKERS) $(ARGS)

compare-linear: install   ## softmax regression vs a depth-3 MLP without activation (identity) vs with ReLU
	$(BIN)/lit-nn sweep experiments/compare_linear.yaml --workers $(WORKERS) $(ARGS)

compare-optimizers-tuned: install  ## the seven optimizers, each tuned with the same budget, then a verdict on 5 fresh seeds (~15 min)
	$(BIN)/lit-nn sweep experiments/compare_optimizers_tuned.yaml --workers $(WORKERS) $(ARGS)

compare-depth-tuned: install  ## MLP depth 0-3, the learning rate tuned per depth, then a verdict
	$(BIN)/lit-nn sweep experiments/compare_depth_tuned.yaml --workers $(WORKERS) $(ARGS)

compare-activations-tuned: install  ## six activations, the learning rate tuned per activation, then a verdict
	$(BIN)/lit-nn sweep experiments/compare_activations_tuned.yaml --workers $(WORKERS) $(ARGS)

compare-models: install   ## MLP vs CNN, same data and budget
	$(BIN)/lit-nn sweep experiments/compare_models.yaml --workers $(WORKERS) $(ARGS)

compare-rnn-cells: install  ## char-RNN cells: the notes' classic i2h/i2o cell vs rnn, gru, lstm
	$(BIN)/lit-nn sweep experiments/compare_rnn_cells.yaml --workers $(WORKERS) $(ARGS)

test: install             ## the fast suite (slow end-to-end tests: make test-slow)
	$(BIN)/pytest -q -m "not slow"

test-kernels: install     ## the recorded-history tests under torch's other CPU kernels (ATEN_CPU_CAPABILITY default, avx2), slow one included
	for cap in default avx2; do ATEN_CPU_CAPABILITY=$$cap $(BIN)/pytest -q tests/cli/test_histories.py || exit 1; done

test-slow: install        ## DDP, kill-and-resume, browser and other long end-to-end tests
	$(BIN)/pytest -q -m slow

# a second venv with every direct dependency at its floor in pyproject.toml (constraints/oldest.txt)
OLDEST := .venv-oldest
$(OLDEST)/.install-stamp: pyproject.toml constraints/oldest.txt
	@test -x $(OLDEST)/bin/python || $(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install --quiet --upgrade pip
	$(OLDEST)/bin/python -m pip install --quiet -e '.[dev]' -c constraints/oldest.txt
	@touch $@

test-oldest: $(OLDEST)/.install-stamp  ## the fast suite at the dependency floors (.venv-oldest from constraints/oldest.txt)
	$(OLDEST)/bin/pytest -q -m "not slow"

test-gpu: install         ## CUDA tests: fit, bf16, determinism, GPU checkpoint on CPU, 2-GPU DDP (skip without GPUs)
	$(BIN)/pytest -q -m gpu

figures: install          ## the learning path's figures: docs/figures/*.png from the real commands, small budgets (~2 min)
	$(BIN)/python docs/make_figures.py $(ARGS)

# notebooks/*.py (English) and notebooks/ja/*.py (Japanese) are jupytext py:percent sources. Each is
# converted to notebooks/_build/[ja/]NAME.ipynb (ignored by git) and executed there headless by nbclient
# (`jupyter execute`), its outputs kept; the kernel runs in that folder, so what a notebook writes
# beside itself (04's sweep file, reports/) stays in _build/. Runs go where command-line runs go: the
# clone's mlruns/ store (make ui), or MLFLOW_TRACKING_URI's. LIT_NN_NOTEBOOK_QUICK=1 gives every
# notebook tiny budgets (the slow tests' nbmake runs use it): `make notebooks LIT_NN_NOTEBOOK_QUICK=1`.
# NOTEBOOKS=notebooks/04_optimizers.py executes one (NOTEBOOK_BUILD: where the .ipynb go).
NOTEBOOKS ?= $(sort $(wildcard notebooks/[0-9]*.py)) $(sort $(wildcard notebooks/ja/[0-9]*.py))
NOTEBOOK_BUILD ?= notebooks/_build
notebooks: install        ## execute every notebook, English and Japanese, into notebooks/_build/ with outputs; runs in mlruns/ (make ui) (~30 min; LIT_NN_NOTEBOOK_QUICK=1: tiny budgets, ~5 min)
	for nb in $(NOTEBOOKS); do \
	  out=$(NOTEBOOK_BUILD)/$${nb#notebooks/}; out=$${out%.py}.ipynb; mkdir -p $$(dirname $$out) && \
	  $(BIN)/jupytext --quiet --to ipynb -o $$out $$nb && \
	  env -u MPLBACKEND $(BIN)/jupyter execute --inplace --kernel_name=python3 $$out || exit 1; \
	done

# JupyterLab from .venv (the notebooks extra, installed on first use), its kernel lit-nn's Python;
# jupytext's extension opens notebooks/*.py as notebooks (a .py's default viewer in this lab: Open
# With > Editor for plain text), saved back as py:percent. The setting lives in .venv, not ~/.jupyter.
# As root (the project's machines) JupyterLab wants --allow-root.
JUPYTER_PORT ?= 8888
$(VENV)/.notebooks-stamp: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,notebooks]'
	@touch $@

jupyter: $(VENV)/.notebooks-stamp  ## JupyterLab on http://127.0.0.1:8888 with jupytext: notebooks/*.py open as notebooks (installs the notebooks extra first)
	$(BIN)/jupytext-config --settings-file $(VENV)/etc/jupyter/labconfig/default_setting_overrides.json set-default-viewer python
	$(BIN)/jupyter lab --ip 127.0.0.1 --port $(JUPYTER_PORT) --no-browser --ServerApp.root_dir=. \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(ARGS)

bench: install            ## speed benchmarks → BENCHMARKS.md (make bench ARGS=--quick to check it works)
	$(BIN)/python -m benchmarks $(ARGS)

lint: install             ## ruff over the whole tree
	$(BIN)/ruff check .

ui: install               ## MLflow UI over the local store on http://127.0.0.1:5000
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --workers 1 --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5000

server: install           ## team tracking server: PostgreSQL + mlflow server on 127.0.0.1:5000 (folder team-server/; ARGS=--auth)
	$(BIN)/python -m pip install --quiet -e '.[dev,server]'
	$(BIN)/lit-nn server --folder team-server $(ARGS)

clean:                    ## remove the local MLflow store, checkpoints and reports
	rm -rf mlruns/mlflow.db mlruns/artifacts mlruns/checkpoints reports .pytest_cache
