"""OTLP metrics from the daemon probing real `langgraph dev`, into the real test receiver."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.sinks.otlp_metrics import GENAI_DURATION_BUCKETS, GENAI_TOKEN_BUCKETS
from tests.support.daemon import DaemonProcess
from tests.support.otlp_receiver import OTLPReceiver, ReceivedMetric

pytestmark = pytest.mark.integration

TTFC = "gen_ai.client.operation.time_to_first_chunk"
TPOC = "gen_ai.client.operation.time_per_output_chunk"
DURATION = "gen_ai.client.operation.duration"
USAGE = "gen_ai.client.token.usage"
RUN_TTFT = "langgraph.probe.time_to_first_token"
NODE_TTFT = "langgraph.probe.node.time_to_first_token"
ITL = "langgraph.probe.inter_token_latency"


def config(url: str) -> dict[str, object]:
    return {
        "defaults": {"interval": "1h"},
        "targets": [{"name": "agent", "url": url, "assistant_id": "agent",
                     "input": {"messages": [{"role": "human", "content": "weather in sf?"}]}}],
    }  # fmt: skip


def _daemon(url: str, tmp: Path, rx: OTLPReceiver, protocol: str, **env: str) -> DaemonProcess:
    endpoint = rx.grpc_endpoint if protocol == "grpc" else rx.http_endpoint
    return DaemonProcess(config(url), tmp, env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_METRIC_EXPORT_INTERVAL": "200",
        "LGSE_OTLP": "off", "LGSE_OTLP_METRICS": "true", **env,
    })  # fmt: skip


def _count(m: ReceivedMetric) -> int:
    return sum(p.count for p in m.points)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_genai_and_probe_metrics_names_units_attributes_buckets(
    protocol: str, langgraph_server: str, tmp_path: Path
) -> None:
    """One probe of the demo agent (two LLM calls) arrives as GenAI client histograms with the
    v1.41.0 names, units, attributes and advised buckets, plus langgraph.probe.* run and node
    measurements equal to the probe's own, with exemplars pointing at its trace."""
    with OTLPReceiver() as rx, _daemon(langgraph_server, tmp_path, rx, protocol) as daemon:
        result = daemon.get("/probe", params={"target": "agent"}).json()
        assert result["outcome"] == "success"
        calls = [c for n in result["nodes"] for c in n["calls"]]
        gaps = sum(len(c["itl_s"]) for c in calls)
        got = rx.wait_for_metrics(
            [TTFC, TPOC, DURATION, USAGE, RUN_TTFT, NODE_TTFT, ITL], timeout_s=30,
            until=lambda m: TPOC in m and _count(m[TPOC]) == gaps and TTFC in m
            and _count(m[TTFC]) == len(calls),
        )  # fmt: skip
    ttfc = got[TTFC]
    assert (ttfc.kind, ttfc.unit, ttfc.protocol) == ("histogram", "s", protocol.split("/")[0])
    for name in (TTFC, TPOC, DURATION):
        assert got[name].unit == "s"
        assert got[name].points[0].bounds == GENAI_DURATION_BUCKETS, name
    attrs = ttfc.points[0].attributes
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "fakeprovider"
    assert attrs["gen_ai.request.model"] == "fake-stream-1"
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] > 0
    assert attrs["langgraph.node"] == "agent" and "error.type" not in attrs
    assert ttfc.points[0].value == pytest.approx(sum(c["ttft_s"] for c in calls), abs=1e-6)
    usage = got[USAGE]
    assert usage.unit == "{token}" and usage.points[0].bounds == GENAI_TOKEN_BUCKETS
    assert usage.points[0].attributes["gen_ai.token.type"] == "output"
    assert usage.points[0].value == sum(c["output_tokens"] for c in calls)
    (run,) = got[RUN_TTFT].points
    assert run.count == 1 and run.value == pytest.approx(
        result["phases_s"]["first_token"], abs=1e-6
    )
    assert run.attributes == {"langgraph.probe.target": "agent", "gen_ai.agent.name": "agent"}
    assert _count(got[ITL]) == gaps
    assert {e[0] for e in run.exemplars} == {result["trace_id"]}
    assert any(e[0] == result["trace_id"] for p in ttfc.points for e in p.exemplars)


def test_latest_semconv_switches_to_the_inference_names(
    langgraph_server: str, tmp_path: Path
) -> None:
    """LGSE_SEMCONV=latest: gen_ai.client.inference.* instead of the v1.41 names."""
    latest = ["gen_ai.client.inference.duration", "gen_ai.client.inference.time_to_first_chunk",
              "gen_ai.client.inference.time_per_output_chunk",
              "gen_ai.client.inference.operation.output_tokens"]  # fmt: skip
    with (
        OTLPReceiver() as rx,
        _daemon(langgraph_server, tmp_path, rx, "http/protobuf", LGSE_SEMCONV="latest") as daemon,
    ):
        daemon.get("/probe", params={"target": "agent"})
        got = rx.wait_for_metrics(latest, timeout_s=30)
    assert not {TTFC, TPOC, DURATION, USAGE} & set(got)
    assert got["gen_ai.client.inference.operation.output_tokens"].unit == "{token}"
    assert "gen_ai.token.type" not in got[latest[3]].points[0].attributes
