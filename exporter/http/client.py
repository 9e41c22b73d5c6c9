"""The HTTP side of a probe: the httpx client, its transport, and what transport errors mean.

httpx is the API the rest of the code uses. Underneath it is our own `StampingTransport` by
default (exporter/http/transport.py): it stamps each read in the protocol's `data_received`, before
the reading task even runs, and costs the least CPU per event. httpx's own HTTP/1.1 path
(h11/httpcore) saturates a core at about 50 concurrent streams and stamps tokens hundreds of
milliseconds late at 200; httpx-aiohttp is close but costs more CPU (docs/PERFORMANCE.md). Both
stay selectable (`--transport`, `LGSE_TRANSPORT`) for comparison; the aiohttp one needs the
optional `[compare]` extra.

This module and `probe` are the only ones that know httpx's and aiohttp's exception types.
"""

from __future__ import annotations

import functools
import os
import ssl
import sys
import time
from collections.abc import Callable
from http.cookiejar import CookieJar
from types import ModuleType
from typing import Any, Literal, Protocol

import httpx
import orjson

from exporter.core.errors import FailureKind, ProbeFailure
from exporter.http.transport import ArrivalStream, HTTPProxy, StampingTransport

__all__ = [
    "Transport",
    "classify_transport_error",
    "client_for",
    "close_response",
    "consume_body",
    "content_encoding",
    "fetch",
    "make_client",
    "response_excerpt",
    "ssl_context",
    "tls_cert_not_after_s",
    "transport_errors",
]

Transport = Literal["stamping", "aiohttp", "httpcore"]


class _Timeouts(Protocol):
    @property
    def connect(self) -> float: ...


class ProxyLike(Protocol):
    """A resolved forward proxy (`exporter.config.ProxyChoice` is one)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    def authorization(self) -> str | None: ...


class TargetTLS(Protocol):
    """What building a client reads of a target (`exporter.config.Target` has it)."""

    @property
    def url(self) -> str: ...
    @property
    def ca_file(self) -> str | None: ...
    @property
    def insecure_skip_verify(self) -> bool: ...
    @property
    def timeout(self) -> _Timeouts: ...
    def proxy(self) -> ProxyLike | None: ...


def _aiohttp() -> ModuleType | None:
    """aiohttp, if the aiohttp transport loaded it. It is imported only when chosen: it adds
    about 10 MB to the process, and the default transport does not need it."""
    return sys.modules.get("aiohttp")


def transport_errors() -> tuple[type[Exception], ...]:
    """What a request or a read may raise for a fault of the server or the network.

    NOTE: httpx-aiohttp re-raises aiohttp errors it has no mapping for unchanged, e.g. the
    `ClientResponseError` for a response that is not HTTP at all; those are faults, not bugs.
    """
    aio = _aiohttp()
    return (httpx.HTTPError,) if aio is None else (httpx.HTTPError, aio.ClientError)


class _NoCookies(CookieJar):
    """A jar that keeps nothing: a probe carries no state from one request to the next.

    NOTE: httpx parses every response's cookies through http.cookiejar; with streams that
    last seconds that was a tenth of the exporter's per-stream CPU (docs/PERFORMANCE.md).
    """

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


@functools.lru_cache(maxsize=256)
def ssl_context(
    ca_file: str | None = None,
    *,
    insecure: bool = False,
    file_version: tuple[int, int] | None = None,
) -> ssl.SSLContext:
    """The TLS context for one target: system CAs, or `ca_file`, or no verification at all.

    Cached: loading a CA store from disk costs milliseconds of CPU, and contexts are safe to
    share between connections. `file_version` (the file's mtime_ns and size) is only part of
    the cache key, so a replaced bundle is loaded again. Raises `OSError` or `ssl.SSLError`
    when `ca_file` is unusable.
    """
    ctx = ssl.create_default_context(cafile=ca_file)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def make_client(
    *,
    transport: Transport = "stamping",
    verify: ssl.SSLContext | None = None,
    connect_timeout_s: float | None = None,
    max_connections: int = 1,
    proxy: ProxyLike | None = None,
) -> httpx.AsyncClient:
    """A client for probing. No retries, no redirects; a proxy only when `proxy` is given.

    One probe is one attempt on a fresh connection (blackbox: "no retry"), so connect and TLS
    are really measured; retrying is the next scheduled probe's job. httpx never reads proxy
    variables itself (`trust_env=False`): the target's config decides (`Target.proxy()`).
    Raises `RuntimeError` for the aiohttp transport when the optional `[compare]` extra is not
    installed.
    """
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=0)
    # Read timeouts are ours (the idle deadline in probe.py), not the transport's.
    timeout = httpx.Timeout(connect=connect_timeout_s, read=None, write=None, pool=None)
    verify_ctx: ssl.SSLContext | bool = verify if verify is not None else True
    auth = proxy.authorization() if proxy is not None else None
    httpx_proxy: httpx.Proxy | None = None
    if proxy is not None:
        host = f"[{proxy.host}]" if ":" in proxy.host else proxy.host
        headers = {"Proxy-Authorization": auth} if auth is not None else None
        httpx_proxy = httpx.Proxy(f"http://{host}:{proxy.port}", headers=headers)
    base: httpx.AsyncBaseTransport
    if transport == "stamping":
        stamping_proxy = None
        if proxy is not None:
            stamping_proxy = HTTPProxy(
                proxy.host, proxy.port, auth.encode("latin-1") if auth is not None else None
            )
        base = StampingTransport(ssl_context=verify, proxy=stamping_proxy)
    elif transport == "aiohttp":
        try:
            from httpx_aiohttp import AiohttpTransport
        except ImportError as exc:  # an optional extra: the default install has no aiohttp
            raise RuntimeError(
                "transport 'aiohttp' needs the optional extra: "
                "pip install 'langgraph-stream-exporter[compare]'"
            ) from exc
        base = AiohttpTransport(
            verify=verify_ctx, trust_env=False, limits=limits, proxy=httpx_proxy
        )
    else:
        base = httpx.AsyncHTTPTransport(
            verify=verify_ctx, trust_env=False, limits=limits, proxy=httpx_proxy
        )
    return httpx.AsyncClient(
        transport=base,
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        cookies=_NoCookies(),
    )


def client_for(
    target: TargetTLS, *, transport: Transport = "stamping", max_connections: int = 1
) -> httpx.AsyncClient:
    """The one way to build a probing client for a target (TLS, proxy, connect timeout).

    Raises `ProbeFailure`: kind `tls` when `ca_file` is gone or unusable now (it was checked
    when the config loaded), kind `connect` when the proxy from the environment is unusable.
    """
    verify = None
    if target.url.startswith("https://"):
        verify = _target_ssl_context(target)
    try:
        proxy = target.proxy()
    except ValueError as exc:
        raise ProbeFailure(f"proxy: {exc}", kind=FailureKind.CONNECT, phase="connect") from exc
    return make_client(
        transport=transport,
        verify=verify,
        connect_timeout_s=target.timeout.connect,
        max_connections=max_connections,
        proxy=proxy,
    )


def _target_ssl_context(target: TargetTLS) -> ssl.SSLContext:
    ca_file = target.ca_file
    version = None
    try:
        if ca_file is not None:
            # One stat per probe (microseconds): a bundle deleted or replaced since the config
            # loaded is noticed, the CA store itself is loaded only when it changed.
            st = os.stat(ca_file)
            version = (st.st_mtime_ns, st.st_size)
        return ssl_context(ca_file, insecure=target.insecure_skip_verify, file_version=version)
    except ssl.SSLError as exc:  # an OSError too: first
        msg = f"ca_file {ca_file}: no usable PEM certificate ({exc.reason or exc})"
        raise ProbeFailure(msg, kind=FailureKind.TLS, phase="connect") from exc
    except OSError as exc:
        msg = f"ca_file {ca_file}: {exc.strerror or exc}"
        raise ProbeFailure(msg, kind=FailureKind.TLS, phase="connect") from exc


BODY_EXCERPT_CHARS = 500


async def response_excerpt(response: httpx.Response, limit_bytes: int = 64 * 1024) -> str:
    """The start of an error response's body, one line: its JSON `detail` when it has one."""
    encoding = content_encoding(response)
    if encoding is not None:
        return f"(body not shown: content-encoding {encoding})"
    body = bytearray()
    if response.is_stream_consumed:  # read already (`fetch`): the body is in `content`
        body += response.content[:limit_bytes]
    else:
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) >= limit_bytes:
                break
    text = body.decode("utf-8", "replace")
    try:
        detail = orjson.loads(body).get("detail")
        if isinstance(detail, str):
            text = detail
    except (orjson.JSONDecodeError, AttributeError):
        pass
    text = " ".join(text.split())
    return text[:BODY_EXCERPT_CHARS] + ("…" if len(text) > BODY_EXCERPT_CHARS else "")


def content_encoding(response: httpx.Response) -> str | None:
    """The response's `content-encoding` when it is not identity (lower case), else None.

    The probe asks for `accept-encoding: identity`; a body encoded anyway was compressed by
    something in between, which buffers the stream (docs/RELIABILITY.md).
    """
    value = response.headers.get("content-encoding", "").strip().lower()
    return None if value in ("", "identity") else value


async def consume_body(response: httpx.Response, on_read: Callable[[int, bytes], None]) -> None:
    """Feed every read of the raw body, undecoded, to `on_read(arrival_ns, data)`.

    With the stamping transport the arrival time was taken in `data_received`, before any
    task ran, and reads are pushed to `on_read` without waking the reading task per read
    (exporter/http/transport.py). With the other transports the time is taken here, as soon as a
    read reaches us. Returns at the end of the body; raises transport errors and whatever
    `on_read` raised.
    NOTE: no chunk_size for aiter_raw: httpx would re-chunk and hold early bytes back.
    """
    arrival = response.extensions.get("arrival")
    if isinstance(arrival, ArrivalStream):
        await arrival.consume(on_read)
        return
    async for chunk in response.aiter_raw():
        on_read(time.monotonic_ns(), chunk)


#: What a closed response's `stream` is replaced with (see `close_response`).
_CLOSED_STREAM = httpx.ByteStream(b"")


async def close_response(response: httpx.Response) -> None:
    """Close `response` (and its connection) and leave nothing behind for the cycle collector.

    httpx binds a streamed response and its stream to each other (`BoundAsyncStream` holds the
    response): a cycle that reference counting cannot free, repeated for every probe, which the
    collector's full passes would then find among everything the daemon holds
    (docs/PERFORMANCE.md, "Daemon scale"). A closed response's stream is never read again.
    """
    await response.aclose()
    response.stream = _CLOSED_STREAM


async def fetch(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    content: bytes | None = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One request whose whole body is read: `client.request`, without the reference cycle.

    Returns the closed response (`.content` holds the body); raises what `client.send` and
    reading the body raise. See `close_response` for the cycle.
    """
    request = client.build_request(method, url, content=content, params=params, headers=headers)
    response = await client.send(request, stream=True)
    try:
        await response.aread()
    finally:
        await close_response(response)
    return response


def headers_arrival_ns(response: httpx.Response) -> int:
    """When the response head arrived (the transport's stamp when it has one)."""
    arrival = response.extensions.get("arrival")
    if isinstance(arrival, ArrivalStream) and arrival.headers_ns:
        return arrival.headers_ns
    return time.monotonic_ns()


def tls_cert_not_after_s(response: httpx.Response) -> float | None:
    """Unix time the server's TLS certificate expires, when the stamping transport saw one."""
    arrival = response.extensions.get("arrival")
    return arrival.peer_cert_not_after_s if isinstance(arrival, ArrivalStream) else None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def classify_transport_error(exc: Exception, *, streaming: bool) -> ProbeFailure:
    """Map an httpx/aiohttp/OS error to a failure kind; most specific cause first.

    `streaming` says whether response headers had arrived: the same reset means "the server
    hung up without answering" before them and "the stream broke off" after them.

    NOTE: httpx-aiohttp maps every `aiohttp.ClientConnectionError` to `httpx.ConnectTimeout`,
    so a reset or close after the request was sent, and a failed certificate check, all arrive
    as a "connect timeout". The httpx type is therefore trusted only when no aiohttp error sits
    in the cause chain; otherwise the aiohttp (and OS/ssl) causes decide.
    """
    chain = _chain(exc)
    detail = str(chain[-1]) or type(chain[-1]).__name__
    if detail in str(exc) and str(exc) != detail:
        detail = str(exc)  # the stamping transport's message adds where: "connect to proxy …"
    if streaming:
        return ProbeFailure(
            f"stream broke off: {detail}", kind=FailureKind.INCOMPLETE, phase="stream"
        )
    aiohttp = _aiohttp()
    tls_errors = (ssl.SSLError,) if aiohttp is None else (ssl.SSLError, aiohttp.ClientSSLError)
    if any(isinstance(c, tls_errors) for c in chain):
        return ProbeFailure(f"TLS: {detail}", kind=FailureKind.TLS, phase="connect")
    if isinstance(exc, httpx.ProxyError):
        return ProbeFailure(f"proxy: {detail}", kind=FailureKind.CONNECT, phase="connect")
    if isinstance(exc, httpx.LocalProtocolError):
        # A header the transport refuses to put on the wire (CR, LF or NUL): nothing was sent.
        return ProbeFailure(str(exc), kind=FailureKind.PROTOCOL, phase="request")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ProbeFailure(f"bad URL: {detail}", kind=FailureKind.CONNECT, phase="connect")
    connect = ProbeFailure(f"connect: {detail}", kind=FailureKind.CONNECT, phase="connect")
    hung_up = ProbeFailure(
        f"server closed the connection without a response: {detail}",
        kind=FailureKind.PROTOCOL,
        phase="headers",
    )
    aio = [] if aiohttp is None else [c for c in chain if isinstance(c, aiohttp.ClientError)]
    if aiohttp is not None and aio:
        # aiohttp's own classes say where it failed: ClientConnectorError (and its DNS and
        # certificate subclasses) while connecting, anything else once the request was out.
        for cause in aio:
            if isinstance(cause, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
                return connect
        for cause in aio:
            if isinstance(cause, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
                return hung_up
            if isinstance(cause, aiohttp.ClientResponseError):
                return ProbeFailure(
                    f"invalid HTTP response: {detail}", kind=FailureKind.PROTOCOL, phase="headers"
                )
    else:
        # httpcore: its mapping is faithful (ConnectError/ConnectTimeout only while connecting).
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return connect
        if isinstance(exc, httpx.ReadError | httpx.WriteError):
            return hung_up
        if isinstance(exc, httpx.RemoteProtocolError):
            return ProbeFailure(
                f"no valid HTTP response: {detail}", kind=FailureKind.PROTOCOL, phase="headers"
            )
        if not isinstance(exc, httpx.HTTPError) and isinstance(exc, OSError):
            return connect
    return ProbeFailure(
        f"{type(exc).__name__}: {detail}", kind=FailureKind.PROTOCOL, phase="headers"
    )
