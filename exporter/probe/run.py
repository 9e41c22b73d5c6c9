"""One synthetic streaming probe: request a run, read its SSE stream, time it, clean up.

`probe(target)` never raises for a failure of the target: it returns a `ProbeResult` whose
`failure` says what went wrong, with every measurement taken before the failure kept
(docs/ARCHITECTURE.md, "How a result flows"). Only `asyncio.CancelledError` passes through,
after cleanup.

Timing discipline (docs/adr/0003-stamp-at-data-received.md): the monotonic clock is read when
each socket read arrives, before the bytes are decoded; decoding, logging and exporting never
sit between a read and its stamp.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from exporter.config import Target
from exporter.core.deadlines import Deadlines
from exporter.core.errors import FailureKind, HTTPStatusFailure, ProbeFailure
from exporter.core.events import Message, RunError, decode_event
from exporter.core.result import Failure, ProbeResult
from exporter.core.sse import SSEDecoder
from exporter.core.timing import Expectations, StreamTimeline, Timeline
from exporter.core.words import counted
from exporter.http.client import (
    Transport,
    classify_transport_error,
    client_for,
    close_response,
    consume_body,
    content_encoding,
    headers_arrival_ns,
    response_excerpt,
    tls_cert_not_after_s,
    transport_errors,
)
from exporter.probe import threads
from exporter.probe.request import (
    STREAM_MODE,
    STREAM_MODE_FALLBACK,
    TraceParent,
    request_body,
    request_headers,
    sent_secrets,
)

__all__ = ["explain_ending", "failed_result", "probe"]

_NS = 1_000_000_000


def _ids_from_location(location: str | None) -> tuple[str | None, str | None]:
    """`/threads/<tid>/runs/<rid>` or `/runs/<rid>` -> (thread id, run id) (docs/WIRE.md §9)."""
    if not location:
        return None, None
    parts = location.split("?")[0].strip("/").split("/")
    thread_id = parts[1] if len(parts) >= 2 and parts[0] == "threads" else None
    run_id = parts[parts.index("runs") + 1] if "runs" in parts[:-1] else None
    return thread_id, run_id


async def probe(
    target: Target,
    *,
    trace: TraceParent | None = None,
    client: httpx.AsyncClient | None = None,
    transport: Transport = "stamping",
    log: Callable[[str], None] | None = None,
) -> ProbeResult:
    """Run one probe of `target` and return what it measured (never raises for the target's
    faults: they are the result's `failure`)."""
    trace = trace or TraceParent.new()
    missing = target.missing_secrets()
    if missing:
        # NOTE: sending without the configured secret would earn an anonymous 401 at best and
        # send the request where the config did not mean it to go unauthenticated.
        result = failed_result(
            target,
            trace,
            time.monotonic_ns(),
            time.time_ns(),
            FailureKind.CONFIG,
            "not sent: " + "; ".join(missing),
        )
        if log is not None:
            log(f"failed (config): {result.failure.message if result.failure else ''}")
        return result
    owns_client = client is None
    if client is None:
        try:
            client = client_for(target, transport=transport)
        except ProbeFailure as exc:  # e.g. the ca_file vanished since the config loaded
            t0_ns, wall0_ns = time.monotonic_ns(), time.time_ns()
            return failed_result(
                target, trace, t0_ns, wall0_ns, exc.kind, exc.message, phase=exc.phase
            )
    one = _Probe(target, trace, client, log)
    try:
        if target.mode == "thread":
            await one.create_thread()
        if one.failure is None:
            await one.run()
    finally:
        try:
            await one.clean_up()
        finally:
            if owns_client:
                await client.aclose()
    return one.result()


def _identity(target: Target, trace: TraceParent) -> dict[str, Any]:
    """The fields every result of `target` carries, whatever happened."""
    return {
        "target": target.name,
        "url": target.url,
        "assistant_id": target.assistant_id,
        "mode": target.mode,
        "trace_id": trace.trace_id,
        "span_id": trace.span_id,
        "labels": tuple(sorted(target.labels.items())),
    }


def failed_result(
    target: Target,
    trace: TraceParent,
    t0_ns: int,
    wall0_ns: int,
    kind: FailureKind,
    message: str,
    *,
    phase: str | None = None,
) -> ProbeResult:
    """The result of a probe that never got to send its request (e.g. skipped or cancelled)."""
    return ProbeResult(
        **_identity(target, trace),
        t_request_ns=t0_ns,
        wall_request_ns=wall0_ns,
        t_end_ns=time.monotonic_ns(),
        failure=Failure(kind, message, phase=phase),
        request_written=False,
    )


class _Probe:
    """One probe in progress: what it sends, and what it has measured so far, which becomes
    the result however the probe ends."""

    def __init__(
        self,
        target: Target,
        trace: TraceParent,
        client: httpx.AsyncClient,
        log: Callable[[str], None] | None,
        *,
        thread_id: str | None = None,
    ) -> None:
        self.target = target
        self.trace = trace
        self.client = client
        self.headers = request_headers(target, trace)
        self._secrets = sent_secrets(target, self.headers)
        self._log = log
        self.restart_clock()
        self.stream_mode = _stream_mode_for(target)
        self.content_encoding: str | None = None
        self.failure: Failure | None = None
        self.thread_id = thread_id
        self.location_run_id: str | None = None  # known from the headers, before `metadata`
        self.http_status: int | None = None
        self.tls_cert_not_after_s: float | None = None
        self.clean_eof = False
        self.t_end_ns: int | None = None
        self.log: list[str] = []
        self.run_ending: str | None = None  # why the run ended, from the server (threads.py)

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
        """The run request's clock starts after any thread creation (and again on a retry)."""
        self.t_start_ns = time.monotonic_ns()
        self.wall_start_ns = time.time_ns()
        self.timeline = Timeline(self.t_start_ns)
        self.decoder = SSEDecoder()
        self.phases = _Phases()

    def stream_request(self, path: str, body: object) -> httpx.Request:
        """The `POST` to `path` that opens the stream; the clock restarts once it is built."""
        request = self.client.build_request(
            "POST", self.target.url + path, content=orjson.dumps(body), headers=self.headers
        )
        self.restart_clock()
        return request

    def connection_phases(self, response: httpx.Response) -> None:
        """Take the transport's connection stamps; t_request becomes the moment the request
        was written to the open connection (README "How it measures")."""
        arrival = response.extensions.get("arrival")
        ph = self.phases
        ph.dns = getattr(arrival, "dns_done_ns", None)
        ph.connect = getattr(arrival, "connect_done_ns", None)
        ph.proxy = getattr(arrival, "proxy_connect_done_ns", None)
        ph.tls = getattr(arrival, "tls_done_ns", None)
        written = getattr(arrival, "request_written_ns", None)
        if isinstance(written, int) and written >= self.t_start_ns:
            self.timeline.request_written(written)
            ph.written = True

    def masked(self, verdict: Failure | None) -> Failure | None:
        """A timeline's verdict with secrets masked: e.g. an `event: error` message may quote
        the request."""
        if verdict is None:
            return None
        return dataclasses.replace(verdict, message=self.mask(verdict.message))

    def measured(self, tl: StreamTimeline, failure: Failure | None) -> dict[str, Any]:
        """The `ProbeResult` fields both protocols fill the same way, from `tl` and the probe."""
        return {
            **_identity(self.target, self.trace),
            "t_request_ns": tl.t_request_ns,
            "wall_request_ns": self.wall_start_ns + (tl.t_request_ns - self.t_start_ns),
            "t_end_ns": self.t_end_ns or time.monotonic_ns(),
            "failure": failure,
            "request_written": self.phases.written,
            "thread_id": self.thread_id,
            "http_status": self.http_status,
            "t_headers_ns": tl.t_headers_ns,
            "t_first_event_ns": tl.t_first_event_ns,
            "t_first_token_ns": tl.t_first_token_ns,
            "nodes": tl.nodes(),
            "events": tl.event_log(),
            "heartbeats": self.decoder.comments,
            "bytes_read": self.decoder.bytes_read,
            "max_tokens_per_read": tl.max_tokens_per_read,
            "text": tl.text,
            "log": tuple(self.log),
        }

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
        failure = self.failure or self.masked(tl.verdict(_expectations(self.target)))
        failure = explain_ending(failure, self.run_ending, self.target.expect.interrupt)
        ph = self.phases
        return ProbeResult(
            **self.measured(tl, failure),
            run_id=tl.run_id or self.location_run_id,
            run_status=self.run_ending,
            interrupted=self.run_ending == "interrupted",
            t_start_ns=self.t_start_ns,
            t_dns_ns=ph.dns,
            t_connect_ns=ph.connect,
            t_proxy_ns=ph.proxy,
            t_tls_ns=ph.tls,
            t_first_answer_ns=tl.t_first_answer_ns,
            stream_mode=self.stream_mode,
            stream_mode_fallback=self.stream_mode != STREAM_MODE,
            tokens_dropped=tl.tokens_dropped,
            content_encoding=self.content_encoding,
            tls_cert_not_after_s=self.tls_cert_not_after_s,
        )

    async def create_thread(self) -> None:
        """Thread mode: `POST /threads`; a failure is recorded, not raised."""
        try:
            self.thread_id = await threads.create_thread(self.client, self.target, self.headers)
        except ProbeFailure as exc:
            self.http_status = getattr(exc, "http_status", None)
            self.fail(exc)
            return
        self.say(f"created thread {self.thread_id}")

    async def run(self) -> None:
        """The run request and its stream; every outcome is recorded, nothing raised.

        A server that rejects `tasks` in `stream_mode` (older langgraph-api: 422; docs/WIRE.md
        §12) is asked once more with `messages-tuple` alone, and remembered for this target.
        """
        try:
            await self._attempt()
        except _StreamModeRejected as rejected:
            _NO_TASKS.add(_server_key(self.target))
            self.stream_mode = STREAM_MODE_FALLBACK
            self.say(f"server rejected stream_mode {list(STREAM_MODE)}: {rejected}; retrying")
            await self._attempt()

    async def _attempt(self) -> None:
        target, client = self.target, self.client
        path = (
            "/runs/stream" if self.thread_id is None else f"/threads/{self.thread_id}/runs/stream"
        )
        request = self.stream_request(path, request_body(target, self.stream_mode))
        tl = self.timeline
        deadlines = Deadlines.start(target.timeout, tl.t_request_ns)
        response: httpx.Response | None = None
        watchdog: _Watchdog | None = None  # set once the stream is being read
        try:
            async with asyncio.timeout(deadlines.headers_s) as timer:
                response = await client.send(request, stream=True)
                self.connection_phases(response)
                self.tls_cert_not_after_s = tls_cert_not_after_s(response)
                await self.expect_event_stream(response, tl, path, self._refuse_stream_mode)
                encoding = content_encoding(response)
                if encoding is not None:
                    self.content_encoding = encoding  # the result's buffered verdict says so
                    # NOTE: we ask for identity; a compressed stream was compressed on the way,
                    # and compressing buffers it, so its arrival times would not be the
                    # server's (docs/RELIABILITY.md): refuse it rather than measure a buffer.
                    raise ProbeFailure(
                        f"the event stream arrived compressed (content-encoding {encoding!r})"
                        " although the probe asked for identity: a proxy or gateway compresses"
                        " and buffers it",
                        kind=FailureKind.NOT_SSE,
                        phase="headers",
                    )
                _, self.location_run_id = _ids_from_location(
                    response.headers.get("content-location")
                )
                decoder = self.decoder
                # The stream's deadlines count from t_request, which the transport may have
                # moved to the request write (after connect and TLS).
                deadlines = Deadlines.start(target.timeout, tl.t_request_ns)
                watchdog = wd = self.start_watchdog(timer, deadlines, tl)

                def on_read(recv_ns: int, chunk: bytes) -> None:
                    """One socket read, stamped at its arrival, then decoded and timed."""
                    wd.last_ns = recv_ns
                    for sse in decoder.feed(chunk, recv_ns):
                        ev = decode_event(sse.event, sse.data)
                        tl.event(sse.event, ev, sse.recv_ns, sse.chunk_seq)
                        if isinstance(ev, RunError):
                            self.say(f"event: error {ev.error_type}: {ev.message}")
                        elif isinstance(ev, Message) and ev.is_token and tl.tokens == 1:
                            self.say(f"first token from {ev.node} after {_ms(recv_ns, tl)}")
                    if not wd.heartbeats_seen and decoder.comments:
                        wd.heartbeat()

                await consume_body(response, on_read)
                self.t_end_ns = time.monotonic_ns()
                if decoder.pending_bytes():
                    raise ProbeFailure(
                        "stream ended inside an event", kind=FailureKind.INCOMPLETE, phase="stream"
                    )
                self.clean_eof = True
                tokens = counted(tl.tokens, "token")
                self.say(f"stream ended after {_ms(self.t_end_ns, tl)}, {tokens}")
        except _StreamModeRejected:
            raise
        except Exception as exc:
            self.stopped_by(exc, deadlines, watchdog)
        finally:
            await self.release(watchdog, response)
        self.say_failure()

    def _refuse_stream_mode(self, status: int, detail: str) -> None:
        """An older server's answer to `tasks` in `stream_mode` (docs/WIRE.md §12)."""
        if _rejects_tasks(status, detail, self.stream_mode):
            raise _StreamModeRejected(f"HTTP {status}: {detail}")

    async def expect_event_stream(
        self,
        response: httpx.Response,
        tl: StreamTimeline,
        path: str,
        refuse: Callable[[int, str], None] | None = None,
    ) -> None:
        """Record the response's headers (arrival on `tl`, status) and check that they open an
        event stream.

        Raises `HTTPStatusFailure` for a status of 300 or more (after `refuse(status, detail)`,
        which may raise an exception of its own), `ProbeFailure` (`not_sse`) for another
        content type.
        """
        tl.headers(headers_arrival_ns(response))
        self.http_status = status = response.status_code
        self.say(f"POST {path}: HTTP {status} after {_ms(tl.t_headers_ns, tl)}")
        if status >= 300:
            detail = await response_excerpt(response)
            if refuse is not None:
                refuse(status, detail)
            raise HTTPStatusFailure(status, f"HTTP {status}: {detail}", detail)
        ctype = response.headers.get("content-type", "")
        if ctype.partition(";")[0].strip().lower() != "text/event-stream":
            detail = await response_excerpt(response)
            raise ProbeFailure(
                f"expected text/event-stream, got {ctype!r}: {detail}",
                kind=FailureKind.NOT_SSE,
                phase="headers",
            )

    def start_watchdog(
        self, timer: asyncio.Timeout, deadlines: Deadlines, tl: StreamTimeline
    ) -> _Watchdog:
        """Hand the stream's timer to a watchdog: from the headers on, it decides when the
        timer expires (docs/PERFORMANCE.md)."""
        timer.reschedule(None)
        watchdog = _Watchdog(timer, deadlines, tl, tl.t_headers_ns or tl.t_request_ns)
        watchdog.arm()
        return watchdog

    def stopped_by(self, exc: Exception, deadlines: Deadlines, watchdog: _Watchdog | None) -> None:
        """Record why the request or its stream stopped early: a deadline (`TimeoutError`;
        `watchdog` None: before the stream), a fault of the target or the network, or a bug of
        ours (reported as `internal`, never raised to the caller)."""
        now_ns = time.monotonic_ns()
        if isinstance(exc, ProbeFailure):
            self.t_end_ns = self.t_end_ns or now_ns  # a stream that ended early set it
            self.fail(exc)
            return
        self.t_end_ns = now_ns
        if isinstance(exc, TimeoutError):
            self.fail(self.timed_out(deadlines, watchdog))
        elif isinstance(exc, transport_errors()):
            self.fail(classify_transport_error(exc, streaming=watchdog is not None))
        else:
            self.fail(
                ProbeFailure(
                    f"internal error: {type(exc).__name__}: {exc}",
                    kind=FailureKind.INTERNAL,
                    error_type=type(exc).__name__,
                )
            )

    def timed_out(self, deadlines: Deadlines, watchdog: _Watchdog | None) -> ProbeFailure:
        """The failure of a stream timer that expired: the headers' deadline, or the one the
        watchdog last armed."""
        if watchdog is None:
            return ProbeFailure(
                f"deadline: no response headers within {deadlines.headers_s:g}s",
                kind=FailureKind.DEADLINE,
                phase="headers",
            )
        return deadlines.failure(watchdog.which)

    @staticmethod
    async def release(
        watchdog: _Watchdog | None,
        response: httpx.Response | None,
        tasks: tuple[asyncio.Task[None] | None, ...] = (),
    ) -> None:
        """Free what one attempt held, in this order: the watchdog's timer, the attempt's own
        `tasks` (cancelled and awaited, whatever they raise), the response's connection."""
        if watchdog is not None:
            watchdog.cancel()
        for task in tasks:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if response is not None:
            await close_response(response)

    def say_failure(self) -> None:
        if self.failure is not None:
            self.say(f"failed ({self.failure.kind.value}): {self.failure.message}")

    async def clean_up(self) -> None:
        """Stop the run if it may still be running; in thread mode, delete the thread.

        A stateless run is cancelled through its temporary thread (its id is in the tokens'
        metadata) when the probe gave up early: the JS server ignores `on_disconnect` for
        stateless runs (docs/WIRE.md §8).
        """
        finished = self.clean_eof and self.timeline.unfinished() is None
        run_id = self.timeline.run_id or self.location_run_id
        if (
            self.target.mode == "thread"
            and self.thread_id is not None
            and run_id is not None
            # The server ended the stream early (not our deadline: that run is still running).
            and ((self.clean_eof and not finished) or self.target.expect.interrupt)
        ):
            # Before any cancel of ours: the legacy stream just ends on a job timeout or an
            # interrupt, only the stored status says why (docs/V2.md §6).
            await self.ask_run_ending(self.thread_id, run_id)
        await self.clean_up_run(
            self.thread_id or self.timeline.server_thread_id,
            self.timeline.run_id or self.location_run_id,
            finished=finished,
            delete=self.target.mode == "thread",
        )

    async def clean_up_run(
        self, thread_id: str | None, run_id: str | None, *, finished: bool, delete: bool
    ) -> None:
        """Cancel the run unless it `finished`; delete the thread if `delete` (threads.py)."""
        await threads.clean_up(
            self.client,
            self.target,
            self.headers,
            thread_id=thread_id,
            run_id=run_id,
            run_finished=finished,
            delete=delete,
            say=self.say,
        )

    async def ask_run_ending(self, thread_id: str, run_id: str) -> None:
        """Ask the server why the run ended (its stored status), unless that is known."""
        if self.run_ending is None:
            self.run_ending = await threads.run_ending(
                self.client, self.target, self.headers, thread_id, run_id
            )
        self.say(f"run {run_id} ended: {self.run_ending or 'unknown'}")


#: Why a run ended (threads.RUN_ENDINGS) -> what the failure message says.
_ENDING_TEXT = {
    "timeout": "the server stopped the run at its job timeout (run status `timeout`)",
    "error": "the run failed on the server (run status `error`)",
    "cancelled": "the run was cancelled (run status `interrupted`)",
    "interrupted": "the run stopped at an interrupt (thread status `interrupted`)",
}


def explain_ending(
    failure: Failure | None, ending: str | None, interrupt_expected: bool
) -> Failure | None:
    """The verdict once the server said why the run ended (`ending`, None: not asked).

    An expected interrupt is a success; an ending other than success turns a stream that
    just stopped (`incomplete`) into a failure that names it; an expected interrupt that did
    not happen is an `expectation` failure.
    """
    if ending == "interrupted" and interrupt_expected:
        if failure is None or failure.kind == FailureKind.INCOMPLETE:
            return None
        return failure
    if failure is not None and failure.kind == FailureKind.INCOMPLETE and ending in _ENDING_TEXT:
        return dataclasses.replace(failure, message=f"{_ENDING_TEXT[ending]}: {failure.message}")
    if failure is None and interrupt_expected:
        return Failure(
            FailureKind.EXPECTATION,
            f"expected the run to stop at an interrupt, it ended: {ending or 'unknown'}",
        )
    return failure


class _StreamModeRejected(Exception):
    """The server refused `tasks` in `stream_mode`; the probe asks again without it."""


#: Servers (by base URL) known to reject `tasks`: asked with `messages-tuple` alone from then on.
_NO_TASKS: set[str] = set()


def _server_key(target: Target) -> str:
    return target.url


def _stream_mode_for(target: Target) -> tuple[str, ...]:
    return STREAM_MODE_FALLBACK if _server_key(target) in _NO_TASKS else STREAM_MODE


def _rejects_tasks(status: int, detail: str, stream_mode: tuple[str, ...]) -> bool:
    """A 400/422 whose message is about `stream_mode`, while we asked for `tasks`."""
    return status in (400, 422) and "tasks" in stream_mode and "stream_mode" in detail


@dataclass(slots=True)
class _Phases:
    """Connection stamps from the transport (monotonic ns), when it measured them."""

    dns: int | None = None
    connect: int | None = None
    proxy: int | None = None
    tls: int | None = None
    written: bool = False  # the timeline's t_request is the transport's request-written stamp


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
        self,
        timer: asyncio.Timeout,
        deadlines: Deadlines,
        timeline: StreamTimeline,
        last_ns: int,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._timer = timer
        self._deadlines = deadlines
        self._timeline = timeline
        self._handle: asyncio.TimerHandle | None = None
        self.last_ns = last_ns
        self.which = "headers"
        self.heartbeats_seen = False

    def arm(self) -> None:
        tl = self._timeline
        deadline_ns, self.which = self._deadlines.nearest(
            last_byte_ns=self.last_ns,
            first_event_seen=tl.t_first_event_ns is not None,
            first_token_seen=tl.t_first_token_ns is not None,
            heartbeats_seen=self.heartbeats_seen,
        )
        wait_s = (deadline_ns - time.monotonic_ns()) / _NS
        if wait_s <= 0:
            self._timer.reschedule(self._loop.time())  # expires now: TimeoutError in the task
        else:
            self._handle = self._loop.call_later(wait_s, self.arm)

    def heartbeat(self) -> None:
        """The first heartbeat comment: the idle deadline applies from now on."""
        self.heartbeats_seen = True
        self.rearm()

    def rearm(self) -> None:
        """Re-evaluate now: a deadline that did not apply before may be the nearest."""
        self.cancel()
        self.arm()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _ms(ns: int | None, tl: StreamTimeline) -> str:
    return "?" if ns is None else f"{(ns - tl.t_request_ns) / 1e6:.1f} ms"
