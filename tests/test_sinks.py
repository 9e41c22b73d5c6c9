"""Sinks in isolation: Prometheus exposition from results, OTLP span trees, the history."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter.core.errors import FailureKind
from exporter.core.result import CallTiming, Failure, NodeExecution, ProbeResult
from exporter.sinks import SinkSet
from exporter.sinks.log import History, LogSink, summary
from exporter.sinks.otlp import OTLPSink
from exporter.sinks.prometheus import OTHER_NODE, SLICE_PARTS, PrometheusSink

MS = 1_000_000


def result(
    target: str = "t",
    *,
    nodes: tuple[str, ...] = ("agent",),
    failure: Failure | None = None,
    trace_id: str = "ab" * 16,
) -> ProbeResult:
    execs = tuple(
        NodeExecution(
            node=name, task_id=f"task-{i}", start_ns=100 * MS, end_ns=400 * MS, error_type=None,
            calls=(CallTiming(f"m{i}", "model-x", "prov", (300 * MS, 330 * MS, 360 * MS), 100 * MS, 3, True),),
            basis="tasks", basis_ns=100 * MS,
        )
        for i, name in enumerate(nodes)
    )  # fmt: skip
    return ProbeResult(
        target=target, url="http://127.0.0.1:1", assistant_id="agent", mode="stateless",
        t_request_ns=0, wall_request_ns=1_700_000_000 * 10**9, t_end_ns=500 * MS, failure=failure,
        trace_id=trace_id, span_id="cd" * 8, t_headers_ns=5 * MS, t_first_event_ns=50 * MS,
        t_first_token_ns=300 * MS, nodes=execs,
    )  # fmt: skip


def sink_with(*targets: str, max_nodes: int = 50) -> PrometheusSink:
    sink = PrometheusSink(max_nodes_per_target=max_nodes)
    for t in targets:
        sink.declare(t, "agent", {"env": "dev"})
    return sink


def test_declared_target_has_zero_counters_before_any_probe() -> None:
    """runs_total exists at 0 for each outcome and reason, so rate() and alerts see it."""
    sink = sink_with("t")
    labels = {
        "target": "t",
        "assistant": "agent",
        "env": "dev",
        "outcome": "failure",
        "reason": "run_error",
    }
    assert sink.registry.get_sample_value("langgraph_probe_runs_total", labels) == 0


def test_itl_histogram_counts_every_gap_by_node() -> None:
    """Two gaps of 30 ms land in the 0.05 bucket of the node's ITL histogram."""
    sink = sink_with("t")
    sink.record(result())
    labels = {"target": "t", "assistant": "agent", "env": "dev", "node": "agent", "le": "0.05"}
    assert (
        sink.registry.get_sample_value("langgraph_probe_inter_token_latency_seconds_bucket", labels)
        == 2
    )
    labels["le"] = "0.025"
    assert (
        sink.registry.get_sample_value("langgraph_probe_inter_token_latency_seconds_bucket", labels)
        == 0
    )


def test_failure_counts_its_reason_and_zeroes_success() -> None:
    """A run_error probe adds to runs_total{reason="run_error"} and sets success 0."""
    sink = sink_with("t")
    sink.record(result(failure=Failure(FailureKind.RUN_ERROR, "boom")))
    base = {"target": "t", "assistant": "agent", "env": "dev"}
    assert (
        sink.registry.get_sample_value(
            "langgraph_probe_runs_total", {**base, "outcome": "failure", "reason": "run_error"}
        )
        == 1
    )
    assert sink.registry.get_sample_value("langgraph_probe_success", base) == 0


def test_retain_drops_every_series_of_a_removed_target() -> None:
    """After retain(), no series of the removed target remains."""
    sink = sink_with("keep", "gone")
    sink.record(result("gone"))
    sink.retain(["keep"])
    assert b'target="gone"' not in generate_latest(sink.registry)


def test_results_of_unconfigured_targets_are_ignored() -> None:
    """A late result for a removed target does not bring its series back."""
    sink = sink_with("keep")
    sink.record(result("gone"))
    assert b'target="gone"' not in generate_latest(sink.registry)


def test_node_values_are_capped_per_target() -> None:
    """Beyond the cap, new node names are folded into __other__."""
    sink = sink_with("t", max_nodes=2)
    sink.record(result(nodes=("a", "b", "c", "d")))
    text = generate_latest(sink.registry).decode()
    assert 'node="a"' in text and 'node="b"' in text
    assert 'node="c"' not in text and f'node="{OTHER_NODE}"' in text


def test_openmetrics_exposition_carries_the_trace_id_exemplar() -> None:
    """OpenMetrics output has the probe's trace id as an exemplar on histogram buckets."""
    sink = sink_with("t")
    sink.record(result(trace_id="12" * 16))
    assert b'# {trace_id="' + b"12" * 16 + b'"}' in generate_openmetrics(sink.registry)


def test_sink_errors_are_counted_and_do_not_propagate() -> None:
    """A sink that raises is counted in sink_errors_total and the others still run."""
    prom = sink_with("t")

    class Broken:
        name = "broken"

        def record(self, result: ProbeResult, trigger: str = "scheduled") -> None:
            raise RuntimeError("nope")

        def close(self) -> None:
            pass

    history = History(5)
    sinks = SinkSet([Broken(), history], on_error=lambda name, exc: prom.count_sink_error(name))
    sinks.record(result())
    assert (
        prom.registry.get_sample_value("langgraph_probe_sink_errors_total", {"sink": "broken"}) == 1
    )
    assert len(history.recent) == 1


def test_history_keeps_failures_longer() -> None:
    """Failures stay in their own queue after newer successes push them out of `recent`."""
    history = History(2)
    history.record(result(failure=Failure(FailureKind.STALLED, "x")))
    for _ in range(3):
        history.record(result())
    snap = history.snapshot()
    assert [r["outcome"] for r in snap["recent"]] == ["success", "success"]
    assert snap["failures"][0]["reason"] == "stalled"


def test_otlp_span_tree_uses_the_probe_ids_and_times() -> None:
    """Root span ids are the traceparent's; node and chat spans nest with the probe's times."""
    exporter = InMemorySpanExporter()
    sink = OTLPSink(exporter, batch=False)
    r = result(nodes=("agent", "tools"))
    sink.record(r)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    root = spans["invoke_agent agent"]
    assert f"{root.context.trace_id:032x}" == r.trace_id
    assert f"{root.context.span_id:016x}" == r.span_id
    assert root.start_time == r.wall_request_ns and root.end_time == r.wall_ns(r.t_end_ns)
    node = spans["node agent"]
    assert node.parent is not None and node.parent.span_id == root.context.span_id
    chat = next(s for s in exporter.get_finished_spans() if s.name == "chat model-x")
    assert chat.attributes["gen_ai.response.time_to_first_chunk"] == 0.2
    sink.close()


def test_otlp_error_type_on_failure() -> None:
    """A failed probe's root span carries error.type = the failure kind."""
    exporter = InMemorySpanExporter()
    sink = OTLPSink(exporter, batch=False)
    sink.record(result(failure=Failure(FailureKind.STALLED, "no bytes")))
    (root,) = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert root.attributes["error.type"] == "stalled"
    sink.close()


def _families(parse: Any, data: bytes) -> dict[str, Any]:
    """Parsed exposition, process_* left out (CPU time and memory move between two renders)."""
    out = {}
    for fam in parse(data.decode()):
        if fam.name.startswith("process_"):
            continue
        samples = sorted(
            (s.name, sorted(s.labels.items()), s.value, s.exemplar) for s in fam.samples
        )
        out[fam.name] = (fam.type, fam.documentation, samples)
    return out


def _busy_sink() -> PrometheusSink:
    sink = sink_with("a", "b", "c")
    sink.record(result("a", nodes=("agent", "tools")))
    sink.record(result("b", failure=Failure(FailureKind.STALLED, "slow"), trace_id="34" * 16))
    sink.count_skip("c", "overlap")
    sink.count_sink_error("otlp")
    return sink


@pytest.mark.parametrize(
    ("openmetrics", "encode", "parse"),
    [
        (True, generate_openmetrics, openmetrics_families),
        (False, generate_latest, text_string_to_metric_families),
    ],
)
def test_cached_exposition_parses_like_prometheus_client(
    openmetrics: bool, encode: Any, parse: Any
) -> None:
    """`exposition()` (cached blocks) parses to the same families, samples and exemplars as
    prometheus_client's own rendering of the registry, in both formats."""
    sink = _busy_sink()
    expected = _families(parse, encode(sink.registry))
    assert _families(parse, sink.exposition(openmetrics=openmetrics)) == expected
    sink.record(result("c", nodes=("x",)))  # after a change, from the cache again
    expected = _families(parse, encode(sink.registry))
    assert _families(parse, sink.exposition(openmetrics=openmetrics)) == expected


def test_gzip_exposition_is_one_gzip_member_of_the_same_text() -> None:
    """The gzip body (deflate segments joined, crc32 combined) decompresses to the plain one."""
    sink = _busy_sink()
    for openmetrics in (True, False):
        packed = sink.exposition(openmetrics=openmetrics, gzip=True)
        plain = sink.exposition(openmetrics=openmetrics)
        # zlib checks the trailer's crc32 and length, and one member must hold everything.
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        text = d.decompress(packed)
        assert d.eof and d.unused_data == b""
        parse = openmetrics_families if openmetrics else text_string_to_metric_families
        assert _families(parse, text) == _families(parse, plain)


def test_a_large_exposition_comes_in_bounded_pieces() -> None:
    """The daemon runs its loop between two pieces of a scrape: no piece joins more than
    `SLICE_PARTS` cached parts (or renders more than one target), and the pieces, joined, are
    the one valid gzip member of the whole text."""
    names = [f"t{i:03d}" for i in range(3 * SLICE_PARTS)]
    sink = sink_with(*names)
    for name in names:
        sink.record(result(name, nodes=("agent", "tools")))
    sink.exposition(openmetrics=True, gzip=True)  # every block cached: a steady scrape
    pieces = list(sink.exposition_chunks(openmetrics=True, gzip=True))
    per_target = max(len(st.rendered[(True, True)].parts) for st in sink._targets.values())
    assert len(pieces) > len(names) * per_target / SLICE_PARTS
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = d.decompress(b"".join(pieces))
    assert d.eof and d.unused_data == b""

    def steady(body: bytes) -> list[bytes]:  # the process_* samples move between two scrapes
        return [line for line in body.splitlines() if not line.startswith(b"process_")]

    assert steady(text) == steady(sink.exposition(openmetrics=True))


def test_a_new_result_renders_its_target_again_and_only_it() -> None:
    """Blocks are reused until `record()` changes their target; then that target's bytes change."""
    sink = _busy_sink()
    sink.exposition(openmetrics=True, gzip=True)
    before = {n: st.rendered[(True, True)] for n, st in sink._targets.items()}
    sink.exposition(openmetrics=True, gzip=True)
    assert all(sink._targets[n].rendered[(True, True)] is r for n, r in before.items())
    sink.record(result("a", trace_id="56" * 16))
    body = zlib.decompress(sink.exposition(openmetrics=True, gzip=True), 16 + zlib.MAX_WBITS)
    after = {n: st.rendered[(True, True)] for n, st in sink._targets.items()}
    assert after["b"] is before["b"] and after["c"] is before["c"]
    assert after["a"].parts != before["a"].parts
    assert b'trace_id="' + b"56" * 16 in body


def test_location_labels_every_series_of_the_sink() -> None:
    """LGSE_LOCATION adds `location` to every series of the exporter's own families."""
    sink = PrometheusSink(location="eu-west")
    sink.declare("t", "agent", {})
    sink.record(result())
    for fam in text_string_to_metric_families(sink.exposition(openmetrics=False).decode()):
        for s in fam.samples:
            if not s.name.startswith("process_"):
                assert s.labels.get("location") == "eu-west", s


# ------------------------------------------------------------------ counters exist at zero


def test_skip_counter_exists_at_zero_for_every_reason() -> None:
    """probes_skipped_total{reason} is 0 for `overlap` and `concurrency` before any skip."""
    sink = sink_with("t")
    for reason in ("overlap", "concurrency"):
        labels = {"target": "t", "assistant": "agent", "env": "dev", "reason": reason}
        value = sink.registry.get_sample_value("langgraph_probe_probes_skipped_total", labels)
        assert value == 0, (reason, value)


def test_sink_error_counter_exists_at_zero_for_every_configured_sink() -> None:
    """sink_errors_total{sink} is 0 for each configured sink before any error."""
    prom = sink_with("t")
    sinks = SinkSet([prom, LogSink(), History(5)], on_error=lambda n, e: None)
    prom.declare_sinks(sinks.names)
    for name in ("prometheus", "log", "history"):
        value = prom.registry.get_sample_value("langgraph_probe_sink_errors_total", {"sink": name})
        assert value == 0, (name, value)


# ------------------------------------------------------------------ on-demand probes


def test_on_demand_result_stays_out_of_the_slo_series() -> None:
    """An on-demand result counts in on_demand_runs_total only: runs_total, the histograms and
    the `success` gauge do not move."""
    sink = sink_with("t")
    sink.record(result(failure=Failure(FailureKind.STALLED, "x")), "on_demand")
    base = {"target": "t", "assistant": "agent", "env": "dev"}
    stalled = {**base, "outcome": "failure", "reason": "stalled"}
    get = sink.registry.get_sample_value
    assert get("langgraph_probe_on_demand_runs_total", stalled) == 1
    assert get("langgraph_probe_runs_total", stalled) == 0
    assert get("langgraph_probe_time_to_first_token_seconds_count", base) is None
    assert get("langgraph_probe_success", base) is None


def test_scheduled_result_is_not_counted_as_on_demand() -> None:
    """A scheduled result moves runs_total, not on_demand_runs_total."""
    sink = sink_with("t")
    sink.record(result())
    labels = {"target": "t", "assistant": "agent", "env": "dev", "outcome": "success", "reason": ""}
    get = sink.registry.get_sample_value
    assert (
        get("langgraph_probe_runs_total", labels),
        get("langgraph_probe_on_demand_runs_total", labels),
    ) == (1, 0)


def test_history_says_which_results_were_on_demand() -> None:
    """`/-/probes` entries carry `trigger`: scheduled or on_demand."""
    history = History(5)
    history.record(result(), "on_demand")
    history.record(result())
    assert [r["trigger"] for r in history.snapshot()["recent"]] == ["scheduled", "on_demand"]


# ------------------------------------------------------------------ per-execution summaries


def test_summary_keeps_each_execution_of_a_node_that_ran_twice() -> None:
    """agent -> tools -> agent: the summary lists both agent executions, in order."""
    summ = summary(result(nodes=("agent", "tools", "agent")))
    assert [n["node"] for n in summ["nodes"]] == ["agent", "tools", "agent"]
    assert all(n["tokens"] == 3 for n in summ["nodes"])
