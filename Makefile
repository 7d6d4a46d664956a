# One entry point for every routine. `make up` and `make test` are the two
# commands README promises a newcomer.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint bench soak install clean down status audit

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/hivemind swarm up

down: $(STAMP)
	$(BIN)/hivemind swarm down

status: $(STAMP)
	$(BIN)/hivemind swarm status

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/mypy_check.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --minutes 5 --json benchmarks/results/soak.json

# Dependency audit: a report, not a gate (CI runs it and carries on).
audit: $(STAMP)
	$(BIN)/python -m pip install --quiet pip-audit
	$(BIN)/pip-audit --progress-spinner off || true
