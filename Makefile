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

## test-docker: the Docker end-to-end suite (tests/docker): builds the images
## (stand-ins where the official ones cannot be pulled) and runs
## `compose up --scale app=3` on a fresh project; skips without a Docker engine
.PHONY: test-docker
test-docker: $(STAMP)
	@if ! docker info >/dev/null 2>&1; then \
		echo "test-docker: skipped: no Docker engine answers 'docker info' (the Docker end-to-end suite needs one)"; \
	else \
		WINDSOCK_TEST_TIMEOUT_SCALE=$${WINDSOCK_TEST_TIMEOUT_SCALE:-2} \
			$(BIN)/python -m pytest -m docker tests/docker $(PYTEST_ARGS); \
	fi

## lint: ruff and mypy (strict on app/)
lint: $(STAMP)
	$(BIN)/ruff check app tests deploy bench
	$(BIN)/ruff format --check app tests deploy bench
	$(BIN)/mypy

## bench: Windsock side by side with Nchan (bench/run.py; README "Performance").
## Needs nginx, redis-server and libnginx-mod-nchan; writes artifacts/bench/.
## BENCH_ARGS passes options, e.g. BENCH_ARGS="--groups ws-1k --profile".
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

.PHONY: bench
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.idempotency_costs
	$(BIN)/python -m bench.fanout_instructions $(if $(BENCH_BASE),--base $(BENCH_BASE))
	$(BIN)/python bench/run.py $(BENCH_ARGS)

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
