# news-monitor: the two commands a user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config.yaml

.PHONY: run demo test lint typecheck bench clean

# A stamp file per install flavour, so `make run` after `make test` does not reinstall.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	mkdir -p data
	$(BIN)/news-monitor --config $(CONFIG) run

# Real alerts within a minute, with no network: sample feeds on 127.0.0.1, the real daemon.
demo: $(VENV)/.installed
	$(BIN)/news-monitor demo

# The suite runs in up to four processes (one per CPU), whole modules each.
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n auto --maxprocesses=4 --dist loadfile $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check monitor tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache build *.egg-info
