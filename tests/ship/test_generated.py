"""Files derived from another one are up to date (regenerate with `make ship-generate`)."""

from __future__ import annotations

from pathlib import Path

from . import generate, paths


def test_chart_dashboard_copy_equals_the_source() -> None:
    """The chart's files/ dashboard is byte-for-byte dashboards/langgraph-stream-exporter.json."""
    assert paths.CHART_DASHBOARD.read_bytes() == paths.DASHBOARD.read_bytes()


def test_alerts_file_is_the_chart_rules_with_default_values(helm: Path) -> None:
    """alerts/langgraph-stream-exporter.rules.yaml is what the chart's rule template renders now."""
    assert paths.RULES.read_text() == generate.rules_file()


def test_sidecar_example_is_up_to_date(helm: Path) -> None:
    """examples/sidecar-deployment.yaml is what the chart renders from examples/sidecar-values.yaml."""
    assert paths.SIDECAR_EXAMPLE.read_text() == generate.sidecar_example()
