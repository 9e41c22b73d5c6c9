"""One probe over LangGraph's v2 event-streaming protocol (docs/V2.md).

The flow is the one the official SDK's `client.threads.stream()` takes: mint a thread id,
subscribe first (`POST /threads/{tid}/stream/events`), then start the run
(`POST /threads/{tid}/commands`, `run.start`), read until the root lifecycle ends, close the
stream ourselves (it never ends by itself), then delete the thread. Reads are stamped exactly as
on the legacy path (docs/PERFORMANCE.md); the server's `params.timestamp` is kept beside each.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Callable

import httpx
import orjson

from exporter.config import Target
from exporter.core.deadlines import Deadlines
from exporter.core.errors import FailureKind, HTTPStatusFailure, ProbeFailure
from exporter.core.result import ProbeResult
from exporter.core.v2events import decode_v2_event
from exporter.core.v2timing import V2Timeline
from exporter.http.client import (
    classify_transport_error,
    consume_body,
    headers_arrival_ns,
    response_excerpt,
    transport_errors,
)
from exporter.probe import threads
from exporter.probe.request import TraceParent, run_start_command
from exporter.probe.run import _expectations, _identity, _ms, _Probe, _Watchdog, explain_ending

__all__ = ["CHANNELS", "probe_v2", "unsupported"]

#: What a probe subscribes to: tokens, the run's end, and `values`, the only sign of a root
#: superstep (docs/V2.md §3). `tasks` is accepted but never sent by this server.
CHANNELS = ("messages", "lifecycle", "values")


class _RootEnded(Exception):
    """Raised from the read callback once the root lifecycle ended: stop reading."""


class _CommandRefused(ProbeFailure):
    """`run.start` answered `type: error` (HTTP 200, docs/V2.md §2); `.code` is its `error`."""

    def __init__(self, message: str, code: str, http_status: int | None) -> None:
        super().__init__(message, kind=FailureKind.HTTP_STATUS, phase="command")
        self.code = code
        self.http_status = http_status


async def probe_v2(
    target: Target,
    *,
    trace: TraceParent,
    client: httpx.AsyncClient,
    log: Callable[[str], None] | None = None,
) -> ProbeResult:
    """Run one v2 probe of `target` on `client` (never raises for the target's faults)."""
    one = _V2Probe(target, trace, client, log)
    try:
        await one.run_v2()
    finally:
        await one.clean_up_v2()
    return one.result_v2()


def unsupported(result: ProbeResult) -> bool:
    """The server has the v2 routes but cannot serve v2 runs (`run.start` said `unsupported`)."""
    f = result.failure
    return f is not None and f.phase == "command" and "(unsupported)" in f.message


def _command_error(body: bytes) -> _CommandRefused | None:
    """A `type: error` command answer as a failure; None for `type: success`."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        return _CommandRefused(f"run.start: not JSON: {body[:200]!r}", "protocol", None)
    if answer.get("type") == "success":
        return None
    code = str(answer.get("error") or "error")
    message = str(answer.get("message") or "")
    # The server wraps HTTP errors as "422: Invalid assistant: ..." (docs/V2.md §2).
    head, sep, _ = message.partition(":")
    status = int(head) if sep and head.isdigit() else None
    return _CommandRefused(f"run.start refused ({code}): {message}", code, status)


class _V2Probe(_Probe):
    """A `_Probe` whose run is a v2 subscription plus a `run.start` command."""

    def __init__(
        self,
        target: Target,
        trace: TraceParent,
        client: httpx.AsyncClient,
        log: Callable[[str], None] | None,
    ) -> None:
        super().__init__(target, trace, client, log)
        self.v2 = V2Timeline(self.timeline.t_request_ns)
        self.thread_id = str(uuid.uuid4())
        self.refused_code: str | None = None
        self.ended_by_status = False
        self._status_check: asyncio.Task[None] | None = None

    async def run_v2(self) -> None:
        """Subscribe, start the run, read to the root lifecycle's end; nothing raised."""
        target, client, headers = self.target, self.client, self.headers
        tid = self.thread_id
        assert tid is not None
        path = f"/threads/{tid}/stream/events"
        subscribe = client.build_request(
            "POST",
            target.url + path,
            content=orjson.dumps({"channels": list(CHANNELS)}),
            headers=headers,
        )
        self.restart_clock()
        tl = self.v2 = V2Timeline(self.timeline.t_request_ns)
        deadlines = Deadlines.start(target.timeout, tl.t_request_ns)
        response: httpx.Response | None = None
        streaming = False
        watchdog: _Watchdog | None = None
        reader: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(deadlines.headers_s) as timer:
                response = await client.send(subscribe, stream=True)
                tl.headers(headers_arrival_ns(response))
                self.http_status = response.status_code
                after = _ms(tl.t_headers_ns, self.timeline)
                self.say(f"POST {path}: HTTP {response.status_code} after {after}")
                if response.status_code >= 300:
                    detail = await response_excerpt(response)
                    raise HTTPStatusFailure(
                        response.status_code, f"HTTP {response.status_code}: {detail}", detail
                    )
                ctype = response.headers.get("content-type", "")
                if ctype.partition(";")[0].strip().lower() != "text/event-stream":
                    detail = await response_excerpt(response)
                    raise ProbeFailure(
                        f"expected text/event-stream, got {ctype!r}: {detail}",
                        kind=FailureKind.NOT_SSE,
                        phase="headers",
                    )
                streaming = True
                decoder = self.decoder
                timer.reschedule(None)
                watchdog = _Watchdog(timer, deadlines, tl, tl.t_headers_ns or tl.t_request_ns)
                watchdog.arm()
                wd = watchdog

                def on_read(recv_ns: int, chunk: bytes) -> None:
                    """One socket read, stamped at its arrival, then decoded and timed."""
                    wd.last_ns = recv_ns
                    heartbeats = decoder.comments
                    for sse in decoder.feed(chunk, recv_ns):
                        tl.event(decode_v2_event(sse.event, sse.data), sse.recv_ns, sse.chunk_seq)
                    if tl.ended:
                        raise _RootEnded
                    if decoder.comments != heartbeats:
                        if not wd.heartbeats_seen:
                            wd.heartbeats_seen = True
                            wd.rearm()
                        self._check_status(timer)

                reader = asyncio.create_task(consume_body(response, on_read))
                await self._start_run()
                try:
                    await reader
                except _RootEnded:
                    pass
                else:  # the server closed a stream that never ends by itself
                    raise ProbeFailure(
                        "stream ended before the run's lifecycle did",
                        kind=FailureKind.INCOMPLETE,
                        phase="stream",
                    )
                self.t_end_ns = time.monotonic_ns()
                self.clean_eof = True
                self.say(
                    f"lifecycle {tl.root_status} after {_ms(self.t_end_ns, self.timeline)},"
                    f" {tl.tokens} tokens; closing the stream"
                )
        except TimeoutError:
            self.t_end_ns = time.monotonic_ns()
            if self.ended_by_status:
                self.fail(
                    ProbeFailure(
                        "the run ended without a lifecycle event",
                        kind=FailureKind.INCOMPLETE,
                        phase="stream",
                    )
                )
            elif not streaming or watchdog is None:
                self.fail(
                    ProbeFailure(
                        f"deadline: no response headers within {deadlines.headers_s:g}s",
                        kind=FailureKind.DEADLINE,
                        phase="headers",
                    )
                )
            else:
                self.fail(deadlines.failure(watchdog.which))
        except _CommandRefused as exc:
            self.t_end_ns = time.monotonic_ns()
            self.refused_code = exc.code
            self.fail(exc)
        except ProbeFailure as exc:
            self.t_end_ns = self.t_end_ns or time.monotonic_ns()
            self.fail(exc)
        except transport_errors() as exc:
            self.t_end_ns = time.monotonic_ns()
            self.fail(classify_transport_error(exc, streaming=streaming))
        except Exception as exc:  # a bug of ours: reported as `internal`, never raised
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
            for task in (reader, self._status_check):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            if response is not None:
                await response.aclose()
        if self.failure is not None:
            self.say(f"failed ({self.failure.kind.value}): {self.failure.message}")

    async def _start_run(self) -> None:
        """`run.start`; raises `_CommandRefused`, or `ProbeFailure` for HTTP-level errors."""
        path = f"/threads/{self.thread_id}/commands"
        r = await self.client.post(
            self.target.url + path,
            content=orjson.dumps(run_start_command(self.target)),
            headers=self.headers,
        )
        if r.status_code >= 300:
            detail = " ".join(r.text.split())[:500]
            raise HTTPStatusFailure(
                r.status_code, f"POST {path}: HTTP {r.status_code}: {detail}", detail,
                phase="command",
            )  # fmt: skip
        refused = _command_error(r.content)
        if refused is not None:
            raise refused
        result = orjson.loads(r.content).get("result")
        run_id = result.get("run_id") if isinstance(result, dict) else None
        self.v2.run_id = run_id if isinstance(run_id, str) else None
        self.say(f"run.start: run {self.v2.run_id}")

    def _check_status(self, timer: asyncio.Timeout) -> None:
        """On a heartbeat: ask whether the run has ended without telling the stream.

        NOTE: a run stopped by the job timeout gets no terminal lifecycle event on v2: the
        session only emits one for success, error and interrupt (docs/V2.md §6), so the stream
        would carry heartbeats until our total deadline.
        """
        if self._status_check is not None and not self._status_check.done():
            return
        run_id, tid = self.v2.run_id, self.thread_id
        if run_id is None or tid is None:
            return

        async def check() -> None:
            ending = await threads.run_ending(
                self.client, self.target, self.headers, tid, run_id, settle_s=0.0
            )
            if ending not in (None, "pending", "running") and not self.v2.ended:
                self.run_ending = ending
                self.ended_by_status = True
                timer.reschedule(asyncio.get_running_loop().time())  # stop reading now

        self._status_check = asyncio.create_task(check())

    async def clean_up_v2(self) -> None:
        """Ask why the run ended if the stream did not say, cancel it if needed, delete the
        thread (a v2 run always has one: the probe minted it)."""
        tl = self.v2
        run_id = tl.run_id
        if run_id is not None and self.thread_id is not None and not tl.ended:
            if self.run_ending is None:
                self.run_ending = await threads.run_ending(
                    self.client, self.target, self.headers, self.thread_id, run_id
                )
            self.say(f"run {run_id} ended: {self.run_ending or 'unknown'}")
        await threads.clean_up(
            self.client,
            self.target,
            self.headers,
            thread_id=self.thread_id,
            run_id=run_id,
            run_finished=tl.ended or self.run_ending not in (None, "pending", "running"),
            delete=True,
            say=self.say,
        )

    def result_v2(self) -> ProbeResult:
        tl = self.v2
        end = self.t_end_ns or time.monotonic_ns()
        failure = self.failure
        if failure is None:
            failure = tl.verdict(
                _expectations(self.target), interrupt_expected=self.target.expect.interrupt
            )
            if failure is not None:
                failure = dataclasses.replace(failure, message=self.mask(failure.message))
        ending = self.run_ending
        if tl.root_status is not None:
            ending = {"completed": "success", "failed": "error"}.get(tl.root_status, tl.root_status)
        if tl.root_status is None:
            failure = explain_ending(failure, ending, self.target.expect.interrupt)
        delivery = tl.delivery()
        return ProbeResult(
            **_identity(self.target, self.trace),  # type: ignore[arg-type]
            t_request_ns=tl.t_request_ns,
            wall_request_ns=self.wall_start_ns + (tl.t_request_ns - self.t_start_ns),
            t_end_ns=end,
            failure=failure,
            run_id=tl.run_id,
            thread_id=self.thread_id,
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
            log=tuple(self.log),
            protocol="v2",
            run_status=ending,
            interrupted=ending == "interrupted",
            delivery=delivery,
            notes=tuple(tl.notes),
        )
