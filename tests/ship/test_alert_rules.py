"""Alert rules: promtool checks them, and the unit tests cover every alert in every situation."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import generate, paths
from .conftest import run

# TTFT bucket bounds the exporter exposes (docs/WIRE.md §17): 0.01 doubling to 81.92, plus 0.5, 1, 2, 5, 163.84.
TTFT_BUCKETS = sorted({round(0.01 * 2**i, 2) for i in range(14)} | {0.5, 1, 2, 5, 163.84})


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(paths.RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _alert_names() -> list[str]:
    return [rule["alert"] for rule in _rules() if "alert" in rule]


def _unit_tests() -> list[dict[str, Any]]:
    return [test for path in paths.RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]]


def _cases(alert: str) -> list[tuple[str, bool]]:
    """(test name, fires) for every alert_rule_test of `alert`."""
    return [
        (test["name"], bool(case["exp_alerts"]))
        for test in _unit_tests()
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == alert
    ]


def test_promtool_check_rules_passes(promtool: Path) -> None:
    """`promtool check rules` accepts the rules file."""
    proc = run([promtool, "check", "rules", paths.RULES])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_unit_tests_pass(promtool: Path) -> None:
    """`promtool test rules` passes every unit test in alerts/tests/."""
    proc = run([promtool, "test", "rules", *paths.RULE_TESTS])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_issue_alerts_all_exist() -> None:
    """Failing, no success, fast and slow burn, TTFT and ITL regression, reload failed, exporter
    down, certificate expiry and buffered streams are defined."""
    assert sorted(_alert_names()) == [
        "LangGraphExporterConfigReloadFailed",
        "LangGraphExporterDown",
        "LangGraphExporterShardsIncomplete",
        "LangGraphITLRegression",
        "LangGraphProbeCertificateExpiring",
        "LangGraphProbeFailing",
        "LangGraphProbeNoRecentSuccess",
        "LangGraphProbeStreamBuffered",
        "LangGraphTTFTBudgetBurnFast",
        "LangGraphTTFTBudgetBurnSlow",
        "LangGraphTTFTRegression",
    ]


@pytest.mark.parametrize("alert", _alert_names())
def test_every_alert_has_a_firing_unit_test(alert: str) -> None:
    """Each alert has a unit test case in which it fires."""
    assert any(fires for _, fires in _cases(alert))


@pytest.mark.parametrize("alert", _alert_names())
@pytest.mark.parametrize("situation", ["healthy", "quiet"])
def test_every_alert_has_a_silent_unit_test(alert: str, situation: str) -> None:
    """Each alert has a unit test in which it stays silent on a healthy series and on a quiet one."""
    assert any(situation in name and not fires for name, fires in _cases(alert))


@pytest.mark.parametrize("alert", _alert_names())
def test_every_alert_has_summary_description_and_severity(alert: str) -> None:
    """Each alert has a summary, a description naming the target or instance (or, for the
    shards alert, which is about all replicas of a job together, the job), and a severity."""
    (rule,) = [rule for rule in _rules() if rule.get("alert") == alert]
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule["annotations"]["summary"]
    description = rule["annotations"]["description"]
    names = ("$labels.target", "$labels.instance")
    if alert == "LangGraphExporterShardsIncomplete":
        names = ("$labels.job",)
    assert any(name in description for name in names)


@pytest.mark.parametrize("alert", ["LangGraphITLRegression"])
def test_per_node_alerts_name_the_node(alert: str) -> None:
    """Alerts on per-node series name the node in their description."""
    (rule,) = [rule for rule in _rules() if rule.get("alert") == alert]
    assert "$labels.node" in rule["annotations"]["description"]


@pytest.mark.parametrize("alert", _alert_names())
def test_every_alert_has_a_runbook_section(alert: str) -> None:
    """The chart README has a runbook section for each alert (the runbook_url anchor)."""
    readme = (paths.CHART / "README.md").read_text()
    assert f"\n### {alert}\n" in readme


def test_slo_threshold_is_a_ttft_bucket() -> None:
    """The default TTFT SLO threshold is a real bucket bound, and the schema allows only those."""
    values = yaml.safe_load((paths.CHART / "values.yaml").read_text())
    schema = yaml.safe_load((paths.CHART / "values.schema.json").read_text())
    allowed = schema["properties"]["prometheusRule"]["properties"]["ttftSLO"]["properties"][
        "thresholdSeconds"
    ]
    assert values["prometheusRule"]["ttftSLO"]["thresholdSeconds"] in TTFT_BUCKETS
    assert sorted(allowed["enum"]) == TTFT_BUCKETS


def test_quiet_target_cases_depend_on_the_minimum_counts(tmp_path: Path, promtool: Path) -> None:
    """Without the minimum sample and failure counts, the quiet-target unit tests fail."""
    failed = _promtool_failures(
        promtool,
        tmp_path,
        "--set=prometheusRule.probeFailing.minFailures=1",
        "--set=prometheusRule.ttftSLO.minSamples=0",
        "--set=prometheusRule.regression.ttft.minSamples=0",
        "--set=prometheusRule.regression.itl.minSamples=0",
    )
    quiet = {f"name: {test['name']}," for test in _unit_tests() if "quiet" in test["name"]}
    guarded = {
        "name: probe failing is silent on a quiet target with one failed probe,",
        "name: burn-rate alerts are silent on a quiet target with one slow probe,",
        "name: TTFT regression is silent on a quiet target,",
        "name: ITL regression is silent on a quiet target,",
    }
    assert guarded <= quiet
    assert failed == guarded


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(p, id=p.name)
        for p in paths.CHART_CI_VALUES
        if "prometheusRule" in p.read_text()
    ],
)
def test_promtool_accepts_the_rules_rendered_with_ci_values(
    values: Path, promtool: Path, tmp_path: Path
) -> None:
    """The PrometheusRule rendered with non-default values (groupBy, thresholds) passes promtool."""
    rendered = generate.helm_template(
        "-f", str(values), "--show-only=templates/prometheusrule.yaml"
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(yaml.safe_load(rendered)["spec"]))
    proc = run([promtool, "check", "rules", rules])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _promtool_failures(promtool: Path, tmp_path: Path, *helm_args: str) -> set[str]:
    """Names of the unit tests that fail against the rules rendered with these helm args."""
    rendered = generate.helm_template(
        "--show-only=templates/prometheusrule.yaml",
        "--set=prometheusRule.enabled=true",
        *helm_args,
    )
    (tmp_path / paths.RULES.name).write_text(yaml.safe_dump(yaml.safe_load(rendered)["spec"]))
    tests = tmp_path / "tests"
    tests.mkdir()
    for path in paths.RULE_TESTS:
        shutil.copy(path, tests / path.name)
    proc = subprocess.run(
        [str(promtool), "test", "rules", *sorted(str(p) for p in tests.glob("*.yaml"))],
        capture_output=True,
        text=True,
        check=False,
    )
    output = (proc.stdout + proc.stderr).splitlines()
    return {line.strip() for line in output if line.strip().startswith("name:")}


def test_itl_regression_floor_is_low_enough_for_real_llm_gaps(
    tmp_path: Path, promtool: Path
) -> None:
    """A p95 ITL going from 15 to 45 ms fires with the default floor, not with the old 50 ms."""
    values = yaml.safe_load((paths.CHART / "values.yaml").read_text())
    assert values["prometheusRule"]["regression"]["itl"]["floorSeconds"] <= 0.015
    failed = _promtool_failures(
        promtool, tmp_path, "--set-json=prometheusRule.regression.itl.floorSeconds=0.05"
    )
    assert "name: p95 ITL of one node from 14.75ms to 44.75ms fires (a real LLM's gaps," in {
        f.split(" below")[0] for f in failed
    }


def test_exporter_down_job_is_the_service_monitors_job(render: Any) -> None:
    """Without `exporterDown.job` the alert watches the job the chart's ServiceMonitor sets
    (jobLabel app.kubernetes.io/name: the chart name); a set job is used as given."""
    docs = render("--set=prometheusRule.enabled=true", "--show-only=templates/prometheusrule.yaml")
    rules = [r for g in docs[0]["spec"]["groups"] for r in g["rules"]]
    (down,) = [r for r in rules if r.get("alert") == "LangGraphExporterDown"]
    assert 'up{job="langgraph-stream-exporter"} == 0' in down["expr"]
    (monitor,) = render(
        "--set=serviceMonitor.enabled=true", "--show-only=templates/servicemonitor.yaml"
    )
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    (service,) = render("--show-only=templates/service.yaml")
    assert service["metadata"]["labels"]["app.kubernetes.io/name"] == "langgraph-stream-exporter"
    docs = render(
        "--set=prometheusRule.enabled=true",
        "--set=prometheusRule.exporterDown.job=lgse",
        "--show-only=templates/prometheusrule.yaml",
    )
    rules = [r for g in docs[0]["spec"]["groups"] for r in g["rules"]]
    (down,) = [r for r in rules if r.get("alert") == "LangGraphExporterDown"]
    assert 'absent(up{job="lgse"})' in down["expr"]
