"""An httpx transport that stamps every socket read at the moment it arrives.

httpx stays the API the rest of the code uses (requests, responses, exceptions). Underneath, this
transport speaks HTTP/1.1 on an asyncio protocol: `data_received` takes `time.monotonic_ns()`
first, then feeds the bytes to httptools' C parser (chunked decoding included). Body bytes reach
the reader together with that stamp, so a token's time is when its bytes left the kernel, not
when a busy event loop got round to the reading task (docs/adr/0003-stamp-at-data-received.md;
docs/PERFORMANCE.md has the measurements that chose it over httpx's default path and over
httpx-aiohttp).

Deliberately small: one request per connection (`Connection: close`), no pooling, no retries,
no redirects, no proxies, HTTP/1.1 only. That is what a probe wants: every probe measures a
fresh connect.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import httptools
import httpx

__all__ = ["ArrivalStream", "StampingTransport"]

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
        if self._parser is None:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
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

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_ns = self._stamp_ns
        assert self._parser is not None  # called from inside feed_data
        self.status = self._parser.get_status_code()
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


class ArrivalStream(httpx.AsyncByteStream):
    """The response body; `stamp_ns` is the arrival time of the piece last yielded."""

    def __init__(self, proto: _Protocol) -> None:
        self._proto = proto
        self.stamp_ns = 0
        self.headers_ns = proto.headers_ns
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
        transport = self._proto.transport
        if transport is not None and not transport.is_closing():
            # Not read to the end: drop the connection rather than drain it.
            if self._proto.complete:
                transport.close()
            else:
                transport.abort()


def _request_head(request: httpx.Request, body: bytes) -> bytes:
    target = request.url.raw_path
    lines = [request.method.encode() + b" " + target + b" HTTP/1.1"]
    seen = set()
    for name, value in request.headers.raw:
        lname = name.lower()
        if lname in (b"connection", b"transfer-encoding"):
            continue
        seen.add(lname)
        lines.append(name + b": " + value)
    if b"content-length" not in seen and (body or request.method in ("POST", "PUT", "PATCH")):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


class StampingTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio with per-read arrival stamps; one request per connection."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._batcher: _Batcher | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        https = url.scheme == "https"
        host = url.host
        port = url.port or (443 if https else 80)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        connect_s = timeouts.get("connect")
        loop = asyncio.get_running_loop()
        body = await request.aread()
        if self._batcher is None:
            self._batcher = _Batcher(loop)
        batcher = self._batcher
        ctx = (self._ssl_context or ssl.create_default_context()) if https else None
        try:
            async with asyncio.timeout(connect_s):
                transport, proto = await loop.create_connection(
                    lambda: _Protocol(loop, batcher),
                    host,
                    port,
                    ssl=ctx,
                    server_hostname=host if https else None,
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connect to {host}:{port} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"connect to {host}:{port}: {exc}") from exc
        try:
            transport.write(_request_head(request, body) + body)
            await proto.headers_done
        except BaseException:
            transport.abort()
            raise
        stream = ArrivalStream(proto)
        stream.peer_cert_not_after_s = _cert_not_after_s(transport)
        return httpx.Response(
            proto.status,
            headers=proto.headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1", "arrival": stream},
        )


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
