"""`GET /-/events`: a Server-Sent Events stream with one `probe` event per finished probe.

    id: 42
    event: probe
    data: {"target": "demo-agent", "outcome": "success", ...}   (a `/-/probes` entry, masked)

`EventBus` is a sink: the scheduler hands it each result like any other sink, on the event loop.
`record()` never waits: it renders the entry once, appends it to a bounded replay buffer and
offers it to every subscriber's own bounded queue; a queue that is full (a client that stopped
reading) loses the event, and the loss is counted per subscriber and in total. So a slow client
costs the probes nothing and the other clients nothing (docs/RELIABILITY.md: nothing a client
does may delay a stamp).

Event ids are `<boot>-<n>`: `boot` names this daemon process, `n` counts its events from 1. A
client that reconnects with `Last-Event-ID: <boot>-N` first gets every buffered event after N;
when N is older than the buffer, a `: missed` comment says how many are gone. An id of another
boot (the daemon restarted since) gets every buffered event: all of them are new to that
client. A comment line every `heartbeat_s` keeps proxies from closing an idle stream and lets
the client see the server is alive. At most `max_subscribers` streams at once; the next one
gets 503 with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from exporter.core.result import ProbeResult
from exporter.core.words import counted
from exporter.sinks import Trigger

__all__ = ["EventBus", "Subscriber", "serve_events"]

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(eq=False)
class Subscriber:
    """One open `/-/events` stream: its queue of (id, data) and what it lost."""

    queue: asyncio.Queue[tuple[int, bytes]]
    dropped: int = 0
    dropped_unreported: int = 0
    missed: int = 0  # asked to resume from before the buffer: events gone for good


class EventBus:
    """The fan-out behind `/-/events`; also a sink (`name`, `record`, `close`)."""

    name = "events"

    def __init__(
        self,
        render: Callable[[ProbeResult, Trigger], bytes],
        *,
        buffer_size: int = 256,
        max_subscribers: int = 16,
        queue_size: int = 64,
        heartbeat_s: float = 15.0,
    ) -> None:
        """`render` turns a result into the event's data: one line of JSON, secrets masked."""
        self._render = render
        self._buffer: deque[tuple[int, bytes]] = deque(maxlen=buffer_size)
        self._subscribers: set[Subscriber] = set()
        self._next_id = 1
        # NOTE: epoch ms plus the pid: unique per daemon process, and readable in a log.
        self.boot = f"{time.time_ns() // 1_000_000:x}.{os.getpid():x}"
        self.max_subscribers = max_subscribers
        self.queue_size = queue_size
        self.heartbeat_s = heartbeat_s
        self.published = 0
        self.dropped_total = 0
        self.rejected_total = 0
        #: Set at shutdown: every open stream ends, so the HTTP server can stop (an open
        #: `/-/events` connection would otherwise hold the process past its grace period).
        self.closing = asyncio.Event()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def last_id(self) -> int:
        return self._next_id - 1

    def record(self, result: ProbeResult, trigger: Trigger = "scheduled") -> None:
        """Publish one result (scheduled or on demand); O(subscribers), never awaits."""
        data = self._render(result, trigger).replace(b"\n", b" ").strip()
        event = (self._next_id, data)
        self._next_id += 1
        self.published += 1
        self._buffer.append(event)
        for sub in self._subscribers:
            self._offer(sub, event)

    def _offer(self, sub: Subscriber, event: tuple[int, bytes]) -> None:
        try:
            sub.queue.put_nowait(event)
        except asyncio.QueueFull:
            sub.dropped += 1
            sub.dropped_unreported += 1
            self.dropped_total += 1

    def event_id(self, n: int) -> str:
        return f"{self.boot}-{n}"

    def subscribe(self, last_event_id: str | None) -> Subscriber | None:
        """A new subscriber, primed with the buffered events after `last_event_id` (all of them
        for an id of an earlier daemon process); None when `max_subscribers` are open."""
        if len(self._subscribers) >= self.max_subscribers:
            self.rejected_total += 1
            return None
        sub = Subscriber(asyncio.Queue(maxsize=self.queue_size))
        if last_event_id is not None:
            seen = self._seq_of(last_event_id)
            oldest = self._buffer[0][0] if self._buffer else self._next_id
            sub.missed = max(0, oldest - seen - 1) if seen else 0
            for event in self._buffer:
                if event[0] > seen:
                    self._offer(sub, event)
        self._subscribers.add(sub)
        return sub

    def _seq_of(self, event_id: str) -> int:
        """The sequence number of one of our ids; 0 (replay all) for an id of another boot."""
        boot, _, n = event_id.strip().rpartition("-")
        if boot == self.boot and n.isdigit():
            return int(n)
        return 0

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def close(self) -> None:
        """Nothing to flush: open streams were ended by `shut_down`."""

    def shut_down(self) -> None:
        """End every open stream now and refuse new ones (the daemon is stopping)."""
        self.closing.set()


async def serve_events(
    bus: EventBus, last_event_id: str | None, receive: Receive, send: Send
) -> None:
    """The ASGI response for `GET /-/events` (503 when the subscriber limit is reached)."""
    sub = None if bus.closing.is_set() else bus.subscribe(last_event_id)
    if sub is None:
        body = b"too many event subscribers; retry later\n"
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"5"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    closer = asyncio.ensure_future(bus.closing.wait())
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    # NOTE: nginx buffers responses unless told otherwise; a buffered event
                    # stream is no live stream.
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        hello = b": connected; retry in 1 s when cut\nretry: 1000\n"
        if sub.missed:
            missed = counted(sub.missed, "event")
            hello += f": missed {missed} older than the replay buffer\n".encode()
        await send({"type": "http.response.body", "body": hello + b"\n", "more_body": True})
        while not (watcher.done() or closer.done()):
            getter = asyncio.ensure_future(sub.queue.get())
            done, _ = await asyncio.wait(
                {getter, watcher, closer},
                timeout=bus.heartbeat_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if getter not in done:
                getter.cancel()
                if watcher.done() or closer.done():
                    break
                await send({"type": "http.response.body", "body": b": heartbeat\n\n",
                            "more_body": True})  # fmt: skip
                continue
            chunk = b"".join(_frames(bus, sub, getter.result()))
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        bus.unsubscribe(sub)
        watcher.cancel()
        closer.cancel()
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _frames(bus: EventBus, sub: Subscriber, first: tuple[int, bytes]) -> Iterator[bytes]:
    """The event taken plus whatever else is queued, in one write; a comment first when events
    were dropped since the last write, so the client knows it missed some."""
    if sub.dropped_unreported:
        yield f": dropped {counted(sub.dropped_unreported, 'event')} (client too slow)\n\n".encode()
        sub.dropped_unreported = 0
    event: tuple[int, bytes] | None = first
    while event is not None:
        yield b"id: %s\nevent: probe\ndata: %s\n\n" % (bus.event_id(event[0]).encode(), event[1])
        try:
            event = sub.queue.get_nowait()
        except asyncio.QueueEmpty:
            event = None
