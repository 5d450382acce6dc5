# synthreg: `make demo` and `make test` work on a fresh machine with only Python, pip and git.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo-registry
REGISTRY := $(BIN)/registry
# uv when it is on PATH (fast), else pip.
UV := $(shell command -v uv 2>/dev/null)
# Local wheels (this machine's CPU build of torch for the `text` extra); uv looks there only when told.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)

.PHONY: demo test lint install clean bench lock servers

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs come from requirements.txt (exact versions with hashes), never from the ranges in
# pyproject.toml, so a fresh machine gets the packages CI passed with. `make lock` refreshes it on purpose.
$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
ifdef UV
	$(UV) pip install --compile-bytecode --python $(BIN)/python --require-hashes $(FIND_LINKS) -r requirements.txt
	$(UV) pip install --python $(BIN)/python --no-deps --no-build-isolation -e .
else
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps $(FIND_LINKS) -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
endif
	$(BIN)/python -m pip check
	touch $(STAMP)

# Re-resolve the lock from pyproject's ranges (run on purpose, then run `make test` and commit both).
lock:
	$(PYTHON) -m pip install --quiet 'uv>=0.5'
	$(PYTHON) -m uv pip compile pyproject.toml build-requirements.in --extra dev --extra team --extra dask --extra text --generate-hashes \
		--python-version 3.11 --python-platform x86_64-unknown-linux-gnu --no-header \
		--annotation-style line $(FIND_LINKS) -c lock-constraints.txt -o requirements.txt

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

# The same on the team backends, started here on loopback: PostgreSQL 15 (Debian's server, installed
# when missing and we are root), S3 (moto's server) and an MLflow server; stopped at the end.
# Credentials reach the CLI through the environment only. HOLD=1 keeps the servers up until Enter.
.PHONY: demo-team
demo-team: $(STAMP)
	@test -x $(PG_BIN)/initdb || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "PostgreSQL 15 is missing: sudo apt-get install -y postgresql" >&2; exit 1; fi; }
	$(BIN)/python benchmarks/bench_team.py --demo --demo-dir demo-team-registry $(if $(HOLD),--hold)

# The tests start a real PostgreSQL 15 (Debian's server, initdb/pg_ctl as the postgres user) and drive
# the web UI in Debian's Chromium; S3 (moto) and the MLflow server come from the lock. Installs the
# Debian packages when they are missing.
PG_BIN ?= /usr/lib/postgresql/15/bin
servers:
	@test -x $(PG_BIN)/initdb -a -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql chromium >/dev/null; \
	  else echo "missing: sudo apt-get install -y postgresql chromium" >&2; exit 1; fi; }
	@test -x $(PG_BIN)/initdb || { echo "no $(PG_BIN)/initdb after installing postgresql" >&2; exit 1; }
	@test -x /usr/bin/chromium || { echo "no /usr/bin/chromium after installing chromium" >&2; exit 1; }

# Two workers, whole test files each (module fixtures are built once): the tests wait on
# subprocesses and servers much of the time, so one process left a core idle half the run.
TEST_WORKERS ?= 2
test: $(STAMP) servers
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check synthreg tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py

clean:
	rm -rf $(DEMO) demo-team-registry build .pytest_cache .mypy_cache .ruff_cache
