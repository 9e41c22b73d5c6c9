"""Spans over OTLP from the daemon probing real `langgraph dev`, into a real receiver."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess
from tests.support.otlp_receiver import OTLPReceiver, ReceivedSpan

pytestmark = pytest.mark.integration

CLIENT, INTERNAL = 3, 1  # proto SpanKind values


def config(url: str) -> dict[str, object]:
    return {
        "defaults": {"interval": "1h"},  # probes come from /probe only: deterministic
        "targets": [
            {"name": "agent", "url": url, "assistant_id": "agent", "protocol": "legacy",
             "input": {"messages": [{"role": "human", "content": "weather in sf?"}]}},
            {"name": "boom", "url": url, "assistant_id": "boom", "protocol": "legacy"},
        ],
    }  # fmt: skip


def tree(spans: list[ReceivedSpan], trace_id: str) -> tuple[ReceivedSpan, list[ReceivedSpan]]:
    mine = [s for s in spans if s.trace_id == trace_id]
    (root,) = [s for s in mine if not s.parent_span_id]
    return root, [s for s in mine if s is not root]


@pytest.fixture(params=["grpc", "http/protobuf"])
def otlp_daemon(request: pytest.FixtureRequest, langgraph_server: str, tmp_path: Path):
    with OTLPReceiver() as rx:
        endpoint = rx.grpc_endpoint if request.param == "grpc" else rx.http_endpoint
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": request.param,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        with DaemonProcess(config(langgraph_server), tmp_path, env=env, lifecycle=True) as daemon:
            yield daemon, rx, ("grpc" if request.param == "grpc" else "http")


def test_span_tree_names_parentage_times_and_genai_attributes(otlp_daemon, langgraph: Any) -> None:
    """One probe = root `invoke_agent agent` → `node …` → `chat fake-stream-1`, inside its window."""
    daemon, rx, protocol = otlp_daemon
    # The JS server may send a node's `tasks` start up to ~15 ms after its model started its
    # delay (docs/WIRE.md §16): time to first chunk can read that much short there.
    low_s = 0.2 if langgraph.kind == "python" else 0.185
    wall_before_ns = time.time_ns()
    result = daemon.get("/probe", params={"target": "agent"}).json()
    wall_after_ns = time.time_ns()
    assert result["outcome"] == "success"
    spans = rx.wait_for_spans(6, timeout_s=20)
    root, rest = tree(spans, result["trace_id"])
    assert root.protocol == protocol
    assert (root.name, root.kind) == ("invoke_agent agent", CLIENT)
    assert root.span_id == result["span_id"]  # the traceparent we sent
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["langgraph.run_id"] == result["run_id"]
    assert root.attributes["server.address"] == "127.0.0.1"
    assert "error.type" not in root.attributes
    assert wall_before_ns <= root.start_ns <= root.end_ns <= wall_after_ns
    nodes = [s for s in rest if s.parent_span_id == root.span_id]
    assert [s.name for s in sorted(nodes, key=lambda s: s.start_ns)] == [
        "node agent", "node action", "node agent",
    ]  # fmt: skip
    chats = [s for s in rest if s.name.startswith("chat ")]
    assert len(chats) == 2
    node_ids = {s.span_id: s for s in nodes}
    for chat in chats:
        parent = node_ids[chat.parent_span_id]
        assert parent.start_ns <= chat.start_ns <= chat.end_ns <= parent.end_ns
        assert chat.name == "chat fake-stream-1" and chat.kind == CLIENT
        assert chat.attributes["gen_ai.request.model"] == "fake-stream-1"
        assert chat.attributes["gen_ai.provider.name"] == "fakeprovider"
        assert chat.attributes["gen_ai.usage.output_tokens"] > 0
        ttfc = chat.attributes["gen_ai.response.time_to_first_chunk"]
        assert low_s <= ttfc < 0.3, f"time to first chunk {ttfc}"
    for node in nodes:
        assert root.start_ns <= node.start_ns <= node.end_ns <= root.end_ns
    assert root.resource["service.name"] == "langgraph-stream-exporter"


def test_failed_probe_span_carries_error_type(otlp_daemon) -> None:
    """A run_error probe's root span has error.type=run_error and an error status."""
    daemon, rx, _ = otlp_daemon
    result = daemon.get("/probe", params={"target": "boom"}).json()
    assert result["failure"]["kind"] == "run_error"
    spans = rx.wait_for_spans(3, timeout_s=20)
    root, _ = tree(spans, result["trace_id"])
    assert root.attributes["error.type"] == "run_error"
    assert root.status_code == 2


def test_exemplar_trace_id_is_the_span_trace_id(otlp_daemon, langgraph_server: str) -> None:
    """The trace id on a scheduled probe's histogram exemplars is the trace id of its root span.
    (On-demand `/probe` results stay out of the histograms, so the schedule runs it: a reload
    to a 1 s interval.)"""
    daemon, rx, _ = otlp_daemon
    cfg = config(langgraph_server)
    cfg["defaults"] = {"interval": "1s"}
    daemon.write_config(cfg)
    assert daemon.post("/-/reload").status_code == 200
    deadline = time.monotonic() + 30
    while True:
        text = daemon.get("/metrics", headers={"Accept": "application/openmetrics-text"}).text
        found = re.findall(
            r'^langgraph_probe_time_to_first_token_seconds_bucket\{[^}]*target="agent"[^}]*\}'
            r' \S+ # \{trace_id="([0-9a-f]{32})"\}',
            text,
            re.M,
        )
        if found:
            break
        assert time.monotonic() < deadline, "no scheduled probe of `agent` within 30 s"
        time.sleep(0.2)  # polling the schedule, not a race fix
    trace_id = found[0]
    rx.wait_for_spans(6, timeout_s=20)
    deadline = time.monotonic() + 20
    while not [s for s in rx.spans() if s.trace_id == trace_id and not s.parent_span_id]:
        assert time.monotonic() < deadline, f"no root span with trace id {trace_id}"
        time.sleep(0.1)  # spans arrive in batches every 100 ms
    assert tree(rx.spans(), trace_id)[0].name == "invoke_agent agent"
