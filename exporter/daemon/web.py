"""The daemon's HTTP surface, a small ASGI app served by uvicorn inside the daemon's event loop.

| path | what |
| --- | --- |
| `GET /metrics` | Prometheus text, or OpenMetrics (exemplars) when asked; gzip when accepted |
| `GET /healthz` | 200 while the process runs |
| `GET /readyz` | 200 once a config is loaded and probes are scheduled; 503 while shutting down |
| `POST /-/reload` | reload the targets file (also SIGHUP); 500 with the problems if invalid |
| `GET /probe?target=NAME[&debug=true]` | probe that configured target now; JSON result |
| `GET /probe?target=NAME&format=prometheus` | the same, as blackbox gauges of that one probe |
| `GET /-/probes` | recent results, failures kept longer, and the schedule |
| `GET /-/probes/<id>` | one kept result by its id (trace id), with its log |
| `GET /` | HTML page of recent probes with their logs (`exporter.daemon.pages`) |

`/probe` accepts only the name of a configured target. Any other value (including a URL) is a
404, and nothing from the query string ever reaches a request: no open proxy (CVE-2020-16248).
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter.daemon.pages import index_page
from exporter.runtime import collector_paused

__all__ = ["Handlers", "accepts_gzip", "make_app"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Handlers:
    """What the web layer may ask of the daemon; it imports neither scheduler nor probe."""

    registry: CollectorRegistry
    ready: Callable[[], bool]
    reload: Callable[[], Awaitable[tuple[bool, str]]]
    run_probe: Callable[[str, bool], Awaitable[dict[str, Any] | None]]
    probes: Callable[[], dict[str, Any]]
    target_names: Callable[[], list[str]]
    mask: Callable[[bytes], bytes]
    # Blackbox-style `/probe?format=prometheus`: exposition of one probe kept out of the SLO
    # series; None when the target is unknown.
    run_probe_metrics: Callable[[str], Awaitable[bytes | None]] | None = None
    # `/-/probes/<id>`: one kept result; None when unknown.
    probe_detail: Callable[[str], dict[str, Any] | None] | None = None
    # `/metrics` from cached per-target blocks: (openmetrics, gzip) -> body. None: the
    # registry is rendered by prometheus_client on every scrape.
    exposition: Callable[..., bytes] | None = None


async def _respond(
    send: Send, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _json(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n"


def accepts_gzip(accept_encoding: str) -> bool:
    """True when an `Accept-Encoding` value admits gzip (RFC 9110 §12.5.3; `q=0` refuses)."""
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def _render_metrics(h: Handlers, accept: str, gzip_ok: bool) -> tuple[bytes, str]:
    """The `/metrics` body and its content type; in a thread, with the collector paused."""
    encoder, content_type = choose_encoder(accept)
    with collector_paused():
        if h.exposition is not None:
            openmetrics = content_type.startswith("application/openmetrics-text")
            return h.exposition(openmetrics=openmetrics, gzip=gzip_ok), content_type
        body = encoder(h.registry)
        return (gzip.compress(body, 1) if gzip_ok else body), content_type


async def _respond_metrics(send: Send, body: bytes, content_type: str, gzipped: bool) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"vary", b"accept-encoding"),
    ]
    if gzipped:
        headers.append((b"content-encoding", b"gzip"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def make_app(h: Handlers) -> App:
    """The ASGI application."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        path: str = scope["path"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        json_type = "application/json"
        if path == "/metrics" and method in ("GET", "HEAD"):
            accept = accept_encoding = ""
            for name, value in scope.get("headers", []):
                if name == b"accept":
                    accept = value.decode("latin-1")
                elif name == b"accept-encoding":
                    accept_encoding = value.decode("latin-1")
            gzip_ok = accepts_gzip(accept_encoding)
            # NOTE: in a thread, not on the loop: rendering (or joining and compressing) a
            # large exposition takes tens of ms, and every token read meanwhile by a running
            # probe would be stamped that late (docs/PERFORMANCE.md "Daemon scale").
            body, content_type = await asyncio.to_thread(_render_metrics, h, accept, gzip_ok)
            await _respond_metrics(send, body, content_type, gzip_ok)
        elif path == "/healthz":
            await _respond(send, 200, b"ok\n")
        elif path == "/readyz":
            ok = h.ready()
            await _respond(send, 200 if ok else 503, b"ready\n" if ok else b"not ready\n")
        elif path == "/-/reload":
            if method != "POST":
                await _respond(send, 405, b"use POST\n")
                return
            ok, text = await h.reload()
            await _respond(send, 200 if ok else 500, text.encode() + b"\n")
        elif path == "/probe":
            values = query.get("target", [])
            if len(values) != 1 or not values[0]:
                await _respond(send, 400, b"give exactly one ?target=NAME of a configured target\n")
                return
            if query.get("format", [""])[0] == "prometheus" and h.run_probe_metrics is not None:
                await _probe_metrics(send, h, values[0])
                return
            debug = query.get("debug", ["false"])[0].lower() in ("1", "true", "yes")
            result = await h.run_probe(values[0], debug)
            if result is None:
                known = ", ".join(h.target_names()) or "none"
                body = f"unknown target; configured targets: {known}\n".encode()
                await _respond(send, 404, body)
                return
            await _respond(send, 200, h.mask(_json(result)), json_type)
        elif path == "/-/probes":
            await _respond(send, 200, h.mask(_json(h.probes())), json_type)
        elif path.startswith("/-/probes/") and h.probe_detail is not None:
            detail = h.probe_detail(path.removeprefix("/-/probes/"))
            if detail is None:
                await _respond(send, 404, b"no such probe (only recent ones are kept)\n")
                return
            await _respond(send, 200, h.mask(_json(detail)), json_type)
        elif path == "/":
            page = index_page(h.probes())
            await _respond(send, 200, h.mask(page), "text/html; charset=utf-8")
        else:
            await _respond(send, 404, b"not found\n")

    return app


async def _probe_metrics(send: Send, h: Handlers, name: str) -> None:
    """`/probe?target=NAME&format=prometheus`: one probe as blackbox gauges (text format)."""
    assert h.run_probe_metrics is not None
    body = await h.run_probe_metrics(name)
    if body is None:
        known = ", ".join(h.target_names()) or "none"
        await _respond(send, 404, f"unknown target; configured targets: {known}\n".encode())
        return
    await _respond(send, 200, h.mask(body), "text/plain; version=0.0.4; charset=utf-8")
