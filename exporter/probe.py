"""One synthetic streaming probe: request a run, read its SSE stream, time it, clean up.

`probe(target)` never raises for a failure of the target: it returns a `ProbeResult` whose
`failure` says what went wrong, with every measurement taken before the failure kept
(DESIGN §1). Only `asyncio.CancelledError` passes through, after cleanup.

Timing discipline (DEVELOPERS rule 4): the monotonic clock is read right after each socket read
returns, before the bytes are decoded; decoding, logging and exporting never sit between a read
and its stamp.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from exporter.config import SecretMask, Target
from exporter.errors import FailureKind, HTTPStatusFailure, ProbeFailure
from exporter.events import Message, RunError, decode_event
from exporter.result import Failure, ProbeResult
from exporter.sse import SSEDecoder
from exporter.stream import (
    Transport,
    classify_transport_error,
    consume_body,
    headers_arrival_ns,
    make_client,
    ssl_context,
    transport_errors,
)
from exporter.timing import Expectations, Timeline

__all__ = ["PROBE_MARKER", "TraceParent", "probe", "request_body"]

PROBE_MARKER = "langgraph-stream-exporter"
STREAM_MODE = ("messages-tuple", "tasks")  # tasks: node start and end (wire §5)
BODY_EXCERPT_CHARS = 500
CLEANUP_TIMEOUT_S = 10.0
_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class TraceParent:
    """W3C trace context for one probe; the scheduler draws it, the OTLP sink reuses the ids."""

    trace_id: str  # 32 hex
    span_id: str  # 16 hex

    @classmethod
    def new(cls) -> TraceParent:
        return cls(os.urandom(16).hex(), os.urandom(8).hex())

    @property
    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"


def request_body(target: Target) -> dict[str, Any]:
    """The run request (DESIGN §1.2)."""
    body: dict[str, Any] = {
        "assistant_id": target.assistant_id,
        "input": target.input,
        "stream_mode": list(STREAM_MODE),
        "stream_subgraphs": target.stream_subgraphs,
        # NOTE: the default "continue" keeps a run going after we hang up (wire §8).
        "on_disconnect": "cancel",
        # Copied into every token's metadata (wire §4): marks probe runs on the server side.
        "metadata": {"probe": PROBE_MARKER, "probe_target": target.name},
    }
    if target.config is not None:
        body["config"] = target.config
    if target.context is not None:
        body["context"] = target.context
    return body


def _headers(target: Target, trace: TraceParent) -> dict[str, str]:
    headers = {
        "accept": "text/event-stream",
        "content-type": "application/json",
        "accept-encoding": "identity",
        "user-agent": f"{PROBE_MARKER}/probe",
        **target.headers,
        "traceparent": trace.header,
    }
    for name, source in target.secret_headers.items():
        value = source.read()
        if value is not None:
            headers[name] = value.get_secret_value()
    key = target.api_key()
    if key is not None:
        headers["x-api-key"] = key.get_secret_value()
    return headers


def _sent_secrets(target: Target, headers: dict[str, str]) -> SecretMask:
    """A mask of the secret values this probe actually sends (a rotated file included)."""
    names = {"x-api-key", *(name.lower() for name in target.secret_headers)}
    return SecretMask(v for k, v in headers.items() if k.lower() in names)


def _ids_from_location(location: str | None) -> tuple[str | None, str | None]:
    """`/threads/<tid>/runs/<rid>` or `/runs/<rid>` -> (thread id, run id) (wire §9)."""
    if not location:
        return None, None
    parts = location.split("?")[0].strip("/").split("/")
    thread_id = parts[1] if len(parts) >= 2 and parts[0] == "threads" else None
    run_id = parts[parts.index("runs") + 1] if "runs" in parts[:-1] else None
    return thread_id, run_id


async def _excerpt(response: httpx.Response, limit_bytes: int = 64 * 1024) -> str:
    body = bytearray()
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


class _Deadlines:
    """The phase deadlines of one run, and which is nearest now (read by `_Watchdog`)."""

    def __init__(self, target: Target, t_request_ns: int) -> None:
        t = target.timeout
        # The total deadline caps the headers one too (a config may set total < headers).
        self.headers_s = min(t.headers, t.total)
        self.first_event_ns = t_request_ns + int(t.first_event * _NS)
        self.first_token_ns = t_request_ns + int(t.first_token * _NS)
        self.total_ns = t_request_ns + int(t.total * _NS)
        self.idle_ns = int(t.idle * _NS)
        self.timeouts = t

    def nearest(self, timeline: Timeline, last_byte_ns: int) -> tuple[int, str]:
        options = [(self.total_ns, "total"), (last_byte_ns + self.idle_ns, "idle")]
        if timeline.t_first_event_ns is None:
            options.append((self.first_event_ns, "first_event"))
        if timeline.t_first_token_ns is None:
            options.append((self.first_token_ns, "first_token"))
        return min(options)

    def failure(self, which: str) -> ProbeFailure:
        if which == "idle":
            return ProbeFailure(
                f"stalled: no bytes for {self.timeouts.idle:g}s",
                kind=FailureKind.STALLED,
                phase="stream",
            )
        limit = getattr(self.timeouts, which)
        return ProbeFailure(
            f"deadline: no {which.replace('_', ' ')} within {limit:g}s"
            if which != "total"
            else f"deadline: run not finished within {limit:g}s",
            kind=FailureKind.DEADLINE,
            phase=which,
        )


async def probe(
    target: Target,
    *,
    trace: TraceParent | None = None,
    client: httpx.AsyncClient | None = None,
    transport: Transport = "stamping",
    log: Callable[[str], None] | None = None,
) -> ProbeResult:
    """Run one probe of `target` and return what it measured."""
    trace = trace or TraceParent.new()
    owns_client = client is None
    if client is None:
        verify = None
        if target.url.startswith("https://"):
            verify = ssl_context(target.ca_file, insecure=target.insecure_skip_verify)
        client = make_client(
            transport=transport, verify=verify, connect_timeout_s=target.timeout.connect
        )
    one = _Probe(target, trace, client, log)
    try:
        if target.mode == "thread":
            one.thread_id = await one.create_thread()
        if one.failure is None:
            await one.run()
    finally:
        try:
            if target.mode == "thread" and one.thread_id is not None:
                await one.cleanup()
        finally:
            if owns_client:
                await client.aclose()
    return one.result()


class _Probe:
    """One probe in progress: what it sends, and what it has measured so far, which becomes
    the result however the probe ends."""

    def __init__(
        self,
        target: Target,
        trace: TraceParent,
        client: httpx.AsyncClient,
        log: Callable[[str], None] | None,
    ) -> None:
        self.target = target
        self.trace = trace
        self.client = client
        self.headers = _headers(target, trace)
        self._secrets = _sent_secrets(target, self.headers)
        self._log = log
        self.timeline = Timeline(time.monotonic_ns())
        self.wall_request_ns = time.time_ns()
        self.failure: Failure | None = None
        self.thread_id: str | None = None
        self.location_run_id: str | None = None  # known from the headers, before `metadata`
        self.http_status: int | None = None
        self.decoder = SSEDecoder()
        self.clean_eof = False
        self.t_end_ns: int | None = None
        self.log: list[str] = []

    def say(self, line: str) -> None:
        """A line for `/probe?debug=true` and the caller's log, secrets masked."""
        line = self.mask(line)
        self.log.append(line)
        if self._log is not None:
            self._log(line)

    def mask(self, text: str) -> str:
        """A server may echo a key back (`invalid key sk-…`); the result must never hold it."""
        return self._secrets.text(text)

    def restart_clock(self) -> None:
        """t_request is taken just before the run request, after any thread creation."""
        self.timeline = Timeline(time.monotonic_ns())
        self.wall_request_ns = time.time_ns()

    def fail(self, exc: ProbeFailure) -> None:
        if self.failure is None:
            self.failure = Failure(
                exc.kind,
                self.mask(exc.message),
                error_type=exc.error_type,
                http_status=getattr(exc, "http_status", None),
                phase=exc.phase,
            )

    def result(self) -> ProbeResult:
        tl = self.timeline
        end = self.t_end_ns or time.monotonic_ns()
        failure = self.failure
        if failure is None:
            failure = tl.verdict(_expectations(self.target))
            if failure is not None:  # e.g. an `event: error` message quoting the request
                failure = dataclasses.replace(failure, message=self.mask(failure.message))
        return ProbeResult(
            target=self.target.name,
            url=self.target.url,
            assistant_id=self.target.assistant_id,
            mode=self.target.mode,
            t_request_ns=tl.t_request_ns,
            wall_request_ns=self.wall_request_ns,
            t_end_ns=end,
            failure=failure,
            run_id=tl.run_id or self.location_run_id,
            thread_id=self.thread_id,
            trace_id=self.trace.trace_id,
            span_id=self.trace.span_id,
            http_status=self.http_status,
            t_headers_ns=tl.t_headers_ns,
            t_first_event_ns=tl.t_first_event_ns,
            t_first_token_ns=tl.t_first_token_ns,
            nodes=tl.nodes(),
            events=tl.event_log(),
            heartbeats=self.decoder.comments,
            bytes_read=self.decoder.bytes_read,
            max_tokens_per_read=tl.max_tokens_per_read,
            text=tl.text,
            labels=tuple(sorted(self.target.labels.items())),
            log=tuple(self.log),
        )

    async def create_thread(self) -> str | None:
        """POST /threads; the thread id, or None after recording the failure."""
        target, client, headers = self.target, self.client, self.headers
        body = {"metadata": {"probe": PROBE_MARKER, "probe_target": target.name}}
        try:
            async with asyncio.timeout(target.timeout.headers):
                response = await client.post(
                    f"{target.url}/threads", content=orjson.dumps(body), headers=headers
                )
        except TimeoutError:
            self.fail(
                ProbeFailure("deadline: POST /threads", kind=FailureKind.DEADLINE, phase="thread")
            )
            return None
        except transport_errors() as exc:
            self.fail(classify_transport_error(exc, streaming=False))
            return None
        if response.status_code >= 300:
            self.http_status = response.status_code
            detail = await _excerpt(response)
            self.fail(
                HTTPStatusFailure(
                    response.status_code,
                    f"POST /threads: HTTP {response.status_code}: {detail}",
                    detail,
                )
            )
            return None
        try:
            thread_id = orjson.loads(response.content).get("thread_id")
        except (orjson.JSONDecodeError, AttributeError):
            thread_id = None
        if not isinstance(thread_id, str):
            # NOTE: without a thread id the run would silently go to stateless `/runs/stream`.
            self.fail(
                ProbeFailure(
                    f"POST /threads: no thread_id in the response: {response.content[:200]!r}",
                    kind=FailureKind.PROTOCOL,
                    phase="thread",
                )
            )
            return None
        self.say(f"created thread {thread_id}")
        return thread_id

    async def run(self) -> None:
        """The run request and its stream; every outcome is recorded, nothing raised."""
        target, client, headers = self.target, self.client, self.headers
        path = (
            "/runs/stream" if self.thread_id is None else f"/threads/{self.thread_id}/runs/stream"
        )
        request = client.build_request(
            "POST",
            target.url + path,
            content=orjson.dumps(request_body(target)),
            headers=headers,
        )
        self.restart_clock()
        tl = self.timeline
        deadlines = _Deadlines(target, tl.t_request_ns)
        response: httpx.Response | None = None
        streaming = False
        watchdog: _Watchdog | None = None
        try:
            async with asyncio.timeout(deadlines.headers_s) as timer:
                response = await client.send(request, stream=True)
                tl.headers(headers_arrival_ns(response))
                self.http_status = response.status_code
                self.say(
                    f"POST {path}: HTTP {response.status_code} after {_ms(tl.t_headers_ns, tl)}"
                )
                if response.status_code >= 300:
                    detail = await _excerpt(response)
                    raise HTTPStatusFailure(
                        response.status_code, f"HTTP {response.status_code}: {detail}", detail
                    )
                ctype = response.headers.get("content-type", "")
                if ctype.partition(";")[0].strip().lower() != "text/event-stream":
                    detail = await _excerpt(response)
                    raise ProbeFailure(
                        f"expected text/event-stream, got {ctype!r}: {detail}",
                        kind=FailureKind.NOT_SSE,
                        phase="headers",
                    )
                _, self.location_run_id = _ids_from_location(
                    response.headers.get("content-location")
                )
                streaming = True
                decoder = self.decoder
                timer.reschedule(None)  # from here on the watchdog decides when it expires
                watchdog = _Watchdog(timer, deadlines, tl, tl.t_headers_ns or tl.t_request_ns)
                watchdog.arm()
                wd = watchdog

                def on_read(recv_ns: int, chunk: bytes) -> None:
                    """One socket read, stamped at its arrival (rule 4), decoded and timed."""
                    wd.last_ns = recv_ns
                    for sse in decoder.feed(chunk, recv_ns):
                        ev = decode_event(sse.event, sse.data)
                        tl.event(sse.event, ev, sse.recv_ns, sse.chunk_seq)
                        if isinstance(ev, RunError):
                            self.say(f"event: error {ev.error_type}: {ev.message}")
                        elif isinstance(ev, Message) and ev.is_token and tl.tokens == 1:
                            self.say(f"first token from {ev.node} after {_ms(recv_ns, tl)}")

                await consume_body(response, on_read)
                self.t_end_ns = time.monotonic_ns()
                if decoder.pending_bytes():
                    raise ProbeFailure(
                        "stream ended inside an event", kind=FailureKind.INCOMPLETE, phase="stream"
                    )
                self.clean_eof = True
                self.say(f"stream ended after {_ms(self.t_end_ns, tl)}, {tl.tokens} tokens")
        except TimeoutError:
            self.t_end_ns = time.monotonic_ns()
            if not streaming or watchdog is None:
                self.fail(
                    ProbeFailure(
                        f"deadline: no response headers within {deadlines.headers_s:g}s",
                        kind=FailureKind.DEADLINE,
                        phase="headers",
                    )
                )
            else:
                self.fail(deadlines.failure(watchdog.which))
        except ProbeFailure as exc:
            self.t_end_ns = self.t_end_ns or time.monotonic_ns()
            self.fail(exc)
        except transport_errors() as exc:
            self.t_end_ns = time.monotonic_ns()
            self.fail(classify_transport_error(exc, streaming=streaming))
        except (
            Exception
        ) as exc:  # a bug of ours: reported as `internal`, never raised to the caller
            self.t_end_ns = time.monotonic_ns()
            self.fail(
                ProbeFailure(
                    f"internal error: {type(exc).__name__}: {exc}",
                    kind=FailureKind.INTERNAL,
                    error_type=type(exc).__name__,
                )
            )
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if response is not None:
                await response.aclose()
        if self.failure is not None:
            self.say(f"failed ({self.failure.kind.value}): {self.failure.message}")

    async def cleanup(self) -> None:
        """Thread mode: cancel the run if it may still be running, then delete the thread.

        NOTE: cancel first, then delete. Deleting a thread does not stop its run, which then holds
        a worker until it finishes (wire §8, §11).
        """
        target, client, headers = self.target, self.client, self.headers
        tid = quote(self.thread_id or "", safe="")
        run_id = self.timeline.run_id or self.location_run_id
        finished = self.clean_eof and self.timeline.unfinished() is None
        cleanup_errors: tuple[type[Exception], ...] = (TimeoutError, *transport_errors())
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT_S):
                if run_id is not None and not finished:
                    r = await client.post(
                        f"{target.url}/threads/{tid}/runs/{quote(run_id, safe='')}/cancel",
                        params={"action": "interrupt", "wait": "true"},
                        headers=headers,
                    )
                    self.say(f"cancelled run {run_id}: HTTP {r.status_code}")
                r = await client.delete(f"{target.url}/threads/{tid}", headers=headers)
                self.say(f"deleted thread {self.thread_id}: HTTP {r.status_code}")
        except cleanup_errors as exc:
            self.say(f"cleanup of thread {self.thread_id} failed: {type(exc).__name__}: {exc}")


def _expectations(target: Target) -> Expectations:
    e = target.expect
    return Expectations(e.min_tokens, tuple(e.nodes), e.content_regex)


class _Watchdog:
    """Expires the stream's timer once the nearest deadline has really passed.

    A read only stores its stamp in `last_ns`; re-arming a timer on every read costs more CPU
    than decoding the event (docs/PERFORMANCE.md). The callback runs at the earliest deadline
    that could apply and, if bytes or tokens arrived meanwhile, moves itself to the next one.
    """

    def __init__(
        self, timer: asyncio.Timeout, deadlines: _Deadlines, timeline: Timeline, last_ns: int
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._timer = timer
        self._deadlines = deadlines
        self._timeline = timeline
        self._handle: asyncio.TimerHandle | None = None
        self.last_ns = last_ns
        self.which = "headers"

    def arm(self) -> None:
        deadline_ns, self.which = self._deadlines.nearest(self._timeline, self.last_ns)
        wait_s = (deadline_ns - time.monotonic_ns()) / _NS
        if wait_s <= 0:
            self._timer.reschedule(self._loop.time())  # expires now: TimeoutError in the task
        else:
            self._handle = self._loop.call_later(wait_s, self.arm)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


def _ms(ns: int | None, tl: Timeline) -> str:
    return "?" if ns is None else f"{(ns - tl.t_request_ns) / 1e6:.1f} ms"
