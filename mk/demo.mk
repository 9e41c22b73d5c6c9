# Demo LangGraph project (demo/), its dev server and the recorded SSE fixtures (tests/data/sse/).
# Included by the top Makefile, which defines PYTHON, PY and VENV_STAMP.

DEMO_STAMP := demo/.venv/.stamp

.PHONY: demo-venv devserver record-fixtures

# The LangGraph server gets its own venv: the exporter must not depend on langgraph.
$(DEMO_STAMP): demo/requirements.txt
	test -x demo/.venv/bin/python || $(PYTHON) -m venv demo/.venv
	demo/.venv/bin/pip install -q -r demo/requirements.txt
	touch $@

demo-venv: $(DEMO_STAMP) ## create demo/.venv with the LangGraph server
# Foreground dev server on 127.0.0.1 (a free port unless DEVSERVER_ARGS="--port P"); Ctrl-C stops it.
devserver: $(VENV_STAMP) $(DEMO_STAMP) ## foreground LangGraph dev server with the demo graphs; prints its URL (DEVSERVER_ARGS="--port 2024")
	$(PY) demo/devserver.py $(DEVSERVER_ARGS)

# Rewrites tests/data/sse/* from a fresh server (about 20 s); exits non-zero if a check fails.
record-fixtures: $(VENV_STAMP) demo-venv ## re-record tests/data/sse/ from a fresh server
	$(PY) scripts/record_fixtures.py
