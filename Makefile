# Switchboard: two commands do everything on a fresh machine.
#   make run    set up, start Kafka + PostgreSQL + the four services, feed the demo, show a summary
#   make test   set up and run the whole suite against the real broker and database
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SB := $(VENV)/bin/switchboard
STAMP := $(VENV)/.installed
DEMO_SECONDS ?= 0

.PHONY: help setup infra-up infra-down run test test-unit test-integration lint typecheck \
        schemas bench fuzz clean

help:
	@echo "make run        run the system with a live demo feed (DEMO_SECONDS=N to stop after N s)"
	@echo "make test       run every test against a real Kafka broker and PostgreSQL"
	@echo "make test-unit  only the fast tests that need no broker or database"
	@echo "make lint       ruff and mypy"
	@echo "make schemas    regenerate JSON Schema and AsyncAPI in docs/ from the contracts"
	@echo "make bench      benchmarks, recorded in docs/benchmarks.md"
	@echo "make fuzz       100,000 fuzz cases through intake (random seeds; FUZZ_RANDOM=0: fixed)"
	@echo "make infra-down stop the local Kafka and PostgreSQL started by make run"

# The virtualenv and the project, reinstalled when pyproject.toml changes.
$(STAMP): pyproject.toml
	@command -v java >/dev/null || { echo "Java 17+ is needed for the local Kafka broker"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is needed to fetch the Kafka jars"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

infra-up: setup
	$(SB) infra up
	$(SB) db migrate
	$(SB) topics create

infra-down: setup
	$(SB) infra down

run: infra-up
	$(PY) deploy/local/demo/run.py --seconds $(DEMO_SECONDS)

test: setup
	$(PY) -m pytest -q -ra

test-unit: setup
	$(PY) -m pytest -q -m "not integration"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared services

schemas: setup
	$(SB) contracts export docs

bench: infra-up
	$(PY) benchmarks/case_log_append.py
	$(PY) benchmarks/router_decisions.py --accuracy
	$(PY) benchmarks/sla_timers.py
	$(PY) benchmarks/adversarial.py

# Intake's fuzzer at 10x the cases of `make test` (docs/intake.md, "Limits and bad input").
FUZZ_RANDOM ?= 1
fuzz: setup
	SWITCHBOARD_FUZZ_SCALE=10 SWITCHBOARD_FUZZ_RANDOM=$(FUZZ_RANDOM) \
		$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_fuzz_intake.py

clean:
	-$(SB) infra down
	rm -rf .switchboard
