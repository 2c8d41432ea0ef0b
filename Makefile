# Switchboard: two commands do everything on a fresh machine.
#   make run    set up, start Kafka + PostgreSQL + the four services, feed the demo, show a summary
#   make test   set up and run the whole suite against the real broker and database
SHELL := /bin/bash
.DEFAULT_GOAL := help
# The first of these that is Python 3.11 or newer (pyproject.toml's requires-python).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
  $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; exit; }; \
  done; echo python3)
VENV := .venv
PY := $(VENV)/bin/python
SB := $(VENV)/bin/switchboard
LOCK := requirements.lock
STAMP := $(VENV)/.installed
DEMO_SECONDS ?= 0

.PHONY: help python setup prereqs browser lock lock-check infra-up infra-down run test \
        test-unit lint typecheck schemas bench bench-e2e fuzz clean test-cluster test-k8s image

help:
	@echo "make run        run the system with a live demo feed and the console (DEMO_SECONDS=N to stop after N s)"
	@echo "make test       run every test against a real Kafka broker and PostgreSQL"
	@echo "make test-unit  only the fast tests that need no broker or database"
	@echo "make lint       ruff and mypy --strict (pyproject.toml has their rules); CI runs it first"
	@echo "make schemas    regenerate JSON Schema and AsyncAPI in docs/ from the contracts"
	@echo "make bench      benchmarks, recorded in docs/benchmarks.md"
	@echo "make bench-e2e  the whole pipeline under load (about 10 min), recorded likewise"
	@echo "make fuzz       100,000 fuzz cases through intake (random seeds; FUZZ_RANDOM=0: fixed)"
	@echo "make lock       regenerate requirements.lock after editing pyproject.toml's dependencies"
	@echo "make infra-down stop the local Kafka and PostgreSQL started by make run"
	@echo "make test-cluster  the secure (SASL_SSL + TLS) and three-broker tests only (~4 min)"
	@echo "make test-k8s   validate deploy/kubernetes (kubeconform, CRD schemas)"
	@echo "make image      build the OCI image with podman (Containerfile)"
	@echo "make clean      stop them and delete their data (.switchboard/ and the database's dir)"

python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "Switchboard needs Python 3.11 or newer; '$(PYTHON)' is:" \
	    "$$($(PYTHON) --version 2>/dev/null || echo 'not found')."; \
	  echo "Install one (Debian 12 and Ubuntu 24.04: apt-get install python3 python3-venv)" \
	    "and run e.g. 'make test PYTHON=python3.11'."; exit 1; }

# The virtualenv, installed from the lock with hashes checked, then the project itself without
# dependencies; redone when pyproject.toml or the lock changes. A lock that no longer matches
# pyproject.toml's dependencies is regenerated first (commit it).
$(STAMP): pyproject.toml $(LOCK) | python
	@$(PYTHON) -P shared/infra/prereqs.py venv
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PYTHON) -P tools/lock.py --ensure
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)
	PYTHONWARNINGS="ignore:Editable installation" \
	  $(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

# Java 17+, Maven and the PostgreSQL server: apt-get installs what is missing (as root or with
# sudo) on Debian/Ubuntu; elsewhere it prints the command to run.
prereqs: | python
	@$(PYTHON) -P shared/infra/prereqs.py java maven postgresql

# The console's browser tests drive the system's Chromium (Debian's package: apt-get installs it
# when missing, as root or with sudo); Playwright never downloads a browser of its own.
browser: | python
	@$(PYTHON) -P shared/infra/prereqs.py chromium

lock: | python
	$(PYTHON) -P tools/lock.py

lock-check: | python
	$(PYTHON) -P tools/lock.py --check

# INFRA_ARGS="--secure" (Kafka SASL_SSL + PostgreSQL TLS) or "--brokers 3"; docs/operations.md.
INFRA_ARGS ?=
infra-up: setup prereqs
	$(SB) infra up $(INFRA_ARGS)
	$(SB) db migrate
	$(SB) topics create

infra-down: setup
	$(SB) infra down

run: infra-up
	$(PY) deploy/local/demo/run.py --seconds $(DEMO_SECONDS)

test: setup prereqs browser
	$(PY) -m pytest -q -ra

test-unit: setup
	$(PY) -m pytest -q -m "not integration"

# Clusters of their own: Kafka over SASL_SSL with PostgreSQL over TLS, and three brokers with one
# killed under load.
test-cluster: setup prereqs
	$(PY) -m pytest -q -ra -m cluster tests/integration

test-k8s: setup
	$(PY) -m pytest -q tests/unit/test_kubernetes_manifests.py

IMAGE ?= switchboard:dev
image:
	podman build -t $(IMAGE) -f Containerfile .

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy cli shared services

schemas: setup
	$(SB) contracts export docs

bench: infra-up
	$(PY) benchmarks/case_log_append.py
	$(PY) benchmarks/router_decisions.py --accuracy
	$(PY) benchmarks/sla_timers.py
	$(PY) benchmarks/adversarial.py
	$(PY) benchmarks/redaction.py
	$(PY) benchmarks/escalation_inputs.py
	$(PY) benchmarks/console.py
	$(PY) benchmarks/round_trip.py

# Intake's fuzzer at 10x the cases of `make test` (docs/intake.md, "Limits and bad input").
FUZZ_RANDOM ?= 1
fuzz: setup
	SWITCHBOARD_FUZZ_SCALE=10 SWITCHBOARD_FUZZ_RANDOM=$(FUZZ_RANDOM) \
		$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_fuzz_intake.py

# Starts its own broker and database in .switchboard/bench; BENCH_ARGS=--help lists the knobs.
bench-e2e: setup
	$(PY) benchmarks/e2e.py $(BENCH_ARGS)

clean:
	-$(SB) infra down --purge
	rm -rf .switchboard
