"""The daemon's HTTP surface, a small ASGI app served by uvicorn inside the daemon's event loop.

| path | what |
| --- | --- |
| `GET /metrics` | Prometheus text format, or OpenMetrics (with exemplars) when the scraper asks |
| `GET /healthz` | 200 while the process runs |
| `GET /readyz` | 200 once a config is loaded and probes are scheduled; 503 while shutting down |
| `POST /-/reload` | reload the targets file (also SIGHUP); 500 with the problems if invalid |
| `GET /probe?target=NAME[&debug=true]` | probe that configured target now; JSON result |
| `GET /probe?target=NAME&format=prometheus` | the same, as blackbox gauges of that one probe |
| `GET /-/probes` | recent results, failures kept longer, and the schedule |
| `GET /probe?target=NAME&format=svg` | probe now; the waterfall as SVG |
| `GET /-/probes/<id>.svg` (`.json`) | waterfall of a kept result; id = its trace id |
| `GET /-/probes/latest.svg?target=NAME` | redirect to that target's latest `<id>.svg` |
| `GET /-/events` | Server-Sent Events: one `probe` event per finished probe |
| `GET /-/probes/<id>` | one kept result by its id (trace id), with its log |
| `GET /` | HTML page of recent probes with their logs (`exporter.daemon.pages`) |

`/probe` accepts only the name of a configured target. Any other value (including a URL) is a
404, and nothing from the query string ever reaches a request: no open proxy (CVE-2020-16248).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter.core.result import ProbeResult
from exporter.daemon.events import EventBus, serve_events
from exporter.daemon.pages import index_page
from exporter.daemon.pictures import SVG_HEADERS, serve_picture, svg_bytes
from exporter.runtime import collector_paused

__all__ = ["Handlers", "make_app"]

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
    # Pictures and the event stream (exporter/daemon/pictures.py, events.py); None: 404.
    run_probe_result: Callable[[str], Awaitable[ProbeResult | None]] | None = None
    find_result: Callable[[str], ProbeResult | None] | None = None
    latest_result: Callable[[str], ProbeResult | None] | None = None
    events: EventBus | None = None
    # Blackbox-style `/probe?format=prometheus`: exposition of one probe kept out of the SLO
    # series; None when the target is unknown.
    run_probe_metrics: Callable[[str], Awaitable[bytes | None]] | None = None
    # `/-/probes/<id>`: one kept result; None when unknown.
    probe_detail: Callable[[str], dict[str, Any] | None] | None = None


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _json(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n"


def _render(encoder: Callable[[CollectorRegistry], bytes], registry: CollectorRegistry) -> bytes:
    """Render an exposition with the cycle collector paused (see `exporter.runtime`)."""
    with collector_paused():
        return encoder(registry)


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
            accept = ""
            for name, value in scope.get("headers", []):
                if name == b"accept":
                    accept = value.decode("latin-1")
            encoder, content_type = choose_encoder(accept)
            # NOTE: in a thread, not on the loop: a large exposition takes ~100 ms to render,
            # and every token read meanwhile by a running probe would be stamped that late.
            body = await asyncio.to_thread(_render, encoder, h.registry)
            await _respond(send, 200, body, content_type)
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
            if query.get("format", ["json"])[0] == "svg" and h.run_probe_result is not None:
                probed = await h.run_probe_result(values[0])
                if probed is not None:
                    svg = h.mask(svg_bytes(probed))
                    await _respond(send, 200, svg, "image/svg+xml", SVG_HEADERS)
                    return
                known = ", ".join(h.target_names()) or "none"
                await _respond(send, 404, f"unknown target; configured targets: {known}\n".encode())
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
        elif path == "/-/events" and h.events is not None:
            await serve_events(h.events, scope, receive, send)
        elif (
            path.startswith("/-/probes/")
            and path.endswith((".svg", ".json"))
            and (h.find_result and h.latest_result)
        ):
            await serve_picture(path, query, send, find=h.find_result, latest=h.latest_result,
                                mask=h.mask)  # fmt: skip
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
