"""Where a replica probes from (LGSE_LOCATION) in what it sends over OTLP: an attribute of every
span, and a resource attribute of the spans and metric points (docs/SCALING.md "Several
locations"). One real daemon probing a scripted server, exporting into the real test receiver.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess
from tests.support.otlp_receiver import OTLPReceiver, ReceivedMetric, ReceivedSpan
from tests.support.scripted_server import ScriptedServer, langgraph_stream

pytestmark = pytest.mark.slow

LOCATION = "edge-eu-1"
KEY = "langgraph.probe.location"
NODE_TTFT = "langgraph.probe.node.time_to_first_token"
TTFC = "gen_ai.client.operation.time_to_first_chunk"

Observed = tuple[list[ReceivedSpan], dict[str, ReceivedMetric]]


def _count(metrics: dict[str, ReceivedMetric], name: str) -> int:
    return sum(p.count for p in metrics[name].points) if name in metrics else 0


async def _observe(workdir: Path) -> Observed:
    """Scheduled probes (1 s) of a two-node graph, one LLM call per node; the spans of the
    first probes and the latest export of the metrics once two probes are in them."""
    with OTLPReceiver() as rx:
        async with ScriptedServer() as server:
            server.route_stateless(
                langgraph_stream(["agent", "writer"], tokens=3, first_token_s=0.02, gap_s=0.005)
            )
            config = {
                "defaults": {"interval": "1s"},
                "targets": [{"name": "agent", "url": server.url, "assistant_id": "agent"}],
            }
            env = {
                "LGSE_LOCATION": LOCATION,
                "LGSE_OTLP": "on",
                "LGSE_OTLP_METRICS": "true",
                "OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                "OTEL_METRIC_EXPORT_INTERVAL": "200",
            }
            daemon = DaemonProcess(config, workdir, env=env)
            await asyncio.to_thread(daemon.start)
            try:
                metrics = await asyncio.to_thread(
                    rx.wait_for_metrics, [NODE_TTFT, TTFC], 30,
                    lambda m: _count(m, NODE_TTFT) >= 4 and _count(m, TTFC) >= 4,
                )  # fmt: skip
                # One probe is 1 root + 2 node + 2 chat spans.
                spans = await asyncio.to_thread(rx.wait_for_spans, 10, 30)
            finally:
                await asyncio.to_thread(daemon.stop)
    return spans, metrics


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    return asyncio.run(_observe(tmp_path_factory.mktemp("otlp-location")))


def test_every_span_carries_the_location(observed: Observed) -> None:
    """Root, node and chat spans alike have the span attribute langgraph.probe.location (a
    node span found on its own, by a trace search or the spanmetrics connector, still says
    where it was measured), and their resource has it too."""
    spans, _ = observed
    kinds = {s.name.split(" ")[0] for s in spans}
    assert kinds == {"invoke_agent", "node", "chat"}
    assert [s.name for s in spans if s.attributes.get(KEY) != LOCATION] == []
    assert {s.resource.get(KEY) for s in spans} == {LOCATION}


def test_metric_points_carry_the_location_in_their_resource(observed: Observed) -> None:
    """Every exported metric has langgraph.probe.location=LGSE_LOCATION in its resource, and
    no point repeats it as a point attribute (one label, not two, once a Collector or
    Prometheus turns resource attributes into labels)."""
    _, metrics = observed
    assert {name: m.resource.get(KEY) for name, m in metrics.items()} == {
        name: LOCATION for name in metrics
    }
    assert [n for n, m in metrics.items() for p in m.points if KEY in p.attributes] == []
    assert metrics[NODE_TTFT].resource["service.name"] == "langgraph-stream-exporter"
