# lit-nn — every target sets up .venv first (a no-op when pyproject.toml has not changed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.install-stamp
WORKERS ?= 2     # sweep worker processes (one CPU thread each)

.PHONY: help install train train-rnn test test-kernels test-slow test-gpu lint ui server lab figures bench notebooks \
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

# notebooks/*.py (English) and notebooks/ja/*.py (Japanese) are jupytext py:percent sources
notebooks: install        ## the notebooks as .ipynb in notebooks/_build/ (ARGS=--execute runs them too); open with jupyter lab or VS Code
	@mkdir -p notebooks/_build/ja
	for nb in notebooks/*.py; do $(BIN)/jupytext --to ipynb -o notebooks/_build/$$(basename $$nb .py).ipynb $(ARGS) $$nb || exit 1; done
	for nb in notebooks/ja/*.py; do $(BIN)/jupytext --to ipynb -o notebooks/_build/ja/$$(basename $$nb .py).ipynb $(ARGS) $$nb || exit 1; done

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
