"""The probe engine against scripted faults on a real loopback socket.

Every failure kind has a test here, and each checks three things: the kind, the phase, and that
what was measured before the fault (phases, tokens, node timings) is still in the result.
Deadlines are small (total <= 5 s, so idle may be below the 5 s heartbeat; config rule).
"""

from __future__ import annotations

import asyncio
import inspect
import re
import socket
import ssl
import statistics
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import orjson
import pytest

from exporter.config import Target
from exporter.core import timing
from exporter.core.errors import FailureKind
from exporter.core.result import NodeExecution, ProbeResult
from exporter.http.client import Transport
from exporter.probe import PROBE_MARKER, probe
from tests.support.scripted_server import (
    DEFAULT_RUN,
    NodeSpec,
    Script,
    ScriptedServer,
    Step,
    body,
    close,
    drip,
    end,
    error_event,
    hang,
    heartbeat,
    langgraph_stream,
    last_chunk,
    metadata_event,
    reset,
    send,
    sleep,
    split,
    sse,
    status,
    task_end,
    task_start,
    token,
    wait,
)
from tests.support.tls import localhost_tls

pytestmark = pytest.mark.anyio

#: Every deadline well under the pytest timeout; idle below 5 s is allowed since total <= 5 s.
FAST = {"connect": 2, "headers": 2, "first_event": 2.5, "first_token": 2.8, "idle": 2, "total": 3}
TASK = "5e4b1a59-8d0f-4a36-9a4e-2f1f0c1c0b01"
MSG = "lc_run--2d3c9f7e-0000-4000-8000-000000000001"
RUN = DEFAULT_RUN.run_id
MB = 1024 * 1024
#: Every transport the probe can run on: each maps the same fault to the same failure kind.
TRANSPORTS: list[Transport] = list(get_args(Transport))
#: What the daemon uses; every test that does not name a transport runs on it.
DEFAULT_TRANSPORT: Transport = inspect.signature(probe).parameters["transport"].default


def make_target(url: str, *, timeout: dict[str, float] | None = None, **fields: Any) -> Target:
    return Target.model_validate(
        {
            "name": "fault",
            "url": url,
            "assistant_id": "agent",
            "timeout": {**FAST, **(timeout or {})},
            "protocol": "legacy",  # scripted servers speak only the legacy protocol
            **fields,
        }
    )


async def probe_script(
    script: Sequence[Step] | Callable[[Any], Sequence[Step]],
    *,
    transport: Transport = DEFAULT_TRANSPORT,
    log: Callable[[str], None] | None = None,
    **fields: Any,
) -> tuple[ProbeResult, ScriptedServer]:
    """Serve `script` on `POST /runs/stream` and probe it once (stateless)."""
    async with ScriptedServer() as server:
        server.route_stateless(script)
        result = await probe(make_target(server.url, **fields), transport=transport, log=log)
    return result, server


def tok(text: str, *, last: bool = False) -> bytes:
    return token("agent", text, msg_id=MSG, task_id=TASK, last=last)


def run_head() -> Script:
    """`metadata` and the `agent` task start: what every run sends before its first token."""
    return [send(metadata_event(RUN), "metadata"), send(task_start(TASK, "agent"), "task_start")]


def run_tail() -> Script:
    return [send(last_chunk("agent", msg_id=MSG, task_id=TASK)), send(task_end(TASK, "agent"))]


def only_node(result: ProbeResult) -> NodeExecution:
    (node,) = result.nodes
    return node


def failure_of(result: ProbeResult) -> tuple[FailureKind, str | None]:
    assert result.failure is not None, "the probe was expected to fail"
    return result.failure.kind, result.failure.phase


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass
class RawServer:
    """A TCP server on 127.0.0.1 that answers every connection with fixed bytes, then closes."""

    port: int


@pytest.fixture
async def raw_server(request: pytest.FixtureRequest) -> AsyncIterator[RawServer]:
    reply: bytes = request.param

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # the request head (or a TLS ClientHello)
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield RawServer(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


# --------------------------------------------------------------------------------------------
# connect and TLS
# --------------------------------------------------------------------------------------------


async def test_connection_refused_is_connect() -> None:
    """Nothing listening on the port is a `connect` failure in the connect phase."""
    result = await probe(make_target(f"http://127.0.0.1:{free_port()}"))
    assert failure_of(result) == (FailureKind.CONNECT, "connect")
    assert result.http_status is None and result.t_headers_ns is None


@dataclass
class TLSSetup:
    server_ctx: ssl.SSLContext
    ca_file: str


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSSetup]:
    """A private CA (trustme) and a server context for `localhost` signed by it."""
    yield TLSSetup(*localhost_tls(tmp_path_factory.mktemp("tls")))


async def probe_tls(
    tls: TLSSetup, transport: Transport = DEFAULT_TRANSPORT, **fields: Any
) -> ProbeResult:
    async with ScriptedServer(ssl_context=tls.server_ctx) as server:
        server.route_stateless(langgraph_stream(["agent"], tokens=2, first_token_s=0, gap_s=0))
        return await probe(make_target(server.url, **fields), transport=transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_untrusted_certificate_is_tls(tls: TLSSetup, transport: Transport) -> None:
    """A certificate from an unknown CA is `tls`, not the `connect` timeout httpx-aiohttp reports."""
    result = await probe_tls(tls, transport=transport)
    assert failure_of(result) == (FailureKind.TLS, "connect")
    assert result.failure is not None
    assert "CERTIFICATE_VERIFY_FAILED" in result.failure.message


async def test_ca_file_trusts_the_same_server(tls: TLSSetup) -> None:
    """With the private CA as `ca_file` the same server probes successfully."""
    result = await probe_tls(tls, ca_file=tls.ca_file)
    assert result.failure is None
    assert result.tokens == 2


async def test_insecure_skip_verify_trusts_the_same_server(tls: TLSSetup) -> None:
    """`insecure_skip_verify: true` accepts the untrusted certificate."""
    result = await probe_tls(tls, insecure_skip_verify=True)
    assert result.failure is None
    assert result.tokens == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("raw_server", [b"HTTP/1.1 400 Bad Request\r\n\r\n"], indirect=True)
async def test_tls_handshake_failure_is_tls(raw_server: RawServer, transport: Transport) -> None:
    """An https URL on a plain-HTTP port fails the handshake: `tls`, connect phase."""
    result = await probe(make_target(f"https://127.0.0.1:{raw_server.port}"), transport=transport)
    assert failure_of(result) == (FailureKind.TLS, "connect")


# --------------------------------------------------------------------------------------------
# before the response head
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_close_before_response_head_is_protocol(transport: Transport) -> None:
    """A FIN instead of a response is `protocol` in the headers phase, not a connect failure."""
    result, server = await probe_script([close()], transport=transport)
    assert len(server.requests) == 1  # the connection was made and the request was read
    assert failure_of(result) == (FailureKind.PROTOCOL, "headers")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reset_before_response_head_is_protocol(transport: Transport) -> None:
    """An RST instead of a response is `protocol` in the headers phase, not a connect failure."""
    result, _ = await probe_script([reset()], transport=transport)
    assert failure_of(result) == (FailureKind.PROTOCOL, "headers")
    assert result.failure is not None
    assert not result.failure.message.startswith("connect")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("raw_server", [b"SSH-2.0-OpenSSH_9.6\r\n\r\n"], indirect=True)
async def test_a_response_that_is_not_http_is_protocol(
    raw_server: RawServer, transport: Transport
) -> None:
    """A non-HTTP reply (aiohttp raises an unmapped ClientResponseError) is `protocol`."""
    result = await probe(make_target(f"http://127.0.0.1:{raw_server.port}"), transport=transport)
    assert failure_of(result) == (FailureKind.PROTOCOL, "headers")


STATUS_DETAILS = {
    401: "Invalid API key",
    403: "Forbidden: this key cannot run assistants",
    404: "Thread or assistant not found.",
    409: "Thread is already running a task.",
    422: "Invalid assistant: 'nope'.",
    429: "Rate limit exceeded, retry later",
    500: "Internal Server Error",
    503: "Service unavailable: no workers",
}


@pytest.mark.parametrize(("code", "detail"), sorted(STATUS_DETAILS.items()))
async def test_http_error_status_keeps_code_and_detail(code: int, detail: str) -> None:
    """A non-2xx answer is `http_status` with the code kept and the server's `detail` quoted."""
    result, _ = await probe_script([body(code, {"detail": detail})])
    assert failure_of(result) == (FailureKind.HTTP_STATUS, "headers")
    assert result.failure is not None
    assert result.failure.http_status == code == result.http_status
    assert detail in result.failure.message
    assert result.t_headers_ns is not None and result.tokens == 0


async def test_http_error_body_excerpt_is_capped_for_a_1mb_body() -> None:
    """A 1 MB error body is quoted at most 500 characters long."""
    result, _ = await probe_script([body(500, b"x" * MB, "text/plain")])
    assert failure_of(result) == (FailureKind.HTTP_STATUS, "headers")
    assert result.failure is not None
    excerpt = result.failure.message.removeprefix("HTTP 500: ")
    assert 0 < len(excerpt.rstrip("…")) <= 500


async def test_200_without_event_stream_is_not_sse() -> None:
    """HTTP 200 with a JSON body is `not_sse`, quoting the content type, status kept."""
    result, _ = await probe_script([body(200, {"runs": []})])
    assert failure_of(result) == (FailureKind.NOT_SSE, "headers")
    assert result.failure is not None and "application/json" in result.failure.message
    assert result.http_status == 200


@pytest.mark.timing
async def test_stall_before_the_response_head_hits_the_headers_deadline() -> None:
    """No response head within `headers` is `deadline` in the headers phase, on time."""
    result, _ = await probe_script([hang()], timeout={"headers": 0.5})
    assert failure_of(result) == (FailureKind.DEADLINE, "headers")
    assert 0.5 <= result.duration_s < 1.5, (
        f"probe lasted {result.duration_s:.3f} s, want [0.5, 1.5)"
    )


# --------------------------------------------------------------------------------------------
# deadlines and stalls after the head
# --------------------------------------------------------------------------------------------


@pytest.mark.timing
async def test_stall_after_headers_hits_the_first_event_deadline() -> None:
    """Headers but no event within `first_event` is `deadline` phase first_event, headers kept."""
    result, _ = await probe_script(
        [status(), hang()], timeout={"first_event": 0.6, "first_token": 2, "idle": 2}
    )
    assert failure_of(result) == (FailureKind.DEADLINE, "first_event")
    assert result.t_headers_ns is not None and result.t_first_event_ns is None
    assert 0.6 <= result.duration_s < 1.5, (
        f"probe lasted {result.duration_s:.3f} s, want [0.6, 1.5)"
    )


@pytest.mark.timing
async def test_stall_before_the_first_token_hits_the_first_token_deadline() -> None:
    """Run picked up and node started, but no token within `first_token`: deadline first_token."""
    result, _ = await probe_script(
        [*run_head(), hang()], timeout={"first_event": 0.5, "first_token": 0.7, "idle": 2}
    )
    assert failure_of(result) == (FailureKind.DEADLINE, "first_token")
    assert result.t_first_event_ns is not None and result.run_id == RUN
    node = only_node(result)
    assert node.node == "agent" and node.start_ns is not None and node.tokens == 0
    assert 0.7 <= result.duration_s < 1.5, (
        f"probe lasted {result.duration_s:.3f} s, want [0.7, 1.5)"
    )


@pytest.mark.timing
async def test_stall_between_tokens_is_stalled_by_the_idle_deadline() -> None:
    """No byte for `idle` after two tokens, from a server known to send heartbeats, is
    `stalled`; the tokens and node TTFT are kept."""
    script = [*run_head(), send(heartbeat()), send(tok("It's")), send(tok(" 60")), hang()]
    result, _ = await probe_script(script, timeout={"idle": 0.6, "total": 3})
    assert failure_of(result) == (FailureKind.STALLED, "stream")
    assert result.tokens == 2 and result.text == "It's 60"
    node = only_node(result)
    assert node.ttft_s is not None and len(node.itl_s()) == 1
    assert result.t_first_token_ns is not None
    assert 0.6 <= result.duration_s < 1.6, (
        f"probe lasted {result.duration_s:.3f} s, want [0.6, 1.6)"
    )


@pytest.mark.timing
async def test_server_without_heartbeats_may_be_silent_until_the_total_deadline() -> None:
    """A server that never sent a heartbeat (the LangGraph.js server, docs/WIRE.md §2) may be
    silent for longer than `idle` (a long tool call): it is not `stalled`, it ends at EOF."""
    run = langgraph_stream(["agent"], tokens=3, first_token_s=0.05, gap_s=0.02)
    head, tail = run[:-1], run[-1:]
    result, _ = await probe_script([*head, sleep(0.8), *tail], timeout={"idle": 0.4, "total": 3})
    assert result.failure is None, result.failure
    assert result.duration_s >= 0.8, f"ended after {result.duration_s:.3f}s"


@pytest.mark.timing
async def test_endless_stream_ends_at_the_total_deadline_with_bounded_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stream that never ends stops at `total` (`deadline`) with capped state and memory."""
    # Small caps so a 1.5 s stream passes them; tracemalloc starts at the first token, after
    # the server has scanned its million-step script (tracing that scan would slow it 30x).
    monkeypatch.setattr(timing, "MAX_EVENTS_LOGGED", 1000)
    monkeypatch.setattr(timing, "MAX_TOKENS_STAMPED", 1000)

    def log(line: str) -> None:
        if line.startswith("first token"):
            tracemalloc.start()

    script: Script = [*run_head(), *([send(tok("x"))] * 1_000_000), end()]
    try:
        result, _ = await probe_script(script, timeout={"total": 1.5, "idle": 1}, log=log)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert failure_of(result) == (FailureKind.DEADLINE, "total")
    assert 1.5 <= result.duration_s < 3, f"probe lasted {result.duration_s:.3f} s, want [1.5, 3)"
    stamped = sum(n.tokens for n in result.nodes)
    assert stamped == 1000  # stamped tokens stop at the cap ...
    assert result.tokens == stamped + result.tokens_dropped and result.tokens_dropped > 0
    assert len(result.events.recv_ns) == 1000 and result.events.dropped > 0  # ... events too
    assert 0 < peak < 100 * MB, f"peak {peak / MB:.0f} MB"


async def test_token_count_agrees_with_the_verdict_past_the_stamping_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the stamping cap, the result counts every token, as the verdict did: a run of 10
    tokens with a cap of 4 meets `min_tokens: 8` and reports 10 tokens (6 of them unstamped)."""
    monkeypatch.setattr(timing, "MAX_TOKENS_STAMPED", 4)
    script = [*run_head(), *(send(tok(f"t{i} ")) for i in range(10)), *run_tail()]
    result, _ = await probe_script(script, expect={"min_tokens": 8})
    assert result.failure is None, result.failure
    assert (result.tokens, result.tokens_dropped) == (10, 6)
    assert result.to_dict()["tokens"] == 10


async def test_slow_drip_ends_at_its_deadline_and_keeps_the_bytes_read() -> None:
    """One byte a second never trips the idle deadline; total does, and the bytes are counted."""
    script = [*run_head(), drip(tok("slow"), 1.0)]
    timeout = {"first_event": 5, "first_token": 5, "idle": 2, "total": 3.5}
    result, _ = await probe_script(script, timeout=timeout)
    assert failure_of(result) == (FailureKind.DEADLINE, "total")
    head = len(metadata_event(RUN)) + len(task_start(TASK, "agent"))
    assert result.bytes_read >= head + 2  # the drip got through at least two bytes
    assert result.tokens == 0 and result.t_first_event_ns is not None


async def test_server_never_closing_after_the_last_token_is_a_total_deadline() -> None:
    """A run whose stream stays open (heartbeats, no EOF) is `deadline` total, all timings kept.

    Decision: without EOF the probe cannot know the run is over (there is no `end` event,
    docs/WIRE.md §2), so it fails; with heartbeats flowing, as a real server sends them, the total
    deadline is what fires. Every token and node timing is in the result all the same.
    """
    beats: Script = [s for _ in range(40) for s in (sleep(0.1), send(heartbeat()))]
    run = langgraph_stream(["agent"], tokens=4, first_token_s=0.05, gap_s=0.02)
    result, _ = await probe_script([*run, *beats, hang()], timeout={"idle": 1, "total": 1.5})
    assert failure_of(result) == (FailureKind.DEADLINE, "total")
    node = only_node(result)
    assert result.tokens == 4 and node.end_ns is not None and node.ttft_s is not None
    assert len(node.itl_s()) == 3 and node.calls[0].completed
    assert result.heartbeats >= 1


async def test_silent_server_after_the_last_token_is_stalled_with_timings_kept() -> None:
    """With heartbeats seen, then silence, the never-closing run trips the idle deadline."""
    run = langgraph_stream(["agent"], tokens=4, first_token_s=0.05, gap_s=0.02)
    script = [*run, send(heartbeat()), hang()]
    result, _ = await probe_script(script, timeout={"idle": 0.5, "total": 3})
    assert failure_of(result) == (FailureKind.STALLED, "stream")
    node = only_node(result)
    assert result.tokens == 4 and node.end_ns is not None and len(node.itl_s()) == 3


# --------------------------------------------------------------------------------------------
# the stream breaks off
# --------------------------------------------------------------------------------------------


async def test_reset_mid_event_is_incomplete_with_tokens_kept() -> None:
    """An RST in the middle of an event is `incomplete`; the token read before it is kept."""
    first_token_read = asyncio.Event()

    def log(line: str) -> None:
        if line.startswith("first token"):
            first_token_read.set()

    half = tok(" 60")[:40]
    script = [*run_head(), send(tok("It's")), wait(first_token_read), send(half), reset()]
    result, _ = await probe_script(script, log=log)
    assert failure_of(result) == (FailureKind.INCOMPLETE, "stream")
    assert result.tokens == 1 and result.text == "It's"


async def test_close_mid_event_is_incomplete_with_tokens_kept() -> None:
    """EOF (close-delimited body) inside an event is `incomplete`: the partial event is noticed."""
    script = [status(chunked=False), *run_head(), send(tok("It's")), send(tok(" 60")[:40]), close()]
    result, _ = await probe_script(script)
    assert failure_of(result) == (FailureKind.INCOMPLETE, "stream")
    assert result.failure is not None and "inside an event" in result.failure.message
    assert result.tokens == 1


async def test_run_cancelled_server_side_is_incomplete() -> None:
    """A cancelled run's stream just ends mid-node (docs/WIRE.md §8): `incomplete`, tokens kept."""
    script = [*run_head(), send(tok("It's")), send(tok(" 60")), end()]
    result, _ = await probe_script(script)
    assert failure_of(result) == (FailureKind.INCOMPLETE, "stream")
    assert result.failure is not None and "never ended" in result.failure.message
    assert result.tokens == 2 and only_node(result).end_ns is None


# --------------------------------------------------------------------------------------------
# what the stream says
# --------------------------------------------------------------------------------------------


async def test_error_event_is_run_error_with_type_and_tokens_kept() -> None:
    """`event: error` after tokens is `run_error` with the server's type and message."""
    script = langgraph_stream([NodeSpec("agent", error="RuntimeError")], tokens=5, gap_s=0)
    result, _ = await probe_script(script)
    assert failure_of(result) == (FailureKind.RUN_ERROR, "stream")
    assert result.failure is not None and result.failure.error_type == "RuntimeError"
    assert "simulated provider failure" in result.failure.message
    assert result.tokens == 5 and only_node(result).error_type == "RuntimeError"


async def test_masked_error_event_keeps_the_error_type() -> None:
    """A masked error message (non-builtin exception, docs/WIRE.md §8) still reports the error type."""
    masked = error_event("ProviderRateLimitError", "An internal error occurred")
    script = [*run_head(), send(tok("It's")), send(task_end(TASK, "agent", "X")), send(masked)]
    result, _ = await probe_script(script)
    assert failure_of(result) == (FailureKind.RUN_ERROR, "stream")
    assert result.failure is not None
    assert result.failure.error_type == "ProviderRateLimitError"
    assert "An internal error occurred" in result.failure.message
    assert result.tokens == 1


async def test_malformed_framing_is_protocol_with_tokens_kept() -> None:
    """Two events run together (no blank line between them) become bad JSON: `protocol`."""
    glued = tok(" 60").removesuffix(b"\r\n") + tok(" degrees")
    result, _ = await probe_script([*run_head(), send(tok("It's")), send(glued), *run_tail()])
    assert failure_of(result) == (FailureKind.PROTOCOL, "stream")
    assert result.tokens == 1


async def test_invalid_json_is_protocol_with_tokens_kept() -> None:
    """A `messages` event whose data is not JSON is `protocol`, quoting the bad data."""
    bad = b"event: messages\r\ndata: [{not json\r\n\r\n"
    result, _ = await probe_script([*run_head(), send(tok("It's")), send(bad), *run_tail()])
    assert failure_of(result) == (FailureKind.PROTOCOL, "stream")
    assert result.failure is not None and "not JSON" in result.failure.message
    assert result.tokens == 1


async def test_wrong_event_shape_is_protocol() -> None:
    """A `messages` event that is JSON but not a [message, metadata] pair is `protocol`."""
    result, _ = await probe_script([*run_head(), send(sse("messages", {"a": 1})), *run_tail()])
    assert failure_of(result) == (FailureKind.PROTOCOL, "stream")


async def probe_with_peak_memory(head: Script) -> tuple[ProbeResult, int]:
    """Probe `head` followed by a clean run tail; also the peak traced memory, in bytes."""
    tracemalloc.start()
    try:
        result, _ = await probe_script([*head, *run_tail()])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


async def test_10mb_event_is_accepted_with_bounded_memory() -> None:
    """One 10 MB token is accepted (below the 16 MB event cap) without memory running away."""
    big = tok("y" * (10 * MB))
    result, peak = await probe_with_peak_memory([*run_head(), send(tok("It's")), send(big)])
    assert result.failure is None, result.failure
    assert result.tokens == 2 and result.bytes_read > 10 * MB
    assert len(result.text) <= 64 * 1024  # the content check keeps a capped prefix only
    assert peak < 100 * MB, f"peak {peak / MB:.0f} MB"


async def test_event_over_the_cap_is_protocol_with_bounded_memory() -> None:
    """A 20 MB event is refused as `protocol` once it passes the cap, not buffered whole."""
    huge = tok("z" * (20 * MB))
    result, peak = await probe_with_peak_memory([*run_head(), send(tok("It's")), send(huge)])
    assert failure_of(result) == (FailureKind.PROTOCOL, "stream")
    assert result.failure is not None and "exceeds" in result.failure.message
    assert result.tokens == 1
    assert peak < 100 * MB, f"peak {peak / MB:.0f} MB"


async def test_clean_run_without_tokens_is_no_tokens() -> None:
    """A run that ends cleanly with only a whole node-output message is `no_tokens`."""
    result, _ = await probe_script(langgraph_stream([NodeSpec("tools", streamed=False)]))
    assert failure_of(result) == (FailureKind.NO_TOKENS, "stream")
    assert only_node(result).end_ns is not None


@pytest.mark.parametrize(
    "expect",
    [
        pytest.param({"content_regex": "sunny"}, id="content"),
        pytest.param({"min_tokens": 10}, id="min-tokens"),
        pytest.param({"nodes": ["agent", "tools"]}, id="nodes"),
    ],
)
async def test_unmet_expectation_is_expectation(expect: dict[str, Any]) -> None:
    """A clean run that misses a content, token-count or node check is `expectation`."""
    script = langgraph_stream(["agent"], tokens=3, first_token_s=0, gap_s=0)
    result, _ = await probe_script(script, expect=expect)
    assert failure_of(result)[0] == FailureKind.EXPECTATION
    assert result.tokens == 3 and result.text == "It's 60 degrees"


async def test_clean_run_meeting_expectations_succeeds() -> None:
    """The same run passes when its expectations hold (the twin of the test above)."""
    script = langgraph_stream(["agent"], tokens=3, first_token_s=0, gap_s=0)
    expect = {"content_regex": "60 deg", "min_tokens": 3, "nodes": ["agent"]}
    result, _ = await probe_script(script, expect=expect)
    assert result.failure is None and result.success


# --------------------------------------------------------------------------------------------
# timing on a real socket
# --------------------------------------------------------------------------------------------


@pytest.mark.timing
async def test_node_ttft_and_gaps_match_the_script() -> None:
    """First token 0.2 s after the node start and 0.05 s gaps are measured as such."""
    spec = NodeSpec("agent", tokens=8, first_token_s=0.2, gap_s=0.05)
    result, _ = await probe_script(langgraph_stream([spec]))
    assert result.failure is None
    node = only_node(result)
    assert node.basis == "tasks" and node.ttft_s is not None
    assert 0.2 <= node.ttft_s <= 0.25, f"node TTFT measured {node.ttft_s:.4f} s, scripted 0.2 s"
    gaps = node.itl_s()
    assert len(gaps) == 7
    assert min(gaps) >= 0.05, f"smallest gap measured {min(gaps):.4f} s, scripted 0.05 s"
    median = statistics.median(gaps)
    assert median <= 0.06, f"median gap measured {median:.4f} s, scripted 0.05 s"


async def test_heartbeats_between_tokens_are_not_tokens() -> None:
    """`: heartbeat` comments between tokens are counted as heartbeats, never as tokens."""
    script = [
        *run_head(),
        send(tok("a")),
        send(heartbeat()),
        send(heartbeat()),
        send(tok("b")),
        send(heartbeat()),
        send(tok("c")),
        *run_tail(),
    ]
    result, _ = await probe_script(script)
    assert result.failure is None
    assert result.tokens == 3 and result.heartbeats == 3
    assert len(only_node(result).itl_s()) == 2


@pytest.mark.timing
async def test_event_split_across_two_writes_is_stamped_at_its_last_byte() -> None:
    """A token cut in two writes 0.1 s apart is stamped when its second half arrived."""
    piece = tok("split")
    script = [*run_head(), *split(piece, 40, gap_s=0.1, tag="split"), *run_tail()]
    result, server = await probe_script(script)
    assert result.failure is None
    first_half = next(r for r in server.sent if r.tag == "split")
    (stamp,) = only_node(result).calls[0].token_ns
    late_ms = (stamp - first_half.sent_ns) / 1e6
    # hard: the rest was written 0.1 s later
    assert late_ms >= 100, f"stamped {late_ms:.1f} ms after the first half was sent, want >= 100"
    assert late_ms < 600, f"stamped {late_ms:.1f} ms after the first half was sent, want < 600"


# --------------------------------------------------------------------------------------------
# requests and cleanup
# --------------------------------------------------------------------------------------------

TID = "7f3e0c8a-1b2d-4e5f-8a9b-0c1d2e3f4a5b"


async def test_thread_probe_on_deadline_cancels_the_run_then_deletes_the_thread() -> None:
    """A thread-mode probe that times out mid-run POSTs cancel first, then DELETEs the thread."""
    async with ScriptedServer() as server:
        server.route_thread(TID, [*run_head(), send(tok("It's")), hang()])
        target = make_target(server.url, mode="thread", timeout={"idle": 2, "total": 1})
        result = await probe(target)
    assert failure_of(result) == (FailureKind.DEADLINE, "total")
    assert result.thread_id == TID and result.tokens == 1
    calls = [(r.method, r.path) for r in server.requests]
    assert calls == [
        ("POST", "/threads"),
        ("POST", f"/threads/{TID}/runs/stream"),
        ("POST", f"/threads/{TID}/runs/{RUN}/cancel"),
        ("DELETE", f"/threads/{TID}"),
    ]
    assert "action=interrupt" in server.requests[2].query


async def test_clean_thread_probe_deletes_without_cancelling() -> None:
    """A thread-mode run that ended cleanly is not cancelled; its thread is deleted."""
    async with ScriptedServer() as server:
        routes = server.route_thread(TID, langgraph_stream(["agent"], tokens=2, first_token_s=0))
        result = await probe(make_target(server.url, mode="thread"))
    assert result.failure is None
    assert [(r.method, r.path) for r in server.requests] == [
        ("POST", "/threads"),
        ("POST", f"/threads/{TID}/runs/stream"),
        ("DELETE", f"/threads/{TID}"),
    ]
    assert routes.deleted.is_set() and not routes.cancelled.is_set()


async def test_thread_create_without_thread_id_is_protocol_and_sends_no_run() -> None:
    """`POST /threads` answering without a thread id fails the probe; no run is started."""
    async with ScriptedServer() as server:
        server.route("POST", "/threads", [body(200, {"status": "idle"})])
        server.route_stateless(langgraph_stream(["agent"], tokens=1))
        result = await probe(make_target(server.url, mode="thread"))
    assert failure_of(result) == (FailureKind.PROTOCOL, "thread")
    assert [r.path for r in server.requests] == ["/threads"]


async def test_stateless_request_carries_the_probe_contract(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run request has on_disconnect cancel, both stream modes, the marker and traceparent."""
    monkeypatch.setenv("LGSE_FAULT_KEY", "sk-fault-test-1234")
    script = langgraph_stream(["agent"], tokens=1, first_token_s=0)
    result, server = await probe_script(script, api_key_env="LGSE_FAULT_KEY")
    assert result.failure is None
    (req,) = server.requests
    sent = req.json()
    assert sent["on_disconnect"] == "cancel"
    assert {"messages-tuple", "tasks"} <= set(sent["stream_mode"])
    assert sent["metadata"]["probe"] == PROBE_MARKER
    assert sent["metadata"]["probe_target"] == "fault"
    match = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", req.headers["traceparent"])
    assert match is not None and match.group(1) == result.trace_id
    assert req.headers["x-api-key"] == "sk-fault-test-1234"


async def test_api_key_never_appears_in_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server echoing the key back in its error is masked out of the result and its log."""
    key = "sk-fault-test-5678"
    monkeypatch.setenv("LGSE_FAULT_KEY", key)

    def echo(req: Any) -> Script:
        return [body(401, {"detail": f"invalid key {req.headers['x-api-key']}"})]

    result, server = await probe_script(echo, api_key_env="LGSE_FAULT_KEY")
    assert server.requests[0].headers["x-api-key"] == key  # it was sent ...
    assert failure_of(result) == (FailureKind.HTTP_STATUS, "headers")
    assert key not in orjson.dumps(result.to_dict()).decode()  # ... and never kept
    assert key not in "\n".join(result.log)
    assert result.failure is not None and "invalid key ***" in result.failure.message


async def test_to_dict_keeps_the_phases_measured_before_a_stall() -> None:
    """The JSON shape of a stalled probe still has headers, first event and first token."""
    script = [*run_head(), send(heartbeat()), send(tok("It's")), hang()]
    result, _ = await probe_script(script, timeout={"idle": 0.5, "total": 3})
    phases = result.to_dict()["phases_s"]
    assert phases["headers"] is not None
    assert phases["headers"] <= phases["first_event"] <= phases["first_token"] <= phases["total"]
