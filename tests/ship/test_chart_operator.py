"""The chart speaks the exporter's language: its schema accepts exactly the durations the
exporter's parser accepts (`helm lint` on the parser's own examples), and the process's grace
period is derived from the pod's terminationGracePeriodSeconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.config import DURATION_EXAMPLES_INVALID, DURATION_EXAMPLES_VALID, parse_duration

from . import paths
from .conftest import Render, container, only, run


def _lint_interval(helm: Path, tmp_path: Path, value: object) -> bool:
    values = tmp_path / "values.yaml"
    # JSON (a subset of YAML): every string stays a string (YAML 1.2 would read `1e3` as 1000).
    values.write_text(json.dumps({"config": {
        "defaults": {"timeout": {"total": value}},
        "targets": [{"name": "a", "url": "http://lg:2024", "assistant_id": "agent",
                     "interval": value}]}}))  # fmt: skip
    proc = run([helm, "lint", "--strict", paths.CHART, "-f", values])
    return proc.returncode == 0


def _parses(value: object) -> bool:
    try:
        parse_duration(value)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("value", DURATION_EXAMPLES_VALID)
def test_schema_accepts_what_the_parser_accepts(helm: Path, tmp_path: Path, value: str) -> None:
    """A duration the exporter accepts (`1m30s`, `1d`, `1w` …) passes `helm lint`."""
    assert _parses(value)
    assert _lint_interval(helm, tmp_path, value), f"helm lint rejected {value!r}"


@pytest.mark.parametrize("value", [*DURATION_EXAMPLES_INVALID, "1.5m30s", "0d"])
def test_schema_rejects_what_the_parser_rejects(helm: Path, tmp_path: Path, value: str) -> None:
    """A duration the exporter rejects fails `helm lint` (no install that crash-loops)."""
    assert not _parses(value)
    assert not _lint_interval(helm, tmp_path, value), f"helm lint accepted {value!r}"


@pytest.mark.parametrize("value", [30, 2.5])
def test_schema_accepts_numbers_of_seconds(helm: Path, tmp_path: Path, value: float) -> None:
    """A YAML number is seconds for both."""
    assert _parses(value) and _lint_interval(helm, tmp_path, value)


def _grace_env(render: Render, *args: str) -> str:
    env = container(only(render(*args), "Deployment"))["env"]
    (value,) = [e["value"] for e in env if e["name"] == "LGSE_GRACE_PERIOD_S"]
    return str(value)


def test_grace_period_env_follows_termination_grace_period(render: Render) -> None:
    """LGSE_GRACE_PERIOD_S = terminationGracePeriodSeconds - shutdownMarginSeconds, by
    default and when either is changed; the pod's value is the chart's."""
    docs = render()
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 60
    assert _grace_env(render) == "55"
    assert _grace_env(render, "--set", "terminationGracePeriodSeconds=120") == "115"
    assert _grace_env(render, "--set", "shutdownMarginSeconds=10") == "50"
    assert _grace_env(render, "--set", "terminationGracePeriodSeconds=3") == "1"
    assert parse_duration(_grace_env(render)) == 55.0


def test_setting_the_grace_env_by_hand_fails_the_render(helm: Path) -> None:
    """env.LGSE_GRACE_PERIOD_S would disagree with the pod: the chart refuses it."""
    proc = run([helm, "template", "x", paths.CHART, "--set", "env.LGSE_GRACE_PERIOD_S=30"])
    assert proc.returncode != 0
    assert "derived from terminationGracePeriodSeconds" in proc.stderr
