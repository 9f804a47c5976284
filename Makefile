# sqlrooms_nb: `make demo` and `make test` work from a fresh clone (Debian 12, python3, node + npm).
#
# Set-up steps leave stamp files, so a repeated run skips what is done:
#   .venv/bin/python           the virtual environment (python3 -m venv)
#   node_modules/.snb-npm-ci   `npm ci` done for this package-lock.json
#   src/sqlrooms_nb/static/widget.js   the JS bundle (`npm run build`), rebuilt when js/ changes
#   .venv/.snb-demo, .venv/.snb-test   the editable install with its extras
#   /usr/bin/chromium          Debian's chromium, for the browser tests (apt-get when missing)
#   PostgreSQL's initdb        Debian's postgresql, for the shared-lake tests (apt-get when
#                              missing; its system service is not started: the tests start
#                              their own server in a temporary directory)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 2718
# The contract tests live beside the clone (../shared/contract), in CI as here.
CONTRACT ?= ../shared/contract
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet

BUNDLE := src/sqlrooms_nb/static/widget.js
JS_SOURCES := $(shell find js -type f -not -name '*.test.ts' -not -path 'js/testing/*' 2>/dev/null) \
	package.json tsconfig.json

.PHONY: help demo test test-slow bench setup setup-test postgres-server lint typecheck js-test pytest browser-test clean

help:
	@echo "make demo   set up .venv, build the widget, start marimo on http://$(HOST):$(PORT)"
	@echo "make test   set up (plus Debian chromium), then ruff, mypy, tsc, JS tests, pytest"
	@echo "make test-slow   the same pytest suite at full size (fault, fuzz and load tests)"
	@echo "make bench  the benchmark suite at full size (BENCH_ARGS='--size medium --only persist')"

# --- set-up ---------------------------------------------------------------------------------

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

node_modules/.snb-npm-ci: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

$(BUNDLE): node_modules/.snb-npm-ci $(JS_SOURCES)
	npm run build
	test -f $@ || { echo "npm run build did not write $@" >&2; exit 1; }
	touch $@

# The install is editable: the package (and its static/ bundle) is used in place from src/.
# The bundle is built first, so hatch_build.py finds it and runs no npm of its own.
$(VENV)/.snb-demo: pyproject.toml hatch_build.py | $(BIN)/python $(BUNDLE)
	$(PIP) install -e '.[demo]'
	touch $@

$(VENV)/.snb-test: pyproject.toml hatch_build.py | $(BIN)/python $(BUNDLE)
	$(PIP) install -e '.[demo,test,shared,bench]'
	touch $@ $(VENV)/.snb-demo

$(CHROMIUM):
	$(SUDO) apt-get update
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium
	test -x $@

setup: $(VENV)/.snb-demo $(BUNDLE)

# The package's maintainer scripts would start the system cluster: policy-rc.d says no.
postgres-server:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then \
		exit 0; fi; \
	$(SUDO) apt-get update; \
	printf '#!/bin/sh\nexit 101\n' > /tmp/snb-policy-rc.d; chmod +x /tmp/snb-policy-rc.d; \
	had_policy=; [ -e /usr/sbin/policy-rc.d ] && had_policy=1; \
	[ -n "$$had_policy" ] || $(SUDO) cp /tmp/snb-policy-rc.d /usr/sbin/policy-rc.d; \
	status=0; DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y postgresql || status=$$?; \
	[ -n "$$had_policy" ] || $(SUDO) rm -f /usr/sbin/policy-rc.d; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null; exit $$status

setup-test: $(VENV)/.snb-test $(BUNDLE) $(CHROMIUM) postgres-server

# --- the two commands -----------------------------------------------------------------------

demo: setup
	@echo
	@echo "  sqlrooms_nb demo: open http://$(HOST):$(PORT) in two browser tabs (Ctrl-C stops)"
	@echo "  storage: $${SQLROOMS_NB_LAKE:-.sqlrooms} (DuckLake; set SQLROOMS_NB_LAKE to change)"
	@echo
	$(BIN)/marimo edit notebooks/demo.py --headless --no-token --no-sandbox \
		--skip-update-check --host $(HOST) --port $(PORT)

# In this order, stopping at the first failure.
test: setup-test
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory typecheck
	$(MAKE) --no-print-directory js-test
	$(MAKE) --no-print-directory pytest

lint: setup-test
	$(BIN)/ruff check .
	$(BIN)/python scripts/build_demo_ipynb.py --check

typecheck: setup-test
	$(BIN)/mypy
	npm run typecheck

js-test: setup-test
	npm test

# Unit, contract and browser tests in one run. Explicit config and rootdir, since
# $(CONTRACT) lies outside the repo. The contract tests alone make "no tests ran" impossible.
pytest: setup-test
	test -d $(CONTRACT) || { echo "missing contract tests: $(CONTRACT)" >&2; exit 1; }
	$(BIN)/python -m pytest -c pyproject.toml --rootdir . tests $(CONTRACT)

# The whole suite at full size (kill points, fuzz cases, load seconds): see README "Guarantees".
test-slow: setup-test
	test -d $(CONTRACT) || { echo "missing contract tests: $(CONTRACT)" >&2; exit 1; }
	$(BIN)/python -m pytest -c pyproject.toml --rootdir . --slow --timeout 1800 tests $(CONTRACT)

# The benchmark suite, full size: one table, plots and results.json in benchmarks/results/
# (benchmarks/README.md). CI runs the smoke size through tests/test_benchmarks_smoke.py.
BENCH_ARGS ?=
bench: $(VENV)/.snb-test $(BUNDLE)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

browser-test: setup-test
	$(BIN)/python -m pytest -c pyproject.toml --rootdir . tests/browser

clean:
	rm -rf $(VENV) node_modules src/sqlrooms_nb/static .js-test-build test-artifacts
