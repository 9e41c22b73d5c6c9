"""Alert expressions against a real Prometheus that has scraped the daemon probing the demo graphs.

promtool's unit tests prove the logic on synthetic series; these prove the expressions match what
the daemon really exposes (metric names, label names, the `le` spelling). Needs the
`live_prometheus_url` fixture; errors without it, never skips.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from . import paths

queries = paths.load_dashboard_queries()

pytestmark = pytest.mark.integration

RULES: list[dict[str, Any]] = [
    rule for group in yaml.safe_load(paths.RULES.read_text())["groups"] for rule in group["rules"]
]


@pytest.mark.parametrize("rule", RULES, ids=[r["alert"] for r in RULES])
def test_alert_expression_runs_against_the_scraped_daemon(
    rule: dict[str, Any], live_prometheus_url: str
) -> None:
    """Each alert expression evaluates without error on the daemon's real series."""
    answer = queries.run(live_prometheus_url, rule["expr"])
    assert answer["status"] == "success", answer.get("error")


def test_slo_bucket_matcher_selects_the_daemons_bucket(live_prometheus_url: str) -> None:
    """The burn-rate rules' `le` matcher for the SLO threshold selects a real bucket series."""
    (rule,) = [r for r in RULES if r["alert"] == "LangGraphTTFTBudgetBurnFast"]
    selector = rule["expr"].split("rate(", 1)[1].split("[", 1)[0]
    answer = queries.run(live_prometheus_url, selector)
    assert answer["status"] == "success", answer.get("error")
    assert answer["data"]["result"], selector


@pytest.mark.parametrize("label", ["target", "assistant"])
def test_group_by_labels_exist_on_the_daemons_series(label: str, live_prometheus_url: str) -> None:
    """The labels the aggregated alerts group by are on the daemon's TTFT series."""
    answer = queries.run(
        live_prometheus_url,
        f"count by ({label}) (langgraph_probe_time_to_first_token_seconds_count)",
    )
    assert [series["metric"].get(label) for series in answer["data"]["result"]] != []
    assert all(series["metric"].get(label) for series in answer["data"]["result"])
