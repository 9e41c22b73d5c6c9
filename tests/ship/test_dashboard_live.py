"""Dashboard queries against a real Prometheus that has scraped the daemon probing the demo graphs.

Needs the fixture `live_prometheus_url` (provided by the lead's test setup: a Prometheus on
127.0.0.1 that has scraped a running exporter probing `langgraph dev` for long enough that each
counter and histogram has increased between two scrapes). Without the fixture these tests error;
they never skip.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from . import paths

queries = paths.load_dashboard_queries()

pytestmark = pytest.mark.integration

DASHBOARD: dict[str, Any] = queries.load(paths.DASHBOARD)
ALL_QUERIES = list(queries.iter_queries(DASHBOARD))
# The panels the acceptance criteria require data from: success, run TTFT, ITL.
MUST_HAVE_DATA = ["Probe success", "Run time to first token", "Inter-token latency by node"]


def _ids(qs: list[Any]) -> list[str]:
    return [f"{q.panel} {q.ref_id}".strip() for q in qs]


def _finite_values(answer: dict[str, Any]) -> list[float]:
    values = [float(series["value"][1]) for series in answer["data"]["result"]]
    return [v for v in values if math.isfinite(v)]


@pytest.mark.parametrize("query", ALL_QUERIES, ids=_ids(ALL_QUERIES))
def test_dashboard_query_runs_against_the_scraped_daemon(
    query: Any, live_prometheus_url: str
) -> None:
    """Each dashboard expression, with its variables filled in, runs without error."""
    expr = queries.render(query.expr, queries.default_variables(DASHBOARD))
    answer = queries.run(live_prometheus_url, expr)
    assert answer["status"] == "success", answer.get("error")


@pytest.mark.parametrize("title", MUST_HAVE_DATA)
def test_panel_returns_data(title: str, live_prometheus_url: str) -> None:
    """Every query of the success, TTFT and ITL panels returns at least one finite value."""
    variables = queries.default_variables(DASHBOARD)
    panel_queries = [q for q in ALL_QUERIES if q.panel == title]
    assert panel_queries
    for query in panel_queries:
        answer = queries.run(live_prometheus_url, queries.render(query.expr, variables))
        assert answer["status"] == "success", answer.get("error")
        assert _finite_values(answer), f"{title} {query.ref_id} returned no data: {query.expr}"


def test_target_variable_lists_the_probed_targets(live_prometheus_url: str) -> None:
    """The target variable's query finds the targets the daemon probes."""
    (variable,) = [q for q in ALL_QUERIES if q.panel == "variable target"]
    answer = queries.run(
        live_prometheus_url, queries.render(variable.expr, queries.default_variables(DASHBOARD))
    )
    assert [series["metric"].get("target") for series in answer["data"]["result"]]
