# Streaming-timing benchmark (issue 6): not part of `make test`; writes docs/PERFORMANCE.md.
# BENCH_ARGS passes options to bench/run.py, e.g. BENCH_ARGS="--levels 1,10 --duration 5".
BENCH_ARGS ?=

.PHONY: bench
bench: $(VENV_STAMP) ## streaming-timing benchmark, writes docs/PERFORMANCE.md (BENCH_ARGS)
	$(PY) bench/run.py $(BENCH_ARGS)
