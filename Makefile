# clickstream-pipeline tasks. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?= --durations=25

.DEFAULT_GOAL := help

help: ## list the tasks
	@grep -hE '^[a-z][a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install Debian packages, the venv and the JVM jars (idempotent)
	scripts/setup.sh

jars: ## resolve Spark's jars with Maven into .stack/jars
	scripts/jars.sh

up: ## start PostgreSQL, Kafka and the object store (idempotent)
	scripts/stack.sh up

down: ## stop the local stack (data stays in .stack/)
	scripts/stack.sh down

status: ## say what runs where
	scripts/stack.sh status

lint: ## ruff lint and format check, mypy, and the docs site's strict build
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs: ## regenerate docs/reference/ from the code, then build the docs site into build/site
	$(PY) -m devkit.docs_reference
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

format: ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

check: lint ## alias of lint

unit: ## unit tests (local SparkSession, no services)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# Two phases on $(WORKERS) workers (pytest-xdist): the integration tests that share the stack,
# then the outage tests (which stop its servers) on one worker beside the unit tests.
WORKERS ?= 2
XDIST = -n $(WORKERS) --dist loadgroup
SHARED = -m "integration and not outage"
OUTAGE = -m "outage or not integration"

integration: ## integration tests against the local stack
	$(PY) -m pytest tests/integration $(SHARED) $(XDIST) $(PYTEST_ARGS)
	$(PY) -m pytest tests/integration -m outage $(PYTEST_ARGS)

test: setup up lint ## set up everything, start the stack, lint, run all tests
	@started=$$(date +%s); status=0; \
	$(PY) -m pytest tests $(SHARED) $(XDIST) $(PYTEST_ARGS) || status=1; \
	$(PY) -m pytest tests $(OUTAGE) $(XDIST) $(PYTEST_ARGS) || status=1; \
	echo "test phase: $$(( $$(date +%s) - started )) s"; exit $$status

demo: setup up ## set up everything, start the stack, run the demo (scripts/demo.sh)
	scripts/demo.sh

dashboard: ## serve the live dashboard on http://127.0.0.1:8050/ against the local stack
	.venv/bin/clickstream-dashboard --env local

up-spark-cluster: ## start a Spark standalone cluster: a master and two workers on spark://127.0.0.1:57077
	scripts/stack/spark-cluster.sh start

down-spark-cluster: ## stop the Spark standalone cluster
	scripts/stack/spark-cluster.sh stop

spark-connect: ## run a Spark Connect server with the project's jars on sc://127.0.0.1:15002
	$(PY) -m clickstream_pipeline.core.spark_connect --env local

bench: ; $(PY) -m benchmarks.run_all $(BENCH_ARGS) ## run every benchmark (BENCH_ARGS=--quick: smoke run); results in benchmarks/results/

SOAK_MINUTES ?= 60
soak: setup up ## the stack for SOAK_MINUTES (default 60) under faults, then every message and rollup reconciled (SOAK_ARGS: more flags)
	$(PY) -m benchmarks.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

WHEEL := dist/clickstream_pipeline-$(shell sed -n 's/^ *version="\(.*\)",/\1/p' setup.py)-py3-none-any.whl
WHEEL_SOURCES := setup.py $(shell find libs jobs sql conf -type f -not -path '*/__pycache__/*')

wheel: $(WHEEL) ## build the wheel into dist/ (again only when a source is newer)
$(WHEEL): $(WHEEL_SOURCES)
	$(PY) -m build --wheel --outdir dist .

clean: ## remove build output (keeps .stack and .venv)
	rm -rf build dist *.egg-info libs/*.egg-info

.PHONY: help setup jars up down status lint docs format check unit integration test demo dashboard bench soak wheel clean lane

# The runtime lane: Spark 4.1 on Python 3.12, as Databricks Runtime 18 LTS, in .venv-lane with
# the jars of .stack/jars-lane (scripts/lane.sh; `scripts/lane.sh env` names them to a session)
LANE_PY := .venv-lane/bin/python
LANE_TESTS := tests/unit tests/integration/test_bootstrap.py \
	tests/integration/test_ingest_failures.py::test_sigkill_at_several_points_then_restart

lane: setup up ## Spark 4.1 / Python 3.12 in .venv-lane: unit, bootstrap, SIGKILL tests (both tiers)
	scripts/lane.sh
	env $$(scripts/lane.sh env) \
	  $(LANE_PY) -m pytest $(LANE_TESTS) -m "not outage" $(XDIST) $(PYTEST_ARGS)
