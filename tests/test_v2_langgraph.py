"""Protocol v2 end to end against a real `langgraph dev` (langgraph-api 0.16.7) serving the demo
graphs, and the legacy probe's run endings (job timeout, interrupt) on the same kind of server.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from exporter.config import Target
from exporter.core.result import ProbeResult
from exporter.load import LoadOptions, drive
from exporter.probe import forget_protocols, probe
from exporter.sinks.otlp import OTLPSink
from exporter.sinks.prometheus import PrometheusSink

pytestmark = pytest.mark.integration

WEATHER = {"messages": [{"role": "human", "content": "what's the weather in sf?"}]}
#: The job timeout of the second server: longer than any demo run but `slow` (7 s first token).
JOB_TIMEOUT_S = 3


def target(url: str, assistant: str, **kw: Any) -> Target:
    return Target.model_validate(
        {"name": f"t-{assistant}", "url": url, "assistant_id": assistant, "input": WEATHER, **kw}
    )


def run(t: Target, protocol: str | None = None) -> ProbeResult:
    return asyncio.run(probe(t, protocol=protocol))


@pytest.fixture(scope="module")
def py_server(langgraph_dev: Any) -> str:
    """The Python `langgraph dev` (langgraph-api 0.16.7): the server whose v2 docs/V2.md
    describes. The LangGraph.js server is not covered here."""
    return str(langgraph_dev.url)


@pytest.fixture(scope="module")
def legacy_only_server() -> Iterator[str]:
    """A second `langgraph dev` with v2 switched off and a short job timeout."""
    from devserver import DevServer

    env = {"FF_V2_EVENT_STREAMING": "false", "BG_JOB_TIMEOUT_SECS": str(JOB_TIMEOUT_S)}
    with DevServer(env=env) as server:
        yield str(server.url)


@pytest.mark.timing
def test_first_call_ttft_matches_the_legacy_node_ttft(py_server: str) -> None:
    """Server-side TTFT of v2's first call within 5 ms of legacy's node TTFT (medians of 3);
    v2's client-side TTFT adds at most one 20 ms delivery poll (and some slack) to it."""
    t = target(py_server, "agent")
    legacy = [run(t, "legacy").nodes[0].ttft_s for _ in range(3)]
    v2_results = [run(t, "v2") for _ in range(3)]
    server = [r.nodes[0].server_ttft_s for r in v2_results]
    client = [r.nodes[0].ttft_s for r in v2_results]
    assert all(isinstance(x, float) for x in [*legacy, *server, *client])
    leg, srv = statistics.median(legacy), statistics.median(server)  # type: ignore[type-var]
    assert abs(srv - leg) <= 0.005, f"v2 server TTFT {server} vs legacy node TTFT {legacy}"
    for c, s in zip(client, server, strict=True):
        assert s - 0.002 <= c <= s + 0.030, f"v2 client TTFT {c} vs server TTFT {s}"


@pytest.mark.timing
def test_itl_means_and_server_gaps_match_the_configured_model(py_server: str) -> None:
    """agent 30 ms, nested inner 20 ms and answer 30 ms: received ITL means within ±3 ms for
    calls of 8+ tokens (a mean over n-1 gaps carries up to 2 polls / (n-1) of quantisation),
    server-side gap means within ±2 ms for every call."""
    configured = {("agent", 0): 0.030, ("agent", 1): 0.030, ("nested", "research"): 0.020,
                  ("nested", "__root__"): 0.030}  # fmt: skip
    for graph in ("agent", "nested"):
        r = run(target(py_server, graph), "v2")
        assert r.success, r.failure
        for i, node in enumerate(r.nodes):
            gap = configured[(graph, i if graph == "agent" else node.node)]
            for call in node.calls:
                srv = statistics.fmean(call.server_itl_s)
                assert abs(srv - gap) <= 0.002, f"{graph}/{node.node}: server gaps {srv}"
                if call.tokens >= 8:
                    got = statistics.fmean(call.itl_s)
                    assert abs(got - gap) <= 0.003, f"{graph}/{node.node}: ITL mean {got}"


def test_the_20ms_delivery_poll_shows_as_jitter(py_server: str) -> None:
    r = run(target(py_server, "agent"), "v2")
    assert r.delivery is not None and r.delivery.verdict == "buffered"
    jitter = [abs(j) for j in r.delivery.jitter_s]
    assert max(jitter) >= 0.005, f"|jitter| {jitter}"


def test_boom_is_a_run_error_with_the_servers_message(py_server: str) -> None:
    r = run(target(py_server, "boom"), "v2")
    assert r.failure is not None and r.failure.kind.value == "run_error"
    assert "simulated provider failure" in r.failure.message and r.run_status == "error"


def test_subgraph_calls_are_under_their_parent_node(py_server: str) -> None:
    r = run(target(py_server, "nested"), "v2")
    research = [n for n in r.nodes if n.node == "research"]
    assert len(research) == 1 and research[0].task_id and research[0].tokens > 0


def test_parallel_calls_are_reported_as_indistinguishable(py_server: str) -> None:
    r = run(target(py_server, "parallel"), "v2")
    assert r.success, r.failure
    assert any(c.ambiguous for n in r.nodes for c in n.calls)
    assert any("cannot tell their tokens apart" in note for note in r.notes)


def test_the_v2_probe_deletes_its_thread(py_server: str) -> None:
    r = run(target(py_server, "agent"), "v2")
    assert r.thread_id is not None
    assert httpx.get(f"{py_server}/threads/{r.thread_id}").status_code == 404


def test_auto_picks_v2_here_and_legacy_where_v2_is_off(
    py_server: str, legacy_only_server: str
) -> None:
    forget_protocols()
    assert run(target(py_server, "agent", protocol="auto")).protocol == "v2"
    off = run(target(legacy_only_server, "agent", protocol="auto"))
    assert off.protocol == "legacy" and off.success, off.failure


def test_json_report_and_cli_carry_the_protocol(py_server: str) -> None:
    base = [sys.executable, "-m", "exporter", "probe", "--url", py_server]
    proc = subprocess.run([*base, "--assistant", "agent", "--protocol", "v2", "--json"],
                          capture_output=True, timeout=60)  # fmt: skip
    out = orjson.loads(proc.stdout)
    assert out["protocol"] == "v2" and out["delivery"]["verdict"] in ("buffered", "steady")
    call = out["nodes"][0]["calls"][0]
    assert len(call["server_itl_s"]) == len(call["itl_s"]) == len(call["jitter_s"]) > 0
    proc = subprocess.run([*base, "--assistant", "agent", "--protocol", "v2"],
                          capture_output=True, timeout=60)  # fmt: skip
    assert b"protocol=v2" in proc.stdout and b"server ITL" in proc.stdout


def test_metrics_and_spans_carry_the_protocol_and_jitter(py_server: str) -> None:
    r = run(target(py_server, "agent"), "v2")
    sink = PrometheusSink()
    sink.declare(r.target, r.assistant_id, {})
    sink.record(r)
    labels = {"target": r.target, "assistant": "agent"}
    get = sink.registry.get_sample_value
    assert get("langgraph_probe_protocol_info", {**labels, "protocol": "v2"}) == 1.0
    node = {**labels, "node": "__root__"}
    assert get("langgraph_probe_delivery_jitter_seconds_count", node) == 15
    assert get("langgraph_probe_server_inter_token_latency_seconds_count", node) == 15
    assert get("langgraph_probe_delivery_buffered", labels) == 1.0
    exporter = InMemorySpanExporter()
    otlp = OTLPSink(exporter, batch=False)
    otlp.record(r)
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name == "invoke_agent agent")
    assert root.attributes is not None and root.attributes["langgraph.probe.protocol"] == "v2"
    chat = next(s for s in spans if s.name.startswith("chat "))
    assert chat.attributes is not None
    assert chat.attributes["langgraph.probe.delivery_jitter_max_s"] > 0
    otlp.close()


def test_load_drives_v2_streams(py_server: str) -> None:
    t = target(py_server, "agent", protocol="v2")
    options = LoadOptions(concurrency=2, duration_s=10, max_streams=4, progress=False)
    done: list[ProbeResult] = []
    outcome = asyncio.run(drive(t, options, on_done=done.append))
    assert len(outcome.records) == 4 and all(rec.success for rec in outcome.records)
    assert {r.protocol for r in done} == {"v2"}


def test_daemon_probes_a_v2_target(py_server: str, tmp_path: Path) -> None:
    from tests.support.daemon import DaemonProcess

    # A 2 s interval: /metrics shows scheduled probes only (on-demand ones stay out of the SLO
    # series, docs/RELIABILITY.md), so the metrics below come from the schedule.
    config = {"targets": [{"name": "v2-agent", "url": py_server, "assistant_id": "agent",
                           "protocol": "v2", "interval": "2s", "input": WEATHER}]}  # fmt: skip
    daemon = DaemonProcess(config, tmp_path, lifecycle=True).start()
    try:
        probed = daemon.get("/probe", params={"target": "v2-agent"}, timeout=60)
        assert probed.status_code == 200, probed.text
        assert probed.json()["protocol"] == "v2" and probed.json()["outcome"] == "success"
        deadline = time.monotonic() + 60
        while "langgraph_probe_delivery_jitter_seconds_bucket" not in (
            metrics := daemon.get("/metrics").text
        ):
            assert time.monotonic() < deadline, "no scheduled v2 probe within 60 s"
            time.sleep(0.5)  # polling the schedule, not a race fix
        assert any(
            line.startswith("langgraph_probe_protocol_info") and 'protocol="v2"' in line
            for line in metrics.splitlines()
        ), metrics
        assert "langgraph_probe_delivery_jitter_seconds_bucket" in metrics
    finally:
        daemon.stop()


def test_a_legacy_thread_probe_stopped_by_the_job_timeout_says_so(legacy_only_server: str) -> None:
    """`slow` waits 7 s for its first token; the server stops the run after 3 s."""
    t = target(legacy_only_server, "slow", mode="thread", protocol="legacy")
    r = run(t)
    assert r.failure is not None and r.run_status == "timeout", (r.failure, r.log)
    assert "job timeout" in r.failure.message


def test_an_expected_interrupt_is_a_success_with_the_flag(legacy_only_server: str) -> None:
    t = target(legacy_only_server, "agent", mode="thread", protocol="legacy",
               interrupt_before=["action"], expect={"interrupt": True})  # fmt: skip
    r = run(t)
    assert r.success and r.interrupted and r.run_status == "interrupted", (r.failure, r.log)
