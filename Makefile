# Two commands set everything up on a fresh machine with Python >= 3.11:
#   make demo   runs the main job on embedded defaults
#   make test   runs exactly what CI runs (lint, types, the whole test suite, then the unit
#               tests again under asyncio debug mode)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/asyncwait demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest
	# The unit and property tests once more under asyncio's debug mode (never-awaited
	# coroutines, callbacks from the wrong thread, slow steps).
	PYTHONASYNCIODEBUG=1 $(BIN)/pytest -q tests/unit tests/property --ignore=tests/unit/test_bench_smoke.py

bench: $(STAMP)
	$(BIN)/python -m bench all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
