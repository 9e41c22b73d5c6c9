# Soak run: not part of `make test`. Probes 50 scripted targets with the real daemon for
# SOAK_DURATION seconds (default 15 min), samples RSS, fds and /healthz latency every 10 s, and
# writes the table and verdict into docs/RELIABILITY.md. Exits non-zero when the verdict fails.
#   make soak                      # the full 15-minute run
#   make soak SOAK_DURATION=120    # a short run
SOAK_DURATION ?= 900
SOAK_ARGS ?=

.PHONY: soak
soak: $(VENV_STAMP) ## bounded soak run, writes docs/RELIABILITY.md (SOAK_DURATION)
	$(PY) soak/run.py --duration $(SOAK_DURATION) $(SOAK_ARGS)
