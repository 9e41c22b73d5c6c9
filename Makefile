# langgraph-stream-exporter — every target sets up what it needs (Python >= 3.11 and make are enough).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.stamp
DEMO_STAMP := demo/.venv/.stamp
TOOLS_STAMP := .tools/.stamp
PYTEST_ARGS ?=

.PHONY: help venv demo test check lint typecheck contracts fmt pytest clean
.DEFAULT_GOAL := help

help:
	@echo "make demo    run the exporter against a local LangGraph dev server (no API keys)"
	@echo "make test    set up and run every check and test (what CI runs)"
	@echo "make check   lint + type check + import contracts + tests (same as test)"
	@echo "make bench   streaming-timing benchmark (docs/PERFORMANCE.md)"
	@echo "make soak    bounded soak run (docs/RELIABILITY.md)"

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	# [compare] too: the fault tests run every transport, the aiohttp one included.
	$(PY) -m pip install -q -e '.[dev,compare]'
	touch $@

venv: $(VENV_STAMP)

include $(wildcard mk/*.mk)

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV_STAMP)
	$(VENV)/bin/mypy

contracts: $(VENV_STAMP)
	$(VENV)/bin/lint-imports

fmt: $(VENV_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

pytest: $(VENV_STAMP) $(DEMO_STAMP) $(TOOLS_STAMP) $(JS_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck contracts pytest

check: test

clean:
	rm -rf $(VENV) demo/.venv .tools .mypy_cache .ruff_cache .pytest_cache

demo: $(VENV_STAMP) $(DEMO_STAMP)
	$(PY) scripts/demo.py
