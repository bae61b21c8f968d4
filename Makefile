# lfr: `make report` builds reports/vicreg.pdf from scratch; `make test` runs the fast tests.
# Everything installs itself on first use: Debian packages (WeasyPrint's libraries,
# fonts), the virtual environment in .venv, and the offline datasets the report needs.

PYTHON ?= python3
VENV := .venv
ifdef LFR_SYSTEM_PYTHON
# Inside the Docker image: the package is installed into the image's Python, no .venv.
PY := $(PYTHON)
BIN :=
STAMP :=
else
PY := $(VENV)/bin/python
BIN := $(VENV)/bin/
STAMP := $(VENV)/.installed
endif
COMPOSE := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
SCALE ?= default
# which reports `make report` builds: all, or some of the names in lfr_report/registry.py
REPORTS ?= all
# where missing runs run: local (submitit subprocesses, PARALLEL at a time, default one per core), inline (this process) or slurm
EXECUTOR ?= local
PARALLEL ?=
# what `make test` needs from Debian: the one-node Slurm cluster it starts for the executor
# tests, and Fashion-MNIST, whose presence the dry-run plan of the default scale checks
TEST_PACKAGES := slurmctld slurmd slurm-client munge dataset-fashion-mnist
# `make test-container`: podman (with runc) builds and runs the images, debootstrap makes their base
CONTAINER_PACKAGES := podman runc debootstrap docker-compose

.DEFAULT_GOAL := help
.PHONY: help setup system-deps data report test test-rehearsal test-cluster test-slow test-stack test-container bench gpu-check lint lint-docker docs docs-tables docs-serve format clean-reports \
	stack-up stack-down omniboard omniboard-local

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip "setuptools<81" wheel
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $@

system-deps: ## install the Debian packages WeasyPrint needs (only those missing)
	@[ -n "$(LFR_SYSTEM_PYTHON)" ] || bash scripts/system-deps.sh

setup: system-deps $(STAMP) ## system packages and the virtual environment

data: setup ## get the offline datasets the reports use
	$(PY) -m lfr_report data get fashion_mnist mnist

report: setup data ## run the experiments the reports need (if not stored yet) and write reports/*.pdf (REHEARSE=1: sizes shrunk)
	$(PY) -m lfr_report report $(REPORTS) --scale $(SCALE) $(if $(REHEARSE),--rehearse) --executor $(EXECUTOR) $(if $(PARALLEL),--parallel $(PARALLEL))

test: setup ## fast tests (smoke scale, tiny data; live MongoDB-protocol and one-node Slurm tests)
	@[ -n "$(LFR_SYSTEM_PYTHON)" ] || bash scripts/system-deps.sh $(TEST_PACKAGES)
	$(PY) -m pytest -q

test-rehearsal: setup ## every report from `full` configs with sizes shrunk, on CIFAR-10-format files the test writes (minutes)
	$(PY) -m pytest -q -m rehearsal

test-cluster: setup ## as root: two hosts (network namespaces) with a two-node Slurm; DDP and a report across them (minutes)
	@bash scripts/system-deps.sh $(TEST_PACKAGES) iproute2
	$(PY) -m pytest -q -m cluster

test-container: setup ## as root: build the images with podman from a locally made Debian base and run them (minutes)
	@bash scripts/system-deps.sh $(CONTAINER_PACKAGES)
	$(PY) -m pytest -q -m container

test-slow: setup ## the slow tests too (default-scale training)
	$(PY) -m pytest -q -m "slow or not slow"

bench: setup data ## time a VICReg training step against lightly's pipeline (CPU, minutes; see benchmarks/RESULTS.md)
	$(PY) benchmarks/bench_vicreg.py --json benchmarks/out/vicreg-cpu.json $(BENCH_ARGS)

gpu-check: setup ## on a CUDA machine: bench, a stretch of vicreg with full, the rehearsal reports -> one JSON (< 8 min)
	$(PY) scripts/gpu-check.py $(GPU_CHECK_ARGS)

CODE := lfr_report experiments tests benchmarks

lint: setup lint-docker ## ruff checks and formatting check, Dockerfiles and the compose file
	$(BIN)ruff check $(CODE)
	$(BIN)ruff format --check $(CODE)

lint-docker: setup ## hadolint on the Dockerfiles, `docker-compose config -q` on the compose file
	$(BIN)hadolint --failure-threshold info Dockerfile docker/omniboard.Dockerfile tests/container/*.Dockerfile
	@bash scripts/system-deps.sh docker-compose
	docker-compose --env-file .env.example config -q
	@echo "Dockerfiles and docker-compose.yml: ok"

docs: setup ## the manual (docs/, MkDocs Material) built into site/; --strict: a broken link or anchor fails
	NO_MKDOCS_2_WARNING=1 $(BIN)mkdocs build --strict --quiet
	@echo "manual written: site/index.html"

docs-tables: setup ## rewrite each report page's run table (docs/reports/NAME.md) from the report's declaration
	$(BIN)python scripts/docs-tables.py

docs-serve: setup ## the manual at http://127.0.0.1:8000, rebuilt as you edit docs/
	NO_MKDOCS_2_WARNING=1 $(BIN)mkdocs serve

format: setup ## apply ruff's fixes and formatting
	$(BIN)ruff check --fix $(CODE)
	$(BIN)ruff format $(CODE)

.env:
	@echo "error: no .env: copy .env.example to .env and choose a password (cp .env.example .env)" >&2; exit 1

stack-up: .env ## start MongoDB and Omniboard (Docker), bound to 127.0.0.1
	$(COMPOSE) up -d --build mongo omniboard
	@$(MAKE) -s omniboard

stack-down: ## stop the stack (the MongoDB volume and its runs stay)
	$(COMPOSE) down

omniboard: .env ## print Omniboard's URL and the LFR_MONGO_URL that records runs into the stack
	@set -a; . ./.env; set +a; \
	echo "Omniboard: http://$${LFR_BIND:-127.0.0.1}:$${OMNIBOARD_PORT:-9000}/sacred"; \
	echo "record runs there: export LFR_MONGO_URL=mongodb://$$MONGO_ROOT_USER:<password>@$${LFR_BIND:-127.0.0.1}:$${MONGO_PORT:-27017}/$${MONGO_DB:-lfr}?authSource=admin"

omniboard-local: setup ## no Docker: a local MongoDB-compatible server with runs/ copied in, and Omniboard on it
	$(PY) -m lfr_report.tracking.local_stack

test-stack: setup ## the Omniboard browser test (installs Chromium and Omniboard first)
	@bash scripts/system-deps.sh chromium
	$(PY) -m pytest -q -m omniboard

clean-reports: ## delete the built PDFs (runs are kept)
	rm -rf reports
