# Windsock developer commands. `make test` is the one CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Compose v2 if present, else Debian's docker-compose (v1.29).
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
N ?= 3

.PHONY: install test lint run serve up scale down clean

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
	$(BIN)/ruff check app tests deploy
	$(BIN)/ruff format --check app tests deploy
	$(BIN)/mypy

## run: the whole stack natively, in the foreground: redis-server, supervisord
## (WORKERS workers + ingest) and nginx on HTTP_PORT (default 8080). Ctrl-C stops it.
run: $(STAMP)
	$(BIN)/python deploy/stack.py

## up / down: the stack in Docker (nginx on port 80)
up:
	$(COMPOSE) up -d --build
down:
	$(COMPOSE) down -v

## scale: run N app replicas (make scale N=5); reloads nginx, which only
## nginx builds without `server ... resolve` need
scale:
	$(COMPOSE) up -d --no-recreate --scale app=$(N)
	$(COMPOSE) exec -T nginx windsock-reload

## serve: one process, in-memory broker (python -m app)
serve: $(STAMP)
	$(BIN)/python -m app

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
