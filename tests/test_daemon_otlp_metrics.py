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
    # Scheduled probes only: an on-demand /probe stays out of the metrics (SLO series).
    return {
        "defaults": {"interval": "3s"},
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


def _exemplars(rx: OTLPReceiver, name: str) -> list[tuple[str, str, float]]:
    """Every exemplar of `name` in every export so far (trace id, span id, value)."""
    return [e for m in rx.metrics() if m.name == name for p in m.points for e in p.exemplars]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_genai_and_probe_metrics_names_units_attributes_buckets(
    protocol: str, langgraph_server: str, tmp_path: Path
) -> None:
    """Scheduled probes of the demo agent (two LLM calls each) arrive as GenAI client histograms
    with the v1.41.0 names, units, attributes and advised buckets, plus langgraph.probe.* run and
    node histograms whose exemplars point at the probes' traces and carry their values."""
    with OTLPReceiver() as rx, _daemon(langgraph_server, tmp_path, rx, protocol) as daemon:
        # Every run of the demo agent makes two LLM calls: wait for an export where the GenAI
        # histograms and the run histogram hold the same runs.
        got = rx.wait_for_metrics(
            [TTFC, TPOC, DURATION, USAGE, RUN_TTFT, NODE_TTFT, ITL], timeout_s=60,
            until=lambda m: RUN_TTFT in m and TTFC in m and TPOC in m and ITL in m
            and _count(m[TTFC]) == 2 * _count(m[RUN_TTFT]) and _count(m[TPOC]) == _count(m[ITL])
            and bool(_exemplars(rx, RUN_TTFT)) and bool(_exemplars(rx, TTFC)),
        )  # fmt: skip
        entries = {e["id"]: e for e in daemon.get("/-/probes").json()["recent"]}
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
    usage = got[USAGE]
    assert usage.unit == "{token}" and usage.points[0].bounds == GENAI_TOKEN_BUCKETS
    assert usage.points[0].attributes["gen_ai.token.type"] == "output"
    assert usage.points[0].value > 0
    (run,) = got[RUN_TTFT].points
    assert run.attributes == {"langgraph.probe.target": "agent", "gen_ai.agent.name": "agent"}
    # Exemplars point at scheduled probes and carry that probe's own run TTFT. The SDK's reservoir
    # empties on every collection, so an exemplar rides only the export after its measurement:
    # look across every export, not just the latest (which may follow an empty interval).
    run_exemplars = _exemplars(rx, RUN_TTFT)
    assert run_exemplars
    for trace_id, _span_id, value in run_exemplars:
        assert entries[trace_id]["trigger"] == "scheduled"
        assert value == pytest.approx(entries[trace_id]["ttft_s"], abs=1e-4)
    assert any(e[0] in entries for e in _exemplars(rx, TTFC))


def test_latest_semconv_switches_to_the_inference_names(
    langgraph_server: str, tmp_path: Path
) -> None:
    """LGSE_SEMCONV=latest: gen_ai.client.inference.* instead of the v1.41 names."""
    latest = ["gen_ai.client.inference.duration", "gen_ai.client.inference.time_to_first_chunk",
              "gen_ai.client.inference.time_per_output_chunk",
              "gen_ai.client.inference.operation.output_tokens"]  # fmt: skip
    with (
        OTLPReceiver() as rx,
        _daemon(langgraph_server, tmp_path, rx, "http/protobuf", LGSE_SEMCONV="latest"),
    ):
        got = rx.wait_for_metrics(latest, timeout_s=60)
    assert not {TTFC, TPOC, DURATION, USAGE} & set(got)
    assert got["gen_ai.client.inference.operation.output_tokens"].unit == "{token}"
    assert "gen_ai.token.type" not in got[latest[3]].points[0].attributes
