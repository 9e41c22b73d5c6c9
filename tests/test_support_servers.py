"""Self-tests for the test servers in tests/support: real sockets, real clients, real exporters."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator

import aiohttp
import httpx
import pytest
import trustme
from httpx_sse import aconnect_sse
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.support.otlp_receiver import OTLPReceiver
from tests.support.scripted_server import (
    NodeSpec,
    Script,
    ScriptedServer,
    ScriptError,
    body,
    close,
    drip,
    end,
    hang,
    langgraph_stream,
    reset,
    send,
    sleep,
    split,
    sse,
    status,
    wait,
)

pytestmark = pytest.mark.anyio

# --------------------------------------------------------------------------------------------
# ScriptedServer
# --------------------------------------------------------------------------------------------


async def test_chunks_arrive_separately_and_no_earlier_than_the_scripted_sleep() -> None:
    """Each send is one HTTP chunk on the wire, and a sleep between sends delays the next one."""
    a, b = sse("messages", ["a"]), sse("messages", ["b"])
    async with ScriptedServer() as server:
        server.route("POST", "/runs/stream", [send(a, "a"), sleep(0.15), send(b, "b"), end()])
        chunks: list[tuple[int, bytes]] = []
        async with (
            httpx.AsyncClient() as client,
            client.stream("POST", f"{server.url}/runs/stream", json={}) as resp,
        ):
            async for chunk in resp.aiter_raw():
                chunks.append((time.monotonic_ns(), chunk))
    assert [c for _, c in chunks] == [a, b]
    assert [r.tag for r in server.sent] == ["a", "b"]
    # NOTE: the client-side gap has no hard lower bound (reading `a` may be delayed under
    # load); `b` arriving no earlier than `a` was sent plus the sleep does.
    assert (chunks[1][0] - server.sent[0].sent_ns) / 1e9 >= 0.15
    assert (chunks[1][0] - chunks[0][0]) / 1e9 < 1.0


async def test_default_head_is_a_chunked_event_stream_with_the_run_location() -> None:
    """Without status(), the head is 200 SSE chunked, with content-location from the run id."""
    script = langgraph_stream(["agent"], tokens=1, first_token_s=0)
    async with ScriptedServer() as server:
        server.route_stateless(script)
        async with httpx.AsyncClient() as client:
            resp = await client.post(f"{server.url}/runs/stream", json={})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert resp.headers["transfer-encoding"] == "chunked"
    assert resp.headers["content-location"] == "/runs/01a20ce2-14df-727d-8bbe-8c9f1585c96f"


async def test_status_step_overrides_and_removes_default_headers() -> None:
    """status(headers=...) replaces a default header and a None value drops it."""
    script: Script = [
        status(200, {"content-type": "text/html", "vary": None}),
        send(b"<html>"),
        end(),
    ]
    async with ScriptedServer() as server:
        server.route("GET", "/x", script)
        async with httpx.AsyncClient() as client:
            resp = await client.get(f"{server.url}/x")
    assert resp.headers["content-type"] == "text/html"
    assert "vary" not in resp.headers
    assert resp.content == b"<html>"


async def test_requests_are_recorded_with_body_query_and_lowercase_headers() -> None:
    """The recorded request has the JSON body, the split query and lower-case header names."""
    async with ScriptedServer() as server:
        server.route("POST", "/runs/stream", [body(200, {"ok": True})])
        async with httpx.AsyncClient() as client:
            await client.post(
                f"{server.url}/runs/stream?x=1",
                json={"assistant_id": "agent"},
                headers={"X-Api-Key": "k"},
            )
    (req,) = server.requests
    assert (req.method, req.path, req.query) == ("POST", "/runs/stream", "x=1")
    assert req.json() == {"assistant_id": "agent"}
    assert req.headers["x-api-key"] == "k"


async def test_unmatched_route_gets_404_json() -> None:
    """A request with no route gets the real server's 404 body."""
    async with ScriptedServer() as server, httpx.AsyncClient() as client:
        resp = await client.post(f"{server.url}/nope", json={})
    assert resp.status_code == 404
    assert resp.json() == {"detail": "Not Found"}


async def test_each_response_closes_its_connection_unless_kept_alive() -> None:
    """Two requests use two connections by default and one when the script keeps it alive."""
    async with ScriptedServer() as server:
        server.route("GET", "/close", [body(200, {})])
        server.route("GET", "/keep", [body(200, {}, keep_alive=True)])
        async with httpx.AsyncClient() as client:
            for _ in range(2):
                await client.get(f"{server.url}/close")
            closing = server.connections
            for _ in range(2):
                await client.get(f"{server.url}/keep")
    assert closing == 2
    assert server.connections == 3


async def test_reset_gives_the_client_a_read_error() -> None:
    """reset() aborts with RST, which the client sees as a transport read error."""
    first_read = asyncio.Event()
    async with ScriptedServer() as server:
        server.route("POST", "/runs/stream", [send(b"event: x\r\n\r\n"), wait(first_read), reset()])
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ReadError):
                async with client.stream("POST", f"{server.url}/runs/stream") as resp:
                    async for _ in resp.aiter_raw():
                        first_read.set()


async def test_close_without_terminator_is_an_incomplete_body() -> None:
    """close() drops the connection before the chunked terminator: a protocol error for httpx."""
    async with ScriptedServer() as server:
        server.route("POST", "/runs/stream", [send(b"event: x\r\n\r\n"), close()])
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(f"{server.url}/runs/stream")


async def test_drip_sends_one_byte_per_write() -> None:
    """drip() records one send per byte and the client still reassembles the whole payload."""
    async with ScriptedServer() as server:
        server.route("GET", "/drip", [drip(b"abcd", 0.01, "d")])
        async with httpx.AsyncClient() as client:
            resp = await client.get(f"{server.url}/drip")
    assert resp.content == b"abcd"
    assert [(r.nbytes, r.tag) for r in server.sent] == [(1, "d")] * 4


async def test_split_delivers_an_event_in_separate_pieces() -> None:
    """split() cuts one event into writes that the client reads as separate chunks."""
    ev = sse("messages", ["tok"])
    async with ScriptedServer() as server:
        server.route("GET", "/s", [*split(ev, 7, 20, gap_s=0.02), end()])
        async with (
            httpx.AsyncClient() as client,
            client.stream("GET", f"{server.url}/s") as resp,
        ):
            chunks = [c async for c in resp.aiter_raw()]
    assert chunks == [ev[:7], ev[7:20], ev[20:]]


async def test_langgraph_stream_decodes_into_the_expected_event_sequence() -> None:
    """A scripted run decodes with httpx-sse into metadata, tasks and messages in wire order."""
    script = langgraph_stream(
        [NodeSpec("agent", tokens=2), NodeSpec("action", streamed=False)], first_token_s=0
    )
    async with ScriptedServer() as server:
        server.route_stateless(script)
        async with (
            httpx.AsyncClient() as client,
            aconnect_sse(client, "POST", f"{server.url}/runs/stream", json={}) as source,
        ):
            events = [(e.event, e.json()) async for e in source.aiter_sse()]
    names = [name for name, _ in events]
    assert names == ["metadata", "tasks"] + ["messages"] * 4 + [
        "tasks",
        "tasks",
        "messages",
        "tasks",
    ]
    token_msg, token_md = events[2][1]
    assert token_msg["content"] == "It's"
    assert token_md["langgraph_checkpoint_ns"] == f"agent:{events[1][1]['id']}"
    assert events[5][1][0]["chunk_position"] == "last"


async def test_thread_routes_record_create_cancel_and_delete() -> None:
    """route_thread serves create, stream, cancel (202) and delete (204) and flags the last two."""
    tid = "01a20ce1-0243-70b7-88f2-4e69b27d8621"
    async with ScriptedServer() as server:
        routes = server.route_thread(tid, langgraph_stream(tokens=1, first_token_s=0))
        async with httpx.AsyncClient(base_url=server.url) as client:
            created = await client.post("/threads", json={})
            stream = await client.post(f"/threads/{tid}/runs/stream", json={})
            rid = stream.headers["content-location"].rsplit("/", 1)[1]
            cancel = await client.post(f"/threads/{tid}/runs/{rid}/cancel")
            delete = await client.delete(f"/threads/{tid}")
    assert created.json()["thread_id"] == tid
    assert stream.headers["location"] == f"/threads/{tid}/runs/{rid}/stream"
    assert (cancel.status_code, delete.status_code) == (202, 204)
    assert routes.cancelled.is_set() and routes.deleted.is_set()
    assert server.requests_to("POST", f"/threads/{tid}/runs/{rid}/cancel")[0].params == {"rid": rid}


async def test_aiohttp_client_reads_the_stream_chunk_by_chunk() -> None:
    """aiohttp (the probe's transport) parses the head and gets each send as its own chunk."""
    a, b = sse("messages", ["a"]), sse("messages", ["b"])
    async with ScriptedServer() as server:
        server.route_stateless([send(a), sleep(0.05), send(b), end()])
        chunks: list[bytes] = []
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{server.url}/runs/stream", json={}) as resp,
        ):
            async for chunk, _ in resp.content.iter_chunks():
                chunks.append(chunk)
    assert resp.status == 200
    assert chunks == [a, b]


async def test_client_disconnect_is_recorded_and_ends_a_hang() -> None:
    """A client that closes mid-stream is seen as disconnected, which also ends hang()."""
    async with ScriptedServer() as server:
        server.route_stateless([send(b"event: x\r\n\r\n"), hang()])
        async with (
            httpx.AsyncClient() as client,
            client.stream("POST", f"{server.url}/runs/stream") as resp,
        ):
            await resp.aiter_raw().__anext__()
        (req,) = server.requests
        await req.disconnected.wait()
        await server.wait_idle()
    assert req.disconnected_ns is not None and req.disconnected_ns >= req.received_ns


async def test_stop_ends_a_hung_stream_for_the_client() -> None:
    """Stopping the server while a response hangs fails the client's read instead of hanging."""
    first = asyncio.Event()

    async def read_all(url: str) -> None:
        async with httpx.AsyncClient() as client, client.stream("POST", url) as resp:
            async for _ in resp.aiter_raw():
                first.set()

    server = ScriptedServer()
    await server.start()
    server.route_stateless([send(b"event: x\r\n\r\n"), hang()])
    reader = asyncio.create_task(read_all(f"{server.url}/runs/stream"))
    await first.wait()
    await server.stop()
    with pytest.raises(httpx.TransportError):
        await reader


async def test_script_errors_are_reraised_when_the_server_exits() -> None:
    """A malformed script (status after the head went out) surfaces as ScriptError on exit."""
    with pytest.raises(ScriptError):
        async with ScriptedServer() as server, httpx.AsyncClient() as client:
            server.route("GET", "/bad", [send(b"x"), status(500)])
            with pytest.raises(httpx.TransportError):
                await client.get(f"{server.url}/bad")


# --------------------------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    return ctx


async def test_tls_stream_works_with_the_trusted_ca(
    ca: trustme.CA, server_tls: ssl.SSLContext
) -> None:
    """Over TLS with the issuing CA trusted, the client reads the scripted events."""
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with ScriptedServer(ssl_context=server_tls) as server:
        server.route_stateless([send(sse("metadata", {"run_id": "r"})), end()])
        async with httpx.AsyncClient(verify=client_ctx) as client:
            resp = await client.post(f"{server.url}/runs/stream", json={})
    assert server.url.startswith("https://localhost:")
    assert resp.content == b'event: metadata\r\ndata: {"run_id":"r"}\r\n\r\n'


async def test_tls_with_an_untrusted_ca_fails_to_connect(server_tls: ssl.SSLContext) -> None:
    """A client trusting a different CA fails the handshake with a connect error."""
    client_ctx = ssl.create_default_context()
    trustme.CA().configure_trust(client_ctx)
    async with ScriptedServer(ssl_context=server_tls) as server:
        server.route_stateless([end()])
        async with httpx.AsyncClient(verify=client_ctx) as client:
            with pytest.raises(httpx.ConnectError):
                await client.post(f"{server.url}/runs/stream", json={})
    assert server.requests == []


# --------------------------------------------------------------------------------------------
# OTLPReceiver
# --------------------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as rx:
        yield rx


def _emit_probe_trace(exporter: SpanExporter) -> None:
    """A root client span with one child, exported synchronously then shut down."""
    provider = TracerProvider(resource=Resource.create({"service.name": "probe-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("probe t", kind=SpanKind.CLIENT) as root:
        root.set_attribute("langgraph.run_id", "r1")
        with tracer.start_as_current_span("node agent") as child:
            child.set_attribute("langgraph.ttft_s", 0.2)
            child.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()


def test_receiver_gets_spans_from_the_sdk_grpc_exporter(receiver: OTLPReceiver) -> None:
    """The real gRPC OTLPSpanExporter delivers parent and child spans with their attributes."""
    _emit_probe_trace(GrpcSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True))
    spans = {s.name: s for s in receiver.wait_for_spans(2, timeout_s=5)}
    root, child = spans["probe t"], spans["node agent"]
    assert child.parent_span_id == root.span_id and root.parent_span_id == ""
    assert child.trace_id == root.trace_id and len(root.trace_id) == 32
    assert root.kind == 3  # SPAN_KIND_CLIENT
    assert root.attributes == {"langgraph.run_id": "r1"}
    assert child.attributes == {"langgraph.ttft_s": 0.2}
    assert (child.status_code, child.status_message) == (2, "boom")
    assert root.resource["service.name"] == "probe-test"
    assert {s.protocol for s in spans.values()} == {"grpc"}
    assert root.start_ns <= child.start_ns <= child.end_ns <= root.end_ns


def test_receiver_gets_spans_from_the_sdk_http_exporter(receiver: OTLPReceiver) -> None:
    """The real http/protobuf OTLPSpanExporter delivers the spans to POST /v1/traces."""
    _emit_probe_trace(HttpSpanExporter(endpoint=receiver.http_traces_url))
    spans = receiver.wait_for_spans(2, timeout_s=5)
    assert sorted(s.name for s in spans) == ["node agent", "probe t"]
    assert {s.protocol for s in spans} == {"http"}


def test_receiver_decodes_gzip_http_exports(receiver: OTLPReceiver) -> None:
    """A gzip-compressed http/protobuf export is decompressed and decoded."""
    _emit_probe_trace(
        HttpSpanExporter(endpoint=receiver.http_traces_url, compression=Compression.Gzip)
    )
    receiver.wait_for_spans(2, timeout_s=5)
    assert {e.headers.get("content-encoding") for e in receiver.exports()} == {"gzip"}


def test_rejecting_receiver_makes_the_export_fail(receiver: OTLPReceiver) -> None:
    """With reject set, an export reports FAILURE and no span is stored."""
    receiver.reject = True
    exporter = HttpSpanExporter(endpoint=receiver.http_traces_url)
    span = TracerProvider().get_tracer("tests").start_span("y")  # no processor: a bare span
    span.end()
    result = exporter.export([span])  # type: ignore[list-item]  # SDK span, typed as API Span
    exporter.shutdown()  # type: ignore[no-untyped-call]
    assert result is SpanExportResult.FAILURE
    assert receiver.rejected == 1 and receiver.spans() == []
