"""Secrets never leave the daemon, `/probe` is no open proxy, error excerpts are capped.

The main scenario runs once per module: the real daemon subprocess, with OTLP export to a real
receiver, probes scripted LangGraph-wire servers on loopback through `/probe`. One server
*reflects* the request headers (secrets included) into an HTTP 500 body, the way a debugging
proxy or a verbose gateway might, so the secrets reach the daemon's failure messages and must be
masked in every output. Every output is then searched for the literal secret values.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.daemon import DaemonProcess
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.scripted_server import (
    RecordedRequest,
    Script,
    ScriptedServer,
    body,
    error_event,
    langgraph_stream,
    metadata_event,
    send,
)

pytestmark = pytest.mark.slow

API_KEY_ENV = "LGSE_TEST_API_KEY"
TENANT_ENV = "LGSE_TEST_TENANT_TOKEN"
#: A 1 MB error page: its excerpt must be capped in every output.
HUGE_BODY = b"<html><body>" + b"overloaded " * (1024 * 1024 // 11) + b"</body></html>"
EXCERPT_LIMIT = 600


def _echo(req: RecordedRequest) -> str:
    # The secrets come first, so no excerpt cap can cut them off before they reach the daemon.
    h = req.headers
    return (
        f"denied: x-api-key={h.get('x-api-key')} tenant={h.get('x-tenant-token')} "
        f"authorization={h.get('authorization')}; all headers: {h}"
    )


def reflect_headers(req: RecordedRequest) -> Script:
    """HTTP 500 whose `detail` repeats the request's secret headers."""
    return [body(500, {"detail": _echo(req)})]


def reflect_in_stream(req: RecordedRequest) -> Script:
    """HTTP 200 stream whose `event: error` message repeats the secret headers (docs/WIRE.md §8)."""
    return [send(metadata_event()), send(error_event("PermissionError", _echo(req)))]


@dataclass
class Secrets:
    api_key: str
    tenant: str  # secret header from the environment
    bearer: str  # secret header from a file
    rotated_bearer: str  # written to the file mid-run, without a reload

    def all(self) -> list[str]:
        return [self.api_key, self.tenant, self.bearer, self.rotated_bearer]


@dataclass
class Observed:
    secrets: Secrets
    requests: dict[str, list[RecordedRequest]] = field(default_factory=dict)
    probe: dict[str, httpx.Response] = field(default_factory=dict)  # by a short case name
    probes_page: str = ""
    metrics: list[str] = field(default_factory=list)
    exit_code: int | None = None
    log: str = ""
    otlp_exports: list[bytes] = field(default_factory=list)  # raw serialized requests
    span_texts: list[str] = field(default_factory=list)  # every string a span carries


def daemon_config(urls: dict[str, str], bearer_file: Path) -> dict[str, Any]:
    secret = {
        "api_key_env": API_KEY_ENV,
        "secret_headers": {
            "X-Tenant-Token": {"env": TENANT_ENV},
            "Authorization": {"file": str(bearer_file)},
        },
    }
    return {
        # Probes come from /probe only (a scheduled one within the test is unlikely and harmless).
        "defaults": {"interval": "1h", "timeout": {"idle": "2s", "total": "5s"}},
        "targets": [
            {
                "name": "healthy",
                "url": urls["healthy"],
                "assistant_id": "agent",
                "protocol": "legacy",
                **secret,
            },
            {
                "name": "reflect",
                "url": urls["reflect"],
                "assistant_id": "agent",
                "protocol": "legacy",
                **secret,
            },
            {
                "name": "reflect-sse",
                "url": urls["reflect-sse"],
                "assistant_id": "agent",
                "protocol": "legacy",
                **secret,
            },
            {"name": "huge", "url": urls["huge"], "assistant_id": "agent", "protocol": "legacy"},
        ],
    }


async def _scenario(workdir: Path) -> Observed:
    sec = Secrets(
        api_key="sk-lgse-" + secrets.token_hex(16),
        tenant="tenant-" + secrets.token_hex(12),
        bearer="Bearer " + secrets.token_hex(20),
        rotated_bearer="Bearer " + secrets.token_hex(20),
    )
    seen = Observed(sec)
    bearer_file = workdir / "bearer"
    bearer_file.write_text(sec.bearer + "\n")
    bearer_file.chmod(0o600)
    names = ("healthy", "reflect", "reflect-sse", "huge", "bystander")
    servers = {name: ScriptedServer() for name in names}
    for server in servers.values():
        await server.start()
    servers["healthy"].route_stateless(langgraph_stream(tokens=3, first_token_s=0.01, gap_s=0.01))
    servers["reflect"].route_stateless(reflect_headers)
    servers["reflect-sse"].route_stateless(reflect_in_stream)
    servers["huge"].route_stateless([body(500, HUGE_BODY, "text/html")])
    # `bystander` has no routes: any request it records came through /probe's query string.
    try:
        with OTLPReceiver() as rx:
            env = {
                API_KEY_ENV: sec.api_key,
                TENANT_ENV: sec.tenant,
                "OTEL_EXPORTER_OTLP_ENDPOINT": rx.grpc_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            }
            urls = {n: s.url for n, s in servers.items()}
            daemon = DaemonProcess(
                daemon_config(urls, bearer_file), workdir, env=env, lifecycle=True
            )
            await asyncio.to_thread(daemon.start)  # blocking polls, off the servers' loop
            try:
                async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as client:
                    cases: dict[str, dict[str, str] | None] = {
                        "healthy": {"target": "healthy", "debug": "true"},
                        "reflect": {"target": "reflect", "debug": "true"},
                        "reflect_plain": {"target": "reflect"},
                        "reflect_sse": {"target": "reflect-sse", "debug": "true"},
                        "huge": {"target": "huge", "debug": "true"},
                        "unknown": {"target": "nope"},
                        "url": {"target": urls["bystander"] + "/"},
                        "url_debug": {"target": urls["bystander"], "debug": "true"},
                        "url_of_configured": {"target": urls["healthy"]},
                        "empty": {"target": ""},
                        "missing": None,
                        "two": {"target": ["healthy", "reflect"]},  # type: ignore[dict-item]
                    }
                    for case, params in cases.items():
                        seen.probe[case] = await client.get("/probe", params=params)
                    # A rotated secret file is read by the next probe without a reload.
                    bearer_file.write_text(sec.rotated_bearer + "\n")
                    seen.probe["rotated"] = await client.get(
                        "/probe", params={"target": "reflect", "debug": "true"}
                    )
                    seen.probes_page = (await client.get("/-/probes")).text
                    seen.metrics.append((await client.get("/metrics")).text)
                    om = {"Accept": "application/openmetrics-text"}
                    seen.metrics.append((await client.get("/metrics", headers=om)).text)
                # SIGTERM flushes the span batch before exit: every span is at the receiver.
                daemon.signal(signal.SIGTERM)
                seen.exit_code = await asyncio.to_thread(daemon.wait, 30)
            finally:
                await asyncio.to_thread(daemon.stop)
            seen.log = daemon.log()
            for export in rx.exports():
                seen.otlp_exports.append(export.request.SerializeToString())
            for span in rx.spans():
                seen.span_texts += [span.name, span.status_message, repr(span.attributes)]
                seen.span_texts += [repr(e) for e in span.events]
    finally:
        for server in servers.values():
            await server.stop()
    seen.requests = {n: s.requests for n, s in servers.items()}
    return seen


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    yield asyncio.run(_scenario(tmp_path_factory.mktemp("security")))


def leaks(text: str | bytes, sec: Secrets) -> list[str]:
    """The secret values found in `text` (the token part of a bearer value counts on its own)."""
    raw = text if isinstance(text, bytes) else text.encode()
    found = []
    for value in sec.all():
        for needle in {value, value.removeprefix("Bearer ")}:
            if needle.encode() in raw:
                found.append(needle)
    return found


# ------------------------------------------------------------------ secrets reach the server


def test_api_key_and_secret_headers_reach_the_server(observed: Observed) -> None:
    """The server sees x-api-key from the env, a secret header from the env and one from a file."""
    (req,) = observed.requests["healthy"]
    sec = observed.secrets
    assert req.headers["x-api-key"] == sec.api_key
    assert req.headers["x-tenant-token"] == sec.tenant
    assert req.headers["authorization"] == sec.bearer


def test_rotated_secret_file_is_sent_without_a_reload(observed: Observed) -> None:
    """After the secret file changes, the next probe sends the new value."""
    assert observed.requests["reflect"][-1].headers["authorization"] == (
        observed.secrets.rotated_bearer
    )


@pytest.mark.parametrize(
    ("case", "kind"), [("reflect", "http_status"), ("reflect_sse", "run_error")]
)
def test_reflecting_server_put_the_secrets_into_the_failure(
    observed: Observed, case: str, kind: str
) -> None:
    """Precondition of the leak tests: the daemon got all three secrets back in a failure."""
    failure = observed.probe[case].json()["failure"]
    assert failure["kind"] == kind
    assert "denied: x-api-key=*** tenant=*** authorization=***" in failure["message"]


# ------------------------------------------------------------------ no output holds a secret


def test_no_secret_in_the_daemon_log(observed: Observed) -> None:
    """The daemon's log holds none of the secret values."""
    assert "probe_failed" in observed.log
    assert leaks(observed.log, observed.secrets) == []


@pytest.mark.parametrize(
    "case", ["healthy", "reflect", "reflect_plain", "reflect_sse", "huge", "rotated"]
)
def test_no_secret_in_probe_output(observed: Observed, case: str) -> None:
    """`/probe?target=X[&debug=true]` output holds none of the secret values."""
    response = observed.probe[case]
    assert response.status_code == 200
    assert leaks(response.content, observed.secrets) == []


def test_debug_output_names_secret_sources_but_not_values(observed: Observed) -> None:
    """The debug target config shows where a secret comes from (env name, file), not the value."""
    config = observed.probe["healthy"].json()["target_config"]
    assert config["api_key_env"] == API_KEY_ENV
    assert config["secret_headers"]["X-Tenant-Token"]["env"] == TENANT_ENV


def test_no_secret_in_recent_probes_page(observed: Observed) -> None:
    """`/-/probes` holds none of the secret values."""
    assert '"reflect"' in observed.probes_page
    assert leaks(observed.probes_page, observed.secrets) == []


def test_no_secret_in_metrics(observed: Observed) -> None:
    """Neither the Prometheus text nor the OpenMetrics exposition holds a secret value."""
    for text in observed.metrics:
        assert 'target="reflect"' in text
        assert leaks(text, observed.secrets) == []


def test_no_secret_in_exported_spans(observed: Observed) -> None:
    """No OTLP export (attributes, status messages, events, resource) holds a secret value."""
    assert any(b"invoke_agent" in raw for raw in observed.otlp_exports)
    assert leaks(b"".join(observed.otlp_exports), observed.secrets) == []
    assert leaks("\n".join(observed.span_texts), observed.secrets) == []


# ------------------------------------------------------------------ /probe is no open proxy


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("unknown", 404),
        ("url", 404),
        ("url_debug", 404),
        ("url_of_configured", 404),
        ("empty", 400),
        ("missing", 400),
        ("two", 400),
    ],
)
def test_probe_refuses_anything_but_one_configured_name(
    observed: Observed, case: str, code: int
) -> None:
    """`/probe` answers 404 to unknown names and URLs, 400 to an empty, missing or repeated one."""
    assert observed.probe[case].status_code == code


def test_probe_with_a_url_sends_nothing_to_that_url(observed: Observed) -> None:
    """`/probe?target=<URL>` never makes a request to that URL."""
    assert observed.requests["bystander"] == []


def test_probe_with_a_configured_url_does_not_probe_it(observed: Observed) -> None:
    """A configured target's own URL is not a name either: its server got only the named probe."""
    assert len(observed.requests["healthy"]) == 1


# ------------------------------------------------------------------ capped error excerpts


def test_huge_error_body_is_capped_in_probe_output(observed: Observed) -> None:
    """A 1 MB error page gives a failure message of at most ~600 characters."""
    result = observed.probe["huge"].json()
    assert result["failure"]["kind"] == "http_status"
    assert "overloaded" in result["failure"]["message"]
    assert len(result["failure"]["message"]) <= EXCERPT_LIMIT
    assert len(observed.probe["huge"].content) < 64 * 1024  # nothing else carries the body


def test_huge_error_body_is_capped_in_the_log(observed: Observed) -> None:
    """The log line of the 1 MB error probe stays short."""
    records = [orjson.loads(raw) for raw in observed.log.splitlines() if raw.startswith("{")]
    (line,) = [r for r in records if r["event"] == "probe_failed" and r.get("target") == "huge"]
    assert len(line["error"]) <= EXCERPT_LIMIT
    assert max(len(raw) for raw in observed.log.splitlines()) < 4 * 1024


def test_huge_error_body_is_capped_in_recent_probes(observed: Observed) -> None:
    """`/-/probes` keeps a short excerpt of the 1 MB error page."""
    page = orjson.loads(observed.probes_page)
    (huge,) = [r for r in page["recent"] if r["target"] == "huge"]
    assert len(huge["error"]) <= EXCERPT_LIMIT


def test_daemon_exits_cleanly(observed: Observed) -> None:
    """The scenario's daemon stopped with status 0 on SIGTERM (so the span batch was flushed)."""
    assert observed.exit_code == 0


# ------------------------------------------------------------------ secret file permissions


def _start_and_stop(tmp_path: Path, mode: int) -> str:
    secret = tmp_path / "api-key"
    secret.write_text("sk-" + secrets.token_hex(16) + "\n")
    secret.chmod(mode)
    config = {
        "targets": [
            # Port 9 on loopback: nothing listens; an (unlikely) scheduled probe fails to connect.
            {"name": "t", "url": "http://127.0.0.1:9", "assistant_id": "agent", "protocol": "legacy",
             "interval": "1h", "api_key_file": str(secret)},
        ]
    }  # fmt: skip
    with DaemonProcess(config, tmp_path) as daemon:
        pass
    return daemon.log()


def _events(log: str) -> list[str]:
    return [orjson.loads(line)["event"] for line in log.splitlines() if line.startswith("{")]


def test_warns_when_secret_file_is_readable_by_others(tmp_path: Path) -> None:
    """A 0644 secret file gives a `secret_file_readable_by_others` warning at start."""
    assert "secret_file_readable_by_others" in _events(_start_and_stop(tmp_path, 0o644))


def test_no_warning_for_a_private_secret_file(tmp_path: Path) -> None:
    """A 0600 secret file gives no permission warning."""
    events = _events(_start_and_stop(tmp_path, 0o600))
    assert "exporter_started" in events
    assert "secret_file_readable_by_others" not in events
