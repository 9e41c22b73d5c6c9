"""Span details trace UIs understand: streaming flag, OpenInference graph attributes, and token
arrivals as span events only when asked (daemon probing real `langgraph dev`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess
from tests.support.otlp_receiver import OTLPReceiver

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("token_events", [False, True])
def test_graph_attributes_stream_flag_and_token_events(
    token_events: bool, langgraph_server: str, tmp_path: Path
) -> None:
    """Root: gen_ai.request.stream=true. Node spans: graph.node.id (path), .name (own name),
    .parent_id (the enclosing node, or the assistant). `token` events on chat spans, one per
    token, only with LGSE_SPAN_TOKEN_EVENTS=true."""
    config = {"defaults": {"interval": "1h"},
              "targets": [{"name": "nested", "url": langgraph_server, "assistant_id": "nested"}]}  # fmt: skip
    with OTLPReceiver() as rx:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
               "LGSE_SPAN_TOKEN_EVENTS": str(token_events).lower()}  # fmt: skip
        with DaemonProcess(config, tmp_path, env=env, lifecycle=True) as daemon:
            result = daemon.get("/probe", params={"target": "nested"}).json()
            calls = [c for n in result["nodes"] for c in n["calls"]]
            spans = rx.wait_for_spans(1 + len(result["nodes"]) + len(calls), timeout_s=20)
    mine = [s for s in spans if s.trace_id == result["trace_id"]]
    (root,) = [s for s in mine if not s.parent_span_id]
    assert root.attributes["gen_ai.request.stream"] is True
    assert root.attributes["graph.node.id"] == "nested"
    nodes = {
        s.attributes["langgraph.node"]: s.attributes for s in mine if s.name.startswith("node ")
    }
    assert nodes["research/inner_agent"]["graph.node.id"] == "research/inner_agent"
    assert nodes["research/inner_agent"]["graph.node.name"] == "inner_agent"
    assert nodes["research/inner_agent"]["graph.node.parent_id"] == "research"
    assert nodes["research"]["graph.node.parent_id"] == "nested"
    chats = [s for s in mine if s.name.startswith("chat ")]
    events = [e for s in chats for e in s.events if e[0] == "token"]
    assert len(events) == (sum(c["tokens"] for c in calls) if token_events else 0)
    if token_events:
        assert events[0][1] == {"langgraph.probe.token.index": 0,
                                "langgraph.probe.token.reasoning": False}  # fmt: skip
