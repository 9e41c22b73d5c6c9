"""The exporter's own-health and blackbox-parity series: ITL buckets that resolve real LLM gaps,
build info, the process collector, the last HTTP status, the TLS certificate's expiry, and the
one-probe exposition behind `/probe?format=prometheus`."""

from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.config import Target
from exporter.core.errors import FailureKind
from exporter.core.result import Failure
from exporter.probe import probe
from exporter.sinks.prometheus import GAP_BUCKETS, probe_exposition
from tests.support.scripted_server import ScriptedServer, langgraph_stream
from tests.support.tls import localhost_tls
from tests.test_sinks import result, sink_with

LABELS = {"target": "t", "assistant": "agent", "env": "dev"}


def _value(name: str, labels: dict[str, str], text: bytes) -> float | None:
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


def test_gap_buckets_step_5ms_up_to_50ms() -> None:
    """Every multiple of 5 ms from 5 to 50 ms is an ITL bucket bound, and the old bounds stay."""
    steps = {round(0.005 * i, 3) for i in range(1, 11)}
    assert steps <= set(GAP_BUCKETS)
    assert {0.001, 0.075, 0.1, 1.0, 10.0} <= set(GAP_BUCKETS)
    assert list(GAP_BUCKETS) == sorted(GAP_BUCKETS)


def test_30ms_gaps_land_in_the_30ms_bucket() -> None:
    """Gaps of 30 ms count in le=0.03 and not in le=0.025: the histogram resolves them."""
    sink = sink_with("t")
    sink.record(result())  # two gaps of 30 ms
    name = "langgraph_probe_inter_token_latency_seconds_bucket"
    labels = {**LABELS, "node": "agent"}
    assert sink.registry.get_sample_value(name, {**labels, "le": "0.03"}) == 2
    assert sink.registry.get_sample_value(name, {**labels, "le": "0.025"}) == 0


def test_build_info_carries_version_and_python() -> None:
    """langgraph_probe_build_info{version, python} is 1."""
    sink = sink_with()
    labels = {"version": __version__, "python": platform.python_version()}
    assert sink.registry.get_sample_value("langgraph_probe_build_info", labels) == 1


@pytest.mark.parametrize(
    "name",
    ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"],
)
def test_process_collector_reports_the_exporters_own_health(name: str) -> None:
    """The prometheus_client process collector is registered: RSS, CPU and fds are exposed."""
    value = sink_with().registry.get_sample_value(name)
    assert value is not None
    assert value > 0 or name == "process_cpu_seconds_total"


def test_http_status_code_of_the_last_probe() -> None:
    """langgraph_probe_http_status_code is the last probe's status, 0 when no response came."""
    sink = sink_with("t")
    failed = result(failure=Failure(FailureKind.HTTP_STATUS, "HTTP 422", http_status=422))
    sink.record(failed.__class__(**{**_fields(failed), "http_status": 422}))
    assert sink.registry.get_sample_value("langgraph_probe_http_status_code", LABELS) == 422
    sink.record(result(failure=Failure(FailureKind.CONNECT, "refused")))
    assert sink.registry.get_sample_value("langgraph_probe_http_status_code", LABELS) == 0


def _fields(r: object) -> dict[str, object]:
    return {f: getattr(r, f) for f in r.__dataclass_fields__}  # type: ignore[attr-defined]


def test_cert_expiry_is_kept_when_a_later_probe_has_no_handshake() -> None:
    """langgraph_probe_ssl_earliest_cert_expiry stays at the last seen expiry."""
    sink = sink_with("t")
    with_cert = result().__class__(**{**_fields(result()), "tls_cert_not_after_s": 2e9})
    sink.record(with_cert)
    sink.record(result(failure=Failure(FailureKind.CONNECT, "refused")))
    assert sink.registry.get_sample_value("langgraph_probe_ssl_earliest_cert_expiry", LABELS) == 2e9


@pytest.mark.anyio
async def test_https_probe_reads_the_certificates_not_after(tmp_path: Path) -> None:
    """A probe of an https server records the notAfter of the certificate it was shown."""
    not_after = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    server_ctx, ca_file = localhost_tls(tmp_path, not_after=not_after)
    async with ScriptedServer(ssl_context=server_ctx) as server:
        server.route_stateless(langgraph_stream(["agent"], tokens=2, first_token_s=0, gap_s=0))
        target = Target.model_validate(
            {"name": "tls", "url": server.url, "assistant_id": "agent", "ca_file": str(ca_file)}
        )
        got = await probe(target)
    assert got.failure is None
    assert got.tls_cert_not_after_s == not_after.timestamp()
    assert got.to_dict()["tls_cert_not_after_s"] == not_after.timestamp()


@pytest.mark.anyio
async def test_plain_http_probe_has_no_certificate_expiry() -> None:
    """Over plain HTTP there is no certificate, so no expiry."""
    async with ScriptedServer() as server:
        server.route_stateless(langgraph_stream(["agent"], tokens=2, first_token_s=0, gap_s=0))
        target = Target.model_validate(
            {"name": "plain", "url": server.url, "assistant_id": "agent"}
        )
        got = await probe(target)
    assert got.failure is None
    assert got.tls_cert_not_after_s is None


def test_one_probe_exposition_has_blackbox_names_and_per_node_gaps() -> None:
    """probe_success, probe_duration_seconds, probe_http_status_code and ITL by node parse."""
    r = result()
    r = r.__class__(**{**_fields(r), "http_status": 200, "tls_cert_not_after_s": 2e9})
    text = probe_exposition(r)
    assert _value("probe_success", {}, text) == 1
    assert _value("probe_duration_seconds", {}, text) == pytest.approx(0.5)
    assert _value("probe_http_status_code", {}, text) == 200
    assert _value("probe_ssl_earliest_cert_expiry", {}, text) == 2e9
    assert _value("probe_langgraph_time_to_first_token_seconds", {}, text) == pytest.approx(0.3)
    gap = {"node": "agent", "quantile": "0.5"}
    assert _value("probe_langgraph_inter_token_latency_seconds", gap, text) == pytest.approx(0.03)


def test_one_probe_exposition_of_a_failure_names_its_reason() -> None:
    """A failed probe: probe_success 0 and probe_langgraph_failure{reason} 1."""
    text = probe_exposition(result(failure=Failure(FailureKind.STALLED, "no byte")))
    assert _value("probe_success", {}, text) == 0
    assert _value("probe_langgraph_failure", {"reason": "stalled"}, text) == 1
