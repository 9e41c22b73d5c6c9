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
| `GET /probe?target=NAME&format=svg` | probe now; the waterfall as SVG |
| `GET /-/probes/<id>.svg` (`.json`) | waterfall of a kept result (`exporter.daemon.pictures`) |
| `GET /-/probes/latest.svg?target=NAME` | redirect to that target's latest `<id>.svg` |
| `GET /-/events` | Server-Sent Events: one `probe` event per finished probe (`.events`) |
| `GET /` | HTML page of recent probes with their logs (`exporter.daemon.pages`) |

`/probe` accepts only the name of a configured target. Any other value (including a URL) is a
404, and nothing from the query string ever reaches a request: no open proxy (CVE-2020-16248).
At most one on-demand probe per target runs at a time (another request gets 429 with
`Retry-After`).

`/probe` and `/-/reload` are *lifecycle* endpoints: they make the exporter do work (start paid LLM
runs, re-read files), so they answer 403 unless `LGSE_WEB_ENABLE_LIFECYCLE` is on, as Prometheus
does with `--web.enable-lifecycle`. With a web-config file that has `basic_auth_users`, every
endpoint but `/healthz` and `/readyz` needs the credentials (401 with `WWW-Authenticate`
otherwise); those two stay open for the kubelet and say nothing but "ok" (docs/RELIABILITY.md).

Adding an endpoint: write an `async def _x(h, request) -> Response` and add a `Route` to
`routes()`; authentication, lifecycle gating and method checks come from the `Route`.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter.core.result import ProbeResult
from exporter.daemon.events import EventBus, serve_events
from exporter.daemon.pages import index_page
from exporter.daemon.pictures import SVG, SVG_HEADERS, picture, svg_bytes
from exporter.daemon.webconfig import BasicAuth
from exporter.runtime import collector_paused

__all__ = [
    "LIFECYCLE_DISABLED",
    "Handlers",
    "ProbeBusy",
    "Request",
    "Response",
    "Route",
    "accepts_gzip",
    "make_app",
    "routes",
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
HTML = "text/html; charset=utf-8"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
LIFECYCLE_DISABLED = (
    b"lifecycle APIs are not enabled (/probe, /-/reload); start the exporter with "
    b"LGSE_WEB_ENABLE_LIFECYCLE=true or --web.enable-lifecycle to enable them\n"
)
REALM = 'Basic realm="langgraph-stream-exporter", charset="UTF-8"'


class ProbeBusy(Exception):
    """`Handlers.run_probe` raises it while an on-demand probe of the target is in flight."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"an on-demand probe is running; retry after {retry_after_s}s")


@dataclass(frozen=True)
class Handlers:
    """What the web layer may ask of the daemon; it imports neither scheduler nor probe."""

    registry: CollectorRegistry
    ready: Callable[[], bool]
    reload: Callable[[], Awaitable[tuple[bool, str]]]
    #: Result as JSON-ready dict, None for an unknown target; raises `ProbeBusy`.
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
    exposition: Callable[..., Iterator[bytes]] | None = None
    # Pictures and the event stream (exporter/daemon/pictures.py, events.py); None: 404.
    #: `/probe?format=svg`: the result itself, None for an unknown target; raises `ProbeBusy`.
    run_probe_result: Callable[[str], Awaitable[ProbeResult | None]] | None = None
    find_result: Callable[[str], ProbeResult | None] | None = None
    latest_result: Callable[[str], ProbeResult | None] | None = None
    events: EventBus | None = None


@dataclass(frozen=True)
class Request:
    """The parts of an ASGI HTTP scope an endpoint reads, and whether the app serves the
    lifecycle APIs (`/` offers `/probe` only then)."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: tuple[tuple[bytes, bytes], ...]
    lifecycle: bool = False

    @classmethod
    def from_scope(cls, scope: Scope, *, lifecycle: bool = False) -> Request:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        headers = tuple(scope.get("headers", ()))
        return cls(scope["method"], scope["path"], query, headers, lifecycle)

    def header(self, name: bytes) -> str | None:
        """The first value of a header (`name` in lower case), decoded as latin-1."""
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()

    async def send(self, send: Send) -> None:
        headers = _header_list(self.content_type, len(self.body), self.headers)
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def _header_list(
    content_type: str, length: int | None, extra: Iterable[tuple[str, str]]
) -> list[tuple[bytes, bytes]]:
    """Response headers as ASGI wants them; no length: the server sends the body chunked."""
    headers = [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra)
    return headers


@dataclass(frozen=True)
class StreamingResponse(Response):
    """A response that writes itself for as long as it lasts (`/-/events`): `run(receive,
    send)` sends the start and the body parts."""

    run: Callable[[Receive, Send], Awaitable[None]] | None = None


Endpoint = Callable[[Handlers, Request], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    """One path. `methods` empty: any method. `lifecycle`: 403 unless lifecycle APIs are on.
    `public`: no basic auth (liveness and readiness only). `prefix`: the route serves the
    paths below its key too."""

    endpoint: Endpoint
    methods: frozenset[str] = field(default_factory=frozenset)
    lifecycle: bool = False
    public: bool = False
    #: Also serves every path under this one (the key ends with "/").
    prefix: bool = False


def _match(table: Mapping[str, Route], path: str) -> Route | None:
    """The route of `path`: an exact key, else the longest prefix route it falls under."""
    route = table.get(path)
    if route is not None:
        return route
    under = [k for k, r in table.items() if r.prefix and path.startswith(k) and path != k]
    return table[max(under, key=len)] if under else None


def _json(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n"


def accepts_gzip(accept_encoding: str) -> bool:
    """True when an `Accept-Encoding` value admits gzip (`gzip`, `x-gzip` or `*`; `q=0` refuses)."""
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


def _render_registry(h: Handlers, accept: str, gzip_ok: bool) -> tuple[bytes, str]:
    """`/metrics` from the registry alone (no cached exposition); in a thread."""
    encoder, content_type = choose_encoder(accept)
    with collector_paused():
        body = encoder(h.registry)
    return (gzip.compress(body, 1) if gzip_ok else body), content_type


# ------------------------------------------------------------------ endpoints


async def _metrics(h: Handlers, request: Request) -> Response:
    accept = request.header(b"accept") or ""
    gzip_ok = accepts_gzip(request.header(b"accept-encoding") or "")
    headers = [("vary", "accept-encoding")]
    if gzip_ok:
        headers.append(("content-encoding", "gzip"))
    if h.exposition is None:
        body, content_type = await asyncio.to_thread(_render_registry, h, accept, gzip_ok)
        return Response(200, body, content_type, tuple(headers))
    content_type = choose_encoder(accept)[1]
    chunks = h.exposition(
        openmetrics=content_type.startswith("application/openmetrics-text"), gzip=gzip_ok
    )

    async def run(receive: Receive, send: Send) -> None:
        # NOTE: on the loop, piece by piece, the loop running between two: a scrape delays a
        # token's stamp by one piece (well under 1 ms) where a thread holding the GIL delayed
        # it by a switch interval or more at every read (docs/PERFORMANCE.md "Daemon scale").
        start: dict[str, Any] = {
            "type": "http.response.start",
            "status": 200,
            "headers": _header_list(content_type, None, headers),
        }
        await send(start)
        for chunk in chunks:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            # `send` returns without suspending while the socket takes the bytes: yield anyway.
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})

    return StreamingResponse(200, b"", content_type, tuple(headers), run=run)


async def _healthz(h: Handlers, request: Request) -> Response:
    return Response(200, b"ok\n")


async def _readyz(h: Handlers, request: Request) -> Response:
    ok = h.ready()
    return Response(200 if ok else 503, b"ready\n" if ok else b"not ready\n")


async def _reload(h: Handlers, request: Request) -> Response:
    ok, text = await h.reload()
    return Response(200 if ok else 500, text.encode() + b"\n")


def _unknown_target(h: Handlers) -> Response:
    known = ", ".join(h.target_names()) or "none"
    return Response(404, f"unknown target; configured targets: {known}\n".encode())


async def _probe(h: Handlers, request: Request) -> Response:
    values = request.query.get("target", [])
    if len(values) != 1 or not values[0]:
        return Response(400, b"give exactly one ?target=NAME of a configured target\n")
    name = values[0]
    blackbox = request.query.get("format", [""])[0] == "prometheus"
    debug = request.query.get("debug", ["false"])[0].lower() in ("1", "true", "yes")
    try:
        if request.query.get("format", [""])[0] == "svg" and h.run_probe_result is not None:
            probed = await h.run_probe_result(name)
            if probed is None:
                return _unknown_target(h)
            return Response(200, h.mask(svg_bytes(probed)), SVG, SVG_HEADERS)
        if blackbox and h.run_probe_metrics is not None:
            body = await h.run_probe_metrics(name)
            if body is None:
                return _unknown_target(h)
            return Response(200, h.mask(body), PROMETHEUS_TEXT)
        result = await h.run_probe(name, debug)
    except ProbeBusy as busy:
        body = b"a probe of this target started by /probe is still running; retry later\n"
        return Response(429, body, headers=(("retry-after", str(busy.retry_after_s)),))
    if result is None:
        return _unknown_target(h)
    return Response(200, h.mask(_json(result)), JSON)


async def _probes(h: Handlers, request: Request) -> Response:
    return Response(200, h.mask(_json(h.probes())), JSON)


async def _probe_detail(h: Handlers, request: Request) -> Response:
    if h.find_result is not None and h.latest_result is not None:
        pic = picture(request.path, request.query, find=h.find_result, latest=h.latest_result,
                      mask=h.mask)  # fmt: skip
        if pic is not None:
            return Response(*pic)
    detail = None
    if h.probe_detail is not None:
        detail = h.probe_detail(request.path.removeprefix("/-/probes/"))
    if detail is None:
        return Response(404, b"no such probe (only recent ones are kept)\n")
    return Response(200, h.mask(_json(detail)), JSON)


async def _events(h: Handlers, request: Request) -> Response:
    bus = h.events
    if bus is None:
        return Response(404, b"not found\n")
    last_id = request.header(b"last-event-id")

    async def run(receive: Receive, send: Send) -> None:
        await serve_events(bus, last_id, receive, send)

    return StreamingResponse(200, b"", run=run)


async def _index(h: Handlers, request: Request) -> Response:
    return Response(200, h.mask(index_page(h.probes(), lifecycle=request.lifecycle)), HTML)


_READ = frozenset({"GET", "HEAD"})


def routes() -> dict[str, Route]:
    """Every path the daemon serves."""
    return {
        "/metrics": Route(_metrics, _READ),
        "/healthz": Route(_healthz, public=True),
        "/readyz": Route(_readyz, public=True),
        "/-/reload": Route(_reload, frozenset({"POST"}), lifecycle=True),
        "/probe": Route(_probe, lifecycle=True),
        "/-/probes": Route(_probes),
        "/-/probes/": Route(_probe_detail, _READ, prefix=True),
        "/-/events": Route(_events, frozenset({"GET"})),
        "/": Route(_index),
    }


# ------------------------------------------------------------------ the application


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def make_app(
    h: Handlers,
    *,
    enable_lifecycle: bool = False,
    auth: BasicAuth | None = None,
    table: Mapping[str, Route] | None = None,
) -> App:
    """The ASGI application.

    `auth`: basic auth for every non-public route (from the web-config file); checked before
    anything else, so an unauthenticated caller learns nothing, not even whether lifecycle APIs
    are on. `table` defaults to `routes()`.
    """
    table = dict(routes() if table is None else table)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request.from_scope(scope, lifecycle=enable_lifecycle)
        route = _match(table, request.path)
        if route is not None and route.public:
            pass
        elif auth is not None and not await auth.check(request.header(b"authorization")):
            # Unknown paths too: a 404 would tell an unauthenticated caller what exists.
            response = Response(401, b"unauthorized\n", headers=(("www-authenticate", REALM),))
            await response.send(send)
            return
        if route is None:
            response = Response(404, b"not found\n")
        elif route.methods and request.method not in route.methods:
            allow = ", ".join(sorted(route.methods))
            response = Response(405, f"use {allow}\n".encode(), headers=(("allow", allow),))
        elif route.lifecycle and not enable_lifecycle:
            response = Response(403, LIFECYCLE_DISABLED)
        else:
            response = await route.endpoint(h, request)
        if isinstance(response, StreamingResponse) and response.run is not None:
            await response.run(receive, send)
            return
        await response.send(send)

    return app
