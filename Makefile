# Gantry's developer commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .tools
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/pip install -q -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
	@# tensorrt-stubs declares the real tensorrt as a dependency, which cannot be
	@# installed here; the stubs alone are what type-checking needs.
	$(BIN)/pip install -q --no-deps 'tensorrt-stubs==10.13.0.35.1' 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -c 'import gantry, gantry_cli, training_jobs, model_repo, dev_cluster, torch, kopf'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install Gantry with every dependency group

tools: $(STAMP) ## install tritonserver and helm, and build the control plane + kubectl, under .tools/
	@scripts/install-tools.sh $(TOOLS) $(BIN)/python
	@scripts/build-k8s.sh $(TOOLS)

crds: $(STAMP) ## render crds/*.yaml from the API models and copy them into the chart
	$(BIN)/python -m gantry.crdgen crds
	PATH=$(CURDIR)/$(BIN):$$PATH scripts/sync-chart-crds.sh

lint: $(STAMP) ## ruff, mypy (strict) and the import contracts (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PYTHONPATH=operator:. $(BIN)/lint-imports

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: venv tools ## run the whole test suite
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest $(PYTEST_ARGS)

demo: venv tools ## run the end-to-end demo on the embedded dev cluster
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/gantry demo

e2e-kind: venv tools ## build images, install the chart on a kind cluster, train and serve (needs Docker + kind)
	PATH=$(CURDIR)/$(BIN):$(CURDIR)/$(TOOLS)/bin:$$PATH scripts/e2e-kind.sh

clean: ## remove the virtual environment and local tools
	rm -rf $(VENV) $(TOOLS)

.PHONY: help venv tools crds lint fmt test demo e2e-kind clean
