"""The daemon probing real `langgraph dev`, scraped by a real Prometheus, answering PromQL."""

from __future__ import annotations

import bisect
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.sinks.prometheus import GAP_BUCKETS
from tests.conftest import DEMO_GAPS_S, LiveStack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("node", sorted(DEMO_GAPS_S))
def test_median_itl_per_node_is_in_the_configured_gaps_bucket(
    live_stack: LiveStack, node: str
) -> None:
    """histogram_quantile(0.5, …ITL…) by node lies in the bucket holding the configured gap, or,
    when the gap is a bucket boundary (5 ms steps), in the bucket just above it: real gaps are a
    fraction of a millisecond longer than configured."""
    query = (
        "histogram_quantile(0.5, sum by (le, node) "
        "(rate(langgraph_probe_inter_token_latency_seconds_bucket[1m])))"
    )
    series = {
        r["metric"].get("node"): float(r["value"][1]) for r in live_stack.prometheus.query(query)
    }
    gap = DEMO_GAPS_S[node]
    i = bisect.bisect_left(GAP_BUCKETS, gap)
    lower, upper = GAP_BUCKETS[i - 1], GAP_BUCKETS[i]
    if upper == gap:
        upper = GAP_BUCKETS[i + 1]
    assert lower < series[node] <= upper, (node, series)


def test_failing_graph_grows_run_error_counter(live_stack: LiveStack) -> None:
    """runs_total{outcome="failure",reason="run_error"} increases for the boom target."""
    query = 'langgraph_probe_runs_total{target="demo-boom",outcome="failure",reason="run_error"}'
    first = float(live_stack.prometheus.wait_for(query)[0]["value"][1])
    deadline = time.monotonic() + 60
    value = first
    while value <= first and time.monotonic() < deadline:
        time.sleep(1)
        value = float(live_stack.prometheus.query(query)[0]["value"][1])
    assert value > first >= 1


def test_success_gauge_and_static_labels(live_stack: LiveStack) -> None:
    """The agent target's last probe succeeded, and its static label is on the series."""
    result = live_stack.prometheus.query('langgraph_probe_success{target="demo-agent"}')
    assert result[0]["metric"]["env"] == "test"
    assert result[0]["value"][1] == "1"


def test_thread_mode_target_succeeds(live_stack: LiveStack) -> None:
    """The thread-mode target succeeds on the daemon too (create, stream, delete)."""
    result = live_stack.prometheus.wait_for(
        'langgraph_probe_runs_total{target="demo-agent-thread",outcome="success"} > 0'
    )
    assert result


def test_openmetrics_scrape_has_trace_id_exemplars(live_stack: LiveStack) -> None:
    """Asked for OpenMetrics, /metrics puts the probe's trace id on histogram buckets."""
    r = live_stack.daemon.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    lines = [ln for ln in r.text.splitlines() if "inter_token_latency_seconds_bucket" in ln]
    assert any('# {trace_id="' in ln for ln in lines)


def test_no_run_or_thread_ids_in_labels(live_stack: LiveStack) -> None:
    """Labels never carry run, thread or trace ids (cardinality; docs/WIRE.md §17)."""
    names = set()
    for family in text_string_to_metric_families(live_stack.daemon.get("/metrics").text):
        for sample in family.samples:
            names |= set(sample.labels)
    # `protocol` (legacy, v2) only on `protocol_info`: two values. `phase`: the connection
    # phases (five values). `version`, `python`: `build_info` only. `shard`, `shards`:
    # `shard_info` only, one series per replica.
    allowed = {"target", "assistant", "node", "env", "outcome", "reason", "sink", "le", "protocol"}
    allowed |= {"phase", "version", "python", "shard", "shards"}
    assert names <= allowed
