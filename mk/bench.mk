# Streaming-timing benchmark: not part of `make test`; writes docs/PERFORMANCE.md.
# BENCH_ARGS passes options to bench/run.py, e.g. BENCH_ARGS="--levels 1,10 --duration 5".
BENCH_ARGS ?=

.PHONY: bench
# SCALE_ARGS passes options to bench/scale.py (the daemon scale part, ~7 min; run it alone with
# `.venv/bin/python bench/scale.py`), e.g. SCALE_ARGS="--levels 10,100 --scrapes 2".
SCALE_ARGS ?=
# The benchmark compares transports: it needs the optional `[compare]` extra (aiohttp).
COMPARE_STAMP := $(VENV)/.compare-stamp
$(COMPARE_STAMP): $(VENV_STAMP)
	$(PY) -m pip install -q -e '.[compare]'
	touch $@

bench: $(VENV_STAMP) $(COMPARE_STAMP) ## streaming-timing and daemon scale benchmarks, write docs/PERFORMANCE.md
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/scale.py $(SCALE_ARGS)
