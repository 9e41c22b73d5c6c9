"""One probe over LangGraph's v2 event-streaming protocol (docs/V2.md).

The flow is the one the official SDK's `client.threads.stream()` takes: mint a thread id,
subscribe first (`POST /threads/{tid}/stream/events`), then start the run
(`POST /threads/{tid}/commands`, `run.start`), read until the root lifecycle ends, close the
stream ourselves (it never ends by itself), then delete the thread. Reads are stamped exactly as
on the legacy path (docs/PERFORMANCE.md); the server's `params.timestamp` is kept beside each.
"""

from __future__ import annotations

import asyncio
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
from exporter.core.words import counted
from exporter.http.client import consume_body, fetch
from exporter.probe import threads
from exporter.probe.request import TraceParent, run_start_command
from exporter.probe.run import _expectations, _ms, _Probe, _Watchdog, explain_ending

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
    one = _V2Probe(target, trace, client, log, thread_id=str(uuid.uuid4()))
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
    """A `_Probe` whose run is a v2 subscription plus a `run.start` command, on a thread the
    probe minted (`thread_id`)."""

    refused_code: str | None = None  # `run.start`'s `error` code when it refused
    ended_by_status = False  # the stored run status ended the read, not a lifecycle event
    _status_check: asyncio.Task[None] | None = None

    def restart_clock(self) -> None:
        super().restart_clock()
        self.v2 = V2Timeline(self.timeline.t_request_ns)

    async def run_v2(self) -> None:
        """Subscribe, start the run, read to the root lifecycle's end; nothing raised."""
        target, client = self.target, self.client
        path = f"/threads/{self.thread_id}/stream/events"
        subscribe = self.stream_request(path, {"channels": list(CHANNELS)})
        tl = self.v2
        deadlines = Deadlines.start(target.timeout, tl.t_request_ns)
        response: httpx.Response | None = None
        watchdog: _Watchdog | None = None  # set once the stream is being read
        reader: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(deadlines.headers_s) as timer:
                response = await client.send(subscribe, stream=True)
                await self.expect_event_stream(response, tl, path)
                decoder = self.decoder
                watchdog = wd = self.start_watchdog(timer, deadlines, tl)

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
                            wd.heartbeat()
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
                    f"lifecycle {tl.root_status} after {_ms(self.t_end_ns, tl)},"
                    f" {counted(tl.tokens, 'token')}; closing the stream"
                )
        except _CommandRefused as exc:
            self.refused_code = exc.code
            self.stopped_by(exc, deadlines, watchdog)
        except Exception as exc:
            self.stopped_by(exc, deadlines, watchdog)
        finally:
            await self.release(watchdog, response, (reader, self._status_check))
        self.say_failure()

    def timed_out(self, deadlines: Deadlines, watchdog: _Watchdog | None) -> ProbeFailure:
        if self.ended_by_status:  # `_check_status` stopped the read: no lifecycle event came
            return ProbeFailure(
                "the run ended without a lifecycle event",
                kind=FailureKind.INCOMPLETE,
                phase="stream",
            )
        return super().timed_out(deadlines, watchdog)

    async def _start_run(self) -> None:
        """`run.start`; raises `_CommandRefused`, or `ProbeFailure` for HTTP-level errors."""
        path = f"/threads/{self.thread_id}/commands"
        r = await fetch(
            self.client,
            "POST",
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
            await self.ask_run_ending(self.thread_id, run_id)
        await self.clean_up_run(
            self.thread_id,
            run_id,
            finished=tl.ended or self.run_ending not in (None, "pending", "running"),
            delete=True,
        )

    def result_v2(self) -> ProbeResult:
        tl = self.v2
        expect = _expectations(self.target)
        interrupt = self.target.expect.interrupt
        failure = self.failure or self.masked(tl.verdict(expect, interrupt_expected=interrupt))
        ending = self.run_ending
        if tl.root_status is not None:
            ending = {"completed": "success", "failed": "error"}.get(tl.root_status, tl.root_status)
        if tl.root_status is None:
            failure = explain_ending(failure, ending, self.target.expect.interrupt)
        return ProbeResult(
            **self.measured(tl, failure),
            run_id=tl.run_id,
            protocol="v2",
            run_status=ending,
            interrupted=ending == "interrupted",
            delivery=tl.delivery(),
            notes=tuple(tl.notes),
        )
