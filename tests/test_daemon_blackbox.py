"""What a blackbox_exporter user expects of the daemon, and its own logs and span export health.

One scenario (about 15 s) per module: the real daemon probes a scripted LangGraph-wire server
(`ok` every second, `bad` answering 422 with markup in its detail, `quiet` every hour, so only
`/probe` runs it), with OTLP pointed at a closed loopback port and JSON logs. A real Prometheus
scrapes `/probe?target=quiet&format=prometheus` with the multi-target relabelling pattern.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import DaemonProcess, Prometheus, free_port
from tests.support.scripted_server import ScriptedServer, body, langgraph_stream

pytestmark = pytest.mark.slow

PROBE_JOB = "langgraph-probe"
MARKUP = "<script>alert(1)</script> no assistant named 'nope'"


@dataclass
class Observed:
    index: httpx.Response
    probes: dict[str, Any]
    detail: httpx.Response | None
    unknown_detail: httpx.Response
    blackbox: httpx.Response
    blackbox_unknown: httpx.Response
    metrics_text: str
    prom_success: list[dict[str, Any]]
    prom_ttft: list[dict[str, Any]]
    log_lines: list[str] = field(default_factory=list)


def _config(url: str) -> dict[str, Any]:
    return {
        "defaults": {"interval": "1s", "timeout": {"idle": "2s", "total": "3s"}},
        "targets": [
            {"name": "ok", "url": url, "assistant_id": "agent"},
            {"name": "bad", "url": url + "/bad", "assistant_id": "nope"},
            {"name": "quiet", "url": url, "assistant_id": "agent", "interval": "1h"},
        ],
    }


async def _scenario(workdir: Path) -> Observed:
    async with ScriptedServer() as server:
        server.route_stateless(langgraph_stream(["agent"], tokens=3, first_token_s=0, gap_s=0.01))
        server.route("POST", "/bad/runs/stream", [body(422, {"detail": MARKUP})])
        otlp_port = free_port()  # nothing listens there
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        daemon = DaemonProcess(_config(server.url), workdir, env=env, lifecycle=True)
        await asyncio.to_thread(daemon.start)
        address = daemon.url.removeprefix("http://")
        prometheus = Prometheus(
            daemon.url,
            workdir,
            extra_scrape_configs=[
                {
                    "job_name": PROBE_JOB,
                    "metrics_path": "/probe",
                    "params": {"format": ["prometheus"]},
                    "static_configs": [{"targets": ["quiet"]}],
                    "relabel_configs": [
                        {"source_labels": ["__address__"], "target_label": "__param_target"},
                        {"source_labels": ["__param_target"], "target_label": "instance"},
                        {"target_label": "__address__", "replacement": address},
                    ],
                }
            ],
        )
        try:
            await asyncio.to_thread(prometheus.start)
            prom_success = await asyncio.to_thread(
                prometheus.wait_for, f'probe_success{{job="{PROBE_JOB}",instance="quiet"}} == 1'
            )
            prom_ttft = prometheus.query(
                f'probe_langgraph_time_to_first_token_seconds{{job="{PROBE_JOB}"}}'
            )
            async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as client:
                blackbox = await client.get("/probe?target=quiet&format=prometheus")
                blackbox_unknown = await client.get("/probe?target=http://x&format=prometheus")
                for _ in range(100):  # until an OTLP batch has failed (1 s timeout each)
                    metrics_text = (await client.get("/metrics")).text
                    if 'sink_errors_total{sink="otlp"}' in metrics_text:
                        break
                    await asyncio.sleep(0.2)
                probes = (await client.get("/-/probes")).json()
                index = await client.get("/")
                ok = [p for p in probes["recent"] if p["target"] == "ok"]
                detail = await client.get(f"/-/probes/{ok[0]['id']}") if ok else None
                unknown_detail = await client.get("/-/probes/" + "0" * 32)
        finally:
            await asyncio.to_thread(prometheus.stop)
            await asyncio.to_thread(daemon.stop)
        return Observed(
            index=index,
            probes=probes,
            detail=detail,
            unknown_detail=unknown_detail,
            blackbox=blackbox,
            blackbox_unknown=blackbox_unknown,
            metrics_text=metrics_text,
            prom_success=prom_success,
            prom_ttft=prom_ttft,
            log_lines=[line for line in daemon.log().splitlines() if line.strip()],
        )


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    yield asyncio.run(_scenario(tmp_path_factory.mktemp("blackbox")))


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def test_index_page_lists_recent_probes_with_links_and_logs(observed: Observed) -> None:
    """`/` is HTML with each recent probe, a link to its details and its log lines."""
    assert observed.index.status_code == 200
    assert observed.index.headers["content-type"].startswith("text/html")
    page = observed.index.text
    newest = observed.probes["recent"][0]
    assert f'href="/-/probes/{newest["id"]}"' in page
    assert "POST /runs/stream: HTTP 200" in page  # a log line of an `ok` probe


def test_index_page_offers_on_demand_probes_when_lifecycle_is_on(observed: Observed) -> None:
    """With lifecycle APIs on, `/` shows how to probe a target now, and not that it is off."""
    page = observed.index.text
    assert "<code>/probe?target=NAME</code>" in page
    assert "On-demand probes are off" not in page


def test_index_page_escapes_what_the_server_said(observed: Observed) -> None:
    """A server's error text with markup is shown escaped, never as markup."""
    page = observed.index.text
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_probe_details_by_id(observed: Observed) -> None:
    """`/-/probes/<id>` answers the kept result (JSON) with its log; an unknown id is 404."""
    assert observed.detail is not None
    assert observed.detail.status_code == 200
    detail = observed.detail.json()
    assert detail["target"] == "ok"
    assert detail["outcome"] == "success"
    assert any(line.startswith("POST /runs/stream") for line in detail["log"])
    assert observed.unknown_detail.status_code == 404


def test_blackbox_probe_answers_gauges_of_that_probe(observed: Observed) -> None:
    """`/probe?target=quiet&format=prometheus` parses as text format with blackbox's gauges."""
    assert observed.blackbox.status_code == 200
    text = observed.blackbox.text
    assert _samples(text, "probe_success") == [({}, 1.0)]
    assert _samples(text, "probe_http_status_code") == [({}, 200.0)]
    assert _samples(text, "probe_langgraph_tokens") == [({}, 3.0)]
    assert not _samples(text, "langgraph_probe_runs_total")


def test_blackbox_probe_of_an_unknown_target_is_404(observed: Observed) -> None:
    """Only configured names: anything else (a URL too) is 404, as for the JSON `/probe`."""
    assert observed.blackbox_unknown.status_code == 404


def test_prometheus_multi_target_pattern_scrapes_the_probe(observed: Observed) -> None:
    """A real Prometheus with the multi-target relabelling stores probe_success and TTFT per
    instance (the target name)."""
    assert [s["metric"]["instance"] for s in observed.prom_success] == ["quiet"]
    assert observed.prom_ttft
    assert float(observed.prom_ttft[0]["value"][1]) >= 0


def test_blackbox_probes_stay_out_of_the_slo_series(observed: Observed) -> None:
    """Probes run through `/probe?format=prometheus` (every scrape) add nothing to runs_total or
    the TTFT histogram of that target, but do show up in the recent probes."""
    runs = _samples(observed.metrics_text, "langgraph_probe_runs_total")
    assert sum(v for labels, v in runs if labels["target"] == "quiet") == 0
    assert sum(v for labels, v in runs if labels["target"] == "ok") > 0
    ttft = _samples(observed.metrics_text, "langgraph_probe_time_to_first_token_seconds_count")
    assert not [v for labels, v in ttft if labels["target"] == "quiet" and v > 0]
    assert any(p["target"] == "quiet" for p in observed.probes["recent"])


def test_failed_span_exports_are_counted(observed: Observed) -> None:
    """With the OTLP endpoint unreachable, sink_errors_total{sink="otlp"} counts the failures."""
    errors = _samples(observed.metrics_text, "langgraph_probe_sink_errors_total")
    assert [v for labels, v in errors if labels == {"sink": "otlp"} and v >= 1]


def test_every_log_line_is_json_including_the_otel_sdks(observed: Observed) -> None:
    """With LGSE_LOG_FORMAT=json every stderr line is one JSON object, the OTel SDK's too."""
    events = [orjson.loads(line) for line in observed.log_lines]  # raises on a plain line
    sdk = [e for e in events if str(e.get("logger", "")).startswith("opentelemetry")]
    assert sdk, [e.get("event") for e in events][:20]
    assert all(e["level"] in {"warning", "error", "critical"} for e in sdk)
