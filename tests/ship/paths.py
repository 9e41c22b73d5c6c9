"""Repository paths and tool locations shared by the ship tests and the generator."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Final

REPO: Final = Path(__file__).resolve().parents[2]
TOOLS_BIN: Final = REPO / ".tools" / "bin"
CHART: Final = REPO / "helm" / "langgraph-stream-exporter"
CHART_CI_VALUES: Final = tuple(sorted((CHART / "ci").glob("*.yaml")))
SIDECAR_VALUES: Final = CHART / "examples" / "sidecar-values.yaml"
INGRESS_VALUES: Final = CHART / "examples" / "ingress-values.yaml"
#: Every values file under examples/: each must pass the checks of the ci/ ones.
EXAMPLE_VALUES: Final = tuple(sorted((CHART / "examples").glob("*-values.yaml")))
SIDECAR_EXAMPLE: Final = CHART / "examples" / "sidecar-deployment.yaml"
DASHBOARD: Final = REPO / "dashboards" / "langgraph-stream-exporter.json"
CHART_DASHBOARD: Final = CHART / "files" / "langgraph-stream-exporter.json"
RULES: Final = REPO / "alerts" / "langgraph-stream-exporter.rules.yaml"
RULE_TESTS: Final = tuple(sorted((REPO / "alerts" / "tests").glob("*.yaml")))
DOCKERFILE: Final = REPO / "Dockerfile"


def tool(name: str) -> Path:
    """Path of a tool installed by scripts/install-tools.sh; raises if it is missing (never skip)."""
    path = TOOLS_BIN / name
    if not path.exists():
        msg = f"{path} is missing: run `make tools` (scripts/install-tools.sh) first"
        raise FileNotFoundError(msg)
    return path


def load_dashboard_queries() -> ModuleType:
    """dashboards/queries.py as a module (dashboards/ is not a package)."""
    name = "langgraph_dashboard_queries"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "dashboards" / "queries.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while the class is created
    spec.loader.exec_module(module)
    return module
