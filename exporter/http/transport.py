"""An httpx transport that stamps every socket read at the moment it arrives.

httpx stays the API the rest of the code uses (requests, responses, exceptions). Underneath, this
transport speaks HTTP/1.1 on an asyncio protocol: `data_received` takes `time.monotonic_ns()`
first, then feeds the bytes to httptools' C parser (chunked decoding included). Body bytes reach
the reader together with that stamp, so a token's time is when its bytes left the kernel, not
when a busy event loop got round to the reading task (docs/adr/0003-stamp-at-data-received.md;
docs/PERFORMANCE.md has the measurements that chose it over httpx's default path and over
httpx-aiohttp).

Deliberately small: one request per connection (`Connection: close`), no pooling, no retries,
no redirects, HTTP/1.1 only. That is what a probe wants: every probe measures a fresh connect,
and the connection is opened step by step (resolve, TCP connect, proxy CONNECT, TLS, request
write) so that each step gets its own stamp (`ArrivalStream`). An http:// forward proxy is
supported (`HTTPProxy`): absolute-form requests for http targets, a CONNECT tunnel for https.

What it refuses on the wire (docs/RELIABILITY.md): header names that are not RFC 9110 tokens and
values holding CR, LF or NUL (`httpx.LocalProtocolError`, before a byte is sent), and a
`101 Switching Protocols` answer (`httpx.RemoteProtocolError`). Interim `1xx` responses
(`100 Continue`, `103 Early Hints`) are skipped: the response is the final one.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, cast

import httptools
import httpx

__all__ = ["ArrivalStream", "ConnectionPhases", "HTTPProxy", "StampingTransport"]

#: Pause reading when this much body is buffered and unread; resume below the low mark.
HIGH_WATER_BYTES = 1024 * 1024
LOW_WATER_BYTES = 256 * 1024


OnRead = Callable[[int, bytes], None]


class _Batcher:
    """Delivers pushed reads once per event-loop iteration, after every socket of it was read.

    NOTE: the consumer's work (SSE and JSON decoding) must not run inside `data_received`:
    the sockets read after it in the same iteration would be stamped late by that much. So
    `data_received` only stamps, parses HTTP and queues; one `call_soon` then hands every queued
    read of the iteration to its consumer, without waking a task per read.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ready: list[_Protocol] = []
        self._scheduled = False

    def add(self, proto: _Protocol) -> None:
        if not proto.queued:
            proto.queued = True
            self._ready.append(proto)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        ready, self._ready = self._ready, []
        self._scheduled = False
        for proto in ready:
            proto.queued = False
            proto.deliver()


class _Protocol(asyncio.Protocol):
    """One HTTP/1.1 response on one connection, parsed as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop, batcher: _Batcher) -> None:
        self._loop = loop
        self._batcher = batcher
        self.on_read: OnRead | None = None  # push mode: reads go here, no task wakes per read
        self.queued = False
        self.consumer_error: Exception | None = None
        self.done: asyncio.Future[None] = loop.create_future()
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.headers_ns = 0
        self.headers_done: asyncio.Future[None] = loop.create_future()
        self.interim_statuses: list[int] = []
        self.chunks: deque[tuple[int, bytes]] = deque()
        self.buffered = 0
        self.paused = False
        self.complete = False
        self.lost = False
        self.error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._stamp_ns = 0
        self._delimited = False  # content-length or chunked: EOF before the end is an error

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._stamp_ns = time.monotonic_ns()  # first thing: the arrival time of these bytes
        if self._parser is None or self.error is not None:
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            # NOTE: after a 101 llhttp pauses (HttpParserUpgrade); `on_headers_complete`
            # already failed the response with a clear message, which `_fail` keeps.
            self._fail(httpx.RemoteProtocolError(f"invalid HTTP response: {exc}"), exc)
        if self.buffered > HIGH_WATER_BYTES and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.headers_done.done():
            msg = "server closed the connection without a response"
            self._fail(httpx.RemoteProtocolError(msg), exc)
        elif not self.complete:
            if self._delimited or exc is not None:
                self._fail(httpx.ReadError(f"connection closed mid-body: {exc or 'EOF'}"), exc)
            else:
                self.complete = True  # a body delimited by the close itself
        # NOTE: the parser holds this protocol (its callbacks) and the protocol the parser: a
        # cycle that only the collector frees, and `load` pauses the collector (PERFORMANCE.md).
        self._parser = None
        self._wake()

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        if not self.headers_done.done():
            self.headers = []  # a final response after interim 1xx ones: only its own headers

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.headers_done.done():  # later ones are chunked trailers: not headers
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None  # called from inside feed_data
        status = self._parser.get_status_code()
        if status == 101:
            upgrade = next((v for n, v in self.headers if n.lower() == b"upgrade"), b"")
            msg = (
                f"server switched protocols (101, upgrade {upgrade.decode('latin-1')!r}) "
                "instead of answering with an event stream"
            )
            self._fail(httpx.RemoteProtocolError(msg), None)
            return
        if 100 <= status < 200:
            self.interim_statuses.append(status)  # 100 Continue, 103 Early Hints: not final
            return
        self.headers_ns = self._stamp_ns
        self.status = status
        for name, value in self.headers:
            lname = name.lower()
            if lname == b"content-length" or (
                lname == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                self._delimited = True
        if not self.headers_done.done():
            self.headers_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        # Several HTTP chunks in one read stay one piece: one read, one stamp (the burst size
        # of a read is the buffering indicator, docs/WIRE.md §17).
        if self.chunks and self.chunks[-1][0] == self._stamp_ns:
            _, head = self.chunks.pop()
            body = head + body
            self.buffered -= len(head)
        self.chunks.append((self._stamp_ns, body))
        self.buffered += len(body)
        self._wake()

    def on_message_complete(self) -> None:
        if not self.headers_done.done() or self.error is not None:
            return  # the end of an interim 1xx response (the final one follows), or of a 101
        self.complete = True
        self._wake()

    # -- reader side

    def _fail(self, err: Exception, cause: BaseException | None) -> None:
        if cause is not None:
            err.__cause__ = cause
        if self.error is None:
            self.error = err
        if not self.headers_done.done():
            self.headers_done.set_exception(err)
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def _wake(self) -> None:
        if self.on_read is not None:
            self._batcher.add(self)
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def deliver(self) -> None:
        """Push mode: hand queued reads to the consumer; settle `done` at the end."""
        on_read = self.on_read
        if on_read is None or self.done.done():
            return
        if self.chunks:
            try:
                for stamp, data in self.take_all():
                    on_read(stamp, data)
            except Exception as exc:  # the consumer's verdict (e.g. bad SSE): stop reading
                self.consumer_error = exc
                if self.transport is not None:
                    self.transport.abort()
                self.done.set_result(None)
                return
        if self.complete or self.error is not None or self.lost:
            self.done.set_result(None)

    async def wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take_all(self) -> list[tuple[int, bytes]]:
        reads = list(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self.paused and self.buffered < LOW_WATER_BYTES and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return reads


@dataclass(slots=True)
class ConnectionPhases:
    """When each step of opening a connection ended, as `time.monotonic_ns()` values.

    A field is None until its step has run (and stays None for a step the connection does not
    have). See `ArrivalStream` for what each stamp means.
    """

    dns_start_ns: int | None = None
    dns_done_ns: int | None = None
    connect_done_ns: int | None = None
    proxy_connect_done_ns: int | None = None
    tls_done_ns: int | None = None
    request_written_ns: int | None = None


class ArrivalStream(httpx.AsyncByteStream):
    """The response body; `stamp_ns` is the arrival time of the piece last yielded.

    Reached as `response.extensions["arrival"]`. Besides the body it carries the stamps of the
    connection's set-up, all `time.monotonic_ns()` integers (nanoseconds, the clock every other
    stamp of a probe uses), in this order on the clock:

    - `dns_start_ns`: just before the name lookup (`loop.getaddrinfo`) of the host connected
      to: the target's host, or the proxy's host when a proxy is used.
    - `dns_done_ns`: the lookup returned (an IP literal resolves without a query, in µs).
    - `connect_done_ns`: the TCP connection (to the target, or to the proxy) is established.
    - `proxy_connect_done_ns`: https through a proxy only: the head of the proxy's 2xx answer
      to `CONNECT host:port` arrived, the tunnel is open. None without a proxy and for http
      targets through a proxy (those send the request itself to the proxy, no tunnel).
    - `tls_done_ns`: https only: the TLS handshake with the origin (inside the tunnel when
      proxied; never a handshake with the proxy) completed. None for http.
    - `request_written_ns`: the request head and body were handed to the transport
      (`transport.write` returned; the kernel has them unless its send buffer was full).
    - `headers_ns`: the read that completed the final response head arrived (interim `1xx`
      responses skipped; their codes are in `interim_statuses`).

    So the phases are: DNS `dns_done - dns_start`, TCP connect `connect_done - dns_done`, proxy
    tunnel `proxy_connect_done - connect_done`, TLS `tls_done - (proxy_connect_done or
    connect_done)`, request write `request_written - (tls_done or proxy_connect_done or
    connect_done)`, and time to response headers `headers_ns - request_written_ns`.
    """

    def __init__(self, proto: _Protocol, phases: ConnectionPhases | None = None) -> None:
        self._proto = proto
        self.stamp_ns = 0
        self.headers_ns = proto.headers_ns
        self.interim_statuses = tuple(proto.interim_statuses)
        phases = phases or ConnectionPhases()
        self.dns_start_ns: int = phases.dns_start_ns or 0
        self.dns_done_ns: int = phases.dns_done_ns or 0
        self.connect_done_ns: int = phases.connect_done_ns or 0
        self.proxy_connect_done_ns: int | None = phases.proxy_connect_done_ns
        self.tls_done_ns: int | None = phases.tls_done_ns
        self.request_written_ns: int = phases.request_written_ns or 0
        self.peer_cert_not_after_s: float | None = None  # https only: see `_cert_not_after_s`

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while reads := await self.reads():
            for self.stamp_ns, data in reads:
                yield data

    async def reads(self) -> list[tuple[int, bytes]]:
        """Every read that has arrived, with its stamp; waits if none has; [] at the end.

        Pull mode, behind `__aiter__` (httpx's `aiter_raw`, e.g. for an error body); the probe's
        stream uses push mode, `consume()`.
        """
        proto = self._proto
        while True:
            if proto.chunks:
                return proto.take_all()
            if proto.complete:
                return []
            if proto.error is not None:
                raise proto.error
            if proto.lost:
                raise httpx.ReadError("connection closed mid-body")
            await proto.wait()

    async def consume(self, on_read: OnRead) -> None:
        """Push mode: call `on_read(stamp_ns, data)` for every read until the body ends.

        Returns at the end of the body; raises the transport's error, or whatever `on_read`
        raised. The reads arrive in `call_soon` callbacks (see `_Batcher`), so the consuming
        task sleeps for the whole body instead of waking once per read.
        """
        proto = self._proto
        proto.on_read = on_read
        try:
            proto.deliver()
            if not proto.done.done() and (proto.chunks or proto.complete or proto.lost):
                proto._batcher.add(proto)
            await proto.done
        finally:
            proto.on_read = None
        if proto.consumer_error is not None:
            raise proto.consumer_error
        if proto.error is not None:
            raise proto.error
        if not proto.complete:
            raise httpx.ReadError("connection closed mid-body")

    async def aclose(self) -> None:
        proto = self._proto
        transport = proto.transport
        if transport is not None and not transport.is_closing():
            # Not read to the end: drop the connection rather than drain it.
            if proto.complete:
                transport.close()
            else:
                transport.abort()
        # NOTE: a stored error was raised through frames that hold this protocol: the error,
        # its traceback and the protocol form a cycle that only the collector would free, and
        # the daemon keeps the collector's full passes rare (exporter/runtime.py). Once closed,
        # nothing reads the error again.
        proto.error = proto.consumer_error = None
        proto.on_read = None


#: What an HTTP field name may be made of (the standard's `token` characters).
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: CR and LF end a field line (a value holding them injects headers); NUL is refused by servers.
_FORBIDDEN_IN_VALUE = re.compile(rb"[\r\n\x00]")


def _check_field(name: bytes, value: bytes) -> None:
    """Raise `httpx.LocalProtocolError` for a field that would not be one field on the wire.

    The message names the field but never shows its value (it may be a secret).
    """
    if not _TOKEN.match(name):
        raise httpx.LocalProtocolError(
            f"refusing to send header {name.decode('latin-1')!r}: invalid name"
            " (CR, LF, NUL, ':' or whitespace in a header name)"
        )
    if _FORBIDDEN_IN_VALUE.search(value):
        raise httpx.LocalProtocolError(
            f"refusing to send header {name.decode('latin-1')!r}: its value contains CR, LF or NUL"
        )


def _request_head(
    request: httpx.Request,
    body: bytes,
    *,
    absolute_form: bool = False,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """The request line and headers. `absolute_form`: the target is the whole URL (a request
    sent to a forward proxy). `extra`: (name, value) fields to add."""
    url = request.url
    target = url.raw_path
    if absolute_form:
        target = url.raw_scheme + b"://" + url.netloc + url.raw_path
    method = request.method.encode()
    if not _TOKEN.match(method) or _FORBIDDEN_IN_VALUE.search(target) or b" " in target:
        raise httpx.LocalProtocolError(f"refusing to send an invalid request line ({method!r})")
    lines = [method + b" " + target + b" HTTP/1.1"]
    seen = set()
    for name, value in (*request.headers.raw, *extra):
        _check_field(name, value)
        lname = name.lower()
        if lname in (b"connection", b"transfer-encoding"):
            continue
        seen.add(lname)
        lines.append(name + b": " + value)
    if b"content-length" not in seen and (body or request.method in ("POST", "PUT", "PATCH")):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class HTTPProxy:
    """An http:// forward proxy. `authorization` is the whole `Proxy-Authorization` value
    (e.g. `Basic dXNlcjpwYXNz`), sent to the proxy only: in the CONNECT request for https
    targets, with the request itself for http targets (never inside a TLS tunnel)."""

    host: str
    port: int
    authorization: bytes | None = None

    @staticmethod
    def basic(username: str, password: str) -> bytes:
        """The `Proxy-Authorization` value for Basic credentials (the Basic scheme, UTF-8)."""
        return b"Basic " + base64.b64encode(f"{username}:{password}".encode())


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """System CAs; built once per process (loading the store costs milliseconds of CPU)."""
    return ssl.create_default_context()


class _TunnelHead:
    """httptools callbacks for the proxy's answer to CONNECT: its status and reason only."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.reason = b""
        self.status: int | None = None

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status >= 200:  # interim 1xx answers are skipped
            self.status = status


#: The proxy's answer head to CONNECT may not exceed this (its body is never read).
_MAX_TUNNEL_HEAD_BYTES = 64 * 1024


def _now_ns() -> int:
    return time.monotonic_ns()


def _literal_address(host: str, port: int) -> list[Any] | None:
    """An IP literal needs no resolver: the `getaddrinfo` answer built directly.

    NOTE: `loop.getaddrinfo` runs in a worker thread even for `127.0.0.1`; at hundreds of
    streams that thread hop was a measurable share of the CPU per stream (docs/PERFORMANCE.md).
    """
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        addr: tuple[Any, ...] = (host, port) if family == socket.AF_INET else (host, port, 0, 0)
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", addr)]
    return None


async def _tcp_connect(
    loop: asyncio.AbstractEventLoop, host: str, port: int, phases: ConnectionPhases
) -> socket.socket:
    """Resolve `host` and connect to the first address that accepts, stamping both steps."""
    phases.dns_start_ns = _now_ns()
    infos = _literal_address(host, port) or await loop.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    phases.dns_done_ns = _now_ns()
    errors: list[OSError] = []
    for family, type_, proto, _, addr in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, addr)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        phases.connect_done_ns = _now_ns()
        return sock
    if len(errors) == 1:
        raise errors[0]
    raise OSError("; ".join(str(e) for e in errors) or f"no address for {host}")


class StampingTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio with per-read arrival stamps; one request per connection.

    `ssl_context` is used for every https request (the caller builds it once per target);
    without one, a process-wide default context (system CAs) is reused. `proxy`: send every
    request through that http:// forward proxy.

    Raises httpx errors: `ConnectTimeout` (the whole set-up, DNS to TLS, exceeded the request's
    connect timeout), `ConnectError` (DNS, TCP or TLS failed; `ssl.SSLError` is its cause for
    TLS), `ProxyError` (the proxy refused or broke the CONNECT tunnel), `LocalProtocolError`
    (a header this transport refuses to send), `RemoteProtocolError` (no valid response, or a
    101). A connect-time error carries the stamps taken so far as `.phases`
    (`ConnectionPhases`).
    """

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, proxy: HTTPProxy | None = None
    ) -> None:
        self._ssl_context = ssl_context
        self._proxy = proxy
        self._batcher: _Batcher | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        https = url.scheme == "https"
        proxy = self._proxy
        extra: tuple[tuple[bytes, bytes], ...] = ()
        if proxy is not None and not https and proxy.authorization is not None:
            extra = ((b"Proxy-Authorization", proxy.authorization),)
        body = await request.aread()
        # Before connecting: a refused header costs no connection and sends nothing.
        head = _request_head(
            request, body, absolute_form=proxy is not None and not https, extra=extra
        )
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        loop = asyncio.get_running_loop()
        if self._batcher is None:
            self._batcher = _Batcher(loop)
        batcher = self._batcher
        proto = _Protocol(loop, batcher)
        phases = ConnectionPhases()
        transport = await self._connect(loop, url, proto, phases, timeouts.get("connect"))
        try:
            transport.write(head + body)
            phases.request_written_ns = _now_ns()
            await proto.headers_done
        except BaseException:
            transport.abort()
            raise
        stream = ArrivalStream(proto, phases)
        stream.peer_cert_not_after_s = _cert_not_after_s(transport)
        return httpx.Response(
            proto.status,
            headers=proto.headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1", "arrival": stream},
        )

    async def _connect(
        self,
        loop: asyncio.AbstractEventLoop,
        url: httpx.URL,
        proto: _Protocol,
        phases: ConnectionPhases,
        timeout_s: float | None,
    ) -> asyncio.Transport:
        """Resolve, connect, open the proxy tunnel, handshake TLS: `proto` gets the result."""
        https = url.scheme == "https"
        origin = (url.host, url.port or (443 if https else 80))
        proxy = self._proxy
        host, port = (proxy.host, proxy.port) if proxy is not None else origin
        where = f"proxy {host}:{port}" if proxy is not None else f"{host}:{port}"
        transport: asyncio.Transport | None = None
        sock: socket.socket | None = None  # ours to close until create_connection takes it
        try:
            async with asyncio.timeout(timeout_s):
                sock = await _tcp_connect(loop, host, port, phases)
                if proxy is not None and https:
                    await self._open_tunnel(loop, sock, origin, phases)
                # NOTE: TLS is set up by create_connection on the already connected (and, via
                # a proxy, tunnelled) socket: one path for direct and proxied https, and its
                # return is the end of the handshake, so TCP and TLS get separate stamps.
                ctx = (self._ssl_context or _default_ssl_context()) if https else None
                if https:
                    where = f"{origin[0]}:{origin[1]}" + (f" via {where}" if proxy else "")
                owned, sock = sock, None
                transport, _ = await loop.create_connection(
                    lambda: proto,
                    sock=owned,
                    ssl=ctx,
                    server_hostname=origin[0] if https else None,
                )
                if https:
                    phases.tls_done_ns = _now_ns()
        except BaseException as exc:
            if transport is not None:
                transport.abort()
            if sock is not None:
                sock.close()
            err: httpx.TransportError
            if isinstance(exc, TimeoutError):
                err = httpx.ConnectTimeout(f"connect to {where} timed out")
            elif isinstance(exc, httpx.ProxyError):
                err = exc
            elif isinstance(exc, OSError):  # ssl.SSLError and socket.gaierror are OSErrors
                err = httpx.ConnectError(f"connect to {where}: {exc}")
            else:
                raise
            setattr(err, "phases", phases)  # noqa: B010 - httpx errors have no slot for it
            if err is exc:
                raise
            raise err from exc
        return transport

    async def _open_tunnel(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        origin: tuple[str, int],
        phases: ConnectionPhases,
    ) -> None:
        """CONNECT host:port through the proxy on `sock`; returns once a 2xx head arrived.

        Raises `httpx.ProxyError` for any other answer. Reads only up to the end of the head:
        the origin's TLS bytes follow on the same socket and start only after our ClientHello.
        """
        assert self._proxy is not None
        authority = (f"[{origin[0]}]" if ":" in origin[0] else origin[0]) + f":{origin[1]}"
        fields = [(b"Host", authority.encode())]
        if self._proxy.authorization is not None:
            fields.append((b"Proxy-Authorization", self._proxy.authorization))
        lines = [b"CONNECT " + authority.encode() + b" HTTP/1.1"]
        for name, value in fields:
            _check_field(name, value)
            lines.append(name + b": " + value)
        await loop.sock_sendall(sock, b"\r\n".join(lines) + b"\r\n\r\n")
        head = _TunnelHead()
        seen = 0
        while head.status is None:
            data = await loop.sock_recv(sock, 4096)
            if not data:
                raise httpx.ProxyError(f"proxy closed the connection during CONNECT {authority}")
            seen += len(data)
            try:
                head.parser.feed_data(data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
                if head.status is None:
                    msg = f"proxy answered CONNECT {authority} with invalid HTTP: {exc}"
                    raise httpx.ProxyError(msg) from exc
            if head.status is None and seen > _MAX_TUNNEL_HEAD_BYTES:
                raise httpx.ProxyError(f"proxy answer to CONNECT {authority} too long")
        phases.proxy_connect_done_ns = _now_ns()
        if not 200 <= head.status < 300:
            reason = head.reason.decode("latin-1")
            raise httpx.ProxyError(f"proxy refused CONNECT {authority}: {head.status} {reason}")


def _cert_not_after_s(transport: asyncio.BaseTransport) -> float | None:
    """Unix time the peer's (leaf) certificate expires; None over plain TCP.

    Read once the handshake is done. `getpeercert()` has the fields only for a verified
    certificate, so with `insecure_skip_verify` this is None too.
    """
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    not_after = (ssl_object.getpeercert() or {}).get("notAfter")
    return float(ssl.cert_time_to_seconds(not_after)) if isinstance(not_after, str) else None
