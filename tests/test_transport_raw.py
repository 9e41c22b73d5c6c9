"""The stamping transport against raw HTTP/1.1 responses on a loopback socket.

A table of byte-exact responses (docs/RELIABILITY.md, "What goes on the wire"): each row is
written by a raw asyncio server exactly as given, piece by piece, and the transport must
deliver the final status, the final headers and the body, or a clear error. Pieces marked to
arrive as separate reads are held back until the client has read the previous one (the
transport's `data_received` is wrapped to say so), so "split across reads" really is.
Then the same faults through a whole probe, and what the transport refuses to send.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from exporter.config import Target
from exporter.core.errors import FailureKind
from exporter.http import transport as transport_mod
from exporter.http.client import make_client
from exporter.http.transport import ArrivalStream
from exporter.probe import probe
from tests.support.scripted_server import (
    DEFAULT_RUN,
    ScriptedServer,
    last_chunk,
    metadata_event,
    task_end,
    task_start,
    token,
)
from tests.support.tls import localhost_tls

pytestmark = pytest.mark.anyio

TASK = "5e4b1a59-8d0f-4a36-9a4e-2f1f0c1c0b01"
MSG = "lc_run--2d3c9f7e-0000-4000-8000-000000000001"
FAST = {"connect": 2, "headers": 2, "first_event": 2.5, "first_token": 2.8, "idle": 2, "total": 3}

#: Marks a point in a row's pieces: write nothing more until the client has read what came before.
NEXT_READ = b""


@dataclass
class RawServer:
    """Answers each connection with `pieces`; records what each connection sent."""

    pieces: Sequence[bytes] = ()
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    read_seen: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            self.requests.append(head + await reader.readexactly(length))
            for piece in self.pieces:
                if piece is NEXT_READ:
                    await self.read_seen.wait()
                    continue
                self.read_seen.clear()
                writer.write(piece)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw() -> AsyncIterator[RawServer]:
    state = RawServer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def reads_signalled(raw: RawServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every read the stamping transport takes sets `raw.read_seen` (after the real work)."""
    original = transport_mod._Protocol.data_received

    def data_received(self: Any, data: bytes) -> None:
        original(self, data)
        raw.read_seen.set()

    monkeypatch.setattr(transport_mod._Protocol, "data_received", data_received)
    yield


@dataclass(frozen=True)
class Outcome:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    interim: tuple[int, ...]


async def fetch(port: int, **headers: str) -> Outcome:
    """POST through the stamping transport; the raw body as it came off the wire."""
    async with make_client(connect_timeout_s=2) as client:
        request = client.build_request(
            "POST", f"http://127.0.0.1:{port}/runs/stream", content=b"{}", headers=headers
        )
        async with asyncio.timeout(5):
            response = await client.send(request, stream=True)
            try:
                body = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
    arrival = response.extensions["arrival"]
    assert isinstance(arrival, ArrivalStream)
    return Outcome(
        response.status_code,
        [(k.lower(), v) for k, v in response.headers.multi_items()],
        body,
        arrival.interim_statuses,
    )


HELLO_GZ = gzip.compress(b"hello")

#: id -> (pieces written, expected status, expected headers (subset), absent header names, body)
ROWS: dict[str, tuple[list[bytes], int, dict[str, str], set[str], bytes]] = {
    "content-length": (
        [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"],
        200, {"content-type": "text/plain"}, set(), b"hello",
    ),
    "close-delimited": (
        [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello", NEXT_READ, b" world"],
        200, {}, set(), b"hello world",
    ),
    "100-continue-then-200": (
        [b"HTTP/1.1 100 Continue\r\n\r\n", NEXT_READ,
         b"HTTP/1.1 200 OK\r\nX-Final: yes\r\nContent-Length: 2\r\n\r\nok"],
        200, {"x-final": "yes"}, set(), b"ok",
    ),
    "103-early-hints-then-200": (
        [b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
         b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
        200, {}, {"link"}, b"ok",
    ),
    "gzip-passed-through-undecoded": (
        [b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: "
         + str(len(HELLO_GZ)).encode() + b"\r\n\r\n" + HELLO_GZ],
        200, {"content-encoding": "gzip"}, set(), HELLO_GZ,
    ),
    "chunk-extensions-and-trailers": (
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
         b"3;name=value\r\nhel\r\n", NEXT_READ, b"2;x\r\nlo\r\n0\r\nX-Checksum: abc\r\n\r\n"],
        200, {"trailer": "X-Checksum"}, {"x-checksum"}, b"hello",
    ),
    "header-split-across-reads": (
        [b"HTTP/1.1 200 OK\r\nX-Lo", NEXT_READ, b"ng: ab", NEXT_READ,
         b"cd\r\nContent-Length: 2\r\n\r", NEXT_READ, b"\nok"],
        200, {"x-long": "abcd"}, set(), b"ok",
    ),
    "chunk-size-split-across-reads": (
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1", NEXT_READ,
         b"0\r\n0123456789abcdef\r\n0\r\n\r\n"],
        200, {}, set(), b"0123456789abcdef",
    ),
}  # fmt: skip


@pytest.mark.usefixtures("reads_signalled")
@pytest.mark.parametrize("row", list(ROWS))
async def test_raw_response_table(raw: RawServer, row: str) -> None:
    """Each raw response yields its final status, final headers (no trailers) and its body."""
    pieces, status, headers, absent, body = ROWS[row]
    raw.pieces = pieces
    out = await fetch(raw.port)
    assert out.status == status
    got = dict(out.headers)
    assert {k: got.get(k) for k in headers} == headers
    assert not absent & set(got), f"interim or trailer fields leaked into the headers: {got}"
    assert out.body == body


@pytest.mark.usefixtures("reads_signalled")
async def test_interim_responses_are_recorded_and_skipped(raw: RawServer) -> None:
    """100 and 103 before the final 200: both codes kept as `interim_statuses`, in order."""
    raw.pieces = [b"HTTP/1.1 100 Continue\r\n\r\n", NEXT_READ,
                  b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", NEXT_READ,
                  b"HTTP/1.1 204 No Content\r\n\r\n"]  # fmt: skip
    out = await fetch(raw.port)
    assert (out.status, out.interim) == (204, (100, 103))


async def test_101_switching_protocols_is_a_clear_protocol_error(raw: RawServer) -> None:
    """A 101 upgrade raises RemoteProtocolError naming the switch, not a parser exception."""
    raw.pieces = [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\n\r\n\x81\x05hello"]  # fmt: skip
    with pytest.raises(httpx.RemoteProtocolError, match=r"switched protocols \(101.*websocket"):
        await fetch(raw.port)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-tenant", "abc\r\nX-Injected: 1"),
        ("x-tenant", "abc\nX-Injected: 1"),
        ("x-tenant", "abc\rX-Injected: 1"),
        ("x-tenant", "abc\x00"),
        ("x-tenant\r\nX-Injected", "1"),
    ],
)
async def test_crlf_injection_is_refused_before_anything_is_sent(
    raw: RawServer, name: str, value: str
) -> None:
    """A CR, LF or NUL in a header raises LocalProtocolError; no connection is even opened."""
    with pytest.raises(httpx.LocalProtocolError, match="refusing to send header") as info:
        await fetch(raw.port, **{name: value})
    assert "X-Injected: 1" not in str(info.value)  # the value is never echoed
    assert raw.connections == 0 and raw.requests == []


# --------------------------------------------------------------------------------------------
# the same faults through a whole probe
# --------------------------------------------------------------------------------------------


def sse_run() -> bytes:
    return b"".join(
        [
            metadata_event(DEFAULT_RUN.run_id),
            task_start(TASK, "agent"),
            token("agent", "Hello", msg_id=MSG, task_id=TASK),
            token("agent", " world", msg_id=MSG, task_id=TASK),
            last_chunk("agent", msg_id=MSG, task_id=TASK),
            task_end(TASK, "agent"),
        ]
    )


def sse_head(extra: bytes = b"", length: int | None = None) -> bytes:
    body_len = len(sse_run()) if length is None else length
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
        + extra
        + b"content-length: "
        + str(body_len).encode()
        + b"\r\n\r\n"
    )


def target(port: int, **fields: Any) -> Target:
    return Target.model_validate(
        {"name": "raw", "url": f"http://127.0.0.1:{port}", "assistant_id": "agent",
         "timeout": FAST, **fields}
    )  # fmt: skip


@pytest.mark.usefixtures("reads_signalled")
async def test_probe_after_early_hints_reads_the_stream(raw: RawServer) -> None:
    """103 Early Hints (a CDN's) read on its own before the stream: the probe succeeds with
    every token."""
    raw.pieces = [b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n", NEXT_READ,
                  sse_head() + sse_run()]  # fmt: skip
    result = await probe(target(raw.port))
    assert result.failure is None, result.failure
    assert (result.http_status, result.tokens, result.text) == (200, 2, "Hello world")


async def test_probe_of_a_101_is_protocol_with_a_clear_message(raw: RawServer) -> None:
    """101 Switching Protocols is a `protocol` failure in the headers phase naming the 101."""
    raw.pieces = [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\n\r\n"]  # fmt: skip
    result = await probe(target(raw.port))
    assert result.failure is not None
    assert (result.failure.kind, result.failure.phase) == (FailureKind.PROTOCOL, "headers")
    assert "switched protocols (101" in result.failure.message


async def test_probe_of_a_gzip_stream_is_not_sse_naming_the_encoding(raw: RawServer) -> None:
    """A stream compressed on the way (we asked for identity) fails as `not_sse` naming gzip."""
    body = gzip.compress(sse_run())
    raw.pieces = [sse_head(b"content-encoding: gzip\r\n", len(body)) + body]
    result = await probe(target(raw.port))
    assert result.failure is not None
    assert (result.failure.kind, result.failure.phase) == (FailureKind.NOT_SSE, "headers")
    assert "content-encoding 'gzip'" in result.failure.message
    assert result.tokens == 0


async def test_probe_of_an_identity_encoded_stream_succeeds(raw: RawServer) -> None:
    """`content-encoding: identity` is no encoding at all: the stream is read."""
    raw.pieces = [sse_head(b"content-encoding: identity\r\n") + sse_run()]
    result = await probe(target(raw.port))
    assert result.failure is None, result.failure


async def test_secret_header_with_a_newline_is_refused_without_showing_it(
    raw: RawServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret read at probe time holding CR/LF: `protocol` failure in the request phase that
    names the header, never its value, and nothing reaches the server."""
    monkeypatch.setenv("TENANT_TOKEN", "tok-1234\r\nX-Injected: 1")
    result = await probe(target(raw.port, secret_headers={"x-tenant": {"env": "TENANT_TOKEN"}}))
    assert result.failure is not None
    assert (result.failure.kind, result.failure.phase) == (FailureKind.PROTOCOL, "request")
    assert "'x-tenant'" in result.failure.message
    assert "tok-1234" not in result.failure.message
    assert raw.requests == []


# --------------------------------------------------------------------------------------------
# connection phases (direct; through a proxy in test_proxy.py)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server_ctx(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    return localhost_tls(tmp_path_factory.mktemp("tls"))


def phases_of(arrival: ArrivalStream) -> list[int | None]:
    return [arrival.dns_start_ns, arrival.dns_done_ns, arrival.connect_done_ns,
            arrival.proxy_connect_done_ns, arrival.tls_done_ns, arrival.request_written_ns,
            arrival.headers_ns]  # fmt: skip


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_connection_phases_are_stamped_in_order(
    scheme: str, tls_server_ctx: tuple[ssl.SSLContext, str]
) -> None:
    """DNS, TCP, TLS (https only) and request write each get a stamp, in order, before the
    response head; no proxy means no tunnel stamp."""
    from exporter.http.client import client_for
    from tests.support.scripted_server import langgraph_stream

    ctx, ca_file = tls_server_ctx
    async with ScriptedServer(ssl_context=ctx if scheme == "https" else None) as server:
        server.route_stateless(langgraph_stream(["agent"], tokens=1, first_token_s=0, gap_s=0))
        fields = {"ca_file": ca_file} if scheme == "https" else {}
        async with client_for(target(0, **fields).model_copy(update={"url": server.url})) as c:
            response = await c.send(
                c.build_request("POST", server.url + "/runs/stream"), stream=True
            )
            await response.aclose()
    arrival = response.extensions["arrival"]
    dns0, dns1, tcp, tunnel, tls, written, head = phases_of(arrival)
    assert tunnel is None
    assert (tls is None) == (scheme == "http")
    stamps = [s for s in (dns0, dns1, tcp, tls, written, head) if s is not None]
    assert all(isinstance(s, int) and s > 0 for s in stamps)
    assert stamps == sorted(stamps), f"phase stamps out of order: {phases_of(arrival)}"
