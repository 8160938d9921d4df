# Windsock developer commands. `make test` is the one CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint run serve clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## test: the whole suite (needs redis-server; see README "Running the tests")
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## lint: ruff and mypy (strict on app/)
lint: $(STAMP)
	$(BIN)/ruff check app tests
	$(BIN)/ruff format --check app tests
	$(BIN)/mypy

## serve: one process, in-memory broker (python -m app)
serve: $(STAMP)
	$(BIN)/python -m app

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
