# langgraph-stream-exporter — every target sets up what it needs (Python >= 3.11 and make are enough).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.stamp
DEMO_STAMP := demo/.venv/.stamp
TOOLS_STAMP := .tools/.stamp
PYTEST_ARGS ?=

.PHONY: help venv demo test check lint typecheck contracts fmt pytest clean settings-doc
.DEFAULT_GOAL := help

help: ## list every target (generated from these `## ` comments, so it cannot drift)
	@awk -F':[^#]*## ' '/^[a-zA-Z0-9_.-]+:[^=]*## / {printf "  make %-16s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	# [compare] too: the fault tests run every transport, the aiohttp one included.
	$(PY) -m pip install -q -e '.[dev,compare]'
	touch $@

venv: $(VENV_STAMP) ## create .venv with the exporter installed (editable) and its dev tools
include $(wildcard mk/*.mk)

lint: $(VENV_STAMP) ## ruff check and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV_STAMP) ## strict mypy
	$(VENV)/bin/mypy

contracts: $(VENV_STAMP) ## import-linter layer contracts (pyproject.toml)
	$(VENV)/bin/lint-imports

fmt: $(VENV_STAMP) ## ruff format and ruff check --fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

settings-doc: $(VENV_STAMP)  ## regenerate docs/SETTINGS.md from the Settings model
	$(PY) scripts/settings_doc.py

pytest: $(VENV_STAMP) $(DEMO_STAMP) $(TOOLS_STAMP) $(JS_STAMP) ## every test (PYTEST_ARGS passes options, e.g. PYTEST_ARGS=tests/test_sse.py)
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck contracts pytest ## set up and run every check and test (what CI runs)
check: test ## the same as test
clean: ## remove .venv, demo/.venv, .tools and caches
	rm -rf $(VENV) demo/.venv .tools .mypy_cache .ruff_cache .pytest_cache

demo: $(VENV_STAMP) $(DEMO_STAMP) $(JS_STAMP) ## real Python and JS LangGraph servers, the exporter probing them, a live per-node view (DEMO_DURATION=60 stops)
	$(PY) scripts/demo.py
