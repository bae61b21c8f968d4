# lfr: `make report` builds reports/vicreg.pdf from scratch; `make test` runs the fast tests.
# Everything installs itself on first use: Debian packages (WeasyPrint's libraries,
# fonts), the virtual environment in .venv, and the offline datasets the report needs.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SCALE ?= default
REPORTS ?= vicreg

.DEFAULT_GOAL := help
.PHONY: help setup system-deps data report test test-slow bench lint format clean-reports

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip "setuptools<81" wheel
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $@

system-deps: ## install the Debian packages WeasyPrint needs (only those missing)
	@bash scripts/system-deps.sh

setup: system-deps $(STAMP) ## system packages and the virtual environment

data: setup ## get the offline datasets the reports use
	$(PY) -m lfr_report data get fashion_mnist mnist

report: setup data ## run the experiments the reports need (if not stored yet) and write reports/*.pdf
	@for name in $(REPORTS); do $(PY) -m lfr_report report $$name --scale $(SCALE) || exit 1; done

test: setup ## fast tests (smoke scale, tiny data)
	$(PY) -m pytest -q

test-slow: setup ## the slow tests too (default-scale training)
	$(PY) -m pytest -q -m "slow or not slow"

bench: setup data ## time a VICReg training step against lightly's pipeline (CPU, minutes; see benchmarks/RESULTS.md)
	$(PY) benchmarks/bench_vicreg.py --json benchmarks/out/vicreg-cpu.json $(BENCH_ARGS)

CODE := lfr_report experiments tests benchmarks

lint: setup ## ruff checks and formatting check
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)

format: setup ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix $(CODE)
	$(VENV)/bin/ruff format $(CODE)

clean-reports: ## delete the built PDFs (runs are kept)
	rm -rf reports
