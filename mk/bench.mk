# Streaming-timing benchmark: not part of `make test`; writes docs/PERFORMANCE.md.
# BENCH_ARGS passes options to bench/run.py, e.g. BENCH_ARGS="--levels 1,10 --duration 5".
BENCH_ARGS ?=

.PHONY: bench
# The benchmark compares transports: it needs the optional `[compare]` extra (aiohttp).
COMPARE_STAMP := $(VENV)/.compare-stamp
$(COMPARE_STAMP): $(VENV_STAMP)
	$(PY) -m pip install -q -e '.[compare]'
	touch $@

bench: $(VENV_STAMP) $(COMPARE_STAMP) ## streaming-timing benchmark, writes docs/PERFORMANCE.md (BENCH_ARGS)
	$(PY) bench/run.py $(BENCH_ARGS)
