# synthreg: `make demo` and `make test` work on a fresh machine with only Python, pip and git.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo-registry
REGISTRY := $(BIN)/registry
# uv when it is on PATH (fast), else pip.
UV := $(shell command -v uv 2>/dev/null)

.PHONY: demo test lint install clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
ifdef UV
	$(UV) pip install --compile-bytecode --python $(BIN)/python -e '.[dev]'
else
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
endif
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO)
	$(REGISTRY) init $(DEMO)
	$(REGISTRY) -C $(DEMO) create fitness --spec examples/fitness.yaml -m "first version"
	$(REGISTRY) -C $(DEMO) create fitness --spec examples/fitness.yaml --seed 7 -m "another seed"
	$(REGISTRY) -C $(DEMO) list
	$(REGISTRY) -C $(DEMO) show fitness
	@echo
	@echo "MLflow DB:  $(CURDIR)/$(DEMO)/.registry/mlflow.db  (mlflow ui --backend-store-uri sqlite:///$(CURDIR)/$(DEMO)/.registry/mlflow.db)"
	@echo "DataCard:   $(CURDIR)/$(DEMO)/data/fitness/v2/datacard.md"

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check synthreg tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py

clean:
	rm -rf $(DEMO) build .pytest_cache .mypy_cache .ruff_cache
