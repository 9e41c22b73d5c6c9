"""The Grafana dashboard: structure, variables, and every PromQL expression valid on a real Prometheus."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from . import paths

queries = paths.load_dashboard_queries()

GAUGES = {
    "success",
    "duration_seconds",
    "last_success_timestamp_seconds",
    "config_last_reload_successful",
    "buffered_gap_ratio",
    "max_tokens_per_read",
    "stream_buffered",
    "http_status_code",
    "ssl_earliest_cert_expiry",
}
COUNTERS = {"runs_total", "tokens_total", "sink_errors_total", "probes_skipped_total"}
HISTOGRAMS = {
    "time_to_headers_seconds",
    "time_to_first_event_seconds",
    "time_to_first_token_seconds",
    "node_time_to_first_token_seconds",
    "inter_token_latency_seconds",
    "time_per_output_token_seconds",
    "node_duration_seconds",
    "run_duration_seconds",
    "time_to_first_answer_token_seconds",
}
# The exporter's metric families (docs/WIRE.md §17), as they appear in PromQL.
METRICS = {f"langgraph_probe_{name}" for name in GAUGES | COUNTERS} | {
    f"langgraph_probe_{name}_{suffix}"
    for name in HISTOGRAMS
    for suffix in ("bucket", "count", "sum")
}
# Families without a node label, and families not per target at all (exporter-wide).
PER_NODE = {
    "node_time_to_first_token_seconds",
    "inter_token_latency_seconds",
    "time_per_output_token_seconds",
}
PER_NODE |= {"node_duration_seconds", "tokens_total", "buffered_gap_ratio"}
EXPORTER_WIDE = {"config_last_reload_successful", "sink_errors_total", "probes_skipped_total"}

DASHBOARD: dict[str, Any] = queries.load(paths.DASHBOARD)
ALL_QUERIES = list(queries.iter_queries(DASHBOARD))
PANEL_QUERIES = [q for q in ALL_QUERIES if not q.panel.startswith("variable ")]


def _ids(qs: list[Any]) -> list[str]:
    return [f"{q.panel} {q.ref_id}".strip() for q in qs]


def _panels() -> list[dict[str, Any]]:
    return list(queries._panels(DASHBOARD["panels"]))


def _families(expr: str) -> set[str]:
    names = set(re.findall(r"\blanggraph_probe_\w+", expr))
    return {re.sub(r"^langgraph_probe_|_(bucket|count|sum)$", "", name) for name in names}


def test_dashboard_has_uid_title_and_tags() -> None:
    """The dashboard has a stable uid (for links), a title and tags."""
    assert DASHBOARD["uid"] == "langgraph-stream-exporter"
    assert DASHBOARD["title"]
    assert "langgraph" in DASHBOARD["tags"]


def test_dashboard_has_datasource_target_and_node_variables() -> None:
    """Variables: a Prometheus data source, and multi-value target and node with an All option."""
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("target", "node"):
        assert variables[name]["multi"] is True
        assert variables[name]["includeAll"] is True


def test_location_variable_lists_locations_with_an_all_that_matches_no_label() -> None:
    """A `location` variable (multi, All) lists LGSE_LOCATION values; its All is `.*`, which also
    matches series without a location label; it comes before `instance`, which it narrows."""
    names = [v["name"] for v in DASHBOARD["templating"]["list"]]
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    location = variables["location"]
    assert location["multi"] is True and location["includeAll"] is True
    assert location["allValue"] == ".*"
    assert location["query"]["query"] == "label_values(langgraph_probe_build_info, location)"
    assert names.index("location") < names.index("instance")


def test_every_query_and_variable_is_filtered_by_location() -> None:
    """Every panel query and the instance, target and node variables match `location=~"$location"`
    (every exporter series carries the label when LGSE_LOCATION is set)."""
    filtered = [q for q in ALL_QUERIES if q.panel != "variable location"]
    assert [q.panel for q in filtered if 'location=~"$location"' not in q.expr] == []


def test_every_panel_uses_the_datasource_variable() -> None:
    """Panels and their queries use ${datasource}, so the dashboard works with any Prometheus."""
    for panel in _panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"]), panel["title"]


def test_panel_ids_are_unique() -> None:
    """No two panels share an id (Grafana would drop one)."""
    ids = [panel["id"] for panel in _panels()]
    assert len(ids) == len(set(ids))


def test_panels_fit_the_grid() -> None:
    """Every panel lies within Grafana's 24 columns."""
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in _panels())


@pytest.mark.parametrize(
    "title", ["Probe success", "Run time to first token", "Inter-token latency by node"]
)
def test_the_success_ttft_and_itl_panels_exist(title: str) -> None:
    """The panels the acceptance criteria check for data exist under these titles."""
    assert title in {q.panel for q in PANEL_QUERIES}


@pytest.mark.parametrize("query", PANEL_QUERIES, ids=_ids(PANEL_QUERIES))
def test_every_query_uses_only_exporter_metrics(query: Any) -> None:
    """Every langgraph_probe_* name in a query is one the exporter exposes."""
    names = set(re.findall(r"\blanggraph_probe_\w+", query.expr))
    assert names
    assert names <= METRICS


@pytest.mark.parametrize("query", PANEL_QUERIES, ids=_ids(PANEL_QUERIES))
def test_every_query_honours_the_target_and_node_variables(query: Any) -> None:
    """Per-target metrics are filtered by $target, and per-node ones by $node too."""
    families = _families(query.expr)
    if families <= EXPORTER_WIDE:
        return
    assert 'target=~"$target"' in query.expr
    if families & PER_NODE:
        assert 'node=~"$node"' in query.expr


@pytest.mark.parametrize("query", ALL_QUERIES, ids=_ids(ALL_QUERIES))
def test_every_query_runs_on_a_real_prometheus(query: Any, empty_prometheus: str) -> None:
    """Rendered with the dashboard's variables, each expression parses and evaluates in Prometheus."""
    expr = queries.render(query.expr, queries.default_variables(DASHBOARD))
    answer = queries.run(empty_prometheus, expr)
    assert answer["status"] == "success", answer.get("error")


def test_render_rejects_an_unknown_variable() -> None:
    """A typo in a variable name is an error, not a query that silently matches nothing."""
    with pytest.raises(KeyError, match=r"\$tagret"):
        queries.render('up{target=~"$tagret"}', queries.default_variables(DASHBOARD))


def test_extractor_reads_collapsed_rows_and_variables() -> None:
    """Queries inside a collapsed row and label_values() variables are extracted too."""
    dashboard = {
        "panels": [
            {
                "type": "row",
                "title": "r",
                "panels": [{"title": "inner", "targets": [{"refId": "A", "expr": "up"}]}],
            }
        ],
        "templating": {
            "list": [
                {"name": "t", "type": "query", "query": {"query": 'label_values(up{a="b"}, job)'}}
            ]
        },
    }
    extracted = [(q.panel, q.expr) for q in queries.iter_queries(dashboard)]
    assert extracted == [("inner", "up"), ("variable t", 'group by (job) (up{a="b"})')]


def test_dashboard_json_is_formatted() -> None:
    """The JSON is stored indented with a trailing newline, so diffs stay readable."""
    text = paths.DASHBOARD.read_text()
    assert text == json.dumps(json.loads(text), indent=2) + "\n"


QUANTILE_PANELS = [
    p for p in _panels() if any("histogram_quantile" in t["expr"] for t in p.get("targets", []))
]


@pytest.mark.parametrize("panel", QUANTILE_PANELS, ids=[p["title"] for p in QUANTILE_PANELS])
def test_quantiles_use_a_window_that_holds_enough_probes(panel: dict[str, Any]) -> None:
    """Quantile panels compute over $quantile_window (default 1h), never $__rate_interval, say so
    in their description, and show the sample count their quantile rests on."""
    exprs = [t["expr"] for t in panel["targets"]]
    assert all("$__rate_interval" not in e for e in exprs)
    assert all("[$quantile_window]" in e for e in exprs)
    assert "$quantile_window" in panel["description"]
    counts = [t for t in panel["targets"] if "_count" in t["expr"] and "increase(" in t["expr"]]
    assert counts, "no sample-count query"
    assert "samples" in counts[0]["legendFormat"]


def test_quantile_window_defaults_to_an_hour() -> None:
    """The window variable offers longer windows and defaults to 1h (about 120 probes at 30 s)."""
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    window = variables["quantile_window"]
    assert window["current"]["value"] == "1h"
    assert "5m" not in window["query"].split(",")


def test_node_variable_lists_nodes_without_an_llm() -> None:
    """The node variable reads node_duration_seconds, which every node that ran has, not
    tokens_total, which only nodes that streamed tokens have."""
    (variable,) = [q for q in ALL_QUERIES if q.panel == "variable node"]
    assert "langgraph_probe_node_duration_seconds_count" in variable.expr
    assert "tokens_total" not in variable.expr


def test_instance_and_static_label_variables() -> None:
    """An `instance` variable (multi, All) filters every query, and an ad hoc filter variable
    applies the targets' static labels."""
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["instance"]["multi"] is True
    assert variables["instance"]["includeAll"] is True
    assert variables["filters"]["type"] == "adhoc"
    assert variables["filters"]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    for query in PANEL_QUERIES:
        assert 'instance=~"$instance"' in query.expr, query.panel
